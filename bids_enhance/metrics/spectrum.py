"""Radially averaged power spectrum of a 3D volume, for the before/after report plots."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["radial_power_spectrum"]


def radial_power_spectrum(volume: np.ndarray, *, spacing: Sequence[float] = (1.0, 1.0, 1.0),
                          n_bins: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Power spectrum of ``volume`` averaged over shells of equal spatial frequency.

    Parameters
    ----------
    volume
        Real array of shape ``(X, Y, Z)``; NaNs count as 0.
    spacing
        Voxel size in mm along each axis (e.g. the NIfTI zooms).
    n_bins
        Number of equal-width frequency shells between 0 and ``f_max``.

    Returns
    -------
    freqs, power
        Two float64 arrays of shape ``(n_bins,)``: the centre of each shell in cycles/mm and the
        mean of ``|FFT(volume)|^2 / N`` (``N`` = number of voxels) over the frequencies in it. With
        this scaling white noise of variance ``s^2`` has a flat spectrum at ``s^2``. Shells that
        contain no sampled frequency (possible for small volumes) are ``NaN``.

    Notes
    -----
    ``f_max = 1 / (2 * max(spacing))``, the Nyquist frequency of the coarsest axis: the largest
    radius whose whole shell is sampled on every axis, so each shell averages all directions.
    Frequencies beyond it (corners, and the finer axes of an anisotropic grid) are not shown.
    The mean is not removed: the first shell contains the DC term.
    """
    data = np.asarray(volume)
    if data.ndim != 3:
        raise ValueError(f"volume must be a 3D volume, got shape {data.shape}")
    if data.size == 0:
        raise ValueError("volume is empty")
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be three positive voxel sizes in mm, got {spacing}")
    if int(n_bins) != n_bins or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins}")
    n_bins = int(n_bins)

    data = np.nan_to_num(data.astype(np.float64, copy=False))
    spec = np.fft.rfftn(data)
    power = (spec.real**2 + spec.imag**2) / data.size
    del spec
    fx = np.fft.fftfreq(data.shape[0], d=spacing[0])
    fy = np.fft.fftfreq(data.shape[1], d=spacing[1])
    fz = np.fft.rfftfreq(data.shape[2], d=spacing[2])
    radius = np.sqrt(fx[:, None, None] ** 2 + fy[None, :, None] ** 2 + fz[None, None, :] ** 2)

    f_max = 0.5 / max(spacing)
    edges = np.linspace(0.0, f_max, n_bins + 1)
    idx = np.searchsorted(edges, radius.ravel(), side="right") - 1
    idx[radius.ravel() == f_max] = n_bins - 1  # close the last shell on the right
    keep = (idx >= 0) & (idx < n_bins)
    # rfftn stores half of a Hermitian spectrum: every column but the DC (and, for an even length,
    # the Nyquist) one stands for two frequencies +f and -f of equal power, so it counts twice.
    twice = np.full(fz.shape, 2.0)
    twice[0] = 1.0
    if data.shape[2] % 2 == 0:
        twice[-1] = 1.0
    weight = np.broadcast_to(twice[None, None, :], power.shape).ravel()[keep]
    counts = np.bincount(idx[keep], weights=weight, minlength=n_bins)
    sums = np.bincount(idx[keep], weights=weight * power.ravel()[keep], minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_power = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
    freqs = 0.5 * (edges[:-1] + edges[1:])
    return freqs, mean_power
