"""Slice-wise conditional diffusion inference (motion correction, ``motion-ddpm``).

Every slice along ``slice_axis`` is sampled with DDIM (:func:`bids_enhance.models.ddim_sample`),
conditioned on the corrupted slice and ``neighbours`` slices on each side (2.5D; stacks made by
:func:`bids_enhance.models.neighbour_slices`, edges replicated, exactly as in training).
Intensities are mapped as the trainer defines (:data:`bids_enhance.models.diffusion.INTENSITY_MAP`,
or the ``intensity_map`` stored in the checkpoint): ``y = scale·x + offset`` on the way in, the
inverse on the way out.

Determinism: one CPU ``torch.Generator`` seeded with ``seed`` draws the starting noise of *all*
slices at once, before any batch runs, so with ``eta = 0`` the result does not depend on the batch
size or the device's random-number generator; with ``eta > 0`` the per-step noise is drawn from
the same generator batch after batch (reproducible for a given batch size). In-plane sizes are
mirror-padded up to the U-Net's ``size_multiple`` and cropped back.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

import numpy as np
import torch
from torch import nn

from bids_enhance.inference.sliding import (
    _check_volume,
    autocast_context,
    deterministic,
    resolve_device,
    resolve_precision,
)
from bids_enhance.models import NoiseSchedule, ddim_sample, neighbour_slices
from bids_enhance.models.diffusion import INTENSITY_MAP, X0_RANGE, x0_clip

__all__ = ["diffusion_correct"]

logger = logging.getLogger(__name__)


def _intensity_map(intensity_map: Mapping[str, float] | None) -> tuple[float, float]:
    mapping = dict(INTENSITY_MAP if intensity_map is None else intensity_map)
    try:
        scale, offset = float(mapping["scale"]), float(mapping["offset"])
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"intensity_map must hold numbers 'scale' and 'offset', got "
                         f"{intensity_map!r}") from None
    if scale == 0 or not np.isfinite([scale, offset]).all():
        raise ValueError(f"intensity_map scale must be finite and non-zero, got {intensity_map!r}")
    return scale, offset


@contextlib.contextmanager
def _restore_mode(model: nn.Module, training: bool) -> Iterator[None]:
    try:
        yield
    finally:
        model.train(training)


def diffusion_correct(model: nn.Module, schedule: NoiseSchedule, volume: np.ndarray, *,
                      prediction: str = "eps", neighbours: int = 1, slice_axis: int = 2,
                      steps: int = 50, eta: float = 0.0, batch_size: int = 16,
                      device: torch.device | str = "cpu", seed: int = 0,
                      precision: str = "auto",
                      intensity_map: Mapping[str, float] | None = None,
                      clip: tuple[float, float] | None = X0_RANGE,
                      report: dict[str, Any] | None = None) -> np.ndarray:
    """Correct ``volume`` slice by slice with a conditional diffusion model.

    Args:
        model: ``model(x_t, t, condition)`` → ε or v, ``(B, 1, H, W)``, with
            ``condition`` ``(B, 2·neighbours + 1, H, W)`` (a
            :class:`~bids_enhance.models.DiffusionUNet`); moved to ``device``, run in eval mode
            (training mode restored afterwards).
        schedule: the training noise schedule (checkpoint ``extra["diffusion"]``).
        volume: ``(X, Y, Z)`` corrupted volume in normalised intensities (about [0, 1]).
        prediction: ``"eps"`` or ``"v"``, as trained.
        neighbours: slices on each side in the condition (checkpoint ``extra["neighbours"]``).
        slice_axis: voxel axis across which slices are taken.
        steps, eta: DDIM steps and stochasticity (0 = deterministic DDIM).
        batch_size: slices per network evaluation.
        device, precision: as :func:`~bids_enhance.inference.sliding.infer_volume`.
        seed: seeds the one ``torch.Generator`` (module docstring).
        intensity_map: ``{"scale", "offset"}`` of the training code (default the trainer's).
        clip: ``(low, high)`` in normalised intensities that every x0 estimate is clamped to
            (:data:`~bids_enhance.models.diffusion.X0_RANGE`); ``None`` does not clamp.
        report: a dict to fill with what was done.

    Returns:
        float32 array of ``volume``'s shape, normalised intensities.
    """
    data = _check_volume(volume)
    if isinstance(slice_axis, bool) or slice_axis not in (0, 1, 2, -1, -2, -3):
        raise ValueError(f"slice_axis must be 0, 1 or 2, got {slice_axis!r}")
    if isinstance(neighbours, bool) or int(neighbours) != neighbours or neighbours < 0:
        raise ValueError(f"neighbours must be a non-negative integer, got {neighbours!r}")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    neighbours, batch_size = int(neighbours), int(batch_size)
    expected = getattr(model, "condition_channels", None)
    if expected is not None and expected != 2 * neighbours + 1:
        raise ValueError(f"the model takes {expected} condition channels, but neighbours="
                         f"{neighbours} gives {2 * neighbours + 1}")
    scale, offset = _intensity_map(intensity_map)
    clip_x0 = None if clip is None else x0_clip(scale, offset, clip)
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)

    slices = np.moveaxis(data, slice_axis, 0)
    n, h, w = slices.shape
    multiple = int(getattr(model, "size_multiple", 1))
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        slices = np.pad(slices, ((0, 0), (0, ph), (0, pw)), mode="symmetric")
    stacks = neighbour_slices(torch.from_numpy(np.ascontiguousarray(slices)),
                              radius=neighbours, axis=0)  # (N, 2r+1, H', W')
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    x_T = torch.randn((n, 1, *stacks.shape[2:]), generator=generator, dtype=torch.float32)

    t0 = time.perf_counter()
    was_training = model.training
    net = model.to(dev).eval()
    if dev.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    out = np.empty(slices.shape, dtype=np.float32)
    with deterministic(dev), torch.inference_mode(), _restore_mode(model, was_training):
        for b0 in range(0, n, batch_size):
            cond = stacks[b0:b0 + batch_size].to(dev) * scale + offset
            if dev.type == "cuda":
                cond = cond.contiguous(memory_format=torch.channels_last)

            def denoise(x: torch.Tensor, t: torch.Tensor, cond: torch.Tensor = cond
                        ) -> torch.Tensor:
                with autocast_context(precision, dev):
                    return net(x, t, cond).float()

            y = ddim_sample(denoise, schedule, shape=tuple(x_T[b0:b0 + batch_size].shape),
                            steps=steps, eta=eta, prediction=prediction, generator=generator,
                            device=dev, x_T=x_T[b0:b0 + batch_size], clip_x0=clip_x0)
            out[b0:b0 + batch_size] = ((y[:, 0] - offset) / scale).cpu().numpy()
            logger.debug("diffusion: slices %d-%d of %d", b0, min(b0 + batch_size, n), n)
    seconds = time.perf_counter() - t0
    if report is not None:
        report.update(mode="slices", slices=n, slice_axis=slice_axis, neighbours=neighbours,
                      steps=steps, eta=eta, seed=int(seed), batch_size=batch_size,
                      clip=None if clip is None else [float(v) for v in clip],
                      precision=precision, device=str(dev), seconds=seconds)
    return np.ascontiguousarray(np.moveaxis(out[:, :h, :w], 0, slice_axis))
