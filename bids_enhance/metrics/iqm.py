"""No-reference image-quality metrics (IQMs) of a structural image, after MRIQC.

Definitions follow MRIQC's ``mriqc/qc/anatomical.py`` and the way its ``StructuralQC`` interface
calls them (nipreps/mriqc, 23.x/24.x), re-implemented here. For a tissue ``t`` with mask ``M_t``
(eroded, see :func:`tissue_masks`), ``med_t``, ``std_t`` (population), ``mad_t``
(median absolute deviation / 0.6745, a robust standard deviation) and ``n_t`` are computed on the
image values in ``M_t``:

* ``snr_t = med_t / (std_t * sqrt(n_t / (n_t - 1)))``; ``snr_total`` = mean over CSF, GM, WM.
* ``snrd_t = med_t * sqrt((4 - pi) / 2) / mad_air`` (Dietrich et al. 2007, eq. A.12; the factor
  converts the spread of the Rayleigh-distributed air into the Gaussian noise sigma);
  ``snr_dietrich`` = mean over CSF, GM, WM.
* ``cnr = |med_wm - med_gm| / sqrt(std_air^2 + std_gm^2 + std_wm^2)`` (Magnotta & Friedman 2006,
  MRIQC's current form), with ``std_air = 0`` when there is no air mask (as MRIQC).
* ``cjv = (mad_wm + mad_gm) / |med_wm - med_gm|`` (Ganzetti et al. 2016).
* ``efc = E / E_max`` with ``E = -sum_j (x_j / b) ln(x_j / b)``, ``b = sqrt(sum_j x_j^2)`` and
  ``E_max = -sqrt(N) ln(1 / sqrt(N))`` (Atkinson 1997), over the ``N`` voxels outside the frame
  (:func:`bids_enhance.image.mask.frame_mask`, MRIQC's rotation mask); 0 when all the energy is in
  one voxel, 1 for a constant image.
* ``fber = median(x^2 in head) / median(x^2 in background)``, background = outside the head and
  outside the frame (Shehzad et al. 2015, MRIQC's median form).
* ``wm2max = med_wm / P99.95(x)``.

As in MRIQC, NaNs are set to 0 and negative values clipped to 0 before measuring.

Differences from MRIQC, on purpose:

* no INU (N4) correction before measuring, and our own tissue classes instead of FSL FAST
  (see :func:`tissue_masks`);
* the air mask is everything outside the (dilated) head mask, minus the frame and minus
  Mortamet-style artefact voxels; MRIQC further restricts it to the "hat" above the
  nasion-cerebellum plane, which needs a template registration we do not do, so ghosts and
  fold-over below that plane can inflate the air spread;
* ``snr_dietrich`` is ``NaN`` when the air mask is empty or too small (< 1000 voxels, e.g. a zeroed
  background) or its MAD is 0 (a mostly zeroed background): there is no noise to measure. MRIQC
  falls back to the air standard deviation there and reports -1.0 when that is ~0 too;
* ``fber`` is ``NaN`` when there is no background voxel (head fills the field of view, or the
  whole background is the zeroed frame) and ``inf`` when the background energy is 0; MRIQC
  reports -1.0 when it is below 1e-3 (an absolute, scale-dependent threshold).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Literal

import numpy as np
from scipy import ndimage as ndi

from bids_enhance.image.mask import frame_mask
from bids_enhance.image.mask import head_mask as compute_head_mask
from bids_enhance.image.volume import check_volume

__all__ = [
    "CONTRAST_ORDER",
    "DIETRICH_FACTOR",
    "TISSUES",
    "air_mask",
    "cjv",
    "cnr",
    "compute_iqms",
    "efc",
    "fber",
    "iqms_before_after",
    "snr",
    "snr_dietrich",
    "tissue_masks",
    "undefined_reason",
]

logger = logging.getLogger(__name__)

TISSUES = ("csf", "gm", "wm")
#: Tissue classes from darkest to brightest for each contrast.
CONTRAST_ORDER: dict[str, tuple[str, str, str]] = {
    "T1w": ("csf", "gm", "wm"),
    "T2w": ("wm", "gm", "csf"),
    "FLAIR": ("csf", "wm", "gm"),
    "PD": ("wm", "gm", "csf"),
}
DIETRICH_FACTOR = float(np.sqrt((4.0 - np.pi) / 2.0))  # 0.65514, 1 / sqrt(2 / (4 - pi))
_MAD_SCALE = 0.6744897501960817  # Phi^-1(3/4): MAD / this estimates a Gaussian sigma
_MIN_AIR_VOXELS = 1000  # as MRIQC's summary_stats: smaller background masks are not measured
_STRUCT_18 = ndi.generate_binary_structure(3, 2)

Contrast = Literal["T1w", "T2w", "FLAIR", "PD"]


# --------------------------------------------------------------------------- formulas


def snr(median: float, std: float, n: int) -> float:
    """MRIQC's tissue SNR ``median / (std * sqrt(n / (n - 1)))``; ``inf`` when ``std`` is 0."""
    if n < 2:
        raise ValueError(f"n must be >= 2 voxels, got {n}")
    denom = std * np.sqrt(n / (n - 1))
    return float(median / denom) if denom > 0 else float("inf")


