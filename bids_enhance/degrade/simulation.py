"""Simulation mode and held-out evaluation: degrade a clean image, keep the reference.

:func:`simulate` degrades a clean image with a named preset from one seed (replayable from the
records) and returns, with the degraded image, the clean image *on the grid outputs are compared
on*: a x2 reduction of an axis of odd length drops its last voxel first (the step record's
``cropped``), so the reference loses the same voxels (:func:`crop_reference`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bids_enhance.degrade.pipeline import Degradation, degrade
from bids_enhance.degrade.prefilter import Prefilter

__all__ = ["Simulation", "crop_reference", "simulate"]


def crop_reference(clean: np.ndarray, records: Sequence[dict[str, Any]]) -> np.ndarray:
    """``clean`` without the voxels the degradation ``records`` cropped (``cropped``: voxels
    removed from the end of each axis before a x2 reduction); ``clean`` itself when none was."""
    reference = clean
    for record in records:  # odd axes lose their last voxel before a x2 reduction
        crop = record.get("cropped")
        if crop:
            reference = reference[tuple(slice(0, s - c) for s, c in
                                        zip(reference.shape, crop, strict=True))]
    return reference


@dataclass(frozen=True)
class Simulation:
    """A simulated degradation of a clean image (:func:`simulate`)."""

    #: the degraded image, float32 (on its own, coarser grid after a low-resolution step)
    degraded: np.ndarray
    #: its voxel→world affine
    affine: np.ndarray
    #: the clean image on the grid outputs are compared on (C-contiguous)
    reference: np.ndarray
    preset: str
    seed: int
    #: one record per applied step (:func:`bids_enhance.degrade.replay` reproduces ``degraded``)
    records: list[dict[str, Any]] = field(default_factory=list)

    def record(self) -> dict[str, Any]:
        """The ``Simulation`` entry of a sidecar: preset, seed and step records."""
        return {"Simulation": {"Preset": self.preset, "Seed": self.seed,
                               "Records": self.records}}


def simulate(clean: np.ndarray, affine: np.ndarray, *, preset: str, seed: int) -> Simulation:
    """Degrade ``clean`` (voxel→world ``affine``) with the preset ``preset``
    (:data:`~bids_enhance.degrade.PRESETS`), every random draw from ``numpy``'s
    ``default_rng(seed)``, as the models were trained.

    A preset's :class:`~bids_enhance.degrade.Prefilter` is left out: it is not part of the
    acquisition but of the model's input, and the inference of a model trained on such a preset
    runs it itself (:func:`bids_enhance.inference.run_checkpoint`), so the simulated image is
    what a scanner would give — filtering it here would filter it twice."""
    steps = Degradation(steps=tuple(s for s in Degradation.from_preset(preset).steps
                                    if not isinstance(s, Prefilter)), name=preset)
    data, out_affine, records = degrade(clean, affine, steps=steps,
                                        rng=np.random.default_rng(seed))
    return Simulation(degraded=data.astype(np.float32), affine=out_affine,
                      reference=np.ascontiguousarray(crop_reference(clean, records)),
                      preset=preset, seed=seed, records=records)
