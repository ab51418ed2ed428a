from __future__ import annotations

import numpy as np
import pytest

from bids_enhance.degrade import add_rician_noise
from bids_enhance.image.mask import frame_mask, head_mask, largest_component


def _ellipsoid_r2(shape, center, radii):
    grid = np.indices(shape, dtype=np.float32)
    return sum(((grid[i] - center[i]) / radii[i]) ** 2 for i in range(3))


def _synthetic_head(n=64, *, cut_by_fov=False):
    """Bright scalp shell > dark skull shell > brain (GM shell, WM core, dark ventricle).

    Returns the image (zero background), the true head mask and the true brain mask.
    """
    center = np.full(3, n / 2 - 0.5)
    if cut_by_fov:  # the bottom of the head leaves the field of view, as the neck does
        center[2] = n * 0.35
    r2 = _ellipsoid_r2((n, n, n), center, (n * 0.40, n * 0.34, n * 0.38))
    vol = np.zeros((n, n, n), np.float32)
    head = r2 <= 1.0
    brain = r2 <= 0.72**2
    vol[head] = 0.7           # scalp
    vol[r2 <= 0.85**2] = 0.05  # skull
    vol[brain] = 0.45         # grey matter
    vol[r2 <= 0.55**2] = 0.8  # white matter
    vol[r2 <= 0.12**2] = 0.2  # ventricle
    return vol, head, brain


def _dice(a, b):
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("cut_by_fov", [False, True])
@pytest.mark.parametrize("background", ["zero", "rician"])
def test_head_mask_recovers_synthetic_head(background, cut_by_fov, rng):
    vol, truth, _ = _synthetic_head(cut_by_fov=cut_by_fov)
    if background == "rician":
        vol = add_rician_noise(vol, sigma=0.05, rng=rng)
    mask = head_mask(vol)
    assert mask.dtype == bool and mask.shape == vol.shape
    assert _dice(mask, truth) > 0.97


def test_head_mask_of_skull_stripped_image_is_the_brain():
    vol, _, brain = _synthetic_head()
    stripped = np.where(brain, vol, 0)
    assert _dice(head_mask(stripped), brain) > 0.97


def test_head_mask_partly_zeroed_background(rng):
    """Defacing-like: part of a noisy background set to 0."""
    vol, truth, _ = _synthetic_head()
    noisy = add_rician_noise(vol, sigma=0.05, rng=rng)
    noisy[:, :12, :] = 0
    truth = truth.copy()
    truth[:, :12, :] = False
    assert _dice(head_mask(noisy), truth) > 0.97


def test_head_mask_is_filled_single_component_and_deterministic(rng):
    vol, _, _ = _synthetic_head()
    noisy = add_rician_noise(vol, sigma=0.05, rng=rng)
    mask = head_mask(noisy)
    np.testing.assert_array_equal(mask, largest_component(mask))
    from scipy import ndimage as ndi

    np.testing.assert_array_equal(mask, ndi.binary_fill_holes(mask))
    np.testing.assert_array_equal(mask, head_mask(noisy.copy()))


def test_head_mask_of_constant_volume_is_empty():
    assert not head_mask(np.ones((8, 8, 8), np.float32)).any()


@pytest.mark.parametrize("shape", [(8, 8), (2, 4, 4, 4)])
def test_head_mask_rejects_non_3d(shape):
    with pytest.raises(ValueError, match="3D"):
        head_mask(np.zeros(shape))


def test_head_mask_rejects_bad_sigma():
    with pytest.raises(ValueError, match="smooth_sigma"):
        head_mask(np.zeros((8, 8, 8)), smooth_sigma=-1)


def test_frame_mask_zero_background_vs_noise(rng):
    vol, truth, _ = _synthetic_head(n=32)
    frame = frame_mask(vol)
    assert frame.any() and not (frame & truth).any()
    assert frame.sum() > 0.9 * (~truth).sum()
    assert not frame_mask(add_rician_noise(vol, sigma=0.05, rng=rng)).any()


def test_largest_component_keeps_the_biggest():
    mask = np.zeros((10, 10, 10), bool)
    mask[0:2, 0:2, 0:2] = True
    mask[5:9, 5:9, 5:9] = True
    out = largest_component(mask)
    assert out.sum() == 64 and not out[0, 0, 0]
