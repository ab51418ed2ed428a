#!/usr/bin/env python
"""Does the motion model need to see the whole ghost axis? A 2.5D probe.

TorchIO's motion fills k-space segments along the last voxel axis, so every ghost of a voxel
lies on its line along that axis, spread over the whole field of view by the sinc-like kernel
of each segment (docs/benchmarks/default_weights.md, "Where the motion model's error lies").
The shipped 3D network sees ±69 voxels and was trained on 32³/64³ patches. This probe trains a
small 2D U-Net (4 levels, 16…128 features, 1.4 M parameters, residual output, zero-initialised
last layer) on planes that *contain* the ghost axis — the (j, k) plane at one i, its two
neighbours along i as extra channels — cropped to 64 voxels along j and whole along k, so every
training sample holds the ghost's whole line. Data: the six 1 mm training heads of
``motion_gan`` (``TRAINING_1MM``), ``--realisations`` TorchIO ``motion`` draws per head to
start with, one of them replaced by a fresh draw every ``--refresh`` steps (new motion patterns
throughout, not a fixed set). Adam 2e-4, cosine over ``--steps``, L1, batch 8.

Validation: the two held-out heads, whole, corrupted exactly as their model cards corrupt them
(``train_default_weights.held_out_input``, the ``motion`` preset; corrupted 22.81 and
25.40 dB), PSNR in the head mask, every 1000 steps — the numbers compare directly with the
cards (the shipped 3D model: +0.23 / +0.49 dB)::

    python benchmarks/train_default_weights.py prep      # once: the volumes as .npz
    OMP_NUM_THREADS=1 python benchmarks/motion_slices.py --threads 1 --steps 8000 \\
        --out benchmarks/results/motion_slices

Run by hand, one thread is enough; the log (one line per 100 steps, one per validation) goes to
stdout and ``<out>/validation.json``. A probe, not a product path: nothing here ships.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))


def build_unet(features: int, levels: int = 4, in_channels: int = 3):
    """A plain 2D U-Net: two 3×3 convolutions with LeakyReLU per level, strided 2×2 down,
    transposed 2×2 up, widths ``features·2^level`` capped at 8×; it returns the centre input
    channel plus a learned residual (last layer zero-initialised: it starts as the identity)."""
    import torch
    from torch import nn

    def pair(i: int, o: int) -> nn.Module:
        return nn.Sequential(nn.Conv2d(i, o, 3, padding=1), nn.LeakyReLU(0.2, True),
                             nn.Conv2d(o, o, 3, padding=1), nn.LeakyReLU(0.2, True))

    class UNet(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            ws = [features * 2 ** min(i, 3) for i in range(levels + 1)]
            self.enc = nn.ModuleList([pair(in_channels if i == 0 else ws[i - 1], ws[i])
                                      for i in range(levels)])
            self.down = nn.ModuleList([nn.Conv2d(ws[i], ws[i], 2, stride=2)
                                       for i in range(levels)])
            self.mid = pair(ws[levels - 1], ws[levels])
            self.up = nn.ModuleList([nn.ConvTranspose2d(ws[i + 1], ws[i], 2, stride=2)
                                     for i in range(levels)])
            self.dec = nn.ModuleList([pair(2 * ws[i], ws[i]) for i in range(levels)])
            self.out = nn.Conv2d(ws[0], 1, 1)
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

        def forward(self, x):
            skips, h = [], x
            for enc, down in zip(self.enc, self.down, strict=True):
                h = enc(h)
                skips.append(h)
                h = down(h)
            h = self.mid(h)
            for i in reversed(range(len(self.enc))):
                h = self.dec[i](torch.cat([self.up[i](h), skips[i]], 1))
            return x[:, 1:2] + self.out(h)

    return UNet()


def pad_to(array: np.ndarray, multiple: int = 16) -> np.ndarray:
    """Zero-pad the last two axes up to multiples of ``multiple`` (four levels of 2)."""
    pads = [(0, 0)] * (array.ndim - 2) + [(0, (-n) % multiple) for n in array.shape[-2:]]
    return np.pad(array, pads)


def held_out_pairs():
    """(name, reference, corrupted, mask) of the held-out heads, as their model cards."""
    from train_default_weights import HELD_OUT, NPZ_DIR, held_out_input

    from bids_enhance.image.mask import head_mask

    out = []
    for name in HELD_OUT:
        hr, _, corrupted, _, _ = held_out_input(NPZ_DIR, name, "motion")
        out.append((name, hr, corrupted, head_mask(hr)))
    return out


def infer(net, corrupted: np.ndarray, batch: int = 16) -> np.ndarray:
    """The network over every (j, k) plane of ``corrupted`` (its i-neighbours as channels,
    edge-replicated at the ends)."""
    import torch

    net.eval()
    padded = pad_to(np.pad(corrupted, ((1, 1), (0, 0), (0, 0)), mode="edge"))
    out = np.empty_like(corrupted)
    with torch.no_grad():
        for start in range(0, corrupted.shape[0], batch):
            idx = range(start, min(start + batch, corrupted.shape[0]))
            planes = torch.from_numpy(np.stack([padded[i:i + 3] for i in idx]))
            result = net(planes)[:, 0].numpy()
            out[start:start + len(idx)] = result[:, :corrupted.shape[1], :corrupted.shape[2]]
    net.train()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--features", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--width", type=int, default=64, help="crop along j (voxels)")
    parser.add_argument("--realisations", type=int, default=2)
    parser.add_argument("--refresh", type=int, default=25,
                        help="replace one corrupted head by a fresh draw every N steps (0: never)")
    parser.add_argument("--lr", type=float, default=2e-4)
    parser.add_argument("--validate-every", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "motion_slices")
    args = parser.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from train_default_weights import NPZ_DIR, TRAINING_1MM, load_volumes

    from bids_enhance.degrade import degrade
    from bids_enhance.image.mask import head_mask
    from bids_enhance.metrics.quality import evaluate
    from bids_enhance.training.seeding import numpy_generator

    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    pairs = []
    for vol in load_volumes(NPZ_DIR, TRAINING_1MM):
        clean = vol.data[tuple(slice(0, n - n % 2) for n in vol.data.shape)].astype(np.float32)
        mask = head_mask(clean)
        for k in range(args.realisations):
            corrupted, _, _ = degrade(clean, vol.affine, steps="motion",
                                      rng=numpy_generator(7, "m25", vol.subject, k))
            pairs.append((clean, corrupted.astype(np.float32), mask, vol.subject, vol.affine))
    held_out = held_out_pairs()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    net = build_unet(args.features)
    print(f"{sum(p.numel() for p in net.parameters()) / 1e6:.2f} M parameters", flush=True)
    opt = torch.optim.Adam(net.parameters(), lr=args.lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.steps)
    planes = [np.nonzero(p[2].any(axis=(1, 2)))[0] for p in pairs]
    fresh, losses, rows, t0 = 1000, [], [], time.time()
    for step in range(1, args.steps + 1):
        sources, targets = [], []
        for _ in range(args.batch_size):
            n = rng.integers(len(pairs))
            clean, corrupted = pairs[n][:2]
            i = int(rng.choice(planes[n]))
            i = min(max(i, 1), clean.shape[0] - 2)
            j = int(rng.integers(0, max(clean.shape[1] - args.width, 0) + 1))
            sources.append(corrupted[i - 1:i + 2, j:j + args.width])
            targets.append(clean[i:i + 1, j:j + args.width])
        # zero-padded to the batch's largest plane, rounded up to a multiple of 16
        shape = [-(-max(a.shape[k] for a in sources) // 16) * 16 for k in (1, 2)]
        source, target = (torch.from_numpy(np.stack([
            np.pad(a, ((0, 0), (0, shape[0] - a.shape[1]), (0, shape[1] - a.shape[2])))
            for a in arrays])) for arrays in (sources, targets))
        if args.refresh and step % args.refresh == 0:
            n = int(rng.integers(len(pairs)))
            clean, _, mask, subject, affine = pairs[n]
            corrupted, _, _ = degrade(clean, affine, steps="motion",
                                      rng=numpy_generator(7, "m25", subject, fresh))
            fresh += 1
            pairs[n] = (clean, corrupted.astype(np.float32), mask, subject, affine)
        loss = F.l1_loss(net(source), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        schedule.step()
        losses.append(loss.item())
        if step % 100 == 0:
            print(f"it {step} loss {np.mean(losses[-100:]):.5f} {time.time() - t0:.0f}s",
                  flush=True)
        if step % args.validate_every == 0 or step == args.steps:
            gains = {}
            for name, hr, corrupted, mask in held_out:
                out = infer(net, corrupted)
                gains[name] = (evaluate(hr, out, mask=mask)["psnr"]
                               - evaluate(hr, corrupted, mask=mask)["psnr"])
            rows.append({"step": step, "seconds": time.time() - t0, "gain_db": gains,
                         "mean_gain_db": float(np.mean(list(gains.values())))})
            print(f"VAL it {step}: gains {[round(g, 3) for g in gains.values()]} mean "
                  f"{rows[-1]['mean_gain_db']:+.3f}", flush=True)
            (args.out / "validation.json").write_text(json.dumps(rows, indent=1))
            torch.save(net.state_dict(), args.out / "net.pt")
    return 0


if __name__ == "__main__":
    sys.exit(main())
