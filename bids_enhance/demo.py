"""The embedded demo dataset: nilearn's MNI152 T1 template with simulated Rician noise.

``python -m bids_enhance.demo DIR`` writes a small BIDS dataset to ``DIR``. The template ships
inside nilearn (ICBM 2009a nonlinear symmetric, skull-stripped, 1 mm), so nothing is downloaded.
Two participants show what users meet in practice:

- ``sub-01``: float32, RAS, Rician noise at 3 % of the robust maximum.
- ``sub-02``: two sessions, int16 with a scaling factor, LPS orientation, Rician noise at 6 %;
  in ``ses-2`` the qform is also 2 mm off the sform (the app uses the sform and reports it).
- ``sub-03`` (``python -m bids_enhance.demo``; ``lowres=True``): the template box-averaged to
  twice the voxel size (2 mm) with Rician noise at 1 %, for the x2 super-resolution step
  (``make demo`` runs ``--enhance superres`` on it with the shipped weights).

The tests use the same builder at a coarse voxel size so they run in seconds.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import nibabel as nib
import numpy as np

from bids_enhance.degrade.noise import add_rician_noise, sigma_from_fraction
from bids_enhance.utils import atomic_path, atomic_write_text

#: (subject, session, noise fraction, storage) for each image of the demo.
DEMO_IMAGES = (
    ("01", None, 0.03, "float32"),
    ("02", "1", 0.06, "int16-lps"),
    ("02", "2", 0.06, "int16-lps-qformshift"),
)
#: the low-resolution subject of the demo: (subject, noise fraction); voxels twice as large
DEMO_LOWRES = ("03", 0.01)


def template(voxel_size: float = 1.0) -> nib.Nifti1Image:
    """nilearn's MNI152 T1 (1 mm), optionally resampled to ``voxel_size`` mm, scaled to ~1000."""
    from nilearn.datasets import load_mni152_template
    from scipy import ndimage

    img = load_mni152_template(resolution=1)
    data = img.get_fdata(dtype=np.float32)
    affine = img.affine.copy()
    if voxel_size != 1.0:
        factor = 1.0 / voxel_size
        data = ndimage.zoom(data, factor, order=1, prefilter=False)
        affine[:3, :3] = affine[:3, :3] * voxel_size
    data = np.clip(data, 0, None) * (1000.0 / max(float(data.max()), 1e-6))
    return nib.Nifti1Image(data.astype(np.float32), affine)


def _store(data: np.ndarray, affine: np.ndarray, storage: str) -> nib.Nifti1Image:
    if storage == "float32":
        img = nib.Nifti1Image(data.astype(np.float32), affine)
        img.set_data_dtype(np.float32)
    else:
        lps = nib.orientations.axcodes2ornt(("L", "P", "S"))
        ras = nib.orientations.io_orientation(affine)
        transform = nib.orientations.ornt_transform(ras, lps)
        img = nib.Nifti1Image(data, affine).as_reoriented(transform)
        img = nib.Nifti1Image(np.asanyarray(img.dataobj).astype(np.float32), img.affine)
        img.set_data_dtype(np.int16)  # nibabel picks scl_slope/scl_inter when saving
    qform = img.affine.copy()
    if storage.endswith("-qformshift"):
        qform[:3, 3] += 2.0
    img.set_qform(qform, 1)
    img.set_sform(img.affine, 1)
    return img


def _noise_record(fraction: float, sigma: float, seed: int) -> dict:
    return {"Distribution": "Rician", "FractionOfRobustMax": fraction,
            "Sigma": round(float(sigma), 4), "Seed": seed}


def _box_x2(img: nib.Nifti1Image) -> nib.Nifti1Image:
    """2×2×2 box average with the exact x2 geometry (METHODS.md): what an acquisition at twice
    the voxel size records of the same head."""
    data = img.get_fdata(dtype=np.float32)
    data = data[tuple(slice(0, n - n % 2) for n in data.shape)]
    x, y, z = (n // 2 for n in data.shape)
    low = data.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5))
    affine = img.affine @ np.array([[2, 0, 0, 0.5], [0, 2, 0, 0.5], [0, 0, 2, 0.5],
                                    [0, 0, 0, 1]], dtype=np.float64)
    return nib.Nifti1Image(low.astype(np.float32), affine)


