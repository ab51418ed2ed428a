"""BM-DCT (block-matching collaborative filter): a loop reference, filter properties on tiny
phantoms, containers and errors."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from classical_helpers import noisy_phantom_levels, rmse

from bids_enhance.classical import denoise
from bids_enhance.classical.blockmatch import (
    _block_sums,
    _dct_matrix,
    _spread_blocks,
    blockmatch,
    blockmatch_tensor,
)
from bids_enhance.classical.odct import odct3d_wiener
from bids_enhance.degrade import add_gaussian_noise, add_rician_noise


def _reference_stage(noisy, guide, sigma, k, radius, wiener):
    """Literal stage: every reference block of the stride-3 grid, its k nearest blocks (SSD on
    ``guide``) in the search cube, 3D DCT in the blocks and 1D DCT across them, hard threshold
    (``wiener`` False) or the Wiener gain of ``guide``'s group; weighted overlap-add."""
    c4, ck = _dct_matrix(4), _dct_matrix(k)
    d, h, w = noisy.shape
    num, den = np.zeros(noisy.shape), np.zeros(noisy.shape)

    def block(vol, p):
        return vol[p[0]:p[0] + 4, p[1]:p[1] + 4, p[2]:p[2] + 4]

    for ref in itertools.product(*(range(0, n - 3, 3) for n in noisy.shape)):
        if not block(noisy, ref).any():
            continue
        cands = []
        for off in itertools.product(range(-radius, radius + 1), repeat=3):
            p = tuple(r + o for r, o in zip(ref, off, strict=True))
            if min(p) < 0 or p[0] > d - 4 or p[1] > h - 4 or p[2] > w - 4:
                continue
            dist = -1.0 if off == (0, 0, 0) else np.mean((block(guide, ref) - block(guide, p)) ** 2)
            cands.append((dist, p))
        group = [p for _, p in sorted(cands)[:k]]

        def transform(vol, group=group):
            blocks = np.stack([np.einsum("ai,bj,ck,ijk->abc", c4, c4, c4, block(vol, p))
                               for p in group])
            return np.einsum("gk,kabc->gabc", ck, blocks)

        coef = transform(noisy)
        if wiener:
            pilot = transform(guide)
            gain = pilot**2 / (pilot**2 + sigma**2)
            coef, weight = coef * gain, 1.0 / (gain**2).sum()
        else:
            keep = np.abs(coef) >= 2.7 * sigma
            keep[0, 0, 0, 0] = True
            coef, weight = coef * keep, 1.0 / keep.sum()
        est = np.einsum("gk,gabc->kabc", ck, coef)
        for g, p in enumerate(group):
            sl = (slice(p[0], p[0] + 4), slice(p[1], p[1] + 4), slice(p[2], p[2] + 4))
            num[sl] += weight * np.einsum("ai,bj,ck,abc->ijk", c4, c4, c4, est[g])
            den[sl] += weight
    return np.where(den > 0, num / np.maximum(den, 1e-30), noisy)


def _reference(vol, sigma, k=16, radius=2):
    pads = [(-(n - 4)) % 3 for n in vol.shape]
    padded = np.pad(vol, [(0, p) for p in pads])
    pilot = _reference_stage(padded, padded, sigma, min(8, k), radius, wiener=False)
    out = _reference_stage(padded, pilot, sigma, k, radius, wiener=True)
    return out[: vol.shape[0], : vol.shape[1], : vol.shape[2]]


@pytest.mark.parametrize("shape", [(10, 13, 9), (13, 10, 11)])
def test_matches_loop_reference_whole_and_in_slabs(rng, shape):
    """Both grid cases: an axis already on the stride-3 grid (10, 13) and one padded (9, 11)."""
    vol = 1.0 + 0.3 * rng.standard_normal(shape)
    vol[:2, :2, :2] = 0.0  # an all-zero corner, but no all-zero reference block
    sigma = 0.2
    expected = _reference(vol, sigma, k=16, radius=2)
    out = blockmatch(vol, sigma=sigma, noise_model="gaussian", search_radius=2)
    np.testing.assert_allclose(out, expected, atol=2e-5)
    slabs = blockmatch_tensor(torch.as_tensor(vol, dtype=torch.float32), sigma=sigma,
                              noise_model="gaussian", search_radius=2,
                              memory_budget_gb=1e-7)  # one reference plane and group at a time
    np.testing.assert_allclose(slabs.numpy(), expected, atol=2e-5)


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_noise_falls_and_beats_odct3d_wiener_on_a_textured_phantom(brain_phantom, noise_model):
    """Grouping similar blocks estimates each from several noisy copies: closer to the truth
    than ODCT3D-Wiener (which filters each block alone) at every level of the test phantom."""
    for level, noisy, head in noisy_phantom_levels(brain_phantom, noise_model):
        out = blockmatch(noisy, sigma=level, noise_model=noise_model)
        assert rmse(out, brain_phantom, head) < rmse(noisy, brain_phantom, head) / 1.4
        wiener = odct3d_wiener(noisy, sigma=level, noise_model=noise_model)
        assert rmse(out, brain_phantom, head) < rmse(wiener, brain_phantom, head)


