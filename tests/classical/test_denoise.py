"""The ``denoise`` dispatcher: provenance record, σ handling, argument errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from classical_helpers import make_brain_phantom

from bids_enhance.classical import denoise, estimate_noise_sigma, odct3d
from bids_enhance.degrade import add_rician_noise


@pytest.fixture(scope="module")
def noisy():
    phantom = make_brain_phantom((24, 24, 24))
    return add_rician_noise(phantom, sigma=0.05, rng=np.random.default_rng(2)) * (phantom > 0)


def test_default_method_is_odct3d_with_estimated_sigma(noisy):
    out, info = denoise(noisy)
    assert info["method"] == "odct3d" and info["sigma_estimator"] == "coupe2010"
    assert info["parameters"] == {"memory_budget_gb": 0.5}
    np.testing.assert_array_equal(out, odct3d(noisy, sigma=info["sigma"]))


def test_prinlm_estimates_sigma(noisy):
    out, info = denoise(noisy, method="prinlm")
    assert out.shape == noisy.shape and out.dtype == np.float32
    assert set(info) == {"method", "noise_model", "sigma", "sigma_estimator", "parameters",
                         "device", "elapsed_s"}
    assert info["method"] == "prinlm" and info["sigma_estimator"] == "coupe2010"
    assert info["sigma"] == pytest.approx(estimate_noise_sigma(noisy))
    assert info["parameters"]["search_radius"] == 3 and info["parameters"]["guide"] == "odct3d"
    assert info["device"] == "cpu" and info["elapsed_s"] >= 0
    json.dumps(info)


def test_user_sigma_and_params_are_recorded(noisy):
    out, info = denoise(torch.as_tensor(noisy), method="ODCT3D", sigma=0.05)
    assert isinstance(out, torch.Tensor)
    assert info["method"] == "odct3d" and info["sigma_estimator"] == "user"
    np.testing.assert_array_equal(out.numpy(), odct3d(noisy, sigma=0.05))
    _, info = denoise(noisy, method="prinlm", sigma=0.05, search_radius=2, h_factor=0.5)
    assert info["parameters"]["search_radius"] == 2 and info["parameters"]["h_factor"] == 0.5


def test_sanlm_is_dispatched_with_estimated_sigma(noisy):
    out, info = denoise(noisy, method="sanlm", search_radius=2)
    assert out.shape == noisy.shape
    assert info["sigma_estimator"] == "coupe2010" and isinstance(info["sigma"], float)
    assert info["parameters"] == {"search_radius": 2, "patch_radius": 1}


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [({"method": "pri-nlm"}, ValueError, "did you mean 'prinlm'"),
     ({"noise_model": "rayleigh"}, ValueError, "noise_model"),
     ({"sigma": -0.1}, ValueError, "sigma"),
     ({"method": "prinlm", "radius": 2}, TypeError, "accepted: search_radius"),
     ({"device": "tpu"}, ValueError, "device")],
)
def test_bad_arguments_raise(noisy, kwargs, error, match):
    with pytest.raises(error, match=match):
        denoise(noisy, **kwargs)
