"""Relativistic average GAN loss on hand-made logits, perceptual loss, presets, instance noise."""

from __future__ import annotations

import math

import pytest
import torch

from bids_enhance.training.losses import (
    LOSS_PRESETS,
    instance_noise_sigma,
    perceptual_loss,
    ragan_critic_loss,
    ragan_generator_loss,
)


def _bce(logit: float, label: float) -> float:
    p = 1 / (1 + math.exp(-logit))
    return -(label * math.log(p) + (1 - label) * math.log(1 - p))


def test_ragan_losses_on_hand_made_logits():
    real = torch.tensor([[2.0], [0.0]])   # batch of 2, one logit each: E C(r) = 1
    fake = torch.tensor([[-1.0], [1.0]])  # E C(f) = 0
    # critic: ½[mean BCE(C(r) − 0, 1) + mean BCE(C(f) − 1, 0)]
    d_expected = 0.5 * ((_bce(2.0, 1) + _bce(0.0, 1)) / 2 + (_bce(-2.0, 0) + _bce(0.0, 0)) / 2)
    g_expected = 0.5 * ((_bce(-2.0, 1) + _bce(0.0, 1)) / 2 + (_bce(2.0, 0) + _bce(0.0, 0)) / 2)
    assert ragan_critic_loss(real, fake).item() == pytest.approx(d_expected, rel=1e-6)
    assert ragan_generator_loss(real, fake).item() == pytest.approx(g_expected, rel=1e-6)


def test_ragan_equal_logits_give_log2_and_mean_is_per_position():
    x = torch.randn(1, 1, 2, 2, 2).expand(3, -1, -1, -1, -1)  # the same for every sample
    assert ragan_critic_loss(x, x).item() == pytest.approx(math.log(2), rel=1e-6)
    # a constant offset shared by real and fake at one position cancels in the relative logits
    real, fake = torch.zeros(2, 1, 2), torch.zeros(2, 1, 2)
    real[:, 0, 1] += 5.0
    fake[:, 0, 1] += 5.0
    assert ragan_critic_loss(real, fake).item() == pytest.approx(math.log(2), rel=1e-6)


def test_ragan_generator_gradient_flows_through_fake_only_when_real_detached():
    real = torch.randn(4, 1, 3, requires_grad=True)
    fake = torch.randn(4, 1, 3, requires_grad=True)
    ragan_generator_loss(real.detach(), fake).backward()
    assert fake.grad is not None and fake.grad.abs().sum() > 0
    assert real.grad is None


def test_ragan_custom_batch_mean_is_used():
    real, fake = torch.randn(2, 1, 4), torch.randn(2, 1, 4)
    calls = []

    def mean(x):
        calls.append(x.shape)
        return x.mean(0, keepdim=True)

    a = ragan_critic_loss(real, fake, batch_mean=mean)
    assert len(calls) == 2 and a.item() == pytest.approx(ragan_critic_loss(real, fake).item())


def test_ragan_rejects_mismatched_logits():
    with pytest.raises(ValueError, match="same shape"):
        ragan_critic_loss(torch.zeros(2, 1), torch.zeros(3, 1))


def test_perceptual_loss_layers():
    a = [torch.zeros(1, 2, 4), torch.zeros(1, 3, 2)]
    b = [torch.ones(1, 2, 4), 3 * torch.ones(1, 3, 2)]
    assert perceptual_loss(a, b).item() == pytest.approx(2.0)
    assert perceptual_loss(a, b, layers=(-1,)).item() == pytest.approx(3.0)
    with pytest.raises(ValueError, match="layer 2 does not exist"):
        perceptual_loss(a, b, layers=(2,))


def test_loss_presets():
    thesis, released = LOSS_PRESETS["thesis"], LOSS_PRESETS["released-code"]
    assert (thesis.perceptual, thesis.pixel, thesis.adversarial) == (1.0, 0.01, 0.005)
    assert (released.perceptual, released.pixel, released.adversarial) == (0.01, 1.0, 0.005)


def test_instance_noise_anneals_linearly():
    sig = [instance_noise_sigma(i, anneal_iterations=10) for i in range(13)]
    assert sig[0] == 1.0 and sig[10] == 0.0 and sig[12] == 0.0
    steps = [sig[i] - sig[i + 1] for i in range(10)]
    assert all(s == pytest.approx(0.1) for s in steps)
    # after a warm-up the annealing starts at the first adversarial iteration
    assert instance_noise_sigma(5, anneal_iterations=4, warmup_iterations=5, start=0.5) == 0.5
    assert instance_noise_sigma(7, anneal_iterations=4, warmup_iterations=5, start=0.5) == 0.25
    assert instance_noise_sigma(2, anneal_iterations=4, warmup_iterations=5, start=0.5) == 0.5
