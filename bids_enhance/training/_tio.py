"""The TorchIO pieces of the patch stream (imported only when a stream is built: TorchIO is heavy
and absent on some GPU machines that only benchmark)."""

from __future__ import annotations

from collections.abc import Generator, Mapping

import numpy as np
import torch
import torchio as tio

__all__ = ["PrecomputedWeightedSampler", "make_queue", "make_subject"]

#: smallest positive float32 (TorchIO's guard against drawing exactly 0)
_MIN_FLOAT_32 = float(np.finfo(np.float32).tiny)


def make_subject(key: str, *, target: torch.Tensor, source: torch.Tensor,
                 affine: np.ndarray) -> tio.Subject:
    """A subject holding the aligned clean (``target``) and degraded (``source``) volumes,
    each ``(1, X, Y, Z)`` float32 on the same grid; ``key`` names its sampling table."""
    return tio.Subject(target=tio.ScalarImage(tensor=target, affine=affine),
                       source=tio.ScalarImage(tensor=source, affine=affine), key=key)


class PrecomputedWeightedSampler(tio.WeightedSampler):
    """``tio.WeightedSampler`` whose probability maps are precomputed once per subject.

    ``tables[subject["key"]] = (indices, cdf)``: the flat indices of the admissible patch centres
    (positive weight, far enough from the border, centre parity giving an origin on the
    requested grid) and the cumulative sum of their weights. Drawing is TorchIO's inverse
    transform sampling (one ``torch.rand`` from torch's global RNG per patch), the patch origin is
    ``centre − patch_size // 2`` as in TorchIO; patches are views into the subject's tensors (no
    copy of the whole subject per patch, which TorchIO's ``Crop`` would make).
    """

    def __init__(self, patch_size: tuple[int, int, int],
                 tables: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        super().__init__(patch_size, probability_map=None)
        self.tables = tables

    def _generate_patches(self, subject: tio.Subject,
                          num_patches: int | None = None) -> Generator[tio.Subject]:
        indices, cdf = self.tables[subject["key"]]
        shape = tuple(int(n) for n in subject.spatial_shape)
        half = self.patch_size // 2
        left = num_patches
        while left is None or left > 0:
            u = max(_MIN_FLOAT_32, torch.rand(1).item()) * cdf[-1]
            j = min(int(np.searchsorted(cdf, u)), len(cdf) - 1)
            centre = np.asarray(np.unravel_index(int(indices[j]), shape))
            yield self.extract_patch(subject, tuple(int(v) for v in centre - half))
            if left is not None:
                left -= 1

    def crop(self, subject: tio.Subject, index_ini, patch_size) -> tio.Subject:
        ini = np.asarray(index_ini, dtype=np.int64)
        size = np.asarray(patch_size, dtype=np.int64)
        index = (slice(None), *(slice(int(a), int(a + s)) for a, s in zip(ini, size, strict=True)))
        images = {}
        for name, image in subject.get_images_dict(intensity_only=False).items():
            affine = image.affine.copy()
            affine[:3, 3] = affine[:3, :3] @ ini + affine[:3, 3]
            images[name] = tio.ScalarImage(tensor=image.data[index], affine=affine)
        patch = tio.Subject(**images, key=subject["key"])
        patch[tio.LOCATION] = torch.as_tensor([*ini.tolist(), *(ini + size).tolist()])
        return patch


def make_queue(subjects: list[tio.Subject], sampler: PrecomputedWeightedSampler, *,
               max_length: int, samples_per_volume: int) -> tio.Queue:
    """``tio.Queue`` over in-memory subjects, loading in this process (``num_workers=0``: the
    volumes are in memory and workers would pickle them), shuffling subjects and patches."""
    return tio.Queue(tio.SubjectsDataset(subjects), max_length=max_length,
                     samples_per_volume=samples_per_volume, sampler=sampler, num_workers=0,
                     shuffle_subjects=True, shuffle_patches=True, start_background=True)
