#!/usr/bin/env python
"""Does a motion-ddpm checkpoint correct motion when sampling starts from the *noised corrupted
slice* at an intermediate step (SDEdit, Meng et al. 2022) instead of from pure noise? A check
for undertrained models: the low-noise steps are learned first, so a partial chain may help
where the full one fails.

For each held-out head: central ``--crop``³ corrupted by the ``motion`` preset (seeded), the
central ``--slices`` slices, x_t = √ᾱ·corrupted + √(1−ᾱ)·ε at each ``--starts`` step, then
DDIM (x0 clamped to the image range) in 1, 5 and 10 steps; PSNR in the crop against the
corrupted input's; and (``--one-step``) the network's one-step estimate of the clean slice
from the clean slice itself noised to a step.

    python benchmarks/motion_ddpm_partial.py \\
        --checkpoint benchmarks/results/default_weights/runs/motion_ddpm/checkpoint.pt
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--starts", type=int, nargs="+", default=[50, 100, 200, 300, 500])
    parser.add_argument("--steps", type=int, nargs="+", default=[1, 5, 10])
    parser.add_argument("--crop", type=int, default=96)
    parser.add_argument("--slices", type=int, default=24)
    parser.add_argument("--seed", type=int, default=20251127)
    parser.add_argument("--one-step", type=int, nargs="*", default=[10, 100, 300, 600],
                        help="also: the network's one-step estimate of the clean slice from the "
                             "clean slice noised to these steps (what it has learned per noise "
                             "level)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import torch
    from train_default_weights import HELD_OUT, NPZ_DIR, _central_crop, _read_volume

    from bids_enhance.degrade import degrade
    from bids_enhance.image.intensity import normalise
    from bids_enhance.metrics.quality import evaluate
    from bids_enhance.models import NoiseSchedule, neighbour_slices
    from bids_enhance.models.checkpoint import load_checkpoint
    from bids_enhance.models.diffusion import INTENSITY_MAP, x0_clip
    from bids_enhance.training.seeding import numpy_generator

    torch.set_num_threads(args.threads)
    model, meta = load_checkpoint(args.checkpoint)
    model.eval()
    extra = meta["extra"]
    schedule = NoiseSchedule.from_config(dict(extra["diffusion"]))
    abar = schedule.alphas_cumprod
    scale, offset = INTENSITY_MAP["scale"], INTENSITY_MAP["offset"]
    lo, hi = x0_clip(scale, offset)
    r, axis = int(extra["neighbours"]), int(extra["slice_axis"])
    print(f"checkpoint {args.checkpoint} (iteration {extra.get('iteration')})")
    print("| head | start step | DDIM steps | PSNR (dB) | corrupted (dB) | gain (dB) |")
    print("|---|---|---|---|---|---|")
    for name in HELD_OUT:
        data, affine = _read_volume(NPZ_DIR, name)
        hr, _ = normalise(_central_crop(data, args.crop))
        corrupted, _, _ = degrade(hr, affine, steps="motion",
                                  rng=numpy_generator(args.seed, "held-out", name))
        n = hr.shape[axis]
        keep = slice((n - args.slices) // 2, (n - args.slices) // 2 + args.slices)
        ref = np.moveaxis(hr, axis, 0)[keep]
        stacks = neighbour_slices(torch.from_numpy(np.ascontiguousarray(
            np.moveaxis(corrupted, axis, 0))), radius=r, axis=0)[keep] * scale + offset
        base = evaluate(ref, stacks[:, r].numpy() / scale - offset / scale)["psnr"]
        generator = torch.Generator().manual_seed(args.seed)
        clean = torch.from_numpy(ref[:, None] * scale + offset)
        for t in args.one_step:
            a, s = math.sqrt(abar[t]), math.sqrt(1 - abar[t])
            x = a * clean + s * torch.randn(clean.shape, generator=generator)
            batch_t = torch.full((x.shape[0],), t)
            with torch.no_grad():
                est, _ = schedule.predict_x0_eps(x, batch_t, model(x, batch_t, stacks),
                                                 prediction=extra["prediction"])
            psnr = evaluate(ref, ((est[:, 0] - offset) / scale).numpy())["psnr"]
            print(f"| {name} | one step from the clean slice noised to t = {t} | — | "
                  f"{psnr:.2f} | {base:.2f} | {psnr - base:+.2f} |", flush=True)
        for start in args.starts:
            for steps in args.steps:
                x0 = stacks[:, r:r + 1]
                x = (math.sqrt(abar[start]) * x0 + math.sqrt(1 - abar[start])
                     * torch.randn(x0.shape, generator=generator))
                times = [int(round(start - k * (start + 1) / steps)) for k in range(steps)]
                with torch.no_grad():
                    for i, t in enumerate(times):
                        t_prev = times[i + 1] if i + 1 < len(times) else -1
                        a_t = float(abar[t])
                        a_prev = float(abar[t_prev]) if t_prev >= 0 else 1.0
                        out = model(x, torch.full((x.shape[0],), t), stacks)
                        est, eps = schedule.predict_x0_eps(x, torch.full((x.shape[0],), t), out,
                                                           prediction=extra["prediction"])
                        est = est.clamp(lo, hi)
                        eps = (x - math.sqrt(a_t) * est) / math.sqrt(1 - a_t)
                        x = math.sqrt(a_prev) * est + math.sqrt(1 - a_prev) * eps
                psnr = evaluate(ref, ((x[:, 0] - offset) / scale).numpy())["psnr"]
                print(f"| {name} | {start} | {steps} | {psnr:.2f} | {base:.2f} | "
                      f"{psnr - base:+.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
