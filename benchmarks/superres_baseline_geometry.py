#!/usr/bin/env python
"""How much of a super-resolution "gain over cubic" is the baseline's geometry.

A 2×2×2 box average puts each low-resolution voxel centre half a high-resolution voxel off the
corner-aligned grid that ``scipy.ndimage.zoom(lr, 2, order=3)`` assumes. Our baseline
(:func:`bids_enhance.inference.upsample_baseline`, METHODS.md) interpolates at the exact
positions; a naive ``zoom`` shifts the whole image by half a voxel and stretches it by one voxel
across the field of view. A network trained on (box average, reference) pairs learns the exact
geometry, so against a naive baseline it is credited with the baseline's misregistration too.

For each held-out head: the reference (normalised, even shape), its box average, the shipped
``superres`` model, cubic B-spline at the exact geometry, and ``zoom(order=3)`` with
``grid_mode`` False (corner-aligned, scipy's default) and True (edge-aligned, which matches a
box average's geometry). PSNR in the head mask, METHODS.md protocol.

    python benchmarks/superres_baseline_geometry.py --threads 1
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "t1_highres"  # ../shared/data
HELD_OUT = ("niivue_otsu_T1w_1mm", "arc2017_T1w_1mm")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint or model folder (default: the shipped superres model)")
    parser.add_argument("--volumes", nargs="+", default=list(HELD_OUT))
    parser.add_argument("--data-dir", type=Path, default=DATA)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)

    import nibabel as nib
    import torch
    from scipy import ndimage

    from bids_enhance.degrade import degrade
    from bids_enhance.image.intensity import normalise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint, upsample_baseline
    from bids_enhance.inference.weights import resolve_model
    from bids_enhance.metrics.quality import evaluate

    torch.set_num_threads(args.threads)
    model = resolve_model("superres", args.checkpoint)
    print(f"model {model.summary.get('name')} (sha256 {model.sha256[:12]})\n")
    print("| head | model | cubic, exact geometry | zoom order 3, corner-aligned | "
          "zoom order 3, edge-aligned | gain over exact cubic | gain over corner-aligned zoom |")
    print("|---|---|---|---|---|---|---|")
    for name in args.volumes:
        img = nib.load(str(args.data_dir / f"{name}.nii.gz"))
        data = np.asarray(img.get_fdata(dtype=np.float32))
        data = data[tuple(slice(0, n - n % 2) for n in data.shape)]
        hr, _ = normalise(data)
        lr, lr_affine, _ = degrade(hr, img.affine, steps="sr-box-x2", rng=0)
        mask = head_mask(hr)
        out, _, _ = run_checkpoint(model.path, lr, lr_affine, expected_sha256=model.sha256,
                                   consistency=None)
        exact, _ = upsample_baseline(lr, lr_affine, kind="cubic", method="box")
        psnr = {"model": evaluate(hr, out, mask=mask)["psnr"],
                "exact": evaluate(hr, exact, mask=mask)["psnr"]}
        for grid_mode, key in ((False, "corner"), (True, "edge")):
            zoomed = ndimage.zoom(lr.astype(np.float64), 2, order=3, mode="nearest" if not
                                  grid_mode else "grid-constant", grid_mode=grid_mode)
            psnr[key] = evaluate(hr, zoomed.astype(np.float32), mask=mask)["psnr"]
        print(f"| {name} | {psnr['model']:.2f} | {psnr['exact']:.2f} | {psnr['corner']:.2f} | "
              f"{psnr['edge']:.2f} | {psnr['model'] - psnr['exact']:+.2f} | "
              f"{psnr['model'] - psnr['corner']:+.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
