from __future__ import annotations

import numpy as np
import pytest
import pywt
import torch

from bids_enhance.models.wavelet import (
    HAAR_BANDS,
    HaarDWT3d,
    HaarIDWT3d,
    haar_dwt3d,
    haar_filters3d,
)


def test_band_order_is_pywt_key_order():
    x = np.random.default_rng(0).normal(size=(4, 4, 4))
    assert tuple(pywt.dwtn(x, "haar")) == HAAR_BANDS
    assert HAAR_BANDS[0] == "aaa"


def test_all_eight_bands_match_pywt():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 6, 4, 8))
    bands = haar_dwt3d(torch.from_numpy(x)).numpy()  # float64 throughout
    assert bands.shape == (2, 3, 8, 3, 2, 4)
    for b in range(2):
        for c in range(3):
            ref = pywt.dwtn(x[b, c], "haar")
            for i, key in enumerate(HAAR_BANDS):
                np.testing.assert_allclose(bands[b, c, i], ref[key], atol=1e-12, err_msg=key)


def test_perfect_reconstruction_and_orthonormal_filters():
    x = torch.randn(1, 2, 4, 6, 2, dtype=torch.float64)
    assert torch.allclose(HaarIDWT3d()(HaarDWT3d()(x)), x, atol=1e-12)
    f = haar_filters3d(torch.float64).reshape(8, 8)
    assert torch.allclose(f @ f.T, torch.eye(8, dtype=torch.float64), atol=1e-12)


def test_filters_are_a_buffer_not_a_parameter_or_checkpoint_key():
    dwt = HaarDWT3d()
    assert list(dwt.parameters()) == []
    assert "filters" in dict(dwt.named_buffers())
    assert dwt.state_dict() == {}


def test_channels_last_input():
    x = torch.randn(1, 3, 4, 4, 4)
    y = haar_dwt3d(x.contiguous(memory_format=torch.channels_last_3d))
    assert torch.allclose(y, haar_dwt3d(x), atol=1e-6)


def test_odd_sizes_refused():
    with pytest.raises(ValueError, match="even"):
        haar_dwt3d(torch.zeros(1, 1, 3, 4, 4))
