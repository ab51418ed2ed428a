"""SANLM: property tests on tiny phantoms, a loop reference, containers and argument errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import bids_enhance.classical.sanlm as sanlm_module
from bids_enhance.classical.sanlm import sanlm
from bids_enhance.degrade import add_gaussian_noise, add_rician_noise

FG = (slice(4, -4),) * 3  # interior of a 32^3 phantom, away from the border


def _rmse(a: np.ndarray, b: np.ndarray, where=...) -> float:
    return float(np.sqrt(np.mean((a.astype(np.float64) - b)[where] ** 2)))


def _blobs(shape=(32, 32, 32)) -> np.ndarray:
    """Piecewise-constant phantom: zero background, a box with two tissues and a ball."""
    vol = np.zeros(shape, np.float32)
    vol[3:-3, 3:-3, 3:-3] = 60.0
    vol[3:-3, 3:16, 3:-3] = 100.0
    zz, yy, xx = np.indices(shape)
    vol[(zz - 16) ** 2 + (yy - 20) ** 2 + (xx - 16) ** 2 <= 25] = 30.0
    return vol


# --------------------------------------------------------------------------------------------
# properties
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_constant_image_stays_constant(noise_model):
    vol = np.full((20, 18, 16), 37.5, np.float32)
    out = sanlm(vol, noise_model=noise_model)
    np.testing.assert_allclose(out, 37.5, rtol=1e-6)


def test_all_zero_image_stays_zero():
    out = sanlm(np.zeros((8, 8, 8), np.float32))
    assert not out.any()


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_step_edge_is_kept(rng, noise_model):
    vol = np.full((32, 32, 32), 20.0, np.float32)
    vol[:, :, 16:] = 100.0
    noisy = add_rician_noise(vol, sigma=6.0, rng=rng)
    out = sanlm(noisy, noise_model=noise_model)
    profile = out[4:-4, 4:-4, :].mean(axis=(0, 1))
    lo, hi = profile[4:12].mean(), profile[20:28].mean()
    rise = (profile - lo) / (hi - lo)
    x10 = np.interp(0.1, rise[8:24], np.arange(8, 24))  # rise is monotone around the edge
    x90 = np.interp(0.9, rise[8:24], np.arange(8, 24))
    assert x90 - x10 <= 2.0, f"10-90 % rise over {x90 - x10:.2f} voxels"
    assert hi - lo == pytest.approx(80.0, rel=0.05)


@pytest.mark.parametrize("fraction", [0.03, 0.06, 0.09])
def test_noise_falls_on_phantom(rng, fraction):
    clean = _blobs()
    sigma = fraction * 100.0
    noisy = add_rician_noise(clean, sigma=sigma, rng=rng)
    out = sanlm(noisy)
    fg = clean > 0
    before, after = _rmse(noisy, clean, fg), _rmse(out, clean, fg)
    assert after < 0.6 * before, f"RMSE {before:.2f} -> {after:.2f}"


def test_gaussian_noise_model_reduces_gaussian_noise(rng):
    clean = _blobs() + 50.0  # no zero background: Gaussian noise is signed
    noisy = add_gaussian_noise(clean, sigma=5.0, rng=rng)
    out = sanlm(noisy, noise_model="gaussian")
    assert _rmse(out, clean, FG) < 0.5 * _rmse(noisy, clean, FG)


@pytest.mark.parametrize("sigma_given", [False, True])
def test_rician_bias_is_corrected_at_low_snr(rng, sigma_given):
    level, sigma = 10.0, 5.0  # SNR 2: E[noisy] is ~14 % too high
    noisy = add_rician_noise(np.full((32, 32, 32), level, np.float32), sigma=sigma, rng=rng)
    assert noisy[FG].mean() > 1.1 * level
    out = sanlm(noisy, sigma=sigma if sigma_given else None)
    assert out[FG].mean() == pytest.approx(level, rel=0.04)
    # the Gaussian model (no bias removal) stays biased: the correction is what moves the mean
    assert sanlm(noisy, noise_model="gaussian")[FG].mean() > 1.1 * level


def test_rician_keeps_zero_background_at_zero(rng):
    clean = _blobs()
    noisy = add_rician_noise(clean, sigma=5.0, rng=rng)
    noisy[clean == 0] = 0.0  # a masked (zeroed) background, as in most public T1w images
    out = sanlm(noisy)
    assert not out[clean == 0].any()
    assert (out >= 0).all()


def test_gaussian_model_ignores_sigma(rng):
    noisy = add_rician_noise(_blobs((16, 16, 16)), sigma=5.0, rng=rng)
    np.testing.assert_array_equal(sanlm(noisy, noise_model="gaussian"),
                                  sanlm(noisy, noise_model="gaussian", sigma=3.0))


@pytest.mark.parametrize("factor", [2.0**10, 2.0**-3])
def test_intensity_scale_equivariant(rng, factor):
    # powers of two keep every float32 rounding, hence every candidate decision, unchanged
    noisy = add_rician_noise(_blobs((20, 20, 20)), sigma=6.0, rng=rng)
    np.testing.assert_allclose(sanlm(noisy * factor), factor * sanlm(noisy), rtol=1e-6)


@pytest.mark.parametrize("as_tensor", [False, True])
def test_input_is_not_modified(rng, as_tensor):
    noisy = add_rician_noise(_blobs((16, 16, 16)), sigma=6.0, rng=rng)
    vol = torch.from_numpy(noisy.copy()) if as_tensor else noisy.copy()
    sanlm(vol, noise_model="gaussian")
    sanlm(vol)
    np.testing.assert_array_equal(np.asarray(vol), noisy)


def test_deterministic(rng):
    noisy = add_rician_noise(_blobs((20, 20, 20)), sigma=6.0, rng=rng)
    np.testing.assert_array_equal(sanlm(noisy), sanlm(noisy))


@pytest.mark.parametrize("shape", [(21, 17, 19), (20, 16, 18)])
@pytest.mark.parametrize("layout", ["rows", "batches"])
def test_chunks_and_batches_change_nothing(rng, monkeypatch, shape, layout):
    noisy = add_rician_noise(_blobs(shape), sigma=6.0, rng=rng)
    whole = sanlm(noisy)  # small volume: one chunk, all 49 (δy, δx) offsets of a δz per batch
    plane = (shape[1] + 2) * (shape[2] + 2)  # patch-region voxels of one slice (upper bound)
    if layout == "rows":  # chunks of 3 block rows, 7 offsets per batch
        budget = 2 * 7 * plane * 3
    else:  # one chunk, batches of 3 δy (the last one partial; the zero offset in the middle one)
        budget = 3 * 7 * (shape[0] + 2) * plane
    monkeypatch.setattr(sanlm_module, "_CPU_BATCH_VOXELS", budget)
    nb = tuple((k + 1) // 2 for k in shape)
    rows, dys = sanlm_module._plan(torch.device("cpu"), nb, 7, 1)
    assert (rows, dys) == ((3, 1) if layout == "rows" else (nb[0], 3))
    np.testing.assert_allclose(sanlm(noisy), whole, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_cropping_to_the_foreground_changes_nothing(rng, monkeypatch, noise_model):
    clean = np.zeros((36, 30, 33), np.float32)
    clean[9:25, 7:21, 12:30] = _blobs((16, 14, 18))[:, :, :] + 40.0
    noisy = add_rician_noise(clean, sigma=6.0, rng=rng)
    noisy[clean == 0] = 0.0  # zeroed background: only the box around the head is filtered
    cropped = sanlm(noisy, noise_model=noise_model)
    monkeypatch.setattr(sanlm_module, "_CROP", False)
    whole = sanlm(noisy, noise_model=noise_model)
    np.testing.assert_allclose(cropped, whole, rtol=1e-5, atol=1e-4)


# --------------------------------------------------------------------------------------------
# against a direct loop over blocks and candidates (the method as written in METHODS.md)
# --------------------------------------------------------------------------------------------
def _reference(volume: np.ndarray, *, s: int, p: int, rician: bool, sigma: float | None = None
               ) -> np.ndarray:
    """Blockwise SANLM by explicit loops (float64); Gaussian model, or Rician with known sigma."""
    scale = np.abs(volume).max()
    y = volume.astype(np.float64) / scale
    n = y.shape
    pad = s + p + 1
    yp = np.pad(y, pad, mode="symmetric")
    offs27 = [(a, b, c) for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)]
    core = tuple(slice(1, k - 1) for k in yp.shape)
    nbh = [yp[tuple(slice(1 + o, k - 1 + o) for o, k in zip(off, yp.shape, strict=True))]
           for off in offs27]
    mean = np.zeros_like(yp)
    var = np.zeros_like(yp)
    mean[core] = sum(nbh) / 27
    var[core] = sum((v - mean[core]) ** 2 for v in nbh) / 26
    resid = yp - mean
    z = yp**2 if rician else yp
    inside = np.zeros(yp.shape, bool)
    inside[tuple(slice(pad, pad + k) for k in n)] = True
    valid = inside & (yp > 0) & (mean > 1e-5) & (var > 1e-10)

    def patch(a, c):
        return a[tuple(slice(ci - p, ci + p + 1) for ci in c)]

    acc = np.zeros(n)
    cnt = np.zeros(n)
    search = [(a, b, c) for a in range(-s, s + 1) for b in range(-s, s + 1)
              for c in range(-s, s + 1) if (a, b, c) != (0, 0, 0)]
    for i in range(0, n[0], 2):
        for j in range(0, n[1], 2):
            for k in range(0, n[2], 2):
                c = (i + pad, j + pad, k + pad)
                block = patch(z, c)
                if valid[c]:
                    cands = []
                    for o in search:
                        q = (c[0] + o[0], c[1] + o[1], c[2] + o[2])
                        if not valid[q]:
                            continue
                        if not (0.95 < mean[c] / mean[q] < 1 / 0.95 and 0.5 < var[c] / var[q] < 2):
                            continue
                        dms = np.sum((patch(resid, c) - patch(resid, q)) ** 2)
                        d = np.sum((patch(yp, c) - patch(yp, q)) ** 2)
                        cands.append((q, dms, d))
                    if cands:
                        h = max(min(x[1] for x in cands), 1e-10)
                        ws = [(q, math.exp(-d / h) if d <= 3 * h else 0.0) for q, _, d in cands]
                        w_self = max(w for _, w in ws) or 1.0
                        num = w_self * block + sum(w * patch(z, q) for q, w in ws)
                        block = num / (w_self + sum(w for _, w in ws))
                lo = [ci - pad - p for ci in c]
                for (a, b, cc), v in np.ndenumerate(block):
                    x = (lo[0] + a, lo[1] + b, lo[2] + cc)
                    if all(0 <= xi < ni for xi, ni in zip(x, n, strict=True)):
                        acc[x] += v
                        cnt[x] += 1
    est = acc / cnt
    if rician:
        est = np.sqrt(np.maximum(est - 2 * (sigma / scale) ** 2, 0))
        est[y <= 0] = 0
    return est * scale


@pytest.mark.parametrize(("noise_model", "sigma", "s", "p", "shape"), [
    ("gaussian", None, 2, 1, (9, 8, 7)),
    ("rician", 4.0, 1, 1, (8, 9, 10)),
    ("gaussian", None, 1, 2, (9, 10, 8)),
])
def test_matches_loop_reference(rng, noise_model, sigma, s, p, shape):
    clean = np.zeros(shape, np.float32)
    clean[1:, 2:, :] = 50.0
    clean[4:, :5, 3:] = 80.0
    noisy = add_rician_noise(clean, sigma=4.0, rng=rng)
    noisy[0, 0, :3] = 0.0  # some background voxels
    out = sanlm(noisy, sigma=sigma, noise_model=noise_model, search_radius=s, patch_radius=p)
    ref = _reference(noisy, s=s, p=p, rician=noise_model == "rician", sigma=sigma)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-3)


def test_rician_correction_factor():
    from scipy.special import i0e, i1e

    snr = np.array([0.0, 0.5, 1.0, 2.0, 3.0, 40.0])
    xi = sanlm_module._rician_xi(torch.from_numpy(snr)).numpy()
    q = snr**2 / 4  # Koay & Basser (2006), eq. 18, with exp(-snr^2/2) folded into i0e, i1e
    expected = 2 + snr**2 - math.pi / 8 * ((2 + snr**2) * i0e(q) + snr**2 * i1e(q)) ** 2
    np.testing.assert_allclose(xi, expected, rtol=1e-9)
    assert xi[0] == pytest.approx(2 - math.pi / 2)  # Rayleigh (no signal): 2 - pi/2
    assert np.all(np.diff(xi) > 0) and xi[-1] == pytest.approx(1.0, abs=1e-3)


@pytest.mark.parametrize("radius", [1, 5])
def test_box_sum_matches_scipy(rng, radius):
    from scipy import ndimage

    x = rng.random((9, 14, 12))
    got = sanlm_module._box_same(torch.from_numpy(x), radius).numpy()
    width = 2 * radius + 1
    expected = ndimage.uniform_filter(x, width, mode="constant") * width**3
    np.testing.assert_allclose(got, expected, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------------------------------------
# containers, dtypes, errors
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("dtype", "expected"), [
    (np.float32, np.float32), (np.float64, np.float64), (np.int16, np.float32),
    (np.uint8, np.float32),
])
def test_numpy_dtype_and_shape(rng, dtype, expected):
    vol = (rng.random((12, 10, 9)) * 100 + 10).astype(dtype)
    out = sanlm(vol)
    assert isinstance(out, np.ndarray)
    assert out.shape == vol.shape and out.dtype == expected


@pytest.mark.parametrize(("dtype", "expected"), [
    (torch.float32, torch.float32), (torch.float64, torch.float64), (torch.int32, torch.float32),
])
def test_torch_container_kept(dtype, expected):
    vol = (torch.rand(11, 12, 10, generator=torch.Generator().manual_seed(3)) * 100 + 10).to(dtype)
    out = sanlm(vol)
    assert isinstance(out, torch.Tensor)
    assert out.shape == vol.shape and out.dtype == expected and out.device == vol.device
    np.testing.assert_allclose(out.double().numpy(), sanlm(vol.numpy()).astype(np.float64),
                               rtol=1e-6)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"volume": np.ones((8, 8))}, "3D"),
    ({"volume": np.ones((2, 8, 8, 8))}, "3D"),
    ({"volume": np.ones((2, 8, 8))}, "at least 3 voxels"),
    ({"volume": np.ones((8, 4, 8)), "patch_radius": 2, "search_radius": 1}, "at least 5"),
    ({"volume": np.full((8, 8, 8), np.nan)}, "finite"),
    ({"volume": np.full((8, 8, 8), np.inf)}, "finite"),
    ({"volume": np.ones((8, 8, 8), np.complex64)}, "real"),
    ({"search_radius": 0}, "search_radius"),
    ({"search_radius": 1.5}, "search_radius"),
    ({"search_radius": True}, "search_radius"),
    ({"patch_radius": 0}, "patch_radius"),
    ({"patch_radius": -1}, "patch_radius"),
    ({"noise_model": "rice"}, "did you mean 'rician'"),
    ({"noise_model": None}, "noise_model"),
    ({"sigma": -1.0}, "sigma"),
    ({"sigma": float("nan")}, "sigma"),
])
def test_bad_arguments_raise(kwargs, match):
    kwargs = {"volume": np.ones((8, 8, 8), np.float32), **kwargs}
    with pytest.raises(ValueError, match=match):
        sanlm(kwargs.pop("volume"), **kwargs)


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_cuda_requested_without_cuda_raises():
    with pytest.raises(RuntimeError, match="CUDA"):
        sanlm(np.ones((8, 8, 8), np.float32), device="cuda")


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu(rng):
    noisy = add_rician_noise(_blobs(), sigma=6.0, rng=rng)
    cpu = sanlm(noisy, device="cpu")
    gpu = sanlm(noisy, device="cuda")
    assert isinstance(gpu, np.ndarray)
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-3)
    tensor = sanlm(torch.from_numpy(noisy).cuda(), device="cuda")
    assert tensor.is_cuda
    np.testing.assert_allclose(tensor.cpu().numpy(), cpu, rtol=1e-4, atol=1e-3)
