"""Noise level estimation for one 3D magnitude (Rician) or Gaussian volume.

* :func:`estimate_noise_sigma` — object-based wavelet estimator of Coupé et al. (2010): one-level
  3D DWT; the low band is split into object/background by 2-class k-means; among the object voxels
  those whose low-band gradient is below its median are kept (flat tissue, away from edges);
  ``σ_m = median(|HHH|) / 0.6745`` there. For Rician data ``σ_m`` is the standard deviation of the
  magnitude, which underestimates the Gaussian σ at low SNR: it is corrected with the Koay–Basser
  fixed point, using the object's mean signal.
* :func:`estimate_noise_pseudo_residual` — a cheaper alternative: pseudo-residuals
  ``ε = sqrt(6/7) (y − mean of the 6 face neighbours)`` (unit variance for white noise), robust
  scale over the same kind of flat object region, same Rician correction.

Both return σ in the volume's intensity units (the σ of each Gaussian channel for Rician data),
and work on numpy arrays or tensors (computed with numpy on the CPU).
"""

from __future__ import annotations

import math

import numpy as np

from bids_enhance.classical._common import NOISE_MODELS, check_choice, to_numpy
from bids_enhance.image.volume import check_volume

__all__ = [
    "estimate_noise_pseudo_residual",
    "estimate_noise_sigma",
    "koay_correction",
    "rician_xi",
]

#: Wavelet of the one-level DWT (chosen by measurement, see docs/benchmarks/denoise.md).
WAVELET = "sym4"
_MAD_TO_SIGMA = 1.0 / 0.6744897501960817


def estimate_noise_sigma(volume, *, noise_model: str = "rician", mask=None) -> float:
    """Estimate the noise standard deviation with Coupé et al.'s object-based wavelet method.

    Parameters
    ----------
    volume
        3D numpy array or torch tensor, any intensity scale; every axis >= 4 voxels.
    noise_model
        ``"rician"`` (Koay–Basser correction of the magnitude's σ) or ``"gaussian"``.
    mask
        Optional boolean object mask (same shape) used instead of the k-means object.

    Returns
    -------
    σ as a Python float (0.0 for a constant or empty object).
    """
    import pywt

    noise_model = check_choice("noise_model", noise_model, NOISE_MODELS)
    data = _check_volume(volume)
    obj_mask = _check_mask(mask, data.shape)
    coeffs = pywt.dwtn(data, WAVELET, mode="periodization")
    low = coeffs["aaa"] / 2.0 ** 1.5          # low band on the image's intensity scale
    high = coeffs["ddd"]
    if obj_mask is None:
        obj = _kmeans_object(low)
    else:
        obj = _downsample_mask(obj_mask, low.shape)
    flat = _flat_voxels(low, obj)
    if not flat.any():
        return 0.0
    sigma_m = float(np.median(np.abs(high[flat]))) * _MAD_TO_SIGMA
    if noise_model == "gaussian" or sigma_m == 0:
        return sigma_m
    return koay_correction(float(np.mean(low[obj])), sigma_m)


def estimate_noise_pseudo_residual(volume, *, noise_model: str = "rician", mask=None) -> float:
    """Estimate σ from pseudo-residuals (6-neighbour Laplacian) over flat object voxels.

    Cheaper than :func:`estimate_noise_sigma` (no wavelet transform), slightly more sensitive to
    fine structure. Same arguments and return value.
    """
    noise_model = check_choice("noise_model", noise_model, NOISE_MODELS)
    data = _check_volume(volume)
    obj_mask = _check_mask(mask, data.shape)
    inner = data[1:-1, 1:-1, 1:-1]
    neigh = (data[:-2, 1:-1, 1:-1] + data[2:, 1:-1, 1:-1] + data[1:-1, :-2, 1:-1]
             + data[1:-1, 2:, 1:-1] + data[1:-1, 1:-1, :-2] + data[1:-1, 1:-1, 2:]) / 6.0
    resid = math.sqrt(6.0 / 7.0) * (inner - neigh)
    # object and flatness are judged on the 6-neighbour mean (a denoised view of the image)
    if obj_mask is None:
        obj = _kmeans_object(neigh)
    else:
        obj = obj_mask[1:-1, 1:-1, 1:-1]
    # exclude voxels touching the background: their residual carries the object's edge
    obj = obj & _erode(obj)
    flat = _flat_voxels(neigh, obj)
    if not flat.any():
        return 0.0
    sigma_m = float(np.median(np.abs(resid[flat]))) * _MAD_TO_SIGMA
    if noise_model == "gaussian" or sigma_m == 0:
        return sigma_m
    return koay_correction(float(np.mean(inner[obj])), sigma_m)


