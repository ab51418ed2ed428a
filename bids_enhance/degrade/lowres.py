"""x2 low-resolution simulation and the geometry (affines) of x2 grids.

Four methods (:class:`LowResMethod`), all on a 3D array ``(X, Y, Z)`` with its 4×4 voxel→world
affine, each returning the low-resolution array (float32) and the affine that places it exactly:

``box``      2×2×2 average (the thesis' "linear downsampling"). LR voxel ``i`` averages HR voxels
             ``2i`` and ``2i+1`` on every axis, so its centre is HR index ``2i + 0.5``:
             ``A_lr = A_hr · [[2,0,0,.5],[0,2,0,.5],[0,0,2,.5],[0,0,0,1]]``.
``kspace``   keep the central half of k-space (with ``M = N/2``: DFT frequencies
             ``-(M//2) … M - M//2 - 1`` per axis, i.e. the LR grid's own frequencies), inverse DFT
             on the M grid, real part (which folds the unpaired Nyquist bin of an even ``M``
             symmetrically), scaled by 1/8 so intensities are kept.
             ``y[m] = (1/N) Σ_k X[k] e^{2πi k (2m)/N}``: LR sample ``m`` is the band-limited
             interpolant at HR index ``2m``, so ``A_lr = A_hr · diag(2, 2, 2, 1)`` (no offset).
``nearest``  every second voxel, ``y[i] = x[2i]`` (what the authors' released code did):
             ``A_lr = A_hr · diag(2, 2, 2, 1)``.
``thick``    one-axis anisotropy: average pairs of slices along ``axis`` (default 2) only;
             scale 2 and offset 0.5 along that axis, identity on the others.

**Odd sizes.** A downsampled axis of odd length loses its *last* voxel before downsampling
(``N → N - 1``), so LR voxel 0 always starts at HR voxel 0 and the LR grid is exactly half the
cropped one. The crop leaves the affine's origin unchanged and is stated in the step record
(``cropped``: voxels removed per axis). An axis of length < 2 cannot be downsampled (``ValueError``).

:func:`upsampled_affine` is the inverse: the affine of the x2 grid covering the LR image's field of
view, which a super-resolution output must carry (box: HR voxel ``j`` sits at LR coordinate
``j/2 - 0.25``; kspace/nearest: ``j/2``).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from bids_enhance.degrade._base import (
    DegradationStep,
    check_affine,
    check_axis,
    check_volume,
    did_you_mean,
    register,
)

#: default slice axis of ``thick`` (the third voxel axis: axial slices for an RAS-like array)
DEFAULT_THICK_AXIS = 2


class LowResMethod(enum.StrEnum):
    """How an x2 low-resolution image is simulated (recorded in checkpoints and results)."""

    BOX = "box"
    KSPACE = "kspace"
    NEAREST = "nearest"
    THICK = "thick"

    @classmethod
    def parse(cls, value: Any, *, name: str = "method") -> LowResMethod:
        """Accept a member or its string value; raise ``ValueError`` naming ``name`` otherwise."""
        if isinstance(value, cls):
            return value
        try:
            return cls(str(value).lower())
        except ValueError:
            options = [m.value for m in cls]
            raise ValueError(f"{name} must be one of {options}, got {value!r}"
                             f"{did_you_mean(value, options)}") from None


def _resolve_axis(method: LowResMethod, axis: int | None) -> int | None:
    if method is LowResMethod.THICK:
        return DEFAULT_THICK_AXIS if axis is None else check_axis(axis)
    if axis is not None:
        raise ValueError(f"axis only applies to method 'thick', got axis={axis!r} "
                         f"with method {method.value!r}")
    return None


def _factors(method: LowResMethod, axis: int | None) -> tuple[np.ndarray, np.ndarray]:
    """Per-axis scale (2 or 1) and offset (HR voxels) of LR voxel centres: ``x_hr = s·i + o``."""
    if method is LowResMethod.THICK:
        scale, offset = np.ones(3), np.zeros(3)
        scale[axis], offset[axis] = 2.0, 0.5
    elif method is LowResMethod.BOX:
        scale, offset = np.full(3, 2.0), np.full(3, 0.5)
    else:  # kspace, nearest
        scale, offset = np.full(3, 2.0), np.zeros(3)
    return scale, offset


def lowres_affine(hr_affine: np.ndarray, *, method: LowResMethod | str,
                  axis: int | None = None) -> np.ndarray:
    """Affine of the x2 low-resolution grid made from a grid with affine ``hr_affine``.

    ``A_lr = A_hr · M`` with ``M = [[s, 0, 0, o], …]`` from the module docstring's table.
    ``axis`` is for ``thick`` only (default 2).
    """
    method = LowResMethod.parse(method)
    axis = _resolve_axis(method, axis)
    scale, offset = _factors(method, axis)
    down = np.eye(4)
    down[:3, :3] = np.diag(scale)
    down[:3, 3] = offset
    return check_affine(hr_affine, name="hr_affine") @ down


def upsampled_affine(lr_affine: np.ndarray, *, method: LowResMethod | str,
                     axis: int | None = None) -> np.ndarray:
    """Affine of the x2 grid covering the same field of view as an LR image made by ``method``.

    The exact inverse of :func:`lowres_affine`: ``A_up = A_lr · M⁻¹``, e.g. for ``box``
    ``A_up = A_lr · [[.5,0,0,-.25],[0,.5,0,-.25],[0,0,.5,-.25],[0,0,0,1]]`` (HR voxel ``j`` at
    LR coordinate ``j/2 - 1/4``). The upsampled grid has shape :func:`upsampled_shape`.
    """
    method = LowResMethod.parse(method)
    axis = _resolve_axis(method, axis)
    scale, offset = _factors(method, axis)
    up = np.eye(4)
    up[:3, :3] = np.diag(1.0 / scale)
    up[:3, 3] = -offset / scale
    return check_affine(lr_affine, name="lr_affine") @ up


def upsampled_shape(lr_shape: tuple[int, ...], *, method: LowResMethod | str,
                    axis: int | None = None) -> tuple[int, int, int]:
    """Shape of the x2 grid of :func:`upsampled_affine` (2× on the downsampled axes)."""
    method = LowResMethod.parse(method)
    axis = _resolve_axis(method, axis)
    if len(lr_shape) != 3:
        raise ValueError(f"lr_shape must have 3 entries, got {lr_shape!r}")
    scale, _ = _factors(method, axis)
    return tuple(int(n) * int(s) for n, s in zip(lr_shape, scale, strict=True))


def _crop_even(data: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, list[int]]:
    cropped = [0, 0, 0]
    for ax in axes:
        if data.shape[ax] < 2:
            raise ValueError(f"data axis {ax} has length {data.shape[ax]}; x2 downsampling "
                             f"needs at least 2 voxels")
        cropped[ax] = data.shape[ax] % 2
    index = tuple(slice(0, n - c) for n, c in zip(data.shape, cropped, strict=True))
    return data[index], cropped


def _kspace_truncate(data: np.ndarray) -> np.ndarray:
    """Central-half k-space truncation of an even-shaped float64 volume (all three axes)."""
    spectrum = np.fft.fftshift(np.fft.fftn(data))
    index = tuple(slice(n // 2 - n // 4, n // 2 - n // 4 + n // 2) for n in data.shape)
    small = np.fft.ifftn(np.fft.ifftshift(spectrum[index]))
    return small.real / 8.0  # ifftn divides by N/8 voxels instead of N: restore the scale


def downsample(data: np.ndarray, affine: np.ndarray, *, method: LowResMethod | str,
               axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Simulate an x2 low-resolution image.

    Args:
        data: 3D array ``(X, Y, Z)`` (any real dtype).
        affine: its 4×4 voxel→world matrix.
        method: a :class:`LowResMethod` or its name.
        axis: the slice axis for ``thick`` (default 2); must be ``None`` otherwise.

    Returns:
        ``(lowres, lr_affine)``: float32 array of shape ``(X//2, Y//2, Z//2)`` (``thick``: halved
        on ``axis`` only; odd axes lose their last voxel first) and its exact affine.
    """
    lowres, lr_affine, _ = _downsample(data, affine, method=method, axis=axis)
    return lowres, lr_affine


