"""benchmarks/motion_slices.py: the 2.5D probe's network starts as the identity, keeps any
plane shape, and its whole-volume inference covers every plane."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import motion_slices  # noqa: E402


def test_pad_to_pads_the_last_two_axes_to_multiples():
    out = motion_slices.pad_to(np.ones((3, 17, 33), np.float32))
    assert out.shape == (3, 32, 48)
    assert out[:, :17, :33].all() and not out[:, 17:].any() and not out[:, :, 33:].any()


def test_the_untrained_network_is_the_identity_on_the_centre_plane():
    torch.manual_seed(0)
    net = motion_slices.build_unet(4)
    planes = torch.rand(2, 3, 32, 48)
    assert torch.equal(net(planes), planes[:, 1:2])


def test_whole_volume_inference_returns_every_plane_on_its_grid():
    torch.manual_seed(0)
    net = motion_slices.build_unet(4)
    with torch.no_grad():  # a non-zero residual, so that each plane's own output shows
        net.out.bias.fill_(0.5)
    volume = np.random.default_rng(0).random((5, 20, 30)).astype(np.float32)
    out = motion_slices.infer(net, volume, batch=2)
    assert out.shape == volume.shape
    np.testing.assert_allclose(out, volume + 0.5, atol=1e-6)
    assert net.training  # back in training mode after inference