# --------------------------------------------------------------------------------------------
# Rician correction (Koay & Basser, JMR 2006)
# --------------------------------------------------------------------------------------------
def rician_xi(snr: float | np.ndarray) -> float | np.ndarray:
    """Correction factor ``ξ(θ) = Var(magnitude) / σ²`` of a Rician variable with SNR ``θ = A/σ``.

    ``ξ(θ) = 2 + θ² − (π/8) e^{−θ²/2} [(2 + θ²) I0(θ²/4) + θ² I1(θ²/4)]²``, computed with the
    exponentially scaled Bessel functions (no overflow at high SNR); ``ξ(0) = 2 − π/2``.
    """
    from scipy.special import i0e, i1e

    t = np.asarray(snr, dtype=np.float64) ** 2
    val = 2.0 + t - (math.pi / 8.0) * ((2.0 + t) * i0e(t / 4.0) + t * i1e(t / 4.0)) ** 2
    return float(val) if np.ndim(val) == 0 else val


def koay_correction(mean: float, sigma_m: float, *, iterations: int = 500,
                    tol: float = 1e-9) -> float:
    """Gaussian σ from the mean and standard deviation of Rician magnitude samples.

    Fixed point of Koay & Basser (2006): with ``r = mean / sigma_m``, iterate
    ``θ ← sqrt(ξ(θ)(1 + r²) − 2)`` from ``θ = r``; then ``σ = sigma_m / sqrt(ξ(θ))``. Below the
    Rayleigh ratio ``sqrt(π / (4 − π))`` the signal is taken as 0 (``θ = 0``).
    """
    if sigma_m <= 0 or not math.isfinite(mean) or mean <= 0:
        return max(float(sigma_m), 0.0)
    r = mean / sigma_m
    if r <= math.sqrt(math.pi / (4.0 - math.pi)):
        theta = 0.0
    else:
        theta = r
        for _ in range(iterations):
            new = math.sqrt(max(rician_xi(theta) * (1.0 + r * r) - 2.0, 0.0))
            if abs(new - theta) < tol * max(1.0, theta):
                theta = new
                break
            theta = new
    return float(sigma_m / math.sqrt(rician_xi(theta)))


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------
def _check_volume(volume) -> np.ndarray:
    """float64, 3D, finite, at least 4 voxels along every axis (the wavelet decomposition)."""
    return np.asarray(check_volume(to_numpy(volume), name="volume", min_size=4),
                      dtype=np.float64)


def _check_mask(mask, shape) -> np.ndarray | None:
    if mask is None:
        return None
    arr = to_numpy(mask)
    if arr.shape != shape:
        raise ValueError(f"mask must have the volume's shape {shape}; got {arr.shape}")
    return arr.astype(bool)


def _kmeans_object(values: np.ndarray, iterations: int = 100) -> np.ndarray:
    """Two-class 1D k-means (Lloyd, deterministic init at the extremes); the brighter class."""
    flat = values.ravel()
    lo, hi = float(flat.min()), float(flat.max())
    if hi <= lo:
        return np.zeros(values.shape, dtype=bool)
    c0, c1 = lo, hi
    for _ in range(iterations):
        thr = 0.5 * (c0 + c1)
        upper = flat > thr
        n1 = int(upper.sum())
        if n1 == 0 or n1 == flat.size:
            break
        new0, new1 = float(flat[~upper].mean()), float(flat[upper].mean())
        if new0 == c0 and new1 == c1:
            break
        c0, c1 = new0, new1
    return values > 0.5 * (c0 + c1)


def _flat_voxels(low: np.ndarray, obj: np.ndarray) -> np.ndarray:
    """Object voxels whose gradient magnitude (of ``low``) is below the object's median."""
    if not obj.any():
        return obj
    grad = np.zeros_like(low)
    for g in np.gradient(low):
        grad += g * g
    med = np.median(grad[obj])
    return obj & (grad < med) if (grad[obj] < med).any() else obj & (grad <= med)


def _downsample_mask(mask: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Mask on the half-resolution DWT grid: a low-band voxel is in when all its children are."""
    d, h, w = (2 * s for s in shape)
    padded = np.zeros((d, h, w), dtype=bool)
    padded[: mask.shape[0], : mask.shape[1], : mask.shape[2]] = mask
    blocks = padded.reshape(shape[0], 2, shape[1], 2, shape[2], 2)
    return blocks.all(axis=(1, 3, 5))


def _erode(mask: np.ndarray) -> np.ndarray:
    """6-neighbour binary erosion (voxels outside the array count as background)."""
    out = mask.copy()
    out[1:] &= mask[:-1]
    out[:-1] &= mask[1:]
    out[:, 1:] &= mask[:, :-1]
    out[:, :-1] &= mask[:, 1:]
    out[:, :, 1:] &= mask[:, :, :-1]
    out[:, :, :-1] &= mask[:, :, 1:]
    out[0] = out[-1] = False
    out[:, 0] = out[:, -1] = False
    out[:, :, 0] = out[:, :, -1] = False
    return out
