"""Whole-volume or patch mode, core size and tiling of inference from a memory budget
(:func:`plan_inference`; used by :func:`~bids_enhance.inference.sliding.infer_volume`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from bids_enhance.inference.memory import (
    FIXED_OVERHEAD_GB,
    InferenceMemoryError,
    activation_bytes,
    memory_budget_gb,
    receptive_radius,
)
from bids_enhance.inference.precision import resolve_precision
from bids_enhance.inference.tiling import BLEND_MODES, tile_starts

__all__ = ["HALO_CAP", "MIN_PATCH", "InferencePlan", "default_halo", "plan_inference"]

#: default halo cap in input voxels (see :func:`default_halo`)
HALO_CAP = 8
#: smallest core edge (input voxels) patch mode accepts when choosing from a memory budget
MIN_PATCH = 8


def _triple(value: int | Sequence[int], name: str) -> tuple[int, int, int]:
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        values = (int(value),) * 3
    else:
        values = tuple(int(v) for v in value)
    if len(values) != 3 or min(values) < 1:
        raise ValueError(f"{name} must be a positive int or three positive ints, got {value!r}")
    return values  # type: ignore[return-value]


def _axis_core(length: int, tiles: int, overlap: float) -> int:
    """Smallest core that covers ``length`` voxels with ``tiles`` cores overlapping by
    ``round(overlap · core)``."""
    if tiles <= 1:
        return length
    core = max(min(MIN_PATCH, length), math.ceil(length / (tiles - (tiles - 1) * overlap)))
    while core < length:
        ov = min(int(round(overlap * core)), core - 1)
        if len(tile_starts(length, core, core - ov)) <= tiles:
            break
        core += 1
    return min(core, length)


def _cheapest_tiling(shape: tuple[int, int, int], *, overlap: float, halo: int,
                     batch_size: int, fits: Any) -> tuple[int, int, int] | None:
    """The core size (per axis) whose tiling fits the memory budget (``fits(window)``) and makes
    the network process the fewest voxels (cores + halos, overlaps counted), fewest patches on
    ties; None when not even :data:`MIN_PATCH` cores fit."""
    options = []
    for n in shape:
        cores: dict[int, int] = {}
        for tiles in range(1, max(1, math.ceil(n / MIN_PATCH)) + 1):
            core = _axis_core(n, tiles, overlap)
            count = len(tile_starts(n, core, core - min(int(round(overlap * core)), core - 1)))
            cores.setdefault(core, count)
            if core <= MIN_PATCH:
                break
        options.append(sorted(cores.items(), reverse=True))  # (core, tiles), largest first
    best: tuple[float, int, tuple[int, int, int]] | None = None
    for cx, kx in options[0]:
        for cy, ky in options[1]:
            for cz, kz in options[2]:
                core = (cx, cy, cz)
                window = tuple(c + 2 * halo for c in core)
                work = kx * ky * kz * math.prod(window)
                if best is not None and (work, kx * ky * kz) >= best[:2]:
                    continue
                if fits(window):
                    best = (work, kx * ky * kz, core)
    return None if best is None else best[2]


def default_halo(model: nn.Module) -> int:
    """``min(receptive_radius(model), HALO_CAP)`` input voxels."""
    return min(receptive_radius(model), HALO_CAP)


@dataclass(frozen=True)
class InferencePlan:
    """What :func:`infer_volume` does for one volume (plain data; ``to_dict`` for sidecars)."""

    mode: str                       # "whole" or "patches"
    input_shape: tuple[int, int, int]
    scale: int
    halo: int                       # input voxels of context on each side (mirror padding)
    patch_size: tuple[int, int, int] | None   # core size in input voxels (None: whole volume)
    overlap: tuple[int, int, int]   # overlap between neighbouring cores, input voxels
    num_patches: int
    batch_size: int
    blend: str
    precision: str
    device: str
    channels_last: bool
    budget_gb: float
    estimated_gb: float             # estimated peak memory of the chosen mode

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("input_shape", "patch_size", "overlap"):
            if out[key] is not None:
                out[key] = list(out[key])
        return out

    @property
    def window(self) -> tuple[int, int, int]:
        """Input voxels per patch along each axis (core plus halos)."""
        core = self.patch_size or self.input_shape
        return tuple(c + 2 * self.halo for c in core)  # type: ignore[return-value]

    def starts(self) -> list[list[int]]:
        """Per-axis start indices of the cores."""
        core = self.patch_size or self.input_shape
        return [tile_starts(n, c, c - o) for n, c, o
                in zip(self.input_shape, core, self.overlap, strict=True)]


def plan_inference(model: nn.Module, shape: Sequence[int], *, scale: int,
                   patch_size: int | Sequence[int] | None = None, overlap: float = 0.25,
                   blend: str = "gaussian", device: torch.device | str = "cpu",
                   mem_budget_gb: float | None = None, batch_size: int = 1,
                   precision: str = "auto", halo: int | str = "auto",
                   channels_last: bool | None = None, align: int = 1) -> InferencePlan:
    """Decide between whole-volume and patch inference and choose the patch size.

    ``align``: patch cores and overlaps are multiples of it (so, on a shape that is one too,
    every patch starts on a multiple of it): 2 for networks whose body runs on a half grid they
    cut at even input voxels (``space_to_depth``), which patches at odd offsets would shift.

    Memory model (GB): fixed = mirror-padded input + output accumulator (float32, on the device)
    + :data:`~bids_enhance.inference.memory.FIXED_OVERHEAD_GB`; per forward =
    :func:`~bids_enhance.inference.memory.activation_bytes` of a batch of windows (core + halos).
    Whole volume when ``patch_size`` is None and fixed + one whole forward fits the budget;
    otherwise, among tilings with 1, 2, 3 … cores per axis (each core as small as covers the axis
    with the overlap), the one that fits and makes the network process the fewest voxels
    (halos and overlaps included). ``patch_size`` forces patch mode with that core.
    """
    shape = tuple(int(n) for n in shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a 3D shape, got {shape}")
    scale = int(scale)
    if scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale}")
    if blend not in BLEND_MODES:
        raise ValueError(f"blend must be one of {list(BLEND_MODES)}, got {blend!r}")
    overlap = float(overlap)
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    batch_size = int(batch_size)
    device = torch.device(device)
    precision = resolve_precision(precision, device)
    if halo == "auto":
        halo = default_halo(model)
    elif isinstance(halo, bool) or not isinstance(halo, (int, np.integer)) or halo < 0:
        raise ValueError(f"halo must be 'auto' or a non-negative integer, got {halo!r}")
    halo = int(halo)
    if channels_last is None:  # faster on both (oneDNN on the CPU: inference/sliding.py)
        channels_last = True

    budget = memory_budget_gb(device, mem_budget_gb)
    gb = float(2**30)
    padded_shape = tuple(n + 2 * halo for n in shape)
    fixed = (4 * math.prod(padded_shape) + 4 * scale**3 * math.prod(shape)) / gb \
        + FIXED_OVERHEAD_GB

    def forward_gb(window: Sequence[int], batch: int) -> float:
        return activation_bytes(model, tuple(window), scale=scale, precision=precision,
                                batch_size=batch) / gb

    whole = fixed + forward_gb(padded_shape, 1)

    common = dict(input_shape=shape, scale=scale, halo=halo, blend=blend, precision=precision,
                  device=str(device), channels_last=bool(channels_last), budget_gb=budget)
    if patch_size is None and whole <= budget:
        return InferencePlan(mode="whole", patch_size=None, overlap=(0, 0, 0), num_patches=1,
                             batch_size=1, estimated_gb=whole, **common)

    if patch_size is not None:
        core = tuple(min(p, n) for p, n in zip(_triple(patch_size, "patch_size"), shape,
                                                strict=True))
    else:
        core = _cheapest_tiling(shape, overlap=overlap, halo=halo, batch_size=batch_size,
                                fits=lambda window: fixed + forward_gb(window, batch_size)
                                <= budget)
        if core is None:
            need = fixed + forward_gb(tuple(min(MIN_PATCH, n) + 2 * halo for n in shape),
                                      batch_size)
            raise InferenceMemoryError(
                f"a memory budget of {budget:.2f} GB is too small for inference on a "
                f"{'x'.join(map(str, shape))} volume: even {MIN_PATCH}^3 patches with a halo of "
                f"{halo} voxels and batch size {batch_size} need about {need:.2f} GB; raise the "
                "budget (--mem, or the GPU budget), lower the batch size or the halo")
    if align > 1:
        core = tuple(min(-(-c // align) * align, n) for c, n in zip(core, shape, strict=True))
    if core == shape:
        return InferencePlan(mode="whole", patch_size=None, overlap=(0, 0, 0), num_patches=1,
                             batch_size=1, estimated_gb=whole, **common)
    ov = tuple(0 if c >= n else min(int(round(overlap * c)), c - 1)
               for c, n in zip(core, shape, strict=True))
    if align > 1:
        ov = tuple(o // align * align for o in ov)
    num = math.prod(len(tile_starts(n, c, c - o)) for n, c, o in zip(shape, core, ov, strict=True))
    batch = min(batch_size, num)
    estimate = fixed + forward_gb(tuple(c + 2 * halo for c in core), batch)
    return InferencePlan(mode="patches", patch_size=core, overlap=ov, num_patches=num,
                         batch_size=batch, estimated_gb=estimate, **common)


