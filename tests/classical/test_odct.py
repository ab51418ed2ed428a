"""ODCT3D: a loop reference, filter properties on tiny phantoms, containers and errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from classical_helpers import noisy_phantom_levels, rmse

from bids_enhance.classical import odct3d
from bids_enhance.classical.odct import (
    _dct_matrix,
    odct3d_tensor,
    odct3d_wiener,
    rician_mean_inverse,
)
from bids_enhance.degrade import add_gaussian_noise, add_rician_noise


def _reference_pass(noisy, oracle, threshold, wiener=False):
    """Literal ODCT pass: loop over every 4^3 block (stride 1) with a dense DCT; ``wiener``:
    gains o² / (o² + threshold²) of the oracle's coefficients o instead of the hard mask."""
    c = _dct_matrix(4)
    num = np.zeros(noisy.shape)
    den = np.zeros(noisy.shape)
    for z, y, x in itertools.product(*(range(s - 3) for s in noisy.shape)):
        block = (slice(z, z + 4), slice(y, y + 4), slice(x, x + 4))
        if not noisy[block].any():
            continue
        coef = np.einsum("ai,bj,ck,ijk->abc", c, c, c, noisy[block])
        o = np.einsum("ai,bj,ck,ijk->abc", c, c, c, oracle[block])
        keep = o**2 / (o**2 + threshold**2) if wiener else np.abs(o) >= threshold
        weight = 1.0 / (1.0 + (keep**2).sum())
        num[block] += weight * np.einsum("ai,bj,ck,abc->ijk", c, c, c, coef * keep)
        den[block] += weight
    return np.where(den > 0, num / np.maximum(den, 1e-30), 0.0)


@pytest.mark.parametrize("shape", [(9, 8, 7), (12, 13, 11)])
def test_matches_loop_reference_whole_and_chunked(rng, shape):
    vol = np.zeros(shape)
    vol[1:-2, 2:-1, 1:-1] = 1.0 + 0.3 * rng.standard_normal((shape[0] - 3, shape[1] - 3,
                                                               shape[2] - 2))
    vol[0, 0, 0] = 0.5  # isolated voxel next to skipped all-zero blocks
    sigma = 0.1
    expected = _reference_pass(vol, _reference_pass(vol, vol, 2.7 * sigma), sigma)
    np.testing.assert_allclose(odct3d(vol, sigma=sigma, noise_model="gaussian"), expected,
                               atol=2e-6)
    chunked = odct3d_tensor(torch.as_tensor(vol, dtype=torch.float32), sigma=sigma,
                            noise_model="gaussian", memory_budget_gb=1e-6)  # 1-slice chunks
    np.testing.assert_allclose(chunked.numpy(), expected, atol=2e-6)


@pytest.mark.parametrize("shape", [(9, 8, 7), (12, 13, 11)])
def test_wiener_pass_matches_loop_reference_whole_and_chunked(rng, shape):
    vol = np.zeros(shape)
    vol[1:-2, 2:-1, 1:-1] = 1.0 + 0.3 * rng.standard_normal((shape[0] - 3, shape[1] - 3,
                                                               shape[2] - 2))
    sigma = 0.1
    expected = _reference_pass(vol, _reference_pass(vol, vol, 2.7 * sigma), sigma, wiener=True)
    np.testing.assert_allclose(odct3d_wiener(vol, sigma=sigma, noise_model="gaussian"),
                               expected, atol=2e-6)
    chunked = odct3d_tensor(torch.as_tensor(vol, dtype=torch.float32), sigma=sigma,
                            noise_model="gaussian", memory_budget_gb=1e-6, wiener=True)
    np.testing.assert_allclose(chunked.numpy(), expected, atol=2e-6)
    hard = odct3d(vol, sigma=sigma, noise_model="gaussian")
    assert np.abs(expected - hard).max() > 1e-3  # a different second pass, not the same one


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_wiener_pass_beats_the_hard_pass_on_a_textured_phantom(brain_phantom, noise_model):
    """On the test phantom the Wiener pass is closer to the truth than the hard pass at every
    level (not on every image: on the very smooth MNI152 template it is not,
    docs/benchmarks/denoise.md)."""
    for level, noisy, head in noisy_phantom_levels(brain_phantom, noise_model):
        hard = odct3d(noisy, sigma=level, noise_model=noise_model)
        soft = odct3d_wiener(noisy, sigma=level, noise_model=noise_model)
        assert rmse(soft, brain_phantom, head) < rmse(hard, brain_phantom, head)


