"""Image-quality metrics: full-reference (PSNR, 3D SSIM, NRMSE, HFEN), MRIQC-style IQMs, spectra.

* :mod:`bids_enhance.metrics.quality` -- full reference, the evaluation protocol of METHODS.md;
* :mod:`bids_enhance.metrics.comparison` -- an enhanced image and its baselines against the clean
  reference (simulation mode, held-out evaluation);
* :mod:`bids_enhance.metrics.iqm` -- no reference (SNR, Dietrich SNR, CNR, CJV, EFC, FBER ...);
* :mod:`bids_enhance.metrics.spectrum` -- radially averaged power spectrum for reports;
* :mod:`bids_enhance.metrics.residual` -- does a denoiser's residual hold anatomy (no reference).
"""

from __future__ import annotations

from bids_enhance.metrics.comparison import compare_to_reference
from bids_enhance.metrics.iqm import compute_iqms, iqms_before_after, tissue_masks
from bids_enhance.metrics.quality import (
    evaluate,
    hfen,
    normalise_to_reference,
    nrmse,
    psnr,
    ssim3d,
)
from bids_enhance.metrics.residual import residual_structure
from bids_enhance.metrics.spectrum import radial_power_spectrum

__all__ = [
    "compare_to_reference",
    "compute_iqms",
    "evaluate",
    "hfen",
    "iqms_before_after",
    "normalise_to_reference",
    "nrmse",
    "psnr",
    "radial_power_spectrum",
    "residual_structure",
    "ssim3d",
    "tissue_masks",
]
