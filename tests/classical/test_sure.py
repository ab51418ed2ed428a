"""Stein's unbiased risk estimate (bids_enhance.classical.sure): the Monte-Carlo divergence of a
black-box denoiser, SURE of its error, and the SURE-optimal average of two denoisers."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from bids_enhance.classical.sure import (
    SureBlend,
    mc_divergence,
    sure_blend,
    sure_blend_weight,
    sure_mse,
)


def _scene(shape=(40, 40, 40), sigma=0.1, seed=3):
    rng = np.random.default_rng(seed)
    clean = ndimage.gaussian_filter(rng.random(shape), 3.0).astype(np.float32)
    clean = (clean - clean.min()) / np.ptp(clean)
    noisy = (clean + sigma * rng.standard_normal(shape)).astype(np.float32)
    return clean, noisy, sigma


def _smooth(width):
    return lambda v: ndimage.gaussian_filter(v, width, mode="wrap").astype(np.float32)


def test_divergence_of_a_linear_filter_is_its_trace():
    # a circular Gaussian filter's divergence is N times its central tap
    _, noisy, sigma = _scene()
    f = _smooth(1.0)
    impulse = np.zeros(noisy.shape, np.float32)
    impulse[20, 20, 20] = 1.0
    trace = noisy.size * float(f(impulse)[20, 20, 20])
    div = mc_divergence(f, noisy, f(noisy), sigma=sigma)
    assert div == pytest.approx(trace, rel=0.03)
    mask = np.zeros(noisy.shape, bool)
    mask[:20] = True  # the sum runs over the mask only
    assert mc_divergence(f, noisy, f(noisy), sigma=sigma, mask=mask) == pytest.approx(
        trace / 2, rel=0.05)


@pytest.mark.parametrize("width", [0.6, 1.0, 2.0])
def test_sure_estimates_the_error_without_the_clean_image(width):
    clean, noisy, sigma = _scene()
    f = _smooth(width)
    out = f(noisy)
    true_mse = float(((out - clean) ** 2).mean())
    est = sure_mse(noisy, out, mc_divergence(f, noisy, out, sigma=sigma), sigma=sigma)
    assert est == pytest.approx(true_mse, rel=0.1)


def test_the_blend_weight_is_near_the_best_one_and_never_worse_than_either():
    clean, noisy, sigma = _scene()
    weak, strong = _smooth(0.5), _smooth(2.5)
    blend = sure_blend(weak, strong, [(noisy, None)], sigma=sigma, region="all")
    assert isinstance(blend, SureBlend) and 0.0 < blend.weight < 1.0
    assert blend.rmse_blend <= min(blend.rmse_first, blend.rmse_second) + 1e-9
    grid = np.linspace(0, 1, 101)
    errors = [float((((1 - w) * weak(noisy) + w * strong(noisy) - clean) ** 2).mean())
              for w in grid]
    best = grid[int(np.argmin(errors))]
    assert blend.weight == pytest.approx(best, abs=0.1)
    assert blend.voxels == noisy.size and blend.to_dict()["region"] == "all"


def test_the_weight_is_clipped_and_zero_for_identical_outputs():
    # y = 0, out_a = 1, out_b = 0: SURE(w) = N w² + 2σ² (w div_a + (1 − w) div_b) + const,
    # minimised at w = −σ² (div_a − div_b) / N, here −1 or 2 before clipping
    y, one, sigma = np.zeros(1000), np.ones(1000), 0.5
    n = y.size
    assert sure_blend_weight(y, one, y, n / sigma**2, 0.0, sigma=sigma) == 0.0
    assert sure_blend_weight(y, one, y, -2 * n / sigma**2, 0.0, sigma=sigma) == 1.0
    assert sure_blend_weight(y, one, y, -0.25 * n / sigma**2, 0.0,
                             sigma=sigma) == pytest.approx(0.25)
    _, noisy, sigma = _scene()
    good = _smooth(1.2)(noisy)
    assert sure_blend_weight(noisy, good, good, 1.0, 1.0, sigma=sigma) == 0.0


def test_pieces_add_up_to_the_whole():
    """SURE summed over two halves (masks) of one volume is SURE over the volume."""
    _, noisy, sigma = _scene()
    weak, strong = _smooth(0.5), _smooth(2.5)
    half = np.zeros(noisy.shape, bool)
    half[:20] = True
    whole = sure_blend(weak, strong, [(noisy, None)], sigma=sigma)
    split = sure_blend(weak, strong, [(noisy, half), (noisy, ~half)], sigma=sigma)
    assert split.voxels == whole.voxels
    assert split.weight == pytest.approx(whole.weight, abs=0.05)
    assert split.rmse_first == pytest.approx(whole.rmse_first, rel=0.02)
    with pytest.raises(ValueError, match="at least one voxel"):
        sure_blend(weak, strong, [], sigma=sigma)


def test_blend_gain_is_the_rmse_ratio_in_db():
    from bids_enhance.classical.sure import SureBlend

    def blend(first, average):
        return SureBlend(weight=0.2, rmse_first=first, rmse_second=5.0, rmse_blend=average,
                         voxels=10, region="")

    assert blend(2.0, 1.0).gain_db == pytest.approx(20 * np.log10(2.0))
    assert blend(3.0, 3.0).gain_db == 0.0
    assert blend(0.0, 0.0).gain_db == 0.0  # a perfect estimate: nothing to gain
