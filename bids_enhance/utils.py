"""Small shared helpers: atomic file writes, advisory locks and software versions.

Every file under a final name in the output directory is written through :func:`atomic_path`
(or :func:`atomic_paths` for files that belong together, such as an image and its sidecar):
the data goes to a hidden temporary file in the same directory, which is renamed over the final
name only once it is complete (``os.replace`` is atomic on POSIX file systems). An interrupted run
therefore never leaves a partial file under a final name; at worst a ``.tmp-*`` file is left.
A whole folder is published the same way (:func:`atomic_copy_dir`: a trained model's folder).

Several runs may write into one output directory at the same time (one per participant, on one
machine or on the nodes of a cluster). A temporary's name therefore says who writes it
(``.tmp-<owner>-<pid>-<random>-<final name>``, the owner naming the host and its process-id
namespace), and :func:`remove_stale_temporaries` removes only the temporaries of processes
that are gone, never those of a run still writing. Files that several runs update
(``descriptions.tsv`` …) are read, modified and written under :func:`file_lock`.
"""

from __future__ import annotations

import contextlib
import errno
import filecmp
import functools
import hashlib
import logging
import os
import re
import shutil
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
#: A temporary of another host (or of an older version, whose names do not say who wrote it)
#: is removed once it is this old: no write of ours takes a day between two changes of a file.
STALE_AFTER_S = 24 * 3600.0
_TMP_PATTERN = re.compile(r"\.tmp-(?P<owner>[A-Za-z0-9.]+)-(?P<pid>\d+)-[0-9a-f]{8}-.+")


@functools.cache
def owner_tag() -> str:
    """Who owns this process's temporaries: the short host name (for people) and a hash of the
    full host name and the process-id namespace (a container has its own), in which a
    temporary's process id means this process; letters, digits and dots only."""
    host = socket.gethostname() or "localhost"
    try:
        namespace = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        namespace = 0
    digest = hashlib.sha1(f"{host}\0{namespace}".encode()).hexdigest()[:8]
    short = re.sub(r"[^A-Za-z0-9]", "", host.split(".")[0])[:16] or "host"
    return f"{short}.{digest}"


def _tmp_name(final: Path) -> Path:
    # Keep the full final name (and so its extension, e.g. ``.nii.gz``, which writers read).
    return final.with_name(
        f"{TMP_PREFIX}{owner_tag()}-{os.getpid()}-{uuid.uuid4().hex[:8]}-{final.name}")


def _same_content(new: Path, old: Path) -> bool:
    try:
        return filecmp.cmp(new, old, shallow=False)
    except OSError:  # ``old`` does not exist
        return False


@contextlib.contextmanager
def atomic_paths(*finals: Path | str) -> Iterator[tuple[Path, ...]]:
    """Yield one temporary path next to each of ``finals``; if the block succeeds and wrote
    them all, rename them over their final names in the given order.

    The last name is the group's completion marker (an image after its sidecar): it appears
    only after the others are in place, so a reader that finds it finds the rest. When a file
    of the group that already exists is about to change, the existing marker is removed first,
    so that it never stands beside a companion of another version; an interrupted rename then
    leaves the marker missing, which the next run repairs. If the block fails, nothing is
    renamed; temporaries are removed in every case.
    """
    if not finals:
        raise ValueError("atomic_paths needs at least one final path")
    paths = [Path(final) for final in finals]
    for final in paths:
        final.parent.mkdir(parents=True, exist_ok=True)
    tmps = tuple(_tmp_name(final) for final in paths)
    try:
        yield tmps
        for tmp, final in zip(tmps, paths, strict=True):
            if not tmp.exists():
                raise FileNotFoundError(f"{tmp}: nothing was written for {final.name}")
        marker = paths[-1]
        if len(paths) > 1 and marker.exists() and not all(
                _same_content(tmp, final) for tmp, final in zip(tmps[:-1], paths[:-1],
                                                                strict=True)):
            with contextlib.suppress(FileNotFoundError):
                marker.unlink()
        for tmp, final in zip(tmps, paths, strict=True):
            os.replace(tmp, final)
    finally:
        for tmp in tmps:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()


@contextlib.contextmanager
def atomic_path(final: Path | str) -> Iterator[Path]:
    """Yield a temporary path next to ``final``; rename it to ``final`` if the block succeeds."""
    with atomic_paths(final) as (tmp,):
        yield tmp


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


def _tree_files(src: Path | str | None, extra_files=()) -> dict[str, Path]:
    """Relative POSIX path → source file, for the files under ``src`` and ``extra_files`` (by
    name, at the top; they win over a file of ``src`` of that name)."""
    files: dict[str, Path] = {}
    if src is not None:
        root = Path(src)
        for path in sorted(root.rglob("*")):
            if path.is_file():
                files[path.relative_to(root).as_posix()] = path
    for extra in extra_files:
        files[Path(extra).name] = Path(extra)
    return files


