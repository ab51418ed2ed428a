"""Nipype interface over the degradation simulation (:func:`bids_enhance.degrade.simulate`).

``SimulateDegradation`` degrades a clean image as the models were trained: in simulation mode
(the participant workflow's ``--simulate``) and for the held-out evaluation of the training
workflow.
"""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)
from nipype.utils.filemanip import fname_presuffix


class _SimulateDegradationInputSpec(BaseInterfaceInputSpec):
    in_file = File(exists=True, mandatory=True, desc="clean image (normalised intensities)")
    preset = traits.Str(mandatory=True, desc="degradation preset (bids_enhance.degrade.PRESETS)")
    seed = traits.Int(mandatory=True, desc="seed of this image's draw (replayable)")


class _SimulateDegradationOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="degraded image (its own grid for low-resolution presets)")
    out_reference = File(exists=True, desc="the clean image on the grid outputs are compared on")
    out_record = File(exists=True, desc="JSON records that replay the degradation exactly")


class SimulateDegradation(SimpleInterface):
    """Degrade a clean image as the models were trained (low resolution, noise, motion)."""

    input_spec = _SimulateDegradationInputSpec
    output_spec = _SimulateDegradationOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_enhance.degrade import simulate
        from bids_enhance.utils import dump_json

        img = nib.load(self.inputs.in_file)
        sim = simulate(img.get_fdata(dtype=np.float32), img.affine, preset=self.inputs.preset,
                       seed=self.inputs.seed)
        cwd = Path(runtime.cwd)
        out_file = fname_presuffix(self.inputs.in_file, suffix="_degraded.nii.gz", newpath=cwd,
                                   use_ext=False)
        out_ref = fname_presuffix(self.inputs.in_file, suffix="_reference.nii.gz", newpath=cwd,
                                  use_ext=False)
        nib.save(nib.Nifti1Image(sim.degraded, sim.affine), out_file)
        nib.save(nib.Nifti1Image(sim.reference, img.affine), out_ref)
        out_record = cwd / "degradation.json"
        out_record.write_text(dump_json(sim.record()))
        self._results.update(out_file=out_file, out_reference=out_ref,
                             out_record=str(out_record))
        return runtime
