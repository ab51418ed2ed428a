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


# ------------------------------------------------------------------------ atomic_copy_dir
def _model_folder(root, **files):
    root.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (root / name).write_text(text)
    return root


def _folder_listing(root):
    return {p.relative_to(root).as_posix(): p.read_text() for p in root.rglob("*")
            if p.is_file()}


def test_atomic_copy_dir_publishes_a_complete_folder(tmp_path):
    src = _model_folder(tmp_path / "node" / "model", **{"checkpoint.pt": "w1", "losses.csv": "l"})
    (src / "sub").mkdir()
    (src / "sub" / "x.txt").write_text("x")
    card = tmp_path / "card" / "model_card.json"
    _model_folder(card.parent, **{"model_card.json": "{}"})
    final = tmp_path / "out" / "models" / "gan3p"
    assert utils.atomic_copy_dir(src, final, extra_files=[card]) is True
    assert _folder_listing(final) == {"checkpoint.pt": "w1", "losses.csv": "l",
                                      "sub/x.txt": "x", "model_card.json": "{}"}
    assert sorted(p.name for p in final.parent.iterdir()) == ["gan3p"]  # no temporaries
    # the same files again: nothing is rewritten
    before = (final / "checkpoint.pt").stat().st_ino
    assert utils.atomic_copy_dir(src, final, extra_files=[card]) is False
    assert (final / "checkpoint.pt").stat().st_ino == before


def test_atomic_copy_dir_replaces_a_folder_only_once_the_copy_is_complete(tmp_path,
                                                                          monkeypatch):
    final = _model_folder(tmp_path / "models" / "m", **{"checkpoint.pt": "old", "stale": "s"})
    src = _model_folder(tmp_path / "new", **{"checkpoint.pt": "new", "losses.csv": "l"})
    real_copy, seen = utils.shutil.copy2, []

    def failing_copy(source, dest, **kwargs):
        seen.append(_folder_listing(final))  # the published folder while the copy runs
        if len(seen) == 2:
            raise OSError("disk full")
        return real_copy(source, dest, **kwargs)

    monkeypatch.setattr(utils.shutil, "copy2", failing_copy)
    with pytest.raises(OSError, match="disk full"):
        utils.atomic_copy_dir(src, final)
    assert seen == [{"checkpoint.pt": "old", "stale": "s"}] * 2
    assert _folder_listing(final) == {"checkpoint.pt": "old", "stale": "s"}
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"]  # temporary removed
    monkeypatch.undo()
    assert utils.atomic_copy_dir(src, final) is True
    assert _folder_listing(final) == {"checkpoint.pt": "new", "losses.csv": "l"}
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"]  # old version removed


def test_a_kill_between_the_folder_renames_puts_the_old_folder_back(tmp_path, monkeypatch):
    final = _model_folder(tmp_path / "models" / "m", **{"checkpoint.pt": "old"})
    src = _model_folder(tmp_path / "new", **{"checkpoint.pt": "new"})
    real_replace, calls = os.replace, []

    def killed(a, b):
        calls.append((os.path.basename(a), os.path.basename(b)))
        if len(calls) == 2:  # the copy's rename into place
            raise KeyboardInterrupt
        return real_replace(a, b)

    monkeypatch.setattr(utils.os, "replace", killed)
    with pytest.raises(KeyboardInterrupt):
        utils.atomic_copy_dir(src, final)
    assert calls[0][0] == "m" and calls[1][1] == "m"  # aside first, then the copy in
    assert _folder_listing(final) == {"checkpoint.pt": "old"}
    assert sorted(p.name for p in final.parent.iterdir()) == ["m"]


def test_atomic_copy_dir_removes_the_temporaries_of_killed_copies(tmp_path):
    models = tmp_path / "models"
    dead = models / f".tmp-{owner_tag()}-{_dead_pid()}-0123abcd-m"
    other = models / f".tmp-{owner_tag()}-{_dead_pid()}-0123abcd-other"
    mine = models / f".tmp-{owner_tag()}-{os.getpid()}-4567abcd-m"
    for folder in (dead, other, mine):
        _model_folder(folder, part="x")
    src = _model_folder(tmp_path / "src", **{"checkpoint.pt": "w"})
    utils.atomic_copy_dir(src, models / "m")
    assert not dead.exists() and other.exists() and mine.exists()
    with pytest.raises(FileExistsError, match="not a folder"):
        (models / "f").write_text("")
        utils.atomic_copy_dir(src, models / "f")
