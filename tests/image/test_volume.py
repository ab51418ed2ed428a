"""The one volume check every core package uses."""

from __future__ import annotations

import numpy as np
import pytest

from bids_enhance.image.volume import check_volume


def test_a_volume_passes_unchanged():
    data = np.zeros((4, 5, 6), np.float32)
    assert check_volume(data) is data
    assert check_volume(np.zeros((2, 2, 2), bool)).dtype == bool


@pytest.mark.parametrize(("data", "kwargs", "message"), [
    (np.zeros((4, 4)), {}, "must be a 3D volume"),
    (np.zeros((4, 0, 4)), {}, "is empty"),
    (np.zeros((4, 4, 4), complex), {}, "real-valued"),
    (np.array([[["a"]]]), {}, "real-valued"),
    (np.zeros((3, 8, 8)), {"min_size": 4}, "at least 4 voxels"),
    (np.full((4, 4, 4), np.nan), {}, "64 NaN or infinite"),
])
def test_bad_volumes_are_refused_naming_the_argument(data, kwargs, message):
    with pytest.raises(ValueError, match=message) as info:
        check_volume(data, name="noisy", **kwargs)
    assert str(info.value).startswith("noisy ")


def test_nan_may_be_allowed():
    assert check_volume(np.full((2, 2, 2), np.nan), finite=False).shape == (2, 2, 2)


def test_every_core_package_uses_it():
    from bids_enhance.classical import noise
    from bids_enhance.degrade import _base
    from bids_enhance.image import mask
    from bids_enhance.inference import sliding
    from bids_enhance.metrics import iqm

    assert _base._check_volume is check_volume
    for module in (noise, mask, sliding, iqm):
        assert module.check_volume is check_volume, module.__name__