def test_constant_and_smooth_images():
    vol = np.full((13, 10, 10), 50.0, np.float32)
    np.testing.assert_allclose(blockmatch(vol, sigma=2.0, noise_model="gaussian"), 50.0,
                               rtol=1e-5)
    zz, yy, xx = np.indices((22, 22, 22), dtype=np.float64)
    smooth = 100 + 30 * np.sin(zz / 7) * np.cos(yy / 9) + 0.5 * xx
    assert rmse(blockmatch(smooth, sigma=2.0, noise_model="gaussian"), smooth) < 0.1 * 2.0


@pytest.mark.parametrize("noise_model", ["rician", "gaussian"])
def test_step_edge_stays_sharp(rng, noise_model):
    vol = np.full((22, 22, 22), 20.0, np.float32)
    vol[:, :, 11:] = 100.0
    add = add_rician_noise if noise_model == "rician" else add_gaussian_noise
    out = blockmatch(add(vol, sigma=4.0, rng=rng), sigma=4.0, noise_model=noise_model)
    profile = out[4:-4, 4:-4].mean(axis=(0, 1))
    lo, hi = profile[:8].mean(), profile[-8:].mean()
    rel = (profile - lo) / (hi - lo)
    assert np.argmax(rel >= 0.9) - np.argmax(rel >= 0.1) <= 2


def test_rician_bias_is_corrected_and_zero_stays_zero(brain_phantom, rng):
    a, sigma = 2.0, 1.0  # SNR 2: the magnitude mean is biased high by ~14 %
    noisy = add_rician_noise(np.full((22, 22, 22), a, np.float32), sigma=sigma, rng=rng)
    assert noisy.mean() > 1.1 * a
    assert blockmatch(noisy, sigma=sigma).mean() == pytest.approx(a, rel=0.05)
    noisy = add_rician_noise(brain_phantom, sigma=0.05, rng=rng)
    noisy[brain_phantom == 0] = 0
    out = blockmatch(noisy, sigma=0.05)
    assert (out >= 0).all() and not out[noisy == 0].any()


def test_containers_dtypes_determinism_and_the_registry(brain_phantom):
    vol16 = (brain_phantom[:16, :16, :16] * 1000).astype(np.int16)
    out = blockmatch(vol16, sigma=20.0)
    assert out.dtype == np.float32 and out.shape == vol16.shape
    t64 = torch.as_tensor(brain_phantom[:16, :16, :16], dtype=torch.float64)
    out_t = blockmatch(t64, sigma=0.02)
    assert isinstance(out_t, torch.Tensor) and out_t.dtype == torch.float64
    np.testing.assert_array_equal(out_t.numpy(), blockmatch(t64, sigma=0.02).numpy())
    np.testing.assert_array_equal(blockmatch(vol16, sigma=0.0), vol16.astype(np.float32))
    assert not blockmatch(np.zeros((8, 8, 8)), sigma=1.0).any()
    via, info = denoise(vol16, method="blockmatch", sigma=20.0)
    np.testing.assert_array_equal(via, out)
    assert info["parameters"] == {"search_radius": 3, "group_size": 16, "memory_budget_gb": 0.25}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"volume": np.zeros((3, 8, 8))}, "at least 4"),
     ({"sigma": -1.0}, "sigma"),
     ({"noise_model": "rice"}, "did you mean 'rician'"),
     ({"search_radius": 0}, "search_radius"),
     ({"group_size": 1}, "group_size"),
     ({"search_radius": 1, "group_size": 28}, "must not exceed the 27 blocks"),
     ({"memory_budget_gb": 0.0}, "memory_budget_gb"),
     ({"volume": np.full((8, 8, 8), np.inf)}, "finite")],
)
def test_bad_arguments_raise(kwargs, match):
    args = {"volume": np.ones((8, 8, 8)), "sigma": 1.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        blockmatch(args.pop("volume"), **args)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cpu_and_cuda_agree(brain_phantom):
    noisy = add_rician_noise(brain_phantom, sigma=0.05, rng=np.random.default_rng(5))
    cpu = blockmatch(noisy, sigma=0.05)
    gpu = blockmatch(torch.as_tensor(noisy, device="cuda"), sigma=0.05, device="cuda")
    assert gpu.device.type == "cuda"
    np.testing.assert_allclose(gpu.cpu().numpy(), cpu, atol=1e-4)


@pytest.mark.parametrize("shape", [(4, 4, 4), (13, 10, 7), (22, 19, 16)])
def test_block_sums_are_the_block_means_times_64(shape):
    """The block distances, one axis at a time, are avg_pool3d's (4³ blocks, stride 3) × 64."""
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))
    expected = 64 * torch.nn.functional.avg_pool3d(x[None, None], 4, stride=3)[0, 0]
    torch.testing.assert_close(_block_sums(x), expected, rtol=1e-6, atol=1e-6)
    out = torch.full((2, *expected.shape), -1.0)  # into a slice of a larger tensor, no copy
    assert _block_sums(x, out=out[1]).data_ptr() == out[1].data_ptr()
    torch.testing.assert_close(out[1], expected, rtol=1e-6, atol=1e-6)
    assert (out[0] == -1).all()


