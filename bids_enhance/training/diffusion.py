"""Conditional diffusion trainer for motion correction on 2D/2.5D slices (``motion-ddpm``).

The network (:class:`~bids_enhance.models.DiffusionUNet`) sees the noisy clean slice ``x_t`` and
the condition: the motion-corrupted slice and ``neighbours`` slices on each side (2.5D; channel
``neighbours`` is the slice itself, as :func:`~bids_enhance.models.neighbour_slices` orders
them). Intensities (normalised to about [0, 1]) are mapped to ``2x − 1`` for the diffusion
(``extra["intensity_map"]`` in the checkpoint; the inverse is ``(y + 1) / 2``).

Each step draws ``t ~ U{0, …, T−1}`` and ``ε ~ N(0, I)`` for the global batch (see
:meth:`~bids_enhance.training.base.Trainer.global_randn`), forms
``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε`` and regresses the ε or v target
(:class:`~bids_enhance.models.NoiseSchedule` formulas, evaluated from device-side tables so the
step never synchronises with the host) with a mean squared error; AdamW; the EMA weights
``θ_ema ← decay·θ_ema + (1 − decay)·θ`` are updated after every step and are what validation and
the checkpoint's ``ema_state_dict`` use. Sampling: DDIM with ``ddim_steps`` steps.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bids_enhance.models import NoiseSchedule, build_model, ddim_sample
from bids_enhance.models.diffusion import INTENSITY_MAP, x0_clip
from bids_enhance.training.base import Trainer
from bids_enhance.training.config import TrainConfig
from bids_enhance.training.ddp import DistributedContext
from bids_enhance.training.seeding import seeded_init

__all__ = ["EMA", "INTENSITY_MAP", "DiffusionTrainer", "ddim_sample_normalised"]



class EMA:
    """Exponential moving average of a network's parameters (buffers are copied).

    ``module`` is a frozen deep copy in eval mode; :meth:`update` does
    ``ema ← decay·ema + (1 − decay)·param`` with one fused ``_foreach_lerp_``.
    """

    def __init__(self, model: nn.Module, *, decay: float) -> None:
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay}")
        self.decay = float(decay)
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        if len(ema_params) != len(params):
            raise ValueError("EMA and model have different parameter lists")
        torch._foreach_lerp_(ema_params, params, 1.0 - self.decay)
        for b_ema, b in zip(self.module.buffers(), model.buffers(), strict=True):
            b_ema.copy_(b)

    def state_dict(self) -> dict[str, Tensor]:
        return self.module.state_dict()

    def load_state_dict(self, state: Mapping[str, Tensor]) -> None:
        self.module.load_state_dict(state)


class DiffusionTrainer(Trainer):
    """Trainer of ``motion-ddpm``.

    ``train_step(condition, target, iteration)`` takes ``(B, 2n+1, H, W)`` corrupted slices and
    ``(B, 1, H, W)`` clean centre slices (normalised intensities), any device.
    """

    loss_names = ("loss", "grad_norm", "lr")

    SPATIAL_DIMS = 2

    def __init__(self, config: TrainConfig, *, context: DistributedContext | None = None) -> None:
        super().__init__(config, context=context)
        cfg = self.config
        if cfg.task != "motion-ddpm":
            raise ValueError(f"DiffusionTrainer trains 'motion-ddpm', got task {cfg.task!r}")
        cond = 2 * cfg.neighbours + 1
        given = cfg.unet.get("condition_channels")
        if given is not None and given != cond:
            raise ValueError(f"unet condition_channels={given} does not match "
                             f"2·neighbours+1 = {cond}")
        self._unet_kwargs = {**cfg.unet, "image_channels": 1, "condition_channels": cond}
        self.schedule = NoiseSchedule.from_config(kind=cfg.schedule,
                                                  num_steps=cfg.diffusion_steps)
        abar = self.schedule.alphas_cumprod
        self._sqrt_abar = abar.sqrt().to(self.device, torch.float32)
        self._sqrt_one_minus_abar = (1 - abar).sqrt().to(self.device, torch.float32)
        with seeded_init(cfg.seed, "init"):
            unet = build_model("diffusion_unet", **self._unet_kwargs)
        self.unet = self.prepare_module(unet, spatial_dims=2)
        multiple = self.unet.size_multiple
        if cfg.patch_size % multiple:
            raise ValueError(f"patch_size {cfg.patch_size} must be divisible by {multiple} for a "
                             f"U-Net with {self.unet.num_levels} levels")
        self.ema = EMA(self.unet, decay=cfg.ema_decay)
        self.unet.train()
        self._params = list(self.unet.parameters())
        self.optimizer = self.make_adam(self._params, adamw=True)
        self.unet_fwd = self.forward_module(self.unet, ddp=True)

    # ------------------------------------------------------------------------------------------
    @property
    def arch_name(self) -> str:
        return "diffusion_unet"

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        return dict(self._unet_kwargs)

    @property
    def main_model(self) -> nn.Module:
        return self.unet

    @property
    def ema_model(self) -> nn.Module:
        return self.ema.module

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"unet": self.optimizer}

    def checkpoint_extra(self) -> dict[str, Any]:
        cfg = self.config
        return {"diffusion": self.schedule.config(), "prediction": cfg.prediction,
                "neighbours": cfg.neighbours, "slice_axis": cfg.slice_axis,
                "ddim_steps": cfg.ddim_steps, "ema_decay": cfg.ema_decay,
                "intensity_map": dict(INTENSITY_MAP)}

    def modules_state(self) -> dict[str, dict[str, Tensor]]:
        return {"unet": self.unet.state_dict(), "ema": self.ema.state_dict()}

    def load_modules_state(self, states: Mapping[str, Mapping[str, Tensor]]) -> None:
        if "unet" in states:
            self.unet.load_state_dict(states["unet"])
        if "ema" in states:
            self.ema.load_state_dict(states["ema"])

    def train(self, mode: bool = True) -> None:
        self.unet.train(mode)

    # ------------------------------------------------------------------------------------------
    def train_step(self, source: Tensor, target: Tensor, iteration: int) -> dict[str, Tensor]:
        cfg = self.config
        scale, offset = INTENSITY_MAP["scale"], INTENSITY_MAP["offset"]
        condition = self.to_device(source) * scale + offset
        x0 = self.to_device(target) * scale + offset
        lr = self.set_lr(iteration)
        b = x0.shape[0]
        t = self.global_randint(self.schedule.num_steps, b)
        eps = self.global_randn(tuple(x0.shape))
        if self.channels_last:
            eps = eps.contiguous(memory_format=torch.channels_last)
        a = self._sqrt_abar[t].view(b, 1, 1, 1)
        s = self._sqrt_one_minus_abar[t].view(b, 1, 1, 1)
        x_t = a * x0 + s * eps
        goal = eps if cfg.prediction == "eps" else a * eps - s * x0
        with self.autocast():
            pred = self.unet_fwd(x_t, t, condition)
        loss = F.mse_loss(pred.float(), goal)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = self.clip(self._params)
        self.optimizer.step()
        self.ema.update(self.unet)
        return {"loss": loss.detach(), "grad_norm": grad_norm,
                "lr": torch.full((), lr, device=self.device)}

    @torch.no_grad()
    def sample(self, condition: Tensor, *, steps: int | None = None,
               generator: torch.Generator | None = None, model: nn.Module | None = None
               ) -> Tensor:
        """DDIM samples ``(B, 1, H, W)`` in normalised intensities for conditions
        ``(B, 2n+1, H, W)`` (normalised intensities); EMA weights unless ``model`` is given."""
        return ddim_sample_normalised(model if model is not None else self.ema.module,
                                      self.schedule, condition,
                                      steps=steps or self.config.ddim_steps,
                                      prediction=self.config.prediction, generator=generator,
                                      device=self.device, autocast=self.autocast)


def ddim_sample_normalised(model: nn.Module, schedule: NoiseSchedule, condition: Tensor, *,
                           steps: int, prediction: str = "eps",
                           generator: torch.Generator | None = None,
                           device: torch.device | str = "cpu",
                           autocast: Callable[[], contextlib.AbstractContextManager] | None = None
                           ) -> Tensor:
    """DDIM (:func:`~bids_enhance.models.ddim_sample`) of clean slices ``(B, 1, H, W)`` for
    conditions ``(B, 2n+1, H, W)``, both in normalised intensities (the intensity map
    :data:`INTENSITY_MAP` is applied on the way in and inverted on the way out)."""
    ctx = autocast or contextlib.nullcontext
    device = torch.device(device)
    scale, offset = INTENSITY_MAP["scale"], INTENSITY_MAP["offset"]
    cond = condition.to(device, torch.float32) * scale + offset
    shape = (cond.shape[0], 1, *cond.shape[2:])

    def denoise(x: Tensor, t: Tensor) -> Tensor:
        with ctx():
            return model(x, t, cond).float()

    was_training = model.training
    model.eval()
    try:
        y = ddim_sample(denoise, schedule, shape=shape, steps=steps, prediction=prediction,
                        generator=generator, device=device,
                        clip_x0=x0_clip(scale, offset))
    finally:
        model.train(was_training)
    return (y - offset) / scale
