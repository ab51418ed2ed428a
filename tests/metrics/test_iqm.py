from __future__ import annotations

import math

import numpy as np
import pytest

from bids_enhance.degrade import add_rician_noise
from bids_enhance.metrics.iqm import (
    DIETRICH_FACTOR,
    compute_iqms,
    efc,
    fber,
    tissue_masks,
)

LABELS = {"csf": 1, "gm": 2, "wm": 3}
T1W = {1: 0.25, 2: 0.55, 3: 0.9, 4: 0.08, 5: 0.7}  # csf, gm, wm, skull, scalp


def _phantom(n=48, *, scalp=True, intensities=T1W):
    """Concentric ellipsoids: WM core, GM shell, CSF shell (+ dark skull and bright scalp).

    Returns the clean image (zero background) and the label volume (0 = background).
    """
    grid = np.indices((n, n, n), dtype=np.float32) - (n - 1) / 2
    r = np.sqrt(grid[0] ** 2 + (grid[1] / 0.85) ** 2 + (grid[2] / 0.95) ** 2)
    big = n * 0.45
    shells = [(big, 5), (0.88 * big, 4), (0.76 * big, 1), (0.56 * big, 2), (0.36 * big, 3)]
    if not scalp:
        shells = [(0.95 * big, 1), (0.70 * big, 2), (0.45 * big, 3)]
    labels = np.zeros((n, n, n), np.uint8)
    for radius, label in shells:
        labels[r <= radius] = label
    vol = np.zeros((n, n, n), np.float32)
    for label, value in intensities.items():
        vol[labels == label] = value
    return vol, labels


@pytest.mark.parametrize("contrast, intensities", [
    ("T1w", {1: 0.25, 2: 0.55, 3: 0.9}),
    ("T2w", {1: 0.9, 2: 0.55, 3: 0.3}),
    ("FLAIR", {1: 0.1, 2: 0.7, 3: 0.45}),
])
def test_tissue_masks_recover_three_classes(contrast, intensities, rng):
    vol, labels = _phantom(scalp=False, intensities=intensities)
    noisy = add_rician_noise(vol, sigma=0.02, rng=rng)
    masks = tissue_masks(noisy, head_mask=labels > 0, contrast=contrast)
    assert {"csf", "gm", "wm", "air"} <= set(masks)
    for name, label in LABELS.items():
        mask = masks[name]
        assert mask.dtype == bool and mask.any()
        assert np.mean(labels[mask] == label) > 0.98, name  # right class
        assert mask.sum() > 0.3 * (labels == label).sum(), name  # not just a speck
    assert masks["air"].any() and not (masks["air"] & (labels > 0)).any()


def test_tissue_masks_rejects_unknown_contrast():
    vol, labels = _phantom(n=24, scalp=False)
    with pytest.raises(ValueError, match="contrast"):
        tissue_masks(vol, head_mask=labels > 0, contrast="DWI")


def test_snr_rises_and_cjv_falls_when_noise_is_reduced(rng):
    vol, _ = _phantom()
    noisy = add_rician_noise(vol, sigma=0.06, rng=rng)
    cleaner = add_rician_noise(vol, sigma=0.02, rng=rng)
    masks = tissue_masks(noisy)  # measured on the same masks, as before/after denoising
    before = compute_iqms(noisy, tissues=masks)
    after = compute_iqms(cleaner, tissues=masks)
    assert after["snr_total"] > before["snr_total"]
    assert after["snr_wm"] > before["snr_wm"]
    assert after["snr_dietrich"] > before["snr_dietrich"]
    assert after["cnr"] > before["cnr"]
    assert after["cjv"] < before["cjv"]
    assert after["n_wm"] == before["n_wm"]  # same masks


def test_dietrich_snr_estimates_signal_over_sigma(rng):
    vol, labels = _phantom()
    sigma = 0.03
    noisy = add_rician_noise(vol, sigma=sigma, rng=rng)
    iqms = compute_iqms(noisy)
    # WM at 0.9 with Rician sigma 0.03: median ~ 0.9, and the air MAD of a Rayleigh(sigma) is
    # ~0.664 sigma, close to its standard deviation 0.655 sigma that the Dietrich factor assumes.
    assert iqms["snrd_wm"] == pytest.approx(0.9 / sigma, rel=0.05)
    assert iqms["summary_bg_mad"] == pytest.approx(0.664 * sigma, rel=0.05)
    assert math.isfinite(iqms["fber"]) and iqms["fber"] > 1
    assert 0 < iqms["efc"] < 1
    assert iqms["n_air"] >= 1000 and iqms["n_frame"] == 0


def test_zeroed_background_gives_nan_dietrich_snr():
    vol, labels = _phantom()
    noisy = vol + np.where(labels > 0, 0.01 * np.sin(np.arange(vol.size)).reshape(vol.shape), 0)
    iqms = compute_iqms(noisy.astype(np.float32))
    assert math.isnan(iqms["snr_dietrich"]) and math.isnan(iqms["snrd_wm"])
    assert iqms["n_air"] == 0 and iqms["n_frame"] > 0
    assert math.isnan(iqms["fber"])  # the whole background is the zeroed frame
    assert math.isfinite(iqms["snr_total"]) and math.isfinite(iqms["cnr"])


def test_fber_inf_when_background_energy_is_zero():
    vol = np.zeros((8, 8, 8))
    vol[2:6, 2:6, 2:6] = 3.0
    head = vol > 0
    assert fber(vol, head_mask=head) == float("inf")
    vol[~head] = 1.0
    assert fber(vol, head_mask=head) == pytest.approx(9.0)
    assert math.isnan(fber(vol, head_mask=head, frame_mask=~head))


def test_efc_matches_hand_computation():
    x = np.arange(1.0, 9.0).reshape(2, 2, 2)
    values = np.arange(1.0, 9.0)
    b = math.sqrt(sum(v * v for v in values))
    entropy = -sum((v / b) * math.log(v / b) for v in values)
    n = 8
    e_max = -n * (1 / math.sqrt(n)) * math.log(1 / math.sqrt(n))
    assert efc(x) == pytest.approx(entropy / e_max, rel=1e-12)


def test_efc_bounds():
    assert efc(np.full((4, 4, 4), 7.0)) == pytest.approx(1.0)
    spike = np.zeros((4, 4, 4))
    spike[1, 2, 3] = 5.0
    assert efc(spike) == pytest.approx(0.0, abs=1e-12)
    frame = np.zeros((4, 4, 4), bool)
    frame[0] = True
    assert efc(np.full((4, 4, 4), 7.0), frame_mask=frame) == pytest.approx(1.0)


def test_dietrich_factor():
    assert DIETRICH_FACTOR == pytest.approx(0.6551364, abs=1e-7)


def test_compute_iqms_input_checks():
    vol, labels = _phantom(n=24, scalp=False)
    masks = tissue_masks(vol, head_mask=labels > 0)
    with pytest.raises(ValueError, match="3D"):
        compute_iqms(vol[0], tissues=masks)
    with pytest.raises(ValueError, match="tissues\\['wm'\\]"):
        compute_iqms(vol, tissues={**masks, "wm": masks["wm"][:-1]})
    with pytest.raises(ValueError, match="tissues\\['gm'\\]"):
        compute_iqms(vol, tissues={**masks, "gm": np.zeros_like(masks["gm"])})
    with pytest.raises(ValueError, match="tissues lacks"):
        compute_iqms(vol, tissues={"csf": masks["csf"]})
    with pytest.raises(ValueError, match="head_mask"):
        compute_iqms(vol, head_mask=np.zeros(vol.shape, bool), tissues=masks)