def snr_dietrich(median: float, mad_air: float) -> float:
    """Dietrich's SNR ``median * sqrt((4 - pi) / 2) / mad_air``; ``NaN`` when ``mad_air`` is 0."""
    if not np.isfinite(mad_air) or mad_air <= 0:
        return float("nan")
    return float(DIETRICH_FACTOR * median / mad_air)


def cnr(median_wm: float, median_gm: float, std_air: float, std_wm: float, std_gm: float
        ) -> float:
    """``|median_wm - median_gm| / sqrt(std_air^2 + std_wm^2 + std_gm^2)`` (MRIQC)."""
    denom = float(np.sqrt(std_air**2 + std_wm**2 + std_gm**2))
    diff = abs(median_wm - median_gm)
    if denom == 0:
        return float("inf") if diff > 0 else float("nan")
    return float(diff / denom)


def cjv(median_wm: float, median_gm: float, mad_wm: float, mad_gm: float) -> float:
    """``(mad_wm + mad_gm) / |median_wm - median_gm|`` (MRIQC); ``inf`` without contrast."""
    diff = abs(median_wm - median_gm)
    if diff == 0:
        return float("inf")
    return float((mad_wm + mad_gm) / diff)


def efc(volume: np.ndarray, *, frame_mask: np.ndarray | None = None) -> float:
    """Entropy focus criterion of ``volume`` (shape ``(X, Y, Z)``), normalised to [0, 1].

    ``EFC = E / E_max`` with ``E = -sum_j (x_j / b) ln(x_j / b + tiny)``, ``b = sqrt(sum_j x_j^2)``,
    ``E_max = -N (1 / sqrt(N)) ln(1 / sqrt(N))`` over the ``N`` voxels outside ``frame_mask``
    (boolean, same shape; ``None`` = all voxels). ``x`` is clipped at 0. Returns ``NaN`` for an
    all-zero volume.
    """
    data = _as_volume(volume)
    if frame_mask is not None:
        frame_mask = _as_mask(frame_mask, data.shape, "frame_mask")
        values = data[~frame_mask]
    else:
        values = data.ravel()
    values = np.clip(np.nan_to_num(values.astype(np.float64)), 0, None)
    n = values.size
    if n < 2:
        raise ValueError(f"efc needs at least 2 voxels outside frame_mask, got {n}")
    energy = float(np.sqrt(np.sum(values**2)))
    if energy == 0:
        return float("nan")
    e_max = n * (1.0 / np.sqrt(n)) * np.log(1.0 / np.sqrt(n))
    p = values / energy
    # 0 * log(0) = 0: MRIQC adds 1e-16 inside the log for the same purpose.
    entropy_sum = float(np.sum(p * np.log(np.where(p > 0, p, 1.0))))
    return float(entropy_sum / e_max)


