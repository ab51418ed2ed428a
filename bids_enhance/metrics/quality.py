"""Full-reference image quality: PSNR, 3D SSIM, NRMSE, HFEN and the evaluation protocol.

Evaluation protocol (METHODS.md, "Evaluation protocol"; ``evaluate(..., mode="protocol")``):

1. the reference is divided by its 99.9th percentile inside the head/brain mask and the test image
   by the *same* number (:func:`normalise_to_reference`), so the reference lies in ~[0, 1];
2. PSNR with data range 1, 3D SSIM (Gaussian window sigma 1.5, population covariance, never
   slice-wise), NRMSE and HFEN, each computed inside the mask.

``mode="thesis"`` reproduces the published tables instead: no normalisation, whole volume, data
range = reference max - min.

All functions take arrays of shape ``(X, Y, Z)``; ``mask`` is a boolean array of the same shape
(``None`` = whole volume). Computations are in float64.
"""

from __future__ import annotations

import logging
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from bids_enhance.image.intensity import ROBUST_PERCENTILE, robust_max

__all__ = [
    "SSIM_TRUNCATE",
    "evaluate",
    "hfen",
    "normalise_to_reference",
    "nrmse",
    "psnr",
    "ssim3d",
]

logger = logging.getLogger(__name__)

SSIM_TRUNCATE = 3.5  # 11-tap window at sigma 1.5, as Wang et al. 2004 and skimage
_K1, _K2 = 0.01, 0.03


