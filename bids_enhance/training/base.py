"""What the GAN and diffusion trainers share: device, precision, memory format, compilation,
DDP wrapping, step noise for the global batch, learning-rate schedule, optimiser construction.

A trainer owns its networks and optimisers and exposes one ``train_step(source, target,
iteration) -> dict[str, Tensor]`` (detached float32 scalars, no host synchronisation); the loop
(:func:`bids_enhance.training.engine.fit`) owns data, logging, checkpoints and validation.
"""

from __future__ import annotations

import contextlib
import math
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from typing import Any

import torch
from torch import Tensor, nn

from bids_enhance.training.config import TrainConfig
from bids_enhance.training.ddp import DistributedContext, resolve_device
from bids_enhance.training.seeding import child_seed

__all__ = ["Trainer", "resolve_precision"]


def resolve_precision(precision: str, device: torch.device) -> str:
    """``auto`` → ``bf16`` on CUDA devices that support it, ``fp32`` otherwise; ``bf16`` on a CPU
    means CPU bf16 autocast (slow on most CPUs; for benchmarks)."""
    if precision == "auto":
        if device.type == "cuda" and torch.cuda.is_bf16_supported():
            return "bf16"
        return "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision must be 'auto', 'bf16' or 'fp32', got {precision!r}")
    return precision


