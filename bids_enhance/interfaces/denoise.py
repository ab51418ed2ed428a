"""Nipype interface over the denoisers of ``bids_enhance.classical.denoise`` (the classical
filters and the learned denoiser)."""

from __future__ import annotations

import json
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

from bids_enhance.steps import CLASSICAL, DENOISE, DENOISE_METHODS, PIPELINE_METHODS


class _ClassicalDenoiseInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="3D image (normalised intensities)")
    method = traits.Enum(*PIPELINE_METHODS, usedefault=True,
                         desc=" or ".join(f"{DENOISE_METHODS[m].abbreviation} "
                                          f"({DENOISE_METHODS[m].cited})"
                                          for m in PIPELINE_METHODS))
    noise_model = traits.Enum("rician", "gaussian", usedefault=True,
                              desc="noise distribution assumed by the filter")
    sigma = traits.Float(desc="noise standard deviation in the image's units; estimated "
                              "(Coupé et al. 2010) when not given")
    sloppy = traits.Bool(False, usedefault=True,
                         desc="smaller search window: fast, lower quality (smoke tests)")
    device = traits.Str("cpu", usedefault=True, nohash=True,
                        desc="torch device (cpu, cuda, cuda:N); results do not depend on it")
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="torch CPU threads")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="tell nipype's MultiProc this node occupies a GPU")
    checkpoint = File(exists=True, desc="learned method: the verified checkpoint to run "
                                        "(default: the shipped weights)")
    checkpoint_sha256 = traits.Str(desc="learned method: the checkpoint's sha256, checked again "
                                        "when it is loaded")


class _ClassicalDenoiseOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="denoised image, same grid and dtype as the input")
    sigma = traits.Float(desc="noise standard deviation used (image units)")
    out_info = File(exists=True, desc="JSON: method, parameters, sigma, estimator, device, time")


class ClassicalDenoise(SimpleInterface):
    """Denoise one 3D image with a classical filter (PRI-NLM, SANLM, ODCT3D) or the learned
    denoiser, in PyTorch (CPU or CUDA)."""

    input_spec = _ClassicalDenoiseInputSpec
    output_spec = _ClassicalDenoiseOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np
        import torch

        from bids_enhance.classical import denoise

        torch.set_num_threads(max(1, self.inputs.omp_nthreads))
        img = nib.load(self.inputs.in_file)
        params = dict(DENOISE_METHODS[self.inputs.method].sloppy) if self.inputs.sloppy else {}
        if DENOISE_METHODS[self.inputs.method].learned:
            if isdefined(self.inputs.checkpoint):
                params["checkpoint"] = self.inputs.checkpoint
            if isdefined(self.inputs.checkpoint_sha256):
                params["sha256"] = self.inputs.checkpoint_sha256
        sigma = self.inputs.sigma if isdefined(self.inputs.sigma) else None
        out, info = denoise(img.get_fdata(dtype=np.float32), method=self.inputs.method,
                            noise_model=self.inputs.noise_model, sigma=sigma,
                            device=self.inputs.device, **params)
        out_file = fname_presuffix(self.inputs.in_file, suffix=f"_{self.inputs.method}.nii.gz",
                                   newpath=runtime.cwd, use_ext=False)
        nib.save(nib.Nifti1Image(out.astype(np.float32), img.affine, img.header), out_file)
        info.update(step=DENOISE.name, kind=CLASSICAL)
        out_info = Path(runtime.cwd) / "denoise_info.json"
        out_info.write_text(json.dumps(info, indent=2, default=float))
        self._results.update(out_file=out_file, sigma=float(info["sigma"]),
                             out_info=str(out_info))
        return runtime
