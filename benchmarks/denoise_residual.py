#!/usr/bin/env python
"""Method noise of the denoisers on real scans: does the residual hold anatomy? (issue 12)

Protocol: each method of :func:`bids_enhance.classical.denoise` runs on a REAL scan as it is --
no noise added, σ estimated by the method's own estimator (Coupé 2010, Rician), exactly as the
pipeline does. There is no clean reference, so the residual ``r = scan - denoised`` is judged by
:func:`bids_enhance.metrics.residual.residual_structure` (see its docstring for how to read the
numbers): ``edge_correlation`` (local |r| vs. gradient magnitude of the denoised image; ≈ 0 for
pure noise, > 0 when edges leak into r), ``laplacian_correlation`` (r vs. Laplacian of the
denoised image; ≈ 0 for pure noise, strongly negative for a filter that blurs),
``edge_flat_std_ratio`` (std of r on the top-10 % gradient voxels over that on the bottom 50 %;
≈ 1 for pure noise) and ``residual_std``. All methods are scored in the same mask: the head mask
of the whole scan (cropped with it when ``--crop`` is given), so only the filter changes.

A reference row ``pure noise`` scores an ideal denoiser under the same conditions: the first
method's output ``A`` is taken as the truth, Rician noise of that method's σ̂ is drawn on it
(``|A + n1 + i n2|``, seeded) and ``A`` is scored as the denoised image, in the same mask (≈ 0,
≈ 0, ≈ 1, ≈ σ̂). It does not model what the real noise may have and the simulation has not
(spatially varying σ from parallel imaging, correlation from resampling).

``--crop N`` denoises only the central N³ cube of the head's bounding box (quick runs; σ is then
estimated on the crop). The learned method is skipped with a note when its shipped weights
(``<models dir>/denoise_learned/model_card.json``) are missing, unless
``--params '{"learned": {"checkpoint": "PATH"}}'`` names a checkpoint.

Run by hand (not part of the test suite)::

    python benchmarks/denoise_residual.py --threads 2 --out benchmarks/results/denoise_residual

Results: ``<out>.csv`` (one row per volume × method, the columns below) and ``<out>.md``, one table
per volume::

    ## niivue_otsu_T1w_1mm (shape 176x238x169, mask 2,872,447 voxels)

    | method | σ̂ | time (s) | edge corr | Laplacian corr | edge/flat std | residual std |
    |---|---|---|---|---|---|---|
    | prinlm | 3.745 | 9.6 | -0.434 | 0.086 | 0.57 | 2.235 |
    | odct3d | 3.745 | 5.2 | -0.397 | 0.054 | 0.64 | 2.199 |
    | sanlm | 3.745 | 26.3 | 0.274 | -0.163 | 1.48 | 5.688 |
    | pure noise | 3.745 |  | -0.016 | 0.059 | 1.00 | 3.761 |

(``--methods prinlm odct3d sanlm --threads 1``, 2-core x86_64 shared with a training job.)

``--figure`` also saves ``<out>_<volume>.png``: the scan's middle slice along the last axis (the
central half of the head's extent) beside each method's output (top row) and residual (bottom
row, one grey scale for all methods, ±3 σ̂) — to look at what each filter removed.

CSV columns: ``volume, shape, crop, method, sigma, sigma_estimator, elapsed_s,
edge_correlation, laplacian_correlation, edge_flat_std_ratio, residual_std, residual_mean,
edge_residual_std, flat_residual_std, mask_voxels, smoothing, threads``. benchmarks/results/ is
ignored by git.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the other benchmark scripts
from denoise import central_crop  # noqa: E402  (the crop of benchmarks/denoise.py)

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data"  # ../shared/data
DEFAULT_VOLUMES = ("t1_highres/niivue_otsu_T1w_1mm.nii.gz", "t2/arcM2265_T2w_1mm.nii.gz")
METHODS = ("prinlm", "odct3d", "odct3d-wiener", "blockmatch", "sanlm", "learned")
SEED = 20251127
COLUMNS = ("volume", "shape", "crop", "method", "sigma", "sigma_estimator", "elapsed_s",
           "edge_correlation", "laplacian_correlation", "edge_flat_std_ratio", "residual_std",
           "residual_mean", "edge_residual_std", "flat_residual_std", "mask_voxels", "smoothing",
           "threads")


def resolve_volume(spec: str, data_dir: Path) -> Path:
    """A path as given, else relative to ``data_dir``, else ``<data_dir>/*/<spec>.nii.gz``."""
    for candidate in (Path(spec), data_dir / spec):
        if candidate.is_file():
            return candidate
    hits = sorted(data_dir.glob(f"*/{spec}.nii.gz")) + sorted(data_dir.glob(f"*/{spec}"))
    if not hits:
        raise FileNotFoundError(f"volume {spec!r}: not a file, nor under {data_dir}")
    return hits[0]


