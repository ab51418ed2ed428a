"""Rigid motion artefacts on a 3D volume with TorchIO's deterministic ``tio.Motion``.

TorchIO (Shaw et al. 2019) resamples the volume under each rigid transform (Euler angles in
degrees about the volume centre, translations in **mm** in TorchIO's LPS world frame), takes the
spectrum of each, and fills k-space segments along the **last voxel axis** with them, split at
``times`` (fractions of that axis, increasing, in (0, 1)); the segment containing the k-space centre
keeps the unmoved image. Applied to a 3D volume, the mismatch between segments appears as ghosts
along that axis (on a single 2D slice it would produce none, hence 3D only).

``tio.RandomMotion`` draws from torch's global RNG, so :class:`RandomMotion` draws the parameters
itself from a seeded ``numpy.random.Generator`` with TorchIO's scheme (angles and translations
uniform per axis and per movement, times evenly spaced with a ±30 % jitter of the spacing) and
returns a :class:`Motion` whose record replays bit for bit.
"""

from __future__ import annotations

import importlib.metadata
import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from bids_enhance.degrade._base import (
    DegradationStep,
    Step,
    check_affine,
    check_volume,
    did_you_mean,
    parse_range,
    register,
)

LOGGER = logging.getLogger(__name__)

INTERPOLATIONS = ("nearest", "linear", "bspline")
#: The voxel axis along which TorchIO fills k-space segments (its ghosts run along it), and so
#: the axis along which the motion models saw ghosts in training: inference moves an image's
#: phase-encoding axis here (:func:`bids_enhance.inference.run_checkpoint`).
SEGMENT_AXIS = 2


def torchio_version() -> str:
    """Installed TorchIO version (recorded: replay is bit-exact only with the same version)."""
    try:
        return importlib.metadata.version("torchio")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - torchio is a dependency
        return "unknown"


def check_torchio_version(recorded: str, *, kind: str) -> None:
    installed = torchio_version()
    if recorded != installed:
        LOGGER.warning("replaying a %s record made with TorchIO %s on TorchIO %s: the output may "
                       "differ slightly from the original", kind, recorded, installed)


def check_3d_volume(data: Any, *, what: str) -> np.ndarray:
    """``check_volume`` plus: every axis longer than one voxel (TorchIO treats size-1 as 2D)."""
    array = check_volume(data)
    if min(array.shape) < 2:
        raise ValueError(f"{what} needs a 3D volume with every axis longer than 1 voxel, got "
                         f"shape {array.shape} (on a single slice motion produces no ghosting)")
    return array


def _as_vectors(value: Any, *, name: str) -> tuple[tuple[float, float, float], ...]:
    array = np.asarray(value, dtype=np.float64)
    if array.ndim != 2 or array.shape[1] != 3 or array.shape[0] < 1:
        raise ValueError(f"{name} must have shape (num_transforms, 3), got {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return tuple(tuple(float(v) for v in row) for row in array)


def add_motion(data: np.ndarray, affine: np.ndarray, *, degrees: Any, translation: Any,
               times: Any, interpolation: str = "linear") -> np.ndarray:
    """Apply ``tio.Motion`` to a 3D volume; return float32 ``(X, Y, Z)``.

    Args:
        data: 3D array ``(X, Y, Z)``, every axis longer than 1.
        affine: its 4×4 voxel→world (RAS, mm) matrix; translations are in mm of this world.
        degrees: ``(n, 3)`` rotation angles in degrees, one row per movement.
        translation: ``(n, 3)`` translations in mm.
        times: ``(n,)`` increasing fractions in (0, 1) of the last axis' k-space lines at which
            the movements happen.
        interpolation: ``"nearest"``, ``"linear"`` or ``"bspline"`` for the resampling.
    """
    step = Motion(degrees=degrees, translation=translation, times=times,
                  interpolation=interpolation)
    return step(data, affine)[0]


@register
@dataclass(frozen=True)
class Motion(DegradationStep):
    """Deterministic rigid-motion step (TorchIO ``Motion``); see :func:`add_motion`."""

    kind: ClassVar[str] = "motion"

    degrees: Any = ((0.0, 0.0, 0.0),)
    translation: Any = ((0.0, 0.0, 0.0),)
    times: Any = (0.5,)
    interpolation: str = "linear"
    method: str = "torchio"
    torchio_version: str = field(default_factory=torchio_version)

    def __post_init__(self):
        degrees = _as_vectors(self.degrees, name="degrees")
        translation = _as_vectors(self.translation, name="translation")
        times = np.asarray(self.times, dtype=np.float64).ravel()
        if len(times) != len(degrees) or len(translation) != len(degrees):
            raise ValueError(f"degrees, translation and times must describe the same number of "
                             f"movements, got {len(degrees)}, {len(translation)} and {len(times)}")
        if not (np.all((times > 0) & (times < 1)) and np.all(np.diff(times) > 0)):
            raise ValueError(f"times must be increasing fractions in (0, 1), got {times.tolist()}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got "
                             f"{self.interpolation!r}{did_you_mean(self.interpolation, INTERPOLATIONS)}")
        if self.method != "torchio":
            raise ValueError(f"method of a motion step must be 'torchio', got {self.method!r}")
        object.__setattr__(self, "degrees", degrees)
        object.__setattr__(self, "translation", translation)
        object.__setattr__(self, "times", tuple(float(t) for t in times))

    @classmethod
    def from_record(cls, record):
        step = super().from_record(record)
        check_torchio_version(step.torchio_version, kind=cls.kind)
        return step

    def __call__(self, data, affine):
        import torch
        import torchio as tio

        data = check_3d_volume(data, what="motion")
        affine = check_affine(affine)
        image = tio.ScalarImage(
            tensor=torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32)[np.newaxis]),
            affine=affine)
        transform = tio.Motion(degrees=np.array(self.degrees), translation=np.array(self.translation),
                               times=np.array(self.times), image_interpolation=self.interpolation)
        out = transform(image).data[0].numpy()
        return np.ascontiguousarray(out, dtype=np.float32), affine


