"""Nipype interfaces: load and sanitise, normalise and de-normalise intensities."""

from __future__ import annotations

import json
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from nipype.utils.filemanip import fname_presuffix


def _out_path(in_file: str, suffix: str, runtime_cwd: str) -> str:
    return fname_presuffix(in_file, suffix=f"_{suffix}.nii.gz", newpath=runtime_cwd,
                           use_ext=False)


class _SanitizeImageInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=False, mandatory=True,
                   desc="input NIfTI; problems with it are reported as one line naming it")


class _SanitizeImageOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="float32 3D NIfTI in the input's scale and alignment")
    out_report = File(exists=True, desc="JSON record of what was found and fixed")
    fixes = traits.List(traits.Str, desc="one sentence per fix")
    orientation = traits.Str(desc="axis codes of the voxel-to-world affine, e.g. RAS")


class SanitizeImage(SimpleInterface):
    """Read an image, fix what can be fixed (and say so), refuse what cannot."""

    input_spec = _SanitizeImageInputSpec
    output_spec = _SanitizeImageOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib

        from bids_enhance.image.sanitize import load_and_sanitise

        img, report = load_and_sanitise(self.inputs.in_file)
        out_file = _out_path(self.inputs.in_file, "valid", runtime.cwd)
        nib.save(img, out_file)
        out_report = Path(runtime.cwd) / "sanitise.json"
        out_report.write_text(json.dumps(report.to_dict(), indent=2))
        self._results.update(out_file=out_file, out_report=str(out_report),
                             fixes=report.fixes, orientation=report.orientation)
        return runtime


class _NormalizeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image in its own intensity scale")


class _NormalizeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="image divided by its robust maximum (float32)")
    scale = traits.Float(desc="the robust maximum that was divided out")


class NormalizeIntensity(SimpleInterface):
    """Scale-only normalisation (robust maximum → 1), recorded so it can be undone exactly."""

    input_spec = _NormalizeInputSpec
    output_spec = _NormalizeOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib

        from bids_enhance.image.intensity import normalise

        img = nib.load(self.inputs.in_file)
        data, record = normalise(img.get_fdata(dtype="float32"))
        out_file = _out_path(self.inputs.in_file, "norm", runtime.cwd)
        nib.save(nib.Nifti1Image(data, img.affine, img.header), out_file)
        self._results.update(out_file=out_file, scale=record.scale)
        return runtime


class _DenormalizeInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="normalised image")
    scale = traits.Float(mandatory=True, desc="the scale NormalizeIntensity divided out")
    reference = File(exists=True, mandatory=True,
                     desc="image whose header (alignment, units) the output takes")


class _DenormalizeOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="image in the reference's intensity scale (float32)")


class DenormalizeIntensity(SimpleInterface):
    """Undo :class:`NormalizeIntensity`; the header comes from ``reference``
    (:func:`bids_enhance.image.nifti.denormalised_image`)."""

    input_spec = _DenormalizeInputSpec
    output_spec = _DenormalizeOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib

        from bids_enhance.image.intensity import IntensityScale, denormalise
        from bids_enhance.image.nifti import denormalised_image

        img = nib.load(self.inputs.in_file)
        data = denormalise(img.get_fdata(dtype="float32"), IntensityScale(self.inputs.scale))
        out_file = _out_path(self.inputs.in_file, "denorm", runtime.cwd)
        nib.save(denormalised_image(data, img, nib.load(self.inputs.reference)), out_file)
        self._results["out_file"] = out_file
        return runtime
