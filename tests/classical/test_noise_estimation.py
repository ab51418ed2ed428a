"""Noise estimators: accuracy on structured phantoms, Rician correction, arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from classical_helpers import make_brain_phantom

from bids_enhance.classical import estimate_noise_pseudo_residual, estimate_noise_sigma
from bids_enhance.classical.noise import koay_correction, rician_xi
from bids_enhance.degrade import add_gaussian_noise, add_rician_noise

ESTIMATORS = [estimate_noise_sigma, estimate_noise_pseudo_residual]


@pytest.mark.parametrize("estimator", ESTIMATORS)
@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_within_15_percent_on_phantoms(estimator, noise_model):
    add = add_rician_noise if noise_model == "rician" else add_gaussian_noise
    for seed, zero_bg in ((0, True), (1, False)):
        phantom = make_brain_phantom((48, 48, 48), seed=seed, zero_background=zero_bg)
        for level in (0.02, 0.05, 0.09):
            noisy = add(phantom, sigma=level, rng=np.random.default_rng(seed + 10))
            est = estimator(noisy, noise_model=noise_model)
            assert est == pytest.approx(level, rel=0.15), (seed, level, est)


def test_scale_invariant_and_containers():
    phantom = make_brain_phantom((32, 32, 32))
    noisy = add_rician_noise(phantom, sigma=0.05, rng=np.random.default_rng(0))
    base = estimate_noise_sigma(noisy)
    assert estimate_noise_sigma(noisy * 1000.0) == pytest.approx(1000.0 * base, rel=1e-6)
    assert estimate_noise_sigma(torch.as_tensor(noisy)) == pytest.approx(base, rel=1e-6)
    as_int = np.round(noisy * 1000).astype(np.int16)
    assert estimate_noise_sigma(as_int) == pytest.approx(1000 * base, rel=0.03)
    assert isinstance(base, float)


def test_mask_restricts_the_object():
    phantom = make_brain_phantom((32, 32, 32))
    noisy = add_gaussian_noise(phantom, sigma=0.04, rng=np.random.default_rng(1))
    mask = phantom > 0.5
    for estimator in ESTIMATORS:
        assert estimator(noisy, noise_model="gaussian", mask=mask) == pytest.approx(0.04, rel=0.15)
    with pytest.raises(ValueError, match="mask must have"):
        estimate_noise_sigma(noisy, mask=mask[:-1])


def test_constant_volume_gives_zero():
    assert estimate_noise_sigma(np.full((16, 16, 16), 5.0)) == 0.0
    assert estimate_noise_pseudo_residual(np.zeros((16, 16, 16))) == 0.0


def test_rician_xi_limits():
    assert rician_xi(0.0) == pytest.approx(2 - math.pi / 2)
    assert rician_xi(50.0) == pytest.approx(1.0, abs=1e-3)
    assert np.all(np.diff(rician_xi(np.linspace(0, 10, 50))) > 0)


@pytest.mark.parametrize("snr", [1.5, 3.0, 20.0])
def test_koay_correction_recovers_sigma(snr):
    rng = np.random.default_rng(7)
    sigma = 2.0
    mag = np.hypot(snr * sigma + sigma * rng.standard_normal(400_000),
                   sigma * rng.standard_normal(400_000))
    est = koay_correction(float(mag.mean()), float(mag.std()))
    assert est == pytest.approx(sigma, rel=0.02)
    if snr < 2:
        assert mag.std() < 0.9 * sigma  # the uncorrected magnitude std is clearly biased


@pytest.mark.parametrize(
    ("volume", "kwargs", "match"),
    [(np.ones((3, 8, 8)), {}, "at least 4"), (np.ones((8, 8)), {}, "3D"),
     (np.full((8, 8, 8), np.nan), {}, "finite"),
     (np.ones((8, 8, 8)), {"noise_model": "ricean"}, "did you mean 'rician'")],
)
def test_bad_arguments_raise(volume, kwargs, match):
    for estimator in ESTIMATORS:
        with pytest.raises(ValueError, match=match):
            estimator(volume, **kwargs)
