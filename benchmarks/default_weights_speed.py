#!/usr/bin/env python
"""Whole-head CPU time and peak memory of the shipped default weights, as a user runs them.

For each shipped step, one child process (so that its memory peak is its own) loads the
verified default checkpoint and runs :func:`bids_enhance.inference.run_checkpoint` — the call
the participant workflow makes — on a whole real 1 mm head: ``superres`` and
``superres-denoise`` on its 2×2×2 box average (``niivue_otsu_T1w_1mm``: 176×238×169 → LR
88×119×84 → x2 176×238×168, about the 90×108×90 → 180×216×180 of a 2 mm acquisition), ``motion``
on the 1 mm head itself, ``denoise`` (``--denoise-method learned``: the network averaged with
PRI-NLM by SURE) on the 1 mm head with 3 % Rician noise, σ estimated as a participant run does;
``denoise-network`` the same without the average (the network alone). Wall time covers loading, normalisation,
inference (and the learned denoiser's prefilter) and, for x2, the consistency measurement; peak
memory is the child's maximum resident set size.

    python benchmarks/train_default_weights.py prep      # once: the .npz volumes
    python benchmarks/default_weights_speed.py --threads 2
    python benchmarks/default_weights_speed.py --threads 2 --steps denoise denoise-network
    python benchmarks/default_weights_speed.py --threads 2 --steps denoise \
        --checkpoint denoise=PATH     # a model that does not ship (yet)
    python benchmarks/default_weights_speed.py --threads 2 --steps denoise \
        --head arcM2265_T2w_1mm --name denoise_speed_t2w   # another volume of --npz-dir

Writes ``benchmarks/results/<--name>.{json,md}`` (default ``default_weights_speed``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
HEAD = "niivue_otsu_T1w_1mm"
#: The learned denoiser as it runs (averaged with PRI-NLM) and its network alone.
DENOISE_STEPS = ("denoise", "denoise-network")


def worker(step: str, npz_dir: Path, threads: int, checkpoint: str | None = None,
           head: str = HEAD, profile: Path | None = None) -> dict:
    import numpy as np
    import torch

    torch.set_num_threads(threads)
    from bids_enhance.degrade import degrade
    from bids_enhance.inference import run_checkpoint
    from bids_enhance.inference.weights import resolve_model

    with np.load(npz_dir / f"{head}.npz") as npz:
        data = npz["data"].astype(np.float32)
        affine = npz["affine"].astype(np.float64)
    data = data[tuple(slice(0, n - n % 2) for n in data.shape)]
    if step == "motion":
        volume, vol_affine = data, affine
    elif step in DENOISE_STEPS:
        volume, vol_affine, _ = degrade(data, affine, steps="noise-rician-3", rng=0)
    else:
        volume, vol_affine, _ = degrade(data, affine, steps="sr-box-x2", rng=0)
    model = resolve_model("denoise" if step in DENOISE_STEPS else step, checkpoint)
    if profile is not None:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    t0 = time.perf_counter()
    if step in DENOISE_STEPS:  # what the denoise node runs: σ estimated, then the learned method
        from bids_enhance.classical import denoise

        extra = {"aggregate": None} if step == "denoise-network" else {}
        out, info = denoise(volume, method="learned", checkpoint=str(model.path),
                            sha256=model.sha256, **extra)
        info["mode"] = info["model"].get("mode")
        aggregate = info["model"].get("aggregate") or {}  # the average with PRI-NLM, if any
        info["aggregate"] = {k: aggregate.get(k) for k in
                             ("weight", "sure_weight", "estimated_gain_db", "applied")
                             if k in aggregate} or None
    else:
        out, _, info = run_checkpoint(model.path, volume, vol_affine,
                                      expected_sha256=model.sha256,
                                      consistency=None if step == "motion" else "measure")
    seconds = time.perf_counter() - t0
    if profile is not None:
        import io
        import pstats

        profiler.disable()
        text = io.StringIO()
        pstats.Stats(profiler, stream=text).sort_stats("cumulative").print_stats(40)
        profile.write_text(text.getvalue())
    return {"step": step, "head": head, "model": Path(model.path).parent.name,
            "input_shape": list(volume.shape),
            "output_shape": list(out.shape), "seconds": seconds,
            "mode": info.get("mode"), "threads": threads, "aggregate": info.get("aggregate"),
            "peak_rss_gib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20}


def main(argv: list[str] | None = None) -> int:
    import train_default_weights as tdw

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", nargs="+", default=["superres", "motion"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--npz-dir", type=Path, default=tdw.NPZ_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results")
    parser.add_argument("--name", default="default_weights_speed",
                        help="file name of the tables in --out (.json, .md)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="STEP=PATH",
                        help="run this checkpoint for STEP instead of the shipped weights")
    parser.add_argument("--head", default=HEAD,
                        help=f"the volume (an .npz of --npz-dir; default {HEAD})")
    parser.add_argument("--profile", action="store_true",
                        help="also write each step's cProfile (40 costliest calls, cumulative) "
                             "to <out>/<name>_<step>.prof.txt (the profiler adds a little time)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--profile-to", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    checkpoints = dict(item.split("=", 1) for item in args.checkpoint)
    if args.worker:
        print(json.dumps(worker(args.worker, args.npz_dir, args.threads,
                                checkpoints.get(args.worker), args.head, args.profile_to)))
        return 0
    rows = []
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "PYTHONPATH": str(ROOT)}
    for step in args.steps:
        extra = [f"--checkpoint={step}={checkpoints[step]}"] if step in checkpoints else []
        if args.profile:
            args.out.mkdir(parents=True, exist_ok=True)
            extra.append(f"--profile-to={args.out / f'{args.name}_{step}.prof.txt'}")
        proc = subprocess.run([sys.executable, __file__, "--worker", step, "--threads",
                               str(args.threads), "--npz-dir", str(args.npz_dir),
                               "--head", args.head, *extra],
                              capture_output=True, text=True, env=env, check=True)
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    lines = [f"`python benchmarks/default_weights_speed.py --threads {args.threads}` on "
             f"{machine}, {os.cpu_count()} cores, torch CPU, {args.threads} thread(s); "
             f"head: {args.head}.", "",
             "| step | model | input | output | mode | seconds | peak memory (GiB) |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['step']} | {r['model']} | {'×'.join(map(str, r['input_shape']))} | "
                     f"{'×'.join(map(str, r['output_shape']))} | {r['mode']} | "
                     f"{r['seconds']:.1f} | {r['peak_rss_gib']:.2f} |")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"{args.name}.json").write_text(json.dumps(rows, indent=2) + "\n")
    (args.out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