def make_demo_dataset(root: Path | str, *, voxel_size: float = 1.0, seed: int = 0,
                      images: tuple = DEMO_IMAGES, lowres: bool = False) -> Path:
    """Write the demo BIDS dataset under ``root`` and return ``root``; ``lowres`` adds
    ``sub-03`` at twice the voxel size (:data:`DEMO_LOWRES`)."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    base = template(voxel_size)
    clean = base.get_fdata(dtype=np.float32)
    rng = np.random.default_rng(seed)
    subjects = sorted({sub for sub, *_ in images} | ({DEMO_LOWRES[0]} if lowres else set()))
    atomic_write_text(root / "dataset_description.json", json.dumps({
        "Name": "bids_enhance demo: MNI152 T1 with simulated Rician noise",
        "BIDSVersion": "1.10.0",
        "DatasetType": "raw",
        "License": "See README (ICBM 2009a template terms).",
        # the template's authors (the images are theirs) and who simulated the noise
        "Authors": ["Vladimir S. Fonov", "Alan C. Evans", "D. Louis Collins",
                    "bids_enhance developers"],
    }, indent=2) + "\n")
    atomic_write_text(root / "README", (
        "Demo dataset of bids_enhance, generated by `python -m bids_enhance.demo`.\n\n"
        "Images are the ICBM 2009a nonlinear symmetric T1 template (as shipped by nilearn; "
        "Copyright (C) 1993-2009 Louis Collins, McConnell Brain Imaging Centre, Montreal "
        "Neurological Institute, McGill University) with simulated Rician noise. They are not "
        "scans of people.\n"))
    atomic_write_text(root / "participants.tsv",
                      "participant_id\n" + "".join(f"sub-{s}\n" for s in subjects))
    for subject, session, fraction, storage in images:
        sigma = sigma_from_fraction(clean, fraction)
        noisy = add_rician_noise(clean, sigma=sigma, rng=rng)
        folder = root / f"sub-{subject}"
        stem = f"sub-{subject}"
        if session:
            folder = folder / f"ses-{session}"
            stem += f"_ses-{session}"
        path = folder / "anat" / f"{stem}_T1w.nii.gz"
        img = _store(noisy, base.affine, storage)
        with atomic_path(path) as tmp:
            nib.save(img, tmp)
        atomic_write_text(path.with_name(f"{stem}_T1w.json"), json.dumps({
            "SimulatedNoise": _noise_record(fraction, sigma, seed)}, indent=2) + "\n")
    if lowres:
        subject, fraction = DEMO_LOWRES
        low = _box_x2(base)
        low_data = low.get_fdata(dtype=np.float32)
        sigma = sigma_from_fraction(low_data, fraction)
        noisy = add_rician_noise(low_data, sigma=sigma, rng=rng)
        path = root / f"sub-{subject}" / "anat" / f"sub-{subject}_T1w.nii.gz"
        with atomic_path(path) as tmp:
            nib.save(_store(noisy, low.affine, "float32"), tmp)
        atomic_write_text(path.with_name(f"sub-{subject}_T1w.json"), json.dumps({
            "SimulatedNoise": _noise_record(fraction, sigma, seed),
            "SimulatedLowResolution": {"Method": "2x2x2 box average of the template",
                                       "VoxelSize": [2 * voxel_size] * 3},
        }, indent=2) + "\n")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bids_enhance.demo",
                                     description="Write the bids_enhance demo BIDS dataset.")
    parser.add_argument("output", type=Path, help="folder to create")
    parser.add_argument("--voxel-size", type=float, default=1.0, help="mm (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-lowres", dest="lowres", action="store_false",
                        help="leave out sub-03, the 2 mm subject for super-resolution")
    args = parser.parse_args(argv)
    root = make_demo_dataset(args.output, voxel_size=args.voxel_size, seed=args.seed,
                             lowres=args.lowres)
    print(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
