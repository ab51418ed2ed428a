"""Losses of the three-player GAN: relativistic average GAN loss, perceptual loss, presets,
and the instance-noise schedule.

Relativistic average GAN (Jolicoeur-Martineau 2019, as in ESRGAN), binary cross-entropy on logits:

- critic: ``½ [BCE(C(r) − E C(f), 1) + BCE(C(f) − E C(r), 0)]``
- generator (the mirrored pair): ``½ [BCE(C(f) − E C(r), 1) + BCE(C(r) − E C(f), 0)]``

``E`` is the mean over the batch, taken separately at every logit position (the patch logits of
:class:`~bids_enhance.models.ResNetCritic`, the per-voxel logits of
:class:`~bids_enhance.models.WaveletUNetCritic`), as in the authors' released code
(``pred.mean(0, keepdim=True)``). Under DDP the batch mean is over the *global* batch
(``batch_mean`` argument, see :meth:`bids_enhance.training.ddp.DistributedContext.batch_mean`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from types import MappingProxyType

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = [
    "LOSS_PRESETS",
    "LossWeights",
    "instance_noise_sigma",
    "perceptual_loss",
    "ragan_critic_loss",
    "ragan_generator_loss",
]

BatchMean = Callable[[Tensor], Tensor]


def _local_batch_mean(x: Tensor) -> Tensor:
    return x.mean(dim=0, keepdim=True)


def _check_logits(real: Tensor, fake: Tensor) -> None:
    if real.shape != fake.shape:
        raise ValueError(f"real and fake logits must have the same shape, got {tuple(real.shape)} "
                         f"and {tuple(fake.shape)}")
    if real.ndim < 1 or real.shape[0] < 1:
        raise ValueError(f"logits need a batch dimension, got shape {tuple(real.shape)}")


def ragan_critic_loss(real: Tensor, fake: Tensor, *,
                      batch_mean: BatchMean = _local_batch_mean) -> Tensor:
    """Critic loss ``½ [BCE(C(r) − E C(f), 1) + BCE(C(f) − E C(r), 0)]`` on logits
    ``(B, …)``; computed in float32 whatever the logits' dtype."""
    _check_logits(real, fake)
    real, fake = real.float(), fake.float()
    real_rel = real - batch_mean(fake)
    fake_rel = fake - batch_mean(real)
    return 0.5 * (F.binary_cross_entropy_with_logits(real_rel, torch.ones_like(real_rel))
                  + F.binary_cross_entropy_with_logits(fake_rel, torch.zeros_like(fake_rel)))


def ragan_generator_loss(real: Tensor, fake: Tensor, *,
                         batch_mean: BatchMean = _local_batch_mean) -> Tensor:
    """Generator loss, the mirrored pair ``½ [BCE(C(f) − E C(r), 1) + BCE(C(r) − E C(f), 0)]``.

    Pass ``real`` detached (the generator step does not differentiate the critic on real data);
    the gradient reaches the generator through ``fake`` in both terms.
    """
    _check_logits(real, fake)
    real, fake = real.float(), fake.float()
    fake_rel = fake - batch_mean(real)
    real_rel = real - batch_mean(fake)
    return 0.5 * (F.binary_cross_entropy_with_logits(fake_rel, torch.ones_like(fake_rel))
                  + F.binary_cross_entropy_with_logits(real_rel, torch.zeros_like(real_rel)))


def perceptual_loss(features_a: Sequence[Tensor], features_b: Sequence[Tensor], *,
                    layers: Sequence[int] | None = None) -> Tensor:
    """Mean over the chosen layers of ``mean |a − b|`` (float32).

    ``features_a``/``features_b``: the lists returned by
    :class:`~bids_enhance.models.ResNet10Features` for the two images; ``layers``: indices into
    them (negative allowed; default all). The authors' code compared the last layer only
    (``layers=(-1,)``).
    """
    if len(features_a) != len(features_b) or not features_a:
        raise ValueError(f"need two equally long, non-empty feature lists, got "
                         f"{len(features_a)} and {len(features_b)}")
    n = len(features_a)
    chosen = range(n) if layers is None else layers
    terms = []
    for i in chosen:
        if not -n <= i < n:
            raise ValueError(f"perceptual layer {i} does not exist; the feature extractor has "
                             f"{n} layers (indices 0 … {n - 1} or negative)")
        terms.append(F.l1_loss(features_a[i].float(), features_b[i].float()))
    return torch.stack(terms).mean()


@dataclass(frozen=True)
class LossWeights:
    """Weights of the generator loss ``perceptual·L_perc + pixel·L1 + adversarial·L_RaGAN``."""

    perceptual: float
    pixel: float
    adversarial: float

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


#: ``thesis``: ``L_perc + 0.01·L1 + 0.005·L_RaGAN`` (the thesis and the paper's text);
#: ``released-code``: ``L1 + 0.01·L_perc + 0.005·L_RaGAN`` (what the authors' code computes).
LOSS_PRESETS = MappingProxyType({
    "thesis": LossWeights(perceptual=1.0, pixel=0.01, adversarial=0.005),
    "released-code": LossWeights(perceptual=0.01, pixel=1.0, adversarial=0.005),
})


def instance_noise_sigma(iteration: int, *, anneal_iterations: int, start: float = 1.0,
                         warmup_iterations: int = 0) -> float:
    """σ of the instance noise at (0-based) ``iteration``: ``start`` at the first adversarial
    iteration (``warmup_iterations``), falling linearly to 0 at ``warmup_iterations +
    anneal_iterations`` and 0 afterwards. During the warm-up (no critic) it is ``start``."""
    if anneal_iterations < 1:
        raise ValueError(f"anneal_iterations must be >= 1, got {anneal_iterations}")
    progress = (iteration - warmup_iterations) / anneal_iterations
    return float(start * min(max(1.0 - progress, 0.0), 1.0))
