"""Model cards: what a checkpoint is, what trained it, how well it does on held-out data.

``model_card.json`` is the machine-readable record (the shipped default weights carry one too);
``model_card.md`` is the same for people. Both sit next to ``checkpoint.pt``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bids_enhance.models.registry import TASK_TITLES

_METRICS = ("psnr", "ssim", "nrmse", "hfen")


def _mean_metrics(rows: Sequence[dict[str, float]]) -> dict[str, float]:
    out = {}
    for key in _METRICS:
        values = [r[key] for r in rows if r.get(key) is not None and np.isfinite(r[key])]
        if values:
            out[key] = float(np.mean(values))
    return out


#: baselines (besides cubic B-spline) whose PSNR gain a card states: name → words
GAIN_REFERENCES = {"corrupted": "the corrupted input", "prinlm": "PRI-NLM", "odct3d": "ODCT3D",
                   "noisy": "the noisy input", "prinlm_cubic": "PRI-NLM then cubic B-spline",
                   "odct3d_cubic": "ODCT3D then cubic B-spline"}


def summarise_comparisons(comparisons: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per-image metrics of the model and its baselines, and their means."""
    per_image = [{"image": c.get("label"), "model": c["enhanced"],
                  "baselines": c.get("baselines", {})} for c in comparisons]
    baselines = sorted({k for c in comparisons for k in c.get("baselines", {})})
    summary: dict[str, Any] = {
        "images": per_image,
        "mean": {"model": _mean_metrics([c["enhanced"] for c in comparisons])},
    }
    for name in baselines:
        rows = [c["baselines"][name] for c in comparisons if name in c.get("baselines", {})]
        summary["mean"][name] = _mean_metrics(rows)
    if "cubic" in baselines and comparisons:
        gains = [c["enhanced"]["psnr"] - c["baselines"]["cubic"]["psnr"]
                 for c in comparisons if "cubic" in c.get("baselines", {})]
        summary["psnr_gain_over_cubic_db"] = {"mean": float(np.mean(gains)),
                                              "min": float(np.min(gains))}
    for reference in GAIN_REFERENCES:
        if reference in baselines and comparisons:
            gains = [c["enhanced"]["psnr"] - c["baselines"][reference]["psnr"]
                     for c in comparisons if reference in c.get("baselines", {})]
            summary[f"psnr_gain_over_{reference}_db"] = {"mean": float(np.mean(gains)),
                                                         "min": float(np.min(gains))}
    if comparisons:
        summary["protocol"] = comparisons[0].get("protocol")
    return summary


def build_model_card(*, name: str, result: dict[str, Any], comparisons: Sequence[dict],
                     train_sources: Sequence[str], val_sources: Sequence[str],
                     command: Sequence[str]) -> dict[str, Any]:
    from bids_enhance.utils import software_versions

    config = dict(result.get("config") or {})
    return {
        "name": name,
        "task": result.get("task"),
        "description": TASK_TITLES.get(result.get("task", ""), result.get("task")),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "checkpoint": {"file": "checkpoint.pt", "sha256": result.get("checkpoint_sha256")},
        "data": {"training": list(train_sources), "held_out": list(val_sources),
                 "degradation": config.get("degradation")},
        "command": " ".join(command),
        "training": {
            "iterations": result.get("iterations"),
            "batch_size": config.get("batch_size"),
            "patch_size": config.get("patch_size"),
            "loss_preset": config.get("loss_preset"),
            "seed": result.get("seed"),
            "device": result.get("device"),
            "world_size": result.get("world_size"),
            "precision": result.get("precision"),
            "wall_time_s": result.get("wall_time_s"),
            "iterations_per_s": result.get("iterations_per_s"),
            "final_losses": result.get("final_losses"),
            "config": config,
        },
        "validation_during_training": result.get("validation_history", []),
        "held_out_evaluation": summarise_comparisons(comparisons),
        "software": software_versions(),
    }


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _lineage(training: dict[str, Any]) -> list[str]:
    """The run a model continued (``initialised_from``), and the CPU time of both together."""
    parent = training.get("initialised_from")
    if not parent:
        return []
    text = f"Initialised from `{parent.get('checkpoint')}`"
    if parent.get("iterations") is not None:
        text += (f" ({_fmt(parent['iterations'])} iterations, sha256 "
                 f"`{str(parent.get('sha256'))[:12]}…`"
                 + (f", {parent['cpu_hours']:.2f} CPU-hours" if parent.get("cpu_hours")
                    is not None else "") + ")")
    if parent.get("command"):
        text += f", trained with `{parent['command']}`"
    text += "."
    if training.get("cpu_hours_total") is not None:
        text += f" CPU time of both runs together: {training['cpu_hours_total']:.2f} CPU-hours."
    return [text, ""]


