#!/usr/bin/env python
"""x2 super-resolution benchmark on held-out real T1w heads: interpolation baselines and
trained checkpoints.

Protocol (docs/benchmarks/superres.md, METHODS.md "Evaluation protocol"):

- **Reference**: a real ≤ 1 mm T1w volume of ``../shared/data/t1_highres`` that no default
  model was trained on (held out: ``niivue_otsu_T1w_1mm``, ``arc2017_T1w_1mm``), cropped to
  even sizes.
- **Input**: its 2×2×2 box average (:func:`bids_enhance.degrade.downsample`, method ``box``;
  the LR affine carries the half-voxel offset).
- **Methods**: trilinear, cubic B-spline and zero-filled k-space interpolation at the exact x2
  coordinates (:func:`bids_enhance.inference.upsample_baseline`), the cubic B-spline with the
  half-voxel offset ignored (what the exact geometry is worth), and every ``--checkpoint``
  through :func:`bids_enhance.inference.run_checkpoint` (the participant workflow's inference:
  memory-budgeted whole volume or blended patches, bf16 on CUDA), with its data-consistency
  error.
- **Metrics** (:func:`bids_enhance.metrics.quality.evaluate`, protocol mode): reference and
  output divided by the reference's 99.9th percentile inside the head mask
  (:func:`bids_enhance.image.mask.head_mask` of the reference; for the skull-stripped
  ``arc2017`` that is the brain); PSNR (data range 1), 3D SSIM (Gaussian window σ 1.5, never
  slice-wise), HFEN (LoG σ 1.5) inside that mask.
- ``--noise 0.03 0.06 0.09``: the LR input also gets Rician noise, σ = that fraction of its
  robust maximum (99.9th percentile of the voxels > 0), seeded; methods: cubic B-spline of the
  noisy input, PRI-NLM and ODCT3D (σ estimated, as ``--enhance denoise`` runs them) then cubic
  B-spline, every ``--checkpoint`` (a DISGAN model denoises and super-resolves in one pass), and
  with ``--after-denoise LABEL`` that checkpoint on ODCT3D's output (the ``--enhance denoise
  superres`` chain).

Volumes are read with nibabel from ``--data-dir``, or from the ``.npz`` files that
``benchmarks/train_default_weights.py prep`` writes (``--npz-dir``; no nibabel needed, e.g. on
a GPU node). Run by hand (not part of the test suite)::

    python benchmarks/superres.py --noise 0.03 0.06 0.09 --out benchmarks/results/superres
    python benchmarks/superres.py --checkpoint gan3p_x2=bids_enhance/data/models/gan3p_x2 \\
        --device cuda --npz-dir benchmarks/results/t1_highres_npz --out benchmarks/results/sr_gpu

Results: ``<out>.json`` and ``<out>.md`` (``benchmarks/results/`` is ignored by git); the curated
tables live in docs/benchmarks/superres.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "t1_highres"  # ../shared/data
#: held out from every default model's training (benchmarks/train_default_weights.py)
HELD_OUT = ("niivue_otsu_T1w_1mm", "arc2017_T1w_1mm")
BASELINES = ("trilinear", "cubic", "kspace")
SEED = 20251127


def load_volume(name: str, *, data_dir: Path, npz_dir: Path | None) -> tuple[np.ndarray,
                                                                              np.ndarray]:
    """``(data float32, affine)`` of volume ``name`` from an ``.npz`` or a NIfTI."""
    if npz_dir is not None:
        with np.load(npz_dir / f"{name}.npz") as npz:
            return npz["data"].astype(np.float32), npz["affine"].astype(np.float64)
    import nibabel as nib

    img = nib.load(str(data_dir / f"{name}.nii.gz"))
    return img.get_fdata(dtype=np.float32), img.affine


def _even(data: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(data[tuple(slice(0, n - n % 2) for n in data.shape)])


def _metrics(ref, out, mask) -> dict:
    from bids_enhance.metrics.quality import evaluate, psnr

    metrics = evaluate(ref, out, mask=mask)
    # METHODS.md's thesis-compatible PSNR (whole volume, data range max − min), to compare with
    # the published tables; background voxels make it far higher than the head-mask protocol.
    metrics["psnr_thesis"] = psnr(ref, out, data_range=float(ref.max() - ref.min()))
    return metrics


def run_volume(name: str, hr: np.ndarray, affine: np.ndarray, *, checkpoints: dict[str, str],
               noise: list[float], device: str, mem_gb: float | None,
               after_denoise: tuple[str, ...] = ()) -> list[dict]:
    from bids_enhance.degrade import add_rician_noise, downsample, sigma_from_fraction
    from bids_enhance.image.mask import head_mask
    from bids_enhance.inference import run_checkpoint, upsample_baseline

    hr = _even(hr)
    mask = head_mask(hr)
    lr, lr_affine = downsample(hr, affine, method="box")
    rows: list[dict] = []

    def record(method: str, level: float | None, out: np.ndarray, seconds: float,
               **extra) -> None:
        metrics = _metrics(hr, out, mask)
        rows.append({"volume": name, "noise": level, "method": method, "seconds": seconds,
                     **metrics, **extra})
        print(f"{name:24s} noise={level!s:5s} {method:34s} PSNR {metrics['psnr']:6.2f} "
              f"SSIM {metrics['ssim']:.4f} HFEN {metrics['hfen']:.4f} ({seconds:.1f} s)",
              flush=True)

    def baseline(data, kind):
        t0 = time.perf_counter()
        out, out_affine = upsample_baseline(data, lr_affine, kind=kind, method="box")
        assert np.allclose(out_affine, affine) and out.shape == hr.shape
        return out, time.perf_counter() - t0

    def model(data, path):
        t0 = time.perf_counter()
        out, out_affine, info = run_checkpoint(path, data, lr_affine, device=device,
                                               consistency="measure", mem_budget_gb=mem_gb)
        assert np.allclose(out_affine, affine, atol=1e-5) and out.shape == hr.shape
        return out, time.perf_counter() - t0, info

    for kind in BASELINES:
        out, seconds = baseline(lr, kind)
        record(kind, None, out, seconds)
    # the same cubic B-spline with the half-voxel offset of the box geometry ignored (HR voxel
    # j read at LR coordinate j/2): what the exact geometry is worth on this volume
    from scipy import ndimage

    t0 = time.perf_counter()
    naive = ndimage.affine_transform(lr.astype(np.float64), [0.5, 0.5, 0.5], offset=0.0,
                                     output_shape=hr.shape, order=3, mode="reflect")
    record("cubic, half-voxel offset ignored", None, naive.astype(np.float32),
           time.perf_counter() - t0)
    for label, path in checkpoints.items():
        out, seconds, info = model(lr, path)
        record(label, None, out, seconds, sha256=info["sha256"], mode=info.get("mode"),
               consistency_rmse_percent=info["consistency"]["rmse_percent"])

    for index, level in enumerate(noise):
        rng = np.random.default_rng(np.random.SeedSequence([SEED, HELD_OUT.index(name)
                                                            if name in HELD_OUT else 99, index]))
        sigma = sigma_from_fraction(lr, level)
        noisy = add_rician_noise(lr, sigma=sigma, rng=rng)
        out, seconds = baseline(noisy, "cubic")
        record("cubic (noisy input)", level, out, seconds)
        from bids_enhance.classical import denoise

        t0 = time.perf_counter()
        denoised, info = denoise(noisy, method="prinlm", noise_model="rician")
        out, seconds = baseline(denoised, "cubic")
        record("PRI-NLM (estimated σ) → cubic", level, out, time.perf_counter() - t0,
               sigma_estimated=float(info["sigma"]), sigma_added=float(sigma))
        t0 = time.perf_counter()
        filtered, info = denoise(noisy, method="odct3d", noise_model="rician")
        seconds_odct = time.perf_counter() - t0
        out, seconds = baseline(filtered, "cubic")
        record("ODCT3D (estimated σ) → cubic", level, out, seconds_odct + seconds,
               sigma_estimated=float(info["sigma"]), sigma_added=float(sigma))
        for label, path in checkpoints.items():
            out, seconds, info = model(noisy, path)
            record(label, level, out, seconds, sha256=info["sha256"],
                   consistency_rmse_percent=info["consistency"]["rmse_percent"])
        for label in after_denoise:  # the `--enhance denoise superres` chain
            out, seconds, info = model(filtered, checkpoints[label])
            record(f"ODCT3D → {label}", level, out, seconds_odct + seconds,
                   sha256=info["sha256"])
    return rows


def markdown(rows: list[dict]) -> str:
    lines = []
    volumes = list(dict.fromkeys(r["volume"] for r in rows))
    for name in volumes:
        clean = [r for r in rows if r["volume"] == name and r["noise"] is None]
        lines += [f"#### `{name}` — x2 of the 2×2×2 box average", "",
                  "| method | PSNR (dB) | SSIM 3D | HFEN | PSNR, thesis mode (dB) | seconds |",
                  "|---|---|---|---|---|---|"]
        for r in clean:
            lines.append(f"| {r['method']} | {r['psnr']:.2f} | {r['ssim']:.4f} | "
                         f"{r['hfen']:.4f} | {r['psnr_thesis']:.2f} | {r['seconds']:.1f} |")
        lines.append("")
        levels = sorted({r["noise"] for r in rows if r["volume"] == name and r["noise"]})
        if levels:
            head = " | ".join(f"{100 * lv:g} % PSNR / SSIM / HFEN" for lv in levels)
            lines += [f"#### `{name}` — x2 of the box average with Rician noise", "",
                      f"| method | {head} |", "|---" * (len(levels) + 1) + "|"]
            methods = list(dict.fromkeys(r["method"] for r in rows
                                         if r["volume"] == name and r["noise"]))
            for method in methods:
                cells = []
                for lv in levels:
                    hit = [r for r in rows if r["volume"] == name and r["noise"] == lv
                           and r["method"] == method]
                    cells.append(f"{hit[0]['psnr']:.2f} / {hit[0]['ssim']:.4f} / "
                                 f"{hit[0]['hfen']:.4f}" if hit else "–")
                lines.append(f"| {method} | " + " | ".join(cells) + " |")
            lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--volumes", nargs="+", default=list(HELD_OUT))
    parser.add_argument("--checkpoint", action="append", default=[], metavar="LABEL=PATH",
                        help="a checkpoint.pt or a model folder with model_card.json")
    parser.add_argument("--noise", nargs="*", type=float, default=[],
                        help="Rician noise levels as fractions of the robust maximum")
    parser.add_argument("--after-denoise", nargs="*", default=[], metavar="LABEL",
                        help="with --noise: also run these --checkpoint labels on the ODCT3D "
                             "output (the `--enhance denoise superres` chain)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--mem", type=float, default=None,
                        help="inference memory budget in GB (default: a share of free memory)")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--npz-dir", type=Path, default=None)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "superres")
    args = parser.parse_args(argv)
    sys.path.insert(0, str(ROOT))

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    checkpoints = {}
    for item in args.checkpoint:
        label, sep, path = item.partition("=")
        if not sep:
            label, path = Path(item).stem, item
        target = Path(path)
        if target.is_dir():
            card = json.loads((target / "model_card.json").read_text())
            target = target / card["checkpoint"]["file"]
        checkpoints[label] = str(target)
    unknown = sorted(set(args.after_denoise) - set(checkpoints))
    if unknown:
        parser.error(f"--after-denoise names no --checkpoint label: {', '.join(unknown)}")
    rows = []
    t0 = time.perf_counter()
    for name in args.volumes:
        data, affine = load_volume(name, data_dir=args.data_dir, npz_dir=args.npz_dir)
        rows += run_volume(name, data, affine, checkpoints=checkpoints, noise=list(args.noise),
                           device=args.device, mem_gb=args.mem,
                           after_denoise=tuple(args.after_denoise))
    from bids_enhance.utils import dump_json, software_versions

    meta = {"command": " ".join(["python", "benchmarks/superres.py", *(argv or sys.argv[1:])]),
            "machine": platform.platform(), "python": platform.python_version(),
            "software": software_versions(), "threads": torch.get_num_threads(),
            "device": args.device, "seconds": time.perf_counter() - t0, "seed": SEED}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(dump_json({"meta": meta, "rows": rows}))
    args.out.with_suffix(".md").write_text(markdown(rows) + "\n")
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
