from __future__ import annotations

import pytest
import torch

from bids_enhance.models import DiffusionUNet
from bids_enhance.models.diffusion import (
    NoiseSchedule,
    cosine_betas,
    ddim_sample,
    ddim_timesteps,
    linear_betas,
    neighbour_slices,
)

SCHEDULES = [NoiseSchedule.from_config(kind="linear"), NoiseSchedule.from_config(kind="cosine")]


def test_linear_schedule_endpoints_and_monotone():
    betas = linear_betas(1000)
    assert betas.shape == (1000,)
    assert betas[0].item() == pytest.approx(1e-4)
    assert betas[-1].item() == pytest.approx(2e-2)
    assert (betas.diff() > 0).all()


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["linear", "cosine"])
def test_alpha_bar_decreases_from_one_to_near_zero(schedule):
    abar = schedule.alphas_cumprod
    assert (abar.diff() < 0).all()
    assert 0.99 < abar[0].item() < 1.0
    assert abar[-1].item() < 1e-3


def test_cosine_betas_monotone_and_clipped():
    betas = cosine_betas(1000)
    assert (betas.diff() >= 0).all()
    assert betas.max().item() == pytest.approx(0.999)
    assert betas.min().item() > 0


def test_schedule_config_round_trips():
    s = NoiseSchedule.from_config(kind="linear", num_steps=50, beta_end=0.05)
    assert s.config() == {"kind": "linear", "num_steps": 50, "beta_end": 0.05}
    again = NoiseSchedule.from_config(s.config())
    assert torch.equal(again.betas, s.betas)
    with pytest.raises(ValueError, match="kind"):
        NoiseSchedule.from_config(kind="quadratic")
    with pytest.raises(ValueError, match="beta_start"):
        linear_betas(10, beta_start=0.1, beta_end=0.01)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["linear", "cosine"])
def test_eps_and_v_conversions_are_consistent(schedule):
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    eps = torch.randn(4, 1, 5, 5, generator=g, dtype=torch.float64)
    t = torch.tensor([0, 10, 500, 998])
    x_t = schedule.q_sample(x0, t, eps)
    for prediction in ("eps", "v"):
        target = schedule.training_target(x0, eps, t, prediction=prediction)
        got_x0, got_eps = schedule.predict_x0_eps(x_t, t, target, prediction=prediction)
        assert torch.allclose(got_x0, x0, atol=1e-8), prediction
        assert torch.allclose(got_eps, eps, atol=1e-8), prediction
    # v = sqrt(abar)·eps − sqrt(1−abar)·x0
    abar = schedule.alphas_cumprod[t].reshape(-1, 1, 1, 1)
    v = schedule.training_target(x0, eps, t, prediction="v")
    assert torch.allclose(v, abar.sqrt() * eps - (1 - abar).sqrt() * x0)
    with pytest.raises(ValueError, match="timesteps"):
        schedule.q_sample(x0, torch.tensor([0, 1, 2, 1000]), eps)


def test_ddim_timesteps_trailing():
    ts = ddim_timesteps(1000, 50)
    assert len(ts) == 50 and ts[0] == 999 and ts[-1] == 19
    assert all(a > b for a, b in zip(ts, ts[1:], strict=False))
    assert ddim_timesteps(1000, 1000) == list(range(999, -1, -1))
    with pytest.raises(ValueError, match="steps"):
        ddim_timesteps(1000, 1001)


def _oracle(schedule, x0, prediction):
    """A perfect denoiser for a known x0: returns the exact ε (or v) for any x_t."""
    def fn(x_t, t):
        a = schedule.sqrt_alpha_bar(t, x_t)
        s = schedule.sqrt_one_minus_alpha_bar(t, x_t)
        eps = (x_t - a * x0) / s
        return eps if prediction == "eps" else a * eps - s * x0
    return fn


@pytest.mark.parametrize("schedule", SCHEDULES, ids=["linear", "cosine"])
@pytest.mark.parametrize("prediction", ["eps", "v"])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_ddim_with_a_perfect_predictor_recovers_x0(schedule, prediction, eta):
    x0 = torch.linspace(-1, 1, 2 * 8 * 8, dtype=torch.float64).reshape(2, 1, 8, 8)
    g = torch.Generator().manual_seed(3)
    out = ddim_sample(_oracle(schedule, x0, prediction), schedule, shape=(2, 1, 8, 8), steps=20,
                      eta=eta, prediction=prediction, generator=g, dtype=torch.float64)
    assert torch.allclose(out, x0, atol=1e-6)


