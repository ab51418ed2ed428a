"""PRI-NLM: a loop reference, filter properties on tiny phantoms, containers, errors, CUDA."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from classical_helpers import make_brain_phantom, noisy_phantom_levels, rmse

from bids_enhance.classical import prinlm
from bids_enhance.classical.prinlm import local_mean, prinlm_tensor
from bids_enhance.degrade import add_gaussian_noise, add_rician_noise

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _reference(y, g, sigma, *, radius, rician, h_factor=1 / 3):
    """Literal PRI-NLM: every offset of the search cube (no symmetry), numpy float64."""
    h = h_factor * sigma
    mu = local_mean(torch.as_tensor(g, dtype=torch.float64)).numpy()
    valid = y > 0 if rician else np.ones(y.shape, bool)
    z = y**2 if rician else y
    num, den = z.copy(), np.ones(y.shape)
    pad = {name: np.pad(a, radius, constant_values=c)
           for name, a, c in (("g", g, 0), ("mu", mu, 0), ("z", z, 0), ("valid", valid, False))}
    for off in itertools.product(range(-radius, radius + 1), repeat=3):
        if off == (0, 0, 0):
            continue
        sl = tuple(slice(radius + o, radius + o + n) for o, n in zip(off, y.shape, strict=True))
        dmu = np.abs(mu - pad["mu"][sl])
        d = 0.5 * (np.maximum((g - pad["g"][sl]) ** 2 / (2 * h * h) - 1, 0)
                   + np.maximum(dmu**2 / (0.5 * h * h) - 1, 0))
        w = np.where((dmu > h) | (d > 10) | ~pad["valid"][sl], 0.0, np.exp(-d))
        num += w * pad["z"][sl]
        den += w
    out = num / den
    if rician:
        out = np.sqrt(np.maximum(out - 2 * sigma**2, 0)) * valid
    return out


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_matches_loop_reference(rng, noise_model):
    clean = np.zeros((13, 12, 11))
    clean[2:11, 2:10, 2:9] = 1.0
    clean[5:8, 4:8, 4:7] = 0.5
    sigma = 0.1
    noisy = np.hypot(clean + sigma * rng.standard_normal(clean.shape),
                     sigma * rng.standard_normal(clean.shape)) * (clean > 0)
    guide = clean + 0.02 * rng.standard_normal(clean.shape)
    rician = noise_model == "rician"
    expected = _reference(noisy, guide, sigma, radius=2, rician=rician)
    out = prinlm(noisy, sigma=sigma, guide=guide, noise_model=noise_model, search_radius=2)
    np.testing.assert_allclose(out, expected, atol=2e-6)
    # tiny z-chunks and sub-blocks exercise the halo and the flat offset bookkeeping
    x = torch.as_tensor(noisy, dtype=torch.float32)
    small = prinlm_tensor(x, sigma=sigma, guide=torch.as_tensor(guide, dtype=torch.float32),
                          noise_model=noise_model, search_radius=2, memory_budget_gb=1e-6,
                          sub_block=97)
    np.testing.assert_allclose(small.numpy(), expected, atol=2e-6)


def test_constant_image_stays_constant():
    vol = np.full((10, 9, 8), 40.0, np.float32)
    np.testing.assert_allclose(prinlm(vol, sigma=3.0, noise_model="gaussian"), 40.0, rtol=1e-5)


def test_rician_flat_region_level_and_bias(rng):
    a, sigma = 2.0, 1.0  # SNR 2: magnitude mean biased high by ~14 %
    noisy = add_rician_noise(np.full((20, 20, 20), a, np.float32), sigma=sigma, rng=rng)
    assert noisy.mean() > 1.1 * a
    out = prinlm(noisy, sigma=sigma)
    assert np.ptp(out[3:-3, 3:-3, 3:-3]) < 0.5 * sigma          # stays flat
    assert out.mean() == pytest.approx(a, rel=0.05)             # at the right level


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_noise_falls_on_phantom(brain_phantom, noise_model):
    for level, noisy, head in noisy_phantom_levels(brain_phantom, noise_model):
        out = prinlm(noisy, sigma=level, noise_model=noise_model)
        assert rmse(out, brain_phantom, head) < rmse(noisy, brain_phantom, head) / 1.6


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_step_edge_stays_sharp(rng, noise_model):
    vol = np.full((20, 20, 24), 20.0, np.float32)
    vol[:, :, 12:] = 100.0
    add = add_rician_noise if noise_model == "rician" else add_gaussian_noise
    out = prinlm(add(vol, sigma=4.0, rng=rng), sigma=4.0, noise_model=noise_model)
    profile = out[4:-4, 4:-4].mean(axis=(0, 1))
    lo, hi = profile[:8].mean(), profile[-8:].mean()
    rel = (profile - lo) / (hi - lo)
    assert np.argmax(rel >= 0.9) - np.argmax(rel >= 0.1) <= 2


def test_zero_background_stays_zero(rng):
    ph = make_brain_phantom((24, 24, 24))
    noisy = add_rician_noise(ph, sigma=0.05, rng=rng) * (ph > 0)
    out = prinlm(noisy, sigma=0.05)
    assert (out >= 0).all() and not out[noisy == 0].any()


def test_containers_dtypes_determinism():
    ph = make_brain_phantom((16, 16, 16))
    vol = (ph * 1000).astype(np.uint16)
    out = prinlm(vol, sigma=20.0)
    assert isinstance(out, np.ndarray) and out.dtype == np.float32 and out.shape == vol.shape
    t = torch.as_tensor(ph, dtype=torch.float64)
    a, b = prinlm(t, sigma=0.03), prinlm(t, sigma=0.03)
    assert isinstance(a, torch.Tensor) and a.dtype == torch.float64
    assert torch.equal(a, b)
    np.testing.assert_array_equal(prinlm(ph, sigma=0), ph)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"volume": np.ones((8, 3, 8))}, "at least 4"),
     ({"sigma": float("nan")}, "sigma"),
     ({"noise_model": "gauss"}, "did you mean 'gaussian'"),
     ({"search_radius": 0}, "search_radius"),
     ({"h_factor": -1}, "h_factor"),
     ({"guide": np.ones((8, 8, 7))}, "guide must have the shape"),
     ({"volume": np.ones((8, 8))}, "3D")],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"volume": np.ones((8, 8, 8)), "sigma": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        prinlm(args.pop("volume"), **args)


def test_cuda_request_without_cuda_fails_with_hint():
    if torch.cuda.is_available():
        pytest.skip("CUDA is available here")
    with pytest.raises(RuntimeError, match="CUDA"):
        prinlm(np.ones((8, 8, 8)), sigma=1.0, device="cuda")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_cpu_and_cuda_agree(noise_model):
    ph = make_brain_phantom((32, 32, 32))
    add = add_rician_noise if noise_model == "rician" else add_gaussian_noise
    noisy = add(ph, sigma=0.05, rng=np.random.default_rng(3)) * (ph > 0)
    cpu = prinlm(noisy, sigma=0.05, noise_model=noise_model)
    gpu = prinlm(torch.as_tensor(noisy, device="cuda"), sigma=0.05, noise_model=noise_model,
                 device="cuda")
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, atol=1e-4)
