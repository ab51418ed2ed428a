"""Reportlet interfaces: residual mosaic (SVG), IQM table, subject summary and about box (HTML).

Each writes one file in the node's working directory (``out_report``), which the workflow's
``DerivativesDataSink`` copies to ``<out>/sub-XX/figures/<source entities>_desc-<x>_<suffix>``.
The drawing and formatting live in :mod:`bids_enhance.reports`; these classes only load and
save.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nireports.interfaces.reporting.base import SimpleBeforeAfterRPT


class _ReportOutputSpec(TraitedSpec):
    out_report = File(exists=True, desc="the reportlet")


class BeforeAfterRPT(SimpleBeforeAfterRPT):
    """nireports' before/after SVG, animated without hovering
    (:func:`bids_enhance.reports.figures.animate_flicker`)."""

    def _generate_report(self):
        from bids_enhance.reports.figures import animate_flicker

        super()._generate_report()
        out = Path(self._out_report)
        out.write_text(animate_flicker(out.read_text(encoding="utf-8")), encoding="utf-8")


class _ResidualMosaicInputSpec(BaseInterfaceInputSpec):
    in_before = File(exists=True, mandatory=True,
                     desc="image before enhancement (input intensity scale)")
    in_after = File(exists=True, mandatory=True,
                    desc="image after enhancement, on the grid of in_before, same scale")
    steps = InputMultiObject(traits.Str, desc="the enhancement steps that ran, in order (the "
                                              "figure's legend says how to read it for them); "
                                              "default: denoising")


class ResidualMosaicRPT(SimpleInterface):
    """SVG mosaic of the signed residual ``before - after`` (axial, sagittal, coronal slices)."""

    input_spec = _ResidualMosaicInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_enhance.reports.captions import Chain, residual_legend
        from bids_enhance.reports.figures import plot_residual_mosaic

        legend = (residual_legend(Chain(steps=tuple(self.inputs.steps)))
                  if isdefined(self.inputs.steps) else None)
        before = nib.as_closest_canonical(nib.load(self.inputs.in_before))
        after = nib.as_closest_canonical(nib.load(self.inputs.in_after))
        if before.shape[:3] != after.shape[:3] or not np.allclose(before.affine, after.affine,
                                                                  atol=1e-3):
            raise ValueError(
                f"{self.inputs.in_after}: grid (shape {after.shape[:3]}) differs from the "
                f"input's (shape {before.shape[:3]}); the residual needs one grid")
        out = Path(runtime.cwd) / "residual.svg"
        plot_residual_mosaic(
            before.get_fdata(dtype=np.float32).reshape(before.shape[:3]),
            after.get_fdata(dtype=np.float32).reshape(after.shape[:3]),
            out, zooms=before.header.get_zooms()[:3], affine=before.affine, legend=legend)
        self._results["out_report"] = str(out)
        return runtime


class _IQMTableInputSpec(BaseInterfaceInputSpec):
    in_sidecar = File(exists=True, mandatory=True,
                      desc="JSON sidecar of the enhanced image (BuildSidecar output)")


class IQMTableRPT(SimpleInterface):
    """HTML table of the IQMs before/after, the noise estimate, method and input repairs."""

    input_spec = _IQMTableInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        import json

        from bids_enhance.reports.fragments import iqm_table_html

        sidecar = json.loads(Path(self.inputs.in_sidecar).read_text())
        out = Path(runtime.cwd) / "iqms.html"
        out.write_text(iqm_table_html(sidecar), encoding="utf-8")
        self._results["out_report"] = str(out)
        return runtime


class _SubjectSummaryInputSpec(BaseInterfaceInputSpec):
    subject = traits.Str(mandatory=True, desc="subject label (with or without 'sub-')")
    source_files = InputMultiObject(traits.Str, mandatory=True,
                                    desc="paths of the images found for this subject")
    bids_dir = traits.Str(mandatory=True, desc="root of the input dataset (paths shown relative)")
    enhance = InputMultiObject(traits.Str, mandatory=True, desc="enhancement chain, in order")
    denoise_method = traits.Str(mandatory=True, desc="denoising method (e.g. prinlm, sanlm)")
    noise_model = traits.Str(mandatory=True, desc="noise model (rician or gaussian)")
    device = traits.Str(mandatory=True, desc="device the models ran on (cpu, cuda, ...)")
    models = traits.List(traits.Str, desc="one line per trained model of the chain")


class SubjectSummaryRPT(SimpleInterface):
    """HTML summary: subject, images found, chain, method, noise model, device."""

    input_spec = _SubjectSummaryInputSpec
    output_spec = _ReportOutputSpec
    _always_run = True  # cheap; never show a summary cached from an earlier run

    def _run_interface(self, runtime):
        from bids_enhance.reports.fragments import subject_summary_html

        inputs = self.inputs
        text = subject_summary_html(
            subject=inputs.subject, source_files=list(inputs.source_files),
            bids_dir=inputs.bids_dir, enhance=list(inputs.enhance),
            denoise_method=inputs.denoise_method, noise_model=inputs.noise_model,
            device=inputs.device, models=list(inputs.models) if isdefined(inputs.models) else [])
        out = Path(runtime.cwd) / "summary.html"
        out.write_text(text, encoding="utf-8")
        self._results["out_report"] = str(out)
        return runtime


class _AboutInputSpec(BaseInterfaceInputSpec):
    version = traits.Str(mandatory=True, desc="bids_enhance version")


class AboutRPT(SimpleInterface):
    """HTML provenance box: version, command line (``sys.argv`` of this process), date (UTC)."""

    input_spec = _AboutInputSpec
    output_spec = _ReportOutputSpec
    _always_run = True  # the command and date are those of this run, not of a cached one

    def _run_interface(self, runtime):
        import shlex
        import sys
        from datetime import UTC, datetime

        from bids_enhance.reports.fragments import about_html
        from bids_enhance.utils import software_versions

        argv = list(sys.argv)
        if argv and argv[0].endswith(("__main__.py", "-c")):
            argv[0] = "bids_enhance"
        text = about_html(
            version=self.inputs.version, command=shlex.join(argv),
            date=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
            software=software_versions())
        out = Path(runtime.cwd) / "about.html"
        out.write_text(text, encoding="utf-8")
        self._results["out_report"] = str(out)
        return runtime


class _SuperResolutionInputSpec(BaseInterfaceInputSpec):
    in_lowres = File(exists=True, mandatory=True, desc="the image that was super-resolved")
    in_upsampled = File(exists=True, mandatory=True,
                        desc="in_lowres interpolated onto the output grid (cubic B-spline)")
    in_after = File(exists=True, mandatory=True, desc="the super-resolved image")
    in_sidecar = File(exists=True, mandatory=True,
                      desc="its JSON sidecar (consistency error, model)")


class SuperResolutionRPT(SimpleInterface):
    """SVG: zoomed detail (input voxels, cubic, output, difference), power spectra before and
    after, data-consistency error."""

    input_spec = _SuperResolutionInputSpec
    output_spec = _ReportOutputSpec

    def _run_interface(self, runtime):
        import json

        import nibabel as nib
        import numpy as np

        from bids_enhance.reports.captions import superres_annotations
        from bids_enhance.reports.figures import plot_superres

        sidecar = json.loads(Path(self.inputs.in_sidecar).read_text())
        images = [nib.as_closest_canonical(nib.load(f)) for f in
                  (self.inputs.in_lowres, self.inputs.in_upsampled, self.inputs.in_after)]
        lowres, upsampled, after = (
            (img.get_fdata(dtype=np.float32).reshape(img.shape[:3]), img.affine)
            for img in images)
        if not np.allclose(upsampled[1], after[1], atol=1e-3):
            raise ValueError(f"{self.inputs.in_upsampled} and {self.inputs.in_after} are not "
                             "on one grid")
        out = Path(runtime.cwd) / "superres.svg"
        plot_superres(lowres[0], lowres[1], upsampled[0], after[0], after[1], out,
                      **superres_annotations(sidecar))
        self._results["out_report"] = str(out)
        return runtime
