"""Nipype interface: no-reference image-quality metrics before and after enhancement."""

from __future__ import annotations

from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    File,
    SimpleInterface,
    TraitedSpec,
    traits,
)


class _QualityMetricsInputSpec(BaseInterfaceInputSpec):
    in_before = File(exists=True, mandatory=True, desc="image before enhancement")
    in_after = File(exists=True, mandatory=True, desc="image after enhancement (same grid)")
    contrast = traits.Enum("T1w", "T2w", "FLAIR", "PD", usedefault=True,
                           desc="contrast, to order the tissue classes")


class _QualityMetricsOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="JSON {'Before': {...}, 'After': {...}}")


class QualityMetrics(SimpleInterface):
    """MRIQC-style IQMs (SNR, CNR, CJV, EFC, FBER) of both images on the same masks.

    Head and tissue masks come from the image *before* enhancement, so a change in a metric is
    the image changing, not the masks.
    """

    input_spec = _QualityMetricsInputSpec
    output_spec = _QualityMetricsOutputSpec

    def _run_interface(self, runtime):
        import nibabel as nib
        import numpy as np

        from bids_enhance.image.mask import head_mask
        from bids_enhance.metrics.iqm import compute_iqms, tissue_masks
        from bids_enhance.utils import dump_json

        before = nib.load(self.inputs.in_before).get_fdata(dtype=np.float32)
        after = nib.load(self.inputs.in_after).get_fdata(dtype=np.float32)
        if before.shape != after.shape:
            raise ValueError(f"{self.inputs.in_after}: shape {after.shape} differs from the "
                             f"input's {before.shape}; no-reference metrics need one grid")
        mask = head_mask(before)
        tissues = tissue_masks(before, head_mask=mask, contrast=self.inputs.contrast)
        result = {
            "Before": compute_iqms(before, head_mask=mask, tissues=tissues),
            "After": compute_iqms(after, head_mask=mask, tissues=tissues),
        }
        out_file = Path(runtime.cwd) / "iqms.json"
        out_file.write_text(dump_json(result))
        self._results["out_file"] = str(out_file)
        return runtime
