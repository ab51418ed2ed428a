"""Process entry point of a training run, for ``torchrun`` (or plain ``python -m``).

::

    torchrun --standalone --nproc_per_node=4 -m bids_enhance.training --spec run.json

``run.json``::

    {
      "config": {"task": "gan3p", "iterations": 20000, "batch_size": 4, "seed": 42},
      "out_dir": "out/models/gan3p",
      "train": [{"subject": "01", "path": "sub-01_T1w.nii.gz"}, ...],
      "validation": [{"subject": "09", "path": "sub-09_T1w.nii.gz"}],
      "resume": null,
      "normalise": true,
      "training_command": ["bids_enhance", "bids", "out", "train", "..."]
    }

Images are NIfTI (``.nii``/``.nii.gz``, read with nibabel) or ``.npz`` files with a ``data``
array and optional ``affine`` and ``mask``; an entry may name a ``mask`` file too. With
``normalise`` (default true) each image is divided by its robust maximum
(:func:`bids_enhance.image.intensity.normalise`). Every rank loads the data; rank 0 writes
``result.json`` (the :class:`~bids_enhance.training.engine.TrainingResult`) into ``out_dir``.
``--spec`` may be repeated: the runs go one after another in the same processes (and the same
process group).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["load_volume", "main", "run_from_spec"]


def _load_array(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    if path.suffix == ".npz":
        with np.load(path) as npz:
            data = np.asarray(npz["data"])
            affine = np.asarray(npz["affine"]) if "affine" in npz else np.eye(4)
            mask = np.asarray(npz["mask"]) if "mask" in npz else None
        return data, affine, mask
    import nibabel as nib

    img = nib.load(str(path))
    return np.asarray(img.dataobj, dtype=np.float32), img.affine, None


def load_volume(entry: Mapping[str, Any], *, base: Path, normalise: bool = True):
    """A :class:`~bids_enhance.training.data.TrainingVolume` from a run-spec entry."""
    from bids_enhance.image.intensity import normalise as normalise_fn
    from bids_enhance.training.data import TrainingVolume

    if "subject" not in entry or "path" not in entry:
        raise ValueError(f"each image entry needs 'subject' and 'path', got {dict(entry)!r}")
    path = Path(entry["path"])
    path = path if path.is_absolute() else base / path
    if not path.is_file():
        raise FileNotFoundError(f"training image {path} does not exist")
    data, affine, mask = _load_array(path)
    if entry.get("mask"):
        mask_path = Path(entry["mask"])
        mask = _load_array(mask_path if mask_path.is_absolute() else base / mask_path)[0] > 0
    if normalise:
        data, _ = normalise_fn(data, mask=mask)
    return TrainingVolume(subject=str(entry["subject"]), data=data, affine=affine, mask=mask)


def run_from_spec(spec: Mapping[str, Any], *, base: Path = Path("."),
                  progress: bool | None = None, context: Any = None):
    """Run the training a spec describes; returns the ``TrainingResult``. ``context``: a
    :class:`~bids_enhance.training.ddp.DistributedContext` to reuse (default: from the
    environment, closed afterwards)."""
    from bids_enhance.training.config import TrainConfig
    from bids_enhance.training.engine import train

    unknown = set(spec) - {"config", "out_dir", "train", "validation", "resume", "normalise",
                           "training_command"}
    if unknown:
        raise ValueError(f"unknown run-spec keys {sorted(unknown)}")
    for key in ("config", "out_dir", "train"):
        if key not in spec:
            raise ValueError(f"the run spec needs {key!r}")
    config = TrainConfig.from_dict(spec["config"])
    normalise = bool(spec.get("normalise", True))
    volumes = [load_volume(e, base=base, normalise=normalise) for e in spec["train"]]
    val = [load_volume(e, base=base, normalise=normalise) for e in spec.get("validation") or []]
    out_dir = Path(spec["out_dir"])
    out_dir = out_dir if out_dir.is_absolute() else base / out_dir
    resume = spec.get("resume")
    return train(volumes, config=config, out_dir=out_dir, val_volumes=val or None,
                 resume=resume, training_command=spec.get("training_command"),
                 progress=progress, context=context)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bids_enhance.training",
                                     description="Run one training process (torchrun-aware).")
    parser.add_argument("--spec", required=True, type=Path, action="append",
                        help="JSON run spec (see the module doc); repeat to run several "
                             "trainings one after another in the same processes")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="force the progress bar on or off (default: when on a terminal)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from bids_enhance.training.ddp import DistributedContext
    from bids_enhance.utils import atomic_write_text, dump_json

    specs = [(json.loads(path.read_text()), path.parent) for path in args.spec]
    context = DistributedContext.from_env(str(specs[0][0].get("config", {}).get("device", "auto")))
    try:
        for spec, base in specs:
            result = run_from_spec(spec, base=base, progress=args.progress, context=context)
            if result.checkpoint is not None:
                atomic_write_text(result.checkpoint.parent / "result.json",
                                  dump_json(result.to_dict()))
    finally:
        context.close()
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
