#!/usr/bin/env python
"""Which compact x2 generator buys the most held-out PSNR per CPU-hour? A small sweep.

Each candidate ``RRDBGenerator`` (image skip on) is trained with the project's own trainer
(``build_trainer``, task ``gan3p``, L1 warm-up only, Adam 4e-4, batch 4 of 32³ HR patches from
the training heads of benchmarks/train_default_weights.py, same seed and the same patch stream
for every candidate) for the same wall-clock budget on ONE thread, then evaluated on the central
96³ of the two held-out heads against cubic B-spline interpolation (METHODS.md protocol: PSNR in
the head mask after normalising by the reference's 99.9th percentile) — the evaluator the
training runs use (``SuperResolutionEvaluator``). The table it writes is the basis of the
``compact`` size in ``bids_enhance.models.registry.SIZES``; docs/benchmarks/compact.md has it.

    python benchmarks/train_default_weights.py prep            # once: the .npz volumes
    python benchmarks/compact_sweep.py --minutes 6             # ~6 minutes per candidate

The budget is wall time of one thread, so what counts is iterations per second times what each
iteration teaches; run it on a quiet machine (or note what else ran).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

#: candidates: (label, generator kwargs); the thesis' head width F vs a narrow 8-channel head
CANDIDATES = (
    ("F32 G16 B1, head 32", {"features": 32, "growth": 16, "num_blocks": 1}),
    ("F32 G16 B1, head 8", {"features": 32, "growth": 16, "num_blocks": 1, "hr_features": 8}),
    ("F24 G12 B2, head 8", {"features": 24, "growth": 12, "num_blocks": 2, "hr_features": 8}),
    ("F48 G24 B1, head 8", {"features": 48, "growth": 24, "num_blocks": 1, "hr_features": 8}),
)


def run_candidate(label: str, kwargs: dict, train_vols, val_vols, *, minutes: float,
                  seed: int) -> dict:
    import torch

    from bids_enhance.training import NumpyPatchStream, TrainConfig, build_trainer, geometry_for
    from bids_enhance.training.validation import SuperResolutionEvaluator

    cfg = TrainConfig(task="gan3p", iterations=10**6, warmup_iterations=10**6, batch_size=4,
                      patch_size=32, lr=4e-4, seed=seed, device="cpu",
                      generator={**kwargs, "image_skip": True})
    trainer = build_trainer(cfg)
    stream = NumpyPatchStream(train_vols, degradation="sr-box-x2", geometry=geometry_for(cfg),
                              seed=seed, samples_per_volume=32, queue_length=32)
    evaluator = SuperResolutionEvaluator(val_vols, degradation="sr-box-x2", scale=2, seed=seed,
                                         crop=96)
    params = sum(p.numel() for p in trainer.main_model.parameters())
    trainer.train(True)
    t0 = time.perf_counter()
    iteration = 0
    while time.perf_counter() - t0 < 60 * minutes:
        source, target = stream.next_batch(cfg.batch_size)
        trainer.train_step(source, target, iteration)
        iteration += 1
    seconds = time.perf_counter() - t0
    model = trainer.inference_model().eval()
    with torch.no_grad():
        metrics = evaluator(model)
    row = {"candidate": label, "generator": kwargs, "parameters": params,
           "iterations": iteration, "seconds": seconds, "s_per_iteration": seconds / iteration,
           "psnr": metrics["psnr"], "cubic_psnr": metrics["baseline_psnr"],
           "gain_db": metrics["psnr_gain"],
           "gain_db_per_cpu_hour": metrics["psnr_gain"] / (seconds / 3600.0)}
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    import torch
    import train_default_weights as tdw

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=6.0, help="training budget each")
    parser.add_argument("--npz-dir", type=Path, default=tdw.NPZ_DIR)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/compact_sweep")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--only", type=int, nargs="+", help="indices of CANDIDATES to run")
    parser.add_argument("--crop", type=int, default=None, help="central crop of every volume")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    train_vols = tdw.load_volumes(args.npz_dir, tdw.TRAINING, crop=args.crop)
    val_vols = tdw.load_volumes(args.npz_dir, tdw.HELD_OUT, crop=args.crop)
    picks = [CANDIDATES[i] for i in (args.only or range(len(CANDIDATES)))]
    rows = [run_candidate(label, kw, train_vols, val_vols, minutes=args.minutes, seed=args.seed)
            for label, kw in picks]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    lines = [f"Budget: {args.minutes:g} minutes of one thread per candidate (L1, batch 4 of "
             "32³ HR patches, Adam 4e-4, image skip); held out: central 96³ of "
             f"{', '.join(tdw.HELD_OUT)}; `python benchmarks/compact_sweep.py --minutes "
             f"{args.minutes:g}`.", "",
             "| generator | parameters | s/iteration | iterations | PSNR (dB) | cubic (dB) | "
             "gain (dB) | gain per CPU-hour (dB) |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['candidate']} | {r['parameters'] / 1e6:.2f} M | "
                     f"{r['s_per_iteration']:.2f} | {r['iterations']} | {r['psnr']:.2f} | "
                     f"{r['cubic_psnr']:.2f} | {r['gain_db']:+.2f} | "
                     f"{r['gain_db_per_cpu_hour']:+.2f} |")
    (args.out / "sweep.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
