import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from bids_enhance import utils
from bids_enhance.utils import (
    STALE_AFTER_S,
    atomic_path,
    atomic_paths,
    dump_json,
    owner_tag,
    remove_stale_temporaries,
)


def test_atomic_path_renames_only_on_success(tmp_path):
    final = tmp_path / "sub-01_desc-denoised_T1w.nii.gz"
    with atomic_path(final) as tmp:
        assert tmp.name.endswith(final.name) and tmp.name.startswith(".tmp-")
        tmp.write_bytes(b"complete")
    assert final.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_interrupted_write_leaves_no_file_under_the_final_name(tmp_path):
    final = tmp_path / "out.nii.gz"
    final.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert final.read_bytes() == b"old"  # the previous complete file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_temporary_names_say_who_writes_them(tmp_path):
    final = tmp_path / "sub-01_desc-denoised_T1w.nii.gz"
    with atomic_path(final) as tmp:
        owner, pid, rand, rest = tmp.name.removeprefix(".tmp-").split("-", 3)
        assert (owner, int(pid), rest) == (owner_tag(), os.getpid(), final.name)
        assert len(rand) == 8 and utils.is_stale_temporary(tmp) is False
        tmp.write_bytes(b"x")


def _dead_pid() -> int:
    """The pid of a process that has exited and been reaped."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def _age(path, seconds):
    """``path`` (created if needed) last modified ``seconds`` ago."""
    path.touch()
    past = time.time() - seconds
    os.utime(path, (past, past))
    return path


def test_only_temporaries_of_gone_writers_are_removed(tmp_path):
    (tmp_path / "sub-01").mkdir()
    tag, name = owner_tag(), "sub-01_T1w.nii.gz"
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        files = {
            "mine": tmp_path / "sub-01" / f".tmp-{tag}-{os.getpid()}-0123abcd-{name}",
            "live child": tmp_path / f".tmp-{tag}-{child.pid}-0123abcd-{name}",
            "dead": tmp_path / "sub-01" / f".tmp-{tag}-{_dead_pid()}-0123abcd-{name}",
            "other host, fresh": tmp_path / f".tmp-elsewhere.0badf00d-{os.getpid()}-0123abcd-{name}",
            "other host, old": tmp_path / f".tmp-elsewhere.0badf00d-12-0123abcd-{name}",
            "legacy, fresh": tmp_path / f".tmp-1234abcd-{name}",
            "legacy, old": tmp_path / "sub-01" / f".tmp-5678abcd-{name}",
            "live, old": tmp_path / f".tmp-{tag}-{child.pid}-4567abcd-{name}",
        }
        for path in files.values():
            path.write_bytes(b"x")
        for key in ("other host, old", "legacy, old", "live, old"):
            _age(files[key], 2 * STALE_AFTER_S)
        removed = remove_stale_temporaries(tmp_path)
    finally:
        child.kill()
        child.wait()
    gone = {"dead", "other host, old", "legacy, old"}
    assert sorted(removed) == sorted(files[key] for key in gone)
    assert {key for key, path in files.items() if not path.exists()} == gone
    # Once its writer has exited, a temporary of this host goes, however young.
    assert remove_stale_temporaries(tmp_path) == sorted(
        [files["live child"], files["live, old"]])


def test_the_age_limit_can_be_chosen(tmp_path):
    path = _age(tmp_path / ".tmp-elsewhere.0badf00d-12-0123abcd-x.json", 60)
    assert remove_stale_temporaries(tmp_path, max_age_s=120) == []
    assert remove_stale_temporaries(tmp_path, max_age_s=30) == [path]


def test_atomic_paths_rename_in_order_the_last_as_marker(tmp_path, monkeypatch):
    sidecar, image = tmp_path / "a" / "x.json", tmp_path / "a" / "x.nii.gz"
    order = []
    real_replace = os.replace
    monkeypatch.setattr(utils.os, "replace",
                        lambda src, dst: (order.append(os.fspath(dst)), real_replace(src, dst)))
    with atomic_paths(sidecar, image) as (tmp_sidecar, tmp_image):
        assert tmp_image.name.endswith("-x.nii.gz") and tmp_sidecar.name.endswith("-x.json")
        tmp_sidecar.write_text("{}")
        tmp_image.write_bytes(b"img")
    assert order == [str(sidecar), str(image)]
    assert sorted(p.name for p in image.parent.iterdir()) == ["x.json", "x.nii.gz"]


def test_atomic_paths_rename_nothing_unless_all_were_written(tmp_path):
    sidecar, image = tmp_path / "x.json", tmp_path / "x.nii.gz"
    with pytest.raises(FileNotFoundError, match="nothing was written for x.nii.gz"), \
            atomic_paths(sidecar, image) as (tmp_sidecar, _):
        tmp_sidecar.write_text("{}")
    assert list(tmp_path.iterdir()) == []


def test_changing_a_companion_withdraws_the_marker_first(tmp_path, monkeypatch):
    sidecar, image = tmp_path / "x.json", tmp_path / "x.nii.gz"
    sidecar.write_text("old")
    image.write_bytes(b"old")

    def interrupted(src, dst):
        raise KeyboardInterrupt  # killed before any rename

    monkeypatch.setattr(utils.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_paths(sidecar, image) as tmps:
        tmps[0].write_text("same")
        tmps[1].write_bytes(b"new")
    # The old image went first: it never stands beside a sidecar of another version.
    assert not image.exists() and sidecar.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.json"]
    monkeypatch.undo()
    sidecar.write_text("same")
    image.write_bytes(b"old")
    monkeypatch.setattr(utils.os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt), atomic_paths(sidecar, image) as tmps:
        tmps[0].write_text("same")
        tmps[1].write_bytes(b"new")
    # An unchanged sidecar fits the old image too: the image stays until replaced.
    assert image.read_bytes() == b"old"


def test_dump_json_is_strict():
    text = dump_json({"a": float("nan"), "b": np.float32(1.5), "c": [np.inf, 2],
                      "d": np.arange(2)})
    assert json.loads(text) == {"a": None, "b": 1.5, "c": [None, 2], "d": [0, 1]}


def test_file_lock_says_when_it_waits_for_another_process(tmp_path):
    """``on_wait`` runs once when another process holds the lock (the work-directory lock of a
    participant logs it), never when the lock is free."""
    lock = tmp_path / ".lock"
    waited = []
    with utils.file_lock(lock, on_wait=lambda: waited.append("free")):
        pass
    assert waited == []
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, os, sys, time; fd = os.open(sys.argv[1], "
         "os.O_RDWR | os.O_CREAT); fcntl.flock(fd, fcntl.LOCK_EX); print('held', flush=True); "
         "time.sleep(1)", str(lock)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with utils.file_lock(lock, on_wait=lambda: waited.append("busy")):
        pass  # reached once the holder let go
    holder.wait(timeout=30)
    assert waited == ["busy"]
