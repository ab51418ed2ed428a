"""Nipype interface over the trained networks (:func:`bids_enhance.inference.run_checkpoint_image`).

``GenerativeEnhance`` runs a trained model on one image: the generative steps of the participant
workflow (:func:`bids_enhance.workflows.enhance.init_generative_wf`) and the held-out evaluation
of the training workflow use this one node, so a model is validated exactly as users run it.
"""

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
from nipype.utils.filemanip import fname_presuffix


class _GenerativeEnhanceInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="image to enhance")
    checkpoint = File(exists=True, mandatory=True, desc="bids_enhance model checkpoint")
    expected_sha256 = traits.Str(desc="refuse the checkpoint unless its sha256 matches")
    consistency = traits.Enum("measure", "project", "off", usedefault=True,
                              desc="x2 models: measure the data consistency, or enforce it")
    seed = traits.Int(0, usedefault=True, desc="diffusion sampling seed")
    step = traits.Str("generative", usedefault=True,
                      desc="name of the enhancement step, recorded in out_info")
    model_summary = traits.Dict(desc="model-card summary recorded in out_info")
    phase_encoding_axis = traits.Enum(0, 1, 2, desc="motion models: the voxel axis along which "
                                      "the image's motion ghosts run (its phase encoding)")
    phase_encoding_source = traits.Str(desc="where phase_encoding_axis came from")
    device = traits.Str("cpu", usedefault=True, nohash=True, desc="torch device")
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="torch CPU threads")
    mem_gb = traits.Float(desc="memory budget for choosing the patch size", nohash=True)
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="tell nipype's MultiProc this node occupies a GPU")


class _GenerativeEnhanceOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="enhanced image (x2 grid for super-resolution models)")
    out_info = File(exists=True, desc="JSON: model, sha256, device, patching, consistency")


class GenerativeEnhance(SimpleInterface):
    """Run a trained model on one image (whole volume or blended patches)."""

    input_spec = _GenerativeEnhanceInputSpec
    output_spec = _GenerativeEnhanceOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import torch

        from bids_enhance.inference.run import run_checkpoint_image
        from bids_enhance.utils import dump_json

        inputs = self.inputs
        torch.set_num_threads(max(1, inputs.omp_nthreads))
        result, info = run_checkpoint_image(
            inputs.checkpoint, nib.load(inputs.in_file),
            expected_sha256=(inputs.expected_sha256 or None)
            if isdefined(inputs.expected_sha256) else None,
            device=inputs.device, seed=inputs.seed,
            consistency=None if inputs.consistency == "off" else inputs.consistency,
            mem_budget_gb=inputs.mem_gb if isdefined(inputs.mem_gb) else None,
            step=inputs.step,
            model_summary=inputs.model_summary if isdefined(inputs.model_summary) else None,
            phase_encoding_axis=(inputs.phase_encoding_axis
                                 if isdefined(inputs.phase_encoding_axis) else None),
            phase_encoding_source=(inputs.phase_encoding_source or None)
            if isdefined(inputs.phase_encoding_source) else None)
        out_file = fname_presuffix(inputs.in_file, suffix="_enhanced.nii.gz",
                                   newpath=runtime.cwd, use_ext=False)
        nib.save(result, out_file)
        out_info = Path(runtime.cwd) / "inference_info.json"
        out_info.write_text(dump_json(info))
        self._results.update(out_file=out_file, out_info=str(out_info))
        return runtime
