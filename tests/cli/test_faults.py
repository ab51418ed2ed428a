"""Faults a run must report truthfully (issue 9): the exit code says what happened, impossible
budgets are refused instead of waited for, refusals leave nothing behind, Ctrl-C is one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bids_enhance.cli.run import main
from tests.conftest import phantom, write_bids

FAST = ["--sloppy", "--skip-bids-validation", "--nprocs", "1"]


@pytest.fixture
def one_subject(tmp_path) -> Path:
    return write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=3.0)})


def _run(bids: Path, out: Path, *extra: str) -> int:
    return main([str(bids), str(out), "participant", *extra])


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("bids_enhance: error:")]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


# -- 1. the exit code is the truth ----------------------------------------------------------------
def test_an_unusable_work_directory_is_refused_up_front(one_subject, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    out = tmp_path / "out"
    code = _run(one_subject, out, "-w", str(tmp_path / "a_file" / "work"), *FAST)
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "work directory" in line and "a_file" in line
    assert not out.exists()


def test_a_workflow_that_fails_without_a_crash_file_exits_1(one_subject, tmp_path, capsys,
                                                            monkeypatch):
    """nipype raised (e.g. it could not write its work directory) and no node left a crash
    file: formerly logged at debug level, then "Done" and exit 0."""
    from nipype.pipeline.engine import Workflow

    def fail(self, *args, **kwargs):
        raise RuntimeError("cannot create /work/here: Permission denied")

    monkeypatch.setattr(Workflow, "run", fail)
    code = _run(one_subject, tmp_path / "out", "-w", str(tmp_path / "w"), *FAST)
    assert code == 1
    err = capsys.readouterr().err
    assert "the workflow did not run: cannot create /work/here: Permission denied" in err
    assert "0 of 1 image(s) written" in err
    assert "Done" not in err and "the other images were processed" not in err


def test_a_planned_image_that_was_not_written_exits_1(one_subject, tmp_path, capsys,
                                                      monkeypatch):
    from nipype.pipeline.engine import Workflow

    monkeypatch.setattr(Workflow, "run", lambda self, *a, **k: None)  # ran "nothing"
    code = _run(one_subject, tmp_path / "out", "-w", str(tmp_path / "w"), *FAST)
    assert code == 1
    err = capsys.readouterr().err
    assert "sub-01_T1w.nii.gz: no output was written (sub-01_desc-denoised_T1w.nii.gz is " \
           "missing)" in err
    assert "Done" not in err


@pytest.mark.parametrize(("setting", "message"), [
    ("nprocs = 0", "nprocs = 0: '0' must be at least 1"),
    ("omp_nthreads = -1", "omp_nthreads = -1"),
    ("mem_gb = -5", "mem_gb = -5: must be a number of GB above zero"),
    ("mem_gb = 'lots'", "mem_gb = 'lots'"),
    ("random_seed = 'x'", "random_seed = 'x'"),
])
def test_config_file_values_get_the_command_line_checks(one_subject, tmp_path, capsys, setting,
                                                        message):
    config = tmp_path / "settings.toml"
    config.write_text(setting + "\n")
    with pytest.raises(SystemExit) as exc:
        _run(one_subject, tmp_path / "out", "--config-file", str(config))
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


# -- 2. no hangs ----------------------------------------------------------------------------------
def test_a_memory_budget_below_the_largest_step_is_refused(one_subject, tmp_path, capsys):
    """``--mem 8`` is 8 MB: MultiProc never schedules a job below 0.01 GB and waited forever."""
    out = tmp_path / "out"
    code = _run(one_subject, out, "-w", str(tmp_path / "w"), "--sloppy",
                "--skip-bids-validation", "--nprocs", "2", "--mem", "8")
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "--mem 8 MB is less than the 0.50 GB the largest step needs (sub-01_T1w " in line
    assert "give at least --mem 0.50G" in line
    assert not out.exists()


# -- 5. refusals leave nothing behind -------------------------------------------------------------
@pytest.mark.parametrize("extra", [
    ["--session-label", "9"],
    ["--participant-label", "99"],
    ["--use-plugin", "PLUGIN"],
])
def test_refusals_leave_no_output_directory(one_subject, tmp_path, capsys, extra):
    plugin = tmp_path / "plugin.yml"
    plugin.write_text("plugin_args: {}\n")  # no 'plugin' key
    extra = [str(plugin) if e == "PLUGIN" else e for e in extra]
    out = tmp_path / "out"
    code = _run(one_subject, out, "-w", str(tmp_path / "w"), "--sloppy",
                "--skip-bids-validation", *extra)
    assert code == 2
    _one_error_line(capsys.readouterr().err)
    assert not out.exists()


def test_an_unwritable_output_directory_is_one_line(one_subject, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    code = _run(one_subject, tmp_path / "a_file" / "out", "-w", str(tmp_path / "w"), *FAST)
    assert code == 2
    assert "output directory" in _one_error_line(capsys.readouterr().err)


def test_a_full_disk_is_refused_before_any_work(one_subject, tmp_path, capsys, monkeypatch):
    import shutil
    from collections import namedtuple

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(shutil, "disk_usage", lambda path: usage(10**9, 10**9 - 10**6, 10**6))
    out = tmp_path / "out"
    code = _run(one_subject, out, "-w", str(tmp_path / "w"), "--sloppy")
    assert code == 2
    line = _one_error_line(capsys.readouterr().err)
    assert "full disk (1 MB free)" in line
    assert not out.exists()  # nor a 0-byte validator report under its final name


def test_an_os_error_outside_the_workflow_is_one_line_exit_2(one_subject, tmp_path, capsys,
                                                             monkeypatch):
    import errno

    import bids_enhance.bids.dataset as dataset

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "out" / "x"))

    monkeypatch.setattr(dataset, "write_dataset_description", full)
    code = _run(one_subject, tmp_path / "out", "-w", str(tmp_path / "w"), *FAST)
    assert code == 2
    assert "No space left on device" in _one_error_line(capsys.readouterr().err)


# -- 6. outputs never become inputs ---------------------------------------------------------------
def test_an_output_directory_inside_the_dataset_must_be_under_derivatives(one_subject, capsys):
    with pytest.raises(SystemExit) as exc:
        _run(one_subject, one_subject / "enhanced", *FAST)
    assert exc.value.code == 2
    assert "not under derivatives/" in capsys.readouterr().err
    assert not (one_subject / "enhanced").exists()


def test_two_inputs_never_map_to_one_output_name(tmp_path):
    from bids_enhance.cli.parser import parse_args
    from bids_enhance.cli.run import UsageError, planned_outputs

    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom()})
    settings = parse_args([str(bids), str(tmp_path / "out"), "participant"])
    source = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    # an earlier output indexed as an input would have been the second writer of this name
    twin = bids / "sub-01" / "anat" / "sub-01_desc-denoised_T1w.nii.gz"
    assert planned_outputs(settings, {"01": [source]})[source].name == twin.name
    with pytest.raises(UsageError, match="would both be written to "
                                         "sub-01_desc-denoised_T1w.nii.gz"):
        planned_outputs(settings, {"01": [source, twin]})


# -- 7. one subject without the suffix ------------------------------------------------------------
def test_a_subject_without_the_suffix_is_skipped(one_subject, tmp_path, capsys):
    (one_subject / "sub-emptyroom" / "meg").mkdir(parents=True)
    (one_subject / "sub-emptyroom" / "meg" / "sub-emptyroom_scans.tsv").write_text("filename\n")
    out = tmp_path / "out"
    assert _run(one_subject, out, "-w", str(tmp_path / "w"), *FAST) == 0
    assert "Skipping participant(s) without a T1w image" in capsys.readouterr().err
    assert (out / "sub-01" / "anat" / "sub-01_desc-denoised_T1w.nii.gz").exists()
    assert not (out / "sub-emptyroom").exists()


# -- Ctrl-C and concurrent runs (real processes) --------------------------------------------------
def _default_sigint() -> None:
    # a job started in the background by a non-interactive shell (`make test &`, nohup) inherits
    # SIGINT ignored, and Python then installs no KeyboardInterrupt handler: give the child the
    # terminal's default, as a user at a prompt has
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "bids_enhance", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint, **kwargs)  # noqa: PLW1509


@pytest.mark.slow
def test_ctrl_c_is_one_message_and_exit_130(one_subject, tmp_path):
    """Ctrl-C reaches the whole process group (the workers too): one line, no traceback."""
    out = tmp_path / "out"
    proc = _cli(str(one_subject), str(out), "participant", "-w", str(tmp_path / "w"),
                "--sloppy", "--skip-bids-validation", "--nprocs", "2",
                start_new_session=True)
    deadline = time.monotonic() + 120
    work = tmp_path / "w"
    while time.monotonic() < deadline and not list(work.rglob("sanitize")):
        time.sleep(0.2)  # the workflow has started
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "BrokenProcessPool" not in err
    assert err.count("bids_enhance: interrupted") == 1
    assert not list(out.rglob(".tmp-*"))


@pytest.mark.slow
def test_two_runs_on_one_work_directory_and_participant_both_succeed(one_subject, tmp_path):
    work = tmp_path / "w"
    runs = [_cli(str(one_subject), str(tmp_path / "out"), "participant", "-w", str(work),
                 "--sloppy", "--skip-bids-validation", "--nprocs", "1", "--random-seed", "3")
            for _ in range(2)]
    results = [run.communicate(timeout=600) for run in runs]
    for run, (_, err) in zip(runs, results, strict=True):
        assert run.returncode == 0, err
    assert (tmp_path / "out" / "sub-01" / "anat" / "sub-01_desc-denoised_T1w.json").exists()
    assert (tmp_path / "out" / "sub-01.html").exists()


def test_the_validator_refusal_names_errors_of_the_images_to_process_first(tmp_path,
                                                                           monkeypatch):
    """The first error of any modality was named; a user processing T1w images needs those
    of their own folders first (then the dataset's top-level files, then other modalities)."""
    import json
    import types

    from bids_enhance.cli.run import UsageError, validate_bids

    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom()})
    issues = [{"severity": "error", "code": "EVENTS_TSV_MISSING",
               "location": "/sub-01/func/sub-01_task-rest_bold.nii.gz"},
              {"severity": "error", "code": "README_MISSING", "location": "/README"},
              {"severity": "error", "code": "SIDECAR_KEY_REQUIRED",
               "location": "/sub-01/anat/sub-01_T2w.json"},
              {"severity": "error", "code": "NOT_INCLUDED", "location": "/sub-02/x.txt"}]
    output = json.dumps({"issues": {"issues": issues}})
    monkeypatch.setattr(subprocess, "run", lambda *a, **k: types.SimpleNamespace(
        stdout=output, stderr="", returncode=16))
    monkeypatch.setattr("bids_enhance.utils.find_executable", lambda name: "/bin/true")
    with pytest.raises(UsageError) as exc:
        validate_bids(bids, tmp_path / "out", "run1",
                      subjects={"01": [bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"]})
    message = str(exc.value)
    assert "SIDECAR_KEY_REQUIRED at /sub-01/anat/sub-01_T2w.json and 2 more error(s)" in message
    assert (tmp_path / "out" / "logs" / "bids-validator_run1.json").read_text() == output
