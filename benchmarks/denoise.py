#!/usr/bin/env python
"""Benchmark of the classical denoisers against dipy, ANTs and BM4D on real T1w volumes.

Protocol (docs/benchmarks/denoise.md): a real T1w volume is the reference; Rician noise with σ =
3, 6, 9 % of its robust maximum (99.9th percentile of the non-zero voxels) is added with a seeded
``numpy.random.default_rng``. Every method gets the true σ (oracle) unless its name ends in
``-est`` (our Coupé estimator inside the timed call). Reference and output are divided by the
reference's 99.9th percentile inside the head mask; PSNR (data range 1) and 3D SSIM (Gaussian
window σ = 1.5) are computed inside the head mask, PSNR also inside the brain for skull-stripped
volumes (head mask = brain there) and inside a central crop (``--crop``) — the only region where
BM4D runs, because it takes minutes per 112³ block on two cores.

Every method runs in a child process (``--worker``) so its wall time and peak RSS are its own;
thread counts are set through ``--threads`` for all libraries (torch, OpenMP, MKL, ITK).

Run by hand (not part of the test suite)::

    python benchmarks/denoise.py --threads 2 --out benchmarks/results/denoise

Results: ``<out>.csv`` (long format) and ``<out>.md`` (tables) — benchmarks/results/ is ignored
by git; the curated table lives in docs/benchmarks/denoise.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "t1_highres"  # ../shared/data
DEFAULT_VOLUMES = ("niivue_otsu_T1w_1mm", "niivue_T1wGd_brain_1mm", "arc2017_T1w_1mm")
#: Volumes whose head mask is the brain (skull-stripped before publication).
SKULL_STRIPPED = ("niivue_T1wGd_brain_1mm", "arc2017_T1w_1mm")
DEFAULT_LEVELS = (3.0, 6.0, 9.0)
METHODS = ("prinlm", "prinlm-est", "odct3d", "odct3d-est", "odct3d-wiener", "odct3d-wiener-est",
           "blockmatch", "blockmatch-est",
           "sanlm", "learned", "learned-est", "dipy", "ants", "bm4d", "dipy-classic")
#: Methods that run on the central crop only (minutes per 112³ block on two cores).
CROP_ONLY = ("bm4d", "dipy-classic")
SEED = 20251127


# ---------------------------------------------------------------------------------------------
# worker (child process): run one method on one .npy volume
# ---------------------------------------------------------------------------------------------
def _rss_mb(field: str = "VmRSS") -> float:
    """Current (``VmRSS``) or peak (``VmHWM``) resident set size of this process in MB.

    ``ru_maxrss`` is not used: Linux carries it over from the forking parent across ``execve``,
    so a child would report at least the driver's RSS.
    """
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024.0
    return float("nan")


def _prepare(method: str, sigma: float, threads: int, params: dict):
    """Import the method's library and return ``f(noisy) -> (out, extra)``; imports and
    one-off setup stay outside the timed call."""
    if method.removesuffix("-est") in ("prinlm", "odct3d", "odct3d-wiener", "blockmatch", "sanlm",
                                       "learned"):
        import torch

        torch.set_num_threads(threads)
        from bids_enhance.classical import denoise

        name = method.removesuffix("-est")
        user_sigma = None if method.endswith("-est") else sigma

        def run(noisy):
            out, info = denoise(noisy, method=name, noise_model="rician", sigma=user_sigma,
                                **params)
            extra = {"sigma_used": info["sigma"], "parameters": info["parameters"]}
            aggregate = (info.get("model") or {}).get("aggregate")
            if aggregate:  # the learned method's SURE-weighted average with PRI-NLM
                extra["sure_weight"] = aggregate["weight"]  # the weight applied
                extra["sure_best_weight"] = aggregate.get("sure_weight")
                extra["sure_gain_db"] = aggregate.get("estimated_gain_db")
            return out, extra

        return run
    if method in ("dipy", "dipy-classic"):
        from dipy.denoise.nlmeans import nlmeans

        variant = "classic" if method == "dipy-classic" else "blockwise"

        def run(noisy):
            out = nlmeans(noisy.astype(np.float64), sigma=float(sigma), rician=True,
                          num_threads=threads, method=variant, **params)
            return out.astype(np.float32), {"sigma_used": sigma}

        return run
    if method == "ants":
        import ants

        def run(noisy):
            img = ants.from_numpy(noisy.astype(np.float32))
            out = ants.denoise_image(img, noise_model="Rician", **params).numpy()
            return out.astype(np.float32), {"sigma_used": None}  # adaptive: takes no σ

        return run
    if method == "bm4d":
        import bm4d

        def run(noisy):
            out = bm4d.bm4d(noisy.astype(np.float32), float(sigma), **params)
            return np.asarray(out, dtype=np.float32), {"sigma_used": sigma}

        return run
    raise ValueError(f"unknown method {method!r}; expected one of {METHODS}")


def worker(args: argparse.Namespace) -> None:
    noisy = np.load(args.input)
    params = json.loads(args.params) if args.params else {}
    run = _prepare(args.worker, args.sigma, args.threads, params)
    before = _rss_mb()
    start = time.perf_counter()
    out, extra = run(noisy)
    elapsed = time.perf_counter() - start
    peak = _rss_mb("VmHWM")
    np.save(args.output, np.asarray(out, dtype=np.float32))
    print(json.dumps({"elapsed_s": elapsed, "peak_rss_mb": peak, "rss_before_mb": before,
                      **extra}))


def run_child(method: str, noisy: np.ndarray, sigma: float, threads: int, params: dict,
              tmp: Path) -> tuple[np.ndarray, dict]:
    src, dst = tmp / "in.npy", tmp / "out.npy"
    np.save(src, noisy)
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS", "NUMBA_NUM_THREADS"):
        env[var] = str(threads)
    cmd = [sys.executable, __file__, "--worker", method, "--input", str(src), "--output",
           str(dst), "--sigma", repr(float(sigma)), "--threads", str(threads),
           "--params", json.dumps(params)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed:\n{proc.stderr[-4000:]}")
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    return np.load(dst), record


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def central_crop(mask: np.ndarray, size: int) -> tuple[slice, ...]:
    """Cube of edge ``size`` (clipped to the volume) centred on the mask's bounding box."""
    idx = np.argwhere(mask)
    centre = (idx.min(0) + idx.max(0)) // 2
    box = []
    for c, n in zip(centre, mask.shape, strict=True):
        edge = min(size, n)
        lo = int(np.clip(c - edge // 2, 0, n - edge))
        box.append(slice(lo, lo + edge))
    return tuple(box)


def evaluate(ref: np.ndarray, out: np.ndarray, masks: dict[str, np.ndarray | None],
             crop: tuple[slice, ...], crop_only: bool) -> dict:
    """Metrics of ``out`` against ``ref`` after normalising both by the reference's 99.9th
    percentile in the head mask. ``crop_only``: ``out`` covers the crop only."""
    from bids_enhance.metrics.quality import normalise_to_reference, psnr, ssim3d

    if crop_only:
        full = np.zeros_like(ref)
        full[crop] = out
        out = full
    ref_n, out_n = normalise_to_reference(ref, out, mask=masks["head"])
    row: dict = {}
    if not crop_only:
        for name, mask in masks.items():
            row[f"psnr_{name}"] = float("nan") if mask is None else psnr(ref_n, out_n, mask=mask)
        row["ssim_head"] = ssim3d(ref_n, out_n, mask=masks["head"])
    crop_mask = masks["head"][crop]
    row["psnr_crop"] = psnr(ref_n[crop], out_n[crop], mask=crop_mask)
    row["ssim_crop"] = ssim3d(ref_n[crop], out_n[crop], mask=crop_mask)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--volumes", nargs="+", default=list(DEFAULT_VOLUMES),
                        help="volume names in --data-dir (without .nii.gz) or paths")
    parser.add_argument("--levels", nargs="+", type=float, default=list(DEFAULT_LEVELS),
                        help="noise levels in %% of the robust maximum")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--crop", type=int, default=112,
                        help="edge of the central crop (BM4D runs there only)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=1,
                        help="runs per method; the fastest wall time is reported (noisy hosts)")
    parser.add_argument("--skip-slow-repeats", action="store_true",
                        help="repeat only methods that took < 60 s")
    parser.add_argument("--params", default="{}",
                        help='JSON {method: {param: value}} passed to the methods')
    parser.add_argument("--data-dir", type=Path, default=DATA_DIR)
    parser.add_argument("--thick", type=int, default=1,
                        help="average this many slices along the last voxel axis first: an "
                             "anisotropic reference (e.g. 3: 1×1×3 mm from a 1 mm volume)")
    parser.add_argument("--index-offset", type=int, default=0,
                        help="position of the first --volumes entry in the run whose noise "
                             "this one repeats (the noise seed is SEED, position, level): e.g. "
                             "1 to add methods to the second volume of an earlier run")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/denoise"),
                        help="output prefix: <out>.csv and <out>.md")
    # worker mode (internal)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--input", help=argparse.SUPPRESS)
    parser.add_argument("--output", help=argparse.SUPPRESS)
    parser.add_argument("--sigma", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        worker(args)
        return 0

    import nibabel as nib

    from bids_enhance.classical import estimate_noise_sigma
    from bids_enhance.degrade import add_rician_noise
    from bids_enhance.degrade.noise import sigma_from_fraction
    from bids_enhance.image.mask import head_mask

    method_params = json.loads(args.params)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    rows: list[dict] = []
    estimator_rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        for vi, vol_name in enumerate(args.volumes):
            path = Path(vol_name)
            if not path.exists():
                path = args.data_dir / f"{vol_name}.nii.gz"
            name = path.name.replace(".nii.gz", "").replace(".nii", "")
            clean = np.asarray(nib.load(path).dataobj, dtype=np.float32)
            if args.thick > 1:  # thick slices: the mean of each run of `thick` slices
                k, n = args.thick, clean.shape[2] - clean.shape[2] % args.thick
                clean = clean[:, :, :n].reshape(*clean.shape[:2], n // k, k).mean(axis=3)
                name += f"_thick{k}"
            head = head_mask(clean)
            masks = {"head": head, "brain": head if name in SKULL_STRIPPED else None}
            crop = central_crop(head, args.crop)
            sigma0 = estimate_noise_sigma(clean)  # intrinsic noise of the reference
            print(f"{name}: shape {clean.shape}, head {head.sum()} voxels, "
                  f"intrinsic σ estimate {sigma0:.3g}", flush=True)
            for li, level in enumerate(args.levels):
                sigma = sigma_from_fraction(clean, level / 100.0)
                rng = np.random.default_rng(np.random.SeedSequence(
                    [SEED, vi + args.index_offset, li]))
                noisy = add_rician_noise(clean, sigma=sigma, rng=rng)
                est = estimate_noise_sigma(noisy)
                estimator_rows.append({
                    "volume": name, "level_pct": level, "sigma_true": sigma,
                    "sigma_est": est, "rel_error_vs_added": est / sigma - 1,
                    "sigma_total": float(np.hypot(sigma, sigma0)),
                    "rel_error_vs_total": est / float(np.hypot(sigma, sigma0)) - 1,
                })
                base = {"volume": name, "level_pct": level, "sigma": sigma,
                        "threads": args.threads}
                rows.append({**base, "method": "noisy",
                             **evaluate(clean, noisy, masks, crop, False)})
                for method in args.methods:
                    crop_only = method in CROP_ONLY
                    inp = np.ascontiguousarray(noisy[crop]) if crop_only else noisy
                    try:
                        out, rec = run_child(method, inp, sigma, args.threads,
                                             method_params.get(method, {}), tmp)
                        for _ in range(args.repeat - 1):
                            if args.skip_slow_repeats and rec["elapsed_s"] > 60:
                                break
                            _, again = run_child(method, inp, sigma, args.threads,
                                                 method_params.get(method, {}), tmp)
                            if again["elapsed_s"] < rec["elapsed_s"]:
                                rec = again
                    except RuntimeError as exc:
                        print(f"  {method}: FAILED {exc}", flush=True)
                        continue
                    row = {**base, "method": method, "region": "crop" if crop_only else "whole",
                           "voxels": int(inp.size), "elapsed_s": rec["elapsed_s"],
                           "peak_rss_mb": rec["peak_rss_mb"],
                           "extra_rss_mb": rec["peak_rss_mb"] - rec["rss_before_mb"],
                           "sigma_used": rec.get("sigma_used"),
                           "sure_weight": rec.get("sure_weight"),
                           "sure_best_weight": rec.get("sure_best_weight"),
                           "sure_gain_db": rec.get("sure_gain_db"),
                           **evaluate(clean, out, masks, crop, crop_only)}
                    rows.append(row)
                    print(f"  {level:g}% {method:11s} {row['elapsed_s']:7.1f}s "
                          f"{row['peak_rss_mb']:7.0f}MB  head {row.get('psnr_head', np.nan):.2f}"
                          f"  brain {row.get('psnr_brain', np.nan):.2f}  crop "
                          f"{row['psnr_crop']:.2f}", flush=True)
                _write(args, rows, estimator_rows)
    _write(args, rows, estimator_rows)
    return 0


def _write(args, rows: list[dict], estimator_rows: list[dict]) -> None:
    import pandas as pd

    df = pd.DataFrame(rows)
    df.to_csv(args.out.with_suffix(".csv"), index=False)
    pd.DataFrame(estimator_rows).to_csv(args.out.with_name(args.out.name + "_sigma.csv"),
                                        index=False)
    lines = [f"# Denoising benchmark ({time.strftime('%Y-%m-%d %H:%M')})", "",
             f"Command: `python benchmarks/denoise.py {' '.join(sys.argv[1:])}`", "",
             f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
             f"threads {args.threads}; Python {platform.python_version()}", ""]
    for name, group in df.groupby("volume", sort=False):
        lines += [f"## {name}", "",
                  "| method | " + " | ".join(
                      f"{lv:g} %: PSNR head / brain / crop, SSIM head" for lv in
                      sorted(group.level_pct.unique())) + " | time (s) | peak RSS (MB) |",
                  "|---|" + "---|" * (group.level_pct.nunique() + 2)]
        for method, mg in group.groupby("method", sort=False):
            cells = []
            for lv in sorted(group.level_pct.unique()):
                r = mg[mg.level_pct == lv]
                if r.empty:
                    cells.append("")
                    continue
                r = r.iloc[0]
                cells.append(" / ".join(_fmt(r.get(k)) for k in
                                        ("psnr_head", "psnr_brain", "psnr_crop"))
                             + f", {_fmt(r.get('ssim_head'), 4)}")
            t = mg["elapsed_s"].mean() if "elapsed_s" in mg else float("nan")
            m = mg["peak_rss_mb"].max() if "peak_rss_mb" in mg else float("nan")
            lines.append(f"| {method} | " + " | ".join(cells) + f" | {_fmt(t, 1)} | {_fmt(m, 0)} |")
        lines.append("")
    if estimator_rows:
        lines += ["## Noise estimator (Coupé 2010, Rician corrected)", "",
                  "| volume | level | σ true | σ est | error vs added σ | error vs total σ |",
                  "|---|---|---|---|---|---|"]
        for r in estimator_rows:
            lines.append(f"| {r['volume']} | {r['level_pct']:g} % | {r['sigma_true']:.3g} | "
                         f"{r['sigma_est']:.3g} | {100 * r['rel_error_vs_added']:+.1f} % | "
                         f"{100 * r['rel_error_vs_total']:+.1f} % |")
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def _fmt(value, digits: int = 2) -> str:
    try:
        value = float(value)
    except (TypeError, ValueError):
        return "–"
    return "–" if not np.isfinite(value) else f"{value:.{digits}f}"


if __name__ == "__main__":
    sys.exit(main())
