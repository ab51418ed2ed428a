"""Explicit registry of the networks: name → class. No folder scanning, no import side effects."""

from __future__ import annotations

import difflib
import inspect
from collections.abc import Mapping
from typing import Any

from torch import nn

from bids_enhance.models.critics import ResNetCritic, WaveletUNetCritic
from bids_enhance.models.diffusion_unet import DiffusionUNet
from bids_enhance.models.feature_extractor import ResNet10Features
from bids_enhance.models.generator import RRDBGenerator

__all__ = ["MODELS", "SIZES", "TASK_TITLES", "available_models", "build_model", "describe_arch", "model_class",
           "registered_name", "size_preset"]

#: one line per training task: what a model of that task does (model cards, sidecars, reports)
TASK_TITLES = {
    "gan3p": "x2 super-resolution, three-player GAN (Wang et al. 2023)",
    "disgan": "x2 super-resolution with noise removal, DISGAN (Wang et al. 2023)",
    "motion-gan": "motion-artefact correction, three-player GAN with a scale-1 generator",
    "motion-ddpm": "motion-artefact correction, conditional diffusion (DDPM, DDIM sampling)",
    "denoise": "noise removal, scale-1 generator trained on Rician noise of 1-12 %",
}

MODELS: dict[str, type[nn.Module]] = {
    "rrdb_generator": RRDBGenerator,
    "resnet_critic": ResNetCritic,
    "resnet10_features": ResNet10Features,
    "wavelet_unet_critic": WaveletUNetCritic,
    "diffusion_unet": DiffusionUNet,
}


#: named network sizes (keyword arguments per network role) of the GAN tasks. ``thesis``: the
#: classes' own defaults (METHODS.md: 64 features, 3 RRDBs; critic 64…512; ResNet-10 64…512).
#: ``compact``: what the shipped CPU-trained default weights use, chosen by
#: benchmarks/compact_sweep.py (docs/benchmarks/compact.md): one RRDB of 32 features (growth 16),
#: a narrow 8-channel high-resolution head (the x2 head runs on 8× the voxels), the image skip,
#: and critics/feature extractor a quarter as wide. The scale-1 motion generator of ``compact``
#: folds 2×2×2 blocks into channels (``space_to_depth``) so that its body runs on the half grid
#: and sees twice as far, with a second RRDB for a wider view.
_COMPACT_GENERATOR = {"features": 32, "growth": 16, "num_blocks": 1, "hr_features": 8,
                      "image_skip": True}
_COMPACT = {"generator": _COMPACT_GENERATOR, "critic": {"widths": (16, 32, 64, 128)},
            "feature_extractor": {"widths": (16, 32, 64, 128)}}
#: The compact diffusion U-Net (``motion-ddpm``): 16 features on four levels (16, 32, 32, 64),
#: one residual block per level, self-attention only at the lowest level (1/8 of the slice: on
#: three levels the attention at 1/4 costs 4× the whole network on a 176×240 slice) — 0.74 M
#: parameters against the thesis' 14 M, 0.25 s per training step of 8 slices of 64² and 0.24 s
#: per 176×240 slice and sampling step on one CPU thread (thesis size: 4.5 s and 4.0 s;
#: benchmarks/compact_unet.py).
_COMPACT_UNET = {"features": 16, "channel_mults": (1, 2, 2, 4), "num_res_blocks": 1,
                 "attention": True, "norm_groups": 8}
SIZES: dict[str, dict[str, dict[str, dict[str, Any]]]] = {
    "thesis": {**{task: {"generator": {}, "critic": {}, "feature_extractor": {}}
                  for task in ("gan3p", "disgan", "motion-gan", "denoise")},
               "motion-ddpm": {"unet": {}}},
    "compact": {
        "gan3p": _COMPACT,
        "disgan": _COMPACT,  # same widths for the wavelet U-Net critic
        "motion-gan": {**_COMPACT, "generator": {**_COMPACT_GENERATOR, "num_blocks": 2,
                                                 "space_to_depth": True}},
        # the learned denoiser: the motion generator's shape (FFDNet's idea: the body on the
        # half grid, the full grid only in the head)
        "denoise": {**_COMPACT, "generator": {**_COMPACT_GENERATOR, "num_blocks": 2,
                                              "space_to_depth": True}},
        "motion-ddpm": {"unet": _COMPACT_UNET},
    },
}


def size_preset(size: str, task: str) -> dict[str, dict[str, Any]]:
    """Network keyword arguments of the named ``size`` for ``task`` (copies): ``{"generator":
    {...}, "critic": {...}, "feature_extractor": {...}}`` for a GAN task, ``{"unet": {...}}``
    for ``motion-ddpm``."""
    if size not in SIZES:
        raise ValueError(f"unknown model size {size!r}{_did_you_mean(str(size), list(SIZES))} "
                         f"Sizes: {', '.join(SIZES)}")
    if task not in SIZES[size]:
        raise ValueError(f"model size {size!r} has no preset for task {task!r} (tasks: "
                         f"{', '.join(SIZES[size])})")
    return {role: dict(kwargs) for role, kwargs in SIZES[size][task].items()}


def _did_you_mean(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def available_models() -> tuple[str, ...]:
    return tuple(MODELS)


def model_class(name: str) -> type[nn.Module]:
    """The class registered as ``name``; ``ValueError`` (with a suggestion) for an unknown name."""
    try:
        return MODELS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}{_did_you_mean(str(name), list(MODELS))} "
                         f"Known models: {', '.join(MODELS)}") from None


def registered_name(model: nn.Module) -> str | None:
    """Registry name of ``model``'s class (exact class match), or ``None``."""
    for name, cls in MODELS.items():
        if type(model) is cls:
            return name
    return None


def _check_kwargs(name: str, cls: type[nn.Module], kwargs: Mapping[str, Any]) -> None:
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    for key in kwargs:
        if key not in params:
            raise ValueError(f"{name} has no argument {key!r}{_did_you_mean(key, params)} "
                             f"Arguments: {', '.join(params)}")


def build_model(name: str, **kwargs: Any) -> nn.Module:
    """Build the registered model ``name`` with keyword arguments ``kwargs``."""
    cls = model_class(name)
    _check_kwargs(name, cls, kwargs)
    return cls(**kwargs)


def describe_arch(name: str, kwargs: Mapping[str, Any]) -> str:
    """``"rrdb_generator(features=32, growth=32, scale=2)"`` (kwargs sorted by name)."""
    args = ", ".join(f"{k}={v!r}" for k, v in sorted(kwargs.items()))
    return f"{name}({args})"
