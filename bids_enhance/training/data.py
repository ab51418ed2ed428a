"""Training data: volumes in memory → whole-volume degradation → TorchIO patch queue → aligned
(degraded input, clean target) batches.

Pipeline for each :class:`TrainingVolume` (normalised clean image, e.g. by
:func:`bids_enhance.image.intensity.normalise`):

1. x2 tasks: odd axes lose their last voxel (as :func:`bids_enhance.degrade.downsample` does, so
   LR voxel ``i`` covers HR voxels ``2i, 2i+1`` from the first voxel on); every axis shorter than
   the patch is zero-padded at its end.
2. ``realisations`` degraded copies with :func:`bids_enhance.degrade.degrade` on the **whole 3D
   volume** (motion ghosting needs it; k-space truncation and noise levels relative to the robust
   maximum are whole-volume operations too), each from its own child seed; the records are kept
   (:attr:`PairedPatchStream.records`) so every training input can be replayed.
3. x2: the LR volume is repeated 2×2×2 onto the HR grid (``np.repeat``), so one TorchIO subject
   holds aligned ``target`` (HR) and ``source`` images of the same shape; a patch with an **even
   origin** then gives the LR patch exactly as ``source_patch[::2, ::2, ::2]``, and the HR patch
   is exactly the region those LR voxels average.
4. Patch centres are drawn by a ``tio.WeightedSampler`` (:class:`~._tio.PrecomputedWeightedSampler`)
   with weight 1 inside the head mask (:func:`bids_enhance.image.mask.head_mask` unless given),
   ``background_weight`` outside, and 0 wherever the patch would leave the volume or (x2) its
   origin would be odd.
5. A ``tio.Queue`` serves patches. The stream is cut into *rounds*: round ``k`` is one pass of a
   fresh queue over all subjects (``samples_per_volume`` patches each), with torch's global RNG
   (which TorchIO's samplers and shuffling use) replaced by a private state seeded from
   ``child_seed(seed, "patches", k)`` during every call into TorchIO. Patch ``p`` of the stream is
   therefore a pure function of the seed and ``p``: resuming at position ``p`` reopens round
   ``p // R`` and skips ``p % R`` patches; DDP ranks generate the same stream and take their
   slices of each global batch (:meth:`PairedPatchStream.next_batch`).

Diffusion (2.5D): patches are ``2·neighbours + 1`` slices thick across ``slice_axis``; the source
(condition) is the corrupted slice with its neighbours as channels, the target the clean centre
slice.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor

from bids_enhance.training.seeding import IsolatedTorchRNG, check_seed, child_seed, numpy_generator

__all__ = ["NumpyPatchStream", "PairedPatchStream", "PatchGeometry", "TrainingVolume",
           "geometry_for"]

LOGGER = logging.getLogger(__name__)


@dataclass
class TrainingVolume:
    """One clean, intensity-normalised 3D image: ``data`` ``(X, Y, Z)`` (float32 after
    validation), its 4×4 ``affine``, an optional boolean head ``mask`` of the same shape, and the
    ``subject`` label it came from (used in records and seeds)."""

    subject: str
    data: np.ndarray
    affine: np.ndarray | None = None
    mask: np.ndarray | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.subject, str) or not self.subject:
            raise ValueError(f"subject must be a non-empty string, got {self.subject!r}")
        data = np.asarray(self.data)
        if data.ndim != 3:
            raise ValueError(f"volume of subject {self.subject!r} must be 3D (X, Y, Z), got "
                             f"shape {data.shape}")
        if not np.issubdtype(data.dtype, np.number) or not np.isfinite(data).all():
            raise ValueError(f"volume of subject {self.subject!r} must be finite real numbers")
        self.data = np.ascontiguousarray(data, dtype=np.float32)
        affine = np.eye(4) if self.affine is None else np.asarray(self.affine, dtype=np.float64)
        if affine.shape != (4, 4):
            raise ValueError(f"affine of subject {self.subject!r} must be 4x4, got {affine.shape}")
        self.affine = affine
        if self.mask is not None:
            mask = np.asarray(self.mask, dtype=bool)
            if mask.shape != data.shape:
                raise ValueError(f"mask of subject {self.subject!r} has shape {mask.shape}, "
                                 f"the volume {data.shape}")
            self.mask = mask


@dataclass(frozen=True)
class PatchGeometry:
    """Shape of the patches on the target grid.

    ``scale``: 2 (x2 super-resolution: source patches are half the size) or 1; ``patch_size``:
    the target patch ``(X, Y, Z)``; ``slice_axis``/``neighbours``: for 2.5D slices
    (``patch_size[slice_axis] == 2·neighbours + 1``), ``None`` for 3D patches.
    """

    scale: int
    patch_size: tuple[int, int, int]
    slice_axis: int | None = None
    neighbours: int = 0

    def __post_init__(self) -> None:
        if self.scale not in (1, 2):
            raise ValueError(f"scale must be 1 or 2, got {self.scale!r}")
        size = tuple(int(s) for s in self.patch_size)
        if len(size) != 3 or min(size) < 1:
            raise ValueError(f"patch_size must be 3 positive sizes, got {self.patch_size!r}")
        object.__setattr__(self, "patch_size", size)
        if self.scale == 2 and any(s % 2 for s in size):
            raise ValueError(f"x2 patches need even sizes, got {size}")
        if self.slice_axis is not None:
            if self.scale != 1:
                raise ValueError("2.5D slice patches are for scale 1 only")
            if size[self.slice_axis] != 2 * self.neighbours + 1:
                raise ValueError(f"patch_size[{self.slice_axis}] must be 2·neighbours+1 = "
                                 f"{2 * self.neighbours + 1}, got {size[self.slice_axis]}")

    @property
    def source_channels(self) -> int:
        return 1 if self.slice_axis is None else 2 * self.neighbours + 1


def geometry_for(config: Any) -> PatchGeometry:
    """The :class:`PatchGeometry` of a :class:`~bids_enhance.training.config.TrainConfig`."""
    p = config.patch_size
    if config.task == "motion-ddpm":
        size = [p, p, p]
        size[config.slice_axis] = 2 * config.neighbours + 1
        return PatchGeometry(scale=1, patch_size=tuple(size), slice_axis=config.slice_axis,
                             neighbours=config.neighbours)
    return PatchGeometry(scale=config.scale, patch_size=(p, p, p))


# ---------------------------------------------------------------------------------------------
# volume preparation
# ---------------------------------------------------------------------------------------------

def _crop_pad(array: np.ndarray, *, scale: int, minimum: Sequence[int]) -> np.ndarray:
    if scale == 2:
        array = array[tuple(slice(0, n - n % 2) for n in array.shape)]
    pads = [(0, max(int(m) - n, 0)) for n, m in zip(array.shape, minimum, strict=True)]
    if scale == 2:
        pads = [(0, b + (n + b) % 2) for (_, b), n in zip(pads, array.shape, strict=True)]
    if any(b for _, b in pads):
        array = np.pad(array, pads)
    return np.ascontiguousarray(array)


def _sampling_table(weights: np.ndarray, geometry: PatchGeometry, *,
                    any_phase: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices of admissible centres and the cdf of their weights (float64). x2 patches
    start on even voxels (their source is the whole volume's box average) unless ``any_phase``
    (the source is recomputed from each patch's target)."""
    valid = weights > 0
    for axis, (n, p) in enumerate(zip(weights.shape, geometry.patch_size, strict=True)):
        lo, hi = p // 2, n - (p - 1) // 2  # TorchIO: centre in [p//2, n - (p-1)//2)
        centres = np.arange(n)
        ok = (centres >= lo) & (centres < hi)
        if geometry.scale > 1 and not any_phase:
            ok &= (centres - p // 2) % geometry.scale == 0
        shape = [1, 1, 1]
        shape[axis] = n
        valid &= ok.reshape(shape)
    indices = np.flatnonzero(valid)
    cdf = np.cumsum(weights.ravel()[indices], dtype=np.float64)
    return indices, cdf


def cube_symmetry(source: Tensor, target: Tensor,
                  rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """``(C, X, Y, Z)`` source and ``(X, Y, Z)`` target turned by the same random symmetry of
    the cube: a flip along each axis with probability 1/2, then (cubic patches only) a random
    permutation of the three axes. x2 pairs stay aligned: the source is the LR image repeated
    2×2×2 on the HR grid and patches have even edges, so a flip maps 2-voxel blocks onto
    2-voxel blocks."""
    flips = [axis for axis in range(3) if rng.random() < 0.5]
    order = rng.permutation(3) if len(set(target.shape)) == 1 else np.arange(3)
    if flips:
        target = target.flip(flips)
        source = source.flip([a + 1 for a in flips])
    if not np.array_equal(order, np.arange(3)):
        target = target.permute(*(int(a) for a in order))
        source = source.permute(0, *(int(a) + 1 for a in order))
    return source.contiguous(), target.contiguous()


#: range of log(γ) of :func:`random_gamma` (TorchIO's ``RandomGamma`` default, ±0.3: γ in
#: [0.74, 1.35])
LOG_GAMMA = 0.3


def box_average_x2(target: Tensor, *, on_hr_grid: bool = True) -> Tensor:
    """``(X, Y, Z)`` → its 2×2×2 box average, ``(1, X/2, Y/2, Z/2)``; ``on_hr_grid``: repeated
    2×2×2 back onto the target's grid, ``(1, X, Y, Z)``, the source of an ``sr-box-x2`` pair as
    :class:`PairedPatchStream` stores it."""
    lr = torch.nn.functional.avg_pool3d(target[None, None], 2)[0]
    if not on_hr_grid:
        return lr
    return lr.repeat_interleave(2, 1).repeat_interleave(2, 2).repeat_interleave(2, 3)


def random_gamma(source: Tensor, target: Tensor,
                 rng: np.random.Generator) -> tuple[Tensor, Tensor]:
    """An x2 box-average pair with the target's contrast changed by a random gamma,
    ``t ↦ sign(t)·|t|^γ`` with ``log γ ~ U(−LOG_GAMMA, LOG_GAMMA)``, and the source recomputed as
    the box average of the new target — so the pair still obeys the degradation exactly (a
    gamma of the box average is not the box average of a gamma). ``source`` is only checked for
    its shape: it is replaced."""
    gamma = float(np.exp(rng.uniform(-LOG_GAMMA, LOG_GAMMA)))
    return rebox(source, target.sign() * target.abs().pow(gamma))


def rebox(source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    """An x2 pair whose source is recomputed as the 2×2×2 box average of its target (on the
    target's grid): after a change of the target (:func:`random_gamma`), or for patches cut at
    any voxel, not only even ones, whose box grid is shifted by the patch's origin — one of the
    8 phases of the 2×2×2 grid, where the whole volume's box average has only one. ``source`` is
    only checked for its shape: it is replaced."""
    if source.shape[0] != 1 or tuple(source.shape[1:]) != tuple(target.shape):
        raise ValueError(f"recomputing the source needs a one-channel x2 pair on the HR grid, "
                         f"got source {tuple(source.shape)} and target {tuple(target.shape)}")
    return box_average_x2(target).contiguous(), target.contiguous()


class PairedPatchStream:
    """Deterministic, resumable stream of aligned (degraded, clean) patches from a TorchIO queue.

    Args:
        volumes: the clean training volumes.
        degradation: a preset of :data:`bids_enhance.degrade.PRESETS` (or a
            :class:`~bids_enhance.degrade.Degradation`) applied to each whole volume.
        geometry: patch shapes (:func:`geometry_for`).
        seed: master seed (child seeds ``("degrade", subject, k)`` and ``("patches", round)``).
        realisations: degraded copies per volume.
        samples_per_volume, queue_length: of the ``tio.Queue``.
        background_weight: sampling weight outside the head mask (inside: 1).
        augment: turn each 3D patch pair by a symmetry of the cube (:func:`cube_symmetry`)
            drawn from ``("augment", position)`` — a pure function of the seed and the patch's
            position, so resuming and DDP slicing stay exact.
        intensity_augment: change each patch pair's contrast by a random gamma
            (:func:`random_gamma`, drawn from ``("intensity", position)``) and recompute its source;
            only for a pure 2×2×2 box-average degradation (``sr-box-x2``), checked on the data.
        phase_augment: cut x2 patches at any voxel, not only at even ones, and recompute each
            source as the box average of its target (:func:`rebox`): all 8 phases of the
            2×2×2 box grid, where the whole volume's box average offers one; only for
            ``sr-box-x2``, checked on the data.

    ``next_batch(B, rank=r, world_size=W)`` returns rank ``r``'s ``(source, target)`` tensors of
    the next global batch of ``B·W`` patches: 3D ``(B, C, x, y, z)`` with ``x = X/scale`` … (``C``
    is 1, or the channels of a stacking :class:`~bids_enhance.degrade.Prefilter`), or 2.5D
    ``(B, 2n+1, H, W)`` and ``(B, 1, H, W)``; float32, contiguous, on the CPU.
    """

    def __init__(self, volumes: Sequence[TrainingVolume], *, degradation: Any,
                 geometry: PatchGeometry, seed: int, realisations: int = 1,
                 samples_per_volume: int = 16, queue_length: int = 128,
                 background_weight: float = 0.0, augment: bool = False,
                 intensity_augment: bool = False, phase_augment: bool = False) -> None:
        from bids_enhance.degrade import degrade

        if not volumes:
            raise ValueError("no training volumes given")
        subjects = [v.subject for v in volumes]
        if len(set(subjects)) != len(subjects):
            dup = sorted({s for s in subjects if subjects.count(s) > 1})
            raise ValueError(f"training volumes must have distinct subject labels; repeated: {dup}")
        if queue_length < samples_per_volume:
            raise ValueError(f"queue_length ({queue_length}) must be >= samples_per_volume "
                             f"({samples_per_volume})")
        self.geometry = geometry
        if augment and geometry.slice_axis is not None:
            raise ValueError("augment works on 3D patches, not on 2D/2.5D slices")
        self.augment = bool(augment)
        self.intensity_augment = bool(intensity_augment)
        if self.intensity_augment and geometry.scale != 2:
            raise ValueError("intensity_augment works on x2 box-average pairs (sr-box-x2) only")
        self.phase_augment = bool(phase_augment)
        if self.phase_augment and geometry.scale != 2:
            raise ValueError("phase_augment works on x2 box-average pairs (sr-box-x2) only")
        self.seed = check_seed(seed)
        self.samples_per_volume = int(samples_per_volume)
        self.queue_length = int(queue_length)
        self.degradation = degradation
        self.records: list[dict[str, Any]] = []
        self._tables: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._pairs: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        s = geometry.scale
        for vol in volumes:
            clean = _crop_pad(vol.data, scale=s, minimum=geometry.patch_size)
            if vol.mask is not None:
                mask = _crop_pad(vol.mask, scale=s, minimum=geometry.patch_size)
            else:
                from bids_enhance.image.mask import head_mask

                mask = head_mask(clean) if clean.any() else np.zeros(clean.shape, bool)
            weights = np.where(mask, 1.0, float(background_weight)).astype(np.float32)
            for k in range(int(realisations)):
                rng = numpy_generator(self.seed, "degrade", vol.subject, k)
                degraded, _, records = degrade(clean, vol.affine, steps=degradation, rng=rng)
                expected = tuple(n // s for n in clean.shape)
                if degraded.shape[-3:] != expected or degraded.ndim not in (3, 4):
                    raise ValueError(
                        f"degradation {degradation!r} turned subject {vol.subject!r} of shape "
                        f"{clean.shape} into {degraded.shape}; this task needs "
                        f"{'an isotropic x2 image' if s == 2 else 'an image on the same grid'} "
                        f"of shape {expected}")
                if degraded.ndim == 3:
                    degraded = degraded[None]  # (C, X, Y, Z): a stacking prefilter gives C > 1
                if self.intensity_augment or self.phase_augment:
                    box = box_average_x2(torch.from_numpy(np.ascontiguousarray(
                        clean, np.float32)), on_hr_grid=False).numpy()
                    if degraded.shape != box.shape or not np.allclose(
                            degraded, box, rtol=1e-4, atol=1e-5 * float(np.abs(box).max())):
                        raise ValueError(
                            f"{'phase' if self.phase_augment else 'intensity'}_augment "
                            f"recomputes each source as the 2×2×2 box average of its target, "
                            f"but degradation {degradation!r} is not "
                            f"that on subject {vol.subject!r} (use sr-box-x2)")
                if s == 2:
                    degraded = np.repeat(np.repeat(np.repeat(degraded, 2, 1), 2, 2), 2, 3)
                key = f"{vol.subject}#{k}"
                self._pairs.append((key, clean, np.ascontiguousarray(degraded, np.float32),
                                    vol.affine))
                self.records.append({"subject": vol.subject, "realisation": k,
                                     "records": records})
            indices, cdf = _sampling_table(weights, geometry, any_phase=self.phase_augment)
            if indices.size == 0 or cdf[-1] <= 0:
                raise ValueError(
                    f"subject {vol.subject!r} (shape {clean.shape}) has no admissible patch "
                    f"centre for patches of {geometry.patch_size}: the head mask is empty or "
                    f"too close to the border (set background_weight > 0 or pass a mask)")
            for k in range(int(realisations)):
                self._tables[f"{vol.subject}#{k}"] = (indices, cdf)
        self.round_size = len(self._pairs) * self.samples_per_volume
        self.position = 0
        self._round: int | None = None
        self._round_offset = 0
        self._queue = None
        self._rng: IsolatedTorchRNG | None = None
        self._subjects = None

    # ------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        """Patches per round (one pass over all degraded volumes)."""
        return self.round_size

    def state_dict(self) -> dict[str, int]:
        return {"position": int(self.position), "seed": int(self.seed),
                "round_size": int(self.round_size)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if int(state.get("seed", self.seed)) != self.seed:
            raise ValueError(f"patch stream state has seed {state.get('seed')}, this stream "
                             f"{self.seed}")
        if int(state.get("round_size", self.round_size)) != self.round_size:
            raise ValueError(f"patch stream state has {state.get('round_size')} patches per "
                             f"round, this stream {self.round_size} (different data or "
                             "samples_per_volume?)")
        self.seek(int(state["position"]))

    def seek(self, position: int) -> None:
        """Continue from patch ``position`` (the round is regenerated lazily)."""
        if position < 0:
            raise ValueError(f"position must be >= 0, got {position}")
        self.position = int(position)
        self._round = None

    # ------------------------------------------------------------------------------------------
    def _build_subjects(self):
        from bids_enhance.training._tio import make_subject

        if self._subjects is None:
            self._subjects = [
                make_subject(key, target=torch.from_numpy(clean)[None],
                             source=torch.from_numpy(degraded), affine=affine)
                for key, clean, degraded, affine in self._pairs]
        return self._subjects

    def _open_round(self, index: int) -> None:
        from bids_enhance.training._tio import PrecomputedWeightedSampler, make_queue

        subjects = self._build_subjects()
        sampler = PrecomputedWeightedSampler(self.geometry.patch_size, self._tables)
        self._rng = IsolatedTorchRNG(child_seed(self.seed, "patches", index))
        with self._rng.active():
            self._queue = make_queue(subjects, sampler, max_length=self.queue_length,
                                     samples_per_volume=self.samples_per_volume)
        self._round = index
        self._round_offset = 0

    def _pop(self) -> Any:
        with self._rng.active():
            patch = self._queue[0]  # Queue.__getitem__ ignores the index and pops
        self._round_offset += 1
        return patch

    def _next_patch(self) -> tuple[Tensor, Tensor]:
        round_index, offset = divmod(self.position, self.round_size)
        if self._round != round_index or self._round_offset != offset:
            self._open_round(round_index)
            for _ in range(offset):  # resuming mid-round: replay the round up to the position
                self._pop()
        patch = self._pop()
        source, target = self._to_pair(patch)
        if self.phase_augment:
            source, target = rebox(source, target)
        if self.augment:
            rng = numpy_generator(self.seed, "augment", self.position)
            source, target = cube_symmetry(source, target, rng)
        if self.intensity_augment:
            rng = numpy_generator(self.seed, "intensity", self.position)
            source, target = random_gamma(source, target, rng)
        self.position += 1
        return self._arrange(source, target)

    def _to_pair(self, patch: Any) -> tuple[Tensor, Tensor]:
        """The ``(C, X, Y, Z)`` source and ``(X, Y, Z)`` target of a popped patch."""
        return patch["source"].data, patch["target"].data[0]

    def _arrange(self, source: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
        """``(C, X, Y, Z)`` source and ``(X, Y, Z)`` target patches → the network's pair."""
        g = self.geometry
        if g.slice_axis is not None:
            source = source[0].movedim(g.slice_axis, 0)
            target = target.movedim(g.slice_axis, 0)[g.neighbours:g.neighbours + 1]
            return source, target
        if g.scale == 2:
            source = source[:, ::2, ::2, ::2]
        return source, target[None]

    def take(self, n: int) -> list[tuple[Tensor, Tensor]]:
        """The next ``n`` patch pairs (unbatched)."""
        return [self._next_patch() for _ in range(int(n))]

    def next_batch(self, batch_size: int, *, rank: int = 0,
                   world_size: int = 1) -> tuple[Tensor, Tensor]:
        """Rank ``rank``'s share of the next global batch of ``batch_size × world_size``."""
        if not 0 <= rank < world_size:
            raise ValueError(f"rank must be in [0, {world_size}), got {rank}")
        start = self.position + rank * batch_size
        global_end = self.position + batch_size * world_size
        # every rank advances through the whole global batch (identical streams on all ranks)
        pairs = []
        while self.position < global_end:
            keep = start <= self.position < start + batch_size
            pair = self._next_patch()
            if keep:
                pairs.append(pair)
        source = torch.stack([p[0] for p in pairs]).contiguous()
        target = torch.stack([p[1] for p in pairs]).contiguous()
        return source, target


class NumpyPatchStream(PairedPatchStream):
    """:class:`PairedPatchStream` without TorchIO: the same volumes, degradations, records,
    sampling tables and patch geometry, with the queue replaced by a seeded NumPy sampler.

    For machines that have torch, NumPy and SciPy but not TorchIO (e.g. a bare GPU node
    training the default weights). Round ``k`` visits every degraded volume
    ``samples_per_volume`` times in an order shuffled by ``numpy_generator(seed, "numpy-patches",
    k)``, and each visit draws its patch centre from the volume's table with the same generator
    (inverse transform sampling of the weights, as TorchIO's ``WeightedSampler`` does). Patch
    ``p`` is a pure function of the seed and ``p``, so resuming and DDP slicing work exactly as
    in the parent class; the patches are not the ones TorchIO's queue would serve (the draws
    differ), but they are distributed the same way and aligned the same way (x2: even origins
    unless ``phase_augment``, LR patch = ``source[::2, ::2, ::2]``).
    """

    def _open_round(self, index: int) -> None:
        rng = numpy_generator(self.seed, "numpy-patches", index)
        visits = np.repeat(np.arange(len(self._pairs)), self.samples_per_volume)
        self._visits = visits[rng.permutation(visits.size)]
        self._np_rng = rng
        self._round = index
        self._round_offset = 0

    def _pop(self) -> Any:
        key, clean, degraded, _ = self._pairs[int(self._visits[self._round_offset])]
        indices, cdf = self._tables[key]
        u = max(float(self._np_rng.random()), float(np.finfo(np.float32).tiny)) * cdf[-1]
        j = min(int(np.searchsorted(cdf, u)), len(cdf) - 1)
        centre = np.asarray(np.unravel_index(int(indices[j]), clean.shape))
        origin = centre - np.asarray(self.geometry.patch_size) // 2
        index = tuple(slice(int(o), int(o) + s)
                      for o, s in zip(origin, self.geometry.patch_size, strict=True))
        self._round_offset += 1
        return torch.from_numpy(np.ascontiguousarray(degraded[(slice(None), *index)])), \
            torch.from_numpy(np.ascontiguousarray(clean[index]))

    def _to_pair(self, patch: Any) -> tuple[Tensor, Tensor]:
        return patch
