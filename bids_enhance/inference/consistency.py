"""Data consistency of a super-resolved image with its low-resolution input.

A super-resolved image ``sr`` is *consistent* with its input ``lr`` when degrading it again the
way the network's training data were degraded (:func:`bids_enhance.degrade.downsample` with the
same :class:`~bids_enhance.degrade.LowResMethod`) gives back ``lr``.

- :func:`consistency_error` measures ``D(sr) − lr``: RMS and maximum error in the input's units,
  relative RMS error, and both as a percentage of the input's robust maximum.
- :func:`project_consistent` changes ``sr`` as little as possible so that ``D(sr') = lr``:

  ``box``     ``sr' = sr + R(lr − B(sr))`` with ``R`` replicating each LR residual over its
              2×2×2 block. Since ``B(R(r)) = r`` (the mean of eight equal values),
              ``B(sr') = B(sr) + lr − B(sr) = lr``; ``R`` is ``8·Bᵀ`` and ``B·8Bᵀ = I``, so this
              is the minimum-norm correction.
  ``thick``   the same along the slice axis only (pairs of slices).
  ``nearest`` the sampled voxels ``sr[::2, ::2, ::2]`` are set to ``lr``.
  ``kspace``  the central k-space of ``sr`` is replaced by that of ``lr``:
              ``sr' = sr + Z(C⁻¹(lr − K(sr)))`` with ``K`` the k-space truncation, ``Z`` the
              zero-filled FFT and ``C = K∘Z``. ``C`` is circulant on the LR grid, so it is
              inverted exactly by dividing by its transfer function, computed from an impulse:
              1, halved once for every even axis on which a frequency is the unpaired Nyquist
              bin (taking real parts splits that bin), so never 0.

  The correction is computed in float64; the float32 result reproduces ``lr`` to float32
  rounding.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from bids_enhance.degrade import LowResMethod, downsample, upsampled_shape
from bids_enhance.image.intensity import robust_max
from bids_enhance.inference.superres import _zero_fill_axis

__all__ = ["consistency_error", "project_consistent", "redegrade"]


def _pair(sr: Any, lr: Any, method: LowResMethod, axis: int | None
          ) -> tuple[np.ndarray, np.ndarray]:
    sr = np.asarray(sr)
    lr = np.asarray(lr)
    if sr.ndim != 3 or lr.ndim != 3:
        raise ValueError(f"sr and lr must be 3D volumes, got shapes {sr.shape} and {lr.shape}")
    expected = upsampled_shape(lr.shape, method=method, axis=axis)
    if sr.shape != expected:
        raise ValueError(f"sr has shape {sr.shape}, but an x2 ({method.value}) image of the "
                         f"{lr.shape} input has shape {expected}")
    return sr.astype(np.float64), lr.astype(np.float64)


def redegrade(sr: np.ndarray, *, method: LowResMethod | str = "box",
              axis: int | None = None) -> np.ndarray:
    """``D(sr)``: the training degradation (:func:`bids_enhance.degrade.downsample`, the very
    function that made the training pairs) applied to a super-resolved image; float32."""
    return downsample(np.asarray(sr), np.eye(4), method=method, axis=axis)[0]


def _down(sr: np.ndarray, method: LowResMethod, axis: int | None) -> tuple[np.ndarray, None]:
    """Float64 twin of :func:`bids_enhance.degrade.downsample` (which returns float32), used for
    the projection; the tests check the projection with ``downsample`` itself."""
    if method is LowResMethod.BOX:
        x, y, z = (n // 2 for n in sr.shape)
        return sr.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5)), None
    if method is LowResMethod.THICK:
        ax = 2 if axis is None else axis
        moved = np.moveaxis(sr, ax, 0)
        out = moved.reshape(moved.shape[0] // 2, 2, *moved.shape[1:]).mean(1)
        return np.moveaxis(out, 0, ax), None
    if method is LowResMethod.NEAREST:
        return sr[::2, ::2, ::2], None
    # k-space truncation, exactly as bids_enhance.degrade.lowres (kept in float64)
    spectrum = np.fft.fftshift(np.fft.fftn(sr))
    index = tuple(slice(n // 2 - n // 4, n // 2 - n // 4 + n // 2) for n in sr.shape)
    return np.fft.ifftn(np.fft.ifftshift(spectrum[index])).real / 8.0, None


def consistency_error(sr: np.ndarray, lr: np.ndarray, *, method: LowResMethod | str = "box",
                      axis: int | None = None) -> dict[str, Any]:
    """How far ``sr``, degraded again by ``method``, is from ``lr`` (both in the input's units).

    Returns plain data (for sidecars and reports):

    - ``rmse``, ``max_abs_error``, ``mean_error``: of ``D(sr) − lr``, input units;
    - ``relative_rms_error``: ``‖D(sr) − lr‖ / ‖lr‖``;
    - ``robust_max``: 99.9th percentile of the input's positive voxels;
    - ``rmse_percent``, ``max_percent``: ``rmse`` and ``max_abs_error`` as % of ``robust_max``;
    - ``method``: the degradation used.
    """
    method = LowResMethod.parse(method)
    sr64, lr64 = _pair(sr, lr, method, axis)
    diff = redegrade(sr64, method=method, axis=axis).astype(np.float64) - lr64
    rmse = float(np.sqrt(np.mean(diff**2)))
    norm = float(np.sqrt(np.mean(lr64**2)))
    top = robust_max(lr64)
    max_abs = float(np.abs(diff).max())
    return {
        "method": method.value,
        "rmse": rmse,
        "max_abs_error": max_abs,
        "mean_error": float(diff.mean()),
        "relative_rms_error": rmse / norm if norm > 0 else float("nan"),
        "robust_max": float(top),
        "rmse_percent": 100.0 * rmse / top if top > 0 else float("nan"),
        "max_percent": 100.0 * max_abs / top if top > 0 else float("nan"),
    }


def _replicate(residual: np.ndarray, axes: tuple[int, ...]) -> np.ndarray:
    out = residual
    for ax in axes:
        out = np.repeat(out, 2, axis=ax)
    return out


def _kspace_correction(residual: np.ndarray) -> np.ndarray:
    """``Z(C⁻¹ r)`` with ``C = K∘Z`` (module docstring)."""
    def zero_fill(x: np.ndarray) -> np.ndarray:
        for ax in range(3):
            x = _zero_fill_axis(x, ax, 0.0)
        return x

    impulse = np.zeros(residual.shape)
    impulse[0, 0, 0] = 1.0
    transfer = np.fft.fftn(_down(zero_fill(impulse), LowResMethod.KSPACE, None)[0])
    if np.abs(transfer).min() < 1e-6:  # cannot happen for even sizes; guard against misuse
        raise ValueError("k-space projection is ill-conditioned for this shape")
    return zero_fill(np.fft.ifftn(np.fft.fftn(residual) / transfer).real)


def project_consistent(sr: np.ndarray, lr: np.ndarray, *, method: LowResMethod | str = "box",
                       axis: int | None = None) -> np.ndarray:
    """Return ``sr'`` closest to ``sr`` with ``D(sr') = lr`` exactly (module docstring).

    ``sr`` must have the x2 shape of ``lr`` for ``method`` (:func:`upsampled_shape`); ``axis``
    is the slice axis of ``thick``. Returns float32. Note that projecting onto a noisy input
    puts its noise back (at the LR scale).
    """
    method = LowResMethod.parse(method)
    sr64, lr64 = _pair(sr, lr, method, axis)
    residual = lr64 - _down(sr64, method, axis)[0]
    if method is LowResMethod.BOX:
        out = sr64 + _replicate(residual, (0, 1, 2))
    elif method is LowResMethod.THICK:
        out = sr64 + _replicate(residual, (2 if axis is None else axis,))
    elif method is LowResMethod.NEAREST:
        out = sr64.copy()
        out[::2, ::2, ::2] = lr64
    else:
        out = sr64 + _kspace_correction(residual)
    return out.astype(np.float32)