def render_markdown(card: dict[str, Any]) -> str:
    t = card["training"]
    lines = [
        f"# Model card: {card['name']}", "",
        f"**Task:** {card['description']}  ",
        f"**Checkpoint:** `{card['checkpoint']['file']}`, sha256 "
        f"`{card['checkpoint']['sha256']}`  ",
        f"**Created:** {card['created']}", "",
        "## Data", "",
        f"Degradation simulated for training: `{card['data']['degradation']}`.", "",
        f"Trained on {len(card['data']['training'])} image(s):", "",
        *[f"- `{s}`" for s in card["data"]["training"]], "",
        f"Held out for evaluation ({len(card['data']['held_out'])}):", "",
        *([f"- `{s}`" for s in card["data"]["held_out"]] or ["- none"]), "",
        "## Training", "",
        f"Command: `{card['command']}`", "",
        "| iterations | batch | patch | loss preset | device | processes | precision | "
        "wall time | it/s | seed |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {_fmt(t['iterations'])} | {_fmt(t['batch_size'])} | {_fmt(t['patch_size'])} | "
        f"{_fmt(t['loss_preset'])} | {_fmt(t['device'])} | {_fmt(t['world_size'])} | "
        f"{_fmt(t['precision'])} | {_fmt(t['wall_time_s'], 1)} s | "
        f"{_fmt(t['iterations_per_s'], 2)} | {_fmt(t['seed'])} |", "",
        *([f"CPU time: {t['cpu_hours']:.2f} CPU-hours ({_fmt(t.get('threads'))} thread(s) on "
           f"{t.get('machine', 'a CPU')}); {_fmt(t['iterations'])} of "
           f"{_fmt(t.get('planned_iterations'))} planned iterations.", ""]
          if t.get("cpu_hours") is not None else []),
        *_lineage(t),
        "![Loss curves](losses.png)", "",
        "## Held-out evaluation", "",
    ]
    ev = card["held_out_evaluation"]
    if ev.get("images"):
        lines += [f"Protocol: {ev.get('protocol')}.", "",
                  "| image | method | PSNR (dB) | SSIM | NRMSE | HFEN |", "|---|---|---|---|---|---|"]
        for row in ev["images"]:
            entries = [("model", row["model"]), *sorted(row["baselines"].items())]
            for method, m in entries:
                lines.append(f"| {row['image']} | {method} | {_fmt(m.get('psnr'), 2)} | "
                             f"{_fmt(m.get('ssim'), 4)} | {_fmt(m.get('nrmse'), 4)} | "
                             f"{_fmt(m.get('hfen'), 4)} |")
        lines += ["", "Means:", "", "| method | PSNR (dB) | SSIM | NRMSE | HFEN |",
                  "|---|---|---|---|---|"]
        for method, m in ev["mean"].items():
            lines.append(f"| {method} | {_fmt(m.get('psnr'), 2)} | {_fmt(m.get('ssim'), 4)} | "
                         f"{_fmt(m.get('nrmse'), 4)} | {_fmt(m.get('hfen'), 4)} |")
        if "psnr_gain_over_cubic_db" in ev:
            gain = ev["psnr_gain_over_cubic_db"]
            lines += ["", f"PSNR gain over cubic B-spline: mean {gain['mean']:+.2f} dB, "
                          f"worst image {gain['min']:+.2f} dB."]
        for reference, what in GAIN_REFERENCES.items():
            if f"psnr_gain_over_{reference}_db" in ev:
                gain = ev[f"psnr_gain_over_{reference}_db"]
                lines += ["", f"PSNR gain over {what}: mean {gain['mean']:+.2f} dB, "
                              f"worst image {gain['min']:+.2f} dB."]
    else:
        lines.append("No held-out images were evaluated.")
    lines += ["", "## Software", "",
              ", ".join(f"{k} {v}" for k, v in card["software"].items()), ""]
    return "\n".join(lines)


def write_model_card(out_dir: Path, *, name: str, result: dict[str, Any],
                     comparisons: Sequence[dict], train_sources: Sequence[str],
                     val_sources: Sequence[str], command: Sequence[str]) -> tuple[Path, Path]:
    """Write ``model_card.json`` and ``model_card.md`` into ``out_dir`` (atomically)."""
    from bids_enhance.utils import atomic_write_text, dump_json

    card = build_model_card(name=name, result=result, comparisons=comparisons,
                            train_sources=train_sources, val_sources=val_sources,
                            command=command)
    json_path = atomic_write_text(Path(out_dir) / "model_card.json", dump_json(card))
    md_path = atomic_write_text(Path(out_dir) / "model_card.md", render_markdown(card))
    return json_path, md_path
