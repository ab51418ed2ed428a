"""Foreground (head) masks for 3D structural MRI, without templates or external tools.

:func:`head_mask` must work on the three kinds of input a BIDS-App meets:

(a) a zeroed background (most public T1w, defaced or not),
(b) magnitude (Rician / Rayleigh) noise in the background,
(c) skull-stripped images (the "head" is then the brain).

Recipe (deterministic, no randomness): light Gaussian smoothing, one Otsu threshold on the
smoothed histogram (clipped at its robust maximum so a few hyper-intense vessels do not squeeze
it), a one-voxel opening to cut thin noise bridges, the largest connected
component, a growth of at most ``2 * smooth_sigma`` voxels up to a zeroed background when there is
one (see :func:`frame_mask`), a small closing (on a padded grid, so a head cut by the field of view is not eroded
at the edge), 3D hole filling, then 2D hole filling slice by slice along every axis (the 3D fill
cannot close a skull that is open where the field of view cuts the neck or where defacing removed
the face), and finally the largest component again.

:func:`frame_mask` is the analogue of MRIQC's ``RotationMask``: the empty (``<= 0``) region touching
the volume border, i.e. a zeroed background or the corners left empty by a resampling. MRIQC excludes
it from EFC and from the background of FBER; so does :mod:`bids_enhance.metrics.iqm`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from bids_enhance.image.intensity import robust_max
from bids_enhance.image.volume import check_volume

__all__ = ["frame_mask", "head_mask", "largest_component"]

_STRUCT_6 = ndi.generate_binary_structure(3, 1)
_STRUCT_18 = ndi.generate_binary_structure(3, 2)
_MIN_FRAME_VOXELS = 500  # as MRIQC's RotationMask: smaller empty regions are not a frame


def _as_volume(volume: np.ndarray, name: str = "volume") -> np.ndarray:
    """3D and non-empty (NaN are replaced by the callers)."""
    return check_volume(volume, name=name, finite=False)


def largest_component(mask: np.ndarray, *, connectivity: int = 1) -> np.ndarray:
    """Return the largest connected component of a boolean ``mask`` of shape ``(X, Y, Z)``.

    ``connectivity`` is 1 (faces, 6-neighbourhood), 2 (18) or 3 (26). Ties are broken by the lowest
    label, so the result is deterministic. An empty mask is returned unchanged.
    """
    mask = np.asarray(mask, dtype=bool)
    if mask.ndim != 3:
        raise ValueError(f"mask must be a 3D volume, got shape {mask.shape}")
    if connectivity not in (1, 2, 3):
        raise ValueError(f"connectivity must be 1, 2 or 3, got {connectivity}")
    labels, n = ndi.label(mask, structure=ndi.generate_binary_structure(3, connectivity))
    if n <= 1:
        return mask.copy()
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return labels == int(np.argmax(sizes))


def _fill_holes_slicewise(mask: np.ndarray) -> np.ndarray:
    """Union of the 2D hole fillings of ``mask`` along each of its three axes."""
    out = mask.copy()
    for axis in range(3):
        moved = np.moveaxis(mask, axis, 0)
        filled = np.empty_like(moved)
        for i in range(moved.shape[0]):
            filled[i] = ndi.binary_fill_holes(moved[i]) if moved[i].any() else moved[i]
        out |= np.moveaxis(filled, 0, axis)
    return out


def _close_padded(mask: np.ndarray, *, iterations: int) -> np.ndarray:
    """Binary closing that does not erode voxels touching the volume border."""
    if iterations <= 0:
        return mask
    pad = iterations
    padded = np.pad(mask, pad, mode="edge")
    closed = ndi.binary_closing(padded, structure=_STRUCT_18, iterations=iterations)
    return closed[pad:-pad, pad:-pad, pad:-pad] | mask


def head_mask(volume: np.ndarray, *, smooth_sigma: float = 1.0, closing_iterations: int = 2
              ) -> np.ndarray:
    """Boolean foreground (head) mask of a 3D structural image.

    Parameters
    ----------
    volume
        Magnitude image, shape ``(X, Y, Z)``, any real dtype. NaNs count as 0.
    smooth_sigma
        Standard deviation, in voxels, of the Gaussian applied before thresholding (0 disables).
    closing_iterations
        Iterations of the 18-neighbourhood closing that bridges small gaps (0 disables).

    Returns
    -------
    numpy.ndarray
        ``bool`` array of shape ``(X, Y, Z)``: one connected, hole-free component. For a
        skull-stripped image it is the brain. All ``False`` only for a constant volume.

    Notes
    -----
    The Otsu threshold is computed on the smoothed values clipped at their 99.9th percentile of
    positive voxels (:func:`bids_enhance.image.intensity.robust_max`). Dark tissue enclosed by the
    scalp (skull, CSF, air in sinuses) falls below it and is recovered by the hole filling; the
    slice-wise filling also recovers it where the field of view or defacing opened the head.

    Known limit: dim tissue on the *outside* of the head (below the Otsu threshold) is only
    recovered next to a zeroed background. A brain-only image with a noisy background (no scalp)
    therefore loses a thin outer CSF layer; a lower threshold would fix that but would also push
    every sharp bright edge one voxel outwards after the smoothing.
    """
    data = _as_volume(volume)
    if not np.isfinite(smooth_sigma) or smooth_sigma < 0:
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got {smooth_sigma}")
    if closing_iterations < 0:
        raise ValueError(f"closing_iterations must be >= 0, got {closing_iterations}")
    data = np.nan_to_num(data.astype(np.float32, copy=False))
    smooth = ndi.gaussian_filter(data, smooth_sigma) if smooth_sigma > 0 else data
    top = robust_max(smooth)
    low = float(smooth.min())
    if not top > low:
        return np.zeros(data.shape, dtype=bool)
    clipped = np.clip(smooth, low, top)
    # Import here: skimage.filters pulls in a lot and only this function needs it.
    from skimage.filters import threshold_otsu

    thr = float(threshold_otsu(clipped, nbins=256))
    fg = smooth > thr
    opened = ndi.binary_opening(fg, structure=_STRUCT_6)
    if opened.any():
        fg = opened
    mask = largest_component(fg)
    frame = frame_mask(data)
    if frame.any():
        # Smoothing moves the threshold crossing inwards where a mid-grey tissue meets a zeroed
        # background (the cortex of a skull-stripped brain): grow the mask up to the empty region,
        # and only where that region is within reach, so a noisy background is never annexed;
        # conversely the blur never pushes the mask into the empty region.
        reach = max(1, int(np.ceil(2 * smooth_sigma)))
        grow = ndi.binary_dilation(mask, structure=_STRUCT_6, iterations=reach)
        near_frame = ndi.binary_dilation(frame, structure=_STRUCT_6, iterations=reach + 1)
        mask |= grow & near_frame & (data > 0)
        mask &= ~frame
    mask = _close_padded(mask, iterations=closing_iterations)
    mask = ndi.binary_fill_holes(mask)
    mask = _fill_holes_slicewise(mask)
    return largest_component(mask)


def frame_mask(volume: np.ndarray) -> np.ndarray:
    """Empty region of ``volume`` (shape ``(X, Y, Z)``) connected to the volume border.

    Voxels ``<= 0`` (NaN counts as 0) are opened with an 18-neighbourhood element on a grid padded
    with one layer of empty voxels, and the components touching that padding are kept. Regions
    smaller than 500 voxels are not a frame (as MRIQC's ``RotationMask``), so the result is all
    ``False`` for images with a noisy (non-zero) background. Returns a ``bool`` array.
    """
    data = np.nan_to_num(_as_volume(volume))
    empty = np.pad(data <= 0, 1, mode="constant", constant_values=True)
    empty = ndi.binary_opening(empty, structure=_STRUCT_18, border_value=1)
    labels, _ = ndi.label(empty, structure=_STRUCT_6)
    border = np.concatenate([
        labels[[0, -1], :, :].ravel(), labels[:, [0, -1], :].ravel(), labels[:, :, [0, -1]].ravel()
    ])
    border_labels = np.unique(border[border > 0])
    if border_labels.size == 0:
        return np.zeros(data.shape, dtype=bool)
    frame = np.isin(labels, border_labels)[1:-1, 1:-1, 1:-1]
    if int(frame.sum()) < _MIN_FRAME_VOXELS:
        return np.zeros(data.shape, dtype=bool)
    return frame
