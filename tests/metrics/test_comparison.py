"""compare_to_reference() and iqms_before_after(): the metrics the nodes record (no nipype)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bids_enhance.degrade import simulate
from bids_enhance.metrics import compare_to_reference, evaluate, iqms_before_after
from bids_enhance.metrics.comparison import PROTOCOL
from bids_enhance.utils import dump_json


def _head(shape=(24, 24, 24), seed=0):
    rng = np.random.default_rng(seed)
    grid = np.indices(shape)
    r = np.sqrt(sum((g - s / 2) ** 2 for g, s in zip(grid, shape, strict=True)))
    head = np.where(r < min(shape) * 0.4, 0.8, 0.0) + np.where(r < min(shape) * 0.2, 0.3, 0.0)
    return (head + 0.02 * rng.standard_normal(shape)).clip(0).astype(np.float32)


def test_enhanced_image_and_x2_baselines_are_scored_in_the_head_mask():
    sim = simulate(_head((25, 24, 24)), np.eye(4), preset="sr-box-x2", seed=1)
    enhanced = sim.reference + 0.01  # on the reference's grid
    result = compare_to_reference(sim.reference, enhanced, label="sub-01_T1w.nii.gz",
                                  degraded=sim.degraded, degraded_affine=sim.affine,
                                  baselines=["identity", "trilinear", "cubic", "kspace"])
    assert result["label"] == "sub-01_T1w.nii.gz" and result["protocol"] == PROTOCOL
    assert set(result["enhanced"]) >= {"psnr", "ssim", "nrmse", "hfen"}
    # identity is on the coarse grid of an x2 task: left out, the interpolations are scored
    assert list(result["baselines"]) == ["trilinear", "cubic", "kspace"]
    assert result["baselines"]["cubic"]["psnr"] < result["enhanced"]["psnr"]
    json.loads(dump_json(result))


def test_same_grid_identity_baseline_is_the_degraded_input():
    clean = _head()
    sim = simulate(clean, np.eye(4), preset="noise-rician-6", seed=2)
    result = compare_to_reference(sim.reference, sim.degraded, label="x",
                                  degraded=sim.degraded, degraded_affine=sim.affine,
                                  baselines=["identity"])
    assert result["baselines"]["identity"] == result["enhanced"]
    assert compare_to_reference(sim.reference, sim.degraded, label="x",
                                baselines=["identity"])["baselines"] == {}


def test_a_result_off_the_reference_grid_is_refused():
    with pytest.raises(ValueError, match=r"out.nii.gz: shape \(8, 8, 8\) differs from the "
                                         r"reference's \(9, 8, 8\)"):
        compare_to_reference(np.ones((9, 8, 8)), np.ones((8, 8, 8)), label="x",
                             name="out.nii.gz")
    with pytest.raises(ValueError, match="unknown baseline"):
        compare_to_reference(np.ones((8, 8, 8)), np.ones((8, 8, 8)), label="x",
                             baselines=["bicubic"])


def test_iqms_before_and_after_use_the_masks_of_the_image_before():
    before = _head(seed=3)
    after = before * 1.0
    iqms = iqms_before_after(before, after)
    assert set(iqms) == {"Before", "After"}
    assert iqms["Before"]["n_head"] == iqms["After"]["n_head"]
    assert iqms["Before"]["snr_total"] == pytest.approx(iqms["After"]["snr_total"])
    with pytest.raises(ValueError, match="no-reference metrics need one grid"):
        iqms_before_after(before, before[:-1])


def test_evaluate_is_what_the_comparison_records():
    clean = _head()
    noisy = clean + 0.05
    from bids_enhance.image.mask import head_mask

    result = compare_to_reference(clean, noisy, label="x")
    assert result["enhanced"] == evaluate(clean, noisy, mask=head_mask(clean))
