"""Which nipype plugin and process start method a participant run gets."""

from __future__ import annotations

import dataclasses
import json

import pytest

from bids_enhance.cli.parser import parse_args
from bids_enhance.cli.run import _plugin_settings


@pytest.fixture
def settings(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "test", "BIDSVersion": "1.10.0"}))
    return parse_args([str(bids), str(tmp_path / "out"), "participant", "-w",
                       str(tmp_path / "work"), "--nprocs", "2", "--device", "cpu"])


def test_classical_denoising_forks_workers(settings):
    plugin = _plugin_settings(settings)
    assert plugin["plugin"] == "MultiProc" and "mp_context" not in plugin["plugin_args"]


@pytest.mark.parametrize("chain", [["superres"], ["motion", "denoise"], ["superres-denoise"]])
def test_generative_steps_never_fork_a_process_that_ran_torch(settings, chain):
    """The checkpoints are loaded and verified in the main process before the workflow runs;
    a worker forked from it hung in its first parallel torch op (found by `make demo` with the
    shipped superres weights): generative chains start workers with forkserver."""
    plugin = _plugin_settings(dataclasses.replace(settings, enhance=chain))
    assert plugin["plugin_args"]["mp_context"] == "forkserver"


def test_learned_denoising_never_forks_a_process_that_ran_torch(settings):
    """`--denoise-method learned` loads and verifies the shipped denoiser in the main process
    too; with forked workers `--nprocs 2` hung in the model's first parallel torch op (found by
    running the demo with the learned method)."""
    plugin = _plugin_settings(dataclasses.replace(settings, enhance=["denoise"],
                                                  denoise_method="learned"))
    assert plugin["plugin_args"]["mp_context"] == "forkserver"


def test_one_process_runs_linear(settings):
    assert _plugin_settings(dataclasses.replace(settings, nprocs=1))["plugin"] == "Linear"


def test_more_threads_per_process_than_processes_is_capped_with_a_warning(settings, caplog):
    """As fMRIPrep: ``--omp-nthreads`` above ``--nprocs`` is capped at it, and the log says so
    (a user who asked for 2 threads with one process would otherwise wonder why it is slow)."""
    import logging

    with caplog.at_level(logging.WARNING, logger="bids_enhance"):
        capped = parse_args([str(settings.bids_dir), str(settings.output_dir), "participant",
                             "--nprocs", "1", "--omp-nthreads", "2"])
    assert capped.omp_nthreads == 1
    assert "--omp-nthreads 2 exceeds --nprocs 1: each process uses 1 thread(s)" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="bids_enhance"):
        fine = parse_args([str(settings.bids_dir), str(settings.output_dir), "participant",
                           "--nprocs", "2", "--omp-nthreads", "2"])
    assert fine.omp_nthreads == 2 and "exceeds" not in caplog.text
