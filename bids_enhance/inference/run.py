"""Load a self-describing checkpoint and run it on one volume (what the inference node calls).

Dispatch on the checkpoint (:func:`bids_enhance.models.load_checkpoint`):

=====================================  ======================================================
checkpoint                             inference
=====================================  ======================================================
``rrdb_generator``, ``scale=2``        :func:`~bids_enhance.inference.superres.superresolve`
                                       with the low-resolution method of its degradation
                                       record; output on the finer grid; consistency measured
                                       (and enforced with ``consistency="project"``)
``rrdb_generator``, ``scale=1``        :func:`~bids_enhance.inference.sliding.infer_volume`;
                                       affine kept
``diffusion_unet``                     :func:`~bids_enhance.inference.diffusion.diffusion_correct`
                                       with the schedule, prediction type, neighbours, slice
                                       axis, DDIM steps and intensity map of ``extra``
=====================================  ======================================================

Prefilter: a checkpoint trained on a preset that ends in a classical filter (a
:class:`~bids_enhance.degrade.Prefilter` step, e.g. ``sr-box-x2-rician-wide-odct``) refines
that filter's output, so with ``prefilter=True`` (default) the same filter (σ estimated, as in
training) runs on the normalised input first; ``info["prefilter"]`` records it. A prefilter
that stacks its output with its input (and σ) hands the network those channels. Data
consistency is still measured against the unfiltered input.

Intensities: with ``normalise=True`` (default) the volume is scaled as the checkpoint's
``normalisation`` record says (the robust-maximum scale of
:func:`bids_enhance.image.intensity.normalise`; a no-op on an already normalised volume) and the
output is scaled back, so inputs and outputs are in the caller's units.
"""

from __future__ import annotations

import logging
import os
import time
from typing import Any

import numpy as np
import torch

from bids_enhance.degrade import PRESETS, LowResMethod, LowResolution, prefilter_of
from bids_enhance.degrade.motion import SEGMENT_AXIS
from bids_enhance.image.intensity import ROBUST_PERCENTILE
from bids_enhance.image.intensity import normalise as normalise_intensity
from bids_enhance.inference.consistency import consistency_error, project_consistent
from bids_enhance.inference.diffusion import diffusion_correct
from bids_enhance.inference.sliding import _check_volume, infer_volume, resolve_device
from bids_enhance.inference.superres import _check_affine, superresolve
from bids_enhance.models import CheckpointError, NoiseSchedule, load_checkpoint
from bids_enhance.models.registry import describe_arch

__all__ = ["CONSISTENCY_MODES", "lowres_method_of", "normalisation_scale", "run_checkpoint",
           "run_checkpoint_image"]

logger = logging.getLogger(__name__)

CONSISTENCY_MODES = (None, "measure", "project")


def lowres_method_of(degradation: Any) -> tuple[LowResMethod | None, int | None]:
    """The x2 low-resolution method (and ``thick`` axis) recorded in a checkpoint's
    ``degradation`` entry (``{"preset": ..., "records": [...]}``), or ``(None, None)``."""
    if not isinstance(degradation, dict):
        return None, None
    for record in degradation.get("records") or []:
        if isinstance(record, dict) and record.get("kind") == LowResolution.kind:
            return LowResMethod.parse(record.get("method")), record.get("axis")
    preset = degradation.get("preset")
    if isinstance(preset, str) and preset in PRESETS:
        for step in PRESETS[preset]:
            if isinstance(step, LowResolution):
                return LowResMethod.parse(step.method), step.axis
    return None, None


def _normalisation_scale(volume: np.ndarray, record: Any) -> float:
    """Scale that the checkpoint's normalisation record applies to ``volume`` (1 if none)."""
    if not isinstance(record, dict):
        return 1.0
    method = record.get("method")
    if method != "robust-max-scale":
        raise CheckpointError(f"the checkpoint's normalisation {method!r} is not known to this "
                              "version; expected 'robust-max-scale'")
    _, rec = normalise_intensity(volume, percentile=float(record.get("percentile", ROBUST_PERCENTILE)))
    return float(rec.scale)


def normalisation_scale(path: str | os.PathLike[str], volume: np.ndarray, *,
                        expected_sha256: str | None = None) -> float:
    """The intensity scale :func:`run_checkpoint` divides ``volume`` by (``normalise=True``),
    without running the network: for a caller that runs it on crops of ``volume``, which must be
    scaled as the whole image is (a crop's own percentiles differ)."""
    from bids_enhance.models.checkpoint import read_checkpoint

    meta = read_checkpoint(path, expected_sha256=expected_sha256)
    return _normalisation_scale(_check_volume(volume), meta.get("normalisation"))


