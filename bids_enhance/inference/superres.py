"""x2 super-resolution with exact geometry, and the interpolation baselines it is compared with.

Geometry (METHODS.md, "Geometry of x2"): an LR image made by ``method`` from an HR grid has
``A_lr = A_hr · M`` (:func:`bids_enhance.degrade.lowres_affine`); the x2 output must carry
``A_up = A_lr · M⁻¹`` (:func:`bids_enhance.degrade.upsampled_affine`), so HR voxel ``j`` sits at
LR voxel coordinate ``(j − o)/2`` with ``o = 0.5`` for ``box`` (and ``thick`` on its axis) and
``o = 0`` for ``kspace``/``nearest``. World coordinates are preserved: the output covers the
input's field of view on a grid twice as fine.

Baselines (:func:`upsample_baseline`) evaluate the LR image at exactly those coordinates:

- ``trilinear``: linear interpolation (order 1), half-sample mirror beyond the edge;
- ``cubic``: cubic B-spline (order 3, with the spline prefilter), half-sample mirror boundary —
  ``scipy.ndimage`` spline interpolation (``affine_transform`` with a diagonal matrix: the same
  kernels as ``map_coordinates`` without materialising a coordinate grid);
- ``kspace``: zero-filled FFT (band-limited interpolation) along each upsampled axis, with the
  Fourier phase shift that moves samples by ``o/2`` LR voxels; the real part is kept.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.fft
import torch
from scipy import ndimage
from torch import nn

from bids_enhance.degrade import LowResMethod, lowres_affine, upsampled_affine, upsampled_shape
from bids_enhance.inference.sliding import infer_volume

__all__ = ["BASELINE_KINDS", "hr_to_lr_coordinates", "superresolve", "upsample_baseline"]

BASELINE_KINDS = ("trilinear", "cubic", "kspace")


def _check_affine(affine: Any) -> np.ndarray:
    a = np.asarray(affine, dtype=np.float64)
    if a.shape != (4, 4) or not np.isfinite(a).all():
        raise ValueError(f"affine must be a finite 4x4 matrix, got shape {a.shape}")
    return a


def hr_to_lr_coordinates(method: LowResMethod | str, *, axis: int | None = None
                         ) -> tuple[np.ndarray, np.ndarray]:
    """``(factor, offset)`` per axis such that HR voxel ``j`` sits at LR coordinate
    ``(j − offset)/factor`` (factor 2 on downsampled axes, 1 elsewhere; offset 0.5 for box)."""
    m = lowres_affine(np.eye(4), method=method, axis=axis)
    return np.diag(m)[:3].copy(), m[:3, 3].copy()


def _zero_fill_axis(data: np.ndarray, axis: int, offset: float) -> np.ndarray:
    """Band-limited x2 interpolation along ``axis``: output ``j`` = the LR interpolant at LR
    coordinate ``(j − offset)/2``."""
    m = data.shape[axis]
    n = 2 * m
    spectrum = scipy.fft.fft(data, axis=axis)
    k = scipy.fft.fftfreq(m, d=1.0 / m)  # signed integer frequencies of the LR grid
    shape = [1, 1, 1]
    shape[axis] = m
    spectrum *= np.exp(-2j * np.pi * k * offset / n).reshape(shape)
    spectrum = scipy.fft.fftshift(spectrum, axes=axis)
    before = n // 2 - m // 2  # frequency -(m//2) sits at this index of the shifted HR spectrum
    pad = [(0, 0)] * 3
    pad[axis] = (before, n - m - before)
    padded = scipy.fft.ifftshift(np.pad(spectrum, pad), axes=axis)
    return 2.0 * scipy.fft.ifft(padded, axis=axis).real


def upsample_baseline(data: np.ndarray, affine: np.ndarray, *, kind: str = "cubic",
                      method: LowResMethod | str = "box", axis: int | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate an x2 low-resolution image made by ``method`` onto the HR grid covering its
    field of view.

    Args:
        data: ``(X, Y, Z)`` low-resolution array.
        affine: its 4×4 voxel→world matrix.
        kind: ``"trilinear"``, ``"cubic"`` (cubic B-spline) or ``"kspace"`` (zero-filled FFT).
        method: how the LR image was made (:class:`~bids_enhance.degrade.LowResMethod`); sets the
            half-voxel geometry. ``axis`` is the slice axis of ``thick``.

    Returns:
        ``(upsampled, affine)``: float32 array of :func:`~bids_enhance.degrade.upsampled_shape`
        and :func:`~bids_enhance.degrade.upsampled_affine`.
    """
    if kind not in BASELINE_KINDS:
        raise ValueError(f"kind must be one of {list(BASELINE_KINDS)}, got {kind!r}")
    lr = np.asarray(data)
    if lr.ndim != 3:
        raise ValueError(f"expected a 3D volume (X, Y, Z), got shape {lr.shape}")
    affine = _check_affine(affine)
    method = LowResMethod.parse(method)
    factor, offset = hr_to_lr_coordinates(method, axis=axis)
    out_shape = upsampled_shape(lr.shape, method=method, axis=axis)
    out_affine = upsampled_affine(affine, method=method, axis=axis)
    lr = lr.astype(np.float64)
    if kind == "kspace":
        out = lr
        for ax in range(3):
            if factor[ax] == 2:
                out = _zero_fill_axis(out, ax, offset[ax])
        return np.ascontiguousarray(out, dtype=np.float32), out_affine
    order = 1 if kind == "trilinear" else 3
    with warnings.catch_warnings():  # "1-D matrix behaviour changed in SciPy 0.18": we mean it
        warnings.simplefilter("ignore", UserWarning)
        out = ndimage.affine_transform(lr, 1.0 / factor, offset=-offset / factor,
                                       output_shape=out_shape, order=order, mode="reflect",
                                       prefilter=order > 1, output=np.float64)
    return out.astype(np.float32), out_affine


