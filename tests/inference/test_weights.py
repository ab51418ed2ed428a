"""Choosing the checkpoint of an enhancement step: default weights, user files, refusals."""

from __future__ import annotations

import pytest

from bids_enhance.inference.weights import (
    DEFAULT_MODELS,
    MODELS_DIR_ENV,
    ModelSelectionError,
    models_dir,
    resolve_model,
)
from tests.generative_helpers import save_tiny_generator, write_model_card


@pytest.fixture
def models(tmp_path, monkeypatch):
    """A models folder with default gan3p_l1_x2 weights, selected through the environment."""
    folder = tmp_path / "models"
    sha = save_tiny_generator(folder / "gan3p_l1_x2" / "checkpoint.pt")
    write_model_card(folder / "gan3p_l1_x2", name="gan3p_l1_x2", sha256=sha)
    monkeypatch.setenv(MODELS_DIR_ENV, str(folder))
    return folder, sha


def test_models_dir_defaults_to_the_package_and_can_be_overridden(tmp_path, monkeypatch):
    monkeypatch.delenv(MODELS_DIR_ENV, raising=False)
    assert models_dir().parts[-3:] == ("bids_enhance", "data", "models")
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path))
    assert models_dir() == tmp_path
    assert models_dir(tmp_path / "x") == tmp_path / "x"


def test_default_weights_are_verified_and_described(models):
    folder, sha = models
    model = resolve_model("superres")
    assert model.origin == "default" and model.sha256 == sha
    assert model.path == str(folder / "gan3p_l1_x2" / "checkpoint.pt")
    assert model.lowres_method == "box" and model.degradation == "sr-box-x2"
    assert model.task == "gan3p" and model.architecture.startswith("rrdb_generator(")
    summary = model.summary
    assert summary["name"] == "gan3p_l1_x2" and summary["training_images"] == 1
    assert summary["held_out_psnr"] == 30.5 and summary["held_out_psnr_cubic"] == 31.0
    assert model.to_dict()["card"].endswith("model_card.json")


def test_shipped_weights_named_by_path_are_still_the_default(models):
    """The main process resolves the shipped weights and hands a worker their path: the
    sidecar of `--denoise-method learned` said Origin "user" for the shipped model."""
    folder, sha = models
    for given in (folder / "gan3p_l1_x2", folder / "gan3p_l1_x2" / "checkpoint.pt"):
        model = resolve_model("superres", given)
        assert model.origin == "default" and model.sha256 == sha


def test_tampered_default_weights_are_refused_with_one_line_naming_the_file(models):
    folder, _ = models
    weights = folder / "gan3p_l1_x2" / "checkpoint.pt"
    weights.write_bytes(weights.read_bytes() + b"\0")
    with pytest.raises(ModelSelectionError) as info:
        resolve_model("superres")
    message = str(info.value)
    assert "\n" not in message and str(weights) in message
    assert "sha256" in message and "refusing to load it" in message


def test_no_default_weights_says_how_to_train_and_pass_one(tmp_path):
    with pytest.raises(ModelSelectionError) as info:
        resolve_model("superres-denoise", directory=tmp_path)
    message = str(info.value)
    assert "\n" not in message and "ships no default weights" in message
    assert "train --model disgan" in message
    assert "--checkpoint superres-denoise=OUT/models/disgan/checkpoint.pt" in message
    assert set(DEFAULT_MODELS) == {"superres", "superres-denoise", "motion", "denoise"}


def test_a_card_naming_a_missing_file_is_reported(tmp_path):
    write_model_card(tmp_path / "gan3p_l1_x2", name="gan3p_l1_x2", sha256="0" * 64)
    with pytest.raises(ModelSelectionError, match="is missing"):
        resolve_model("superres", directory=tmp_path)


def test_user_checkpoint_file_folder_and_card_next_to_it(tmp_path):
    bare = tmp_path / "bare.pt"
    sha = save_tiny_generator(bare)
    model = resolve_model("superres", bare)
    assert model.origin == "user" and model.card is None and model.sha256 == sha
    assert model.summary["name"] == "bare" and model.summary["degradation"] == "sr-box-x2"
    assert model.summary["iterations"] == 3

    folder = tmp_path / "models" / "mine"  # as the train level writes it
    sha = save_tiny_generator(folder / "checkpoint.pt", seed=1)
    write_model_card(folder, name="mine", sha256=sha)
    for given in (folder, folder / "checkpoint.pt"):
        model = resolve_model("superres", given)
        assert model.card == str(folder / "model_card.json") and model.summary["name"] == "mine"
    # a card next to the file verifies it
    (folder / "checkpoint.pt").write_bytes((folder / "checkpoint.pt").read_bytes() + b"x")
    with pytest.raises(ModelSelectionError, match="sha256"):
        resolve_model("superres", folder / "checkpoint.pt")


