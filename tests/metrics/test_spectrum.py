from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi

from bids_enhance.metrics.spectrum import radial_power_spectrum


def test_white_noise_spectrum_is_flat(rng):
    noise = rng.normal(0.0, 2.0, size=(48, 48, 48))
    freqs, power = radial_power_spectrum(noise, n_bins=12)
    assert freqs.shape == power.shape == (12,)
    assert freqs[-1] < 0.5 and np.all(np.diff(freqs) > 0)
    # variance 4 -> flat at 4; the first shells hold few frequencies (and the DC term)
    np.testing.assert_allclose(power[2:], 4.0, rtol=0.12)


def test_smoothing_removes_high_frequencies(rng):
    noise = rng.normal(size=(32, 32, 32))
    _, flat = radial_power_spectrum(noise, n_bins=8)
    _, smooth = radial_power_spectrum(ndi.gaussian_filter(noise, 1.5), n_bins=8)
    assert smooth[-1] < 0.01 * flat[-1]


def test_spacing_sets_frequency_axis_in_cycles_per_mm(rng):
    freqs, power = radial_power_spectrum(rng.normal(size=(16, 16, 8)), spacing=(1.0, 1.0, 2.0),
                                         n_bins=4)
    np.testing.assert_allclose(freqs, [0.03125, 0.09375, 0.15625, 0.21875])  # up to 0.25
    assert np.isfinite(power[1:]).all()


@pytest.mark.parametrize("kwargs, match", [
    ({"spacing": (1.0, 1.0)}, "spacing"),
    ({"spacing": (1.0, 0.0, 1.0)}, "spacing"),
    ({"n_bins": 0}, "n_bins"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        radial_power_spectrum(np.zeros((8, 8, 8)), **kwargs)


def test_not_3d_raises():
    with pytest.raises(ValueError, match="3D"):
        radial_power_spectrum(np.zeros((8, 8)))
