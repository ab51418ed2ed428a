"""The JSON sidecar of an enhanced image: sources, methods, parameters, noise, IQMs, versions.

:func:`build_sidecar` collects the records of one image's run into its sidecar (the
:class:`~bids_enhance.interfaces.bids.BuildSidecar` node writes it): every step entry cites its
method (``References``); the noise σ is recorded by the step that estimated it (``NoiseSigma``,
input units); a metric without a finite value is ``null`` with its reason in the
``NotAvailable`` map of its group (see :mod:`bids_enhance.bids.provenance`). What identifies the
run (``CommandLine``, ``RunId``) is added by the sinks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from bids_enhance.steps import DENOISE, StepRecord

__all__ = ["build_sidecar", "resolution", "source_metadata", "step_entry"]


def build_sidecar(*, source_file: Path | str, bids_dir: Path | str, description: str,
                  sanitise_report: Mapping[str, Any], steps: Sequence[Mapping[str, Any]],
                  scale: float, random_seed: int, image_seed: int,
                  iqms: Mapping[str, Any] | None = None,
                  simulation: Mapping[str, Any] | None = None,
                  reference_metrics: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The sidecar of one enhanced image.

    Args:
        source_file, bids_dir: the raw BIDS input and its dataset's root (``Sources``; the
            source's own JSON sidecar says whether it is ``SkullStripped``).
        description: the ``Description`` sentence.
        sanitise_report: what sanitising the input found and fixed (``InputSanitising``).
        steps: per enhancement step, its record (method, parameters …), in order.
        scale: the intensity scale divided out before enhancing (records in normalised units
            are converted back to the input's).
        random_seed, image_seed: the run's master seed and this image's.
        iqms: ``{"Before": {...}, "After": {...}}`` no-reference metrics.
        simulation: ``{"Simulation": {...}}`` (simulation mode).
        reference_metrics: the comparison with the reference (simulation mode;
            :func:`bids_enhance.metrics.comparison.compare_to_reference`).
    """
    from bids_enhance.bids.naming import bids_uri
    from bids_enhance.bids.provenance import (
        NOT_AVAILABLE,
        iqm_reasons,
        reference_metric_reasons,
    )
    from bids_enhance.utils import software_versions

    source_meta = source_metadata(Path(source_file))
    steps = [dict(s) for s in steps]
    scale = float(scale)
    meta: dict = {
        "Description": description,
        "Sources": [bids_uri(source_file, bids_dir)],
        "SkullStripped": bool(source_meta.get("SkullStripped", False)),
        "EnhancementSteps": [step_entry(s, scale) for s in steps],
        "InputSanitising": dict(sanitise_report),
        "IntensityNormalisation": {
            "Method": "divide by the 99.9th percentile of voxels > 0, undone on output",
            "Scale": scale,
        },
        "RandomSeed": int(random_seed),
        "ImageSeed": int(image_seed),
        "SoftwareDependencies": software_versions(),
    }
    grid = resolution(steps)
    if grid:
        meta["Resolution"] = grid
    if iqms is not None:
        iqms = dict(iqms)
        reasons = {when: iqm_reasons(values) for when, values in iqms.items()
                   if isinstance(values, dict)}
        if any(reasons.values()):
            iqms[NOT_AVAILABLE] = {when: r for when, r in reasons.items() if r}
        meta["QualityMetrics"] = iqms
    if simulation is not None:
        meta.update(simulation)
    if reference_metrics is not None:
        comparison = dict(reference_metrics)
        reasons = reference_metric_reasons(comparison)
        if reasons:
            comparison[NOT_AVAILABLE] = reasons
        meta["ReferenceMetrics"] = comparison
    return meta


def _mm(sizes) -> str:
    return " × ".join(f"{float(v):.3g}" for v in sizes) + " mm"


def resolution(steps: list[dict]) -> str | None:
    """``Resolution`` (what the ``res-`` label means) when a step changed the grid."""
    for info in steps:
        size_in, size_out = info.get("voxel_size_in"), info.get("voxel_size_out")
        if size_in and size_out and any(abs(a - b) > 1e-6 * max(a, 1e-6)
                                         for a, b in zip(size_in, size_out, strict=True)):
            return (f"x2 super-resolution: {_mm(size_out)} voxels (source {_mm(size_in)}), "
                    "on a grid that covers the source's field of view")
    return None


_CONSISTENCY_UNITS = ("rmse", "max_abs_error", "mean_error", "robust_max")


def _consistency(record: dict | None, scale: float) -> dict | None:
    """A consistency record in the input's intensity units (inference runs on normalised
    images)."""
    if not record:
        return None
    out = {}
    for key, value in record.items():
        out[key] = float(value) * scale if key in _CONSISTENCY_UNITS and value is not None \
            else value
    return out


