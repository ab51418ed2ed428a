"""Training of the thesis' models: three-player GAN (``gan3p``), DISGAN (``disgan``), motion GAN
(``motion-gan``) and conditional diffusion (``motion-ddpm``).

Core layer: arrays, tensors and modules in, checkpoints and CSVs out; no BIDS, no nipype.
The whole public API is importable from here; submodules are loaded on first use, so
``import bids_enhance.training.gan`` (e.g. on a GPU machine without TorchIO/SciPy, for the
benchmark) pulls in only torch, numpy and :mod:`bids_enhance.models`.

Typical use (one process, or each process under ``torchrun``)::

    from bids_enhance.training import TrainConfig, TrainingVolume, train

    volumes = [TrainingVolume(subject="01", data=normalised, affine=affine), ...]
    result = train(volumes, config=TrainConfig(task="gan3p", iterations=20_000, seed=42),
                   out_dir="out/models/gan3p", val_volumes=held_out)
    result.checkpoint, result.metrics, result.plot
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TrainConfig": "config",
    "TASKS": "config",
    "GAN_TASKS": "config",
    "TASK_DEFAULTS": "config",
    "TrainingVolume": "data",
    "PairedPatchStream": "data",
    "NumpyPatchStream": "data",
    "PatchGeometry": "data",
    "geometry_for": "data",
    "LOSS_PRESETS": "losses",
    "LossWeights": "losses",
    "instance_noise_sigma": "losses",
    "perceptual_loss": "losses",
    "ragan_critic_loss": "losses",
    "ragan_generator_loss": "losses",
    "GANTrainer": "gan",
    "DiffusionTrainer": "diffusion",
    "EMA": "diffusion",
    "ddim_sample_normalised": "diffusion",
    "DistributedContext": "ddp",
    "resolve_device": "ddp",
    "TrainingResult": "engine",
    "build_trainer": "engine",
    "fit": "engine",
    "train": "engine",
    "state_path_for": "engine",
    "SuperResolutionEvaluator": "validation",
    "DiffusionSliceEvaluator": "validation",
    "make_default_evaluator": "validation",
    "child_seed": "seeding",
    "plot_history": "monitor",
    "publish_model": "launch",
    "state_dir_for": "launch",
    "train_from_files": "launch",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bids_enhance.training' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bids_enhance.training.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
