from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.metrics import normalized_root_mse, structural_similarity

from bids_enhance.metrics.quality import (
    evaluate,
    hfen,
    normalise_to_reference,
    nrmse,
    psnr,
    ssim3d,
)


@pytest.fixture
def smooth_volume(rng):
    """A smooth random 3D texture in [~0, ~1], shape (24, 26, 22)."""
    vol = ndi.gaussian_filter(rng.random((24, 26, 22)), 2.0)
    return (vol - vol.min()) / (vol.max() - vol.min())


@pytest.fixture
def sphere_mask():
    grid = np.indices((24, 26, 22)) - np.array([11.5, 12.5, 10.5])[:, None, None, None]
    return (grid**2).sum(0) <= 8.0**2


def test_psnr_identical_is_inf(smooth_volume):
    assert psnr(smooth_volume, smooth_volume) == float("inf")


def test_psnr_matches_hand_computation():
    ref = np.zeros((4, 4, 4))
    test = ref.copy()
    test[0, 0, 0] = 0.5  # MSE = 0.25 / 64
    assert psnr(ref, test) == pytest.approx(10 * np.log10(64 / 0.25))
    assert psnr(ref, test, data_range=2.0) == pytest.approx(10 * np.log10(4 * 64 / 0.25))
    mask = np.zeros_like(ref, bool)
    mask[0, 0, :2] = True  # MSE inside = 0.25 / 2
    assert psnr(ref, test, mask=mask) == pytest.approx(10 * np.log10(2 / 0.25))


def test_ssim_identical_is_one(smooth_volume, sphere_mask):
    assert ssim3d(smooth_volume, smooth_volume) == pytest.approx(1.0)
    assert ssim3d(smooth_volume, smooth_volume, mask=sphere_mask) == pytest.approx(1.0)


def test_ssim_decreases_with_noise(smooth_volume, sphere_mask, rng):
    noise = rng.normal(size=smooth_volume.shape)
    scores = [ssim3d(smooth_volume, smooth_volume + s * noise, mask=sphere_mask)
              for s in (0.01, 0.05, 0.2)]
    assert 1.0 > scores[0] > scores[1] > scores[2]


def test_ssim_matches_skimage_without_mask(smooth_volume, rng):
    test = smooth_volume + 0.05 * rng.normal(size=smooth_volume.shape)
    expected = structural_similarity(smooth_volume, test, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=1.0)
    assert ssim3d(smooth_volume, test, data_range=1.0) == pytest.approx(expected, abs=1e-10)
    expected2 = structural_similarity(smooth_volume, test, gaussian_weights=True, sigma=1.5,
                                      use_sample_covariance=False, data_range=2.0)
    assert ssim3d(smooth_volume, test, data_range=2.0) == pytest.approx(expected2, abs=1e-10)


def test_ssim_full_mask_equals_no_mask(smooth_volume, rng):
    test = smooth_volume + 0.05 * rng.normal(size=smooth_volume.shape)
    full = np.ones(smooth_volume.shape, bool)
    assert ssim3d(smooth_volume, test, mask=full) == pytest.approx(ssim3d(smooth_volume, test))


def test_ssim_invariant_to_outside_of_mask(smooth_volume, sphere_mask, rng):
    test = smooth_volume + 0.05 * rng.normal(size=smooth_volume.shape)
    base = ssim3d(smooth_volume, test, mask=sphere_mask)
    ref2, test2 = smooth_volume.copy(), test.copy()
    ref2[~sphere_mask] = rng.random(int((~sphere_mask).sum())) * 5
    test2[~sphere_mask] = -3.0
    assert ssim3d(ref2, test2, mask=sphere_mask) == pytest.approx(base, abs=1e-12)


def test_ssim_rejects_volume_smaller_than_window():
    with pytest.raises(ValueError, match="window"):
        ssim3d(np.zeros((8, 20, 20)), np.zeros((8, 20, 20)))


