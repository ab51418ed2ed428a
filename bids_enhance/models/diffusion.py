"""Diffusion maths: noise schedules, training targets (ε or v), and the DDIM sampler.

Notation (Ho et al. 2020; Song et al. 2021; Salimans & Ho 2022): ``ᾱ_t = Π_{s≤t} (1 − β_s)``,
``x_t = √ᾱ_t · x0 + √(1 − ᾱ_t) · ε``, ``v = √ᾱ_t · ε − √(1 − ᾱ_t) · x0``. Timesteps are integers
``0 … T−1`` (``t = 0`` is the least noisy). Schedule coefficients are kept in float64 and cast to
the data's dtype when used.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from bids_enhance.models._checks import check_choice, check_float, check_int

__all__ = [
    "INTENSITY_MAP",
    "X0_RANGE",
    "x0_clip",
    "PREDICTION_TYPES",
    "SCHEDULE_KINDS",
    "NoiseSchedule",
    "cosine_betas",
    "ddim_sample",
    "ddim_timesteps",
    "linear_betas",
    "neighbour_slices",
]

#: diffusion-space intensities: ``y = scale·x + offset`` of normalised intensities ``x`` (the
#: trainer maps into it and inference maps back; recorded in every diffusion checkpoint)
INTENSITY_MAP = {"scale": 2.0, "offset": -1.0}

#: range of the clean image in normalised intensities (robust maximum → 1; magnitudes are ≥ 0 and
#: the brightest voxels of the benchmark heads reach 1.3–2.9): DDIM clamps each x0 estimate to
#: it (mapped by the intensity map), as DDPM's ``clip_denoised`` does. Without it the x0 estimate
#: of an ε-model at the noisiest steps, divided by √ᾱ_t ≈ 0.006, can run away and the sample
#: explode — seen with a compact model early in training (PSNR −27 dB).
X0_RANGE = (0.0, 3.0)


def x0_clip(scale: float, offset: float,
            normalised: tuple[float, float] = X0_RANGE) -> tuple[float, float]:
    """``normalised`` (low, high) mapped into diffusion space by ``y = scale·x + offset``: the
    ``clip_x0`` of :func:`ddim_sample`."""
    low, high = (float(v) for v in normalised)
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"clip must be (low, high) with low < high, got {normalised!r}")
    a, b = scale * low + offset, scale * high + offset
    return (min(a, b), max(a, b))

PREDICTION_TYPES = ("eps", "v")
SCHEDULE_KINDS = ("linear", "cosine")


def linear_betas(num_steps: int = 1000, *, beta_start: float = 1e-4,
                 beta_end: float = 2e-2) -> Tensor:
    """β linearly from ``beta_start`` to ``beta_end`` (DDPM; the thesis), float64 ``(T,)``."""
    num_steps = check_int("num_steps", num_steps, minimum=2)
    beta_start = check_float("beta_start", beta_start, minimum=0.0, maximum=1.0)
    beta_end = check_float("beta_end", beta_end, minimum=0.0, maximum=1.0)
    if not 0 < beta_start <= beta_end < 1:
        raise ValueError(f"need 0 < beta_start <= beta_end < 1, got {beta_start}, {beta_end}")
    return torch.linspace(beta_start, beta_end, num_steps, dtype=torch.float64)


def cosine_betas(num_steps: int = 1000, *, offset: float = 0.008,
                 max_beta: float = 0.999) -> Tensor:
    """Cosine schedule (Nichol & Dhariwal 2021): ``ᾱ(t) ∝ cos²((t/T + s)/(1 + s) · π/2)``,
    β clipped at ``max_beta``; float64 ``(T,)``."""
    num_steps = check_int("num_steps", num_steps, minimum=2)
    offset = check_float("offset", offset, minimum=0.0)
    max_beta = check_float("max_beta", max_beta, minimum=0.0, maximum=1.0)
    steps = torch.arange(num_steps + 1, dtype=torch.float64) / num_steps
    f = torch.cos((steps + offset) / (1 + offset) * math.pi / 2) ** 2
    alpha_bar = f / f[0]
    betas = 1 - alpha_bar[1:] / alpha_bar[:-1]
    return betas.clamp(min=0.0, max=max_beta)


class NoiseSchedule:
    """A discrete noise schedule and the conversions between x0, ε and v.

    Build with :meth:`from_config` (``{"kind": "linear"|"cosine", "num_steps": T, ...}``) and record
    :meth:`config` in the checkpoint (``extra["diffusion"]``) so sampling uses the same schedule.
    """

    def __init__(self, betas: Tensor, *, config: dict[str, Any] | None = None) -> None:
        betas = torch.as_tensor(betas, dtype=torch.float64).flatten()
        if betas.numel() < 2 or not bool(((betas > 0) & (betas < 1)).all()):
            raise ValueError("betas must hold at least 2 values, each in (0, 1)")
        self.betas = betas
        self.alphas_cumprod = torch.cumprod(1 - betas, dim=0)
        self._config = dict(config) if config is not None else {"kind": "custom"}

    @classmethod
    def from_config(cls, config: dict[str, Any] | None = None, /, **kwargs: Any) -> NoiseSchedule:
        """``kind`` ("linear" or "cosine"), ``num_steps`` and the kind's keyword arguments."""
        cfg = {**(config or {}), **kwargs}
        kind = check_choice("kind", cfg.pop("kind", "linear"), SCHEDULE_KINDS)
        maker = linear_betas if kind == "linear" else cosine_betas
        betas = maker(**cfg)
        full = {"kind": kind, "num_steps": int(betas.numel()), **cfg}
        return cls(betas, config=full)

    def config(self) -> dict[str, Any]:
        """Plain-data description (for checkpoints and model cards)."""
        return dict(self._config)

    @property
    def num_steps(self) -> int:
        return int(self.betas.numel())

    def _coef(self, values: Tensor, t: Tensor, like: Tensor) -> Tensor:
        t = torch.as_tensor(t, device=values.device).long()
        if t.ndim == 0:
            t = t.expand(like.shape[0])
        if t.min() < 0 or t.max() >= self.num_steps:
            raise ValueError(f"timesteps must be in [0, {self.num_steps}), got "
                             f"[{int(t.min())}, {int(t.max())}]")
        out = values[t].to(device=like.device, dtype=like.dtype)
        return out.reshape(-1, *([1] * (like.ndim - 1)))

    def sqrt_alpha_bar(self, t: Tensor, like: Tensor) -> Tensor:
        return self._coef(self.alphas_cumprod.sqrt(), t, like)

    def sqrt_one_minus_alpha_bar(self, t: Tensor, like: Tensor) -> Tensor:
        return self._coef((1 - self.alphas_cumprod).sqrt(), t, like)

    def q_sample(self, x0: Tensor, t: Tensor, noise: Tensor) -> Tensor:
        """``x_t = √ᾱ_t·x0 + √(1−ᾱ_t)·ε`` (``t`` of shape ``(B,)`` or a scalar)."""
        return self.sqrt_alpha_bar(t, x0) * x0 + self.sqrt_one_minus_alpha_bar(t, x0) * noise

    def training_target(self, x0: Tensor, noise: Tensor, t: Tensor, *,
                        prediction: str = "eps") -> Tensor:
        """What the network should output: ``ε`` or ``v = √ᾱ_t·ε − √(1−ᾱ_t)·x0``."""
        check_choice("prediction", prediction, PREDICTION_TYPES)
        if prediction == "eps":
            return noise
        return self.sqrt_alpha_bar(t, x0) * noise - self.sqrt_one_minus_alpha_bar(t, x0) * x0

    def predict_x0_eps(self, x_t: Tensor, t: Tensor, output: Tensor, *,
                       prediction: str = "eps") -> tuple[Tensor, Tensor]:
        """Convert a network output (ε or v) at ``x_t`` into the implied ``(x0, ε)``."""
        check_choice("prediction", prediction, PREDICTION_TYPES)
        a = self.sqrt_alpha_bar(t, x_t)
        s = self.sqrt_one_minus_alpha_bar(t, x_t)
        if prediction == "eps":
            eps = output
            x0 = (x_t - s * eps) / a
        else:
            x0 = a * x_t - s * output
            eps = s * x_t + a * output
        return x0, eps


