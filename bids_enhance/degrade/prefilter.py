"""A classical denoiser as a (deterministic) pipeline step: the input of a learned refinement.

``denoise-rician-wide-odct`` adds Rician noise and then filters it with ODCT3D (σ estimated from
the noisy data, as a participant run does), so that a network trained on it learns to refine
ODCT3D's output rather than to denoise from scratch; ``--denoise-method learned`` applies the
same prefilter before such a network (:mod:`bids_enhance.inference.learned`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bids_enhance.degrade._base import DegradationStep, check_affine, check_volume, register


@register
@dataclass(frozen=True)
class Prefilter(DegradationStep):
    """Filter the data with a classical method of :func:`bids_enhance.classical.denoise`
    (default ODCT3D, Rician, σ estimated from the data). Output: float32, same grid."""

    kind: ClassVar[str] = "prefilter"

    method: str = "odct3d"
    noise_model: str = "rician"

    def __post_init__(self):
        from bids_enhance.steps import DENOISE_METHODS

        if self.method not in DENOISE_METHODS or DENOISE_METHODS[self.method].learned:
            classical = [m for m, spec in DENOISE_METHODS.items() if not spec.learned]
            raise ValueError(f"prefilter method must be one of {classical}, got {self.method!r}")
        if self.noise_model not in ("rician", "gaussian"):
            raise ValueError(f"noise_model must be 'rician' or 'gaussian', got "
                             f"{self.noise_model!r}")

    def apply(self, data: np.ndarray, *, sigma: float | None = None,
              device: str = "cpu") -> np.ndarray:
        """The filtered volume (float32); ``sigma`` (None: estimated) in the data's units."""
        return self.apply_with_record(data, sigma=sigma, device=device)[0]

    def apply_with_record(self, data: np.ndarray, *, sigma: float | None = None,
                          device: str = "cpu") -> tuple[np.ndarray, dict]:
        """``(filtered, record)``: the filtered volume (float32) and what ran — ``method``,
        ``noise_model``, ``sigma`` (the σ used, in the data's units) and ``sigma_estimator`` (None
        when ``sigma`` was given)."""
        from bids_enhance.classical import denoise

        out, info = denoise(check_volume(data).astype(np.float32, copy=False),
                            method=self.method, noise_model=self.noise_model, sigma=sigma,
                            device=device)
        record = {"method": self.method, "noise_model": self.noise_model,
                  "sigma": float(info["sigma"]), "sigma_estimator": info.get("sigma_estimator")}
        return np.asarray(out, dtype=np.float32), record

    def __call__(self, data, affine):
        return self.apply(data), check_affine(affine)
