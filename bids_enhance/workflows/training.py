"""The training workflow, built from the participant workflow's nodes.

Every image goes through the same ``SanitizeImage`` → ``NormalizeIntensity`` nodes as in the
participant workflow; the training images feed ``TrainModel``; each held-out image is degraded by
``SimulateDegradation`` (the training degradation, seeded), enhanced by ``GenerativeEnhance``
(the inference node users run) and scored by ``CompareToReference``; ``ModelCard`` collects it;
``ModelSink`` publishes the model folder with its card.

Where things are written (:mod:`bids_enhance.training.launch`): training runs in the state folder
``OUT/models/<name>.partial/`` (periodic checkpoints that survive an interruption; ``--resume
OUT/models/<name>.partial/checkpoint.pt`` continues them), the finished model folder is copied
into the ``train`` node's own folder (what nipype caches, so the same command run again does not
retrain), the model card is written in the ``model_card`` node's folder, and ``ModelSink`` copies
both to ``OUT/models/<name>/`` atomically, then removes the state folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nipype.interfaces import utility as niu
from nipype.pipeline import engine as pe

from bids_enhance.workflows.engine import LiterateWorkflow

_X2_TASKS = ("gan3p", "disgan")


def init_prepare_wf(*, source_file: Path, mem_gb: float, name: str) -> pe.Workflow:
    """sanitise → normalise; ``outputnode.out_file`` is the normalised image."""
    from bids_enhance.interfaces.image import NormalizeIntensity, SanitizeImage

    workflow = pe.Workflow(name=name)
    sanitize = pe.Node(SanitizeImage(in_file=str(source_file)), name="sanitize",
                       mem_gb=mem_gb)
    normalize = pe.Node(NormalizeIntensity(), name="normalize", mem_gb=mem_gb)
    outputnode = pe.Node(niu.IdentityInterface(fields=["out_file", "scale"]),
                         name="outputnode")
    workflow.connect([
        (sanitize, normalize, [("out_file", "in_file")]),
        (normalize, outputnode, [("out_file", "out_file"), ("scale", "scale")]),
    ])
    return workflow


def init_training_wf(*, train_images: dict[str, list[Path]], val_images: dict[str, list[Path]],
                     bids_dir: Path, output_dir: Path, model_name: str, config: dict[str, Any],
                     device: str, omp_nthreads: int, seeds: dict[str, int],
                     command: list[str], nproc_per_node: int = 1, resume: Path | None = None,
                     base_dir: Path | None = None) -> LiterateWorkflow:
    """Train ``config['task']`` on ``train_images`` and evaluate it on ``val_images``.

    ``train_images``/``val_images``: subject label → images. ``seeds``: image path → seed of its
    simulated degradation. Trains in ``<output_dir>/models/<model_name>.partial/`` and publishes
    ``<output_dir>/models/<model_name>/`` (module docstring); ``resume``: a checkpoint to
    continue (the interrupted run's ``<model_name>.partial/checkpoint.pt``, or a published
    model's to train it further).
    """
    from bids_enhance.bids.naming import bids_uri, image_id
    from bids_enhance.interfaces.degrade import SimulateDegradation
    from bids_enhance.interfaces.generative import GenerativeEnhance
    from bids_enhance.interfaces.metrics import CompareToReference
    from bids_enhance.interfaces.training import ModelCard, ModelSink, TrainModel
    from bids_enhance.training.config import TASK_DEFAULTS
    from bids_enhance.training.launch import state_dir_for
    from bids_enhance.workflows.base import estimate_mem_gb, workflow_name

    task = config["task"]
    preset = config.get("degradation") or TASK_DEFAULTS[task]["degradation"]
    model_dir = Path(output_dir) / "models" / model_name
    state_dir = state_dir_for(Path(output_dir) / "models", model_name)
    workflow = LiterateWorkflow(name=f"{workflow_name()}_train_{model_name.replace('-', '_')}",
                                base_dir=str(base_dir) if base_dir else None)
    workflow.__desc__ = (
        f"A {task} model was trained with *bids_enhance* on {sum(map(len, train_images.values()))}"
        f" image(s) degraded with the `{preset}` simulation. "
    )
    train_list = [(s, p) for s, paths in train_images.items() for p in paths]
    val_list = [(s, p) for s, paths in val_images.items() for p in paths]
    uses_gpu = device != "cpu"

    merge_train = pe.Node(niu.Merge(len(train_list)), name="merge_train",
                          run_without_submitting=True)
    for index, (subject, path) in enumerate(train_list, start=1):
        prep = init_prepare_wf(source_file=path, mem_gb=estimate_mem_gb(path, bytes_per_voxel=16),
                               name=f"train_sub_{subject}_{image_id(path)}_wf")
        workflow.connect(prep, "outputnode.out_file", merge_train, f"in{index}")

    trainer = pe.Node(TrainModel(
        train_subjects=[s for s, _ in train_list], config=config, state_dir=str(state_dir),
        training_command=command, nproc_per_node=nproc_per_node, omp_nthreads=omp_nthreads,
        use_gpu=uses_gpu, **({"resume": str(resume)} if resume else {})),
        name="train", n_procs=omp_nthreads, mem_gb=8.0)
    workflow.connect(merge_train, "out", trainer, "train_files")

    comparisons = pe.Node(niu.Merge(max(1, len(val_list))), name="merge_comparisons",
                          run_without_submitting=True)
    if val_list:
        merge_val = pe.Node(niu.Merge(len(val_list)), name="merge_val",
                            run_without_submitting=True)
        trainer.inputs.val_subjects = [s for s, _ in val_list]
        workflow.connect(merge_val, "out", trainer, "val_files")
        for index, (subject, path) in enumerate(val_list, start=1):
            mem_gb = estimate_mem_gb(path, bytes_per_voxel=64)
            prep = init_prepare_wf(source_file=path, mem_gb=mem_gb,
                                   name=f"val_sub_{subject}_{image_id(path)}_wf")
            tag = f"sub_{subject}_{image_id(path)}"
            simulate = pe.Node(SimulateDegradation(preset=preset, seed=seeds[str(path)]),
                               name=f"simulate_{tag}", mem_gb=mem_gb)
            enhance = pe.Node(GenerativeEnhance(device=device, omp_nthreads=omp_nthreads,
                                                use_gpu=uses_gpu, consistency="measure"),
                              name=f"enhance_{tag}", n_procs=omp_nthreads, mem_gb=mem_gb)
            compare = pe.Node(CompareToReference(
                label=Path(path).name,
                baselines=["trilinear", "cubic", "kspace"] if task in _X2_TASKS
                else ["identity"]), name=f"compare_{tag}", mem_gb=mem_gb)
            workflow.connect([
                (prep, merge_val, [("outputnode.out_file", f"in{index}")]),
                (prep, simulate, [("outputnode.out_file", "in_file")]),
                (simulate, enhance, [("out_file", "in_file")]),
                (trainer, enhance, [("checkpoint", "checkpoint")]),
                (enhance, compare, [("out_file", "in_file")]),
                (simulate, compare, [("out_reference", "reference"),
                                     ("out_file", "in_degraded")]),
                (compare, comparisons, [("out_file", f"in{index}")]),
            ])

    card = pe.Node(ModelCard(
        model_name=model_name, command=command,
        train_sources=[bids_uri(p, bids_dir) for _, p in train_list],
        val_sources=[bids_uri(p, bids_dir) for _, p in val_list]),
        name="model_card", run_without_submitting=True)
    card_files = pe.Node(niu.Merge(2), name="merge_card", run_without_submitting=True)
    sink = pe.Node(ModelSink(out_dir=str(model_dir), state_dir=str(state_dir)),
                   name="ds_model", run_without_submitting=True)
    workflow.connect([
        (trainer, card, [("out_result", "training_result")]),
        (card, card_files, [("out_json", "in1"), ("out_markdown", "in2")]),
        (trainer, sink, [("model_dir", "model_dir")]),
        (card_files, sink, [("out", "in_files")]),
    ])
    if val_list:
        workflow.connect(comparisons, "out", card, "comparisons")
    return workflow