class Trainer(ABC):
    """Base class of :class:`~bids_enhance.training.gan.GANTrainer` and
    :class:`~bids_enhance.training.diffusion.DiffusionTrainer`."""

    #: names of the values ``train_step`` returns, in CSV column order
    loss_names: tuple[str, ...] = ()

    #: spatial dimensions of the networks (3: the GANs; 2: the slice-wise diffusion U-Net)
    SPATIAL_DIMS = 3

    def __init__(self, config: TrainConfig, *, context: DistributedContext | None = None) -> None:
        if not isinstance(config, TrainConfig):
            raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
        self.config = config.resolved()
        self.context = context if context is not None else DistributedContext(
            device=resolve_device(self.config.device))
        self.device = self.context.device
        self.precision = resolve_precision(self.config.precision, self.device)
        cuda = self.device.type == "cuda"
        # channels_last: on CUDA, and on the CPU for 3D networks (oneDNN's 3D convolutions: the
        # compact generators' L1 steps 1.4–1.5× faster, docs/benchmarks/infer_speed.md)
        self.channels_last = ((cuda or self.SPATIAL_DIMS == 3) if self.config.channels_last is None
                              else self.config.channels_last)
        self.fused = cuda if self.config.fused is None else self.config.fused
        if cuda:
            # fixed patch shapes: let cuDNN pick the fastest convolution algorithms
            torch.backends.cudnn.benchmark = True
        self.step_generator = torch.Generator(device=self.device)
        self.step_generator.manual_seed(child_seed(self.config.seed, "step-noise"))

    # ------------------------------------------------------------------------------------------
    # what subclasses provide
    # ------------------------------------------------------------------------------------------
    @property
    @abstractmethod
    def arch_name(self) -> str:
        """Registry name of the network the checkpoint stores."""

    @property
    @abstractmethod
    def arch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that rebuild it."""

    @property
    @abstractmethod
    def main_model(self) -> nn.Module:
        """The (unwrapped) network the checkpoint stores."""

    @property
    def ema_model(self) -> nn.Module | None:
        """The EMA copy of :attr:`main_model`, if any."""
        return None

    def inference_model(self) -> nn.Module:
        """The network validation runs (EMA weights when present)."""
        return self.ema_model if self.ema_model is not None else self.main_model

    def checkpoint_extra(self) -> dict[str, Any]:
        """Task-specific plain data for the checkpoint's ``extra`` entry."""
        return {}

    @abstractmethod
    def train_step(self, source: Tensor, target: Tensor, iteration: int) -> dict[str, Tensor]:
        """One optimisation step on this rank's batch; returns detached float32 scalars named
        by :attr:`loss_names`."""

    @abstractmethod
    def modules_state(self) -> dict[str, dict[str, Tensor]]:
        """State dicts of every network (unwrapped), keyed by role."""

    @abstractmethod
    def load_modules_state(self, states: Mapping[str, Mapping[str, Tensor]]) -> None:
        """Inverse of :meth:`modules_state` (roles missing from ``states`` are left as they are)."""

    @property
    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimisers, keyed by role."""

    @abstractmethod
    def train(self, mode: bool = True) -> None:
        """Put every network in training (or eval) mode."""

    # ------------------------------------------------------------------------------------------
    # state for exact resumption
    # ------------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything that continues the run bit for bit: networks, optimisers, step RNG."""
        return {
            "modules": self.modules_state(),
            "optimizers": {k: opt.state_dict() for k, opt in self.optimizers.items()},
            "step_generator": self.step_generator.get_state(),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.load_modules_state(state["modules"])
        for key, opt in self.optimizers.items():
            if key not in state["optimizers"]:
                raise ValueError(f"training state lacks the {key!r} optimiser")
            opt.load_state_dict(state["optimizers"][key])
        self.step_generator.set_state(state["step_generator"].cpu())

    # ------------------------------------------------------------------------------------------
    # helpers
    # ------------------------------------------------------------------------------------------
    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast when the resolved precision is ``bf16`` (CUDA or CPU), else a no-op."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _memory_format(self, ndim: int) -> torch.memory_format | None:
        if not self.channels_last:
            return None
        return {5: torch.channels_last_3d, 4: torch.channels_last}.get(ndim)

    def prepare_module(self, module: nn.Module, *, spatial_dims: int) -> nn.Module:
        """Move ``module`` to the device (channels-last when enabled)."""
        module = module.to(self.device)
        fmt = self._memory_format(spatial_dims + 2)
        if fmt is not None:
            module = module.to(memory_format=fmt)
        return module

    def forward_module(self, module: nn.Module, *, ddp: bool) -> nn.Module:
        """What the step calls: ``module`` wrapped in DDP (``ddp=True`` and several processes)
        and compiled (``config.compile``)."""
        out = self.context.wrap(module) if ddp else module
        if self.config.compile:
            # static shapes: the critic sees batches of B and 2B, each gets its own graph
            out = torch.compile(out, dynamic=False)
        return out

    def to_device(self, x: Tensor) -> Tensor:
        """A batch on the device, float32, channels-last when enabled."""
        x = x.to(self.device, dtype=torch.float32, non_blocking=True)
        fmt = self._memory_format(x.ndim)
        return x.contiguous(memory_format=fmt) if fmt is not None else x

    def global_randn(self, local_shape: tuple[int, ...]) -> Tensor:
        """Standard normal noise for this rank's share of the global batch: drawn for all
        ranks' samples from the step generator (so N processes × B equal one × N·B) and sliced."""
        shape = (local_shape[0] * self.context.world_size, *local_shape[1:])
        noise = torch.randn(shape, generator=self.step_generator, device=self.device)
        return self.context.shard(noise)

    def global_randint(self, high: int, batch: int) -> Tensor:
        """Integers in ``[0, high)`` for this rank's share of the global batch (see
        :meth:`global_randn`)."""
        values = torch.randint(0, high, (batch * self.context.world_size,),
                               generator=self.step_generator, device=self.device)
        return self.context.shard(values)

    def lr_at(self, iteration: int) -> float:
        """Learning rate at ``iteration``: constant, or cosine decay from ``lr`` to 0 (a pure
        function of the iteration, so no scheduler state needs saving)."""
        base = float(self.config.lr)
        if self.config.lr_schedule == "cosine":
            progress = min(iteration / max(self.config.iterations, 1), 1.0)
            return base * 0.5 * (1.0 + math.cos(math.pi * progress))
        return base

    def set_lr(self, iteration: int) -> float:
        lr = self.lr_at(iteration)
        for opt in self.optimizers.values():
            for group in opt.param_groups:
                group["lr"] = lr
        return lr

    def make_adam(self, params: Iterable[nn.Parameter], *, adamw: bool = False
                  ) -> torch.optim.Optimizer:
        """Adam (AdamW with ``adamw``) with the config's lr, betas and weight decay; fused when
        enabled (default on CUDA), otherwise the multi-tensor implementation."""
        cls = torch.optim.AdamW if adamw else torch.optim.Adam
        kwargs: dict[str, Any] = {"lr": self.config.lr, "betas": tuple(self.config.betas),
                                  "weight_decay": self.config.weight_decay}
        if self.fused:
            kwargs["fused"] = True
        else:
            kwargs["foreach"] = self.device.type == "cuda"
        return cls(list(params), **kwargs)

    def clip(self, params: list[nn.Parameter]) -> Tensor:
        """Clip the global gradient norm to ``config.grad_clip`` (no clipping when ``None``);
        return the norm before clipping (a device tensor, no synchronisation)."""
        grads = [p for p in params if p.grad is not None]
        if not grads:
            return torch.full((), float("nan"), device=self.device)
        max_norm = self.config.grad_clip if self.config.grad_clip is not None else math.inf
        return torch.nn.utils.clip_grad_norm_(grads, max_norm,
                                              foreach=self.device.type == "cuda").float()
