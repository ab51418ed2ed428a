#!/usr/bin/env python
"""Does the learned denoiser's head box hold the whole head? (``head_box`` in
:mod:`bids_enhance.inference.learned`)

For each volume and noise level (the noise of ``benchmarks/denoise.py``: same seed, volume
position and level), the box is built as the participant run builds it — from the noisy image's
head mask alone, or from that mask and the voxels whose local signal exceeds ``SIGNAL_ABOVE``·σ
(the shipped rule) — grown by each margin, and compared with the *clean* image's head mask:
the fraction of the voxels the box holds and the number of clean head voxels it leaves outside
(those get the local-mean fill instead of the denoiser)::

    python benchmarks/learned_head_box.py --volumes t2/arcM2265_T2w_1mm.nii.gz@1 \\
        arc2017_T1w_1mm@0 niivue_otsu_T1w_1mm@2 --levels 3 6 9 12 --margins 8 16

No rounding to BM-DCT's grid and no ``CROP_BELOW`` rule here: the plain box. Prints a
Markdown table. Run by hand.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import denoise as bench  # noqa: E402  (benchmarks/denoise.py: data, noise, metrics)
from learned_sure_region import parse_volume  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", nargs="+", type=parse_volume, required=True)
    parser.add_argument("--levels", nargs="+", type=float, default=[3.0, 6.0, 9.0, 12.0])
    parser.add_argument("--margins", nargs="+", type=int, default=[8, 16])
    args = parser.parse_args(argv)

    import nibabel as nib

    from bids_enhance.degrade import add_rician_noise
    from bids_enhance.degrade.noise import sigma_from_fraction
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference.learned import _extent, _head_mask, _signal_mask

    print("| volume | level % | box from | margin | box (of the voxels) | clean head voxels "
          "outside |")
    print("|---|---|---|---|---|---|")
    for path, position in args.volumes:
        name = path.name.replace(".nii.gz", "").replace(".nii", "")
        clean = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        truth = head_mask(clean)
        for li, level in enumerate(args.levels):
            sigma = sigma_from_fraction(clean, level / 100.0)
            rng = np.random.default_rng(np.random.SeedSequence([bench.SEED, position, li]))
            noisy = add_rician_noise(clean, sigma=sigma, rng=rng)
            mask = _head_mask(noisy)
            signal = _signal_mask(noisy, sigma=sigma, noise_model="rician")
            for label, region in (("head mask", mask), ("head mask + signal", mask | signal)):
                lo, hi = _extent(region)
                for margin in args.margins:
                    box = tuple(slice(max(int(a) - margin, 0), min(int(b) + 1 + margin, n))
                                for a, b, n in zip(lo, hi, noisy.shape, strict=True))
                    inside = np.zeros(noisy.shape, dtype=bool)
                    inside[box] = True
                    print(f"| {name} | {level:g} | {label} | {margin} | {inside.mean():.2f} | "
                          f"{int((truth & ~inside).sum())} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
