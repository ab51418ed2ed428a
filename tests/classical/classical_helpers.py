"""Helpers of the classical-denoiser tests: tiny synthetic phantoms (<= 48^3) and errors."""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi


def make_brain_phantom(shape=(48, 48, 48), *, seed: int = 0, zero_background: bool = True,
                       texture: float = 0.02) -> np.ndarray:
    """Head-like phantom in [0, 1] (float32) with realistic structure.

    Ellipsoidal head with a skull shell, CSF, a folded grey-matter ribbon around white matter
    (boundaries perturbed by a smooth random field), two ventricles, a smooth multiplicative bias
    field (±10 %) and a fine texture (smoothed white noise of relative amplitude ``texture``).
    Background 0.
    """
    rng = np.random.default_rng(seed)
    zz, yy, xx = (np.indices(shape, dtype=np.float64)
                  - (np.asarray(shape, dtype=np.float64) - 1)[:, None, None, None] / 2)
    radii = np.asarray(shape) * np.array([0.42, 0.45, 0.43])
    rho = np.sqrt((zz / radii[0]) ** 2 + (yy / radii[1]) ** 2 + (xx / radii[2]) ** 2)
    bumps = ndi.gaussian_filter(rng.standard_normal(shape), 3.0)
    bumps *= 0.08 / (bumps.std() + 1e-12)
    vol = np.zeros(shape)
    vol[rho <= 1.0] = 0.35                       # scalp / skull
    vol[rho <= 0.9] = 0.15                       # CSF
    vol[rho + bumps <= 0.84] = 0.55              # grey matter
    vol[rho + 1.5 * bumps <= 0.62] = 0.85        # white matter
    for side in (-1, 1):                         # ventricles
        v = ((zz / 4.0) ** 2 + ((yy - 2.0) / 7.0) ** 2 + ((xx - side * 3.5) / 2.5) ** 2) <= 1
        vol[v] = 0.15
    vol = ndi.gaussian_filter(vol, 0.6)          # partial volume
    head = rho <= 1.0
    bias = 1.0 + 0.1 * (zz / shape[0] + 0.5 * yy / shape[1] - 0.7 * xx / shape[2])
    tex = ndi.gaussian_filter(rng.standard_normal(shape), 1.0)
    tex *= texture / (tex.std() + 1e-12)
    vol = vol * bias * (1.0 + tex)
    if zero_background:
        vol[~head] = 0.0
    return np.clip(vol, 0, None).astype(np.float32)


def rmse(a, b, where=...) -> float:
    return float(np.sqrt(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64))[where]
                                 ** 2)))


def noisy_phantom_levels(phantom: np.ndarray, noise_model: str, levels=(0.03, 0.06, 0.09)):
    """``(level, noisy, head)`` for each noise level: ``phantom`` with seeded Rician or Gaussian
    noise of σ = level; Rician data get a zeroed background, as most public T1w."""
    from bids_enhance.degrade import add_gaussian_noise, add_rician_noise

    add = add_rician_noise if noise_model == "rician" else add_gaussian_noise
    head = phantom > 0
    for level in levels:
        noisy = add(phantom, sigma=level, rng=np.random.default_rng(int(level * 100)))
        if noise_model == "rician":
            noisy[~head] = 0.0
        yield level, noisy, head
