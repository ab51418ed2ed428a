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