def _downsample(data, affine, *, method, axis):
    method = LowResMethod.parse(method)
    axis = _resolve_axis(method, axis)
    data = check_volume(data)
    affine = check_affine(affine)
    axes = (axis,) if method is LowResMethod.THICK else (0, 1, 2)
    even, cropped = _crop_even(data, axes)
    even = even.astype(np.float64, copy=False)
    if method is LowResMethod.BOX:
        x, y, z = (n // 2 for n in even.shape)
        out = even.reshape(x, 2, y, 2, z, 2).mean(axis=(1, 3, 5))
    elif method is LowResMethod.THICK:
        moved = np.moveaxis(even, axis, 0)
        out = np.moveaxis(moved.reshape(moved.shape[0] // 2, 2, *moved.shape[1:]).mean(1), 0, axis)
    elif method is LowResMethod.NEAREST:
        out = even[::2, ::2, ::2]
    else:
        out = _kspace_truncate(even)
    lr_affine = lowres_affine(affine, method=method, axis=axis)
    return np.ascontiguousarray(out, dtype=np.float32), lr_affine, cropped


@register
@dataclass(frozen=True)
class LowResolution(DegradationStep):
    """Deterministic x2 low-resolution step (see :func:`downsample`).

    ``input_shape`` and ``cropped`` are filled when the step is bound to an image inside a
    pipeline (:meth:`sample`); replaying a record then checks the input has that shape and the
    record states how many voxels each axis lost (odd sizes).
    """

    kind: ClassVar[str] = "lowres"

    method: LowResMethod | str = LowResMethod.BOX
    axis: int | None = None
    input_shape: tuple[int, int, int] | None = None
    cropped: tuple[int, int, int] | None = None

    def __post_init__(self):
        method = LowResMethod.parse(self.method)
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "axis", _resolve_axis(method, self.axis))
        if self.input_shape is None:
            if self.cropped is not None:
                raise ValueError("cropped is given without input_shape")
            return
        shape = tuple(int(n) for n in self.input_shape)
        if len(shape) != 3 or min(shape) < 1:
            raise ValueError(f"input_shape must be 3 positive sizes, got {self.input_shape!r}")
        axes = (self.axis,) if method is LowResMethod.THICK else (0, 1, 2)
        expected = tuple(shape[a] % 2 if a in axes else 0 for a in range(3))
        if self.cropped is not None and tuple(self.cropped) != expected:
            raise ValueError(f"cropped {self.cropped!r} is inconsistent with input_shape {shape} "
                             f"and method {method.value!r} (expected {list(expected)})")
        object.__setattr__(self, "input_shape", shape)
        object.__setattr__(self, "cropped", expected)

    def sample(self, data, affine, *, rng=None) -> LowResolution:
        """Bind the step to ``data``'s shape so the record states the crop."""
        shape = tuple(int(n) for n in np.shape(data))
        if len(shape) != 3:
            raise ValueError(f"data must be a 3D volume (X, Y, Z), got shape {shape}")
        return LowResolution(method=self.method, axis=self.axis, input_shape=shape)

    def __call__(self, data, affine):
        if self.input_shape is not None and tuple(np.shape(data)) != self.input_shape:
            raise ValueError(f"data has shape {tuple(np.shape(data))} but this low-resolution "
                             f"step was recorded for input_shape {self.input_shape}")
        return downsample(data, affine, method=self.method, axis=self.axis)
