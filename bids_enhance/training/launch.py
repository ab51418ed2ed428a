"""Train from image files in a resumable state folder; hand over and publish the model folder.

What the training workflow's nodes call (:class:`~bids_enhance.interfaces.training.TrainModel`
runs :func:`train_from_files`, :class:`~bids_enhance.interfaces.training.ModelSink` runs
:func:`publish_model`). Three folders, for ``bids_enhance BIDS OUT train --model-name NAME``:

=================================  ===============================================================
``OUT/models/NAME.partial/``       the **state folder** (:func:`state_dir_for`): the run as it
                                   trains: ``checkpoint.pt`` and ``checkpoint_state.pt``
                                   (replaced every ``--checkpoint-every`` iterations),
                                   ``losses.csv``, ``validation.csv`` … It lies outside nipype's
                                   node folders, which nipype empties before it reruns an
                                   unfinished node, so an interrupted run keeps its last
                                   checkpoint there, and ``--resume
                                   OUT/models/NAME.partial/checkpoint.pt`` continues it exactly.
``<work>/…/train/model/``          the **model folder** in the training node's own folder: the
                                   state folder's files, copied once training has finished. It is
                                   what nipype caches: the same command run again finds the node
                                   done and does not train again.
``OUT/models/NAME/``               the **published model**: the model folder and its model card,
                                   copied by the sink node into a hidden sibling and renamed into
                                   place once complete, so it is only ever a complete model; the
                                   state folder is then removed.
=================================  ===============================================================
"""

from __future__ import annotations

import contextlib
import filecmp
import json
import logging
import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["CHECKPOINT_NAME", "MODEL_FILES", "STATE_SUFFIX", "prepare_state_dir", "publish_model",
           "remove_state_dir", "state_dir_for", "train_from_files"]

LOGGER = logging.getLogger("bids_enhance.training")

#: Suffix of the state folder beside the published model (``OUT/models/<name>.partial``).
STATE_SUFFIX = ".partial"
#: :data:`bids_enhance.training.engine.CHECKPOINT_NAME` (this module does not import torch)
CHECKPOINT_NAME = "checkpoint.pt"
#: What a training run writes into its folder (:mod:`bids_enhance.training.engine`;
#: ``result.json``: torchrun runs only).
MODEL_FILES = (CHECKPOINT_NAME, "checkpoint_state.pt", "validation_checkpoint.pt", "losses.csv",
               "validation.csv", "losses.png", "result.json")
#: The run's logs, which a continued run extends.
_RUN_LOGS = ("losses.csv", "validation.csv")
#: Keys of a training result that name files of the run's folder.
_RESULT_PATHS = ("checkpoint", "state", "losses_csv", "validation_csv", "plot")


def state_dir_for(models_dir: Path | str, name: str) -> Path:
    """The state folder of model ``name`` published in ``models_dir``."""
    return Path(models_dir) / f"{name}{STATE_SUFFIX}"


def _remove_run_files(folder: Path) -> list[str]:
    """Remove what a training run wrote into ``folder`` (and the temporaries an interrupted save
    left); return the names of the files removed."""
    from bids_enhance.utils import remove_stale_temporaries

    removed = []
    for name in MODEL_FILES:
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
            removed.append(name)
    for leftover in folder.glob(".*.tmp"):  # models.checkpoint.save_torch_atomic's temporaries
        if any(leftover.name.startswith(f".{name}.") for name in MODEL_FILES):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    remove_stale_temporaries(folder)
    return removed


def _checkpoint_file(path: Path | str) -> Path:
    path = Path(path)
    return path / CHECKPOINT_NAME if path.is_dir() else path


