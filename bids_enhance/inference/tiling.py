"""Tiling of a volume into overlapping cores and the windows that blend their outputs
(:func:`~bids_enhance.inference.sliding.infer_volume`; the module docstring there explains
halo, overlap and blending)."""

from __future__ import annotations

import numpy as np

__all__ = ["BLEND_MODES", "GAUSSIAN_SIGMA_SCALE", "blend_window", "tile_starts"]

BLEND_MODES = ("gaussian", "cosine")
#: σ of the Gaussian window as a fraction of the core length (MONAI's ``sigma_scale``)
GAUSSIAN_SIGMA_SCALE = 0.125
_WEIGHT_FLOOR = 1e-6


def blend_window(length: int, *, overlap: int, mode: str = "gaussian") -> np.ndarray:
    """1D blending weights (float64, positive, peak 1) for a core of ``length`` output voxels.

    ``gaussian``: ``exp(-½((i + ½ − L/2)/σ)²)`` with ``σ = GAUSSIAN_SIGMA_SCALE · L``.
    ``cosine``: 1 in the middle, ``sin²`` ramps over the first and last ``overlap`` voxels, so
    that two neighbours overlapping by exactly ``overlap`` voxels sum to 1 there.
    Weights are floored at 1e-6 so every voxel keeps a positive weight.
    """
    if mode not in BLEND_MODES:
        raise ValueError(f"blend must be one of {list(BLEND_MODES)}, got {mode!r}")
    if length < 1:
        raise ValueError(f"window length must be >= 1, got {length}")
    centres = np.arange(length) + 0.5
    if mode == "gaussian":
        sigma = GAUSSIAN_SIGMA_SCALE * length
        w = np.exp(-0.5 * ((centres - length / 2) / sigma) ** 2)
    else:
        w = np.ones(length)
        ov = int(min(max(overlap, 0), length))
        if ov:
            ramp = np.sin(0.5 * np.pi * (np.arange(ov) + 0.5) / ov) ** 2
            w[:ov] = np.minimum(w[:ov], ramp)
            w[length - ov:] = np.minimum(w[length - ov:], ramp[::-1])
    return np.maximum(w, _WEIGHT_FLOOR)


def tile_starts(length: int, core: int, stride: int) -> list[int]:
    """Start indices of cores of ``core`` voxels covering ``[0, length)`` with ``stride``; the
    last core ends at ``length`` (so it may overlap its neighbour by more than the others)."""
    if core >= length:
        return [0]
    stride = max(int(stride), 1)
    starts = list(range(0, length - core, stride))
    if not starts or starts[-1] != length - core:
        starts.append(length - core)
    return starts
