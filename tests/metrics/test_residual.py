from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from bids_enhance.image.mask import head_mask
from bids_enhance.metrics.residual import residual_structure

NOISE_SD = 5.0


def _phantom(n: int = 48, seed: int = 0) -> np.ndarray:
    """Head-like phantom ``(n, n, n)``: nested ellipsoids (scalp 60, dark ring 20, 'WM' 80, a core
    110, two small blobs) with a smooth multiplicative texture (5 %), zero background."""
    rng = np.random.default_rng(seed)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n)] * 3, indexing="ij"))

    def ellipsoid(a, b, c, cx=0.0, cy=0.0, cz=0.0):
        return ((g[0] - cx) / a) ** 2 + ((g[1] - cy) / b) ** 2 + ((g[2] - cz) / c) ** 2 <= 1

    vol = np.zeros((n, n, n))
    vol[ellipsoid(0.92, 0.82, 0.87)] = 60
    vol[ellipsoid(0.74, 0.64, 0.69)] = 20
    vol[ellipsoid(0.6, 0.5, 0.55)] = 80
    vol[ellipsoid(0.35, 0.3, 0.3, 0.1)] = 110
    vol[ellipsoid(0.12, 0.12, 0.2, -0.35, 0.2)] = 30
    vol[ellipsoid(0.1, 0.15, 0.1, 0.3, -0.25, 0.2)] = 130
    texture = ndi.gaussian_filter(rng.standard_normal(vol.shape), 2.0)
    texture /= texture.std()
    return np.where(vol > 0, vol * (1 + 0.05 * texture), 0.0)


@pytest.fixture(scope="module")
def clean() -> np.ndarray:
    return _phantom()


@pytest.fixture(scope="module")
def noisy(clean) -> np.ndarray:
    return clean + np.random.default_rng(20251127).normal(0.0, NOISE_SD, clean.shape)


@pytest.fixture(scope="module")
def ideal(noisy, clean) -> dict:
    """An oracle denoiser: its output is the clean phantom, its residual pure Gaussian noise."""
    return residual_structure(noisy, clean)


@pytest.fixture(scope="module")
def blurred(noisy) -> dict:
    """A denoiser that removes structure: a Gaussian blur of σ 1.5 voxels."""
    return residual_structure(noisy, ndi.gaussian_filter(noisy, 1.5))


def test_ideal_denoiser_residual_holds_no_structure(ideal):
    # measured: edge -0.006, laplacian 0.005, ratio 0.99, std 5.00
    assert abs(ideal["edge_correlation"]) < 0.1
    assert abs(ideal["laplacian_correlation"]) < 0.1
    assert ideal["edge_flat_std_ratio"] == pytest.approx(1.0, abs=0.15)
    assert ideal["residual_std"] == pytest.approx(NOISE_SD, rel=0.05)
    assert abs(ideal["residual_mean"]) < 0.2


def test_blurring_denoiser_residual_holds_edges(blurred, ideal):
    # measured: edge 0.60, laplacian -0.64, ratio 1.82
    assert blurred["edge_correlation"] > 0.3
    assert blurred["laplacian_correlation"] < -0.4
    assert blurred["edge_flat_std_ratio"] > 1.3
    assert blurred["edge_residual_std"] > 2 * ideal["edge_residual_std"]


def test_stronger_blur_gives_a_more_negative_laplacian_correlation(noisy, clean):
    # measured (support mask): -0.38, -0.48, -0.64, -0.71; edge_correlation is a shape measure
    # and falls again for wide blurs (0.85, 0.79, 0.55, 0.10), see the function's notes
    mask = clean > 0  # one mask for all, so only the filter changes
    lap = [residual_structure(noisy, ndi.gaussian_filter(noisy, s), mask)["laplacian_correlation"]
           for s in (0.7, 1.0, 1.5, 2.5)]
    assert lap[0] < -0.3
    assert all(a > b for a, b in zip(lap, lap[1:], strict=False))


