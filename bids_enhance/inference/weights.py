"""Which checkpoint an enhancement step runs: shipped default weights or a user's own.

Default weights live in ``<models dir>/<name>/`` (``bids_enhance/data/models`` in the installed
package, or the folder named by the environment variable :data:`MODELS_DIR_ENV`), each with a
``model_card.json`` as :mod:`bids_enhance.training.card` writes it: ``checkpoint: {file,
sha256}`` names the weight file (relative to the card) and its sha256 — the format that
``docker/verify_models.py`` checks at image build time. A user's checkpoint is a
``checkpoint.pt`` (or the folder holding it, e.g. ``OUT/models/<name>/`` of the train level);
when a ``model_card.json`` next to it names that file, its sha256 is checked too.

Every selected file is read here once, before any image is processed: its sha256 is verified
(a tampered file is refused with one line naming it), the network is rebuilt from its
self-describing metadata, and the architecture must fit the step (an x2 generator for
super-resolution, a scale-1 generator or a diffusion U-Net for motion correction). The result
is plain data (:meth:`ResolvedModel.to_dict`) that the workflow passes to its inference nodes,
which check the sha256 again when they load the file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bids_enhance.steps import DENOISE, GENERATIVE_STEPS, STEPS, X2_STEPS

__all__ = [
    "DEFAULT_MODELS",
    "GENERATIVE_STEPS",
    "MODELS_DIR_ENV",
    "MODEL_STEPS",
    "STEP_TASKS",
    "X2_STEPS",
    "ModelSelectionError",
    "ResolvedModel",
    "card_summary",
    "models_dir",
    "read_model_card",
    "resolve_model",
]

#: environment variable that overrides the folder of default weights (tests, site installs)
MODELS_DIR_ENV = "BIDS_ENHANCE_MODELS_DIR"

#: generative enhancement steps (``--enhance`` values that run a trained network), steps whose
#: output lies on the x2 grid, the training tasks whose checkpoints each step runs, and the folder
#: (under the models dir) of each step's default weights: all from :mod:`bids_enhance.steps`
STEP_TASKS: dict[str, tuple[str, ...]] = {s: step.tasks for s, step in STEPS.items()
                                          if step.tasks}
DEFAULT_MODELS: dict[str, str] = {s: step.default_model for s, step in STEPS.items()
                                  if step.default_model}
#: steps that can run a trained model: the generative ones, and ``denoise`` with
#: ``--denoise-method learned``
MODEL_STEPS: tuple[str, ...] = tuple(STEP_TASKS)
CARD_NAME = "model_card.json"
CHECKPOINT_NAME = "checkpoint.pt"


class ModelSelectionError(ValueError):
    """No usable checkpoint for a step: none given and none shipped, a wrong architecture, a
    tampered or unreadable file. The message is one sentence naming the file."""


@dataclass
class ResolvedModel:
    """A checkpoint chosen for one enhancement step, verified and described."""

    step: str
    path: str
    sha256: str
    origin: str  # "default" (shipped with the package) or "user" (--checkpoint)
    task: str | None
    architecture: str
    lowres_method: str | None
    degradation: str | None
    card: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def models_dir(override: str | os.PathLike[str] | None = None) -> Path:
    """Folder of the default weights: ``override``, else ``$BIDS_ENHANCE_MODELS_DIR``, else the
    package's ``data/models``."""
    if override is not None:
        return Path(override)
    env = os.environ.get(MODELS_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(__file__).resolve().parent.parent / "data" / "models"


def read_model_card(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A ``model_card.json`` as a dict; :class:`ModelSelectionError` if it is not one."""
    path = Path(path)
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelSelectionError(f"model card {path} is not readable JSON ({exc})") from None
    entry = card.get("checkpoint") if isinstance(card, dict) else None
    if not isinstance(entry, dict) or not entry.get("file") or not entry.get("sha256"):
        raise ModelSelectionError(f"model card {path} lacks checkpoint.file and "
                                  "checkpoint.sha256")
    return card


def card_summary(card: dict[str, Any] | None, meta: dict[str, Any]) -> dict[str, Any]:
    """What sidecars and reports show about a model: from its card when there is one, else from
    the checkpoint's own metadata. Plain data with short keys."""
    extra = meta.get("extra") or {}
    degradation = meta.get("degradation") or {}
    out: dict[str, Any] = {
        "name": None,
        "task": extra.get("task"),
        "description": None,
        "created": meta.get("created"),
        "package_version": meta.get("package_version"),
        "degradation": degradation.get("preset") if isinstance(degradation, dict) else None,
        "iterations": extra.get("iteration"),
        "training_images": None,
        "held_out_images": None,
        "held_out_psnr": None,
        "held_out_psnr_cubic": None,
        "psnr_gain_over_cubic_db": None,
        "held_out_psnr_corrupted": None,
        "held_out_psnr_prinlm": None,
        "held_out_psnr_prinlm_cubic": None,
        "size": None,
        "training_device": None,
        "cpu_hours": None,
        "cpu_hours_total": None,
        "continued_from": None,
        "training_command": meta.get("training_command"),
    }
    if isinstance(out["training_command"], list):
        out["training_command"] = " ".join(map(str, out["training_command"]))
    if card:
        data = card.get("data") or {}
        training = card.get("training") or {}
        evaluation = card.get("held_out_evaluation") or {}
        means = evaluation.get("mean") or {}
        out.update({
            "name": card.get("name"),
            "task": card.get("task") or out["task"],
            "description": card.get("description"),
            "created": card.get("created") or out["created"],
            "degradation": data.get("degradation") or out["degradation"],
            "iterations": training.get("iterations") or out["iterations"],
            "training_images": len(data.get("training") or []),
            "held_out_images": len(data.get("held_out") or []),
            "held_out_psnr": (means.get("model") or {}).get("psnr"),
            "held_out_psnr_cubic": (means.get("cubic") or {}).get("psnr"),
            "psnr_gain_over_cubic_db": (evaluation.get("psnr_gain_over_cubic_db") or {})
            .get("mean"),
            "held_out_psnr_corrupted": (means.get("corrupted") or {}).get("psnr"),
            "held_out_psnr_prinlm": (means.get("prinlm") or {}).get("psnr"),
            "held_out_psnr_prinlm_cubic": (means.get("prinlm_cubic") or {}).get("psnr"),
            "size": card.get("size"),
            "training_device": training.get("device"),
            "cpu_hours": training.get("cpu_hours"),
            # a run that continued another (``--init-from``): which, and the cost of both
            "cpu_hours_total": training.get("cpu_hours_total"),
            "continued_from": _parent_run(training.get("initialised_from")),
            "training_command": card.get("command") or out["training_command"],
        })
    if out["description"] is None and out["task"]:
        from bids_enhance.models.registry import TASK_TITLES

        out["description"] = TASK_TITLES.get(out["task"], out["task"])
    return out


def _parent_run(parent: Any) -> dict[str, Any] | None:
    """What a continued run (``--init-from``) started from: ``{model, iterations, sha256}``; the
    model is named by the card, else by the folder of its checkpoint."""
    if not isinstance(parent, dict):
        return None
    name = parent.get("model") or (Path(str(parent["checkpoint"])).parent.name
                                   if parent.get("checkpoint") else None)
    return {"model": name, "iterations": parent.get("iterations"), "sha256": parent.get("sha256")}


def _what(step: str) -> str:
    """How the user asked for the model of ``step`` (the start of a refusal)."""
    return "--denoise-method learned" if step == DENOISE.name else f"--enhance {step}"


def _no_default_message(step: str, directory: Path) -> str:
    from bids_enhance import __version__

    task = STEP_TASKS[step][0]
    return (f"{_what(step)} needs a trained model, but bids_enhance {__version__} ships no "
            f"default weights for it yet (looked for {directory / DEFAULT_MODELS[step] / CARD_NAME}"
            f"); train one with `bids_enhance BIDS_DIR OUT train --model {task}` and pass it "
            f"with --checkpoint {step}=OUT/models/{task}/checkpoint.pt"
            + STEPS[step].no_default_hint)


def _locate(step: str, given: str | os.PathLike[str] | None, directory: Path
            ) -> tuple[Path, str | None, Path | None, dict | None, str]:
    """``(checkpoint, expected sha256 or None, card path, card, origin)``."""
    if given is None:
        card_path = directory / DEFAULT_MODELS[step] / CARD_NAME
        if not card_path.is_file():
            raise ModelSelectionError(_no_default_message(step, directory))
        card = read_model_card(card_path)
        weights = card_path.parent / card["checkpoint"]["file"]
        if not weights.is_file():
            raise ModelSelectionError(
                f"the default weights of {_what(step)} are incomplete: {weights} (named by "
                f"{card_path}) is missing; reinstall bids_enhance or pass --checkpoint "
                f"{step}=PATH")
        return weights, card["checkpoint"]["sha256"], card_path, card, "default"
    path = Path(given).expanduser().absolute()
    if path.is_dir():
        card_path = path / CARD_NAME
        if card_path.is_file():
            card = read_model_card(card_path)
            weights = path / card["checkpoint"]["file"]
            if not weights.is_file():
                raise ModelSelectionError(f"--checkpoint {step}={given}: {weights}, named by "
                                          f"{card_path}, does not exist")
            return weights, card["checkpoint"]["sha256"], card_path, card, _origin(
                step, card_path, directory)
        if (path / CHECKPOINT_NAME).is_file():
            path = path / CHECKPOINT_NAME
        else:
            raise ModelSelectionError(f"--checkpoint {step}={given} is a folder without "
                                      f"{CARD_NAME} or {CHECKPOINT_NAME}")
    if not path.is_file():
        raise ModelSelectionError(f"--checkpoint {step}={given}: file {path} does not exist")
    card_path = path.parent / CARD_NAME
    if card_path.is_file():
        try:
            card = read_model_card(card_path)
        except ModelSelectionError:
            card = None
        if card is not None and (path.parent / card["checkpoint"]["file"]).resolve() \
                == path.resolve():
            return path, card["checkpoint"]["sha256"], card_path, card, _origin(step, card_path,
                                                                               directory)
    return path, None, None, None, "user"


def _origin(step: str, card_path: Path, directory: Path) -> str:
    """"default" when ``card_path`` is the card of ``step``'s shipped weights (a checkpoint the
    main process resolved and handed on by path to a worker is still the shipped one), else
    "user"."""
    folder = DEFAULT_MODELS.get(step)
    if folder is not None and card_path.resolve() == (directory / folder / CARD_NAME).resolve():
        return "default"
    return "user"


def _check_fits(step: str, meta: dict[str, Any], path: Path) -> str | None:
    """The x2 low-resolution method of an x2 checkpoint (None otherwise); raises
    :class:`ModelSelectionError` when the checkpoint cannot do ``step``."""
    from bids_enhance.inference.run import lowres_method_of
    from bids_enhance.models.registry import describe_arch

    name, kwargs = meta["arch_name"], dict(meta["arch_kwargs"])
    held = describe_arch(name, kwargs)
    task = (meta.get("extra") or {}).get("task")
    expected_tasks = STEP_TASKS[step]
    if step in X2_STEPS:
        if name != "rrdb_generator" or kwargs.get("scale", 2) != 2:
            raise ModelSelectionError(
                f"checkpoint {path} holds {held}, but --enhance {step} needs an x2 "
                "super-resolution generator (rrdb_generator with scale=2), as `bids_enhance … "
                f"train --model {expected_tasks[0]}` writes")
    elif step == DENOISE.name:
        if name != "rrdb_generator" or kwargs.get("scale") != 1:
            raise ModelSelectionError(
                f"checkpoint {path} holds {held}, but --denoise-method learned needs a scale-1 "
                "generator (rrdb_generator with scale=1), as `bids_enhance … train --model "
                "denoise` writes")
    elif not ((name == "rrdb_generator" and kwargs.get("scale") == 1)
              or name == "diffusion_unet"):
        raise ModelSelectionError(
            f"checkpoint {path} holds {held}, but --enhance motion needs a motion-correction "
            "model (rrdb_generator with scale=1 or diffusion_unet), as `bids_enhance … train "
            "--model motion-gan` or `--model motion-ddpm` writes")
    if task is not None and task not in expected_tasks:
        fits = [s for s, tasks in STEP_TASKS.items() if task in tasks]
        hint = (f"; use {_what(fits[0])} for it" if fits and fits[0] == DENOISE.name else
                f"; use --enhance {fits[0]} for it" if fits else "")
        raise ModelSelectionError(
            f"checkpoint {path} was trained for {task!r}, but {_what(step)} runs "
            f"{' or '.join(map(repr, expected_tasks))} models{hint}")
    if step not in X2_STEPS:
        return None
    try:
        method, axis = lowres_method_of(meta.get("degradation"))
    except ValueError as exc:  # a hand-made record, e.g. an unknown low-resolution method
        raise ModelSelectionError(f"checkpoint {path} has a malformed 'degradation' entry: "
                                  f"{exc}") from None
    if method is not None and method.value == "thick":
        raise ModelSelectionError(
            f"checkpoint {path} was trained for one-axis thick slices (axis {axis}), which an x2 "
            "generator cannot invert; train it with a box, kspace or nearest degradation")
    return method.value if method is not None else "box"


def resolve_model(step: str, given: str | os.PathLike[str] | None = None, *,
                  directory: str | os.PathLike[str] | None = None) -> ResolvedModel:
    """Choose, verify and describe the checkpoint of enhancement ``step``.

    ``given``: the user's ``--checkpoint`` (a checkpoint file, or a folder with
    ``model_card.json``/``checkpoint.pt``); ``None`` selects the shipped default weights in
    :func:`models_dir` (``directory`` overrides it). Raises :class:`ModelSelectionError` (one
    sentence) when there is no usable checkpoint.
    """
    from bids_enhance.models.checkpoint import CheckpointError, load_checkpoint
    from bids_enhance.models.registry import describe_arch

    if step not in MODEL_STEPS:
        raise ValueError(f"step must be one of {list(MODEL_STEPS)}, got {step!r}")
    folder = models_dir(directory)
    path, expected, card_path, card, origin = _locate(step, given, folder)
    try:
        _, meta = load_checkpoint(path, expected_sha256=expected, map_location="cpu")
    except CheckpointError as exc:
        raise ModelSelectionError(str(exc)) from None
    method = _check_fits(step, meta, path)
    degradation = meta.get("degradation") or {}
    summary = card_summary(card, meta)
    summary["name"] = summary["name"] or (card_path.parent.name if card_path else path.stem)
    return ResolvedModel(
        step=step, path=str(path), sha256=meta["sha256"], origin=origin,
        task=(meta.get("extra") or {}).get("task") or summary.get("task"),
        architecture=describe_arch(meta["arch_name"], dict(meta["arch_kwargs"])),
        lowres_method=method,
        degradation=degradation.get("preset") if isinstance(degradation, dict) else None,
        card=str(card_path) if card_path else None, summary=summary)