@pytest.mark.parametrize("radius,budget", [(2, 0.25), (3, 1e-7)])
def test_matching_each_offset_pair_once_gives_the_direct_distances(radius, budget):
    """``_Grid.match`` subtracts once per {δ, −δ} pair and reads the −δ differences from the δ
    ones, moved: the groups are those of the direct computation (each offset's squared
    difference summed over the blocks), bit for bit, in one slab and in many."""
    from bids_enhance.classical._common import cube_offsets
    from bids_enhance.classical.blockmatch import _Grid

    x = torch.rand(16, 13, 19, generator=torch.Generator().manual_seed(4))
    grid = _Grid(x.shape, radius, budget)
    origins, refs = grid.match(x, 6)
    d, h, w = x.shape
    r = radius
    padded = torch.nn.functional.pad(x, (r,) * 6)
    offsets = cube_offsets(r, include_zero=True)
    dist = torch.stack([_block_sums((x - padded[r + a: r + a + d, r + b: r + b + h,
                                                   r + c: r + c + w]).square())
                        for a, b, c in offsets])
    nz, ny, nx = grid.refs
    for j, (a, b, c) in enumerate(offsets):
        for axis, (o, n) in enumerate(zip((a, b, c), (d, h, w), strict=True)):
            start = torch.arange(dist.shape[axis + 1]) * 3 + o
            bad = (start < 0) | (start > n - 4)
            dist[j].masked_fill_(bad.reshape([-1 if k == axis else 1 for k in range(3)]),
                                 float("inf"))
    dist[offsets.index((0, 0, 0))] = -1.0
    best = dist.topk(6, dim=0, largest=False, sorted=True).indices.reshape(6, -1).T
    o = torch.tensor(offsets)[best]  # (refs, 6, 3)
    rz, ry, rx = torch.meshgrid(*(torch.arange(n) * 3 for n in (nz, ny, nx)), indexing="ij")
    pz = rz.reshape(-1, 1) + o[..., 0]
    py = ry.reshape(-1, 1) + o[..., 1]
    px = rx.reshape(-1, 1) + o[..., 2]
    assert torch.equal(refs, torch.arange(nz * ny * nx))
    assert torch.equal(origins, (pz * h + py) * w + px)


def test_block_weights_spread_over_the_voxels_the_blocks_cover():
    """The aggregation's denominator: a weight at a block's first voxel counts on all 4³ voxels
    of the block, as the direct sum over the blocks' voxels."""
    gen = torch.Generator().manual_seed(2)
    shape = (9, 7, 11)
    origins = [tuple(int(torch.randint(0, n - 3, (1,), generator=gen)) for n in shape)
               for _ in range(25)]
    weights = torch.rand(len(origins), generator=gen, dtype=torch.float64)
    at_origin = torch.zeros(shape, dtype=torch.float64)
    expected = torch.zeros(shape, dtype=torch.float64)
    for (z, y, x), wgt in zip(origins, weights, strict=True):
        at_origin[z, y, x] += wgt
        expected[z:z + 4, y:y + 4, x:x + 4] += wgt
    torch.testing.assert_close(_spread_blocks(at_origin), expected)
    tiny = torch.zeros(2, 1, 3, dtype=torch.float64)
    tiny[0, 0, 0] = 1.0
    assert _spread_blocks(tiny).sum() == 2 * 1 * 3  # a block clipped by a short axis
