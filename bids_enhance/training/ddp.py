"""Multi-process training with ``torchrun`` (DistributedDataParallel), CPU (gloo) or CUDA (NCCL).

``torchrun --nproc_per_node=N -m bids_enhance.training --spec run.json`` (see
:mod:`bids_enhance.training.__main__`) starts N processes; each calls
:meth:`DistributedContext.from_env`, which initialises the default process group from the
``RANK``/``WORLD_SIZE``/``MASTER_ADDR`` environment that torchrun sets. Without those variables
the context is a single process and nothing distributed happens.

What makes N processes with batch B equal one process with batch N·B (up to floating-point
summation order), which ``tests/training/test_ddp.py`` checks:

- the patch stream is generated identically on every rank and rank ``r`` takes patches
  ``[r·B, (r+1)·B)`` of every global batch of N·B (a ``DistributedSampler`` equivalent that keeps
  the global batch independent of N);
- step noise (instance noise, diffusion timesteps and noise) is drawn for the global batch from
  identically seeded generators, and each rank takes its slice;
- gradients are averaged by DDP; the batch means inside the relativistic GAN loss are global
  (:meth:`DistributedContext.batch_mean`, a differentiable all-reduce on a separate process
  group); BatchNorm statistics of the feature extractor are global (``nn.SyncBatchNorm`` on CUDA,
  :class:`GlobalBatchNorm3d` on CPU, where ``SyncBatchNorm`` is not implemented);
- only rank 0 writes files (checkpoints, CSV, plots) and runs validation.
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn

from bids_enhance.device import resolve_device

__all__ = ["DistributedContext", "GlobalBatchNorm3d", "resolve_device"]

LOGGER = logging.getLogger(__name__)


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks whose backward is again a sum over ranks (every rank consumes the
    result, so the gradient of the total loss w.r.t. a rank's input sums all ranks' gradients)."""

    @staticmethod
    def forward(ctx, tensor: Tensor, group: Any) -> Tensor:  # type: ignore[override]
        ctx.group = group
        out = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[Tensor, None]:  # type: ignore[override]
        out = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(out, group=ctx.group)
        return out, None


def _all_reduce_sum(tensor: Tensor, group: Any) -> Tensor:
    return _AllReduceSum.apply(tensor, group)


class GlobalBatchNorm3d(nn.BatchNorm3d):
    """``BatchNorm3d`` whose training-mode statistics are taken over all ranks (any device).

    Same parameters, buffers and state-dict keys as ``nn.BatchNorm3d``; behaves exactly like it
    outside an initialised multi-process group or in eval mode. Statistics are the sums of
    ``x`` and ``x²`` all-reduced in float32 (differentiable). Used on CPU/gloo, where
    ``nn.SyncBatchNorm`` raises.
    """

    process_group: Any = None

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size(self.process_group) > 1):
            return super().forward(x)
        if x.ndim != 5:
            raise ValueError(f"GlobalBatchNorm3d expects (B, C, D, H, W), got {tuple(x.shape)}")
        c = x.shape[1]
        dims = (0, 2, 3, 4)
        xf = x.float()
        count = torch.full((1,), xf.numel() / c, dtype=torch.float32, device=x.device)
        stats = _all_reduce_sum(torch.cat([xf.sum(dims), (xf * xf).sum(dims), count]),
                                self.process_group)
        n = stats[-1]
        mean = stats[:c] / n
        var = (stats[c:2 * c] / n - mean * mean).clamp_min(0.0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None
                            else self.momentum)
                unbiased = var * (n / (n - 1)).clamp_min(0.0) if float(n) > 1 else var
                self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), momentum)
                self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), momentum)
        shape = (1, c, 1, 1, 1)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def _convert_global_bn(module: nn.Module, group: Any) -> nn.Module:
    out = module
    if isinstance(module, nn.BatchNorm3d) and not isinstance(module, GlobalBatchNorm3d):
        out = GlobalBatchNorm3d(module.num_features, eps=module.eps, momentum=module.momentum,
                                affine=module.affine,
                                track_running_stats=module.track_running_stats)
        out.process_group = group
        with torch.no_grad():
            if module.affine:
                out.weight.copy_(module.weight)
                out.bias.copy_(module.bias)
            if module.track_running_stats:
                out.running_mean.copy_(module.running_mean)
                out.running_var.copy_(module.running_var)
                out.num_batches_tracked.copy_(module.num_batches_tracked)
        out.to(device=module.weight.device if module.affine else None)
        out.train(module.training)
    for name, child in module.named_children():
        out.add_module(name, _convert_global_bn(child, group))
    return out