def _holds(folder: Path, files: dict[str, Path]) -> bool:
    """Whether ``folder`` holds exactly ``files`` (same names, same bytes)."""
    if not folder.is_dir() or set(_tree_files(folder)) != set(files):
        return False
    return all(_same_content(src, folder / rel) for rel, src in files.items())


def atomic_copy_dir(src: Path | str, final: Path | str, *, extra_files=()) -> bool:
    """Make the folder ``final`` a copy of the files under ``src`` and of ``extra_files`` (put at
    its top), never leaving it partial; return whether ``final`` was (re)written.

    The files are copied into a hidden temporary sibling (``.tmp-<owner>-<pid>-<random>-<name>``)
    that is renamed to ``final`` once complete. An existing ``final`` is replaced only then: it
    is renamed aside, the copy renamed into place, and the old folder deleted (so ``final`` is
    missing only for the instant between the two renames, never partial or mixed). When
    ``final`` already holds the same files with the same bytes nothing is copied (False).
    Temporary folders of earlier copies to ``final`` whose writer is gone
    (:func:`is_stale_temporary`) are removed first.
    """
    final = Path(final)
    files = _tree_files(src, extra_files)
    if final.exists() and not final.is_dir():
        raise FileExistsError(f"{final} exists and is not a folder")
    if _holds(final, files):
        return False
    final.parent.mkdir(parents=True, exist_ok=True)
    mine = re.compile(rf"\.tmp-[A-Za-z0-9.]+-\d+-[0-9a-f]{{8}}-{re.escape(final.name)}")
    for leftover in final.parent.iterdir():
        if (mine.fullmatch(leftover.name) and leftover.is_dir()
                and is_stale_temporary(leftover)):
            shutil.rmtree(leftover, ignore_errors=True)
    tmp, old = _tmp_name(final), _tmp_name(final)
    try:
        tmp.mkdir()
        for rel, source in files.items():
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, tmp / rel)
        if final.exists():
            os.replace(final, old)
        os.replace(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if old.exists():
            if final.exists():
                shutil.rmtree(old, ignore_errors=True)
            else:  # the new copy did not get into place: put the previous one back
                os.replace(old, final)
    return True


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    except OSError:  # pid out of range and the like: no such process
        return False
    return True


def is_stale_temporary(path: Path | str, *, max_age_s: float = STALE_AFTER_S,
                       now: float | None = None) -> bool:
    """Whether the ``.tmp-*`` file ``path`` was left by a writer that is gone.

    Stale: a temporary of this host (and process-id namespace) whose process no longer exists,
    or one that has not changed for ``max_age_s`` seconds and whose writer cannot be checked
    (another host, or a name of an older version that does not say who wrote it). A temporary
    of a live process is never stale, whatever its age. ``now``: the current time (seconds
    since the epoch; default: the clock).
    """
    path = Path(path)
    match = _TMP_PATTERN.fullmatch(path.name)
    if match and match["owner"] == owner_tag():
        return not _process_exists(int(match["pid"]))
    try:
        changed = path.stat().st_mtime
    except FileNotFoundError:
        return False  # renamed or removed by its writer meanwhile
    return (time.time() if now is None else now) - changed >= max_age_s


def remove_stale_temporaries(root: Path | str, *, max_age_s: float = STALE_AFTER_S
                             ) -> list[Path]:
    """Delete the ``.tmp-*`` files under ``root`` that interrupted runs left behind (see
    :func:`is_stale_temporary`) and return them; those of runs still writing into ``root``
    are kept."""
    root = Path(root)
    if not root.exists():
        return []
    removed = []
    for path in sorted(root.rglob(f"{TMP_PREFIX}*")):
        if not path.is_file() or not is_stale_temporary(path, max_age_s=max_age_s):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


_UNSUPPORTED_LOCKS = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS}


@contextlib.contextmanager
def file_lock(path: Path | str, *, on_wait=None) -> Iterator[Path]:
    """Hold an exclusive advisory lock (``flock``) on the file ``path`` for the block.

    ``on_wait``: called (no arguments) once if another process holds the lock, before waiting
    for it, e.g. to say so in the log.

    Processes that take the same lock, on this machine or (on NFS, where Linux maps ``flock``
    onto NFS locks) on others, run their blocks one at a time: use it around a read-modify-write
    of a file several runs update. ``path`` is created if needed and kept (removing a lock
    file while another process waits on it would break the lock); give it a hidden name in an
    output dataset. Not re-entrant: do not take the same lock again inside the block. On a file
    system without locks the block runs unlocked, with a warning.
    """
    import fcntl

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if on_wait is not None:
                    on_wait()
                fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED_LOCKS:
                raise
            logger.warning("%s: the file system does not support locks (%s); concurrent runs "
                           "writing into this directory may lose updates", path, exc.strerror)
        yield path
    finally:
        os.close(fd)  # releases the lock


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
    and arrays become Python numbers and lists, enums their values, paths strings. The one JSON
    sanitiser of the package (sidecars, cards, degradation records)."""
    import enum
    import math
    from pathlib import PurePath

    import numpy as np

    if isinstance(obj, enum.Enum):
        return json_safe(obj.value)
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
