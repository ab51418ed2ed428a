#!/usr/bin/env python
"""A synthetic proton-density-weighted brain for the denoising benchmark (no PD scan is offline).

../shared/data holds T1w, T2w and FLAIR volumes but no PD-weighted one, so issue 12's "PD"
contrast is simulated from what installed packages ship: nilearn's MNI152 (ICBM 2009a, 1 mm)
grey- and white-matter probability maps, CSF as the rest of the template's brain mask. Each
voxel's signal is the partial-volume mix of the spin-echo signal equation

    S = PD · (1 − exp(−TR / T1)) · exp(−TE / T2)

with TR = 4000 ms, TE = 12 ms (a PD-weighted turbo spin echo) and literature 3 T tissue values
(PD / T1 / T2: WM 0.69 / 830 ms / 80 ms, GM 0.80 / 1330 ms / 110 ms, CSF 1.0 / 4000 ms /
2000 ms). The result has PD contrast — grey matter brightest, CSF close to it, white matter
darkest, low GM/WM contrast — but the smoothness of a 152-subject average, which favours
smoothing filters (as every noise-free template does).

``--from-scan PATH`` keeps a real scan's texture instead: a skull-stripped T1w brain is
remapped voxel by voxel by the piecewise-linear function through its three tissue means
(multi-Otsu classes: CSF, GM, WM) and zero, onto the PD signals of those tissues (linear
beyond the WM mean). Its intrinsic noise and partial volumes go through the same map (inverted
in WM, where PD is darker than GM). Run by hand::

    python benchmarks/pd_like.py --out benchmarks/results/pd_like/mni152_PDlike_1mm.nii.gz
    python benchmarks/pd_like.py --out benchmarks/results/pd_like/T1wGd_PDlike_1mm.nii.gz \\
        --from-scan ../shared/data/t1_highres/niivue_T1wGd_brain_1mm.nii.gz
    python benchmarks/denoise.py --threads 2 --volumes \\
        benchmarks/results/pd_like/mni152_PDlike_1mm.nii.gz --methods prinlm bm4d learned

The outputs are skull-stripped (as their sources) and scaled to 0–200 like the byte-valued scans.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

TR_MS, TE_MS = 4000.0, 12.0
#: tissue: (proton density, T1 ms, T2 ms) at 3 T
TISSUES = {"wm": (0.69, 830.0, 80.0), "gm": (0.80, 1330.0, 110.0), "csf": (1.0, 4000.0, 2000.0)}
SCALE = 200.0


def signal(tissue: str, tr: float = TR_MS, te: float = TE_MS) -> float:
    """Spin-echo signal of one tissue, relative to a fully relaxed PD of 1."""
    pd, t1, t2 = TISSUES[tissue]
    return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)


def pd_value(tissue: str) -> float:
    """A pure tissue's value in the output images (the brightest tissue at :data:`SCALE`)."""
    return SCALE * signal(tissue) / max(signal(t) for t in TISSUES)


def pd_like(t1_template: np.ndarray, gm: np.ndarray, wm: np.ndarray) -> np.ndarray:
    """PD-weighted image from the template (for its brain mask) and GM/WM probabilities in
    [0, 1]."""
    brain = t1_template > 0
    gm = np.where(brain, gm, 0.0)
    wm = np.where(brain, wm, 0.0)
    total = gm + wm
    over = total > 1.0  # byte-rounded maps can sum above 1: renormalise there
    gm = np.where(over, gm / np.maximum(total, 1e-6), gm)
    wm = np.where(over, wm / np.maximum(total, 1e-6), wm)
    csf = np.where(brain, 1.0 - gm - wm, 0.0)
    image = gm * pd_value("gm") + wm * pd_value("wm") + csf * pd_value("csf")
    return image.astype(np.float32)


#: source contrast → its tissues from darkest to brightest
SOURCE_ORDER = {"T1w": ("csf", "gm", "wm"), "T2w": ("wm", "gm", "csf")}


def tissue_means(scan: np.ndarray) -> tuple[float, float, float]:
    """Means of the three multi-Otsu classes of a brain's non-zero voxels, darkest first (CSF,
    GM, WM in a T1w image; WM, GM, CSF in a T2w one)."""
    from skimage.filters import threshold_multiotsu

    brain = scan[scan > 0]
    low, high = threshold_multiotsu(brain, classes=3)
    return (float(brain[brain < low].mean()), float(brain[(brain >= low) & (brain < high)].mean()),
            float(brain[brain >= high].mean()))


def remap_to_pd(scan: np.ndarray, means: tuple[float, float, float] | None = None, *,
                contrast: str = "T1w") -> np.ndarray:
    """A brain's voxels mapped onto PD contrast through its tissue means (module docstring);
    ``contrast``: the source's, which orders its tissues (:data:`SOURCE_ORDER`)."""
    scan = np.asarray(scan, dtype=np.float64)
    order = SOURCE_ORDER[contrast]
    means = tissue_means(scan) if means is None else means
    if not 0 < means[0] < means[1] < means[2]:
        named = (f"{t.upper()} {m:.3g}" for t, m in zip(order, means, strict=True))
        raise ValueError(f"tissue means not ordered as in a {contrast} image: "
                         + ", ".join(named))
    x = np.array([0.0, *means])
    y = np.array([0.0, *(pd_value(t) for t in order)])
    out = np.interp(scan, x, y)
    beyond = scan > x[3]  # linear continuation of the last segment, kept positive
    slope = (y[3] - y[2]) / (x[3] - x[2])
    out[beyond] = np.maximum(y[3] + slope * (scan[beyond] - x[3]), 0.0)
    out[scan <= 0] = 0.0
    return out.astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path,
                        default=Path("benchmarks/results/pd_like/mni152_PDlike_1mm.nii.gz"))
    parser.add_argument("--from-scan", type=Path,
                        help="remap this skull-stripped scan instead of using the template")
    parser.add_argument("--contrast", choices=sorted(SOURCE_ORDER), default="T1w",
                        help="the contrast of --from-scan")
    args = parser.parse_args(argv)

    import nibabel as nib

    from bids_enhance.utils import atomic_path

    def write(data: np.ndarray, affine: np.ndarray) -> None:
        with atomic_path(args.out) as tmp:
            nib.Nifti1Image(data, affine).to_filename(tmp)

    if args.from_scan is not None:
        src = nib.load(args.from_scan)
        scan = np.asarray(src.dataobj, dtype=np.float32)
        means = tissue_means(scan)
        write(remap_to_pd(scan, means, contrast=args.contrast), src.affine)
        print(f"{args.out}: {scan.shape} from {args.from_scan.name}, {args.contrast} tissue "
              "means " + ", ".join(f"{t.upper()} {m:.1f}"
                                   for t, m in zip(SOURCE_ORDER[args.contrast], means,
                                                   strict=True)))
        return 0

    from nilearn import datasets

    data = Path(datasets.__file__).parent / "data"
    stem = "mni_icbm152_{}_tal_nlin_sym_09a_converted.nii.gz"
    t1 = nib.load(data / stem.format("t1"))
    gm = np.asarray(nib.load(data / stem.format("gm")).dataobj, dtype=np.float32) / 255.0
    wm = np.asarray(nib.load(data / stem.format("wm")).dataobj, dtype=np.float32) / 255.0
    image = pd_like(np.asarray(t1.dataobj), gm, wm)
    write(image, t1.affine)
    print(f"{args.out}: {image.shape}, pure-tissue values "
          + ", ".join(f"{t} {pd_value(t):.1f}" for t in TISSUES))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
