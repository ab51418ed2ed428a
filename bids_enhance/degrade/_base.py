"""Shared machinery of the degradation steps: validation, records and the kind registry.

Every degradation comes as a pair of twins (TorchIO's pattern):

* a **deterministic step** (``LowResolution``, ``Noise``, ``Motion``, ``Ghosting``): a frozen
  dataclass whose fields are *all* its parameters. ``step(data, affine)`` applies it;
  ``step.to_record()`` is a JSON-serialisable dict (``kind``, ``method`` and every field) and
  ``from_record`` rebuilds the identical step, so a record replays bit for bit.
* a **random step** (``RandomNoise``, ``RandomMotion``, ``RandomGhosting``): holds parameter
  *ranges*; ``sample(data, affine, rng=...)`` draws from a seeded ``numpy.random.Generator`` and
  returns the deterministic twin. TorchIO's own random transforms draw from torch's global RNG,
  which is why we never use them.
"""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from dataclasses import fields
from typing import Any, ClassVar

import numpy as np

from bids_enhance.image.volume import check_volume as _check_volume
from bids_enhance.utils import json_safe

#: kind → deterministic step class; filled by :func:`register`.
STEP_KINDS: dict[str, type[DegradationStep]] = {}


def register(cls: type[DegradationStep]) -> type[DegradationStep]:
    """Class decorator: make ``cls`` replayable from records whose ``kind`` is ``cls.kind``."""
    if cls.kind in STEP_KINDS:
        raise RuntimeError(f"degradation kind {cls.kind!r} registered twice")
    STEP_KINDS[cls.kind] = cls
    return cls


def did_you_mean(value: str, options) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest option, or an empty string."""
    close = difflib.get_close_matches(str(value), [str(o) for o in options], n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_volume(data: Any, *, name: str = "data") -> np.ndarray:
    """Return ``data`` as an array after checking it is a finite, real, 3D volume
    (:func:`bids_enhance.image.volume.check_volume`)."""
    return _check_volume(data, name=name)


def check_affine(affine: Any, *, name: str = "affine") -> np.ndarray:
    """Return ``affine`` as a float64 4×4 array after checking it is a valid voxel→world map."""
    array = np.asarray(affine, dtype=np.float64)
    if array.shape != (4, 4):
        raise ValueError(f"{name} must be a 4x4 matrix, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    if not np.array_equal(array[3], [0.0, 0.0, 0.0, 1.0]):
        raise ValueError(f"{name} must have last row [0, 0, 0, 1], got {array[3].tolist()}")
    if abs(np.linalg.det(array[:3, :3])) < 1e-12:
        raise ValueError(f"{name} is singular (zero voxel size?): {array[:3, :3].tolist()}")
    return array


def check_axis(axis: Any, *, name: str = "axis") -> int:
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer) or not 0 <= axis <= 2:
        raise ValueError(f"{name} must be 0, 1 or 2, got {axis!r}")
    return int(axis)


def parse_range(value: Any, *, name: str, symmetric: bool, low: float | None = None,
                high: float | None = None) -> tuple[float, float]:
    """Parse ``d`` or ``(a, b)`` into ``(a, b)``.

    A single number means ``(-d, d)`` when ``symmetric`` (TorchIO's convention for degrees and
    translations), else ``(d, d)`` (a fixed value). Bounds are checked against ``low``/``high``.
    """
    if isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool):
        pair = (-abs(float(value)), abs(float(value))) if symmetric else (float(value),) * 2
    else:
        try:
            a, b = (float(v) for v in value)
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be a number or a pair (low, high), got {value!r}") from None
        pair = (a, b)
    if not all(np.isfinite(pair)) or pair[0] > pair[1]:
        raise ValueError(f"{name} must be finite with low <= high, got {value!r}")
    if (low is not None and pair[0] < low) or (high is not None and pair[1] > high):
        raise ValueError(f"{name} must lie in [{low}, {high}], got {value!r}")
    return pair


class Step(ABC):
    """Anything a :class:`~bids_enhance.degrade.pipeline.Degradation` can hold."""

    @abstractmethod
    def sample(self, data: np.ndarray, affine: np.ndarray, *,
               rng: np.random.Generator) -> DegradationStep:
        """Return the deterministic step to apply to ``data`` (drawing from ``rng`` if random)."""


class DegradationStep(Step):
    """A deterministic degradation; subclasses are frozen dataclasses.

    ``__call__(data, affine) -> (data, affine)``: ``data`` is a 3D array ``(X, Y, Z)`` in voxel
    order, ``affine`` its 4×4 voxel→world (mm) matrix; the output is float32 and the affine is
    the output's (changed only by low-resolution steps).
    """

    kind: ClassVar[str]

    @abstractmethod
    def __call__(self, data: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ...

    def sample(self, data: np.ndarray, affine: np.ndarray, *,
               rng: np.random.Generator) -> DegradationStep:
        """A deterministic step samples itself (nothing random to draw)."""
        return self

    def to_record(self) -> dict[str, Any]:
        """JSON-serialisable dict: ``kind``, ``method`` and every parameter of the step."""
        record = {"kind": self.kind}
        record.update({f.name: json_safe(getattr(self, f.name)) for f in fields(self)})
        return record

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> DegradationStep:
        """Rebuild the step from :meth:`to_record`'s output (extra or missing keys raise)."""
        if record.get("kind") != cls.kind:
            raise ValueError(f"record kind {record.get('kind')!r} is not {cls.kind!r}")
        names = {f.name for f in fields(cls)}
        given = set(record) - {"kind"}
        unknown = sorted(given - names)
        if unknown:
            raise ValueError(f"record of kind {cls.kind!r} has unknown keys {unknown}; "
                             f"expected a subset of {sorted(names)}")
        return cls(**{k: record[k] for k in given})


def step_from_record(record: dict[str, Any]) -> DegradationStep:
    """Build the deterministic step described by ``record`` (dispatch on ``record['kind']``)."""
    if not isinstance(record, dict):
        raise ValueError(f"record must be a dict, got {type(record).__name__}")
    kind = record.get("kind")
    if kind not in STEP_KINDS:
        raise ValueError(f"record kind {kind!r} is unknown; expected one of "
                         f"{sorted(STEP_KINDS)}{did_you_mean(kind, STEP_KINDS)}")
    return STEP_KINDS[kind].from_record(record)
