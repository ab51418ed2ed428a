"""Compare an enhanced image with its clean reference, and score the baselines the same way.

The evaluation protocol of METHODS.md (:func:`bids_enhance.metrics.quality.evaluate` in the
reference's head mask), as simulation mode's sidecars (``ReferenceMetrics``) and the model
cards' held-out evaluation record it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["BASELINES", "PROTOCOL", "compare_to_reference"]

#: How the metrics are computed, recorded with them.
PROTOCOL = ("reference / its 99.9th percentile in the head mask; metrics in the head mask; "
            "3D SSIM (Gaussian σ 1.5)")
#: Baselines scored on the degraded input: ``identity`` (the degraded input itself, same-grid
#: tasks) and the x2 interpolations ``trilinear``, ``cubic``, ``kspace``
#: (:func:`bids_enhance.inference.upsample_baseline`).
BASELINES = ("identity", "trilinear", "cubic", "kspace")


def compare_to_reference(reference: np.ndarray, enhanced: np.ndarray, *, label: str,
                         degraded: np.ndarray | None = None,
                         degraded_affine: np.ndarray | None = None,
                         baselines: Sequence[str] = (), lowres_method: str = "box",
                         name: str = "the enhanced image") -> dict[str, Any]:
    """Full-reference metrics (PSNR, 3D SSIM, NRMSE, HFEN) of ``enhanced`` and of each of
    ``baselines`` computed from ``degraded`` (with its ``degraded_affine``), all in the head mask
    of ``reference``.

    A baseline that does not land on the reference's grid (an x2 interpolation of a same-grid
    task) is left out. ``label`` names the image in the result; ``name`` in the error raised
    when ``enhanced`` is not on the reference's grid. Returns ``{"label", "protocol",
    "enhanced": {metric: value}, "baselines": {kind: {metric: value}}}``.
    """
    from bids_enhance.image.mask import head_mask
    from bids_enhance.metrics.quality import evaluate

    if enhanced.shape != reference.shape:
        raise ValueError(f"{name}: shape {enhanced.shape} differs from the "
                         f"reference's {reference.shape}")
    unknown = sorted(set(baselines) - set(BASELINES))
    if unknown:
        raise ValueError(f"unknown baseline(s) {unknown}; expected some of {list(BASELINES)}")
    mask = head_mask(reference)
    result: dict[str, Any] = {"label": label, "protocol": PROTOCOL,
                              "enhanced": evaluate(reference, enhanced, mask=mask),
                              "baselines": {}}
    if degraded is None:
        return result
    for kind in baselines:
        if kind == "identity":
            base = degraded
        else:
            from bids_enhance.inference import upsample_baseline

            base, _ = upsample_baseline(degraded, degraded_affine, kind=kind,
                                        method=lowres_method)
        if base.shape == reference.shape:
            result["baselines"][kind] = evaluate(reference, base, mask=mask)
    return result