def fber(volume: np.ndarray, *, head_mask: np.ndarray, frame_mask: np.ndarray | None = None
         ) -> float:
    """Foreground-background energy ratio ``median(x^2 in head) / median(x^2 in background)``.

    ``volume``, ``head_mask`` and ``frame_mask`` have shape ``(X, Y, Z)``; the background is
    ``~head_mask & ~frame_mask``. Returns ``NaN`` without background voxels (MRIQC's median of an
    empty array gives NaN too) and ``inf`` when the median background energy is 0 (MRIQC returns
    -1.0 below 1e-3, see the module docstring).
    """
    data = np.clip(np.nan_to_num(_as_volume(volume).astype(np.float64)), 0, None)
    head = _as_mask(head_mask, data.shape, "head_mask")
    if not head.any():
        raise ValueError("head_mask is empty (no True voxel)")
    background = ~head
    if frame_mask is not None:
        background &= ~_as_mask(frame_mask, data.shape, "frame_mask")
    if not background.any():
        return float("nan")
    fg = float(np.median(data[head] ** 2))
    bg = float(np.median(data[background] ** 2))
    if bg == 0:
        return float("inf") if fg > 0 else float("nan")
    return fg / bg


# --------------------------------------------------------------------------- masks


def _as_volume(volume: np.ndarray, name: str = "volume") -> np.ndarray:
    """3D and non-empty (NaN are replaced by the callers)."""
    return check_volume(volume, name=name, finite=False)


def _as_mask(mask: np.ndarray, shape: tuple[int, ...], name: str) -> np.ndarray:
    mask = np.asarray(mask)
    if mask.shape != shape:
        raise ValueError(f"{name} must have the shape of volume {shape}, got {mask.shape}")
    return mask.astype(bool, copy=False)


def _clean(volume: np.ndarray) -> np.ndarray:
    """float32 copy with NaN -> 0 and negatives -> 0 (as MRIQC's StructuralQC)."""
    data = np.nan_to_num(_as_volume(volume).astype(np.float32))
    np.clip(data, 0, None, out=data)
    return data


def air_mask(volume: np.ndarray, *, head_mask: np.ndarray, margin: int = 2,
             zscore: float = 10.0) -> np.ndarray:
    """Air (background noise) mask of ``volume``, shape ``(X, Y, Z)``, ``bool``.

    Voxels farther than ``margin`` voxels from ``head_mask``, outside the zeroed frame
    (:func:`bids_enhance.image.mask.frame_mask`), minus artefacts found as in Mortamet et al. 2009 /
    MRIQC's ``artifact_mask``: air voxels whose value exceeds the air median by more than
    ``zscore`` robust standard deviations (MAD / 0.6745 of the positive air values), ignoring the
    10 % of the air closest to the head, cleaned by a 6-neighbourhood opening. Finally eroded once
    with an 18-neighbourhood element (as MRIQC's summary statistics). May be empty (zeroed or
    skull-stripped backgrounds).
    """
    data = _clean(volume)
    head = _as_mask(head_mask, data.shape, "head_mask")
    if margin < 0:
        raise ValueError(f"margin must be >= 0, got {margin}")
    if margin:
        outside = ~ndi.binary_dilation(head, structure=_STRUCT_18, iterations=margin)
    else:
        outside = ~head
    air = outside & ~frame_mask(data)
    values = data[air]
    positive = values[values > 0]
    if positive.size >= 100:
        location = float(np.median(positive))
        spread = float(np.median(np.abs(positive - location))) / _MAD_SCALE
        if spread > 0:
            distance = ndi.distance_transform_edt(~head)
            far = distance >= 0.10 * float(distance.max())
            artefact = air & far & ((data - location) / spread > zscore)
            artefact = ndi.binary_opening(artefact, structure=ndi.generate_binary_structure(3, 1))
            air &= ~artefact
    return ndi.binary_erosion(air, structure=_STRUCT_18)


