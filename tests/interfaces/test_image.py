"""Image interfaces: de-normalised outputs keep the input's units (no NIFTI_UNIT warning)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_enhance.interfaces.image import DenormalizeIntensity


@pytest.mark.parametrize("shape", [(8, 8, 8), (16, 16, 16)], ids=["same grid", "x2 grid"])
def test_denormalised_image_has_the_references_units(tmp_path, shape):
    reference = nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.eye(4))
    reference.header.set_xyzt_units("mm", "sec")
    nib.save(reference, tmp_path / "ref.nii.gz")
    # what a model writes on the finer grid may carry no units (e.g. a fresh header)
    enhanced = nib.Nifti1Image(np.full(shape, 0.5, np.float32), np.diag([0.5, 0.5, 0.5, 1])
                               if shape[0] == 16 else np.eye(4))
    nib.save(enhanced, tmp_path / "in.nii.gz")
    result = DenormalizeIntensity(in_file=str(tmp_path / "in.nii.gz"), scale=10.0,
                                  reference=str(tmp_path / "ref.nii.gz")).run(cwd=str(tmp_path))
    out = nib.load(result.outputs.out_file)
    assert out.header.get_xyzt_units() == ("mm", "sec")
    assert out.shape == shape and np.allclose(out.get_fdata(), 5.0)
    np.testing.assert_allclose(out.affine, enhanced.affine)
