#!/usr/bin/env python
"""Throughput and peak memory of one three-player GAN training step.

One iteration is what :meth:`bids_enhance.training.gan.GANTrainer.train_step` does in the
adversarial phase: generator forward on LR 32³, critic on real and generated HR 64³, the ResNet-10
feature extractor on both, generator(+FE) backward and Adam step, critic forward/backward on the
concatenated batch and its Adam step (plus instance noise, gradient clipping, loss bookkeeping).
Default networks: generator with 64 features, 3 RRDBs (growth 32), critic widths 64–512,
ResNet-10 widths 64–512 — the thesis' configuration.

Variants (each in its own child process, so memory peaks are its own):

- ``fp32`` / ``bf16``: autocast precision (bf16 on CPU is CPU autocast);
- ``eager`` (plain: contiguous tensors, for-each/fused-less Adam, no compilation) or
  ``optimised`` (channels_last_3d, fused Adam, and ``torch.compile`` with ``--compile``).

Synthetic data only (smooth random volumes); imports nothing but torch, numpy and
``bids_enhance.models``/``bids_enhance.training`` pieces that need neither TorchIO, SciPy,
nibabel nor nipype, so it runs on a bare GPU machine from a source checkout::

    PYTHONPATH=. python benchmarks/train_throughput.py                      # CUDA if present
    PYTHONPATH=. python benchmarks/train_throughput.py --device cpu --batch 1 --iters 3

Results: ``benchmarks/results/train_throughput-<device>-<time>.json`` and ``.md`` (git-ignored);
curated numbers live in docs/benchmarks/train_throughput.md.
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
RESULTS = ROOT / "benchmarks" / "results"


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


# ---------------------------------------------------------------------------------------------
# worker: one variant
# ---------------------------------------------------------------------------------------------
def run_variant(args: argparse.Namespace) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from bids_enhance.training.config import TrainConfig
    from bids_enhance.training.gan import GANTrainer

    if args.threads:
        torch.set_num_threads(args.threads)
    optimised = args.variant == "optimised"
    config = TrainConfig(
        task="gan3p", iterations=10**6, batch_size=args.batch, patch_size=2 * args.lr_size,
        generator={"features": args.features, "num_blocks": args.blocks, "growth": args.growth},
        precision=args.precision, device=args.device, channels_last=optimised,
        fused=optimised and args.fused, compile=optimised and args.compile, seed=0,
        degradation="sr-box-x2")
    trainer = GANTrainer(config)
    device = trainer.device
    g = torch.Generator(device="cpu").manual_seed(0)
    b, n = args.batch, args.lr_size
    hr = torch.nn.functional.avg_pool3d(torch.rand(b, 1, 2 * n + 6, 2 * n + 6, 2 * n + 6,
                                                   generator=g), 7, stride=1)
    lr = torch.nn.functional.avg_pool3d(hr, 2)
    hr, lr = hr.to(device), lr.to(device)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    rss_before = _rss_mb()
    t0 = time.perf_counter()
    for it in range(args.warmup):
        out = trainer.train_step(lr, hr, it)
    sync()
    warmup_s = time.perf_counter() - t0
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for it in range(args.warmup, args.warmup + args.iters):
        t = time.perf_counter()
        out = trainer.train_step(lr, hr, it)
        sync()
        times.append(time.perf_counter() - t)
    losses = {k: float(v) for k, v in out.items()}
    total = sum(times)
    result = {
        "variant": args.variant, "precision": trainer.precision, "device": str(device),
        "batch": b, "lr_size": n, "hr_size": 2 * n, "features": args.features,
        "blocks": args.blocks, "growth": args.growth,
        "channels_last": trainer.channels_last, "fused_adam": trainer.fused,
        "compiled": config.compile, "warmup_iterations": args.warmup,
        "timed_iterations": args.iters, "warmup_s": warmup_s,
        "iterations_per_s": args.iters / total, "median_step_s": sorted(times)[len(times) // 2],
        "samples_per_s": args.iters * b / total, "threads": torch.get_num_threads(),
        "finite_losses": all(v == v for k, v in losses.items()
                             if k in ("loss_g", "loss_d", "l1", "perceptual")),
    }
    if device.type == "cuda":
        result["peak_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
        result["peak_reserved_mb"] = torch.cuda.max_memory_reserved(device) / 2**20
    else:
        result["peak_rss_mb"] = _peak_rss_mb()
        result["rss_growth_mb"] = _peak_rss_mb() - rss_before
    return result


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def machine(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "processor": platform.processor(),
            "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def markdown(results: list[dict], info: dict, command: str) -> str:
    mem_key = "peak_memory_mb" if any("peak_memory_mb" in r for r in results) else "peak_rss_mb"
    mem_name = "peak GPU memory (MiB)" if mem_key == "peak_memory_mb" else "peak RSS (MiB)"
    lines = [f"# Training throughput — {info.get('gpu', info.get('cpu_model', 'CPU'))}", "",
             f"Command: `{command}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             f"| variant | precision | batch | it/s | samples/s | median step (s) | {mem_name} "
             "| channels-last | fused Adam | compiled |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['precision']} | – | failed: {r['error']} "
                         "| | | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['precision']} | {r['batch']} | "
                     f"{r['iterations_per_s']:.3f} | {r['samples_per_s']:.2f} | "
                     f"{r['median_step_s']:.3f} | {r.get(mem_key, float('nan')):.0f} | "
                     f"{r['channels_last']} | {r['fused_adam']} | {r['compiled']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--batch", type=int, default=None,
                        help="batch size (default 16 on CUDA, 2 on CPU)")
    parser.add_argument("--lr-size", type=int, default=32, help="LR patch edge (HR = 2×)")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--growth", type=int, default=32)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--variants", default="eager,optimised",
                        help="comma list of eager, optimised")
    parser.add_argument("--compile", action=argparse.BooleanOptionalAction, default=None,
                        help="torch.compile in the optimised variant (default: on CUDA)")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                        help="fused Adam in the optimised variant")
    parser.add_argument("--warmup", type=int, default=None,
                        help="untimed iterations (default 10 on CUDA, 1 on CPU)")
    parser.add_argument("--iters", type=int, default=None,
                        help="timed iterations (default 30 on CUDA, 3 on CPU)")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    parser.add_argument("--out", type=Path, default=None, help="result stem (default: "
                        "benchmarks/results/train_throughput-<device>-<time>)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="eager", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    args.batch = args.batch or (16 if cuda else 2)
    args.warmup = args.warmup if args.warmup is not None else (10 if cuda else 1)
    args.iters = args.iters or (30 if cuda else 3)
    args.compile = cuda if args.compile is None else args.compile

    if args.worker:
        print(json.dumps(run_variant(args)))
        return 0

    command = "python benchmarks/train_throughput.py " + " ".join(
        a for a in (argv if argv is not None else sys.argv[1:]))
    info = machine(args.device)
    results = []
    for variant in [v.strip() for v in args.variants.split(",") if v.strip()]:
        for precision in [p.strip() for p in args.precisions.split(",") if p.strip()]:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--worker",
                   "--variant", variant, "--precision", precision, "--device", args.device,
                   "--batch", str(args.batch), "--lr-size", str(args.lr_size),
                   "--features", str(args.features), "--blocks", str(args.blocks),
                   "--growth", str(args.growth), "--warmup", str(args.warmup),
                   "--iters", str(args.iters), "--threads", str(args.threads),
                   "--compile" if args.compile else "--no-compile",
                   "--fused" if args.fused else "--no-fused"]
            env = {**os.environ, "PYTHONPATH": os.pathsep.join(
                [str(ROOT), os.environ.get("PYTHONPATH", "")])}
            print(f"[train_throughput] {variant} {precision} …", file=sys.stderr, flush=True)
            proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
            if proc.returncode != 0:
                tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
                results.append({"variant": variant, "precision": precision, "error": tail[0]})
                print(proc.stderr[-2000:], file=sys.stderr)
                continue
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            results.append(result)
            print(f"[train_throughput] {variant} {precision}: "
                  f"{result['iterations_per_s']:.3f} it/s", file=sys.stderr, flush=True)

    stem = args.out or RESULTS / (f"train_throughput-{args.device.replace(':', '')}-"
                                  f"{time.strftime('%Y%m%d-%H%M%S')}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "command": command, "results": results}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    table = markdown(results, info, command)
    stem.with_suffix(".md").write_text(table)
    print(table)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