def tissue_masks(volume: np.ndarray, *, head_mask: np.ndarray | None = None,
                 brain_mask: np.ndarray | None = None, contrast: Contrast = "T1w",
                 smooth_sigma: float = 1.0, erode: bool = True) -> dict[str, np.ndarray]:
    """Approximate CSF / GM / WM masks and an air mask, without FSL FAST.

    Parameters
    ----------
    volume
        Structural image, shape ``(X, Y, Z)``.
    head_mask
        Boolean ``(X, Y, Z)``; computed with :func:`bids_enhance.image.mask.head_mask` when
        ``None``. Defines the air (outside) and, without ``brain_mask``, the classified region.
    brain_mask
        Optional boolean ``(X, Y, Z)`` brain mask; when given, tissues are classified inside it
        only (what MRIQC does with FAST on the skull-stripped brain).
    contrast
        ``"T1w"`` (CSF < GM < WM), ``"T2w"`` and ``"PD"`` (WM < GM < CSF), ``"FLAIR"``
        (CSF < WM < GM): the order of the three intensity classes, darkest first.
    smooth_sigma
        Gaussian sigma (voxels) applied before classifying, so noise does not scatter voxels
        between classes and the class statistics (measured on the unsmoothed image) are not
        truncated by the thresholds. 0 disables.
    erode
        Erode each tissue class once with an 18-neighbourhood element to drop partial-volume
        voxels (MRIQC erodes its FAST masks the same way for voxels under 1.9 mm). A class that
        erosion would empty is kept uneroded (a warning is logged).

    Returns
    -------
    dict
        ``{"csf", "gm", "wm", "air", "head", "frame"}`` -> ``bool`` arrays of shape
        ``(X, Y, Z)``. ``"air"`` (:func:`air_mask`) may be empty; ``"head"`` is the head mask used;
        ``"frame"`` is :func:`bids_enhance.image.mask.frame_mask` (excluded from EFC and FBER).

    Notes
    -----
    This is an approximation of FAST: a 3-class multi-level Otsu threshold
    (``skimage.filters.threshold_multiotsu``) of the smoothed intensities in the region, with no
    spatial prior, no bias-field model and no partial-volume model. Without ``brain_mask`` the
    region is the whole head, so extra-cerebral tissue joins the classes by intensity (on T1w:
    scalp fat with WM, muscle with GM, skull and marrow with CSF): absolute values then differ
    from MRIQC's. For before/after comparisons compute the masks once (on the input) and pass
    them to :func:`compute_iqms` for both images.
    """
    data = _clean(volume)
    if contrast not in CONTRAST_ORDER:
        raise ValueError(f"contrast must be one of {sorted(CONTRAST_ORDER)}, got {contrast!r}")
    if not np.isfinite(smooth_sigma) or smooth_sigma < 0:
        raise ValueError(f"smooth_sigma must be a finite number >= 0, got {smooth_sigma}")
    if head_mask is None:
        head = compute_head_mask(data)
    else:
        head = _as_mask(head_mask, data.shape, "head_mask")
    if not head.any():
        raise ValueError("head_mask is empty (no True voxel)")
    if brain_mask is not None:
        region = _as_mask(brain_mask, data.shape, "brain_mask")
        if not region.any():
            raise ValueError("brain_mask is empty (no True voxel)")
    else:
        region = head

    smooth = ndi.gaussian_filter(data, smooth_sigma) if smooth_sigma > 0 else data
    values = smooth[region]
    from skimage.filters import threshold_multiotsu

    try:
        thresholds = threshold_multiotsu(values, classes=3)
    except ValueError as err:
        raise ValueError(
            f"volume has too few distinct intensities in the mask for 3 tissue classes ({err})"
        ) from err
    classes = np.digitize(smooth, thresholds)  # 0 darkest .. 2 brightest

    out: dict[str, np.ndarray] = {}
    for level, name in enumerate(CONTRAST_ORDER[contrast]):
        tissue = region & (classes == level)
        if erode:
            eroded = ndi.binary_erosion(tissue, structure=_STRUCT_18)
            if eroded.any():
                tissue = eroded
            else:
                logger.warning("erosion would empty the %s mask; keeping it uneroded", name)
        out[name] = tissue
    out = {name: out[name] for name in TISSUES}
    out["air"] = air_mask(data, head_mask=head)
    out["head"] = head
    out["frame"] = frame_mask(data)
    return out


# --------------------------------------------------------------------------- IQMs


def _stats(values: np.ndarray) -> dict[str, float]:
    values = values.astype(np.float64, copy=False)
    median = float(np.median(values))
    return {
        "mean": float(np.mean(values)),
        "median": median,
        "stdv": float(np.std(values)),
        "mad": float(np.median(np.abs(values - median)) / _MAD_SCALE),
        "n": float(values.size),
    }


