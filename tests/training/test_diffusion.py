"""The conditional diffusion trainer: learning, EMA, targets, sampling."""

from __future__ import annotations

import pytest
import torch
from training_helpers import tiny_config

from bids_enhance.training import EMA, DiffusionTrainer


def slices(n: int, *, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth clean slices and 3-slice conditions (the slice plus noise, neighbours alike)."""
    g = torch.Generator().manual_seed(seed)
    axis = torch.linspace(0, 1, 16)
    x, y = torch.meshgrid(axis, axis, indexing="ij")
    f = torch.rand(n, 2, 1, 1, generator=g) * 2 + 0.5
    clean = 0.5 + 0.3 * torch.sin(6.28 * (f[:, :1] * x + f[:, 1:] * y))
    cond = clean.expand(n, 3, 16, 16) + 0.1 * torch.randn(n, 3, 16, 16, generator=g)
    return cond, clean


def test_loss_falls_on_a_toy_problem():
    trainer = DiffusionTrainer(tiny_config("motion-ddpm", lr=2e-3, seed=2, diffusion_steps=20))
    losses = [trainer.train_step(*slices(8, seed=i), i)["loss"].item() for i in range(40)]
    assert sum(losses[-10:]) / 10 < 0.5 * sum(losses[:10]) / 10


def test_ema_follows_the_formula():
    model = torch.nn.Linear(2, 2)
    ema = EMA(model, decay=0.9)
    with torch.no_grad():
        model.weight.add_(1.0)
    before = ema.module.weight.clone()
    ema.update(model)
    torch.testing.assert_close(ema.module.weight, 0.9 * before + 0.1 * model.weight)
    assert not ema.module.training and not ema.module.weight.requires_grad


def test_v_prediction_ema_and_sampling():
    trainer = DiffusionTrainer(tiny_config("motion-ddpm", prediction="v", ema_decay=0.5))
    ema_before = [p.clone() for p in trainer.ema.module.parameters()]
    out = trainer.train_step(*slices(2, seed=0), 0)
    assert torch.isfinite(out["loss"])
    assert any(not torch.equal(a, b) for a, b in zip(ema_before, trainer.ema.module.parameters(),
                                                     strict=True))
    cond, _ = slices(2, seed=1)
    g = torch.Generator().manual_seed(0)
    a = trainer.sample(cond, steps=3, generator=g)
    b = trainer.sample(cond, steps=3, generator=torch.Generator().manual_seed(0))
    assert a.shape == (2, 1, 16, 16) and torch.equal(a, b)
    extra = trainer.checkpoint_extra()
    assert extra["prediction"] == "v" and extra["diffusion"]["num_steps"] == 50
    assert extra["intensity_map"] == {"scale": 2.0, "offset": -1.0}
    assert trainer.inference_model() is trainer.ema.module


def test_bad_geometry_is_refused():
    with pytest.raises(ValueError, match="divisible by 2"):
        DiffusionTrainer(tiny_config("motion-ddpm", patch_size=15))
    with pytest.raises(ValueError, match="condition_channels"):
        DiffusionTrainer(tiny_config("motion-ddpm", unet={"condition_channels": 1}))


def test_slice_unet_keeps_the_contiguous_layout_on_the_cpu():
    """channels_last on the CPU is for the 3D GANs only (unmeasured for the 2D U-Net)."""
    assert not DiffusionTrainer(tiny_config("motion-ddpm")).channels_last
