"""Inference (core layer): arrays and modules in, arrays out; no BIDS, no nipype.

- :func:`infer_volume` — whole-volume or overlapping-patch inference with mirror-padded halos,
  smooth blending and a memory-budgeted patch size (:mod:`.sliding` runs it; :mod:`.planning`,
  :mod:`.tiling`, :mod:`.precision` and :mod:`.memory` plan it);
- :func:`superresolve`, :func:`upsample_baseline` — x2 super-resolution and the trilinear,
  cubic B-spline and zero-filled-FFT baselines, all on the exact finer grid (:mod:`.superres`);
- :func:`consistency_error`, :func:`project_consistent` — data consistency with the input
  (:mod:`.consistency`);
- :func:`diffusion_correct` — slice-wise DDIM motion correction (:mod:`.diffusion`);
- :func:`run_checkpoint` — load a checkpoint and dispatch to the above (:mod:`.run`);
  :func:`run_checkpoint_image` the same on a NIfTI image, the result keeping its header's
  transform codes and units;
- :func:`resolve_model` — choose and verify the checkpoint of an enhancement step: the shipped
  default weights or a user's own (:mod:`.weights`).

Names are loaded on first use, so ``from bids_enhance.inference.sliding import infer_volume``
needs only torch, numpy and :mod:`bids_enhance.models` (no SciPy; e.g. on a bare GPU machine).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "InferenceMemoryError": "memory",
    "activation_bytes": "memory",
    "activation_bytes_per_voxel": "memory",
    "memory_budget_gb": "memory",
    "receptive_radius": "memory",
    "BLEND_MODES": "tiling",
    "HALO_CAP": "planning",
    "PRECISIONS": "precision",
    "InferencePlan": "planning",
    "blend_window": "tiling",
    "default_halo": "planning",
    "infer_volume": "sliding",
    "plan_inference": "planning",
    "resolve_device": "sliding",
    "resolve_precision": "precision",
    "lean_forward": "sliding",
    "BASELINE_KINDS": "superres",
    "hr_to_lr_coordinates": "superres",
    "superresolve": "superres",
    "upsample_baseline": "superres",
    "consistency_error": "consistency",
    "project_consistent": "consistency",
    "redegrade": "consistency",
    "diffusion_correct": "diffusion",
    "CONSISTENCY_MODES": "run",
    "lowres_method_of": "run",
    "run_checkpoint": "run",
    "run_checkpoint_image": "run",
    "GENERATIVE_STEPS": "weights",
    "ModelSelectionError": "weights",
    "ResolvedModel": "weights",
    "X2_STEPS": "weights",
    "models_dir": "weights",
    "resolve_model": "weights",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'bids_enhance.inference' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"bids_enhance.inference.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_EXPORTS))
