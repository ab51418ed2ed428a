"""The one check of a 3D volume argument, shared by every core package (degradations, metrics,
masks, classical filters, inference): a 3D, non-empty, real-valued array, finite unless told
otherwise. Each caller keeps its own ``name`` in the messages and converts the dtype it needs.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["check_volume"]


def check_volume(data: Any, *, name: str = "volume", finite: bool = True,
                 min_size: int = 1) -> np.ndarray:
    """``data`` as a numpy array (no copy when it already is one) after checking it is a 3D
    ``(X, Y, Z)`` volume of real numbers (integers, floats or booleans; not complex), at least
    ``min_size`` voxels along every axis, and, with ``finite``, free of NaN and infinities.
    Raises ``ValueError`` with one sentence that starts with ``name``."""
    array = np.asarray(data)
    if array.ndim != 3:
        raise ValueError(f"{name} must be a 3D volume (X, Y, Z), got shape {array.shape}")
    if array.size == 0:
        raise ValueError(f"{name} is empty (shape {array.shape})")
    if array.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be real-valued, got dtype {array.dtype}")
    if min(array.shape) < min_size:
        raise ValueError(f"{name} must be at least {min_size} voxels along every axis, got "
                         f"shape {array.shape}")
    if finite and array.dtype.kind == "f" and not np.isfinite(array).all():
        bad = int((~np.isfinite(array)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite voxel(s)")
    return array
