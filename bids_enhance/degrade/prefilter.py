"""A classical denoiser as a (deterministic) pipeline step: the input of a learned refinement.

``denoise-rician-wide-odct`` adds Rician noise and then filters it with ODCT3D (σ estimated from
the noisy data, as a participant run does), so that a network trained on it learns to refine
ODCT3D's output rather than to denoise from scratch; ``--denoise-method learned`` applies the
same prefilter before such a network (:mod:`bids_enhance.inference.learned`).

``stack``: what the network sees. ``"none"`` (default): the filtered volume alone — the network
can only refine what the filter kept. ``"input"``: the filtered volume and the unfiltered input
as two channels ``(2, X, Y, Z)``, so the network also sees what the filter removed (and, from
their difference, how noisy the input was). ``"input+sigma"``: those two and a third channel
holding :data:`SIGMA_GAIN` · σ everywhere (σ as the filter used it, in the data's units): a
network conditioned on the noise level, as FFDNet's noise-level map. ``"input+prinlm"``: the
filtered volume, the input and PRI-NLM's output (same σ) — a non-local estimate beside a local
one, for a network that merges the two (:data:`bids_enhance.steps.STACK_CHANNEL_METHODS`). The
filtered channel comes first: an image-skip generator adds it to its output
(:class:`~bids_enhance.models.RRDBGenerator`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from bids_enhance.degrade._base import DegradationStep, check_affine, check_volume, register

#: what :class:`Prefilter` can hand the network (module docstring), and its channel count
STACKS = {"none": 1, "input": 2, "input+sigma": 3, "input+prinlm": 3}
#: the σ channel of ``stack="input+sigma"`` holds this multiple of σ (normalised intensities
#: put σ at 0.01–0.12; ×10 brings it to the order of the image channels)
SIGMA_GAIN = 10.0


@register
@dataclass(frozen=True)
class Prefilter(DegradationStep):
    """Filter the data with a classical method of :func:`bids_enhance.classical.denoise`
    (default ODCT3D, Rician, σ estimated from the data). Output: float32, same grid."""

    kind: ClassVar[str] = "prefilter"

    method: str = "odct3d"
    noise_model: str = "rician"
    stack: str = "none"

    def __post_init__(self):
        from bids_enhance.steps import DENOISE_METHODS

        if self.method not in DENOISE_METHODS or DENOISE_METHODS[self.method].learned:
            classical = [m for m, spec in DENOISE_METHODS.items() if not spec.learned]
            raise ValueError(f"prefilter method must be one of {classical}, got {self.method!r}")
        if self.noise_model not in ("rician", "gaussian"):
            raise ValueError(f"noise_model must be 'rician' or 'gaussian', got "
                             f"{self.noise_model!r}")
        if self.stack not in STACKS:
            raise ValueError(f"stack must be one of {list(STACKS)}, got {self.stack!r}")

    @property
    def channels(self) -> int:
        """Channels of the output: 1 (a 3D volume) or 2–3 (``(C, X, Y, Z)``, see ``stack``)."""
        return STACKS[self.stack]

    def apply(self, data: np.ndarray, *, sigma: float | None = None,
              device: str = "cpu") -> np.ndarray:
        """The filtered volume (float32; ``(C, X, Y, Z)`` when ``stack`` is not ``"none"``);
        ``sigma`` (None: estimated) in the data's units."""
        return self.apply_with_record(data, sigma=sigma, device=device)[0]

    def apply_with_record(self, data: np.ndarray, *, sigma: float | None = None,
                          device: str = "cpu") -> tuple[np.ndarray, dict]:
        """``(filtered, record)``: the filtered volume (float32; stacked with the input and σ as
        ``stack`` says) and what ran — ``method``, ``noise_model``, ``sigma`` (the σ used, in the
        data's units), ``sigma_estimator`` (None when ``sigma`` was given) and ``stack``
        (``"input+prinlm"``: PRI-NLM runs with the same σ)."""
        from bids_enhance.classical import denoise
        from bids_enhance.steps import STACK_CHANNEL_METHODS

        data = check_volume(data).astype(np.float32, copy=False)
        out, info = denoise(data, method=self.method, noise_model=self.noise_model, sigma=sigma,
                            device=device)
        record = {"method": self.method, "noise_model": self.noise_model,
                  "sigma": float(info["sigma"]), "sigma_estimator": info.get("sigma_estimator"),
                  "stack": self.stack}
        out = np.asarray(out, dtype=np.float32)
        if self.stack != "none":
            planes = [out, data]
            if self.stack == "input+sigma":
                planes.append(np.full(data.shape, SIGMA_GAIN * record["sigma"], np.float32))
            elif self.stack in STACK_CHANNEL_METHODS:  # another method's output, same σ
                other, _ = denoise(data, method=STACK_CHANNEL_METHODS[self.stack],
                                   noise_model=self.noise_model, sigma=record["sigma"],
                                   device=device)
                planes.append(np.asarray(other, dtype=np.float32))
            out = np.stack(planes)
        return out, record

    def __call__(self, data, affine):
        return self.apply(data), check_affine(affine)
