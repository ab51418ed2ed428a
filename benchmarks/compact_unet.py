#!/usr/bin/env python
"""Cost of diffusion U-Net sizes on the CPU (how the ``compact`` size of ``motion-ddpm`` was
chosen): parameters, seconds per training step (AdamW, batch of 8 slices of 64² with a 3-slice
2.5D condition) and seconds per 176×240 slice and sampling step (one U-Net evaluation; DDIM
runs it once per step and slice).

    python benchmarks/compact_unet.py --threads 1
"""

from __future__ import annotations

import argparse
import time

CANDIDATES = {
    "16 × (1, 2, 4), attention at 1/4": dict(features=16, channel_mults=(1, 2, 4),
                                             num_res_blocks=1, attention=True, norm_groups=8),
    "16 × (1, 2, 4), no attention": dict(features=16, channel_mults=(1, 2, 4), num_res_blocks=1,
                                         attention=False, norm_groups=8),
    "16 × (1, 2, 2, 4), attention at 1/8 (compact)": dict(features=16, channel_mults=(1, 2, 2, 4),
                                                          num_res_blocks=1, attention=True,
                                                          norm_groups=8),
    "24 × (1, 2, 2, 4), attention at 1/8": dict(features=24, channel_mults=(1, 2, 2, 4),
                                                num_res_blocks=1, attention=True, norm_groups=8),
    "32 × (1, 2, 4), attention at 1/4": dict(features=32, channel_mults=(1, 2, 4),
                                             num_res_blocks=1, attention=True, norm_groups=8),
    "thesis (64 × (1, 2, 4), 2 blocks)": {},
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    import torch

    from bids_enhance.models.registry import build_model

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print("| U-Net | parameters | s / training step (8 × 64²) | s / slice / sampling step "
          "(176×240) |")
    print("|---|---|---|---|")
    for label, kwargs in CANDIDATES.items():
        net = build_model("diffusion_unet", image_channels=1, condition_channels=3, **kwargs)
        params = sum(p.numel() for p in net.parameters())
        opt = torch.optim.AdamW(net.parameters(), 1e-4)
        x, c = torch.randn(8, 1, 64, 64), torch.randn(8, 3, 64, 64)
        t = torch.randint(0, 1000, (8,))
        for i in range(args.repeats + 1):
            if i == 1:
                start = time.perf_counter()
            loss = (net(x, t, c) - x).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        step = (time.perf_counter() - start) / args.repeats
        net.eval()
        with torch.no_grad():
            xs, cs = torch.randn(16, 1, 176, 240), torch.randn(16, 3, 176, 240)
            start = time.perf_counter()
            net(xs, torch.full((16,), 500), cs)
            forward = (time.perf_counter() - start) / 16
        print(f"| {label} | {params / 1e6:.2f} M | {step:.3f} | {forward:.3f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