def test_mild_blur_residual_is_on_the_edges(noisy, clean):
    # measured: edge 0.85, ratio 2.9, laplacian -0.38
    out = residual_structure(noisy, ndi.gaussian_filter(noisy, 0.7), clean > 0)
    assert out["edge_correlation"] > 0.6
    assert out["edge_flat_std_ratio"] > 2.0


def test_ideal_denoiser_of_rician_noise_holds_no_structure(clean):
    """Rician magnitude noise: the residual is biased (σ²/2A) and the background residual is
    Rayleigh; averaging |r| inside the mask only keeps the border from faking an edge signal."""
    # measured: edge -0.009 (0.28 when |r| was smoothed across the mask border), ratio 1.01
    rng = np.random.default_rng(7)
    magnitude = np.hypot(clean + rng.normal(0, NOISE_SD, clean.shape),
                         rng.normal(0, NOISE_SD, clean.shape))
    out = residual_structure(magnitude, clean)
    assert abs(out["edge_correlation"]) < 0.1
    assert abs(out["laplacian_correlation"]) < 0.1
    assert out["edge_flat_std_ratio"] == pytest.approx(1.0, abs=0.15)


def test_default_mask_is_head_mask_of_denoised(noisy, clean, ideal):
    mask = head_mask(clean)
    assert ideal["mask_voxels"] == int(mask.sum())
    assert residual_structure(noisy, clean, mask) == ideal


def test_invariant_to_intensity_scale(noisy, clean, ideal):
    mask = head_mask(clean)
    scaled = residual_structure(10 * noisy, 10 * clean, mask)
    for key in ("edge_correlation", "laplacian_correlation", "edge_flat_std_ratio"):
        assert scaled[key] == pytest.approx(ideal[key], abs=1e-9)
    assert scaled["residual_std"] == pytest.approx(10 * ideal["residual_std"])


def test_identity_denoiser_gives_nan_not_an_error(clean):
    out = residual_structure(clean, clean, clean > 0)
    assert out["residual_std"] == 0.0
    assert np.isnan(out["edge_correlation"]) and np.isnan(out["laplacian_correlation"])
    assert np.isnan(out["edge_flat_std_ratio"])


def test_smoothing_is_recorded(noisy, clean):
    assert residual_structure(noisy, clean, clean > 0, smoothing=2.0)["smoothing"] == 2.0


@pytest.mark.parametrize(
    ("noisy_shape", "denoised_shape", "mask_shape", "match"),
    [
        ((8, 8), (8, 8), None, "3D"),
        ((8, 8, 8, 2), (8, 8, 8, 2), None, "3D"),
        ((8, 8, 8), (8, 8, 9), None, r"denoised must have the shape of noisy \(8, 8, 8\)"),
        ((8, 8, 8), (8, 8, 8), (8, 8, 7), r"mask must have the shape of noisy"),
    ],
)
def test_bad_shapes_raise(noisy_shape, denoised_shape, mask_shape, match):
    mask = None if mask_shape is None else np.ones(mask_shape, dtype=bool)
    with pytest.raises(ValueError, match=match):
        residual_structure(np.ones(noisy_shape), np.ones(denoised_shape), mask)


def test_empty_mask_raises():
    with pytest.raises(ValueError, match="at least 10 voxels"):
        residual_structure(np.ones((8, 8, 8)), np.ones((8, 8, 8)), np.zeros((8, 8, 8), bool))
    with pytest.raises(ValueError, match="head_mask of denoised found no head"):
        residual_structure(np.ones((8, 8, 8)), np.ones((8, 8, 8)))  # constant: no head


@pytest.mark.parametrize("smoothing", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_smoothing_raises(smoothing):
    with pytest.raises(ValueError, match="smoothing must be a finite positive number"):
        residual_structure(np.ones((8, 8, 8)), np.ones((8, 8, 8)), smoothing=smoothing)
