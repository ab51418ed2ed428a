#!/usr/bin/env python
"""Super-resolution checkpoints on nilearn's MNI152 template: PSNR gain over cubic B-spline.

The computation of the guard in ``tests/test_shipped_weights.py`` (central 96³ of the 1 mm
template, robust maximum → 1, its ``sr-box-x2`` box average in, PSNR in the head mask), printed
for any checkpoints — e.g. the shipped weights against the ones they replace::

    git show <commit>:bids_enhance/data/models/gan3p_l1_x2/checkpoint.pt > /tmp/old.pt
    python benchmarks/superres_template.py /tmp/old.pt \\
        bids_enhance/data/models/gan3p_l1_x2/checkpoint.pt

The template is an average of 152 brains (smooth, no noise): it guards against a broken
checkpoint; the held-out heads of the model cards measure quality.
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoints", nargs="+")
    args = parser.parse_args(argv)

    from nilearn.datasets import load_mni152_template

    from bids_enhance.degrade import degrade
    from bids_enhance.image.intensity import normalise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint, upsample_baseline
    from bids_enhance.metrics.quality import evaluate

    img = load_mni152_template(resolution=1)
    data = img.get_fdata(dtype=np.float32)
    crop = tuple(slice(n // 2 - 48, n // 2 + 48) for n in data.shape)
    hr, _ = normalise(data[crop])
    mask = head_mask(hr)
    lr, lr_affine, _ = degrade(hr, img.affine, steps="sr-box-x2", rng=0)
    cubic, _ = upsample_baseline(lr, lr_affine, kind="cubic", method="box")
    base = evaluate(hr, cubic, mask=mask)["psnr"]
    print(f"cubic B-spline: {base:.2f} dB")
    for path in args.checkpoints:
        out, _, _ = run_checkpoint(path, lr, lr_affine, consistency="measure")
        psnr = evaluate(hr, out, mask=mask)["psnr"]
        print(f"{path}: {psnr:.2f} dB, {psnr - base:+.2f} dB over cubic")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