def compute_iqms(volume: np.ndarray, *, head_mask: np.ndarray | None = None,
                 tissues: dict[str, np.ndarray] | None = None, contrast: Contrast = "T1w"
                 ) -> dict[str, float]:
    """MRIQC-style IQMs of a structural image (formulas in the module docstring).

    Parameters
    ----------
    volume
        Structural image, shape ``(X, Y, Z)``.
    head_mask
        Boolean ``(X, Y, Z)`` head mask (FBER foreground). Default: ``tissues["head"]`` when
        present, else :func:`bids_enhance.image.mask.head_mask` of ``volume``.
    tissues
        Precomputed masks ``{"csf", "gm", "wm"[, "air"][, "head"][, "frame"]}`` (e.g. from
        :func:`tissue_masks` of the image before denoising): pass the same masks for the before
        and after images so both are measured on the same voxels. ``"air"`` and ``"frame"`` are
        recomputed from ``volume`` when absent. Default: :func:`tissue_masks` of ``volume``.
    contrast
        Used only when ``tissues`` is ``None``, to order the classes.

    Returns
    -------
    dict
        Floats: ``snr_csf``, ``snr_gm``, ``snr_wm``, ``snr_total``, ``snrd_csf``, ``snrd_gm``,
        ``snrd_wm``, ``snr_dietrich``, ``cnr``, ``cjv``, ``efc``, ``fber``, ``wm2max``,
        ``summary_<t>_{mean,median,stdv,mad}`` for ``t`` in ``bg, csf, gm, wm`` (``NaN`` for an
        empty air mask) and the mask sizes ``n_csf``, ``n_gm``, ``n_wm``, ``n_air``, ``n_head``,
        ``n_frame`` (voxels).

        ``snr_dietrich`` and ``snrd_*`` are ``NaN`` when the background is zeroed or has no
        variation (air mask under 1000 voxels or air MAD of 0): Dietrich's SNR needs background
        noise. ``fber`` is ``inf`` when the background energy is 0 and ``NaN`` when there is no
        background outside the frame.
    """
    data = _clean(volume)
    if tissues is None:
        tissues = tissue_masks(data, head_mask=head_mask, contrast=contrast)
    missing = [t for t in TISSUES if t not in tissues]
    if missing:
        raise ValueError(f"tissues lacks the masks {missing}; expected keys {list(TISSUES)}")
    masks = {t: _as_mask(tissues[t], data.shape, f"tissues[{t!r}]") for t in TISSUES}
    for t, m in masks.items():
        if int(m.sum()) < 2:
            raise ValueError(f"tissues[{t!r}] has {int(m.sum())} voxels; at least 2 are needed")

    if head_mask is not None:
        head = _as_mask(head_mask, data.shape, "head_mask")
    elif "head" in tissues:
        head = _as_mask(tissues["head"], data.shape, "tissues['head']")
    else:
        head = compute_head_mask(data)
    if not head.any():
        raise ValueError("head_mask is empty (no True voxel)")
    if "air" in tissues:
        air = _as_mask(tissues["air"], data.shape, "tissues['air']")
    else:
        air = air_mask(data, head_mask=head)
    if "frame" in tissues:
        frame = _as_mask(tissues["frame"], data.shape, "tissues['frame']")
    else:
        frame = frame_mask(data)

    stats = {t: _stats(data[masks[t]]) for t in TISSUES}
    n_air = int(air.sum())
    if n_air >= _MIN_AIR_VOXELS:
        stats["bg"] = _stats(data[air])
    else:
        # As MRIQC: a (nearly) empty background is not measured; std 0 in the CNR denominator.
        stats["bg"] = {"mean": float("nan"), "median": float("nan"), "stdv": 0.0, "mad": 0.0,
                       "n": float(n_air)}

    out: dict[str, float] = {}
    for t in TISSUES:
        out[f"snr_{t}"] = snr(stats[t]["median"], stats[t]["stdv"], int(stats[t]["n"]))
    out["snr_total"] = float(np.mean([out[f"snr_{t}"] for t in TISSUES]))
    for t in TISSUES:
        out[f"snrd_{t}"] = snr_dietrich(stats[t]["median"], stats["bg"]["mad"])
    out["snr_dietrich"] = float(np.mean([out[f"snrd_{t}"] for t in TISSUES]))
    wm, gm = stats["wm"], stats["gm"]
    out["cnr"] = cnr(wm["median"], gm["median"], stats["bg"]["stdv"], wm["stdv"], gm["stdv"])
    out["cjv"] = cjv(wm["median"], gm["median"], wm["mad"], gm["mad"])
    out["efc"] = efc(data, frame_mask=frame)
    out["fber"] = fber(data, head_mask=head, frame_mask=frame)
    top = float(np.percentile(data, 99.95))
    out["wm2max"] = float(wm["median"] / top) if top > 0 else float("nan")
    measured_bg = n_air >= _MIN_AIR_VOXELS
    for t in ("bg", *TISSUES):
        for key in ("mean", "median", "stdv", "mad"):
            out[f"summary_{t}_{key}"] = stats[t][key] if t != "bg" or measured_bg else float("nan")
    for t in TISSUES:
        out[f"n_{t}"] = float(stats[t]["n"])
    out["n_air"] = float(n_air)
    out["n_head"] = float(head.sum())
    out["n_frame"] = float(frame.sum())
    return out


