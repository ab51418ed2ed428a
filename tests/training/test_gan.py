"""The three-player GAN step: learning on a toy problem, who is updated when, precision and
memory-format paths."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from training_helpers import tiny_config

from bids_enhance.training import GANTrainer


def smooth_batch(n: int, size: int = 16, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth random patterns (a few low-frequency sinusoids) and their 2×2×2 box averages."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.linspace(0, 1, size)
    x, y, z = torch.meshgrid(axis, axis, axis, indexing="ij")
    hr = torch.zeros(n, 1, size, size, size)
    for _ in range(3):
        f = torch.rand(n, 3, generator=g) * 3 + 0.5
        p = torch.rand(n, 1, 1, 1, generator=g) * 6.28
        hr[:, 0] += torch.sin(6.28 * (f[:, 0, None, None, None] * x + f[:, 1, None, None, None] * y
                                      + f[:, 2, None, None, None] * z) + p)
    hr = 0.5 + 0.15 * hr
    lr = F.avg_pool3d(hr, 2)
    return lr, hr


def _params(module):
    return [p.detach().clone() for p in module.parameters()]


def _changed(before, module):
    return any(not torch.equal(a, b) for a, b in zip(before, module.parameters(), strict=True))


def test_generator_learns_to_super_resolve_a_smooth_pattern():
    trainer = GANTrainer(tiny_config(iterations=60, batch_size=4, loss_preset="released-code",
                                     warmup_iterations=20, lr=2e-3, seed=1))
    test_lr, test_hr = smooth_batch(4, seed=999)

    def error() -> float:
        with torch.no_grad():
            return F.l1_loss(trainer.generator(test_lr), test_hr).item()

    start = error()
    for it in range(60):
        lr, hr = smooth_batch(4, seed=it)
        out = trainer.train_step(lr, hr, it)
        assert all(torch.isfinite(v) for k, v in out.items()
                   if k not in ("perceptual", "adversarial_g", "loss_d", "logit_real",
                                "logit_fake", "grad_norm_d") or it >= 20)
    assert error() < 0.3 * start
    trilinear = F.interpolate(test_lr, scale_factor=2, mode="trilinear", align_corners=False)
    assert error() < F.l1_loss(trilinear, test_hr).item()  # better than interpolation
    assert torch.isfinite(out["loss_d"]) and torch.isfinite(out["perceptual"])


@pytest.mark.parametrize("mode", ["joint", "frozen"])
def test_who_is_updated(mode):
    trainer = GANTrainer(tiny_config(warmup_iterations=1, feature_extractor_training=mode))
    lr, hr = smooth_batch(2, seed=0)
    g, c, fe = _params(trainer.generator), _params(trainer.critic), \
        _params(trainer.feature_extractor)
    out = trainer.train_step(lr, hr, 0)  # warm-up: generator alone, pixel loss only
    assert _changed(g, trainer.generator)
    assert not _changed(c, trainer.critic) and not _changed(fe, trainer.feature_extractor)
    assert torch.isnan(out["loss_d"]) and out["loss_g"] == out["l1"]
    c = _params(trainer.critic)
    trainer.train_step(lr, hr, 1)  # adversarial: critic always, FE only when joint
    assert _changed(c, trainer.critic)
    assert _changed(fe, trainer.feature_extractor) == (mode == "joint")
    assert all(p.requires_grad for p in trainer.critic.parameters())
    n_opt = sum(len(group["params"]) for group in trainer.optimizer_g.param_groups)
    expected = len(g) + (len(fe) if mode == "joint" else 0)
    assert n_opt == expected


def test_generator_loss_uses_the_preset_weights():
    trainer = GANTrainer(tiny_config(loss_preset="thesis"))
    out = trainer.train_step(*smooth_batch(2, seed=0), 0)
    w = trainer.weights
    expected = w.perceptual * out["perceptual"] + w.pixel * out["l1"] \
        + w.adversarial * out["adversarial_g"]
    assert out["loss_g"].item() == pytest.approx(expected.item(), rel=1e-5)


def test_instance_noise_sigma_is_logged_and_annealed():
    trainer = GANTrainer(tiny_config(iterations=6, warmup_iterations=2,
                                     instance_noise_iterations=4, instance_noise_start=0.8))
    sigmas = [trainer.train_step(*smooth_batch(2, seed=i), i)["sigma"].item() for i in range(6)]
    assert sigmas == pytest.approx([0.8, 0.8, 0.8, 0.6, 0.4, 0.2])


@pytest.mark.parametrize("task", ["disgan", "motion-gan"])
def test_other_gan_tasks_step(task):
    trainer = GANTrainer(tiny_config(task=task))
    if task == "disgan":
        lr, hr = smooth_batch(2, seed=0)
    else:  # scale 1: motion-corrupted input on the target grid
        _, hr = smooth_batch(2, seed=0)
        lr = hr + 0.05 * torch.randn_like(hr)
    out = trainer.train_step(lr, hr, 0)
    assert torch.isfinite(out["loss_d"]) and torch.isfinite(out["loss_g"])
    assert trainer.arch_kwargs["scale"] == (2 if task == "disgan" else 1)


def test_cpu_bf16_autocast_and_channels_last_paths():
    """channels_last_3d is the CPU default of the 3D GANs (faster with oneDNN) and gives the
    contiguous layout's losses; bf16 autocast runs on the CPU too."""
    lr, hr = smooth_batch(2, seed=0)
    ref = GANTrainer(tiny_config(seed=5, channels_last=False))
    cl = GANTrainer(tiny_config(seed=5))
    assert cl.channels_last and not ref.channels_last
    assert cl.generator.conv_first.weight.is_contiguous(memory_format=torch.channels_last_3d)
    a, b = ref.train_step(lr, hr, 0), cl.train_step(lr, hr, 0)
    assert b["loss_g"].item() == pytest.approx(a["loss_g"].item(), rel=1e-4)
    bf16 = GANTrainer(tiny_config(seed=5, precision="bf16"))
    out = bf16.train_step(lr, hr, 0)
    assert bf16.precision == "bf16" and torch.isfinite(out["loss_g"])
    assert out["loss_g"].item() == pytest.approx(a["loss_g"].item(), rel=0.1)


