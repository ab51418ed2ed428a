"""Default validation: run the network being trained on held-out volumes and measure quality.

The training loop calls ``evaluate(model) -> {name: float}`` every ``validate_every`` iterations
and at the end. These defaults need no files: each held-out :class:`TrainingVolume` is degraded
once (whole volume, child seed ``("validation", subject)``), a central region is cut (edge
``validation_crop`` target voxels; LR region aligned to even HR origins for x2), the network runs
on it (through :func:`~bids_enhance.inference.sliding.infer_volume`, the participant run's
inference path: memory-planned patches, mirrored halo, Gaussian blending) and :func:`bids_enhance.metrics.quality.evaluate` (protocol mode:
99.9th-percentile normalisation, PSNR/3D SSIM/NRMSE/HFEN inside the head mask) compares the result
with the clean region. Metrics are averaged over volumes; the same measures of a reference
(x2: cubic B-spline upsampling with the exact x2 geometry; scale 1: the corrupted input itself)
are reported as ``baseline_*``, computed once.

The lead's workflow may pass its own evaluator that runs the inference node; one accepting a
``checkpoint`` keyword receives the path of a freshly written checkpoint of the current weights.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from bids_enhance.training.data import TrainingVolume, _crop_pad
from bids_enhance.training.seeding import child_seed, numpy_generator

__all__ = ["DiffusionSliceEvaluator", "SuperResolutionEvaluator", "make_default_evaluator"]

AutocastFactory = Callable[[], contextlib.AbstractContextManager]


def _central_origin(shape: Sequence[int], crop: int | None, multiple: int) -> tuple[list[int], list[int]]:
    """Origin and size of a central crop (sizes and origin multiples of ``multiple``)."""
    origin, size = [], []
    for n in shape:
        c = n if crop is None else min(crop, n)
        c -= c % multiple
        o = (n - c) // 2
        o -= o % multiple
        origin.append(o)
        size.append(c)
    return origin, size


def _average(metrics: list[dict[str, float]]) -> dict[str, float]:
    keys = metrics[0].keys()
    return {k: float(np.mean([m[k] for m in metrics])) for k in keys}


def _lowres_method(records: list[dict]) -> str:
    """The low-resolution method of a degradation record (``box`` when none is named)."""
    for record in records:
        if record.get("kind") == "lowres":
            return str(record.get("method") or "box")
    return "box"


class SuperResolutionEvaluator:
    """Default evaluator of the GAN tasks (x2 super-resolution, or scale-1 motion correction).

    ``evaluator(generator) -> {"psnr", "ssim", "nrmse", "hfen", "baseline_psnr", …}``.
    """

    def __init__(self, volumes: Sequence[TrainingVolume], *, degradation: Any, scale: int,
                 seed: int, crop: int | None = 96, device: torch.device | str = "cpu",
                 precision: str = "auto") -> None:
        from bids_enhance.degrade import degrade
        from bids_enhance.image.mask import head_mask
        from bids_enhance.inference.superres import upsample_baseline
        from bids_enhance.metrics.quality import evaluate

        if not volumes:
            raise ValueError("no validation volumes given")
        self.scale, self.device, self.precision = scale, torch.device(device), precision
        self.items: list[tuple[str, np.ndarray, np.ndarray, np.ndarray]] = []
        baseline = []
        for vol in volumes:
            clean = _crop_pad(vol.data, scale=scale, minimum=(4 * scale,) * 3)
            mask = (_crop_pad(vol.mask, scale=scale, minimum=(4 * scale,) * 3)
                    if vol.mask is not None else head_mask(clean))
            degraded, _, records = degrade(clean, vol.affine, steps=degradation,
                                           rng=numpy_generator(seed, "validation", vol.subject))
            origin, size = _central_origin(clean.shape, crop, 2 * scale if scale > 1 else 1)
            hr_index = tuple(slice(o, o + c) for o, c in zip(origin, size, strict=True))
            lr_index = tuple(slice(o // scale, (o + c) // scale)
                             for o, c in zip(origin, size, strict=True))
            # a stacking prefilter's (C, X, Y, Z): the filtered volume first, the baseline
            ref, lr, m = clean[hr_index], degraded[(..., *lr_index)], mask[hr_index]
            m = m if m.any() else None
            self.items.append((vol.subject, ref, np.ascontiguousarray(lr), m))
            first = lr if lr.ndim == 3 else lr[0]
            if scale == 2:  # the participant run's baseline, at the exact x2 geometry
                guess, _ = upsample_baseline(first, np.eye(4), kind="cubic",
                                             method=_lowres_method(records))
            else:
                guess = first
            baseline.append(evaluate(ref, guess, mask=m))
        self.baseline = {f"baseline_{k}": v for k, v in _average(baseline).items()}

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        from bids_enhance.inference.sliding import infer_volume
        from bids_enhance.metrics.quality import evaluate

        results = []
        for _, ref, lr, mask in self.items:  # the participant run's inference path
            y = infer_volume(model, lr, scale=self.scale, device=self.device,
                             precision=self.precision)
            results.append(evaluate(ref, y, mask=mask))
        out = _average(results)
        out.update(self.baseline)
        out["psnr_gain"] = out["psnr"] - out["baseline_psnr"]
        return out


class DiffusionSliceEvaluator:
    """Default evaluator of ``motion-ddpm``: DDIM-samples ``slices`` consecutive central slices
    (in-plane central crop) of each held-out volume and measures them as a 3D slab."""

    def __init__(self, volumes: Sequence[TrainingVolume], *, degradation: Any, seed: int,
                 schedule: Any, prediction: str, steps: int, neighbours: int, slice_axis: int,
                 size_multiple: int, crop: int | None = 96, slices: int = 8,
                 device: torch.device | str = "cpu",
                 autocast: AutocastFactory | None = None) -> None:
        from bids_enhance.degrade import degrade
        from bids_enhance.image.mask import head_mask
        from bids_enhance.metrics.quality import evaluate

        if not volumes:
            raise ValueError("no validation volumes given")
        self.schedule, self.prediction, self.steps = schedule, prediction, steps
        self.device, self.autocast = torch.device(device), autocast
        self.seed = seed
        self.items: list[tuple[np.ndarray, np.ndarray, np.ndarray | None]] = []
        baseline = []
        for vol in volumes:
            clean = np.moveaxis(vol.data, slice_axis, 0)
            minimum = (1, size_multiple, size_multiple)
            clean = _crop_pad(clean, scale=1, minimum=minimum)
            mask = (np.moveaxis(vol.mask, slice_axis, 0) if vol.mask is not None else None)
            mask = _crop_pad(mask, scale=1, minimum=minimum) if mask is not None else head_mask(clean)
            degraded, _, _ = degrade(np.moveaxis(clean, 0, slice_axis), vol.affine,
                                     steps=degradation,
                                     rng=numpy_generator(seed, "validation", vol.subject))
            degraded = np.moveaxis(degraded, slice_axis, 0)
            n = clean.shape[0]
            count = min(slices, n)
            first = (n - count) // 2
            origin, size = _central_origin(clean.shape[1:], crop, size_multiple)
            plane = tuple(slice(o, o + c) for o, c in zip(origin, size, strict=True))
            idx = np.clip(np.arange(first, first + count)[:, None]
                          + np.arange(-neighbours, neighbours + 1)[None], 0, n - 1)
            cond = degraded[:, plane[0], plane[1]][idx]  # (count, 2n+1, H, W)
            ref = clean[first:first + count, plane[0], plane[1]]
            m = mask[first:first + count, plane[0], plane[1]]
            m = m if m.any() else None
            self.items.append((np.ascontiguousarray(cond), ref, m))
            baseline.append(evaluate(ref, cond[:, neighbours], mask=m))
        self.baseline = {f"baseline_{k}": v for k, v in _average(baseline).items()}

    @torch.no_grad()
    def __call__(self, model: nn.Module) -> dict[str, float]:
        from bids_enhance.metrics.quality import evaluate
        from bids_enhance.training.diffusion import ddim_sample_normalised

        generator = torch.Generator(device=self.device)
        generator.manual_seed(child_seed(self.seed, "validation", "ddim"))
        results = []
        for cond, ref, mask in self.items:
            y = ddim_sample_normalised(model, self.schedule, torch.from_numpy(cond),
                                       steps=self.steps, prediction=self.prediction,
                                       generator=generator, device=self.device,
                                       autocast=self.autocast)
            results.append(evaluate(ref, y[:, 0].cpu().numpy(), mask=mask))
        out = _average(results)
        out.update(self.baseline)
        out["psnr_gain"] = out["psnr"] - out["baseline_psnr"]
        return out


def make_default_evaluator(trainer: Any, volumes: Sequence[TrainingVolume], *,
                           degradation: Any | None = None
                           ) -> Callable[[nn.Module], Mapping[str, float]]:
    """The default evaluator for ``trainer``'s task on held-out ``volumes``."""
    cfg = trainer.config
    degradation = cfg.degradation if degradation is None else degradation
    if cfg.task == "motion-ddpm":
        return DiffusionSliceEvaluator(
            volumes, degradation=degradation, seed=cfg.seed, schedule=trainer.schedule,
            prediction=cfg.prediction, steps=cfg.ddim_steps, neighbours=cfg.neighbours,
            slice_axis=cfg.slice_axis, size_multiple=trainer.unet.size_multiple,
            crop=cfg.validation_crop, slices=cfg.validation_slices, device=trainer.device,
            autocast=trainer.autocast)
    return SuperResolutionEvaluator(volumes, degradation=degradation, scale=cfg.scale,
                                    seed=cfg.seed, crop=cfg.validation_crop,
                                    device=trainer.device, precision=cfg.precision)
