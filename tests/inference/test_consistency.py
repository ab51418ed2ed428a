"""Data consistency: measuring D(sr) − lr and projecting onto D(sr') = lr exactly."""

from __future__ import annotations

import numpy as np
import pytest

from bids_enhance.degrade import downsample
from bids_enhance.inference import (
    consistency_error,
    project_consistent,
    redegrade,
    upsample_baseline,
)
from tests.inference.conftest import smooth_volume

KEYS = {"method", "rmse", "max_abs_error", "mean_error", "relative_rms_error", "robust_max",
        "rmse_percent", "max_percent"}


def _pair(method: str, lr_shape=(8, 9, 10), axis=None, seed=0):
    """An LR image made by ``method`` and an imperfect x2 estimate of it (cubic + noise)."""
    full = tuple(2 * n for n in lr_shape)
    if method == "thick":
        full = tuple(2 * n if a == axis else n for a, n in enumerate(lr_shape))
    hr = 100.0 * smooth_volume(full, seed=seed, sigma=1.2)
    lr, _ = downsample(hr, np.eye(4), method=method, axis=axis)
    sr, _ = upsample_baseline(lr, np.eye(4), kind="cubic", method=method, axis=axis)
    sr = sr + np.random.default_rng(seed).normal(0, 2.0, sr.shape).astype(np.float32)
    return sr, lr


@pytest.mark.parametrize("method, axis, lr_shape", [
    ("box", None, (8, 9, 10)), ("kspace", None, (8, 9, 10)), ("kspace", None, (6, 6, 6)),
    ("kspace", None, (7, 9, 5)), ("nearest", None, (8, 9, 10)), ("thick", 1, (8, 9, 10)),
])
def test_projection_makes_the_output_exactly_consistent(method, axis, lr_shape):
    sr, lr = _pair(method, lr_shape, axis)
    before = consistency_error(sr, lr, method=method, axis=axis)
    assert set(before) == KEYS and before["method"] == method and before["rmse_percent"] > 0.1
    projected = project_consistent(sr, lr, method=method, axis=axis)
    assert projected.dtype == np.float32 and projected.shape == sr.shape
    # checked with the very degradation that made the training data
    again = redegrade(projected, method=method, axis=axis)
    np.testing.assert_allclose(again, lr, rtol=0, atol=1e-5 * np.abs(lr).max())
    after = consistency_error(projected, lr, method=method, axis=axis)
    assert after["rmse_percent"] < 1e-4 and after["max_percent"] < 1e-3
    # and the projection changes the estimate less than the error it removes allows
    assert np.sqrt(np.mean((projected - sr) ** 2)) < 3 * before["rmse"] + 1e-6


def test_box_projection_is_the_minimum_norm_correction():
    sr, lr = _pair("box")
    projected = project_consistent(sr, lr, method="box")
    other = np.repeat(np.repeat(np.repeat(lr, 2, 0), 2, 1), 2, 2)  # also consistent
    assert redegrade(other).tolist() == lr.tolist()
    assert np.linalg.norm(projected - sr) < np.linalg.norm(other - sr)
    # the correction is constant over each 2×2×2 block (replicated residual)
    delta = (projected.astype(np.float64) - sr).reshape(8, 2, 9, 2, 10, 2)
    assert np.ptp(delta, axis=(1, 3, 5)).max() < 1e-4
    # projecting a consistent image changes nothing
    np.testing.assert_allclose(project_consistent(projected, lr), projected, atol=1e-5)


def test_errors_are_in_input_units_and_percent_of_robust_max():
    sr, lr = _pair("box", seed=3)
    base = consistency_error(sr, lr)
    scaled = consistency_error(10 * sr, 10 * lr)
    for key in ("rmse", "max_abs_error", "robust_max"):
        assert scaled[key] == pytest.approx(10 * base[key], rel=1e-5)
    for key in ("relative_rms_error", "rmse_percent", "max_percent"):
        assert scaled[key] == pytest.approx(base[key], rel=1e-5)
    assert base["rmse_percent"] == pytest.approx(100 * base["rmse"] / base["robust_max"])
    diff = redegrade(sr).astype(np.float64) - lr
    assert base["max_abs_error"] == pytest.approx(np.abs(diff).max(), rel=1e-6)


def test_shape_mismatch_is_refused():
    sr, lr = _pair("box")
    with pytest.raises(ValueError, match="x2 \\(box\\) image"):
        consistency_error(sr[:-1], lr)
    with pytest.raises(ValueError, match="method must be one of"):
        project_consistent(sr, lr, method="bicubic")
