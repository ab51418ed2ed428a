import numpy as np
import pytest

from bids_enhance.degrade import add_gaussian_noise, add_rician_noise
from bids_enhance.degrade.noise import sigma_from_fraction


def test_rician_background_follows_rayleigh(rng):
    vol = np.zeros((32, 32, 32), np.float32)
    noisy = add_rician_noise(vol, sigma=2.0, rng=rng)
    # Rayleigh mean = sigma * sqrt(pi / 2)
    assert noisy.mean() == pytest.approx(2.0 * np.sqrt(np.pi / 2), rel=0.02)
    assert noisy.dtype == np.float32 and (noisy >= 0).all()


def test_rician_bright_region_has_second_moment_a2_plus_2sigma2(rng):
    vol = np.full((32, 32, 32), 100.0, np.float32)
    noisy = add_rician_noise(vol, sigma=5.0, rng=rng)
    assert np.mean(noisy.astype(np.float64) ** 2) == pytest.approx(100.0**2 + 2 * 25.0, abs=25.0)  # 4 standard errors of the sample mean


def test_noise_is_replayable_from_seed():
    vol = np.random.default_rng(0).random((8, 8, 8)).astype(np.float32)
    a = add_rician_noise(vol, sigma=0.1, rng=np.random.default_rng(7))
    b = add_rician_noise(vol, sigma=0.1, rng=np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)


def test_gaussian_noise_std(rng):
    noisy = add_gaussian_noise(np.zeros((32, 32, 32)), sigma=3.0, rng=rng)
    assert noisy.std() == pytest.approx(3.0, rel=0.02)


def test_sigma_from_fraction_uses_robust_max():
    vol = np.zeros((10, 10, 10), np.float32)
    vol[2:8, 2:8, 2:8] = 200.0
    assert sigma_from_fraction(vol, 0.03) == pytest.approx(6.0)


@pytest.mark.parametrize("shape", [(4, 4), (2, 2, 2, 2)])
def test_bad_shapes_raise(shape, rng):
    with pytest.raises(ValueError, match="3D"):
        add_rician_noise(np.zeros(shape), sigma=1.0, rng=rng)