def ddim_timesteps(num_train_steps: int, steps: int) -> list[int]:
    """Descending timesteps for DDIM, "trailing" spacing (starts at ``T−1``, Lin et al. 2024):
    ``round(T − k·T/steps) − 1`` for ``k = 0 … steps−1``."""
    num_train_steps = check_int("num_train_steps", num_train_steps, minimum=1)
    steps = check_int("steps", steps)
    if steps > num_train_steps:
        raise ValueError(f"steps must be <= the schedule's {num_train_steps} steps, got {steps}")
    stride = num_train_steps / steps
    return [int(round(num_train_steps - k * stride)) - 1 for k in range(steps)]


@torch.no_grad()
def ddim_sample(denoise_fn: Callable[[Tensor, Tensor], Tensor], schedule: NoiseSchedule, *,
                shape: tuple[int, ...], steps: int = 50, eta: float = 0.0,
                prediction: str = "eps", generator: torch.Generator | None = None,
                device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                x_T: Tensor | None = None,
                clip_x0: tuple[float, float] | None = None) -> Tensor:
    """Sample with DDIM (Song et al. 2021) in ``steps`` network evaluations.

    ``denoise_fn(x_t, t)`` returns the network output (ε or v, per ``prediction``) for a batch
    ``x_t`` of ``shape`` and integer timesteps ``t`` of shape ``(B,)``; bind the condition in it,
    e.g. ``lambda x, t: model(x, t, condition)``. ``eta=0`` is deterministic given ``x_T``;
    ``eta=1`` matches DDPM's posterior variance. All noise (``x_T`` unless given, and the
    ``eta > 0`` noise) comes from ``generator``, so a seeded generator reproduces a sample.
    ``clip_x0=(lo, hi)`` clamps each x0 estimate (e.g. ``(-1, 1)``). Returns x0 of ``shape``.
    """
    check_choice("prediction", prediction, PREDICTION_TYPES)
    eta = check_float("eta", eta, minimum=0.0)
    timesteps = ddim_timesteps(schedule.num_steps, steps)
    abar = schedule.alphas_cumprod

    def noise_like() -> Tensor:
        return torch.randn(shape, generator=generator, dtype=torch.float32,
                           device=generator.device if generator is not None else device
                           ).to(device=device, dtype=dtype)

    x = noise_like() if x_T is None else x_T.to(device=device, dtype=dtype)
    if tuple(x.shape) != tuple(shape):
        raise ValueError(f"x_T must have shape {tuple(shape)}, got {tuple(x.shape)}")
    for i, t in enumerate(timesteps):
        t_prev = timesteps[i + 1] if i + 1 < len(timesteps) else -1
        a_t = float(abar[t])
        a_prev = float(abar[t_prev]) if t_prev >= 0 else 1.0
        t_batch = torch.full((shape[0],), t, device=device, dtype=torch.long)
        out = denoise_fn(x, t_batch).to(dtype)
        x0, eps = schedule.predict_x0_eps(x, t_batch, out, prediction=prediction)
        if clip_x0 is not None:
            x0 = x0.clamp(*clip_x0)
            eps = (x - math.sqrt(a_t) * x0) / math.sqrt(1 - a_t)
        sigma = eta * math.sqrt((1 - a_prev) / (1 - a_t) * (1 - a_t / a_prev))
        direction = math.sqrt(max(1 - a_prev - sigma**2, 0.0))
        x = math.sqrt(a_prev) * x0 + direction * eps
        if sigma > 0:
            x = x + sigma * noise_like()
    return x


def neighbour_slices(volume: Tensor, *, radius: int = 1, axis: int = 0) -> Tensor:
    """2.5D stacks: ``(D, H, W)`` → ``(N, 2·radius + 1, …)``, one stack per slice along ``axis``,
    channel ``radius`` being the slice itself and the others its neighbours (edges replicated).

    Example: ``neighbour_slices(vol, radius=1)`` gives the 3-channel conditions of every axial
    slice for a :class:`~bids_enhance.models.diffusion_unet.DiffusionUNet` with
    ``condition_channels=3``.
    """
    check_int("radius", radius, minimum=0)
    if volume.ndim != 3:
        raise ValueError(f"expected a 3D volume, got shape {tuple(volume.shape)}")
    vol = volume.movedim(axis, 0)
    n = vol.shape[0]
    offsets = torch.arange(-radius, radius + 1, device=vol.device)
    index = (torch.arange(n, device=vol.device)[:, None] + offsets[None]).clamp(0, n - 1)
    return vol[index]  # (N, 2r+1, ...)
