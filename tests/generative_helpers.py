"""Tiny self-describing checkpoints and model cards for the generative-step tests."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from bids_enhance.models import build_model, save_checkpoint

#: one RRDB with 8 features: fast on a 2-core CPU
TINY = {"features": 8, "growth": 4, "num_blocks": 1}
NORMALISATION = {"method": "robust-max-scale", "percentile": 99.9}
_PRESETS = {"gan3p": "sr-box-x2", "disgan": "sr-box-x2-rician", "motion-gan": "motion"}


def save_tiny_generator(path: Path, *, task: str = "gan3p", scale: int | None = None,
                        preset: str | None = None, zero: bool = False, seed: int = 0,
                        in_channels: int = 1, image_skip: bool = False) -> str:
    """A randomly initialised tiny RRDB generator checkpoint; returns its sha256.

    ``zero``: the last convolution outputs 0 everywhere, so with ``--consistency project`` an
    x2 output is the input replicated over each 2×2×2 block — its world centre of mass is the
    input's exactly when the geometry is right.
    """
    torch.manual_seed(seed)
    kwargs = {**TINY, "scale": scale if scale is not None else (1 if task == "motion-gan" else 2)}
    if in_channels != 1:
        kwargs["in_channels"] = in_channels
    if image_skip:
        kwargs["image_skip"] = True
    model = build_model("rrdb_generator", **kwargs)
    if zero:
        with torch.no_grad():
            model.conv_last.weight.zero_()
            model.conv_last.bias.zero_()
    return save_checkpoint(Path(path), model=model, arch_name="rrdb_generator",
                           arch_kwargs=kwargs,
                           degradation={"preset": preset or _PRESETS.get(task), "records": []},
                           normalisation=NORMALISATION, seed=1,
                           training_command=["bids_enhance", "bids", "out", "train", "--model",
                                             task],
                           extra={"task": task, "iteration": 3})


def write_model_card(folder: Path, *, name: str, sha256: str, task: str = "gan3p",
                     file: str = "checkpoint.pt") -> Path:
    """A ``model_card.json`` in the format of :mod:`bids_enhance.training.card`."""
    card = {
        "name": name, "task": task, "description": f"tiny {task} for tests",
        "created": "2026-01-01T00:00:00+00:00",
        "checkpoint": {"file": file, "sha256": sha256},
        "data": {"training": ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"],
                 "held_out": ["bids:raw:sub-02/anat/sub-02_T1w.nii.gz"],
                 "degradation": _PRESETS.get(task)},
        "command": f"bids_enhance bids out train --model {task}",
        "training": {"iterations": 3},
        "held_out_evaluation": {"mean": {"model": {"psnr": 30.5}, "cubic": {"psnr": 31.0}},
                                "psnr_gain_over_cubic_db": {"mean": -0.5, "min": -0.5}},
    }
    path = Path(folder) / "model_card.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(card, indent=2))
    return path
