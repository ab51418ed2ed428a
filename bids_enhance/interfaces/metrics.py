"""Nipype interfaces over :mod:`bids_enhance.metrics`: no-reference image-quality metrics before
and after enhancement, and the full-reference comparison with a clean image (simulation mode,
held-out evaluation)."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nipype.utils.filemanip import split_filename


class _QualityMetricsInputSpec(BaseInterfaceInputSpec):
    in_before = File(exists=True, mandatory=True, desc="image before enhancement")
    in_after = File(exists=True, mandatory=True, desc="image after enhancement (same grid)")
    contrast = traits.Enum("T1w", "T2w", "FLAIR", "PD", usedefault=True,
                           desc="contrast, to order the tissue classes")


class _QualityMetricsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON {'Before': {...}, 'After': {...}}")


class QualityMetrics(SimpleInterface):
    """MRIQC-style IQMs (SNR, CNR, CJV, EFC, FBER) of both images on the same masks
    (:func:`bids_enhance.metrics.iqm.iqms_before_after`).

    Head and tissue masks come from the image *before* enhancement, so a change in a metric is
    the image changing, not the masks.
    """

    input_spec = _QualityMetricsInputSpec
    output_spec = _QualityMetricsOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_enhance.metrics.iqm import iqms_before_after
        from bids_enhance.utils import dump_json

        result = iqms_before_after(
            nib.load(self.inputs.in_before).get_fdata(dtype=np.float32),
            nib.load(self.inputs.in_after).get_fdata(dtype=np.float32),
            contrast=self.inputs.contrast, name=self.inputs.in_after)
        out_file = Path(runtime.cwd) / "iqms.json"
        out_file.write_text(dump_json(result))
        self._results["out_file"] = str(out_file)
        return runtime


class _CompareToReferenceInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="enhanced image")
    reference = File(exists=True, mandatory=True, desc="clean image on the same grid")
    in_degraded = File(exists=True, desc="the degraded input, to score baselines as well")
    baselines = traits.List(traits.Enum("identity", "trilinear", "cubic", "kspace"),
                            desc="baselines scored on in_degraded: identity (the degraded input "
                                 "itself, same-grid tasks), trilinear/cubic/kspace (x2 tasks)")
    lowres_method = traits.Str("box", usedefault=True, desc="geometry of the x2 degradation")
    label = traits.Str(desc="name of the image in the output (e.g. its BIDS name)")


class _CompareToReferenceOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON: PSNR, 3D SSIM, NRMSE, HFEN per image and baseline")


class CompareToReference(SimpleInterface):
    """Full-reference metrics in the head mask (evaluation protocol of METHODS.md;
    :func:`bids_enhance.metrics.comparison.compare_to_reference`)."""

    input_spec = _CompareToReferenceInputSpec
    output_spec = _CompareToReferenceOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_enhance.metrics.comparison import compare_to_reference
        from bids_enhance.utils import dump_json

        inputs = self.inputs
        degraded = degraded_affine = None
        baselines = list(inputs.baselines) if isdefined(inputs.baselines) else []
        if isdefined(inputs.in_degraded) and baselines:
            deg_img = nib.load(inputs.in_degraded)
            degraded, degraded_affine = deg_img.get_fdata(dtype=np.float32), deg_img.affine
        result = compare_to_reference(
            nib.load(inputs.reference).get_fdata(dtype=np.float32),
            nib.load(inputs.in_file).get_fdata(dtype=np.float32),
            label=inputs.label if isdefined(inputs.label) else split_filename(inputs.in_file)[1],
            degraded=degraded, degraded_affine=degraded_affine, baselines=baselines,
            lowres_method=inputs.lowres_method, name=inputs.in_file)
        out_file = Path(runtime.cwd) / "comparison.json"
        out_file.write_text(dump_json(result))
        self._results["out_file"] = str(out_file)
        return runtime