def learned_available(params: dict) -> tuple[bool, str]:
    """Whether the learned denoiser can run: a checkpoint in ``params`` or shipped weights."""
    if params.get("checkpoint"):
        return True, f"checkpoint {params['checkpoint']}"
    from bids_enhance.inference.weights import DEFAULT_MODELS, models_dir

    card = models_dir() / DEFAULT_MODELS["denoise"] / "model_card.json"
    if card.is_file():
        return True, f"shipped weights {card.parent}"
    return False, (f"no shipped weights ({card} missing); pass "
                   "--params '{\"learned\": {\"checkpoint\": \"PATH\"}}'")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", nargs="+", default=list(DEFAULT_VOLUMES),
                        help="volume paths, paths relative to --data-dir, or names (without "
                             ".nii.gz) found in a sub-folder of --data-dir")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--crop", type=int, default=None,
                        help="denoise only the central N³ cube of the head bounding box")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--smoothing", type=float, default=1.0,
                        help="σ (voxels) of residual_structure")
    parser.add_argument("--params", default="{}",
                        help='JSON {method: {param: value}} passed to the methods')
    parser.add_argument("--figure", action="store_true",
                        help="also save <out>_<volume>.png: middle slice, outputs and residuals")
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/denoise_residual"),
                        help="output prefix: <out>.csv and <out>.md")
    args = parser.parse_args(argv)
    if args.crop is not None and args.crop < 8:
        parser.error(f"--crop must be at least 8 voxels, got {args.crop}")
    try:
        method_params = json.loads(args.params)
    except json.JSONDecodeError as exc:
        parser.error(f"--params is not JSON ({exc})")
    try:
        paths = [resolve_volume(v, args.data_dir) for v in args.volumes]
    except FileNotFoundError as exc:
        parser.error(str(exc))

    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    import nibabel as nib
    import torch

    torch.set_num_threads(args.threads)
    from bids_enhance.classical import denoise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.metrics.residual import residual_structure

    methods = list(args.methods)
    notes: list[str] = []
    if "learned" in methods:
        ok, why = learned_available(method_params.get("learned", {}))
        print(f"learned: {'runs with' if ok else 'SKIPPED,'} {why}", flush=True)
        if not ok:
            methods.remove("learned")
        notes.append(f"learned: {'ran with ' if ok else 'skipped, '}{why}.")

    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    for vi, path in enumerate(paths):
        name = path.name.replace(".nii.gz", "").replace(".nii", "")
        scan = np.asarray(nib.load(path).dataobj, dtype=np.float32)
        head = head_mask(scan)
        if args.crop is not None:
            box = central_crop(head, args.crop)
            scan, head = np.ascontiguousarray(scan[box]), head[box]
        print(f"{name}: shape {scan.shape}, mask {int(head.sum())} voxels", flush=True)
        base = {"volume": name, "shape": "x".join(map(str, scan.shape)),
                "crop": args.crop or "", "threads": args.threads}
        first_out, first_sigma, first_method = None, None, None
        outputs: dict[str, np.ndarray] = {}
        for method in methods:
            try:
                out, info = denoise(scan, method=method, noise_model="rician", sigma=None,
                                    device="cpu", **method_params.get(method, {}))
            except Exception as exc:  # a by-hand benchmark reports the failure and goes on
                print(f"  {method}: FAILED {type(exc).__name__}: {exc}", flush=True)
                notes.append(f"{name} {method}: failed ({type(exc).__name__}: {exc}).")
                continue
            out = np.asarray(out, dtype=np.float32)
            stats = residual_structure(scan, out, head, smoothing=args.smoothing)
            rows.append({**base, "method": method, "sigma": info["sigma"],
                         "sigma_estimator": info["sigma_estimator"],
                         "elapsed_s": info["elapsed_s"], **stats})
            if args.figure:
                outputs[method] = out
            if first_out is None:
                first_out, first_sigma, first_method = out, float(info["sigma"]), method
            print(f"  {method:8s} σ̂ {info['sigma']:.3g}  {info['elapsed_s']:7.1f}s  "
                  f"edge {stats['edge_correlation']:+.3f}  lap "
                  f"{stats['laplacian_correlation']:+.3f}  ratio "
                  f"{stats['edge_flat_std_ratio']:.2f}  std {stats['residual_std']:.3g}",
                  flush=True)
        if first_out is not None:  # what an ideal denoiser would score in this mask
            rng = np.random.default_rng(np.random.SeedSequence([SEED, vi]))
            truth = np.clip(first_out, 0.0, None)
            magnitude = np.hypot(truth + rng.normal(0.0, first_sigma, scan.shape),
                                 rng.normal(0.0, first_sigma, scan.shape))
            stats = residual_structure(magnitude, truth, head, smoothing=args.smoothing)
            rows.append({**base, "method": "pure noise", "sigma": first_sigma,
                         "sigma_estimator": f"Rician noise of {first_method}'s σ on its output",
                         "elapsed_s": "", **stats})
        if args.figure and outputs:
            _figure(args.out.parent / f"{args.out.name}_{name}.png", name, scan, head, outputs,
                    first_sigma)
        _write(args, rows, notes)
    _write(args, rows, notes)
    return 0