def run_checkpoint(path: str | os.PathLike[str], volume: np.ndarray, affine: np.ndarray, *,
                   expected_sha256: str | None = None, device: torch.device | str = "cpu",
                   weights: str = "auto", normalise: bool = True,
                   consistency: str | None = "measure",
                   patch_size: int | None = None, overlap: float = 0.25, blend: str = "gaussian",
                   mem_budget_gb: float | None = None, batch_size: int | None = None,
                   precision: str = "auto", halo: int | str = "auto",
                   steps: int | None = None, eta: float = 0.0, seed: int = 0,
                   prefilter: bool = True, sigma: float | None = None,
                   phase_encoding_axis: int | None = None, log_level: int = logging.INFO
                   ) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
    """Run the model stored at ``path`` on ``volume`` (with voxel→world ``affine``).

    Args:
        path: a :mod:`bids_enhance.models.checkpoint` file.
        volume, affine: ``(X, Y, Z)`` array in any intensity units and its 4×4 matrix.
        expected_sha256: refuse the file unless its sha256 matches (checked before loading).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.
        weights: ``"auto"`` (EMA when present), ``"ema"`` or ``"model"``.
        normalise: scale intensities as the checkpoint's normalisation record says (module
            docstring).
        consistency: x2 models only: ``"measure"`` (default) reports
            :func:`~bids_enhance.inference.consistency.consistency_error`, ``"project"`` also
            enforces consistency exactly, None skips it.
        patch_size, overlap, blend, mem_budget_gb, precision, halo: see
            :func:`~bids_enhance.inference.sliding.infer_volume`.
        batch_size: patches (generators; default 1) or slices (diffusion; default 16) per pass.
        steps, eta, seed: diffusion sampling (``steps`` defaults to the checkpoint's
            ``ddim_steps``).
        prefilter: run the classical filter the checkpoint's training preset ends in (if any)
            before the network (module docstring); False when the caller has already run it.
        sigma: the noise σ the prefilter uses, in ``volume``'s units (None: estimated from the
            data, as in training).
        phase_encoding_axis: motion models only: the voxel axis along which ``volume``'s
            k-space was acquired in segments (its ``PhaseEncodingDirection``), i.e. along which
            its motion ghosts run. The volume is shown to the network with that axis moved to
            :data:`~bids_enhance.degrade.motion.SEGMENT_AXIS`, the one it was trained on, and
            the output moved back. None: the volume as it is (the training axis assumed).
            Ignored by other models.
        log_level: the level of the inference's progress lines (``logging.DEBUG`` when the run
            is a step inside another; warnings stay warnings).

    Returns:
        ``(out, out_affine, info)``: float32 output (x2 grid for super-resolution, else the
        input's), its affine, and plain-data provenance: ``model`` (task or architecture name),
        ``architecture``, ``sha256``, ``path``, ``weights``, ``device``, ``precision``, ``mode``,
        ``patch_size``, ``halo``, ``seconds`` … and ``consistency`` for x2 models.
    """
    if consistency not in CONSISTENCY_MODES:
        raise ValueError(f"consistency must be one of {list(CONSISTENCY_MODES)}, "
                         f"got {consistency!r}")
    t0 = time.perf_counter()
    data = _check_volume(volume)
    affine = _check_affine(affine)
    dev = resolve_device(device)
    model, meta = load_checkpoint(path, expected_sha256=expected_sha256, map_location="cpu",
                                  weights=weights)
    name, kwargs = meta["arch_name"], dict(meta["arch_kwargs"])
    extra = meta.get("extra") or {}
    info: dict[str, Any] = {
        "model": extra.get("task") or name, "architecture": describe_arch(name, kwargs),
        "sha256": meta["sha256"], "path": meta["path"], "weights": meta["weights"],
        "package_version": meta.get("package_version"), "device": str(dev),
    }
    scale = _normalisation_scale(data, meta.get("normalisation")) if normalise else 1.0
    info["normalisation_scale"] = scale
    x = data / np.float32(scale) if scale != 1.0 else data
    moved_axis = None
    if phase_encoding_axis is not None and _is_motion_model(meta):
        if phase_encoding_axis not in (0, 1, 2):
            raise ValueError(f"phase_encoding_axis must be 0, 1 or 2, got {phase_encoding_axis!r}")
        info["phase_encoding_axis"] = int(phase_encoding_axis)
        if phase_encoding_axis != SEGMENT_AXIS:
            moved_axis = int(phase_encoding_axis)
            x = np.ascontiguousarray(np.moveaxis(x, moved_axis, SEGMENT_AXIS))
    step = prefilter_of((meta.get("degradation") or {}).get("preset")) if prefilter else None
    if step is not None:  # the network refines a classical filter's output, as in training
        x, record = step.apply_with_record(
            x, sigma=None if sigma is None else float(sigma) / scale, device=str(dev))
        record["sigma"] *= scale  # in the caller's units
        info["prefilter"] = record
    if x.ndim == 4 and not (name == "rrdb_generator" and kwargs.get("scale", 2) == 1):
        raise CheckpointError(f"checkpoint {path} stacks its prefilter's output with its input "
                              "(several channels), which only a scale-1 generator takes")
    report: dict[str, Any] = {}
    out_affine = affine
    if name == "rrdb_generator" and kwargs.get("scale", 2) == 2:
        method, axis = lowres_method_of(meta.get("degradation"))
        if method is None:
            logger.warning("checkpoint %s records no low-resolution method; assuming 'box'", path)
            method, info["method_assumed"] = LowResMethod.BOX, True
        if method is LowResMethod.THICK:
            raise CheckpointError(f"checkpoint {path} was trained for one-axis 'thick' slices "
                                  f"(axis {axis}), which an x2 generator cannot invert")
        y, out_affine = superresolve(model, x, affine, method=method, patch_size=patch_size,
                                     overlap=overlap, blend=blend, device=dev,
                                     mem_budget_gb=mem_budget_gb, batch_size=batch_size or 1,
                                     precision=precision, halo=halo, report=report,
                                     log_level=log_level)
    elif name == "rrdb_generator":
        y = infer_volume(model, x, scale=1, patch_size=patch_size, overlap=overlap, blend=blend,
                         device=dev, mem_budget_gb=mem_budget_gb, batch_size=batch_size or 1,
                         precision=precision, halo=halo, report=report, log_level=log_level)
    elif name == "diffusion_unet":
        missing = [k for k in ("diffusion", "prediction", "neighbours", "slice_axis")
                   if k not in extra]
        if missing:
            raise CheckpointError(f"diffusion checkpoint {path} lacks extra entries {missing}")
        schedule = NoiseSchedule.from_config(dict(extra["diffusion"]))
        y = diffusion_correct(model, schedule, x, prediction=extra["prediction"],
                              neighbours=int(extra["neighbours"]),
                              slice_axis=int(extra["slice_axis"]),
                              steps=int(steps or extra.get("ddim_steps", 50)), eta=eta,
                              batch_size=batch_size or 16, device=dev, seed=seed,
                              precision=precision, intensity_map=extra.get("intensity_map"),
                              report=report)
    else:
        raise CheckpointError(f"checkpoint {path} holds {describe_arch(name, kwargs)}, which is "
                              "not an image-to-image model (expected rrdb_generator or "
                              "diffusion_unet)")
    if moved_axis is not None:  # back to the input's own axis order
        y = np.ascontiguousarray(np.moveaxis(y, SEGMENT_AXIS, moved_axis))
    out = y * np.float32(scale) if scale != 1.0 else y
    info.update({k: v for k, v in report.items() if k != "seconds"})
    info["inference_seconds"] = report.get("seconds")
    if "method" in report and consistency is not None:
        method = LowResMethod.parse(report["method"])
        info["consistency"] = consistency_error(out, data, method=method)
        if consistency == "project":
            out = project_consistent(out, data, method=method)
            info["consistency_projected"] = consistency_error(out, data, method=method)
    info["consistency_mode"] = consistency if "method" in report else None
    info["seconds"] = time.perf_counter() - t0
    return out, out_affine, info


