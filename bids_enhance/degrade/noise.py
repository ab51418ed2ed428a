"""Rician and Gaussian noise simulation.

Rician magnitude noise: ``|x + n1 + i*n2|`` with ``n1, n2 ~ N(0, sigma^2)`` (METHODS.md). ``sigma``
is absolute; use :func:`sigma_from_fraction` to express it as a fraction of the robust maximum.
Randomness comes only from the ``numpy.random.Generator`` passed in, so a draw is replayable from
its seed.
"""

from __future__ import annotations

import numpy as np

from bids_enhance.image.intensity import robust_max


def sigma_from_fraction(volume: np.ndarray, fraction: float, *, mask: np.ndarray | None = None) -> float:
    """Absolute noise level for ``fraction`` (e.g. 0.03 for 3 %) of the robust maximum."""
    if not 0 <= fraction < 1:
        raise ValueError(f"noise fraction must be in [0, 1), got {fraction}")
    return fraction * robust_max(volume, mask=mask)


def _check(volume: np.ndarray, sigma: float) -> np.ndarray:
    data = np.asarray(volume)
    if data.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {data.shape}")
    if not np.isfinite(sigma) or sigma < 0:
        raise ValueError(f"sigma must be a finite non-negative number, got {sigma}")
    return data


def add_rician_noise(volume: np.ndarray, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``|volume + n1 + i n2|`` (float32), ``n1, n2 ~ N(0, sigma^2)`` drawn from ``rng``."""
    data = _check(volume, sigma).astype(np.float32)
    real = data + rng.normal(0.0, sigma, size=data.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, size=data.shape).astype(np.float32)
    return np.hypot(real, imag)


def add_gaussian_noise(volume: np.ndarray, *, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Return ``volume + n`` (float32), ``n ~ N(0, sigma^2)`` drawn from ``rng``."""
    data = _check(volume, sigma).astype(np.float32)
    return data + rng.normal(0.0, sigma, size=data.shape).astype(np.float32)
