"""Nipype interfaces that write BIDS-Derivatives: the sidecar builder and the data sink.

Each wraps one call of :mod:`bids_enhance.bids`: :func:`~bids_enhance.bids.sidecar.build_sidecar`
and :func:`~bids_enhance.bids.derivatives.write_derivative`.
"""

from __future__ import annotations

import json
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
    """Copy ``in_file`` to its BIDS-Derivatives name, atomically, with a JSON sidecar
    (:func:`bids_enhance.bids.derivatives.write_derivative`).

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
        from bids_enhance.bids.derivatives import write_derivative

        inputs = self.inputs
        meta: dict = {}
        for fname in inputs.meta_files if isdefined(inputs.meta_files) else []:
            meta.update(json.loads(Path(fname).read_text()))
        if isdefined(inputs.meta_dict):
            meta.update(inputs.meta_dict)
        out_file, out_meta = write_derivative(
            inputs.in_file, base_directory=inputs.base_directory, source_file=inputs.source_file,
            datatype=inputs.datatype, desc=inputs.desc if isdefined(inputs.desc) else None,
            res=inputs.res if isdefined(inputs.res) else None,
            suffix=inputs.suffix if isdefined(inputs.suffix) else None, meta=meta)
        self._results["out_file"] = str(out_file)
        if out_meta is not None:
            self._results["out_meta"] = str(out_meta)
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
    """Collect provenance into one sidecar: sources, method, parameters, noise, IQMs, versions
    (:func:`bids_enhance.bids.sidecar.build_sidecar`).

    Every step entry cites its method (``References``); the noise σ is recorded by the step that
    estimated it (``NoiseSigma``, input units); a metric without a finite value is ``null`` with
    its reason in the ``NotAvailable`` map of its group (see :mod:`bids_enhance.bids.provenance`).
    What identifies the run (``CommandLine``, ``RunId``) is added by the sinks, so that this
    node's result, and the reportlets made from it, stay cached across runs.
    """

    input_spec = _BuildSidecarInputSpec
    output_spec = _BuildSidecarOutputSpec

    def _run_interface(self, runtime):
        from bids_enhance.bids.sidecar import build_sidecar
        from bids_enhance.utils import dump_json

        inputs = self.inputs

        def read(name):
            value = getattr(inputs, name)
            return json.loads(Path(value).read_text()) if isdefined(value) else None

        meta = build_sidecar(
            source_file=inputs.source_file, bids_dir=inputs.bids_dir,
            description=inputs.description, sanitise_report=read("sanitise_report"),
            steps=[json.loads(Path(f).read_text()) for f in inputs.steps],
            scale=inputs.scale, random_seed=inputs.random_seed, image_seed=inputs.image_seed,
            iqms=read("iqms"), simulation=read("simulation"),
            reference_metrics=read("reference_metrics"))
        out_file = Path(runtime.cwd) / "sidecar.json"
        out_file.write_text(dump_json(meta))
        self._results["out_file"] = str(out_file)
        return runtime