def _check_pair(ref: np.ndarray, test: np.ndarray, mask: np.ndarray | None
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    ref = np.asarray(ref)
    test = np.asarray(test)
    if ref.ndim != 3:
        raise ValueError(f"ref must be a 3D volume, got shape {ref.shape}")
    if test.shape != ref.shape:
        raise ValueError(f"test must have the shape of ref {ref.shape}, got {test.shape}")
    if mask is not None:
        mask = np.asarray(mask)
        if mask.shape != ref.shape:
            raise ValueError(f"mask must have the shape of ref {ref.shape}, got {mask.shape}")
        mask = mask.astype(bool, copy=False)
        if not mask.any():
            raise ValueError("mask is empty (no True voxel)")
    return ref.astype(np.float64, copy=False), test.astype(np.float64, copy=False), mask


def _check_positive(value: float, name: str) -> float:
    value = float(value)
    if not np.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a finite positive number, got {value}")
    return value


def _select(data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    return data.ravel() if mask is None else data[mask]


def normalise_to_reference(ref: np.ndarray, test: np.ndarray, *, mask: np.ndarray | None = None,
                           percentile: float = ROBUST_PERCENTILE
                           ) -> tuple[np.ndarray, np.ndarray]:
    """Divide ``ref`` and ``test`` (both ``(X, Y, Z)``) by the ``percentile`` of ``ref`` in ``mask``.

    Without a mask the percentile is taken over the positive voxels of ``ref`` (see
    :func:`bids_enhance.image.intensity.robust_max`). Returns float64 ``(ref_n, test_n)``; ``test``
    gets exactly the scale of ``ref``, so intensity errors of ``test`` are kept. Raises
    ``ValueError`` when the percentile of ``ref`` is not positive.
    """
    ref, test, mask = _check_pair(ref, test, mask)
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    scale = robust_max(ref, mask=mask, percentile=percentile)
    if not np.isfinite(scale) or scale <= 0:
        raise ValueError(
            f"ref has no positive intensity to normalise by (percentile {percentile} = {scale})"
        )
    return ref / scale, test / scale


def psnr(ref: np.ndarray, test: np.ndarray, *, mask: np.ndarray | None = None,
         data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB: ``10 log10(data_range^2 / MSE)``, MSE over ``mask``.

    ``ref``, ``test``: ``(X, Y, Z)``. Returns ``inf`` for identical images.
    """
    ref, test, mask = _check_pair(ref, test, mask)
    data_range = _check_positive(data_range, "data_range")
    mse = float(np.mean(_select((ref - test) ** 2, mask)))
    if mse == 0:
        return float("inf")
    return float(10.0 * np.log10(data_range**2 / mse))


def nrmse(ref: np.ndarray, test: np.ndarray, *, mask: np.ndarray | None = None) -> float:
    """Normalised RMSE ``||test - ref||_2 / ||ref||_2`` over ``mask`` (skimage's "euclidean").

    ``ref``, ``test``: ``(X, Y, Z)``. Returns 0 for identical images, ``inf`` if ``ref`` is zero in
    the mask and ``test`` is not.
    """
    ref, test, mask = _check_pair(ref, test, mask)
    num = float(np.sqrt(np.sum(_select((ref - test) ** 2, mask))))
    den = float(np.sqrt(np.sum(_select(ref**2, mask))))
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return num / den


def hfen(ref: np.ndarray, test: np.ndarray, *, mask: np.ndarray | None = None,
         sigma: float = 1.5) -> float:
    """High-frequency error norm ``||LoG(test) - LoG(ref)||_2 / ||LoG(ref)||_2`` over ``mask``.

    ``LoG`` is the 3D Laplacian of Gaussian of standard deviation ``sigma`` voxels
    (``scipy.ndimage.gaussian_laplace``, reflect boundary), computed on the whole volume; only the
    norms are restricted to ``mask`` (Ravishankar & Bresler 2011, here in 3D). ``ref``, ``test``:
    ``(X, Y, Z)``. Returns 0 for identical images.
    """
    ref, test, mask = _check_pair(ref, test, mask)
    sigma = _check_positive(sigma, "sigma")
    log_ref = ndi.gaussian_laplace(ref, sigma)
    log_diff = ndi.gaussian_laplace(test - ref, sigma)  # LoG is linear
    num = float(np.sqrt(np.sum(_select(log_diff**2, mask))))
    den = float(np.sqrt(np.sum(_select(log_ref**2, mask))))
    if den == 0:
        return 0.0 if num == 0 else float("inf")
    return num / den


def ssim3d(ref: np.ndarray, test: np.ndarray, *, mask: np.ndarray | None = None,
           data_range: float = 1.0, sigma: float = 1.5) -> float:
    """Mean 3D structural similarity (Wang et al. 2004) with a Gaussian window, over ``mask``.

    Parameters
    ----------
    ref, test
        Volumes of shape ``(X, Y, Z)``; each axis must be at least the window size
        ``2 * int(3.5 * sigma + 0.5) + 1`` (11 for ``sigma=1.5``).
    mask
        Boolean ``(X, Y, Z)``; ``None`` means the whole volume.
    data_range
        Dynamic range ``L`` in ``C1 = (0.01 L)^2``, ``C2 = (0.03 L)^2``.
    sigma
        Standard deviation of the isotropic 3D Gaussian window in voxels (truncated at 3.5 sigma).

    Returns
    -------
    float
        Mean of the SSIM map over the mask voxels at least one window radius away from the volume
        border (skimage also drops that border strip).

    Notes
    -----
    Local means, variances and covariance use population statistics
    (``use_sample_covariance=False``) and a window *restricted to the mask*: every Gaussian
    average is a normalised convolution ``G * (m x) / G * m``. Voxels outside the mask therefore have
    no influence at all (background noise, or a different background in the test image, cannot
    change the score). Without a mask ``m = 1`` and the result equals
    ``skimage.metrics.structural_similarity(ref, test, gaussian_weights=True, sigma=sigma,
    use_sample_covariance=False, data_range=data_range)`` to rounding. The volume is never processed
    slice by slice. Only the bounding box of the mask (plus one window radius) is filtered, so the
    cost follows the size of the mask.
    """
    ref, test, mask = _check_pair(ref, test, mask)
    data_range = _check_positive(data_range, "data_range")
    sigma = _check_positive(sigma, "sigma")
    radius = int(SSIM_TRUNCATE * sigma + 0.5)
    win = 2 * radius + 1
    if min(ref.shape) < win:
        raise ValueError(
            f"ref of shape {ref.shape} is smaller than the SSIM window ({win} voxels for "
            f"sigma={sigma}) along at least one axis"
        )
    # Voxels where the mean is taken: the mask minus a border strip of one window radius.
    valid = np.zeros(ref.shape, dtype=bool)
    valid[radius:-radius, radius:-radius, radius:-radius] = True
    if mask is not None:
        valid &= mask
        if not valid.any():
            raise ValueError(
                f"mask has no voxel at least {radius} voxels away from the volume border"
            )
        # Crop to the bounding box of the valid voxels plus one window radius: the filters at the
        # valid voxels only see voxels within that radius, so the result is unchanged.
        idx = np.nonzero(valid)
        box = tuple(slice(max(int(i.min()) - radius, 0), min(int(i.max()) + radius + 1, n))
                    for i, n in zip(idx, ref.shape, strict=True))
        ref, test, mask, valid = ref[box], test[box], mask[box], valid[box]

    def blur(x: np.ndarray) -> np.ndarray:
        return ndi.gaussian_filter(x, sigma, truncate=SSIM_TRUNCATE, mode="reflect")

    if mask is None:
        x, y = ref, test
        norm = None
    else:
        weight = mask.astype(np.float64)
        x, y = ref * weight, test * weight
        norm = blur(weight)[valid]  # >= the centre tap of the window at every valid voxel

    def local_mean(arr: np.ndarray) -> np.ndarray:
        out = blur(arr)[valid]
        return out if norm is None else out / norm

    ux, uy = local_mean(x), local_mean(y)
    vx = local_mean(x * ref) - ux * ux  # x * ref == m x^2 (m is 0/1)
    vy = local_mean(y * test) - uy * uy
    vxy = local_mean(x * test) - ux * uy
    c1 = (_K1 * data_range) ** 2
    c2 = (_K2 * data_range) ** 2
    ssim_map = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux**2 + uy**2 + c1) * (vx + vy + c2))
    return float(np.mean(ssim_map, dtype=np.float64))


def evaluate(ref: np.ndarray, test: np.ndarray, *, mask: np.ndarray | None = None,
             mode: Literal["protocol", "thesis"] = "protocol") -> dict[str, float]:
    """PSNR, SSIM, NRMSE and HFEN of ``test`` against ``ref`` (both ``(X, Y, Z)``).

    ``mode="protocol"`` (METHODS.md): both images divided by the 99.9th percentile of ``ref`` in
    ``mask``; PSNR (data range 1), 3D SSIM (sigma 1.5, data range 1), NRMSE and HFEN inside
    ``mask``. Without a mask, :func:`bids_enhance.image.mask.head_mask` of ``ref`` is used.

    ``mode="thesis"``: no normalisation, whole volume, data range = ``ref.max() - ref.min()`` for
    PSNR and SSIM (the convention of the published tables). ``mask`` is not used in this mode.

    Returns ``{"psnr": dB, "ssim": ..., "nrmse": ..., "hfen": ...}`` as Python floats.
    """
    ref, test, mask = _check_pair(ref, test, mask)
    if mode == "protocol":
        if mask is None:
            from bids_enhance.image.mask import head_mask

            mask = head_mask(ref)
            if not mask.any():
                raise ValueError("ref is constant: no head mask can be computed for the protocol")
        ref_n, test_n = normalise_to_reference(ref, test, mask=mask)
        return {
            "psnr": psnr(ref_n, test_n, mask=mask, data_range=1.0),
            "ssim": ssim3d(ref_n, test_n, mask=mask, data_range=1.0, sigma=1.5),
            "nrmse": nrmse(ref_n, test_n, mask=mask),
            "hfen": hfen(ref_n, test_n, mask=mask, sigma=1.5),
        }
    if mode == "thesis":
        if mask is not None:
            logger.info("evaluate(mode='thesis') uses the whole volume; the mask is not used")
        data_range = float(ref.max() - ref.min())
        if data_range <= 0:
            raise ValueError("ref is constant: its max - min data range is 0")
        return {
            "psnr": psnr(ref, test, data_range=data_range),
            "ssim": ssim3d(ref, test, data_range=data_range, sigma=1.5),
            "nrmse": nrmse(ref, test),
            "hfen": hfen(ref, test, sigma=1.5),
        }
    raise ValueError(f"mode must be 'protocol' or 'thesis', got {mode!r}")