@dataclass
class DistributedContext:
    """Where this process sits in a (possibly one-process) run.

    ``rank``/``world_size``/``local_rank``: from torchrun's environment; ``device``: this
    process's device; ``stats_group``: the process group of loss statistics (separate from the
    one DDP's gradient buckets use, so the two never interleave).
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    backend: str | None = None
    stats_group: Any = None
    initialised_here: bool = False

    @classmethod
    def from_env(cls, device: str = "auto", *, timeout_s: float = 1800.0) -> DistributedContext:
        """Single process unless ``WORLD_SIZE`` > 1 in the environment (torchrun); then join (or
        reuse) the default process group: NCCL on CUDA, gloo on CPU."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", str(rank)))
        dev = resolve_device(device, local_rank=local_rank)
        if world <= 1:
            return cls(device=dev)
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        initialised_here = False
        if not dist.is_initialized():
            backend = "nccl" if dev.type == "cuda" else "gloo"
            dist.init_process_group(backend=backend, init_method="env://", rank=rank,
                                    world_size=world,
                                    timeout=_dt.timedelta(seconds=timeout_s))
            initialised_here = True
        backend = dist.get_backend()
        stats_group = dist.new_group(backend=backend)
        LOGGER.info("DDP rank %d/%d on %s (%s)", rank, world, dev, backend)
        return cls(rank=rank, world_size=world, local_rank=local_rank, device=dev,
                   backend=backend, stats_group=stats_group, initialised_here=initialised_here)

    # ------------------------------------------------------------------------------------------
    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, global_batch: Tensor) -> Tensor:
        """This rank's slice ``[rank·B, (rank+1)·B)`` of a tensor holding the global batch."""
        if not self.distributed:
            return global_batch
        n = global_batch.shape[0]
        if n % self.world_size:
            raise ValueError(f"global batch of {n} does not split over {self.world_size} ranks")
        b = n // self.world_size
        return global_batch[self.rank * b:(self.rank + 1) * b]

    def batch_mean(self, x: Tensor) -> Tensor:
        """Mean over the global batch (dimension 0, kept), differentiable; every rank must hold
        the same local batch size."""
        if not self.distributed:
            return x.mean(dim=0, keepdim=True)
        total = _all_reduce_sum(x.sum(dim=0, keepdim=True), self.stats_group)
        return total / (x.shape[0] * self.world_size)

    def mean_over_ranks(self, x: Tensor) -> Tensor:
        """Mean of ``x`` over ranks (no gradient; for logging)."""
        if not self.distributed:
            return x
        out = x.detach().clone()
        dist.all_reduce(out, group=self.stats_group)
        return out / self.world_size

    def global_batch_norm(self, module: nn.Module) -> nn.Module:
        """Make the BatchNorm layers of ``module`` use global statistics (no-op for one
        process): ``nn.SyncBatchNorm`` on CUDA, :class:`GlobalBatchNorm3d` elsewhere."""
        if not self.distributed:
            return module
        if self.device.type == "cuda":
            return nn.SyncBatchNorm.convert_sync_batchnorm(module, process_group=self.stats_group)
        return _convert_global_bn(module, self.stats_group)

    def wrap(self, module: nn.Module) -> nn.Module:
        """``DistributedDataParallel(module)`` for several processes, ``module`` otherwise.

        Buffers are not broadcast (BatchNorm statistics are already global), and every
        parameter must take part in each backward of the wrapper.
        """
        if not self.distributed:
            return module
        ids = [self.device.index] if self.device.type == "cuda" else None
        return nn.parallel.DistributedDataParallel(module, device_ids=ids,
                                                   broadcast_buffers=False)

    def barrier(self) -> None:
        if self.distributed:
            dist.barrier()

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank."""
        if not self.distributed:
            return obj
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def close(self) -> None:
        """Destroy the process group if this context created it."""
        if self.initialised_here and dist.is_initialized():
            dist.destroy_process_group()
            self.initialised_here = False
