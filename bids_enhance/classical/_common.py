"""Shared tensor utilities for the classical denoisers.

Everything here is stable API for the modules of :mod:`bids_enhance.classical` (ODCT, PRI-NLM,
SANLM, the noise estimators). Volumes are 3D, axes ``(D, H, W)`` = the voxel axes of the input
array (no reorientation); the first axis is the one split into chunks ("z").

Typical use inside a denoiser::

    x, spec = prepare_volume(volume, min_size=4, device=device)   # float32 tensor on device
    sigma = check_sigma(sigma)
    noise_model = check_choice("noise_model", noise_model, NOISE_MODELS)
    ...                                                             # work on x
    return restore_volume(out, spec)                               # same container/dtype as input

Chunking: :func:`iter_z_chunks` yields :class:`ZChunk` records (output slices plus a halo of input
slices) so an operator with a finite support of ``halo`` voxels gives the same result chunked and
whole; :func:`chunk_depth_for_budget` turns a memory budget into a chunk depth.

Shifting: :func:`pad3d` pads with a constant or by reflection, :func:`shifted` returns the view of
a padded tensor displaced by an offset, and :func:`half_offsets` lists one offset of every ``±δ``
pair of a search cube (for filters with symmetric weights ``w_ij = w_ji``).
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from bids_enhance.device import resolve_device

__all__ = [
    "COMPUTE_DTYPE",
    "DEFAULT_MEMORY_BUDGET_GB",
    "NOISE_MODELS",
    "VolumeSpec",
    "ZChunk",
    "bounding_box",
    "check_choice",
    "check_positive_int",
    "check_sigma",
    "chunk_depth_for_budget",
    "cube_offsets",
    "did_you_mean",
    "half_offsets",
    "iter_z_chunks",
    "pad3d",
    "prepare_volume",
    "resolve_device",
    "restore_volume",
    "shifted",
    "to_numpy",
]

#: Noise models understood by every classical function.
NOISE_MODELS: tuple[str, ...] = ("rician", "gaussian")

#: All internal arithmetic is float32 (float64 inputs are returned as float64).
COMPUTE_DTYPE = torch.float32

#: Default working-memory budget of one call, in GiB (intermediates only, not the input/output).
DEFAULT_MEMORY_BUDGET_GB = 0.5



# --------------------------------------------------------------------------------------------
# argument validation
# --------------------------------------------------------------------------------------------
def did_you_mean(value: str, choices: Sequence[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest choice, or ``""`` when none is close."""
    close = difflib.get_close_matches(str(value).lower(), list(choices), n=1, cutoff=0.5)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """Validate a string option case-insensitively and return it lower-cased.

    Raises ``ValueError`` naming ``name``, the value received and the accepted values.
    """
    if isinstance(value, str) and value.lower() in choices:
        return value.lower()
    raise ValueError(
        f"{name} must be one of {', '.join(repr(c) for c in choices)}; got {value!r}"
        f"{did_you_mean(value, choices) if isinstance(value, str) else ''}"
    )