def _generative_entry(info: dict, scale: float) -> dict:
    from bids_enhance.bids.provenance import NOT_AVAILABLE, consistency_reasons

    # what the card does not record (e.g. a motion baseline of a super-resolution model) is left
    # out rather than written as null
    card = {k: v for k, v in (info.get("model_card") or {}).items() if v is not None}
    entry = {
        "Step": info.get("step"),
        "Method": card.get("description") or info.get("model"),
        "Model": {
            "Name": card.get("name"),
            "Task": info.get("model"),
            "Architecture": info.get("architecture"),
            "Checkpoint": info.get("path"),
            "Sha256": info.get("sha256"),
            "Origin": card.pop("origin", None),
            "Weights": info.get("weights"),
            "ModelCard": card,
        },
        # a parameter that does not apply (patch_size in "whole" mode) is left out
        "Parameters": {k: info[k] for k in ("method", "mode", "patch_size", "overlap", "blend",
                                            "halo", "precision", "batch_size", "steps", "eta",
                                            "consistency_mode") if info.get(k) is not None},
        "Device": info.get("device"),
        "ElapsedSeconds": info.get("seconds"),
        "ShapeIn": info.get("shape_in"),
        "ShapeOut": info.get("shape_out"),
        "VoxelSizeIn": info.get("voxel_size_in"),
        "VoxelSizeOut": info.get("voxel_size_out"),
    }
    if info.get("phase_encoding_axis") is not None:  # motion: the axis its ghosts were taken on
        entry["PhaseEncodingAxis"] = "ijk"[int(info["phase_encoding_axis"])]
        entry["PhaseEncodingAxisSource"] = info.get("phase_encoding_source")
    prefilter = info.get("prefilter")
    if prefilter:  # the classical filter the network's input went through first
        entry["Prefilter"] = {
            "Method": prefilter.get("method"), "NoiseModel": prefilter.get("noise_model"),
            "NoiseSigma": (float(prefilter["sigma"]) * scale
                           if prefilter.get("sigma") is not None else None),
            "NoiseSigmaEstimator": prefilter.get("sigma_estimator")}
    if info.get("consistency"):
        entry["ConsistencyError"] = _consistency(info["consistency"], scale)
        entry["ConsistencyProjected"] = "consistency_projected" in info
        if "consistency_projected" in info:
            entry["ConsistencyErrorAfterProjection"] = _consistency(
                info["consistency_projected"], scale)
        reasons = {key: consistency_reasons(entry.get(key))
                   for key in ("ConsistencyError", "ConsistencyErrorAfterProjection")}
        if any(reasons.values()):
            entry[NOT_AVAILABLE] = {key: r for key, r in reasons.items() if r}
    entry["References"] = _references(info)
    return entry


def _references(info: dict) -> list[dict]:
    from bids_enhance.bids.provenance import references, step_reference_keys

    return references(step_reference_keys(info))


def step_entry(info: dict, scale: float) -> dict:
    """The ``EnhancementSteps`` entry of a step's record ``info`` (a classical or learned
    denoiser's, or a trained network's), with values in the input's intensity units
    (``scale``: what normalisation divided out)."""
    if StepRecord.from_info(info).generative:  # a trained network (GenerativeEnhance)
        return _generative_entry(info, scale)
    entry = {
        "Step": info.get("step", DENOISE.name),
        "Method": info.get("method"),
        "NoiseModel": info.get("noise_model"),
        "Parameters": info.get("parameters", {}),
        "Device": info.get("device"),
        "ElapsedSeconds": info.get("elapsed_s"),
    }
    model = info.get("model")
    if isinstance(model, dict):  # the learned denoiser: which weights ran
        entry["Model"] = {
            "Name": model.get("name"), "Task": model.get("task"),
            "Architecture": model.get("architecture"), "Sha256": model.get("sha256"),
            "Origin": model.get("origin"),
            "ModelCard": {k: v for k, v in {**(model.get("summary") or {}),
                                            "card": model.get("card")}.items()
                          if v is not None},
        }
        if model.get("prefilter"):  # the classical filter whose output the network refines
            stack = model.get("prefilter_stack") or "none"  # the Prefilter's channels after it
            entry["Prefilter"] = {"Method": model["prefilter"],
                                  "NetworkInput": "filtered" if stack == "none"
                                  else f"filtered+{stack}"}
        agg = model.get("aggregate")
        if isinstance(agg, dict):  # averaged with a classical filter, weight chosen by SURE
            entry["Aggregate"] = {
                "Method": agg.get("method"), "Weight": agg.get("weight"),
                "NetworkWeight": 1.0 - float(agg.get("weight") or 0.0), "ChosenBy": "SURE",
                **({"SureWeight": agg["sure_weight"],
                    "EstimatedGainDB": agg.get("estimated_gain_db"),
                    "MinGainDB": agg.get("min_gain_db"), "Applied": bool(agg.get("applied"))}
                   if "sure_weight" in agg else {}),
                "SureRMSE": {k: float(v) * scale for k, v in (agg.get("sure_rmse") or {}).items()},
                "Voxels": agg.get("voxels"), "Region": agg.get("region"),
            }
        region = model.get("region")
        if isinstance(region, dict):  # run on the head's box; the air outside took a local mean
            entry["NetworkRegion"] = {
                "Box": region.get("box"), "Shape": region.get("shape"),
                "Margin": region.get("margin"), "Outside": region.get("outside"),
            }
    if info.get("sigma") is not None:  # the one record of σ: the noise of this step's input
        entry["NoiseSigma"] = float(info["sigma"]) * scale
        entry["NoiseSigmaEstimator"] = info.get("sigma_estimator")
    entry["References"] = _references(info)
    return entry


def source_metadata(source: Path) -> dict:
    """The source's own JSON sidecar, if it has one next to it (no inheritance lookup)."""
    from bids_enhance.bids.naming import split_extension

    stem, _ = split_extension(Path(source).name)
    sidecar = Path(source).with_name(stem + ".json")
    try:
        return json.loads(sidecar.read_text()) if sidecar.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}
