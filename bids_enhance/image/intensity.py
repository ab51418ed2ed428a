"""Intensity scaling: robust maximum, normalisation and its exact inverse.

Normalisation is a pure scale (no shift) so that zero stays zero: Rician magnitude statistics and
the "voxels at 0 stay 0" rule of the non-local-means filters survive it, and the inverse is exact.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

ROBUST_PERCENTILE = 99.9


def robust_max(volume: np.ndarray, *, mask: np.ndarray | None = None,
               percentile: float = ROBUST_PERCENTILE) -> float:
    """Return the ``percentile``-th percentile of the foreground of ``volume``.

    The foreground is ``mask`` when given, otherwise the voxels above zero (most public T1w images
    have a zeroed background, which would drag any whole-volume percentile down). Falls back to the
    absolute maximum when the foreground is empty; returns 0.0 for an all-zero volume.
    """
    data = np.asarray(volume)
    if data.ndim != 3:
        raise ValueError(f"robust_max expects a 3D volume, got shape {data.shape}")
    values = data[np.asarray(mask, dtype=bool)] if mask is not None else data[data > 0]
    if values.size == 0:
        values = np.abs(data).ravel()
    if values.size == 0:
        return 0.0
    return float(np.percentile(values, percentile))


@dataclass(frozen=True)
class IntensityScale:
    """Record of a scale-only normalisation ``normalised = original / scale``."""

    scale: float
    percentile: float = ROBUST_PERCENTILE

    def to_dict(self) -> dict:
        return asdict(self)


def normalise(volume: np.ndarray, *, mask: np.ndarray | None = None,
              percentile: float = ROBUST_PERCENTILE) -> tuple[np.ndarray, IntensityScale]:
    """Scale ``volume`` so its robust maximum is 1; return the float32 result and the record."""
    scale = robust_max(volume, mask=mask, percentile=percentile)
    if not np.isfinite(scale) or scale <= 0:
        scale = 1.0
    out = (np.asarray(volume, dtype=np.float64) / scale).astype(np.float32)
    return out, IntensityScale(scale=scale, percentile=percentile)


def denormalise(volume: np.ndarray, record: IntensityScale, *,
                dtype: np.dtype | type = np.float32) -> np.ndarray:
    """Map a normalised volume back to the input's intensity scale."""
    return (np.asarray(volume, dtype=np.float64) * record.scale).astype(dtype)
