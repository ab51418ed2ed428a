"""Nipype interfaces that write BIDS-Derivatives: the sidecar builder and the data sink."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from nipype.interfaces.base import (
    BaseInterfaceInputSpec,
    Directory,
    File,
    InputMultiObject,
    SimpleInterface,
    TraitedSpec,
    isdefined,
    traits,
)
from nipype.utils.filemanip import fname_presuffix

from bids_enhance.steps import DENOISE, StepRecord


class _DerivativesDataSinkInputSpec(BaseInterfaceInputSpec):
    base_directory = Directory(mandatory=True, desc="root of the derivatives dataset")
    source_file = File(exists=False, mandatory=True, desc="the raw BIDS file this derives from")
    in_file = File(exists=True, mandatory=True, desc="file to write under its BIDS name")
    desc = traits.Str(desc="desc- label (letters and digits)")
    res = traits.Str(desc="res- label; needs a 'Resolution' entry in the metadata")
    suffix = traits.Str(desc="suffix; default: the source's")
    datatype = traits.Enum("anat", "figures", usedefault=True,
                           desc="'anat' (images) or 'figures' (reportlets)")
    meta_dict = traits.Dict(traits.Str, traits.Any, desc="metadata for the JSON sidecar")
    meta_files = InputMultiObject(File(exists=True),
                                  desc="JSON files merged into the sidecar (later wins)")


class _DerivativesDataSinkOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="the written file")
    out_meta = File(desc="the written JSON sidecar (images only)")


class DerivativesDataSink(SimpleInterface):
    """Copy ``in_file`` to its BIDS-Derivatives name, atomically, with a JSON sidecar.

    Every source entity is kept (no collisions between echoes, parts, runs …), ``desc``/``res``
    labels are validated, a ``res-`` output must say what its label means (``Resolution``), and
    ``SkullStripped`` is always present. Files are first written under hidden temporary names
    and renamed when complete, so an interrupted run never leaves a partial file under a final
    name; an image and its sidecar are one unit: the sidecar is renamed first and the image
    last, so a reader that finds an image finds its sidecar.

    The sink always runs, even when nipype finds its inputs unchanged (copying is cheap, as
    fMRIPrep's sinks do): a rerun thus restores an output that was deleted, or an image an
    interrupted run left without its sidecar.
    """

    input_spec = _DerivativesDataSinkInputSpec
    output_spec = _DerivativesDataSinkOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        from bids_enhance.bids.naming import derivative_path, figure_path, split_extension
        from bids_enhance.utils import atomic_copy, atomic_paths, dump_json

        inputs = self.inputs
        desc = inputs.desc if isdefined(inputs.desc) else None
        res = inputs.res if isdefined(inputs.res) else None
        suffix = inputs.suffix if isdefined(inputs.suffix) else None
        _, ext = split_extension(Path(inputs.in_file).name)
        if inputs.datatype == "figures":
            out_file = figure_path(inputs.base_directory, inputs.source_file, desc=desc or "",
                                   extension=ext, suffix=suffix)
            atomic_copy(inputs.in_file, out_file)
            self._results["out_file"] = str(out_file)
            return runtime

        out_file = derivative_path(inputs.base_directory, inputs.source_file, desc=desc,
                                   res=res, suffix=suffix, extension=ext)
        meta: dict = {}
        for fname in inputs.meta_files if isdefined(inputs.meta_files) else []:
            meta.update(json.loads(Path(fname).read_text()))
        if isdefined(inputs.meta_dict):
            meta.update(inputs.meta_dict)
        if res is not None and not meta.get("Resolution"):
            raise ValueError(f"{out_file.name}: a res-{res} output needs a 'Resolution' "
                             "description in its metadata")
        meta.setdefault("SkullStripped", False)
        out_meta = out_file.with_name(out_file.name.removesuffix(ext) + ".json")
        with atomic_paths(out_meta, out_file) as (tmp_meta, tmp_file):  # the image last
            tmp_meta.write_text(dump_json(meta), encoding="utf-8")
            shutil.copyfile(inputs.in_file, tmp_file)
        self._results.update(out_file=str(out_file), out_meta=str(out_meta))
        return runtime


class _BuildSidecarInputSpec(BaseInterfaceInputSpec):
    source_file = File(exists=True, mandatory=True, desc="raw BIDS input")
    bids_dir = Directory(exists=True, mandatory=True, desc="root of the raw dataset")
    description = traits.Str(mandatory=True, desc="'Description' sentence")
    sanitise_report = File(exists=True, mandatory=True, desc="SanitizeImage's JSON report")
    steps = InputMultiObject(File(exists=True), mandatory=True,
                             desc="per enhancement step, a JSON record (method, parameters …)")
    scale = traits.Float(mandatory=True, desc="intensity scale divided out before enhancing")
    iqms = File(exists=True, desc="QualityMetrics JSON (before/after)")
    simulation = File(exists=True, desc="SimulateDegradation's record (simulation mode)")
    reference_metrics = File(exists=True, desc="CompareToReference JSON (simulation mode)")
    random_seed = traits.Int(mandatory=True, desc="master seed of the run")
    image_seed = traits.Int(mandatory=True, desc="seed derived for this image")


class _BuildSidecarOutputSpec(TraitedSpec):
    out_file = File(exists=True, desc="sidecar JSON")


class BuildSidecar(SimpleInterface):
    """Collect provenance into one sidecar: sources, method, parameters, noise, IQMs, versions.

    Every step entry cites its method (``References``); the noise σ is recorded by the step that
    estimated it (``NoiseSigma``, input units); a metric without a finite value is ``null`` with
    its reason in the ``NotAvailable`` map of its group (see :mod:`bids_enhance.bids.provenance`).
    What identifies the run (``CommandLine``, ``RunId``) is added by the sinks, so that this
    node's result, and the reportlets made from it, stay cached across runs.
    """

    input_spec = _BuildSidecarInputSpec
    output_spec = _BuildSidecarOutputSpec

    def _run_interface(self, runtime):
        from bids_enhance.bids.naming import bids_uri
        from bids_enhance.bids.provenance import (
            NOT_AVAILABLE,
            iqm_reasons,
            reference_metric_reasons,
        )
        from bids_enhance.utils import dump_json, software_versions

        inputs = self.inputs
        source_meta = _source_metadata(Path(inputs.source_file))
        steps = [json.loads(Path(f).read_text()) for f in inputs.steps]
        scale = float(inputs.scale)
        meta: dict = {
            "Description": inputs.description,
            "Sources": [bids_uri(inputs.source_file, inputs.bids_dir)],
            "SkullStripped": bool(source_meta.get("SkullStripped", False)),
            "EnhancementSteps": [_step_entry(s, scale) for s in steps],
            "InputSanitising": json.loads(Path(inputs.sanitise_report).read_text()),
            "IntensityNormalisation": {
                "Method": "divide by the 99.9th percentile of voxels > 0, undone on output",
                "Scale": scale,
            },
            "RandomSeed": int(inputs.random_seed),
            "ImageSeed": int(inputs.image_seed),
            "SoftwareDependencies": software_versions(),
        }
        resolution = _resolution(steps)
        if resolution:
            meta["Resolution"] = resolution
        if isdefined(inputs.iqms):
            iqms = json.loads(Path(inputs.iqms).read_text())
            reasons = {when: iqm_reasons(values) for when, values in iqms.items()
                       if isinstance(values, dict)}
            if any(reasons.values()):
                iqms[NOT_AVAILABLE] = {when: r for when, r in reasons.items() if r}
            meta["QualityMetrics"] = iqms
        if isdefined(inputs.simulation):
            meta.update(json.loads(Path(inputs.simulation).read_text()))
        if isdefined(inputs.reference_metrics):
            comparison = json.loads(Path(inputs.reference_metrics).read_text())
            reasons = reference_metric_reasons(comparison)
            if reasons:
                comparison[NOT_AVAILABLE] = reasons
            meta["ReferenceMetrics"] = comparison
        out_file = Path(runtime.cwd) / "sidecar.json"
        out_file.write_text(dump_json(meta))
        self._results["out_file"] = str(out_file)
        return runtime


def _mm(sizes) -> str:
    return " × ".join(f"{float(v):.3g}" for v in sizes) + " mm"


def _resolution(steps: list[dict]) -> str | None:
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


def _step_entry(info: dict, scale: float) -> dict:
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
    if info.get("sigma") is not None:  # the one record of σ: the noise of this step's input
        entry["NoiseSigma"] = float(info["sigma"]) * scale
        entry["NoiseSigmaEstimator"] = info.get("sigma_estimator")
    entry["References"] = _references(info)
    return entry


def _source_metadata(source: Path) -> dict:
    """The source's own JSON sidecar, if it has one next to it (no inheritance lookup)."""
    sidecar = Path(fname_presuffix(source, suffix=".json", use_ext=False))
    try:
        return json.loads(sidecar.read_text()) if sidecar.exists() else {}
    except (OSError, json.JSONDecodeError):
        return {}
