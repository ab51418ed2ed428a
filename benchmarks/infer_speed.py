#!/usr/bin/env python
"""Whole-head x2 inference time and peak memory of the RRDB generator (thesis default: 64
features, growth 32, 3 RRDBs), with its arithmetic count.

Variants (each in its own child process, so memory peaks are its own):

- ``network``: the network alone on the exact volume (no halo, no tiling). On CUDA the plain
  forward; on CPU the memory-lean forward (:meth:`bids_enhance.models.RRDBGenerator.forward_lean`:
  same arithmetic, head in slabs), since the plain one needs 6.6 kB per input voxel (13 GB at 128³);
- ``compiled`` (CUDA): ``network`` after ``torch.compile``;
- ``pipeline``: :func:`bids_enhance.inference.sliding.infer_volume` with its defaults (mirror
  halo of 8 voxels; whole volume when the memory budget allows, else blended patches; host
  arrays in and out).

Precision: fp32 on CPU; bf16 autocast with ``channels_last_3d`` on CUDA (``--precisions`` adds
fp32). Threads: ``--threads`` (default 2, the project's CPU machine).

**Arithmetic count.** Per input voxel (multiply-adds × 2, 3×3×3 kernels): stem ``27·F``;
each of the ``3·N`` dense blocks ``27·Σ_k (F + kG)·out_k`` (out = G, G, G, G, F); trunk
``27·F²``; x2 head ``27·F·8F`` at LR plus ``8·27·(F² + F)`` at HR. For F=64, G=32, N=3:
16.73 MFLOP per input voxel — the "≈17 MFLOP" figure (with the authors' G=64 it would be
33.6). The script checks this against ``torch.utils.flop_counter`` on a small input and reports
achieved GFLOP/s = 16.73 MFLOP × input voxels / seconds (the halo's extra work is not credited).

Synthetic input (smooth random volume) and random weights; imports only torch, numpy,
:mod:`bids_enhance.models` and :mod:`bids_enhance.inference.sliding` (no SciPy, nibabel, nipype),
so it runs on a bare GPU machine from a source checkout::

    PYTHONPATH=. python benchmarks/infer_speed.py                         # CUDA if present
    PYTHONPATH=. python benchmarks/infer_speed.py --device cpu --shapes 128
    PYTHONPATH=. python benchmarks/infer_speed.py --device cuda --compile

Results: ``benchmarks/results/infer_speed-<device>-<time>.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import itertools
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
DEFAULT_SHAPES = "128,176x240x256"


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = [int(p) for p in text.lower().split("x")]
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or min(parts) < 1:
        raise argparse.ArgumentTypeError(f"shape must be N or XxYxZ, got {text!r}")
    return tuple(parts)  # type: ignore[return-value]


def flops_per_voxel(features: int, growth: int, blocks: int, scale: int = 2) -> float:
    """Analytic FLOPs (2 × multiply-adds) of the RRDB generator per input voxel."""
    f, g, k = features, growth, 27
    macs = k * f                                                    # stem 1 → F
    rdb = k * sum((f + i * g) * (g if i < 4 else f) for i in range(5))
    macs += 3 * blocks * rdb + k * f * f                            # RRDBs, trunk conv
    if scale == 2:
        macs += k * f * 8 * f + 8 * (k * f * f + k * f)            # conv F→8F; 2 HR convs
    else:
        macs += k * f * f + k * f
    return 2.0 * macs


def counted_flops_per_voxel(model, size: int = 12) -> float:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    x = torch.zeros(1, 1, size, size, size)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model(x)
    return counter.get_total_flops() / size**3


def _peak_rss_mb() -> float:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024.0 if sys.platform != "darwin" else peak / 2**20


def _rss_mb() -> float:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return float("nan")


# ---------------------------------------------------------------------------------------------
# worker: one variant on one shape
# ---------------------------------------------------------------------------------------------
def run_variant(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    sys.path.insert(0, str(ROOT))
    from bids_enhance.inference.sliding import autocast_context, infer_volume, lean_forward
    from bids_enhance.models import RRDBGenerator

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    cuda = device.type == "cuda"
    shape = parse_shape(args.shape)
    torch.manual_seed(0)
    model = RRDBGenerator(features=args.features, growth=args.growth, num_blocks=args.blocks,
                          scale=2).eval()
    g = torch.Generator().manual_seed(0)
    vol = torch.nn.functional.avg_pool3d(
        torch.rand(1, 1, *(n + 4 for n in shape), generator=g), 5, stride=1)[0, 0]
    volume = vol.numpy().astype(np.float32)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize(device)

    if args.variant == "conv-reference":
        return conv_reference(args, device)
    result = {"variant": args.variant, "precision": args.precision, "device": str(device),
              "shape": list(shape), "output_shape": [2 * n for n in shape],
              "threads": torch.get_num_threads(), "features": args.features,
              "growth": args.growth, "blocks": args.blocks}
    rss_before = _rss_mb()
    times: list[float] = []
    if args.variant == "pipeline":
        report: dict = {}
        runs = args.repeats if cuda else 1
        for i in range(args.warmup + runs):
            t = time.perf_counter()
            out = infer_volume(model, volume, scale=2, device=device, precision=args.precision,
                               mem_budget_gb=args.mem, report=report)
            sync()
            if i >= args.warmup:
                times.append(time.perf_counter() - t)
            if cuda and i == args.warmup - 1:
                torch.cuda.reset_peak_memory_stats(device)
        core = report["patch_size"] or list(shape)
        window = 1
        for c in core:
            window *= c + 2 * report["halo"]
        result["work_factor"] = report["num_patches"] * window / (shape[0] * shape[1] * shape[2])
        result.update(mode=report["mode"], halo=report["halo"], patch_size=report["patch_size"],
                      num_patches=report["num_patches"], channels_last=report["channels_last"],
                      budget_gb=report["budget_gb"], estimated_gb=report["estimated_gb"],
                      finite=bool(np.isfinite(out).all()))
    else:
        net = model.to(device)
        x = torch.from_numpy(volume)[None, None].to(device)
        if cuda:
            net = net.to(memory_format=torch.channels_last_3d)
            x = x.contiguous(memory_format=torch.channels_last_3d)
        forward = net
        if args.variant == "compiled":
            forward = torch.compile(net)
        elif not cuda:
            def forward(t, _net=net):
                return lean_forward(_net, t)
        runs = args.repeats if cuda else 1
        t_compile = time.perf_counter()
        with torch.inference_mode():
            for i in range(args.warmup + runs):
                t = time.perf_counter()
                with autocast_context(args.precision, device):
                    y = forward(x)
                sync()
                if i >= args.warmup:
                    times.append(time.perf_counter() - t)
                if i == 0:
                    result["first_call_s"] = time.perf_counter() - t_compile
                if cuda and i == args.warmup - 1:
                    torch.cuda.reset_peak_memory_stats(device)
        result.update(channels_last=cuda, finite=bool(torch.isfinite(y).all()))
    seconds = sorted(times)[len(times) // 2]
    voxels = shape[0] * shape[1] * shape[2]
    flops = flops_per_voxel(args.features, args.growth, args.blocks) * voxels
    result.update(seconds=seconds, all_seconds=times, tflop=flops / 1e12,
                  gflops_per_s=flops / seconds / 1e9)
    if cuda:
        result["peak_gpu_memory_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    result["peak_rss_mb"] = _peak_rss_mb()
    result["rss_growth_mb"] = _peak_rss_mb() - rss_before
    return result


def conv_reference(args: argparse.Namespace, device) -> dict:
    """Throughput of plain 3×3×3 convolutions shaped like the generator's (64→32 … 192→64 in
    the dense blocks, 64→512 in the head) on a 48³ input: what the hardware reaches on this
    arithmetic, the denominator of the "× arithmetic bound" figure."""
    import torch

    cuda = device.type == "cuda"
    f, g = args.features, args.growth
    shapes = [(f + k * g, g) for k in range(4)] + [(f + 4 * g, f), (f, 8 * f)]
    n = 48 if not cuda else 96
    total_flops, total_s = 0.0, 0.0
    with torch.inference_mode():
        for cin, cout in shapes:
            conv = torch.nn.Conv3d(cin, cout, 3, padding=1).to(device)
            x = torch.rand(1, cin, n, n, n, device=device)
            if cuda:
                conv = conv.to(memory_format=torch.channels_last_3d)
                x = x.contiguous(memory_format=torch.channels_last_3d)
            with autocast(args.precision, device):
                conv(x)
                if cuda:
                    torch.cuda.synchronize(device)
                t = time.perf_counter()
                reps = 1 if not cuda else 20
                for _ in range(reps):
                    conv(x)
                if cuda:
                    torch.cuda.synchronize(device)
            total_s += time.perf_counter() - t
            total_flops += reps * 2.0 * 27 * cin * cout * n**3
    return {"variant": "conv-reference", "precision": args.precision, "device": str(device),
            "shape": [n, n, n], "threads": torch.get_num_threads(), "seconds": total_s,
            "gflops_per_s": total_flops / total_s / 1e9, "tflop": total_flops / 1e12,
            "convs": [list(c) for c in shapes]}


def autocast(precision: str, device):
    import contextlib

    import torch

    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def machine(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__,
            "platform": platform.platform(), "cpus": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as fh:
            names = [line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")]
        if names:
            info["cpu_model"] = names[0]
        info["load_average"] = os.getloadavg()[0]
    except OSError:
        pass
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["cudnn"] = torch.backends.cudnn.version()
    return info


def markdown(results: list[dict], info: dict, command: str, flop_check: dict) -> str:
    lines = [f"# x2 inference speed — {info.get('gpu', info.get('cpu_model', 'CPU'))}", "",
             f"Command: `{command}`", "",
             "Machine: " + ", ".join(f"{k} {v}" for k, v in info.items()), "",
             f"Arithmetic: {flop_check['analytic_mflop_per_voxel']:.2f} MFLOP per input voxel "
             f"(analytic), {flop_check['counted_mflop_per_voxel']:.2f} counted by "
             "torch.utils.flop_counter.", "",
             "GFLOP/s counts the network's arithmetic on the input volume only; *work* is the "
             "voxels the network actually processed (halos, overlaps) over the input's.", "",
             "| input → output | variant | precision | mode | work | seconds | GFLOP/s | × bound "
             "| peak memory (MiB) | threads |", "|---|---|---|---|---|---|---|---|---|---|"]
    reference = {r["precision"]: r["gflops_per_s"] for r in results
                 if r.get("variant") == "conv-reference" and "error" not in r}
    for r in results:
        if r.get("variant") == "conv-reference":
            continue
        io = "x".join(map(str, r["shape"])) + " → " + "x".join(str(2 * n) for n in r["shape"])
        if "error" in r:
            lines.append(f"| {io} | {r['variant']} | {r['precision']} | failed: {r['error']} "
                         "| | | | | | |")
            continue
        mem = r.get("peak_gpu_memory_mb", r.get("peak_rss_mb", float("nan")))
        mode = r.get("mode", "network")
        if mode == "patches":
            mode = f"patches {r['num_patches']}×{r['patch_size'][0]}³ (halo {r['halo']})"
        elif "halo" in r:
            mode = f"whole (halo {r['halo']})"
        ref = reference.get(r["precision"])
        bound = f"{ref / r['gflops_per_s']:.2f}×" if ref else "–"
        lines.append(f"| {io} | {r['variant']} | {r['precision']} | {mode} "
                     f"| {r.get('work_factor', 1.0):.2f}× | {r['seconds']:.3f} "
                     f"| {r['gflops_per_s']:.1f} | {bound} | {mem:.0f} | {r['threads']} |")
    for precision, rate in reference.items():
        lines += ["", f"Reference ({precision}): plain 3×3×3 convolutions shaped like the "
                  f"generator's reach {rate:.1f} GFLOP/s here; *× bound* = that rate over the "
                  "achieved one (1.00× = as fast as the arithmetic allows)."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    parser.add_argument("--shapes", default=DEFAULT_SHAPES,
                        help=f"comma list of input shapes N or XxYxZ (default {DEFAULT_SHAPES})")
    parser.add_argument("--variants", default=None,
                        help="comma list of network, compiled, pipeline (default: network,"
                             "pipeline; CUDA adds compiled with --compile); a conv-reference "
                             "run always comes first")
    parser.add_argument("--compile", action="store_true", help="add the compiled variant (CUDA)")
    parser.add_argument("--precisions", default=None,
                        help="comma list of fp32, bf16 (default bf16 on CUDA, fp32 on CPU)")
    parser.add_argument("--features", type=int, default=64)
    parser.add_argument("--growth", type=int, default=32)
    parser.add_argument("--blocks", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (0: default)")
    parser.add_argument("--mem", type=float, default=None,
                        help="memory budget in GB for the pipeline variant (default: share of "
                             "the free memory)")
    parser.add_argument("--warmup", type=int, default=None, help="untimed runs (CUDA 2, CPU 0)")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs on CUDA (median)")
    parser.add_argument("--out", type=Path, default=None, help="result stem (default: "
                        "benchmarks/results/infer_speed-<device>-<time>)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--variant", default="network", help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="fp32", help=argparse.SUPPRESS)
    parser.add_argument("--shape", default="16", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    import torch

    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    cuda = args.device.startswith("cuda")
    args.warmup = args.warmup if args.warmup is not None else (2 if cuda else 0)
    if args.worker:
        print(json.dumps(run_variant(args)))
        return 0

    variants = args.variants or ("network,pipeline" + (",compiled" if cuda and args.compile
                                                       else ""))
    precisions = args.precisions or ("bf16" if cuda else "fp32")
    command = "python benchmarks/infer_speed.py " + " ".join(
        argv if argv is not None else sys.argv[1:])
    sys.path.insert(0, str(ROOT))
    from bids_enhance.models import RRDBGenerator

    probe = RRDBGenerator(features=args.features, growth=args.growth, num_blocks=args.blocks)
    flop_check = {"analytic_mflop_per_voxel":
                  flops_per_voxel(args.features, args.growth, args.blocks) / 1e6,
                  "counted_mflop_per_voxel": counted_flops_per_voxel(probe) / 1e6}
    print(f"[infer_speed] {flop_check}", file=sys.stderr, flush=True)
    info = machine(args.device)
    results = []
    jobs = [("16", "conv-reference")] + [
        (shape, variant) for shape in [s.strip() for s in args.shapes.split(",") if s.strip()]
        for variant in [v.strip() for v in variants.split(",") if v.strip()]]
    precision_list = [p.strip() for p in precisions.split(",") if p.strip()]
    for (shape, variant), precision in itertools.product(jobs, precision_list):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--worker",
               "--variant", variant, "--precision", precision, "--device", args.device,
               "--shape", shape, "--features", str(args.features),
               "--growth", str(args.growth), "--blocks", str(args.blocks),
               "--threads", str(args.threads), "--warmup", str(args.warmup),
               "--repeats", str(args.repeats)]
        if args.mem is not None:
            cmd += ["--mem", str(args.mem)]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(ROOT), os.environ.get("PYTHONPATH", "")])}
        label = f"{shape} {variant} {precision}"
        print(f"[infer_speed] {label} …", file=sys.stderr, flush=True)
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
            results.append({"variant": variant, "precision": precision,
                            "shape": list(parse_shape(shape)), "error": tail[0]})
            print(proc.stderr[-2000:], file=sys.stderr)
            continue
        result = json.loads(proc.stdout.strip().splitlines()[-1])
        results.append(result)
        print(f"[infer_speed] {label}: {result['seconds']:.3f} s, "
              f"{result['gflops_per_s']:.1f} GFLOP/s", file=sys.stderr, flush=True)

    stem = args.out or RESULTS / (f"infer_speed-{args.device.replace(':', '')}-"
                                  f"{time.strftime('%Y%m%d-%H%M%S')}")
    stem.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": info, "command": command, "flops": flop_check, "results": results}
    stem.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n")
    table = markdown(results, info, command, flop_check)
    stem.with_suffix(".md").write_text(table)
    print(table)
    return 0 if all("error" not in r for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