@pytest.mark.parametrize(("step", "task", "scale", "match"), [
    ("superres", "motion-gan", 1, "needs an x2 super-resolution generator"),
    ("motion", "gan3p", 2, "needs a motion-correction model"),
    ("superres", "disgan", 2, "use --enhance superres-denoise for it"),
    ("superres-denoise", "gan3p", 2, "use --enhance superres for it"),
])
def test_wrong_architecture_or_task_is_refused(tmp_path, step, task, scale, match):
    path = tmp_path / "wrong.pt"
    save_tiny_generator(path, task=task, scale=scale)
    with pytest.raises(ModelSelectionError, match=match) as info:
        resolve_model(step, path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_thick_slice_models_and_missing_files_are_refused(tmp_path):
    path = tmp_path / "thick.pt"
    save_tiny_generator(path, preset="sr-thick-x2")
    with pytest.raises(ModelSelectionError, match="thick slices"):
        resolve_model("superres", path)
    with pytest.raises(ModelSelectionError, match="does not exist"):
        resolve_model("superres", tmp_path / "nope.pt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelSelectionError, match="folder without"):
        resolve_model("superres", tmp_path / "empty")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ModelSelectionError, match="junk.pt: not a bids_enhance checkpoint") as info:
        resolve_model("superres", tmp_path / "junk.pt")
    assert "weights_only" not in str(info.value)


@pytest.mark.parametrize(("entries", "match"), [
    ({"arch_kwargs": ["features", 4]}, r"malformed 'arch_kwargs' entry: a list"),
    ({"arch_kwargs": "scale=2"}, r"malformed 'arch_kwargs' entry: a str \('scale=2'\)"),
    ({"state_dict": [1.0, 2.0]}, r"malformed 'state_dict' entry: a list"),
    ({"state_dict": {"conv_first.weight": "x"}}, r"'conv_first.weight' is a str \('x'\), "
                                                 "expected a tensor"),
    ({"extra": "gan3p"}, r"malformed 'extra' entry: a str"),
    ({"degradation": {"records": [{"kind": "lowres", "method": "bogus"}]}},
     r"malformed 'degradation' entry: method must be one of"),
])
def test_hand_made_checkpoints_of_the_wrong_types_get_one_line(tmp_path, entries, match):
    import torch

    path = tmp_path / "hand_made.pt"
    save_tiny_generator(path)
    raw = torch.load(path, weights_only=True)
    raw.update(entries)
    torch.save(raw, path)
    with pytest.raises(ModelSelectionError, match=match) as info:
        resolve_model("superres", path)
    assert str(info.value).startswith(f"checkpoint {path} ") and "\n" not in str(info.value)


def test_motion_accepts_scale_one_generators(tmp_path):
    path = tmp_path / "motion.pt"
    save_tiny_generator(path, task="motion-gan")
    model = resolve_model("motion", path)
    assert model.lowres_method is None and model.task == "motion-gan"


def test_a_continued_run_names_its_parent_and_the_cpu_time_of_both():
    """``initialised_from`` of a card: the parent's model (or its checkpoint's folder when the
    card does not name it), iterations and sha256; ``cpu_hours_total`` passes through."""
    from bids_enhance.inference.weights import card_summary

    training = {"iterations": 2000, "cpu_hours": 0.5, "cpu_hours_total": 4.0,
                "initialised_from": {
                    "checkpoint": "runs/snapshots/gan3p_l1_x2_it12000/checkpoint.pt",
                    "iterations": 12000, "sha256": "ab" * 32}}
    summary = card_summary({"name": "m", "training": training}, {})
    assert summary["continued_from"] == {"model": "gan3p_l1_x2_it12000", "iterations": 12000,
                                         "sha256": "ab" * 32}
    assert summary["cpu_hours_total"] == 4.0 and summary["cpu_hours"] == 0.5
    training["initialised_from"]["model"] = "gan3p_l1_x2"
    assert card_summary({"training": training}, {})["continued_from"]["model"] == "gan3p_l1_x2"
    fresh = card_summary({"training": {"iterations": 10, "cpu_hours": 0.1}}, {})
    assert fresh["continued_from"] is None and fresh["cpu_hours_total"] is None
