"""Periodic ghosting artefacts with TorchIO's deterministic ``tio.Ghosting``.

TorchIO scales every ``num_ghosts``-th k-space plane along ``axis`` by ``1 - intensity`` and then
restores the central plane (``restore=None``) or the central ``restore`` fraction of planes, which
makes ``num_ghosts`` shifted copies of the object along ``axis``. :class:`RandomGhosting` draws the
parameters from a seeded ``numpy.random.Generator`` (TorchIO's own random twin uses torch's global
RNG) and returns a :class:`Ghosting` whose record replays bit for bit.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from bids_enhance.degrade._base import (
    DegradationStep,
    Step,
    check_affine,
    check_axis,
    parse_range,
    register,
)
from bids_enhance.degrade.motion import check_3d_volume, check_torchio_version, torchio_version


@register
@dataclass(frozen=True)
class Ghosting(DegradationStep):
    """Deterministic ghosting step on a 3D volume ``(X, Y, Z)``; output float32, same affine.

    ``num_ghosts`` ≥ 0, ``axis`` in {0, 1, 2}, ``intensity`` ≥ 0 (0: no ghosts; 1: the modified
    planes are zeroed), ``restore`` ``None`` or a fraction in [0, 1] of central planes kept.
    """

    kind: ClassVar[str] = "ghosting"

    num_ghosts: int = 4
    axis: int = 0
    intensity: float = 0.5
    restore: float | None = None
    method: str = "torchio"
    torchio_version: str = field(default_factory=torchio_version)

    def __post_init__(self):
        n = self.num_ghosts
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise ValueError(f"num_ghosts must be a non-negative int, got {n!r}")
        object.__setattr__(self, "num_ghosts", int(n))
        object.__setattr__(self, "axis", check_axis(self.axis))
        intensity = float(self.intensity)
        if not np.isfinite(intensity) or intensity < 0:
            raise ValueError(f"intensity must be a finite non-negative number, got {self.intensity!r}")
        object.__setattr__(self, "intensity", intensity)
        if self.restore is not None:
            restore = float(self.restore)
            if not 0 <= restore <= 1:
                raise ValueError(f"restore must be None or in [0, 1], got {self.restore!r}")
            object.__setattr__(self, "restore", restore)
        if self.method != "torchio":
            raise ValueError(f"method of a ghosting step must be 'torchio', got {self.method!r}")

    @classmethod
    def from_record(cls, record):
        step = super().from_record(record)
        check_torchio_version(step.torchio_version, kind=cls.kind)
        return step

    def __call__(self, data, affine):
        import torch
        import torchio as tio

        data = check_3d_volume(data, what="ghosting")
        affine = check_affine(affine)
        image = tio.ScalarImage(
            tensor=torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)[np.newaxis]),
            affine=affine)
        transform = tio.Ghosting(num_ghosts=self.num_ghosts, axis=self.axis,
                                 intensity=self.intensity, restore=self.restore)
        out = transform(image).data[0].numpy()
        return np.ascontiguousarray(out, dtype=np.float32), affine


@dataclass(frozen=True)
class RandomGhosting(Step):
    """Draw a :class:`Ghosting` step (TorchIO ``RandomGhosting``'s defaults and scheme).

    ``num_ghosts``: int ``d`` (→ integer in ``[0, d]``) or pair ``(a, b)`` (integer in
    ``[a, b]``); ``axes``: the axes to choose from uniformly; ``intensity``: ``d`` (→ ``U(0, d)``)
    or ``(a, b)``; ``restore``: ``None``, ``d`` (→ ``U(0, d)``) or ``(a, b)`` within [0, 1].
    """

    num_ghosts: int | tuple[int, int] = (4, 10)
    axes: tuple[int, ...] = (0, 1, 2)
    intensity: float | tuple[float, float] = (0.5, 1.0)
    restore: float | tuple[float, float] | None = None

    def __post_init__(self):
        n = self.num_ghosts
        pair = (0, n) if isinstance(n, int | np.integer) and not isinstance(n, bool) else n
        try:
            low, high = pair
            ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair)
        except (TypeError, ValueError):
            ok = False
        if not ok or not 0 <= low <= high:
            raise ValueError(f"num_ghosts must be a non-negative int or a pair (low, high) of "
                             f"non-negative ints, got {n!r}")
        object.__setattr__(self, "num_ghosts", (int(low), int(high)))
        axes = (self.axes,) if isinstance(self.axes, int | np.integer) else tuple(self.axes)
        if not axes:
            raise ValueError("axes must name at least one axis")
        object.__setattr__(self, "axes", tuple(check_axis(a, name="axes") for a in axes))
        intensity = self.intensity
        if isinstance(intensity, int | float) and not isinstance(intensity, bool):
            intensity = (0.0, float(intensity))
        object.__setattr__(self, "intensity", parse_range(intensity, name="intensity",
                                                          symmetric=False, low=0.0))
        if self.restore is not None:
            restore = self.restore
            if isinstance(restore, int | float) and not isinstance(restore, bool):
                restore = (0.0, float(restore))
            object.__setattr__(self, "restore", parse_range(restore, name="restore",
                                                            symmetric=False, low=0.0, high=1.0))

    def sample(self, data, affine, *, rng: np.random.Generator) -> Ghosting:
        check_3d_volume(data, what="ghosting")
        low, high = self.num_ghosts
        num_ghosts = int(rng.integers(low, high + 1))
        axis = self.axes[int(rng.integers(len(self.axes)))]
        intensity = float(rng.uniform(*self.intensity))
        restore = None if self.restore is None else float(rng.uniform(*self.restore))
        return Ghosting(num_ghosts=num_ghosts, axis=axis, intensity=intensity, restore=restore)