def check_sigma(sigma: Any, *, name: str = "sigma") -> float:
    """Return ``sigma`` as a float; ``ValueError`` unless it is a finite number >= 0."""
    try:
        value = float(sigma)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a finite number >= 0 (noise standard deviation in the "
                         f"image's intensity units); got {sigma!r}") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0 (noise standard deviation in the "
                         f"image's intensity units); got {sigma!r}")
    return value


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> int:
    """Return ``value`` as an int; ``ValueError`` unless it is an integer >= ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value!r}")
    return int(value)


# --------------------------------------------------------------------------------------------
# container conversion
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class VolumeSpec:
    """How to give a result back in the caller's container.

    ``is_tensor``: the input was a ``torch.Tensor``; ``dtype``: output dtype (numpy dtype or torch
    dtype: the input's float dtype, float32 for integer/bool input); ``device``: the input
    tensor's device (``None`` for numpy input); ``shape``: the input shape.
    """

    is_tensor: bool
    dtype: Any
    device: torch.device | None
    shape: tuple[int, int, int]


def prepare_volume(volume: Any, *, name: str = "volume", min_size: int = 1,
                   device: str | torch.device | None = "cpu",
                   check_finite: bool = True) -> tuple[torch.Tensor, VolumeSpec]:
    """Validate a 3D volume and return it as a contiguous float32 tensor on ``device``.

    ``volume`` is a numpy array (any real dtype) or a torch tensor. Raises ``ValueError`` (naming
    ``name``) for a non-3D input, an axis shorter than ``min_size``, complex values or, when
    ``check_finite``, NaN/inf values. The :class:`VolumeSpec` records what
    :func:`restore_volume` needs.
    """
    dev = resolve_device(device)
    if isinstance(volume, torch.Tensor):
        if volume.is_complex():
            raise ValueError(f"{name} must be real-valued; got a complex tensor ({volume.dtype})")
        out_dtype = volume.dtype if volume.is_floating_point() else torch.float32
        spec = VolumeSpec(True, out_dtype, volume.device, tuple(volume.shape))
        tensor = volume.detach()
    else:
        array = np.asarray(volume)
        if array.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be a real numeric array; got dtype {array.dtype}")
        out_dtype = (array.dtype.newbyteorder("=") if array.dtype.kind == "f"
                     else np.dtype(np.float32))
        spec = VolumeSpec(False, out_dtype, None, tuple(array.shape))
        if array.dtype != np.float64 or not array.dtype.isnative:  # -> native float32/64
            array = array.astype(np.float64 if array.dtype.kind == "f" and array.dtype.itemsize
                                 == 8 else np.float32, copy=False)
        tensor = torch.from_numpy(np.ascontiguousarray(array))
    if tensor.ndim != 3:
        raise ValueError(f"{name} must be a 3D volume (D, H, W); got shape {tuple(tensor.shape)}")
    if min(tensor.shape) < min_size:
        raise ValueError(f"{name} must be at least {min_size} voxels along every axis for this "
                         f"method; got shape {tuple(tensor.shape)}")
    tensor = tensor.to(device=dev, dtype=COMPUTE_DTYPE).contiguous()
    if check_finite and tensor.numel() and not bool(torch.isfinite(tensor).all()):
        bad = int((~torch.isfinite(tensor)).sum())
        raise ValueError(f"{name} must contain only finite values; got {bad} NaN/inf voxel(s)")
    return tensor, spec


def restore_volume(result: torch.Tensor, spec: VolumeSpec) -> np.ndarray | torch.Tensor:
    """Return ``result`` in the container, dtype (and, for tensors, device) described by ``spec``."""
    if spec.is_tensor:
        return result.to(device=spec.device, dtype=spec.dtype)
    return result.detach().cpu().numpy().astype(spec.dtype, copy=False)


def to_numpy(volume: Any, *, name: str = "volume") -> np.ndarray:
    """Return a numpy view/copy of a numpy array or torch tensor (float dtypes kept)."""
    if isinstance(volume, torch.Tensor):
        return volume.detach().cpu().numpy()
    return np.asarray(volume)


# --------------------------------------------------------------------------------------------
# chunking
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ZChunk:
    """One chunk along the first axis.

    Output slices ``[start, stop)`` are computed from input slices ``[lo, hi)`` (the output range
    plus up to ``halo`` slices each side, clipped to the volume). ``core`` is the position of the
    output slices inside the input range.
    """

    start: int
    stop: int
    lo: int
    hi: int

    @property
    def core(self) -> slice:
        return slice(self.start - self.lo, self.stop - self.lo)

    @property
    def input(self) -> slice:
        return slice(self.lo, self.hi)

    @property
    def output(self) -> slice:
        return slice(self.start, self.stop)


def iter_z_chunks(depth: int, chunk_depth: int, halo: int) -> Iterator[ZChunk]:
    """Yield chunks of at most ``chunk_depth`` output slices covering ``range(depth)``."""
    chunk_depth = max(1, int(chunk_depth))
    for start in range(0, depth, chunk_depth):
        stop = min(depth, start + chunk_depth)
        yield ZChunk(start, stop, max(0, start - halo), min(depth, stop + halo))


def chunk_depth_for_budget(*, depth: int, plane_voxels: int, bytes_per_voxel: float, halo: int,
                           budget_gb: float = DEFAULT_MEMORY_BUDGET_GB,
                           minimum: int = 1) -> int:
    """Largest chunk depth whose working set ``(chunk + 2·halo)·plane·bytes`` fits the budget.

    Never less than ``minimum`` (the budget is then exceeded rather than failing) and never more
    than ``depth``.
    """
    if budget_gb <= 0 or not math.isfinite(budget_gb):
        raise ValueError(f"memory budget must be a finite number of GiB > 0; got {budget_gb!r}")
    per_slice = max(1.0, plane_voxels * bytes_per_voxel)
    slices = int(budget_gb * 2**30 // per_slice) - 2 * halo
    return int(min(depth, max(minimum, slices)))


def bounding_box(mask: torch.Tensor, *, margin: int = 0) -> tuple[slice, slice, slice] | None:
    """Slices of the smallest box holding all ``True`` voxels of ``mask``, grown by ``margin``.

    Returns ``None`` for an empty mask.
    """
    if not bool(mask.any()):
        return None
    box = []
    for axis in range(3):
        other = tuple(a for a in range(3) if a != axis)
        hits = torch.nonzero(mask.any(dim=other[1]).any(dim=other[0])).flatten()
        lo = max(0, int(hits[0]) - margin)
        hi = min(mask.shape[axis], int(hits[-1]) + 1 + margin)
        box.append(slice(lo, hi))
    return tuple(box)


# --------------------------------------------------------------------------------------------
# shifting
# --------------------------------------------------------------------------------------------
def pad3d(x: torch.Tensor, pad: int | Sequence[int] | Sequence[tuple[int, int]], *,
          mode: str = "constant", value: float = 0.0) -> torch.Tensor:
    """Pad a 3D tensor on both sides of every axis.

    ``pad`` is one int (all sides), three ints (per axis, both sides) or three ``(before, after)``
    pairs. ``mode`` is ``"constant"`` (with ``value``), ``"reflect"`` (mirror without repeating
    the edge voxel, like numpy's ``"reflect"``) or ``"replicate"``.
    """
    if isinstance(pad, int):
        pairs = [(pad, pad)] * 3
    else:
        pairs = [(p, p) if isinstance(p, int) else tuple(p) for p in pad]
    flat: list[int] = []
    for before, after in reversed(pairs):  # F.pad wants the last axis first
        flat += [int(before), int(after)]
    if mode == "constant":
        return F.pad(x, flat, mode="constant", value=value)
    return F.pad(x[None, None], flat, mode=mode)[0, 0]


def shifted(padded: torch.Tensor, offset: Sequence[int], pad: int | Sequence[int],
            shape: Sequence[int]) -> torch.Tensor:
    """View of ``padded`` so that element ``v`` of the view is original voxel ``v + offset``.

    ``padded`` is a tensor of ``shape`` padded by ``pad`` voxels before each axis (int or one per
    axis); ``|offset|`` must not exceed the padding. No copy is made.
    """
    pads = (pad,) * 3 if isinstance(pad, int) else tuple(pad)
    idx = tuple(slice(p + o, p + o + n) for p, o, n in zip(pads, offset, shape, strict=True))
    return padded[idx]


def cube_offsets(radius: int, *, include_zero: bool = False) -> list[tuple[int, int, int]]:
    """All offsets of the cube ``[-radius, radius]^3`` in lexicographic order."""
    rng = range(-radius, radius + 1)
    return [(a, b, c) for a in rng for b in rng for c in rng
            if include_zero or (a, b, c) != (0, 0, 0)]


def half_offsets(radius: int) -> list[tuple[int, int, int]]:
    """One offset of every ``{δ, −δ}`` pair of the cube (the lexicographically positive ones).

    The first non-zero component is positive, so the first (z) component is always >= 0; there
    are ``((2·radius + 1)^3 − 1) / 2`` of them.
    """
    return [o for o in cube_offsets(radius) if o > (0, 0, 0)]