def prepare_state_dir(state_dir: Path | str, resume: Path | str | None = None) -> Path | None:
    """Make ``state_dir`` ready for a run; return the checkpoint to resume from (or None).

    * ``resume`` in ``state_dir`` (an interrupted run): kept as it is, the run continues there;
    * no ``resume``: a fresh run; what an earlier run left in ``state_dir`` is removed (with a
      warning when that was an interrupted run's checkpoint);
    * ``resume`` elsewhere (e.g. a published model, to train it further): ``state_dir`` is
      emptied and the run's logs next to ``resume`` (``losses.csv``, ``validation.csv``) are
      copied in, so the continued run's curves cover the whole run.
    """
    state_dir = Path(state_dir)
    state_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = _checkpoint_file(resume) if resume is not None else None
    if checkpoint is not None and checkpoint.resolve().parent == state_dir.resolve():
        LOGGER.info("continuing the run in %s", state_dir)
        return checkpoint
    interrupted = (state_dir / CHECKPOINT_NAME).is_file()
    removed = _remove_run_files(state_dir)
    if interrupted and checkpoint is None:
        LOGGER.warning("%s held the checkpoint of an earlier, unfinished run; starting afresh "
                       "(pass --resume %s to continue a run instead)", state_dir,
                       state_dir / CHECKPOINT_NAME)
    elif removed:
        LOGGER.info("%s: removed %s of an earlier run", state_dir, ", ".join(removed))
    if checkpoint is not None:
        for name in _RUN_LOGS:
            log = checkpoint.parent / name
            if log.is_file():
                shutil.copyfile(log, state_dir / name)
    return checkpoint


def _relocate(result: dict[str, Any], src: Path, dst: Path) -> dict[str, Any]:
    """``result`` with the paths of files in ``src`` pointing at their copies in ``dst``."""
    out = dict(result)
    for key in _RESULT_PATHS:
        value = out.get(key)
        if value and Path(value).parent.resolve() == src.resolve():
            out[key] = str(dst / Path(value).name)
    return out


def _export(state_dir: Path, model_dir: Path, result: dict[str, Any]) -> dict[str, Any]:
    """Copy the finished run's files from ``state_dir`` into ``model_dir``; ``result`` with its
    paths there."""
    from bids_enhance.utils import dump_json

    if not (state_dir / CHECKPOINT_NAME).is_file():
        raise FileNotFoundError(f"training finished without writing {state_dir / CHECKPOINT_NAME}")
    model_dir.mkdir(parents=True, exist_ok=True)
    for name in MODEL_FILES:
        if (state_dir / name).is_file():
            shutil.copy2(state_dir / name, model_dir / name)
    result = _relocate(result, state_dir, model_dir)
    if (model_dir / "result.json").is_file():
        (model_dir / "result.json").write_text(dump_json(result))
    return result


def _volumes(files: Sequence[str], subjects: Sequence[str]):
    import nibabel as nib
    import numpy as np

    from bids_enhance.training import TrainingVolume

    vols = []
    for path, subject in zip(files, subjects, strict=True):
        img = nib.load(path)
        vols.append(TrainingVolume(subject=subject, data=img.get_fdata(dtype=np.float32),
                                   affine=img.affine))
    return vols


def _train_torchrun(spec: dict[str, Any], nproc_per_node: int, work_dir: Path) -> dict:
    """Multi-GPU training: ``torchrun -m bids_enhance.training --spec spec.json``."""
    import subprocess
    import sys

    from bids_enhance.utils import find_executable

    work_dir.mkdir(parents=True, exist_ok=True)
    spec_file = work_dir / "torchrun_spec.json"
    spec_file.write_text(json.dumps(spec, indent=2))
    torchrun = find_executable("torchrun")
    cmd = ([torchrun] if torchrun else [sys.executable, "-m", "torch.distributed.run"]) + [
        "--standalone", f"--nproc_per_node={nproc_per_node}", "-m",
        "bids_enhance.training", "--spec", str(spec_file)]
    subprocess.run(cmd, check=True, cwd=work_dir)
    return json.loads((Path(spec["out_dir"]) / "result.json").read_text())


