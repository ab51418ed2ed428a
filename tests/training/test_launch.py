"""The training state folder, the model folder and its publication (training.launch)."""

from __future__ import annotations

import json

import nibabel as nib
import pytest
import torch
from training_helpers import head, tiny_config

from bids_enhance.training import engine, launch
from bids_enhance.training.launch import (
    MODEL_FILES,
    prepare_state_dir,
    publish_model,
    remove_state_dir,
    state_dir_for,
    train_from_files,
)


def _run_folder(folder, checkpoint="w", **extra):
    folder.mkdir(parents=True, exist_ok=True)
    files = {"checkpoint.pt": checkpoint, "checkpoint_state.pt": "s", "losses.csv": "l",
             **extra}
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def _names(folder):
    return sorted(p.name for p in folder.iterdir())


def test_the_names_are_the_engines():
    assert launch.CHECKPOINT_NAME == engine.CHECKPOINT_NAME
    assert engine.state_path_for(engine.CHECKPOINT_NAME).name in MODEL_FILES
    assert engine.VALIDATION_CHECKPOINT_NAME in MODEL_FILES
    assert state_dir_for("/out/models", "gan3p").as_posix() == "/out/models/gan3p.partial"


def test_resuming_in_the_state_folder_keeps_it(tmp_path):
    state = _run_folder(tmp_path / "m.partial", **{"validation.csv": "v"})
    assert prepare_state_dir(state, state / "checkpoint.pt") == state / "checkpoint.pt"
    assert prepare_state_dir(state, state) == state / "checkpoint.pt"  # its folder works too
    assert _names(state) == ["checkpoint.pt", "checkpoint_state.pt", "losses.csv",
                             "validation.csv"]


def test_a_fresh_run_clears_only_what_training_wrote(tmp_path, caplog):
    state = _run_folder(tmp_path / "m.partial", **{"losses.png": "p", "notes.txt": "mine"})
    (state / ".checkpoint.pt.abc123.tmp").write_text("half a save")
    with caplog.at_level("WARNING", logger="bids_enhance.training"):
        assert prepare_state_dir(state) is None
    assert _names(state) == ["notes.txt"]
    assert "earlier, unfinished run" in caplog.text and "--resume" in caplog.text


def test_resuming_from_elsewhere_brings_the_runs_logs(tmp_path):
    published = _run_folder(tmp_path / "models" / "m", **{"validation.csv": "v"})
    state = _run_folder(tmp_path / "models" / "m.partial", checkpoint="other run")
    assert prepare_state_dir(state, published / "checkpoint.pt") == published / "checkpoint.pt"
    assert _names(state) == ["losses.csv", "validation.csv"]
    assert (state / "losses.csv").read_text() == "l"


def test_publishing_copies_the_model_and_card_then_removes_the_state(tmp_path):
    model = _run_folder(tmp_path / "work" / "train" / "model")
    card = tmp_path / "work" / "model_card" / "model_card.json"
    card.parent.mkdir(parents=True)
    card.write_text("{}")
    state = _run_folder(tmp_path / "out" / "models" / "m.partial")
    out = tmp_path / "out" / "models" / "m"
    assert publish_model(model, out, extra_files=[card], state_dir=state) is True
    assert _names(out) == ["checkpoint.pt", "checkpoint_state.pt", "losses.csv",
                           "model_card.json"]
    assert _names(out.parent) == ["m"]  # the state folder went with the run
    assert publish_model(model, out, extra_files=[card], state_dir=state) is False
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        publish_model(tmp_path / "work", out)


def test_a_state_folder_of_another_run_is_kept(tmp_path):
    published = _run_folder(tmp_path / "m", checkpoint="finished")
    state = _run_folder(tmp_path / "m.partial", checkpoint="started since, other settings")
    assert remove_state_dir(state, model_dir=published) is False
    assert (state / "checkpoint.pt").is_file()
    (state / "notes.txt").write_text("mine")
    _run_folder(state, checkpoint="finished")
    assert remove_state_dir(state, model_dir=published) is False  # the user's file stays
    assert _names(state) == ["notes.txt"]
    assert remove_state_dir(tmp_path / "absent") is False


def test_training_writes_in_the_state_folder_and_hands_over_the_model_folder(tmp_path):
    files = []
    for i in range(2):
        path = tmp_path / f"img{i}.nii.gz"
        nib.save(nib.Nifti1Image(head(seed=i), None), path)
        files.append(str(path))
    state, model = tmp_path / "out" / "models" / "m.partial", tmp_path / "node" / "model"
    config = tiny_config(iterations=2, checkpoint_every=1).to_dict()
    result = train_from_files(files, ["01", "02"], config=config, state_dir=state,
                              model_dir=model, training_command=["bids_enhance", "train"])
    assert {"checkpoint.pt", "checkpoint_state.pt", "losses.csv", "losses.png"} <= set(
        _names(model))
    assert _names(model) == [n for n in _names(state) if not n.startswith(".")]
    for name in _names(model):
        assert (model / name).read_bytes() == (state / name).read_bytes()
    assert result["checkpoint"] == str(model / "checkpoint.pt")
    assert result["losses_csv"] == str(model / "losses.csv")
    assert result["iterations"] == 2 and result["resumed_from"] is None
    saved = torch.load(model / "checkpoint_state.pt", weights_only=True)
    assert saved["iteration"] == 2
    json.dumps(result)


def test_the_torchrun_path_trains_in_the_state_folder_too(tmp_path, monkeypatch):
    """``nproc_per_node`` > 1: the run spec names the state folder; the process it starts
    (here run in this process instead of under torchrun) writes result.json there, which the
    model folder gets with its paths."""
    import subprocess

    from bids_enhance.training.__main__ import main

    path = tmp_path / "img.nii.gz"
    nib.save(nib.Nifti1Image(head(seed=1), None), path)
    calls = []

    def fake_torchrun(cmd, check, cwd):
        calls.append((cmd, cwd))
        spec = cmd[cmd.index("--spec") + 1]
        assert main(["--spec", spec, "--no-progress"]) == 0

    monkeypatch.setattr(subprocess, "run", fake_torchrun)
    state, model = tmp_path / "m.partial", tmp_path / "node" / "model"
    result = train_from_files([str(path)], ["01"], config=tiny_config(iterations=1).to_dict(),
                              state_dir=state, model_dir=model, nproc_per_node=2,
                              work_dir=tmp_path / "node")
    (cmd, cwd), = calls
    assert "--nproc_per_node=2" in cmd and cwd == tmp_path / "node"
    spec = json.loads((tmp_path / "node" / "torchrun_spec.json").read_text())
    assert spec["out_dir"] == str(state) and spec["normalise"] is False
    assert spec["resume"] is None
    assert json.loads((model / "result.json").read_text()) == result
    assert result["checkpoint"] == str(model / "checkpoint.pt")
    assert (state / "result.json").is_file() and (model / "checkpoint.pt").is_file()
