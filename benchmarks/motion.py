#!/usr/bin/env python
"""Motion correction on simulated rigid motion of three severities: a motion model against the
motion-corrupted input, on the held-out heads of the default weights (never trained on).

Severities (TorchIO ``RandomMotion`` scheme, ``bids_enhance.degrade.RandomMotion``: each
rotation angle ~ U(±degrees), each translation ~ U(±mm) per axis and movement, two movements at
jittered times of the k-space acquisition):

- ``mild``: ±2°, ±2 mm;
- ``moderate``: ±5°, ±5 mm;
- ``severe``: ±10°, ±10 mm — TorchIO's defaults, the ``motion`` preset the shipped model was
  trained on.

Protocol as the model cards (METHODS.md): the head's intensities scaled by its robust maximum,
the motion drawn per head, severity and realisation from ``--seed``, PSNR / SSIM / HFEN in the
head mask of the reference. Writes ``<out>/motion.json`` and ``<out>/motion.md``.

Ghosts along another axis (``--phase-encoding-axis 0|1``): the motion is simulated with the
k-space segments along that voxel axis (a scan whose ``PhaseEncodingDirection`` is ``i`` or
``j``); the model runs as the participant workflow runs it, told that axis, and once more on the
volume as it is (as if the axis were unknown), to show what the axis is worth.

Where the error lies (``--kspace``): TorchIO builds the corrupted k-space from contiguous
segments along the last array axis (the centred spectrum), the segment holding the centre from
the head at rest and the others from the moved heads. Per row this splits the error energy of
the corrupted input and of the model's output (whole volume, ``|FFT(image − reference)|²``) into
the k-space lines that came from a moved head and those that did not, and into twelve bands
along that axis: how much of the motion's own error the model removed, and how much it added
where the input was exact.

    python benchmarks/train_default_weights.py prep       # once: the held-out heads as .npz
    python benchmarks/motion.py --threads 2               # the shipped motion model
    python benchmarks/motion.py --checkpoint OUT/models/motion-gan --realisations 3
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

#: severity → (degrees, translation in mm) of RandomMotion; two movements each
SEVERITIES = {"mild": (2.0, 2.0), "moderate": (5.0, 5.0), "severe": (10.0, 10.0)}
#: bands of the centred last k-space axis in the ``--kspace`` table
KSPACE_BANDS = 12


def moved_lines(records: list[dict], n: int) -> np.ndarray:
    """Boolean mask of the ``n`` k-space lines along the last axis (centred spectrum) that a
    TorchIO motion step filled from a moved head: every segment except the one holding the
    centre (``tio.Motion.sort_spectra`` gives that one the head at rest; segment borders at
    ``int(n · time)`` as ``tio.Motion.add_artifact``), and the mirror image of those lines
    (``k ↔ −k``): TorchIO keeps the real part of the inverse transform, which makes the
    spectrum Hermitian again and so copies each moved line's error onto its mirror line."""
    moved = np.zeros(n, dtype=bool)
    for record in records:
        if record.get("kind") != "motion":
            continue
        times = np.asarray(record["times"], dtype=float)
        borders = [0, *(int(v) for v in (n * times).astype(int)), n]
        centre = int(np.argmax(times > 0.5)) if np.any(times > 0.5) else len(times)
        for segment in range(len(borders) - 1):
            if segment != centre:
                moved[borders[segment]:borders[segment + 1]] = True
    mirror = (2 * (n // 2) - np.arange(n)) % n
    return moved | moved[mirror]


def kspace_error(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """Error energy per line of the centred last k-space axis: ``|FFT(image − reference)|²``
    summed over the other two axes."""
    spectrum = np.fft.fftshift(np.fft.fftn(np.asarray(image, np.float64) - reference))
    return (np.abs(spectrum) ** 2).sum(axis=(0, 1))


def kspace_summary(reference, corrupted, out, records) -> dict:
    """The ``--kspace`` numbers of one row (see the module docstring)."""
    before, after = kspace_error(reference, corrupted), kspace_error(reference, out)
    moved = moved_lines(records, before.size)
    total = before.sum()
    bands = np.array_split(np.arange(before.size), KSPACE_BANDS)
    return {
        "moved_share_of_lines": float(moved.mean()),
        # of the corrupted input's error, the share in lines from a moved head (1 up to
        # the interpolation of the rest)
        "corrupted_error_in_moved_lines": float(before[moved].sum() / total),
        # the model's error in the moved lines, relative to the input's error there
        "model_error_in_moved_lines": float(after[moved].sum() / before[moved].sum()),
        # the model's error in the lines the input got right, relative to the input's total
        "model_error_in_rest": float(after[~moved].sum() / total),
        "bands": [{"moved": float(moved[b].mean()), "corrupted": float(before[b].sum() / total),
                   "model": float(after[b].sum() / total)} for b in bands],
    }


def run(model, npz_dir: Path, *, severities, realisations: int, seed: int,
        crop: int | None, kspace: bool = False, axis: int | None = None) -> list[dict]:
    """Rows per head, severity and draw for ``model`` (a resolved
    :func:`~bids_enhance.inference.weights.resolve_model`); ``axis``: the voxel axis of the
    simulated k-space segments (None: TorchIO's own, the training axis)."""
    from train_default_weights import HELD_OUT, _central_crop, _read_volume

    from bids_enhance.degrade import RandomMotion, degrade
    from bids_enhance.degrade.motion import SEGMENT_AXIS
    from bids_enhance.image.intensity import normalise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint
    from bids_enhance.metrics.quality import evaluate
    from bids_enhance.training.seeding import numpy_generator

    other_axis = axis is not None and axis != SEGMENT_AXIS
    if kspace and other_axis:
        raise ValueError("--kspace splits the error along the training axis: ghosts there only")
    axis = SEGMENT_AXIS if axis is None else axis
    rows = []
    for name in HELD_OUT:
        data, affine = _read_volume(npz_dir, name)
        hr, _ = normalise(_central_crop(data, crop))
        mask = head_mask(hr)
        for severity in severities:
            degrees, mm = SEVERITIES[severity]
            step = RandomMotion(degrees=degrees, translation=mm, num_transforms=2)
            for k in range(realisations):
                key = (seed, "motion-benchmark", name, severity, k, *((axis,) if other_axis
                                                                       else ()))
                # TorchIO's segments lie along its axis: corrupt with ``axis`` moved there
                corrupted, _, records = degrade(
                    np.ascontiguousarray(np.moveaxis(hr, axis, SEGMENT_AXIS)), affine,
                    steps=(step,), rng=numpy_generator(*key))
                corrupted = np.ascontiguousarray(np.moveaxis(corrupted, SEGMENT_AXIS, axis))
                start = time.perf_counter()
                out, _, _ = run_checkpoint(model.path, corrupted, affine,
                                           expected_sha256=model.sha256, consistency=None,
                                           phase_encoding_axis=axis)
                seconds = time.perf_counter() - start
                before = evaluate(hr, corrupted, mask=mask)
                after = evaluate(hr, out, mask=mask)
                rows.append({"head": name, "severity": severity, "realisation": k,
                             "degrees": degrees, "translation_mm": mm, "records": records,
                             "corrupted": before, "model": after, "seconds": seconds})
                print(f"{name} {severity} #{k}: corrupted {before['psnr']:.2f} dB, model "
                      f"{after['psnr']:.2f} dB ({after['psnr'] - before['psnr']:+.2f}), "
                      f"{seconds:.0f} s", flush=True)
                if other_axis:  # the volume as it is, as if its phase encoding were unknown
                    as_is, _, _ = run_checkpoint(model.path, corrupted, affine,
                                                 expected_sha256=model.sha256, consistency=None)
                    rows[-1]["phase_encoding_axis"] = axis
                    rows[-1]["model_as_is"] = evaluate(hr, as_is, mask=mask)
                    print(f"  the volume as it is (ghosts along axis {axis}, not the model's "
                          f"{SEGMENT_AXIS}): "
                          f"{rows[-1]['model_as_is']['psnr'] - before['psnr']:+.2f} dB",
                          flush=True)
                if kspace:
                    rows[-1]["kspace"] = kspace_summary(hr, corrupted, out, records)
    return rows


def table(rows: list[dict], model: str) -> str:
    lines = [f"Model: `{model}`", "",
             "| severity | head | corrupted PSNR (dB) | model PSNR (dB) | gain (dB) | SSIM "
             "corrupted → model | HFEN corrupted → model |",
             "|---|---|---|---|---|---|---|"]
    for severity in SEVERITIES:
        chosen = [r for r in rows if r["severity"] == severity]
        if not chosen:
            continue
        for head in dict.fromkeys(r["head"] for r in chosen):
            rs = [r for r in chosen if r["head"] == head]

            def mean(which, key, rs=rs):
                return float(np.mean([r[which][key] for r in rs]))

            lines.append(
                f"| {severity} (±{SEVERITIES[severity][0]:g}°, ±{SEVERITIES[severity][1]:g} mm) "
                f"| {head} | {mean('corrupted', 'psnr'):.2f} | {mean('model', 'psnr'):.2f} | "
                f"{mean('model', 'psnr') - mean('corrupted', 'psnr'):+.2f} | "
                f"{mean('corrupted', 'ssim'):.3f} → {mean('model', 'ssim'):.3f} | "
                f"{mean('corrupted', 'hfen'):.3f} → {mean('model', 'hfen'):.3f} |")
        gains = [r["model"]["psnr"] - r["corrupted"]["psnr"] for r in chosen]
        lines.append(f"| {severity} | **mean of {len(gains)}** | | | **{np.mean(gains):+.2f}** "
                     f"(worst {min(gains):+.2f}) | | |")
        as_is = [r["model_as_is"]["psnr"] - r["corrupted"]["psnr"] for r in chosen
                 if "model_as_is" in r]
        if as_is:
            lines.append(f"| {severity} | the volume shown as it is (ghosts along axis "
                         f"{chosen[0]['phase_encoding_axis']}, not the training axis 2) | | | "
                         f"{np.mean(as_is):+.2f} (worst {min(as_is):+.2f}) | | |")
    return "\n".join(lines) + "\n"


def kspace_table(rows: list[dict]) -> str:
    """Where the error lies, per row (rows with a ``kspace`` entry)."""
    rows = [r for r in rows if "kspace" in r]
    if not rows:
        return ""
    lines = ["", "Error energy along the last k-space axis (whole volume; *moved lines*: the "
             "k-space lines filled from a moved head; shares of the corrupted input's error):", "",
             "| severity | head | draw | moved lines | model's error in the moved lines "
             "(input = 100 %) | model's error added elsewhere | corrupted → model per band "
             f"(1/{KSPACE_BANDS} of the axis each, centre in the middle; * = mostly moved) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        k = r["kspace"]
        bands = " ".join(f"{b['corrupted'] * 100:.0f}→{b['model'] * 100:.0f}"
                         f"{'*' if b['moved'] > 0.5 else ''}" for b in k["bands"])
        lines.append(f"| {r['severity']} | {r['head']} | {r['realisation']} | "
                     f"{k['moved_share_of_lines'] * 100:.0f} % | "
                     f"{k['model_error_in_moved_lines'] * 100:.1f} % | "
                     f"{k['model_error_in_rest'] * 100:.1f} % | {bands} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from train_default_weights import NPZ_DIR

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", default=None,
                        help="checkpoint or model folder (default: the shipped motion model)")
    parser.add_argument("--severities", nargs="+", choices=tuple(SEVERITIES),
                        default=list(SEVERITIES))
    parser.add_argument("--realisations", type=int, default=2,
                        help="motion draws per head and severity")
    parser.add_argument("--seed", type=int, default=20251127)
    parser.add_argument("--crop", type=int, default=None,
                        help="central crop of this many voxels per axis (default: whole heads)")
    parser.add_argument("--npz-dir", type=Path, default=NPZ_DIR)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--phase-encoding-axis", type=int, choices=(0, 1, 2), default=2,
                        help="voxel axis of the simulated k-space segments, i.e. of the ghosts "
                             "(default 2, TorchIO's and the training's); another axis also "
                             "runs the model on the volume as it is, as if that axis were "
                             "unknown")
    parser.add_argument("--kspace", action="store_true",
                        help="also split each row's error along the last k-space axis into the "
                             "lines from a moved head and the rest (see the module docstring)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "motion")
    args = parser.parse_args(argv)
    if args.realisations < 1:
        parser.error("--realisations must be at least 1")
    if args.kspace and args.phase_encoding_axis != 2:
        parser.error("--kspace splits the error along the last axis: use it with "
                     "--phase-encoding-axis 2")

    import torch

    from bids_enhance.inference.weights import resolve_model

    torch.set_num_threads(args.threads)
    model = resolve_model("motion", args.checkpoint)
    rows = run(model, args.npz_dir, severities=args.severities,
               realisations=args.realisations, seed=args.seed, crop=args.crop,
               kspace=args.kspace, axis=args.phase_encoding_axis)
    args.out.mkdir(parents=True, exist_ok=True)
    text = table(rows, f"{model.path} (sha256 {model.sha256[:12]}…)") + kspace_table(rows)
    (args.out / "motion.json").write_text(json.dumps(
        {"command": " ".join(["python", "benchmarks/motion.py", *(argv or sys.argv[1:])]),
         "rows": rows}, indent=1, default=float))
    (args.out / "motion.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
