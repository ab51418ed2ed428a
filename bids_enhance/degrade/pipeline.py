"""Composable degradations, named presets, and replay from records.

``degrade(data, affine, steps="sr-box-x2-rician", rng=rng)`` runs each step in order: a random
step draws its parameters from ``rng`` and becomes its deterministic twin, which is applied and
recorded. The records (a list of JSON-serialisable dicts, one per step) together with the preset
name are what checkpoints and sidecars store; ``replay(records, data, affine)`` reproduces the
output bit for bit.

Presets (:data:`PRESETS`):

==========================  ====================================================================
``sr-box-x2``               2×2×2 box average (the thesis' "linear downsampling")
``sr-kspace-x2``            central-half k-space truncation
``sr-nearest-x2``           every second voxel (the authors' released code)
``sr-thick-x2``             pairs of slices averaged along voxel axis 2
``sr-box-x2-rician``        box average, then Rician noise, σ ~ U(1 %, 5 %) of the robust max
``sr-box-x2-rician-wide``   box average, then Rician noise, σ ~ U(1 %, 9 %)
``sr-box-x2-rician-wide-odct`` the same, then ODCT3D (σ estimated) on the 2 mm grid: the input
                            of an x2 network that super-resolves ODCT3D's output (what the
                            shipped ``superres-denoise`` default is trained on)
``sr-box-x2-gaussian``      box average, then Gaussian noise, σ ~ U(1 %, 5 %)
``denoise-rician``          Rician noise only, σ ~ U(1 %, 5 %)
``denoise-rician-wide``     Rician noise only, σ ~ U(1 %, 12 %) (clinical 3 T to
                            low-field-like levels)
``denoise-rician-wide-odct`` the same, then ODCT3D (σ estimated): the input of a learned
                            refinement of ODCT3D (``--denoise-method learned``)
``noise-rician-3`` (6, 9)   Rician noise at exactly 3 % (6 %, 9 %) of the robust maximum (the
                            levels of the denoising benchmark; simulation mode)
``noise-gaussian-3``        Gaussian noise at exactly 3 %
``motion``                  TorchIO rigid motion with its defaults: ±10°, ±10 mm, 2 movements
``motion-ghosting``         ``motion`` then TorchIO ghosting with its defaults (4–10 ghosts,
                            intensity 0.5–1, any axis)
==========================  ====================================================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from bids_enhance.degrade._base import (
    DegradationStep,
    Step,
    check_affine,
    check_volume,
    did_you_mean,
    step_from_record,
)
from bids_enhance.degrade.ghosting import RandomGhosting
from bids_enhance.degrade.lowres import LowResMethod, LowResolution
from bids_enhance.degrade.motion import RandomMotion
from bids_enhance.degrade.noise import NoiseMethod, RandomNoise
from bids_enhance.degrade.prefilter import Prefilter

#: noise level range (fraction of the robust maximum) of the noisy presets
NOISE_FRACTION = (0.01, 0.05)
#: the wider range of ``sr-box-x2-rician-wide`` (the denoising benchmark's levels 3/6/9 % inside)
WIDE_NOISE_FRACTION = (0.01, 0.09)
#: the range of ``denoise-rician-wide`` (the learned denoiser: 1–12 % of the robust maximum)
DENOISE_NOISE_FRACTION = (0.01, 0.12)

PRESETS: Mapping[str, tuple[Step, ...]] = MappingProxyType({
    "sr-box-x2": (LowResolution(method=LowResMethod.BOX),),
    "sr-kspace-x2": (LowResolution(method=LowResMethod.KSPACE),),
    "sr-nearest-x2": (LowResolution(method=LowResMethod.NEAREST),),
    "sr-thick-x2": (LowResolution(method=LowResMethod.THICK, axis=2),),
    "sr-box-x2-rician": (LowResolution(method=LowResMethod.BOX),
                         RandomNoise(method=NoiseMethod.RICIAN, fraction=NOISE_FRACTION)),
    "sr-box-x2-rician-wide": (LowResolution(method=LowResMethod.BOX),
                              RandomNoise(method=NoiseMethod.RICIAN, fraction=WIDE_NOISE_FRACTION)),
    "sr-box-x2-rician-wide-odct": (LowResolution(method=LowResMethod.BOX),
                                   RandomNoise(method=NoiseMethod.RICIAN,
                                               fraction=WIDE_NOISE_FRACTION), Prefilter()),
    "sr-box-x2-gaussian": (LowResolution(method=LowResMethod.BOX),
                           RandomNoise(method=NoiseMethod.GAUSSIAN, fraction=NOISE_FRACTION)),
    "denoise-rician": (RandomNoise(method=NoiseMethod.RICIAN, fraction=NOISE_FRACTION),),
    "denoise-rician-wide": (RandomNoise(method=NoiseMethod.RICIAN,
                                        fraction=DENOISE_NOISE_FRACTION),),
    "denoise-rician-wide-odct": (RandomNoise(method=NoiseMethod.RICIAN,
                                             fraction=DENOISE_NOISE_FRACTION), Prefilter()),
    # the network sees ODCT3D's output and the noisy input (and σ): two (three) channels
    "denoise-rician-wide-odct-stack": (RandomNoise(method=NoiseMethod.RICIAN,
                                                   fraction=DENOISE_NOISE_FRACTION),
                                       Prefilter(stack="input")),
    # the same with ODCT3D-Wiener as the filter (its Wiener second pass keeps more detail)
    "denoise-rician-wide-odct-wiener-stack": (RandomNoise(method=NoiseMethod.RICIAN,
                                                          fraction=DENOISE_NOISE_FRACTION),
                                              Prefilter(method="odct3d-wiener", stack="input")),
    # … with the noise level drawn log-uniformly (half the draws below 3.5 %, where a uniform
    # draw over 1–12 % puts a fifth)
    "denoise-rician-logwide-odct-wiener-stack": (
        RandomNoise(method=NoiseMethod.RICIAN, fraction=DENOISE_NOISE_FRACTION, spacing="log"),
        Prefilter(method="odct3d-wiener", stack="input")),
    # … with the block-matching filter (BM-DCT) as the prefilter
    "denoise-rician-wide-blockmatch-stack": (
        RandomNoise(method=NoiseMethod.RICIAN, fraction=DENOISE_NOISE_FRACTION),
        Prefilter(method="blockmatch", stack="input")),
    # … and PRI-NLM's output as a third channel (a non-local estimate beside the DCT filter's)
    "denoise-rician-wide-odct-wiener-stack-prinlm": (
        RandomNoise(method=NoiseMethod.RICIAN, fraction=DENOISE_NOISE_FRACTION),
        Prefilter(method="odct3d-wiener", stack="input+prinlm")),
    # … BM-DCT as the filter and PRI-NLM's output as a third channel (PD-weighted images: flat
    # contrast, where non-local averaging leads the block-transform filters)
    "denoise-rician-wide-blockmatch-stack-prinlm": (
        RandomNoise(method=NoiseMethod.RICIAN, fraction=DENOISE_NOISE_FRACTION),
        Prefilter(method="blockmatch", stack="input+prinlm")),
    "denoise-rician-wide-odct-stack-sigma": (RandomNoise(method=NoiseMethod.RICIAN,
                                                         fraction=DENOISE_NOISE_FRACTION),
                                             Prefilter(stack="input+sigma")),
    "noise-rician-3": (RandomNoise(method=NoiseMethod.RICIAN, fraction=(0.03, 0.03)),),
    "noise-rician-6": (RandomNoise(method=NoiseMethod.RICIAN, fraction=(0.06, 0.06)),),
    "noise-rician-9": (RandomNoise(method=NoiseMethod.RICIAN, fraction=(0.09, 0.09)),),
    "noise-gaussian-3": (RandomNoise(method=NoiseMethod.GAUSSIAN, fraction=(0.03, 0.03)),),
    "motion": (RandomMotion(),),
    "motion-ghosting": (RandomMotion(), RandomGhosting()),
})


def _as_generator(rng: Any) -> np.random.Generator:
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool) and rng >= 0:
        return np.random.default_rng(int(rng))
    raise ValueError(f"rng must be a numpy.random.Generator or a non-negative int seed, got "
                     f"{type(rng).__name__} (global np.random is never used)")


@dataclass(frozen=True)
class Degradation:
    """An ordered sequence of steps (random or deterministic), optionally named after a preset.

    ``degradation(data, affine, rng=rng) -> (data, affine, records)``; see :func:`degrade`.
    """

    steps: tuple[Step, ...]
    name: str | None = None

    def __post_init__(self):
        steps = tuple(self.steps)
        for i, step in enumerate(steps):
            if not isinstance(step, Step):
                raise ValueError(f"steps[{i}] must be a degradation step (e.g. LowResolution, "
                                 f"RandomNoise), got {type(step).__name__}")
        object.__setattr__(self, "steps", steps)

    @classmethod
    def from_preset(cls, name: str) -> Degradation:
        """The named preset from :data:`PRESETS`."""
        if name not in PRESETS:
            raise ValueError(f"unknown degradation preset {name!r}; expected one of "
                             f"{sorted(PRESETS)}{did_you_mean(name, PRESETS)}")
        return cls(steps=PRESETS[name], name=name)

    def __call__(self, data: np.ndarray, affine: np.ndarray, *,
                 rng: np.random.Generator | int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
        rng = _as_generator(rng)
        data = check_volume(data)
        affine = check_affine(affine)
        records = []
        for step in self.steps:
            bound = step.sample(data, affine, rng=rng)
            data, affine = bound(data, affine)
            records.append(bound.to_record())
        return np.asarray(data, dtype=np.float32), affine, records


def prefilter_of(preset: str | None) -> Prefilter | None:
    """The :class:`~bids_enhance.degrade.Prefilter` step of a preset — the classical filter whose
    output a model trained on it refines — or None (also for an unknown or missing preset)."""
    return next((s for s in PRESETS.get(preset or "", ()) if isinstance(s, Prefilter)), None)


def input_channels(preset: Any) -> int:
    """Channels of what a network trained on ``preset`` (a name or a :class:`Degradation`) is
    given: 1, or its :class:`~bids_enhance.degrade.Prefilter`'s stack of the filtered volume,
    the input and σ."""
    steps = preset.steps if isinstance(preset, Degradation) else PRESETS.get(preset or "", ())
    prefilter = next((s for s in steps if isinstance(s, Prefilter)), None)
    return 1 if prefilter is None else prefilter.channels


def degrade(data: np.ndarray, affine: np.ndarray, *,
            steps: str | Degradation | Sequence[Step],
            rng: np.random.Generator | int) -> tuple[np.ndarray, np.ndarray, list[dict]]:
    """Degrade a clean image.

    Args:
        data: 3D array ``(X, Y, Z)``, any real dtype, finite.
        affine: its 4×4 voxel→world matrix.
        steps: a preset name (:data:`PRESETS`), a :class:`Degradation`, or a sequence of steps.
        rng: seeded ``numpy.random.Generator`` (or an int seed) all random draws come from.

    Returns:
        ``(degraded, affine, records)``: float32 array (smaller after a low-resolution step;
        ``(C, X, Y, Z)`` after a stacking :class:`~bids_enhance.degrade.Prefilter`), its affine,
        and one JSON-serialisable record per step for :func:`replay`.
    """
    if isinstance(steps, str):
        steps = Degradation.from_preset(steps)
    elif not isinstance(steps, Degradation):
        if isinstance(steps, Step):
            steps = (steps,)
        steps = Degradation(steps=tuple(steps))
    return steps(data, affine, rng=rng)


def replay(records: dict | Sequence[dict] | str, data: np.ndarray,
           affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Re-apply recorded degradations (one record, a list, or their JSON text) to ``data``.

    With the same input, the output equals the original run's bit for bit (TorchIO-based steps:
    with the same TorchIO version; a different one is logged as a warning).
    """
    if isinstance(records, str):
        try:
            records = json.loads(records)
        except json.JSONDecodeError as err:
            raise ValueError(f"records is not valid JSON: {err}") from None
    if isinstance(records, dict):
        records = [records]
    steps: list[DegradationStep] = [step_from_record(r) for r in records]
    data = check_volume(data)
    affine = check_affine(affine)
    for step in steps:
        data, affine = step(data, affine)
    return np.asarray(data, dtype=np.float32), affine
