"""Result images keep the input's transform codes and units (no nipype)."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest

from bids_enhance.image.nifti import denormalised_image, result_image, voxel_sizes


def _input(codes=(2, 4), units=("mm", "sec")):
    affine = np.diag([2.0, 2.0, 3.0, 1.0])
    img = nib.Nifti1Image(np.ones((4, 4, 4), np.int16), affine)
    img.set_sform(affine, codes[0])
    img.set_qform(affine, codes[1])
    img.header.set_xyzt_units(*units)
    img.header["descrip"] = b"scanner"
    return img


@pytest.mark.parametrize("keep_header", [False, True])
def test_result_keeps_codes_and_units_on_its_own_grid(keep_header):
    img = _input()
    affine = np.diag([1.0, 1.0, 1.5, 1.0])
    out = result_image(np.zeros((8, 8, 8), np.float64 if not keep_header else np.float32),
                       affine, img, keep_header=keep_header)
    assert out.get_data_dtype() == np.float32 and out.shape == (8, 8, 8)
    assert int(out.header["sform_code"]) == 2 and int(out.header["qform_code"]) == 4
    assert out.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(out.affine, affine)
    assert (out.header["descrip"].item() == b"scanner") is keep_header


def test_an_input_without_codes_gives_scanner_codes():
    out = result_image(np.zeros((4, 4, 4), np.float32), np.eye(4), _input(codes=(0, 0)))
    assert int(out.header["sform_code"]) == 1 and int(out.header["qform_code"]) == 1


def test_denormalised_image_header_on_and_off_the_reference_grid():
    ref = _input()
    same = nib.Nifti1Image(np.ones((4, 4, 4), np.float32), ref.affine)
    out = denormalised_image(np.full((4, 4, 4), 3.0), same, ref)
    assert out.header["descrip"].item() == b"scanner" and out.get_data_dtype() == np.float32
    fine = nib.Nifti1Image(np.ones((8, 8, 8), np.float32), np.diag([1.0, 1.0, 1.5, 1.0]))
    out = denormalised_image(np.full((8, 8, 8), 3.0), fine, ref)
    assert out.header["descrip"].item() == b"" and out.header.get_xyzt_units() == ("mm", "sec")
    np.testing.assert_allclose(out.affine, fine.affine)


def test_voxel_sizes():
    affine = np.array([[0, 0, 2.0, 0], [1.0, 0, 0, 0], [0, 3.0, 0, 0], [0, 0, 0, 1]])
    assert voxel_sizes(affine) == [1.0, 3.0, 2.0]
