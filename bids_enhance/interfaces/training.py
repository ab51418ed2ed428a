"""Nipype interfaces of the training workflow: train, write the model card, publish the model.

``TrainModel`` (:func:`bids_enhance.training.launch.train_from_files`) trains in a state folder
outside nipype's node folders (its checkpoints survive an interruption and ``--resume`` continues
them) and copies the finished model folder into its own node folder, which nipype caches;
``ModelCard`` (:func:`bids_enhance.training.card.write_model_card`) writes the card into its node
folder; ``ModelSink`` (:func:`bids_enhance.training.launch.publish_model`) copies both to
``OUT/models/<name>`` atomically. The layout is described in :mod:`bids_enhance.training.launch`.

The held-out evaluation uses the nodes of the participant workflow:
:class:`~bids_enhance.interfaces.degrade.SimulateDegradation`,
:class:`~bids_enhance.interfaces.generative.GenerativeEnhance` and
:class:`~bids_enhance.interfaces.metrics.CompareToReference`.
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


class _TrainModelInputSpec(BaseInterfaceInputSpec):
    train_files = InputMultiObject(File(exists=True), mandatory=True,
                                   desc="clean training images (normalised)")
    train_subjects = traits.List(traits.Str, mandatory=True, desc="subject of each image")
    val_files = InputMultiObject(File(exists=True), desc="held-out images (normalised)")
    val_subjects = traits.List(traits.Str, desc="subject of each held-out image")
    config = traits.Dict(mandatory=True, desc="TrainConfig fields")
    state_dir = Directory(mandatory=True, nohash=True,
                          desc="where the run trains (checkpoints every checkpoint_every "
                               "iterations, CSVs): outside nipype's node folders, which are "
                               "emptied before an unfinished node reruns, so an interrupted "
                               "run's checkpoint survives")
    training_command = traits.List(traits.Str, desc="command line recorded in the checkpoint")
    resume = File(exists=True, nohash=True,
                  desc="checkpoint of an interrupted run to continue; not hashed: an exact "
                       "resumption computes what the uninterrupted run would")
    nproc_per_node = traits.Int(1, usedefault=True, nohash=True,
                                desc="processes (GPUs) for torchrun; 1 trains in this process")
    omp_nthreads = traits.Int(1, usedefault=True, nohash=True, desc="torch CPU threads")
    use_gpu = traits.Bool(False, usedefault=True, nohash=True,
                          desc="tell nipype's MultiProc this node occupies a GPU")


class _TrainModelOutputSpec(TraitedSpec):
    checkpoint = File(exists=True, desc="trained checkpoint (self-describing), in model_dir")
    model_dir = Directory(exists=True, desc="the finished model folder, in the node's folder: "
                                            "checkpoint, training state, CSVs, plot")
    out_result = File(exists=True, desc="JSON: metrics, wall time, iterations, device, paths")


class TrainModel(SimpleInterface):
    """Train one of the thesis' models (GAN, DISGAN, motion GAN, conditional DDPM).

    Trains in ``state_dir`` (resumable), then copies the finished run into ``model/`` of the
    node's folder (``model_dir``), which is all the node's result refers to.
    """

    input_spec = _TrainModelInputSpec
    output_spec = _TrainModelOutputSpec

    def _run_interface(self, runtime):
        import torch

        from bids_enhance.training.launch import train_from_files
        from bids_enhance.utils import dump_json

        inputs = self.inputs
        cwd = Path(runtime.cwd)
        model_dir = cwd / "model"
        torch.set_num_threads(max(1, inputs.omp_nthreads))
        result = train_from_files(
            list(inputs.train_files), list(inputs.train_subjects), config=dict(inputs.config),
            state_dir=inputs.state_dir, model_dir=model_dir,
            val_files=list(inputs.val_files) if isdefined(inputs.val_files) else [],
            val_subjects=list(inputs.val_subjects) if isdefined(inputs.val_subjects) else [],
            resume=inputs.resume if isdefined(inputs.resume) else None,
            training_command=list(inputs.training_command)
            if isdefined(inputs.training_command) else None,
            nproc_per_node=inputs.nproc_per_node, work_dir=cwd)
        out_result = cwd / "training_result.json"
        out_result.write_text(dump_json(result))
        self._results.update(checkpoint=str(model_dir / "checkpoint.pt"),
                             model_dir=str(model_dir), out_result=str(out_result))
        return runtime


class _ModelCardInputSpec(BaseInterfaceInputSpec):
    model_name = traits.Str(mandatory=True, desc="name of the model")
    training_result = File(exists=True, mandatory=True, desc="TrainModel's JSON result")
    comparisons = InputMultiObject(File(exists=True), desc="CompareToReference JSONs")
    train_sources = traits.List(traits.Str, mandatory=True, desc="BIDS URIs used to train")
    val_sources = traits.List(traits.Str, desc="BIDS URIs held out for evaluation")
    command = traits.List(traits.Str, desc="the command line that trained the model")


class _ModelCardOutputSpec(TraitedSpec):
    out_json = File(exists=True, desc="model_card.json")
    out_markdown = File(exists=True, desc="model_card.md")


class ModelCard(SimpleInterface):
    """Write the model card (into the node's folder): data, command, iterations, device, wall
    time, held-out metrics."""

    input_spec = _ModelCardInputSpec
    output_spec = _ModelCardOutputSpec

    def _run_interface(self, runtime):
        from bids_enhance.training.card import write_model_card

        inputs = self.inputs
        comparisons = [json.loads(Path(f).read_text())
                       for f in (inputs.comparisons if isdefined(inputs.comparisons) else [])]
        json_path, md_path = write_model_card(
            Path(runtime.cwd), name=inputs.model_name,
            result=json.loads(Path(inputs.training_result).read_text()),
            comparisons=comparisons, train_sources=list(inputs.train_sources),
            val_sources=list(inputs.val_sources) if isdefined(inputs.val_sources) else [],
            command=list(inputs.command) if isdefined(inputs.command) else [])
        self._results.update(out_json=str(json_path), out_markdown=str(md_path))
        return runtime


class _ModelSinkInputSpec(BaseInterfaceInputSpec):
    model_dir = Directory(exists=True, mandatory=True,
                          desc="the finished model folder (TrainModel's model_dir)")
    in_files = InputMultiObject(File(exists=True), desc="files added to it (the model card)")
    out_dir = Directory(mandatory=True, desc="the published model folder, OUT/models/<name>")
    state_dir = Directory(desc="the run's state folder, removed once the model is published "
                               "(unless it holds another run by then)")


class _ModelSinkOutputSpec(TraitedSpec):
    out_dir = Directory(exists=True, desc="the published model folder")
    checkpoint = File(exists=True, desc="its checkpoint")


class ModelSink(SimpleInterface):
    """Publish a trained model: copy its folder and model card to ``out_dir`` atomically.

    The copy goes into a hidden sibling and is renamed to ``out_dir`` once complete; an existing
    ``out_dir`` is replaced only then, and left alone when it already holds the same files, so
    ``out_dir`` is only ever a complete model folder. Like the derivatives sinks it always runs,
    even when nipype finds its inputs unchanged: a rerun restores a deleted model folder.
    """

    input_spec = _ModelSinkInputSpec
    output_spec = _ModelSinkOutputSpec
    _always_run = True

    def _run_interface(self, runtime):
        from bids_enhance.training.launch import publish_model

        inputs = self.inputs
        publish_model(inputs.model_dir, inputs.out_dir,
                      extra_files=list(inputs.in_files) if isdefined(inputs.in_files) else [],
                      state_dir=inputs.state_dir if isdefined(inputs.state_dir) else None)
        self._results.update(out_dir=str(inputs.out_dir),
                             checkpoint=str(Path(inputs.out_dir) / "checkpoint.pt"))
        return runtime