def _is_motion_model(meta: dict[str, Any]) -> bool:
    """A checkpoint trained to remove motion artefacts (by its task, else its degradation)."""
    from bids_enhance.steps import MOTION

    task = (meta.get("extra") or {}).get("task")
    if task:
        return task in MOTION.tasks
    return (meta.get("degradation") or {}).get("preset") in MOTION.presets


def run_checkpoint_image(path: str | os.PathLike[str], img: Any, *,
                         expected_sha256: str | None = None, device: torch.device | str = "cpu",
                         seed: int = 0, consistency: str | None = "measure",
                         mem_budget_gb: float | None = None, step: str = "generative",
                         model_summary: dict[str, Any] | None = None,
                         phase_encoding_axis: int | None = None,
                         phase_encoding_source: str | None = None
                         ) -> tuple[Any, dict[str, Any]]:
    """:func:`run_checkpoint` on a NIfTI image; what the generative enhancement node runs.

    Returns ``(result, info)``: the float32 result image with ``img``'s sform/qform codes and
    units on its own grid (:func:`bids_enhance.image.nifti.result_image`; the x2 grid for
    super-resolution models), and :func:`run_checkpoint`'s record with the step's name
    (``step``), its kind (``generative``), the model card's summary (``model_card``, when
    given), and the shapes and voxel sizes in and out. ``phase_encoding_axis``: as for
    :func:`run_checkpoint`; ``phase_encoding_source`` (where that axis came from) is recorded
    beside it when the model is a motion model.
    """
    from bids_enhance.image.nifti import result_image, voxel_sizes
    from bids_enhance.steps import GENERATIVE

    out, affine, info = run_checkpoint(
        path, img.get_fdata(dtype=np.float32), img.affine, expected_sha256=expected_sha256,
        device=device, seed=seed, consistency=consistency, mem_budget_gb=mem_budget_gb,
        phase_encoding_axis=phase_encoding_axis)
    if "phase_encoding_axis" in info and phase_encoding_source:
        info["phase_encoding_source"] = phase_encoding_source
    info["step"] = step
    info["kind"] = GENERATIVE
    if model_summary is not None:
        info["model_card"] = dict(model_summary)
    info.update(shape_in=list(img.shape[:3]), shape_out=list(out.shape),
                voxel_size_in=voxel_sizes(img.affine), voxel_size_out=voxel_sizes(affine))
    return result_image(out, affine, img), info