def iqms_before_after(before: np.ndarray, after: np.ndarray, *, contrast: Contrast = "T1w",
                      name: str = "the enhanced image") -> dict[str, dict[str, float]]:
    """The IQMs of an image before and after enhancement, on the same masks.

    Head and tissue masks come from ``before``, so a change in a metric is the image changing,
    not the masks; ``after`` must lie on the same grid (``name`` names it in the error).
    Returns ``{"Before": {...}, "After": {...}}`` (:func:`compute_iqms`).
    """
    if before.shape != after.shape:
        raise ValueError(f"{name}: shape {after.shape} differs from the "
                         f"input's {before.shape}; no-reference metrics need one grid")
    mask = compute_head_mask(before)
    tissues = tissue_masks(before, head_mask=mask, contrast=contrast)
    return {
        "Before": compute_iqms(before, head_mask=mask, tissues=tissues),
        "After": compute_iqms(after, head_mask=mask, tissues=tissues),
    }


# --------------------------------------------------------------------------- reports


def _is_zero(value) -> bool:
    try:
        return float(value) == 0.0
    except (TypeError, ValueError):
        return False


def undefined_reason(key: str, iqms: Mapping[str, float | None]) -> str:
    """Why IQM ``key`` of ``iqms`` has no finite value, as a short phrase for reports.

    ``iqms`` is a :func:`compute_iqms` result or its strict-JSON form (non-finite values as
    ``None``, as in the image sidecars); the reason is read from the other values of the same
    dict (mask sizes, background and tissue statistics) and falls back to what makes the metric
    undefined in general when those are absent.
    """
    def get(name: str) -> float | None:
        value = iqms.get(name)
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        return number if np.isfinite(number) else None

    n_air = get("n_air")
    if key == "snr_dietrich" or key.startswith("snrd_"):
        if n_air is not None and n_air < _MIN_AIR_VOXELS:
            return (f"too little air around the head to measure its noise ({int(n_air)} "
                    f"voxels, fewer than {_MIN_AIR_VOXELS})")
        if _is_zero(iqms.get("summary_bg_mad")):
            return ("no noise left in the air around the head (zero background); Dietrich's "
                    "SNR divides by it")
        return "needs noise in the air around the head: none to measure (zeroed background)"
    if key == "fber":
        if _is_zero(iqms.get("summary_bg_median")):
            return "the background outside the head is zero, so the energy ratio is infinite"
        if n_air is not None and n_air == 0:
            return "no background outside the head to compare with"
        return "infinite when the background is zero, undefined without background"
    if key.startswith("snr_"):
        tissues = [key.removeprefix("snr_")] if key != "snr_total" else list(TISSUES)
        flat = [t.upper() for t in tissues if _is_zero(iqms.get(f"summary_{t}_stdv"))]
        if flat:
            return f"no variation left in {', '.join(flat)} (standard deviation 0): infinite"
        return "infinite when a tissue has no variation left"
    if key in ("cjv", "cnr"):
        wm, gm = get("summary_wm_median"), get("summary_gm_median")
        if wm is not None and gm is not None and wm == gm:
            return "WM and GM have the same median intensity (no contrast)"
        return ("no noise left in WM, GM and the air" if key == "cnr"
                else "WM and GM have the same median intensity (no contrast)")
    if key in ("efc", "wm2max"):
        return "the image is zero everywhere"
    return "not a finite number"
