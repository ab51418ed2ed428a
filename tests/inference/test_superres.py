"""x2 geometry: the super-resolved grid covers the input's field of view, landmarks stay put."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bids_enhance.degrade import downsample, lowres_affine
from bids_enhance.inference import hr_to_lr_coordinates, superresolve, upsample_baseline
from bids_enhance.metrics.quality import psnr
from tests.inference.conftest import (
    TrilinearStub,
    blob,
    smooth_volume,
    tiny_generator,
    world_centre_of_mass,
)

HR_SHAPE = (24, 26, 22)
CENTRE = (11.3, 12.7, 10.4)


def test_superresolved_landmark_keeps_its_world_position(oblique_affine):
    hr = blob(HR_SHAPE, CENTRE)
    lr, lr_affine = downsample(hr, oblique_affine, method="box")
    report = {}
    out, out_affine = superresolve(TrilinearStub(), lr, lr_affine, method="box", halo=2,
                                   report=report)
    assert out.shape == HR_SHAPE and report["method"] == "box"
    np.testing.assert_allclose(out_affine, oblique_affine, atol=1e-12)
    truth = world_centre_of_mass(hr, oblique_affine)
    np.testing.assert_allclose(world_centre_of_mass(out, out_affine), truth, atol=1e-3)
    # the same output on a grid without the half-voxel offset is ~0.5 HR voxel off
    naive = lr_affine @ np.diag([0.5, 0.5, 0.5, 1.0])
    assert np.linalg.norm(world_centre_of_mass(out, naive) - truth) > 0.3


def test_superresolve_in_patches_keeps_geometry(oblique_affine):
    hr = blob(HR_SHAPE, CENTRE)
    lr, lr_affine = downsample(hr, oblique_affine, method="box")
    whole, _ = superresolve(TrilinearStub(), lr, lr_affine, halo=2)
    patches, _ = superresolve(TrilinearStub(), lr, lr_affine, halo=2, patch_size=5)
    np.testing.assert_allclose(patches, whole, atol=1e-6)


@pytest.mark.parametrize("method", ["box", "kspace", "nearest"])
@pytest.mark.parametrize("kind", ["trilinear", "cubic", "kspace"])
def test_baselines_keep_landmarks(method, kind, oblique_affine):
    hr = blob(HR_SHAPE, CENTRE)
    lr, lr_affine = downsample(hr, oblique_affine, method=method)
    up, up_affine = upsample_baseline(lr, lr_affine, kind=kind, method=method)
    assert up.shape == HR_SHAPE and up.dtype == np.float32
    np.testing.assert_allclose(up_affine, oblique_affine, atol=1e-12)
    truth = world_centre_of_mass(hr, oblique_affine)
    np.testing.assert_allclose(world_centre_of_mass(up, up_affine), truth, atol=0.02)


def test_cubic_is_the_prefiltered_b_spline_at_the_exact_coordinates():
    lr = smooth_volume((7, 8, 9), seed=2, sigma=0.7)
    up, _ = upsample_baseline(lr, np.eye(4), kind="cubic", method="box")
    factor, offset = hr_to_lr_coordinates("box")
    assert factor.tolist() == [2, 2, 2] and offset.tolist() == [0.5, 0.5, 0.5]
    coords = np.meshgrid(*[(np.arange(2 * n) - 0.5) / 2 for n in lr.shape], indexing="ij")
    expected = ndimage.map_coordinates(lr.astype(np.float64), coords, order=3, mode="reflect",
                                       prefilter=True)
    np.testing.assert_allclose(up, expected, atol=1e-6)


def test_half_voxel_geometry_is_worth_decibels():
    hr = smooth_volume((40, 40, 40), seed=8, sigma=2.0)
    lr, _ = downsample(hr, np.eye(4), method="box")
    right, _ = upsample_baseline(lr, np.eye(4), kind="cubic", method="box")
    wrong, _ = upsample_baseline(lr, np.eye(4), kind="cubic", method="nearest")  # no offset
    linear, _ = upsample_baseline(lr, np.eye(4), kind="trilinear", method="box")
    inner = (slice(4, -4),) * 3
    gains = [psnr(hr[inner], x[inner], data_range=1.0) for x in (right, wrong, linear)]
    assert gains[0] > gains[1] + 3.0 and gains[0] > gains[2]


def test_kspace_baseline_inverts_kspace_truncation():
    """Odd LR sizes have no unpaired Nyquist bin: truncating the zero-filled image gives the
    input back, and the interpolant passes through the LR samples (HR index 2m)."""
    lr = smooth_volume((9, 11, 7), seed=3, sigma=0.8)
    hr, _ = upsample_baseline(lr, np.eye(4), kind="kspace", method="kspace")
    again, _ = downsample(hr, np.eye(4), method="kspace")
    np.testing.assert_allclose(again, lr, atol=1e-6)
    np.testing.assert_allclose(hr[::2, ::2, ::2], lr, atol=1e-6)


def test_thick_slices_upsample_one_axis():
    hr = blob((12, 14, 20), (5.5, 6.2, 9.7))
    affine = np.diag([1.0, 1.0, 0.8, 1.0])
    lr, lr_affine = downsample(hr, affine, method="thick", axis=2)
    np.testing.assert_allclose(lr_affine, lowres_affine(affine, method="thick", axis=2))
    up, up_affine = upsample_baseline(lr, lr_affine, kind="cubic", method="thick", axis=2)
    assert up.shape == (12, 14, 20)
    np.testing.assert_allclose(up_affine, affine, atol=1e-12)
    np.testing.assert_allclose(world_centre_of_mass(up, up_affine),
                               world_centre_of_mass(hr, affine), atol=0.02)


def test_superresolve_refuses_what_it_cannot_invert():
    lr = np.zeros((6, 6, 6), np.float32)
    with pytest.raises(ValueError, match="thick"):
        superresolve(TrilinearStub(), lr, np.eye(4), method="thick")
    with pytest.raises(ValueError, match="x2 model"):
        superresolve(tiny_generator(scale=1), lr, np.eye(4))
    with pytest.raises(ValueError, match="4x4"):
        superresolve(TrilinearStub(), lr, np.eye(3))
    with pytest.raises(ValueError, match="kind must be one of"):
        upsample_baseline(lr, np.eye(4), kind="sinc")
