"""The three-player GAN trainer (Wang et al., MLCN 2023): ``gan3p``, ``disgan`` and ``motion-gan``.

Players: the RRDB generator G, the critic C (patch logits of
:class:`~bids_enhance.models.ResNetCritic`; per-voxel logits of
:class:`~bids_enhance.models.WaveletUNetCritic` for DISGAN) and the 3D ResNet-10 feature
extractor FE of the perceptual loss.

How the feature extractor is trained. The authors' released code
(``wqlevi/threeplayerGANSR``, ``mains/ln_DDP_train.py`` with ``update_FE: true`` in
``mains/config/ThreePlayerGAN.yml``) puts FE's parameters into the *generator's* Adam optimiser:
FE starts from random weights and is updated on every generator step by the gradient of the
generator loss — of which only the perceptual term ``|FE(SR) − FE(HR)|`` depends on FE, with
gradients through both the SR and the HR branch. FE thus cooperates with G (it is not trained
against it, nor on a separate task). ``feature_extractor_training="joint"`` (default) does this;
``"frozen"`` keeps the random initial weights. FE stays in training mode (BatchNorm uses batch
statistics, as in the released code); here SR and HR pass through FE as one batch, so both are
normalised with the same statistics.

One iteration (after an optional pixel-loss-only warm-up, which trains G alone on L1):

1. instance noise ``n ~ N(0, σ²)`` for the batch, σ annealed linearly from
   ``instance_noise_start`` to 0 (:func:`~bids_enhance.training.losses.instance_noise_sigma`);
   the same ``n`` is added to the real and the generated image, as in the released code;
2. generator step (G and, when joint, FE; C frozen): ``w_perc·L_perc + w_pix·L1 + w_adv·L_G``
   with the relativistic average generator loss on ``C(HR + n)`` (no gradient) and
   ``C(SR + n)``; weights from :data:`~bids_enhance.training.losses.LOSS_PRESETS`;
3. critic step: the relativistic average critic loss on ``C(HR + n)`` and ``C(SR.detach() + n)``
   (one forward of the concatenated batch; the critics normalise per sample).

Adam with lr 1e-4 and betas (0.9, 0.999) for both optimisers (fused on CUDA); bf16 autocast on
CUDA; losses in float32.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from bids_enhance.degrade import input_channels
from bids_enhance.models import build_model
from bids_enhance.training.base import Trainer
from bids_enhance.training.config import GAN_TASKS, TrainConfig
from bids_enhance.training.ddp import DistributedContext
from bids_enhance.training.losses import (
    LOSS_PRESETS,
    instance_noise_sigma,
    perceptual_loss,
    ragan_critic_loss,
    ragan_generator_loss,
)
from bids_enhance.training.seeding import seeded_init

__all__ = ["GANTrainer"]


class GANTrainer(Trainer):
    """Trainer of the three-player GAN family (tasks ``gan3p``, ``disgan``, ``motion-gan``,
    ``denoise``).

    Networks are built from ``config.generator``/``config.critic``/``config.feature_extractor``
    keyword arguments (model defaults otherwise; the generator's ``scale`` is the task's), seeded
    from ``child_seed(seed, "init")``. ``train_step(lr_batch, hr_batch, iteration)`` takes
    ``(B, 1, x, y, z)`` and ``(B, 1, s·x, s·y, s·z)`` float tensors (any device).
    """

    loss_names = ("loss_g", "l1", "perceptual", "adversarial_g", "loss_d", "logit_real",
                  "logit_fake", "sigma", "grad_norm_g", "grad_norm_d", "lr")

    def __init__(self, config: TrainConfig, *, context: DistributedContext | None = None) -> None:
        super().__init__(config, context=context)
        cfg = self.config
        if not cfg.is_gan:
            raise ValueError(f"GANTrainer trains {GAN_TASKS}, got task "
                             f"{cfg.task!r}")
        if "scale" in cfg.generator and cfg.generator["scale"] != cfg.scale:
            raise ValueError(f"task {cfg.task!r} needs a scale-{cfg.scale} generator, got "
                             f"generator scale {cfg.generator['scale']!r}")
        self.weights = LOSS_PRESETS[cfg.loss_preset]
        # a refinement of a stacking prefilter sees its channels (filtered, input, σ)
        channels = input_channels(cfg.degradation)
        self._generator_kwargs = {**({"in_channels": channels} if channels > 1 else {}),
                                  **cfg.generator, "scale": cfg.scale}
        self._critic_arch = cfg.critic_arch
        self.joint_fe = cfg.feature_extractor_training == "joint"
        with seeded_init(cfg.seed, "init"):
            generator = build_model("rrdb_generator", **self._generator_kwargs)
            critic = build_model(self._critic_arch, **cfg.critic)
            fe = build_model("resnet10_features", **cfg.feature_extractor)
        fe = self.context.global_batch_norm(fe)
        self.generator = self.prepare_module(generator, spatial_dims=3)
        self.critic = self.prepare_module(critic, spatial_dims=3)
        self.feature_extractor = self.prepare_module(fe, spatial_dims=3)
        if not self.joint_fe:
            self.feature_extractor.requires_grad_(False)
        self.train(True)

        self._g_params = list(self.generator.parameters())
        self._fe_params = list(self.feature_extractor.parameters()) if self.joint_fe else []
        self._c_params = list(self.critic.parameters())
        self.optimizer_g = self.make_adam(self._g_params + self._fe_params)
        self.optimizer_d = self.make_adam(self._c_params)

        self.generator_fwd = self.forward_module(self.generator, ddp=True)
        self.critic_fwd = self.forward_module(self.critic, ddp=True)  # critic step
        # generator step: never through DDP (the critic's parameters take no gradient there)
        self.critic_raw_fwd = (self.forward_module(self.critic, ddp=False)
                               if self.context.distributed else self.critic_fwd)
        self.fe_fwd = self.forward_module(self.feature_extractor, ddp=self.joint_fe)

    # ------------------------------------------------------------------------------------------
    @property
    def arch_name(self) -> str:
        return "rrdb_generator"

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        return dict(self._generator_kwargs)

    @property
    def main_model(self) -> nn.Module:
        return self.generator

    @property
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"generator": self.optimizer_g, "critic": self.optimizer_d}

    def checkpoint_extra(self) -> dict[str, Any]:
        cfg = self.config
        return {
            "critic": {"arch_name": self._critic_arch, "arch_kwargs": dict(cfg.critic)},
            "feature_extractor": {"arch_name": "resnet10_features",
                                  "arch_kwargs": dict(cfg.feature_extractor),
                                  "training": cfg.feature_extractor_training},
            "loss_weights": {"preset": cfg.loss_preset, **self.weights.to_dict()},
        }

    def modules_state(self) -> dict[str, dict[str, Tensor]]:
        return {"generator": self.generator.state_dict(), "critic": self.critic.state_dict(),
                "feature_extractor": self.feature_extractor.state_dict()}

    def load_modules_state(self, states: Mapping[str, Mapping[str, Tensor]]) -> None:
        for key, module in (("generator", self.generator), ("critic", self.critic),
                            ("feature_extractor", self.feature_extractor)):
            if key in states:
                module.load_state_dict(states[key])

    def train(self, mode: bool = True) -> None:
        for module in (self.generator, self.critic, self.feature_extractor):
            module.train(mode)

    # ------------------------------------------------------------------------------------------
    def sigma_at(self, iteration: int) -> float:
        cfg = self.config
        return instance_noise_sigma(iteration, anneal_iterations=cfg.instance_noise_iterations,
                                    start=cfg.instance_noise_start,
                                    warmup_iterations=cfg.warmup_iterations)

    def _set_critic_grad(self, flag: bool) -> None:
        for p in self._c_params:
            p.requires_grad_(flag)

    def train_step(self, source: Tensor, target: Tensor, iteration: int) -> dict[str, Tensor]:
        cfg = self.config
        lr_img = self.to_device(source)
        hr = self.to_device(target)
        lr = self.set_lr(iteration)
        nan = torch.full((), float("nan"), device=self.device)
        out = dict.fromkeys(self.loss_names, nan)
        out["lr"] = torch.full((), lr, device=self.device)

        with self.autocast():
            sr = self.generator_fwd(lr_img)
        if sr.shape != hr.shape:
            raise ValueError(f"generator output {tuple(sr.shape)} does not match the target "
                             f"{tuple(hr.shape)} (input {tuple(lr_img.shape)}, scale {cfg.scale})")
        l1 = F.l1_loss(sr.float(), hr)
        pixel = l1 if cfg.pixel_loss == "l1" else F.mse_loss(sr.float(), hr)

        if iteration < cfg.warmup_iterations:  # pixel-loss warm-up: G alone
            self.optimizer_g.zero_grad(set_to_none=True)
            pixel.backward()
            out["grad_norm_g"] = self.clip(self._g_params)
            self.optimizer_g.step()
            out.update(loss_g=pixel.detach(), l1=l1.detach(),
                       sigma=torch.full((), self.sigma_at(iteration), device=self.device))
            return out

        sigma = self.sigma_at(iteration)
        noise = self.global_randn(tuple(hr.shape)) * sigma
        if self.channels_last:
            noise = noise.contiguous(memory_format=torch.channels_last_3d)
        real_in = hr + noise
        batch = hr.shape[0]

        # generator (+ feature extractor) step; the critic is frozen
        self._set_critic_grad(False)
        try:
            with self.autocast():
                with torch.no_grad():
                    real_logits = self.critic_raw_fwd(real_in).float()
                fake_logits = self.critic_raw_fwd(sr + noise).float()
                features = self.fe_fwd(torch.cat((sr, hr.to(sr.dtype)), dim=0))
            adversarial = ragan_generator_loss(real_logits, fake_logits,
                                               batch_mean=self.context.batch_mean)
            perceptual = perceptual_loss([f[:batch] for f in features],
                                         [f[batch:] for f in features],
                                         layers=cfg.perceptual_layers)
            w = self.weights
            loss_g = w.perceptual * perceptual + w.pixel * pixel + w.adversarial * adversarial
            self.optimizer_g.zero_grad(set_to_none=True)
            loss_g.backward()
            out["grad_norm_g"] = self.clip(self._g_params + self._fe_params)
            self.optimizer_g.step()
        finally:
            self._set_critic_grad(True)

        # critic step
        with self.autocast():
            logits = self.critic_fwd(torch.cat((real_in, sr.detach().float() + noise), dim=0))
        logits = logits.float()
        real_d, fake_d = logits[:batch], logits[batch:]
        loss_d = ragan_critic_loss(real_d, fake_d, batch_mean=self.context.batch_mean)
        self.optimizer_d.zero_grad(set_to_none=True)
        loss_d.backward()
        out["grad_norm_d"] = self.clip(self._c_params)
        self.optimizer_d.step()

        out.update(loss_g=loss_g.detach(), l1=l1.detach(), perceptual=perceptual.detach(),
                   adversarial_g=adversarial.detach(), loss_d=loss_d.detach(),
                   logit_real=real_d.detach().mean(), logit_fake=fake_d.detach().mean(),
                   sigma=torch.full((), sigma, device=self.device))
        return out