def test_constant_image_stays_constant():
    vol = np.full((12, 10, 9), 50.0, np.float32)
    np.testing.assert_allclose(odct3d(vol, sigma=2.0, noise_model="gaussian"), 50.0, rtol=1e-5)
    out = odct3d(vol, sigma=2.0, noise_model="rician")
    # noise-free input read as a Rician mean: mapped to sqrt(50² − σ²) to first order
    assert np.ptp(out) < 1e-3 and out.mean() == pytest.approx(math.sqrt(50**2 - 4), rel=1e-3)


def test_smooth_noise_free_image_nearly_unchanged():
    zz, yy, xx = np.indices((24, 24, 24), dtype=np.float64)
    vol = 100 + 30 * np.sin(zz / 7) * np.cos(yy / 9) + 0.5 * xx
    sigma = 2.0
    out = odct3d(vol, sigma=sigma, noise_model="gaussian")
    assert rmse(out, vol) < 0.1 * sigma


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_noise_falls_on_phantom(brain_phantom, noise_model):
    for level, noisy, head in noisy_phantom_levels(brain_phantom, noise_model):
        out = odct3d(noisy, sigma=level, noise_model=noise_model)
        assert rmse(out, brain_phantom, head) < rmse(noisy, brain_phantom, head) / 1.4


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_step_edge_stays_sharp(rng, noise_model):
    vol = np.full((24, 24, 24), 20.0, np.float32)
    vol[:, :, 12:] = 100.0
    add = add_rician_noise if noise_model == "rician" else add_gaussian_noise
    out = odct3d(add(vol, sigma=4.0, rng=rng), sigma=4.0, noise_model=noise_model)
    profile = out[4:-4, 4:-4].mean(axis=(0, 1))
    lo, hi = profile[:8].mean(), profile[-8:].mean()
    rel = (profile - lo) / (hi - lo)
    assert np.argmax(rel >= 0.9) - np.argmax(rel >= 0.1) <= 2


def test_rician_bias_is_corrected(rng):
    a, sigma = 2.0, 1.0  # SNR 2: the magnitude mean is biased high by ~14 %
    vol = np.full((24, 24, 24), a, np.float32)
    noisy = add_rician_noise(vol, sigma=sigma, rng=rng)
    assert noisy.mean() > 1.1 * a
    assert odct3d(noisy, sigma=sigma).mean() == pytest.approx(a, rel=0.05)


def test_rician_zero_stays_zero_and_output_nonnegative(brain_phantom, rng):
    noisy = add_rician_noise(brain_phantom, sigma=0.05, rng=rng)
    noisy[brain_phantom == 0] = 0
    out = odct3d(noisy, sigma=0.05)
    assert (out >= 0).all() and not out[noisy == 0].any()


def test_rician_mean_inverse_roundtrip():
    from scipy.special import i0e, i1e

    amp = np.array([0.0, 0.5, 1.0, 3.0, 10.0, 80.0])
    t = (amp / 2.0) ** 2 / 4  # σ = 2: t = A² / (4σ²)
    mean = 2.0 * math.sqrt(math.pi / 2) * ((1 + 2 * t) * i0e(t) + 2 * t * i1e(t))
    back = rician_mean_inverse(torch.as_tensor(mean, dtype=torch.float32), 2.0).double().numpy()
    np.testing.assert_allclose(back[1:], amp[1:], rtol=2e-3)
    assert back[0] < 0.05
    assert rician_mean_inverse(torch.tensor([0.1]), 2.0).item() == 0.0  # below the noise floor


def test_containers_dtypes_and_determinism(brain_phantom):
    vol16 = (brain_phantom[:16, :16, :16] * 1000).astype(np.int16)
    out = odct3d(vol16, sigma=20.0)
    assert out.dtype == np.float32 and out.shape == vol16.shape
    t64 = torch.as_tensor(brain_phantom[:16, :16, :16], dtype=torch.float64)
    out_t = odct3d(t64, sigma=0.02)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
    np.testing.assert_array_equal(out_t.numpy(), odct3d(t64, sigma=0.02).numpy())
    np.testing.assert_array_equal(odct3d(vol16, sigma=0.0), vol16.astype(np.float32))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"volume": np.zeros((3, 8, 8))}, "at least 4"),
     ({"sigma": -1.0}, "sigma"),
     ({"noise_model": "rice"}, "did you mean 'rician'"),
     ({"volume": np.full((8, 8, 8), np.inf)}, "finite")],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"volume": np.ones((8, 8, 8)), "sigma": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        odct3d(args.pop("volume"), **args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree(brain_phantom):
    noisy = add_rician_noise(brain_phantom, sigma=0.05, rng=np.random.default_rng(5))
    cpu = odct3d(noisy, sigma=0.05)
    gpu = odct3d(torch.as_tensor(noisy, device="cuda"), sigma=0.05, device="cuda")
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, atol=1e-4)
