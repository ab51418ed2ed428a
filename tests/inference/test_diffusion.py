"""Slice-wise DDIM motion correction: exact with an exact ε/v model, deterministic under a seed."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bids_enhance.inference import diffusion_correct
from bids_enhance.models import DiffusionUNet, NoiseSchedule
from bids_enhance.models.diffusion import INTENSITY_MAP
from tests.inference.conftest import smooth_volume

SCHEDULE = NoiseSchedule.from_config(kind="linear", num_steps=100)


class ExactModel(nn.Module):
    """Knows the answer: the clean slice is ``centre + 0.1·(next − previous)`` of the 2.5D
    condition (normalised intensities); returns the exact ε or v of ``x_t`` for it."""

    size_multiple = 4

    def __init__(self, prediction: str, neighbours: int = 1) -> None:
        super().__init__()
        self.prediction, self.r = prediction, neighbours
        self.condition_channels = 2 * neighbours + 1

    def forward(self, x_t, t, cond):
        assert cond.shape[1] == self.condition_channels
        assert x_t.shape[-2] % 4 == 0 and x_t.shape[-1] % 4 == 0
        scale, offset = INTENSITY_MAP["scale"], INTENSITY_MAP["offset"]
        x = (cond.double() - offset) / scale
        r = self.r
        clean = x[:, r:r + 1] + 0.1 * (x[:, r + 1:r + 2] - x[:, r - 1:r])
        y0 = scale * clean + offset
        abar = SCHEDULE.alphas_cumprod.to(x.device)[t].view(-1, 1, 1, 1)
        a, s = abar.sqrt(), (1 - abar).sqrt()
        eps = (x_t.double() - a * y0) / s
        return (eps if self.prediction == "eps" else a * eps - s * y0).float()


def _expected(volume: np.ndarray, axis: int) -> np.ndarray:
    v = np.moveaxis(volume.astype(np.float64), axis, 0)
    nxt = np.concatenate([v[1:], v[-1:]])
    prev = np.concatenate([v[:1], v[:-1]])
    return np.moveaxis(v + 0.1 * (nxt - prev), 0, axis)


@pytest.mark.parametrize("prediction, eta, axis", [("eps", 0.0, 1), ("v", 0.0, 2),
                                                    ("eps", 0.7, 0)])
def test_exact_model_gives_the_exact_answer(prediction, eta, axis):
    vol = smooth_volume((7, 9, 10), seed=1)  # in-plane sizes padded to multiples of 4
    report = {}
    out = diffusion_correct(ExactModel(prediction), SCHEDULE, vol, prediction=prediction,
                            neighbours=1, slice_axis=axis, steps=10, eta=eta, batch_size=3,
                            seed=0, report=report, clip=None)  # the answer dips below 0
    assert out.shape == vol.shape and out.dtype == np.float32
    np.testing.assert_allclose(out, _expected(vol, axis), atol=2e-5)
    assert report["slices"] == vol.shape[axis] and report["precision"] == "fp32"


class RunawayModel(nn.Module):
    """An untrained-like ε-model whose x0 estimates run far outside the image range."""

    size_multiple = 4
    condition_channels = 3

    def forward(self, x_t, t, cond):
        return torch.full_like(x_t, -30.0)


def test_x0_estimates_are_clamped_to_the_image_range():
    from bids_enhance.models.diffusion import X0_RANGE

    vol = smooth_volume((4, 8, 8), seed=3)
    kw = dict(prediction="eps", neighbours=1, slice_axis=0, steps=5, seed=0)
    report = {}
    clamped = diffusion_correct(RunawayModel(), SCHEDULE, vol, report=report, **kw)
    assert report["clip"] == list(X0_RANGE)
    assert clamped.min() >= X0_RANGE[0] - 1e-5 and clamped.max() <= X0_RANGE[1] + 1e-5
    free = diffusion_correct(RunawayModel(), SCHEDULE, vol, clip=None, **kw)
    assert free.max() > 5 * X0_RANGE[1]  # what the clamp prevents
    # an exact model whose answer lies inside the range is not changed by the clamp
    inside = smooth_volume((5, 8, 8), seed=4) * 0.5 + 0.8
    exact = diffusion_correct(ExactModel("eps"), SCHEDULE, inside, neighbours=1, slice_axis=0,
                              steps=10, seed=0)
    np.testing.assert_allclose(exact, _expected(inside, 0), atol=2e-5)
    with pytest.raises(ValueError, match="low < high"):
        diffusion_correct(RunawayModel(), SCHEDULE, vol, clip=(1.0, 0.0), **kw)


def _tiny_unet() -> DiffusionUNet:
    torch.manual_seed(0)
    return DiffusionUNet(features=8, channel_mults=(1, 2), num_res_blocks=1, norm_groups=4,
                         condition_channels=3, attention_heads=2).eval()


def test_deterministic_under_a_seed_and_independent_of_batch_size():
    model, vol = _tiny_unet(), smooth_volume((5, 8, 6), seed=2)
    kw = dict(prediction="eps", neighbours=1, slice_axis=0, steps=3)
    a = diffusion_correct(model, SCHEDULE, vol, batch_size=2, seed=11, **kw)
    b = diffusion_correct(model, SCHEDULE, vol, batch_size=2, seed=11, **kw)
    np.testing.assert_array_equal(a, b)
    c = diffusion_correct(model, SCHEDULE, vol, batch_size=5, seed=11, **kw)
    np.testing.assert_allclose(c, a, atol=1e-5)
    d = diffusion_correct(model, SCHEDULE, vol, batch_size=2, seed=12, **kw)
    assert np.abs(d - a).max() > 1e-3
    e1 = diffusion_correct(model, SCHEDULE, vol, batch_size=2, seed=11, eta=1.0, **kw)
    e2 = diffusion_correct(model, SCHEDULE, vol, batch_size=2, seed=11, eta=1.0, **kw)
    np.testing.assert_array_equal(e1, e2)


def test_condition_channels_must_match_neighbours():
    with pytest.raises(ValueError, match="3 condition channels"):
        diffusion_correct(_tiny_unet(), SCHEDULE, np.zeros((4, 8, 8), np.float32),
                          neighbours=2, slice_axis=0, steps=2)
    with pytest.raises(ValueError, match="slice_axis"):
        diffusion_correct(_tiny_unet(), SCHEDULE, np.zeros((4, 8, 8), np.float32),
                          slice_axis=3, steps=2)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_sampling_is_deterministic_and_close_to_cpu():
    model, vol = _tiny_unet(), smooth_volume((4, 8, 8), seed=2)
    kw = dict(prediction="eps", neighbours=1, slice_axis=0, steps=3, seed=5)
    cpu = diffusion_correct(model, SCHEDULE, vol, **kw)
    report = {}
    gpu = diffusion_correct(model, SCHEDULE, vol, device="cuda", report=report, **kw)
    again = diffusion_correct(model, SCHEDULE, vol, device="cuda", **kw)
    assert report["precision"] == "bf16"
    np.testing.assert_array_equal(gpu, again)
    fp32 = diffusion_correct(model, SCHEDULE, vol, device="cuda", precision="fp32", **kw)
    np.testing.assert_allclose(fp32, cpu, atol=1e-3)
    assert np.abs(gpu - cpu).max() < 0.1
