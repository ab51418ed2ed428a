"""Self-describing checkpoints, written atomically and read with ``torch.load(weights_only=True)``.

A checkpoint is a ``torch.save``d dict of plain data and tensors only (no pickled classes):

===================  ==========================================================================
key                  value
===================  ==========================================================================
``format``           ``"bids_enhance.checkpoint"``
``format_version``   ``1``
``arch_name``        registry name, e.g. ``"rrdb_generator"``
``arch_kwargs``      keyword arguments that rebuild the network (``build_model(name, **kwargs)``)
``state_dict``       ``{key: tensor}`` of the network (CPU, contiguous)
``ema_state_dict``   the same for the EMA weights, or ``None``
``degradation``      the degradation preset/record the model was trained for, or ``None``
``normalisation``    intensity normalisation used in training, or ``None``
``seed``             master seed of the training run, or ``None``
``training_command`` the command line (string or list of strings), or ``None``
``package_version``  ``bids_enhance.__version__`` that wrote the file
``torch_version``    ``torch.__version__`` that wrote the file
``created``          UTC time stamp, ISO 8601
``extra``            free plain data (e.g. ``{"diffusion": NoiseSchedule.config()}``, optimiser
                     state for resuming), or ``None``
===================  ==========================================================================

The file's own sha256 belongs in the model card (``save_checkpoint`` returns it); pass it to
``load_checkpoint(expected_sha256=...)`` to refuse a modified file before anything is unpickled.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import re
import reprlib
import tempfile
from collections.abc import Mapping
from pathlib import Path, PurePath
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from bids_enhance import __version__
from bids_enhance.models.registry import build_model, describe_arch, model_class

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_FORMAT_VERSION", "CheckpointError",
           "load_checkpoint", "read_checkpoint", "safe_load_failure", "save_checkpoint",
           "save_torch_atomic", "sha256_file"]

CHECKPOINT_FORMAT = "bids_enhance.checkpoint"
CHECKPOINT_FORMAT_VERSION = 1
_WEIGHT_CHOICES = ("auto", "ema", "model")


class CheckpointError(ValueError):
    """A checkpoint cannot be written or read as asked (wrong architecture, tampered, malformed)."""


def sha256_file(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes (read in 1 MiB chunks)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------------------------------------
# writing
# ---------------------------------------------------------------------------------------------

def _unwrap(model: nn.Module) -> nn.Module:
    """Strip torch.compile, DDP/DataParallel and AveragedModel wrappers."""
    for _ in range(8):
        if hasattr(model, "_orig_mod"):
            model = model._orig_mod
        elif isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel,
                                torch.optim.swa_utils.AveragedModel)):
            model = model.module
        else:
            break
    return model


def _plain(value: Any, where: str) -> Any:
    """Return ``value`` as plain data loadable with ``weights_only=True``; convert numpy scalars
    and paths, refuse everything else with a ``TypeError`` naming where it sits."""
    if value is None or isinstance(value, bool):
        return value
    # plain builtins only: str/int/float subclasses (enums, TorchVersion) are not loadable
    if isinstance(value, str):
        return str.__str__(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Tensor):
        return value.detach().cpu()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, PurePath):
        return str(value)
    if isinstance(value, Mapping):
        out = {}
        for key, item in value.items():
            if not isinstance(key, (str, int)) or isinstance(key, bool):
                raise TypeError(f"{where} has a key {key!r} of type {type(key).__name__}; "
                                "checkpoint keys must be str or int")
            out[key] = _plain(item, f"{where}[{key!r}]")
        return out
    if isinstance(value, (list, tuple)):
        items = [_plain(item, f"{where}[{i}]") for i, item in enumerate(value)]
        return tuple(items) if isinstance(value, tuple) else items
    raise TypeError(f"{where} holds a {type(value).__name__}, which a checkpoint cannot store; "
                    "use plain data (str, int, float, bool, None, lists, dicts, tensors)")


def _shapes(state: Mapping[str, Tensor]) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in state.items()}


def _compare_shapes(found: Mapping[str, tuple[int, ...]], expected: Mapping[str, tuple[int, ...]],
                    ) -> str | None:
    """How ``found`` (the weights) differs from ``expected`` (what the kwargs build), or None."""
    problems = []
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    if missing:
        problems.append(f"lacks {missing[:3]}{' …' if len(missing) > 3 else ''}")
    if unexpected:
        problems.append(f"has extra {unexpected[:3]}{' …' if len(unexpected) > 3 else ''}")
    for key, shape in expected.items():
        if key in found and found[key] != shape:
            problems.append(f"{key} has shape {found[key]}, expected {shape}")
            break
    return "; ".join(problems) or None


def _cpu_state(state: Mapping[str, Tensor]) -> dict[str, Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def save_checkpoint(path: str | os.PathLike[str], *, model: nn.Module,
                    ema_model: nn.Module | Mapping[str, Tensor] | None = None,
                    arch_name: str, arch_kwargs: Mapping[str, Any],
                    degradation: Any = None, normalisation: Any = None, seed: int | None = None,
                    training_command: str | list[str] | None = None,
                    extra: Mapping[str, Any] | None = None) -> str:
    """Write a self-describing checkpoint to ``path`` atomically and return its sha256.

    ``model`` (and ``ema_model``, a module or a state dict) may be wrapped by ``torch.compile``,
    DDP or ``AveragedModel``. ``arch_name``/``arch_kwargs`` must rebuild a network with exactly
    the model's keys and shapes, otherwise :class:`CheckpointError` is raised and nothing is
    written. Metadata must be plain data (``TypeError`` otherwise; numpy scalars and paths are
    converted).
    """
    path = Path(path)
    cls = model_class(arch_name)
    net = _unwrap(model)
    if type(net) is not cls:
        raise CheckpointError(f"arch_name {arch_name!r} is {cls.__name__}, but the model is a "
                              f"{type(net).__name__}")
    kwargs = _plain(dict(arch_kwargs), "arch_kwargs")
    with torch.device("meta"):
        reference = build_model(arch_name, **kwargs)
    expected = _shapes(reference.state_dict())
    state = _cpu_state(net.state_dict())
    problem = _compare_shapes(_shapes(state), expected)
    if problem:
        raise CheckpointError(f"the model does not match {describe_arch(arch_name, kwargs)}: "
                              f"{problem}")
    ema_state = None
    if ema_model is not None:
        ema_state = _cpu_state(_unwrap(ema_model).state_dict() if isinstance(ema_model, nn.Module)
                               else ema_model)
        problem = _compare_shapes(_shapes(ema_state), expected)
        if problem:
            raise CheckpointError(f"the EMA weights do not match {describe_arch(arch_name, kwargs)}"
                                  f": {problem}")
    if isinstance(training_command, (list, tuple)):
        training_command = [str(part) for part in training_command]
    payload = {
        "format": CHECKPOINT_FORMAT,
        "format_version": CHECKPOINT_FORMAT_VERSION,
        "arch_name": str.__str__(arch_name),
        "arch_kwargs": kwargs,
        "state_dict": state,
        "ema_state_dict": ema_state,
        "degradation": _plain(degradation, "degradation"),
        "normalisation": _plain(normalisation, "normalisation"),
        "seed": _plain(seed, "seed"),
        "training_command": _plain(training_command, "training_command"),
        "package_version": str.__str__(__version__),
        "torch_version": str.__str__(torch.__version__),
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "extra": _plain(extra, "extra"),
    }
    save_torch_atomic(payload, path)
    return sha256_file(path)


def save_torch_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, fsync, then rename: a crash never
    leaves a partial file under the final name. The file gets the usual permissions (0666 minus
    the umask), not ``mkstemp``'s 0600, so shared model folders stay readable."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(obj, fh)
            fh.flush()
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------------------------------------
# reading
# ---------------------------------------------------------------------------------------------

_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")
#: sentences of torch's messages that advise loading the file unsafely
_UNSAFE_ADVICE = re.compile(r"weights_only|safe_globals|trust", re.IGNORECASE)


def safe_load_failure(exc: BaseException) -> str:
    """A short one-line reason why ``torch.load(..., weights_only=True)`` refused a file.

    torch's own message advises retrying with ``weights_only=False`` or allowlisting the
    offending class; both run code from the file, which is unsafe for a file of unknown origin,
    so that advice is dropped and only the cause is kept.
    """
    text = _ANSI_ESCAPE.sub("", str(exc))
    detail = re.search(r"WeightsUnpickler error:\s*(.+?)(?:\n\s*\n|\Z)", text, re.DOTALL)
    text = " ".join((detail.group(1) if detail else text).split())
    found = re.match(r"Unsupported global: GLOBAL (\S+) was not an allowed global", text)
    if found:
        return f"it holds a pickled Python object ({found.group(1)}), which is never unpickled"
    found = re.match(r"Unsupported operand (\d+)", text)
    if found:
        return f"unsupported pickle opcode {found.group(1)}"
    sentences = [part for part in re.split(r"(?<=[.!?])\s+", text)
                 if part and not _UNSAFE_ADVICE.search(part)]
    reason = sentences[0].rstrip(". ") if sentences else ""
    return (reason or type(exc).__name__)[:200]


def _kind(value: Any) -> str:
    """``"a list ([1, 2])"``: the type and a short repr of a value found in a checkpoint."""
    if value is None:
        return "None"
    name = type(value).__name__
    return f"{'an' if name[0] in 'aeiouAEIOU' else 'a'} {name} ({reprlib.repr(value)})"


def _is_plain(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_is_plain(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_plain(v) for k, v in value.items())
    return False


def _check_entries(payload: dict[str, Any], path: Path) -> None:
    """Refuse, with one line, entries of the wrong type (a hand-made or foreign file) before
    anything uses them."""
    def refuse(key: str, found: str, expected: str) -> CheckpointError:
        return CheckpointError(f"checkpoint {path} has a malformed {key!r} entry: {found}, "
                               f"expected {expected}")

    name = payload["arch_name"]
    if not isinstance(name, str):
        raise refuse("arch_name", _kind(name), "a registered model name (str)")
    kwargs = payload["arch_kwargs"]
    if not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise refuse("arch_kwargs", _kind(kwargs), "a dict of keyword arguments with str keys")
    for key, value in kwargs.items():
        if not _is_plain(value):
            raise refuse("arch_kwargs", f"{key!r} is {_kind(value)}",
                         "plain data (str, int, float, bool, None, lists, dicts)")
    for entry in ("state_dict", "ema_state_dict"):
        state = payload.get(entry)
        if state is None and entry == "ema_state_dict":
            continue
        if not isinstance(state, dict):
            raise refuse(entry, _kind(state), "a dict {parameter name: tensor}")
        for key, value in state.items():
            if not isinstance(key, str):
                raise refuse(entry, f"has the key {_kind(key)}", "parameter names (str)")
            if not isinstance(value, Tensor):
                raise refuse(entry, f"{key!r} is {_kind(value)}", "a tensor")
    extra = payload.get("extra")
    if extra is not None and not isinstance(extra, dict):
        raise refuse("extra", _kind(extra), "a dict or None")


def read_checkpoint(path: str | os.PathLike[str], *, expected_sha256: str | None = None,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The raw checkpoint dict (plus ``"sha256"`` and ``"path"``), after checking the file's
    sha256 when ``expected_sha256`` is given and loading with ``weights_only=True``.

    For trainers resuming a run; inference should use :func:`load_checkpoint`.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    digest = sha256_file(path)
    if expected_sha256 is not None and digest != expected_sha256.strip().lower():
        raise CheckpointError(
            f"checkpoint {path} has sha256 {digest}, expected {expected_sha256.strip().lower()}: "
            "the file was modified or is not the one the model card describes; refusing to load it")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # UnpicklingError (non-plain content), RuntimeError (not a zip) …
        raise CheckpointError(
            f"{path}: not a bids_enhance checkpoint (cannot be read as a safe torch checkpoint "
            f"of tensors and plain data: {safe_load_failure(exc)})") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a bids_enhance checkpoint (no "
                              f"format={CHECKPOINT_FORMAT!r} entry)")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format version {version!r}, written by bids_enhance "
            f"{payload.get('package_version')}; this version ({__version__}) reads up to "
            f"{CHECKPOINT_FORMAT_VERSION}")
    for key in ("arch_name", "arch_kwargs", "state_dict"):
        if key not in payload:
            raise CheckpointError(f"{path} lacks the {key!r} entry")
    _check_entries(payload, path)
    payload["sha256"] = digest
    payload["path"] = str(path)
    return payload


def load_checkpoint(path: str | os.PathLike[str], *, expected_arch: str | None = None,
                    expected_kwargs: Mapping[str, Any] | None = None,
                    expected_sha256: str | None = None,
                    map_location: str | torch.device = "cpu",
                    weights: str = "auto") -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the network stored in ``path`` and return ``(model, meta)``; model in eval mode.

    - ``expected_sha256``: refuse the file unless its sha256 matches (checked before loading);
    - ``expected_arch``: refuse unless the checkpoint holds this registry name;
    - ``expected_kwargs``: refuse unless these architecture arguments match (e.g. ``{"scale": 2}``);
    - ``weights``: ``"auto"`` (EMA weights when present), ``"ema"`` or ``"model"``.

    ``meta`` holds every entry except the state dicts, plus ``sha256``, ``path``, ``has_ema`` and
    ``weights`` (which set was loaded).
    """
    if weights not in _WEIGHT_CHOICES:
        raise ValueError(f"weights must be one of {list(_WEIGHT_CHOICES)}, got {weights!r}")
    payload = read_checkpoint(path, expected_sha256=expected_sha256, map_location=map_location)
    name, kwargs = payload["arch_name"], dict(payload["arch_kwargs"])
    held = describe_arch(name, kwargs)
    if expected_arch is not None and name != expected_arch:
        raise CheckpointError(f"checkpoint {path} holds {held}, expected {expected_arch}")
    if expected_kwargs:
        wrong = {k: v for k, v in expected_kwargs.items() if kwargs.get(k, _MISSING) != v}
        if wrong:
            raise CheckpointError(f"checkpoint {path} holds {held}, expected "
                                  f"{describe_arch(expected_arch or name, dict(expected_kwargs))}")
    try:
        model = build_model(name, **kwargs)
    except (ValueError, TypeError) as exc:
        raise CheckpointError(f"checkpoint {path} holds {held}, which this version "
                              f"({__version__}) cannot build: {exc}") from None
    has_ema = payload.get("ema_state_dict") is not None
    if weights == "ema" and not has_ema:
        raise CheckpointError(f"checkpoint {path} has no EMA weights (weights='ema' asked)")
    use = "ema" if (weights == "ema" or (weights == "auto" and has_ema)) else "model"
    state = payload["ema_state_dict"] if use == "ema" else payload["state_dict"]
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).strip().splitlines()
        raise CheckpointError(f"checkpoint {path} claims {held} but its weights do not fit: "
                              f"{' '.join(s.strip() for s in first[:3])}") from None
    model.to(map_location).eval()
    meta = {k: v for k, v in payload.items() if k not in ("state_dict", "ema_state_dict")}
    meta.update(has_ema=has_ema, weights=use)
    return model, meta


_MISSING = object()