def test_scale_mismatch_is_refused():
    with pytest.raises(ValueError, match="scale-1 generator"):
        GANTrainer(tiny_config(task="motion-gan", generator={"features": 4, "scale": 2}))


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_bf16_channels_last_fused_step():
    trainer = GANTrainer(tiny_config(device="cuda"))
    assert trainer.precision == "bf16" and trainer.channels_last and trainer.fused
    out = trainer.train_step(*smooth_batch(2, seed=0), 0)
    assert all(torch.isfinite(out[k]) for k in ("loss_g", "loss_d"))
    assert next(trainer.generator.parameters()).is_cuda


def test_mse_pixel_loss_is_what_the_generator_descends():
    """``pixel_loss="mse"``: the warm-up step's loss is the MSE of the generator's output, the
    logged ``l1`` is still its L1, and the first Adam step (−lr·g/|g| per weight) follows the
    MSE's gradient — not L1's, whose signs differ on some weights."""
    import copy

    trainer = GANTrainer(tiny_config(warmup_iterations=1, pixel_loss="mse", seed=2))
    lr, hr = smooth_batch(2, seed=3)
    before = copy.deepcopy(trainer.generator)
    sr = before(lr)
    mse, l1 = F.mse_loss(sr, hr), F.l1_loss(sr, hr)
    grads = {}
    for name, loss in (("mse", mse), ("l1", l1)):
        before.zero_grad()
        loss.backward(retain_graph=True)
        grads[name] = [p.grad.detach().clone() for p in before.parameters()]
    out = trainer.train_step(lr, hr, 0)
    assert out["loss_g"].item() == pytest.approx(mse.item(), rel=1e-5)
    assert out["l1"].item() == pytest.approx(l1.item(), rel=1e-5)
    agree = disagree_l1 = 0
    for p0, p1, g_mse, g_l1 in zip(before.parameters(), trainer.generator.parameters(),
                                   grads["mse"], grads["l1"], strict=True):
        step = (p1 - p0).detach()
        big = g_mse.abs() > 1e-6
        assert torch.equal(torch.sign(step[big]), -torch.sign(g_mse[big]))
        agree += int(big.sum())
        disagree_l1 += int((torch.sign(g_l1[big]) != torch.sign(g_mse[big])).sum())
    assert agree > 100 and disagree_l1 > 0


def test_pixel_loss_is_checked():
    with pytest.raises(ValueError, match="pixel_loss"):
        tiny_config(pixel_loss="l2")