@dataclass(frozen=True)
class RandomMotion(Step):
    """Draw a :class:`Motion` step from a seeded generator (TorchIO ``RandomMotion``'s scheme).

    ``degrees`` and ``translation`` (mm): ``d`` means ``U(-d, d)``, a pair ``(a, b)`` means
    ``U(a, b)``, drawn independently per axis and per movement. ``num_transforms``: an int, or a
    pair ``(a, b)`` for an integer drawn uniformly in ``[a, b]``. ``perturbation`` jitters the
    evenly spaced times by ``U(±perturbation · spacing)`` (TorchIO: 0.3; must be < 0.5 so times stay
    increasing).
    """

    degrees: float | tuple[float, float] = 10.0
    translation: float | tuple[float, float] = 10.0
    num_transforms: int | tuple[int, int] = 2
    perturbation: float = 0.3
    interpolation: str = "linear"

    def __post_init__(self):
        object.__setattr__(self, "degrees", parse_range(self.degrees, name="degrees",
                                                        symmetric=True))
        object.__setattr__(self, "translation", parse_range(self.translation, name="translation",
                                                            symmetric=True))
        n = self.num_transforms
        pair = (n, n) if isinstance(n, int | np.integer) and not isinstance(n, bool) else n
        try:
            low, high = pair
            ok = all(isinstance(v, int | np.integer) and not isinstance(v, bool) for v in pair)
        except (TypeError, ValueError):
            ok = False
        if not ok or not 1 <= low <= high:
            raise ValueError(f"num_transforms must be a positive int or a pair (low, high) of "
                             f"positive ints, got {n!r}")
        object.__setattr__(self, "num_transforms", (int(low), int(high)))
        if not 0 <= self.perturbation < 0.5:
            raise ValueError(f"perturbation must be in [0, 0.5), got {self.perturbation!r}")
        if self.interpolation not in INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {list(INTERPOLATIONS)}, got "
                             f"{self.interpolation!r}{did_you_mean(self.interpolation, INTERPOLATIONS)}")

    def sample(self, data, affine, *, rng: np.random.Generator) -> Motion:
        check_3d_volume(data, what="motion")
        low, high = self.num_transforms
        n = int(rng.integers(low, high + 1))
        degrees = rng.uniform(*self.degrees, size=(n, 3))
        translation = rng.uniform(*self.translation, size=(n, 3))
        spacing = 1.0 / (n + 1)
        jitter = spacing * self.perturbation
        times = spacing * np.arange(1, n + 1) + rng.uniform(-jitter, jitter, size=n)
        return Motion(degrees=degrees, translation=translation, times=times,
                      interpolation=self.interpolation)