def test_ddim_is_deterministic_under_a_generator():
    schedule = SCHEDULES[0]

    def fn(x, t):
        return 0.5 * x  # any smooth predictor

    def run(seed, eta):
        return ddim_sample(fn, schedule, shape=(1, 1, 4, 4), steps=25, eta=eta,
                           generator=torch.Generator().manual_seed(seed))

    assert torch.equal(run(1, 0.5), run(1, 0.5))
    assert not torch.equal(run(1, 0.5), run(2, 0.5))
    x_T = torch.randn(1, 1, 4, 4)
    a = ddim_sample(fn, schedule, shape=(1, 1, 4, 4), steps=25, x_T=x_T)
    b = ddim_sample(fn, schedule, shape=(1, 1, 4, 4), steps=25, x_T=x_T.clone())
    assert torch.equal(a, b)


def test_ddim_with_the_unet_and_clipping():
    torch.manual_seed(0)
    model = DiffusionUNet(features=8, channel_mults=(1, 2), num_res_blocks=1, norm_groups=4,
                          condition_channels=3, attention=False).eval()
    cond = torch.randn(2, 3, 8, 8)
    out = ddim_sample(lambda x, t: model(x, t, cond), SCHEDULES[0], shape=(2, 1, 8, 8), steps=3,
                      generator=torch.Generator().manual_seed(0), clip_x0=(-1.0, 1.0))
    assert out.shape == (2, 1, 8, 8)
    assert out.abs().max() <= 1.0 + 1e-6


@pytest.mark.parametrize("conditioning", ["concat", "separate"])
def test_unet_conditioning_modes_use_the_condition(conditioning):
    torch.manual_seed(0)
    model = DiffusionUNet(features=8, channel_mults=(1, 2), num_res_blocks=1, norm_groups=4,
                          condition_channels=3, conditioning=conditioning)
    x = torch.randn(2, 1, 8, 8)
    t = torch.tensor([1, 900])
    cond = torch.randn(2, 3, 8, 8)
    y = model(x, t, cond)
    assert y.shape == (2, 1, 8, 8)
    assert not torch.allclose(model(x, t, cond + 1), y)
    assert not torch.allclose(model(x, torch.tensor([500, 2]), cond), y)
    assert (model.condition_encoder is not None) == (conditioning == "separate")


def test_unet_input_checks():
    model = DiffusionUNet(features=8, channel_mults=(1, 2, 2), num_res_blocks=1, norm_groups=4,
                          condition_channels=1)
    with pytest.raises(ValueError, match="divisible by 4"):
        model(torch.randn(1, 1, 6, 8), torch.tensor([1]), torch.randn(1, 1, 6, 8))
    with pytest.raises(ValueError, match="condition"):
        model(torch.randn(1, 1, 8, 8), torch.tensor([1]), torch.randn(1, 2, 8, 8))
    with pytest.raises(ValueError, match="norm_groups"):
        DiffusionUNet(features=6, norm_groups=4)
    with pytest.raises(ValueError, match="conditioning"):
        DiffusionUNet(conditioning="add")
    unconditional = DiffusionUNet(features=8, channel_mults=(1,), num_res_blocks=1,
                                  norm_groups=4, condition_channels=0, attention=False)
    assert unconditional(torch.randn(1, 1, 4, 4), 5).shape == (1, 1, 4, 4)


def test_neighbour_slices_replicate_edges():
    vol = torch.arange(4.0)[:, None, None].expand(4, 2, 3)
    stacks = neighbour_slices(vol, radius=1)
    assert stacks.shape == (4, 3, 2, 3)
    assert stacks[:, :, 0, 0].tolist() == [[0, 0, 1], [0, 1, 2], [1, 2, 3], [2, 3, 3]]
    assert neighbour_slices(vol, radius=0, axis=2).shape == (3, 1, 4, 2)