def superresolve(model: nn.Module, data: np.ndarray, affine: np.ndarray, *,
                 method: LowResMethod | str = "box",
                 patch_size: int | Sequence[int] | None = None, overlap: float = 0.25,
                 blend: str = "gaussian", device: torch.device | str = "cpu",
                 mem_budget_gb: float | None = None, batch_size: int = 1,
                 precision: str = "auto", halo: int | str = "auto",
                 report: dict[str, Any] | None = None,
                 log_level: int = logging.INFO) -> tuple[np.ndarray, np.ndarray]:
    """x2 super-resolution of ``data`` by ``model`` (an x2 generator) on the exact finer grid.

    ``method`` is the low-resolution model the network was trained for (``box``, ``kspace`` or
    ``nearest``; the checkpoint records it); it fixes the output affine
    (:func:`~bids_enhance.degrade.upsampled_affine`). The inference keywords are those of
    :func:`~bids_enhance.inference.sliding.infer_volume`.

    Returns ``(out, out_affine)``: float32 ``(2X, 2Y, 2Z)`` and the affine of that grid, which
    covers the same field of view in world coordinates.
    """
    method = LowResMethod.parse(method)
    if method is LowResMethod.THICK:
        raise ValueError("method 'thick' upsamples one axis only, but an x2 generator upsamples "
                         "all three; use a model trained for 'box', 'kspace' or 'nearest'")
    scale = getattr(model, "scale", 2)
    if scale != 2:
        raise ValueError(f"superresolve needs an x2 model, got a model with scale {scale!r}")
    affine = _check_affine(affine)
    out = infer_volume(model, data, scale=2, patch_size=patch_size, overlap=overlap, blend=blend,
                       device=device, mem_budget_gb=mem_budget_gb, batch_size=batch_size,
                       precision=precision, halo=halo, report=report, log_level=log_level)
    if report is not None:
        report["method"] = method.value
    return out, upsampled_affine(affine, method=method)
