#!/usr/bin/env python
"""Self-ensemble (flip test-time augmentation) of an x2 super-resolution checkpoint.

The protocol of ``benchmarks/superres.py`` (held-out heads, 2×2×2 box-averaged input, PSNR in
the head mask against the reference, gain over the cubic B-spline at the exact x2
coordinates): the checkpoint runs on the input flipped along each subset of the three axes
(8 runs), each output is flipped back, and averages of 1, 2, 4 and 8 of them are scored —
what averaging over the cube's mirror symmetries buys, at 2–8× the inference time::

    python benchmarks/superres_self_ensemble.py --threads 2 --out benchmarks/results/sr_self_ensemble

Run by hand; results in ``<out>.md`` and ``<out>.json``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import superres as bench  # noqa: E402  (benchmarks/superres.py: volumes and protocol)

#: flips (x, y, z) averaged for each ensemble size; the 2- and 4-member sets are the flips of
#: one axis and the even-parity flips (no two of them the same up to a single flip)
ENSEMBLES = {
    1: [(0, 0, 0)],
    2: [(0, 0, 0), (1, 1, 1)],
    4: [(0, 0, 0), (0, 1, 1), (1, 0, 1), (1, 1, 0)],
    8: list(itertools.product((0, 1), repeat=3)),
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=str(bench.ROOT / "bids_enhance" / "data" /
                                                    "models" / "gan3p_l1_x2" / "checkpoint.pt"))
    parser.add_argument("--volumes", nargs="+", default=list(bench.HELD_OUT))
    parser.add_argument("--data-dir", type=Path, default=bench.DATA_DIR)
    parser.add_argument("--npz-dir", type=Path, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/sr_self_ensemble"))
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from bids_enhance.degrade import downsample
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint, upsample_baseline
    from bids_enhance.metrics.quality import evaluate

    rows = []
    for name in args.volumes:
        hr, affine = bench.load_volume(name, data_dir=args.data_dir, npz_dir=args.npz_dir)
        hr = bench._even(hr)
        mask = head_mask(hr)
        lr, lr_affine = downsample(hr, affine, method="box")
        cubic, _ = upsample_baseline(lr, lr_affine, kind="cubic", method="box")
        base = evaluate(hr, cubic, mask=mask)["psnr"]
        outs, seconds = {}, []
        for flips in ENSEMBLES[8]:
            axes = tuple(i for i in range(3) if flips[i])
            x = np.ascontiguousarray(np.flip(lr, axes)) if axes else lr
            t0 = time.perf_counter()
            out, _, _ = run_checkpoint(args.checkpoint, x, lr_affine, consistency=None)
            seconds.append(time.perf_counter() - t0)
            outs[flips] = np.ascontiguousarray(np.flip(out, axes)) if axes else out
        for size, members in ENSEMBLES.items():
            mean = np.mean([outs[m] for m in members], axis=0) if size > 1 else outs[members[0]]
            scores = evaluate(hr, mean, mask=mask)
            rows.append({"volume": name, "members": size, "flips": members,
                         "psnr_gain_over_cubic": scores["psnr"] - base,
                         "ssim": scores["ssim"], "hfen": scores["hfen"],
                         "seconds_per_run": float(np.median(seconds))})
            print(f"{name}: {size} member(s) {rows[-1]['psnr_gain_over_cubic']:+.3f} dB over "
                  f"cubic, SSIM {scores['ssim']:.4f}", flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    lines = [f"`python benchmarks/superres_self_ensemble.py` on {platform.machine()}, "
             f"{args.threads} thread(s), checkpoint {args.checkpoint}.", "",
             "| volume | members | PSNR gain over cubic (dB) | SSIM | HFEN | s per run |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['volume']} | {r['members']} | {r['psnr_gain_over_cubic']:+.3f} | "
              f"{r['ssim']:.4f} | {r['hfen']:.4f} | {r['seconds_per_run']:.1f} |" for r in rows]
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print(f"wrote {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
