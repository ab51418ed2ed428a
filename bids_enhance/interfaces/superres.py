"""Nipype interface over the x2 interpolation baselines (:mod:`bids_enhance.inference.superres`).

The participant workflow uses it to put the input of a super-resolved image on the output grid
(cubic B-spline at the exact x2 coordinates) for the report's before/after views, the residual
and the no-reference metrics, which all need one grid.
"""

from __future__ import annotations

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nipype.utils.filemanip import fname_presuffix


class _UpsampleBaselineInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="low-resolution image")
    kind = traits.Enum("cubic", "trilinear", "kspace", usedefault=True,
                       desc="cubic B-spline, trilinear, or zero-filled k-space interpolation")
    method = traits.Enum("box", "kspace", "nearest", usedefault=True,
                         desc="x2 geometry the super-resolution model assumes (its training "
                              "degradation): box has the half-voxel offset")
    reference = File(exists=True, desc="image on the output grid; its grid must be this one's")


class _UpsampleBaselineOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the image interpolated onto the x2 grid (float32)")


class UpsampleBaseline(SimpleInterface):
    """Interpolate an image onto the x2 grid a super-resolution model writes."""

    input_spec = _UpsampleBaselineInputSpec
    output_spec = _UpsampleBaselineOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_enhance.image.nifti import result_image
        from bids_enhance.inference.superres import upsample_baseline

        img = nib.load(self.inputs.in_file)
        out, affine = upsample_baseline(img.get_fdata(dtype=np.float32), img.affine,
                                        kind=self.inputs.kind, method=self.inputs.method)
        if isdefined(self.inputs.reference):
            ref = nib.load(self.inputs.reference)
            if ref.shape[:3] != out.shape or not np.allclose(ref.affine, affine, atol=1e-4):
                raise ValueError(
                    f"{self.inputs.reference}: its grid (shape {ref.shape[:3]}) is not the x2 "
                    f"{self.inputs.method} grid of {self.inputs.in_file} (shape {out.shape})")
        out_file = fname_presuffix(self.inputs.in_file, suffix=f"_{self.inputs.kind}x2.nii.gz",
                                   newpath=runtime.cwd, use_ext=False)
        nib.save(result_image(out, affine, img, keep_header=True), out_file)
        self._results["out_file"] = out_file
        return runtime
