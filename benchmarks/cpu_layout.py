#!/usr/bin/env python
"""The ``channels_last_3d`` layout on the CPU: inference and L1 training steps, both layouts.

Times, on this machine's CPU (``--threads``), with random inputs (speed does not depend on the
values):

- **inference**: ``bids_enhance.inference.infer_volume`` with the shipped default weights of
  ``superres`` (88×119×84 → 176×238×168), ``motion`` and ``denoise`` (176×238×168, the denoiser
  with its two input channels), each in the contiguous layout and in ``channels_last_3d`` (the
  default since 2026-12-07), with the memory plan the participant workflow makes;
- **training**: one L1 step (forward, backward, Adam) of the compact generators — the x2
  generator on a batch of 4 × 16³ → 32³, the scale-1 ``space_to_depth`` generator (two input
  channels) on 4 × 32³ — in both layouts, the median of ``--steps`` after two warm-up steps.

::

    python benchmarks/cpu_layout.py --threads 2

Prints a Markdown table (docs/benchmarks/infer_speed.md, "The channels_last layout on the CPU").
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from infer_speed import machine  # noqa: E402  (benchmarks/infer_speed.py: the host's description)


def _inference(step: str, channels_last: bool) -> tuple[float, str]:
    import numpy as np

    from bids_enhance.inference.sliding import infer_volume
    from bids_enhance.inference.weights import resolve_model
    from bids_enhance.models.checkpoint import load_checkpoint

    model, _ = load_checkpoint(resolve_model(step, None).path, map_location="cpu")
    shape = (88, 119, 84) if step == "superres" else (176, 238, 168)
    channels = model.conv_first.in_channels // (8 if model.space_to_depth else 1)
    rng = np.random.default_rng(0)
    x = rng.random(shape if channels == 1 else (channels, *shape), dtype=np.float32)
    report: dict = {}
    t0 = time.perf_counter()
    infer_volume(model, x, scale=model.scale, channels_last=channels_last, report=report)
    return time.perf_counter() - t0, report["mode"]


def _train_step(kind: str, channels_last: bool, steps: int) -> float:
    import torch
    import torch.nn.functional as F

    from bids_enhance.models.generator import RRDBGenerator

    torch.manual_seed(0)
    if kind == "x2":
        net = RRDBGenerator(features=32, growth=16, num_blocks=1, scale=2, hr_features=8,
                            image_skip=True)
        x, y = torch.randn(4, 1, 16, 16, 16), torch.randn(4, 1, 32, 32, 32)
    else:
        net = RRDBGenerator(in_channels=2, features=32, growth=16, num_blocks=2, scale=1,
                            hr_features=8, image_skip=True, space_to_depth=True)
        x, y = torch.randn(4, 2, 32, 32, 32), torch.randn(4, 1, 32, 32, 32)
    if channels_last:
        fmt = torch.channels_last_3d
        net, x, y = net.to(memory_format=fmt), x.contiguous(memory_format=fmt), \
            y.contiguous(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), 1e-4)
    times = []
    for i in range(steps + 2):
        t0 = time.perf_counter()
        opt.zero_grad()
        F.l1_loss(net(x), y).backward()
        opt.step()
        if i >= 2:
            times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=5, help="timed training steps")
    parser.add_argument("--skip-inference", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    host = machine("cpu")
    print(f"{host.get('cpu_model', host['platform'])}, torch {host['torch']}, "
          f"{args.threads} thread(s)\n")
    print("| what | contiguous (s) | channels_last_3d (s) | speed-up |")
    print("|---|---|---|---|")
    if not args.skip_inference:
        for step in ("superres", "motion", "denoise"):
            (a, mode), (b, _) = _inference(step, False), _inference(step, True)
            print(f"| inference, {step} default weights, whole head ({mode}) | {a:.1f} | "
                  f"{b:.1f} | {a / b:.2f}× |", flush=True)
    for kind, label in (("x2", "x2 generator 32/16/1, 4 × 16³"),
                        ("s2d", "scale-1 space_to_depth generator 32/16/2, 4 × 32³")):
        a, b = _train_step(kind, False, args.steps), _train_step(kind, True, args.steps)
        print(f"| L1 training step, {label} | {a:.3f} | {b:.3f} | {a / b:.2f}× |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
