"""Small shared helpers: atomic file writes and software versions.

Every file under a final name in the output directory is written through :func:`atomic_path`:
the data goes to a hidden temporary file in the same directory, which is renamed over the final
name only once it is complete (``os.replace`` is atomic on POSIX file systems). An interrupted run
therefore never leaves a partial file under a final name; at worst a ``.tmp-*`` file is left,
which the next run removes (:func:`remove_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

TMP_PREFIX = ".tmp-"


def _tmp_name(final: Path) -> Path:
    # Keep the full final name (and so its extension, e.g. ``.nii.gz``, which writers read).
    return final.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:8]}-{final.name}")


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` if the block succeeds."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = _tmp_name(final)
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"{tmp}: nothing was written for {final.name}")
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


def atomic_write_text(final: Path | str, text: str) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(final)


def atomic_write_bytes(final: Path | str, data: bytes) -> Path:
    with atomic_path(final) as tmp:
        tmp.write_bytes(data)
    return Path(final)


def atomic_copy(src: Path | str, final: Path | str) -> Path:
    with atomic_path(final) as tmp:
        shutil.copyfile(src, tmp)
    return Path(final)


def remove_stale_temporaries(root: Path | str) -> list[Path]:
    """Delete ``.tmp-*`` files an interrupted earlier run left under ``root``."""
    root = Path(root)
    if not root.exists():
        return []
    stale = [p for p in root.rglob(f"{TMP_PREFIX}*") if p.is_file()]
    for path in stale:
        with contextlib.suppress(OSError):
            path.unlink()
    return stale


def software_versions(*, with_torch: bool = True) -> dict[str, str]:
    """Versions of the packages whose behaviour shapes our outputs."""
    from importlib.metadata import PackageNotFoundError, version

    names = ["bids_enhance", "nipype", "nibabel", "numpy", "scipy", "pybids", "nireports"]
    if with_torch:
        names.insert(1, "torch")
    out = {}
    for name in names:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            continue
    return out


def json_safe(obj):
    """Recursively make ``obj`` strict-JSON: non-finite floats become ``None``, numpy scalars
    and arrays become Python numbers and lists, paths become strings."""
    import math
    from pathlib import PurePath

    import numpy as np

    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, np.generic):
        obj = obj.item()
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, PurePath):
        return str(obj)
    return obj


def dump_json(obj, **kwargs) -> str:
    """``json.dumps`` of :func:`json_safe` ``(obj)``, refusing NaN (strict JSON for BIDS)."""
    import json

    return json.dumps(json_safe(obj), allow_nan=False, indent=2, **kwargs) + "\n"


def find_executable(name: str) -> str | None:
    """``name`` from this interpreter's environment first (``.venv/bin`` when the app runs as
    ``.venv/bin/bids_enhance`` without an activated venv), then from ``PATH``."""
    import sys

    candidate = Path(sys.executable).parent / name
    if candidate.is_file() and os.access(candidate, os.X_OK):
        return str(candidate)
    return shutil.which(name)