def test_nrmse_matches_skimage(smooth_volume, rng):
    test = smooth_volume + 0.05 * rng.normal(size=smooth_volume.shape)
    assert nrmse(smooth_volume, test) == pytest.approx(normalized_root_mse(smooth_volume, test))
    assert nrmse(smooth_volume, smooth_volume) == 0.0


def test_hfen_zero_for_identical_and_grows_with_blur(smooth_volume, rng):
    vol = smooth_volume + 0.1 * rng.random(smooth_volume.shape)  # some fine detail
    assert hfen(vol, vol) == 0.0
    errors = [hfen(vol, ndi.gaussian_filter(vol, s)) for s in (0.5, 1.0, 2.0)]
    assert 0 < errors[0] < errors[1] < errors[2]


def test_normalise_to_reference_scale(rng):
    ref = rng.random((10, 10, 10)) * 200.0
    test = ref + 5.0
    mask = np.zeros(ref.shape, bool)
    mask[2:8, 2:8, 2:8] = True
    ref_n, test_n = normalise_to_reference(ref, test, mask=mask)
    scale = np.percentile(ref[mask], 99.9)
    np.testing.assert_allclose(ref_n, ref / scale)
    np.testing.assert_allclose(test_n, test / scale)
    assert np.percentile(ref_n[mask], 99.9) == pytest.approx(1.0)


def test_normalise_rejects_all_zero_reference():
    with pytest.raises(ValueError, match="ref"):
        normalise_to_reference(np.zeros((4, 4, 4)), np.ones((4, 4, 4)))


@pytest.mark.parametrize("func", [psnr, ssim3d, nrmse, hfen, normalise_to_reference, evaluate])
def test_shape_mismatch_raises(func):
    with pytest.raises(ValueError, match="test"):
        func(np.zeros((12, 12, 12)), np.zeros((12, 12, 13)))


@pytest.mark.parametrize("func", [psnr, ssim3d, nrmse, hfen])
def test_mask_mismatch_and_empty_mask_raise(func):
    vol = np.ones((12, 12, 12))
    with pytest.raises(ValueError, match="mask"):
        func(vol, vol, mask=np.ones((12, 12, 11), bool))
    with pytest.raises(ValueError, match="mask"):
        func(vol, vol, mask=np.zeros((12, 12, 12), bool))


def test_not_3d_raises():
    with pytest.raises(ValueError, match="3D"):
        psnr(np.zeros((4, 4)), np.zeros((4, 4)))


def test_evaluate_protocol_and_thesis(smooth_volume, sphere_mask, rng):
    ref = 300.0 * smooth_volume
    test = ref + 6.0 * rng.normal(size=ref.shape)
    out = evaluate(ref, test, mask=sphere_mask)
    assert set(out) == {"psnr", "ssim", "nrmse", "hfen"}
    ref_n, test_n = normalise_to_reference(ref, test, mask=sphere_mask)
    assert out["psnr"] == pytest.approx(psnr(ref_n, test_n, mask=sphere_mask))
    assert out["ssim"] == pytest.approx(ssim3d(ref_n, test_n, mask=sphere_mask))
    thesis = evaluate(ref, test, mode="thesis")
    data_range = ref.max() - ref.min()
    assert thesis["psnr"] == pytest.approx(psnr(ref, test, data_range=data_range))
    expected = structural_similarity(ref, test, gaussian_weights=True, sigma=1.5,
                                     use_sample_covariance=False, data_range=data_range)
    assert thesis["ssim"] == pytest.approx(expected, abs=1e-10)
    with pytest.raises(ValueError, match="mode"):
        evaluate(ref, test, mode="slices")


def test_evaluate_protocol_without_mask_uses_head_mask(smooth_volume):
    ref = np.pad(100.0 * smooth_volume + 50.0, 6)  # a "head" on a zero background
    out = evaluate(ref, ref.copy())
    assert out == {"psnr": float("inf"), "ssim": pytest.approx(1.0), "nrmse": 0.0, "hfen": 0.0}