def train_from_files(train_files: Sequence[str], train_subjects: Sequence[str], *,
                config: Mapping[str, Any], state_dir: Path | str, model_dir: Path | str,
                val_files: Sequence[str] = (), val_subjects: Sequence[str] = (),
                resume: Path | str | None = None, training_command: Sequence[str] | None = None,
                nproc_per_node: int = 1, work_dir: Path | str | None = None) -> dict[str, Any]:
    """Train on NIfTI images (clean, normalised) in ``state_dir``, then copy the finished model
    folder to ``model_dir``; return the training result (paths in ``model_dir``).

    ``config``: :class:`~bids_enhance.training.config.TrainConfig` fields; ``resume``: see
    :func:`prepare_state_dir`; ``nproc_per_node`` > 1 trains under ``torchrun`` (one process per
    GPU), with its run spec in ``work_dir`` (default: ``model_dir``'s parent).
    """
    state_dir, model_dir = Path(state_dir), Path(model_dir)
    command = list(training_command) if training_command is not None else None
    resume = prepare_state_dir(state_dir, resume)
    if nproc_per_node > 1:
        spec = {
            "config": dict(config), "out_dir": str(state_dir), "normalise": False,
            "train": [{"subject": s, "path": p}
                      for p, s in zip(train_files, train_subjects, strict=True)],
            "validation": [{"subject": s, "path": p}
                           for p, s in zip(val_files, val_subjects, strict=True)],
            "resume": str(resume) if resume is not None else None,
            "training_command": command,
        }
        result = _train_torchrun(spec, nproc_per_node,
                                 Path(work_dir) if work_dir else model_dir.parent)
    else:
        from bids_enhance.training import TrainConfig, train

        trained = train(_volumes(train_files, train_subjects),
                        config=TrainConfig.from_dict(dict(config)), out_dir=state_dir,
                        val_volumes=_volumes(val_files, val_subjects) or None,
                        resume=resume, training_command=command)
        result = trained.to_dict()
    return _export(state_dir, model_dir, result)


def _same_checkpoint(a: Path, b: Path) -> bool:
    try:
        return filecmp.cmp(a, b, shallow=False)
    except OSError:
        return False


def remove_state_dir(state_dir: Path | str, *, model_dir: Path | str | None = None) -> bool:
    """Remove a state folder whose run is finished; return whether it was removed.

    With ``model_dir``, only when the state folder holds that model's checkpoint (or none): the
    interrupted run of other settings that may have been started since is kept. Only what
    training writes is removed; the folder itself only when that leaves it empty.
    """
    state_dir = Path(state_dir)
    if not state_dir.is_dir():
        return False
    checkpoint = state_dir / CHECKPOINT_NAME
    if model_dir is not None and checkpoint.is_file() and not _same_checkpoint(
            checkpoint, Path(model_dir) / CHECKPOINT_NAME):
        LOGGER.info("keeping %s: it holds another run than the model published", state_dir)
        return False
    _remove_run_files(state_dir)
    try:
        os.rmdir(state_dir)
    except OSError:  # something else is in there: leave it
        return False
    return True


def publish_model(model_dir: Path | str, out_dir: Path | str, *,
                  extra_files: Sequence[Path | str] = (),
                  state_dir: Path | str | None = None) -> bool:
    """Copy the model folder ``model_dir`` and ``extra_files`` (its model card) to ``out_dir``
    atomically (:func:`bids_enhance.utils.atomic_copy_dir`), then remove the run's
    ``state_dir`` (:func:`remove_state_dir`). Returns whether ``out_dir`` was (re)written (False:
    it already held these files)."""
    from bids_enhance.utils import atomic_copy_dir

    if not (Path(model_dir) / CHECKPOINT_NAME).is_file():
        raise FileNotFoundError(f"{model_dir} holds no {CHECKPOINT_NAME}: not a model folder")
    written = atomic_copy_dir(model_dir, out_dir, extra_files=extra_files)
    if state_dir is not None:
        remove_state_dir(state_dir, model_dir=out_dir)
    return written