def _figure(path: Path, name: str, scan: np.ndarray, head: np.ndarray,
            outputs: dict[str, np.ndarray], sigma: float) -> None:
    """Middle slice (last axis) of the scan, each output (top) and residual (bottom), zoomed on
    the central half of the head's extent in the slice; one grey scale per row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    k = scan.shape[2] // 2
    rows_, cols_ = np.nonzero(head[:, :, k]) if head[:, :, k].any() else np.nonzero(
        np.ones(scan.shape[:2], bool))
    (a0, a1), (b0, b1) = ((int(v.min()), int(v.max()) + 1) for v in (rows_, cols_))
    ca, cb, ha, hb = (a0 + a1) // 2, (b0 + b1) // 2, max((a1 - a0) // 4, 8), max((b1 - b0) // 4, 8)
    box = (slice(max(ca - ha, 0), ca + ha), slice(max(cb - hb, 0), cb + hb), k)
    vmax = float(np.percentile(scan[head], 99.5)) if head.any() else float(scan.max())
    panels = [("scan", scan[box], None)] + [(m, o[box], scan[box] - o[box])
                                            for m, o in outputs.items()]
    fig, axes = plt.subplots(2, len(panels), figsize=(3.2 * len(panels), 6.6), squeeze=False)
    for j, (title, image, residual) in enumerate(panels):
        axes[0, j].imshow(np.rot90(image), cmap="gray", vmin=0, vmax=vmax,
                          interpolation="nearest")
        axes[0, j].set_title(title, fontsize=10)
        if residual is not None:
            axes[1, j].imshow(np.rot90(residual), cmap="gray", vmin=-3 * sigma, vmax=3 * sigma,
                              interpolation="nearest")
            axes[1, j].set_title(f"{title}: scan − output", fontsize=9)
        for ax in axes[:, j]:
            ax.axis("off")
    fig.suptitle(f"{name}, slice {k} of axis 2 (residuals ±3 σ̂ = {3 * sigma:.3g})", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  figure: {path}", flush=True)


def _fmt(value, digits: int = 3) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return ""
    return "" if not np.isfinite(value) else f"{value:.{digits}f}"


def _write(args, rows: list[dict], notes: list[str]) -> None:
    with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    import torch

    lines = [f"# Method noise of the denoisers on real scans ({time.strftime('%Y-%m-%d %H:%M')})",
             "", f"Command: `python benchmarks/denoise_residual.py {' '.join(sys.argv[1:])}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"torch threads {args.threads}; Python {platform.python_version()}, "
             f"torch {torch.__version__}, numpy {np.__version__}", "",
             "No noise added; σ̂ = the method's own estimate. Residual r = scan − denoised, "
             f"scored in the head mask (smoothing σ {args.smoothing:g} voxel): edge corr ≈ 0, "
             "Laplacian corr ≈ 0 and edge/flat std ≈ 1 for pure noise (row `pure noise`); "
             "edge corr > 0, Laplacian corr ≪ 0, edge/flat > 1 when anatomy is removed.", ""]
    volumes = list(dict.fromkeys(r["volume"] for r in rows))
    for volume in volumes:
        group = [r for r in rows if r["volume"] == volume]
        crop = f", crop {args.crop}" if args.crop else ""
        lines += [f"## {volume} (shape {group[0]['shape']}{crop}, mask "
                  f"{group[0]['mask_voxels']:,} voxels)", "",
                  "| method | σ̂ | time (s) | edge corr | Laplacian corr | edge/flat std | "
                  "residual std |", "|---|---|---|---|---|---|---|"]
        for r in group:
            lines.append(f"| {r['method']} | {_fmt(r['sigma'], 3)} | {_fmt(r['elapsed_s'], 1)} | "
                         f"{_fmt(r['edge_correlation'])} | {_fmt(r['laplacian_correlation'])} | "
                         f"{_fmt(r['edge_flat_std_ratio'], 2)} | {_fmt(r['residual_std'], 3)} |")
        lines.append("")
    if notes:
        lines += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    args.out.with_suffix(".md").write_text("\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())
