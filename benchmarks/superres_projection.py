#!/usr/bin/env python
"""Data-consistency projection of x2 outputs on the held-out heads (model-card protocol).

The shipped degradation is an exact 2×2×2 box average, so the true head lies in the set of
images whose box average is the input; projecting an output onto that set
(``bids_enhance.inference.project_consistent``, what ``--consistency project`` does) can only
bring it closer to the truth in the L2 sense. This scores the checkpoint and the cubic B-spline
baseline before and after the projection on the held-out heads exactly as their model cards
do (``train_default_weights.held_out_input``; PSNR, SSIM and HFEN in the head mask)::

    python benchmarks/superres_projection.py --threads 2

Run by hand; results in ``<out>.md`` and ``<out>.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import train_default_weights as tdw  # noqa: E402  (held-out heads as the model cards see them)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path, default=tdw.ROOT / "bids_enhance" / "data" /
                        "models" / "gan3p_l1_x2" / "checkpoint.pt")
    parser.add_argument("--npz-dir", type=Path, default=tdw.ROOT / "benchmarks" / "results" /
                        "t1_highres_npz", help="`train_default_weights.py prep`'s folder")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path,
                        default=tdw.ROOT / "benchmarks" / "results" / "superres_projection")
    args = parser.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import project_consistent, run_checkpoint, upsample_baseline
    from bids_enhance.metrics.quality import evaluate

    rows = []
    for name in tdw.HELD_OUT:
        hr, _, lr, lr_affine, _ = tdw.held_out_input(args.npz_dir, name, "sr-box-x2")
        mask = head_mask(hr)
        model, _, info = run_checkpoint(args.checkpoint, lr, lr_affine, device="cpu")
        cubic, _ = upsample_baseline(lr, lr_affine, kind="cubic", method="box")
        outputs = {"model": model, "model, projected": project_consistent(model, lr),
                   "cubic": cubic, "cubic, projected": project_consistent(cubic, lr)}
        for method, out in outputs.items():
            m = evaluate(hr, out, mask=mask)
            rows.append({"head": name, "method": method, "psnr": m["psnr"], "ssim": m["ssim"],
                         "hfen": m["hfen"]})
            print(f"{name} {method}: PSNR {m['psnr']:.3f} dB, SSIM {m['ssim']:.4f}, "
                  f"HFEN {m['hfen']:.4f}", flush=True)
        rows[-4]["consistency_rmse_percent"] = info["consistency"]["rmse_percent"]
    lines = [f"`python benchmarks/superres_projection.py --threads {args.threads}` on "
             f"{platform.machine()}, checkpoint `{args.checkpoint.name}` "
             f"({tdw._sha256(args.checkpoint)[:12]}).", "",
             "| head | method | PSNR (dB) | SSIM | HFEN |", "|---|---|---|---|---|"]
    lines += [f"| {r['head']} | {r['method']} | {r['psnr']:.3f} | {r['ssim']:.4f} | "
              f"{r['hfen']:.4f} |" for r in rows]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(rows, indent=1))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
