"""`bids_enhance BIDS OUT train`: the training workflow end to end with tiny networks."""

from __future__ import annotations

import json
import shutil

import pytest

from bids_enhance.cli.run import main
from tests.conftest import phantom, write_bids


@pytest.fixture(scope="module")
def train_bids(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "bids"
    return write_bids(root, {f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz":
                             phantom((32, 32, 32), noise=1.0, seed=i) for i in range(1, 4)})


def _node_model_folder(work):
    """The ``model/`` folder of the training workflow's ``train`` node."""
    (folder,) = work.rglob("train/model")
    return folder


def _train(bids, tmp_path, *extra):
    return main([str(bids), str(tmp_path / "out"), "train", "--iterations", "3",
                 "--patch-size", "16", "--batch-size", "2", "--sloppy", "--nprocs", "1",
                 "-w", str(tmp_path / "work"), "--skip-bids-validation", "--random-seed", "1",
                 *extra])


@pytest.mark.slow
@pytest.mark.parametrize("model", ["gan3p", "disgan", "motion-gan", "motion-ddpm", "denoise"])
def test_train_writes_checkpoint_and_model_card(train_bids, tmp_path, model):
    from bids_enhance.models.checkpoint import load_checkpoint, sha256_file

    assert _train(train_bids, tmp_path, "--model", model, "--val-subjects", "02") == 0
    folder = tmp_path / "out" / "models" / model
    card = json.loads((folder / "model_card.json").read_text())
    assert card["task"] == model and card["training"]["iterations"] == 3
    assert card["data"]["held_out"] == ["bids:raw:sub-02/anat/sub-02_T1w.nii.gz"]
    assert "bids:raw:sub-02/anat/sub-02_T1w.nii.gz" not in card["data"]["training"]
    assert card["checkpoint"]["sha256"] == sha256_file(folder / "checkpoint.pt")
    images = card["held_out_evaluation"]["images"]
    assert len(images) == 1 and images[0]["model"]["psnr"] is not None
    baselines = set(images[0]["baselines"])
    assert baselines == ({"trilinear", "cubic", "kspace"} if model in ("gan3p", "disgan")
                         else {"identity"})
    assert "train" in card["command"] and "## Held-out evaluation" in (
        folder / "model_card.md").read_text()
    assert (folder / "losses.png").stat().st_size > 0
    _, meta = load_checkpoint(folder / "checkpoint.pt", expected_sha256=card["checkpoint"]["sha256"])
    assert meta["degradation"]["preset"] == card["data"]["degradation"]
    # only the finished model is in OUT/models: the state folder went when it was published
    assert sorted(p.name for p in folder.parent.iterdir()) == [model]
    # training handed its model folder to the train node's own folder, which nipype caches
    node_model = _node_model_folder(tmp_path / "work")
    for path in node_model.iterdir():
        assert (folder / path.name).read_bytes() == path.read_bytes()
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [p.name for p in node_model.iterdir()] + ["model_card.json", "model_card.md"])


@pytest.mark.parametrize(("extra", "message"), [
    ([], "needs --model"),
    (["--model", "gan3p", "--val-subjects", "07"], "--val-subjects 07 not among"),
    (["--model", "gan3p", "--val-subjects", "01", "02", "03"], "no training subject left"),
    (["--model", "gan3p", "--participant-label", "01"], "at least 2 participants"),
    (["--model", "gan3p", "--patch-size", "64"], "smaller than --patch-size 64"),
    (["--model", "gan3p", "--patch-size", "15"], "patch_size must be even"),
    (["--model", "gan3p", "--degradation", "sr-boxx2"], "did you mean 'sr-box-x2'"),
    (["--model", "motion-ddpm", "--image-skip"], "not to motion-ddpm"),
    (["--model", "motion-ddpm", "--pixel-loss", "mse"], "not to motion-ddpm"),
])
def test_bad_training_requests_fail_before_training(train_bids, tmp_path, capsys, extra,
                                                    message):
    try:
        code = _train(train_bids, tmp_path, *extra)
    except SystemExit as exc:  # argument errors exit from the parser
        code = exc.code
    assert code == 2
    assert message in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out" / "models").exists()


@pytest.mark.slow
def test_pixel_loss_reaches_the_training_and_its_card(train_bids, tmp_path):
    assert _train(train_bids, tmp_path, "--model", "motion-gan", "--val-subjects", "02",
                  "--pixel-loss", "mse") == 0
    card = json.loads((tmp_path / "out" / "models" / "motion-gan" / "model_card.json")
                      .read_text())
    assert card["training"]["config"]["pixel_loss"] == "mse"


@pytest.mark.slow
def test_image_skip_reaches_the_checkpoint(train_bids, tmp_path):
    from bids_enhance.models.checkpoint import load_checkpoint

    assert _train(train_bids, tmp_path, "--model", "gan3p", "--val-subjects", "02",
                  "--image-skip") == 0
    model, _ = load_checkpoint(tmp_path / "out" / "models" / "gan3p" / "checkpoint.pt")
    assert model.image_skip is True


@pytest.mark.slow
@pytest.mark.parametrize("model", ["motion-gan", "motion-ddpm"])
def test_compact_size_reaches_the_checkpoint(train_bids, tmp_path, model):
    """--size compact builds the networks of the shipped CPU weights (no --sloppy here)."""
    from bids_enhance.models.checkpoint import load_checkpoint
    from bids_enhance.models.registry import size_preset

    code = main([str(train_bids), str(tmp_path / "out"), "train", "--model", model,
                 "--size", "compact", "--iterations", "1", "--patch-size", "32",
                 "--batch-size", "1", "--val-subjects", "03", "--nprocs", "1",
                 "-w", str(tmp_path / "work"), "--skip-bids-validation", "--random-seed", "1"])
    assert code == 0
    net, meta = load_checkpoint(tmp_path / "out" / "models" / model / "checkpoint.pt")
    role = "unet" if model == "motion-ddpm" else "generator"
    expected = size_preset("compact", model)[role]
    got = {k: meta["arch_kwargs"][k] for k in expected}
    assert {k: list(v) if isinstance(v, tuple) else v for k, v in got.items()} == \
        {k: list(v) if isinstance(v, tuple) else v for k, v in expected.items()}
    if model == "motion-gan":
        assert net.space_to_depth is True and net.hr_features == 8
    else:
        assert net.size_multiple == 8


def _trainer_modules(folder):
    import torch

    return torch.load(folder / "checkpoint_state.pt", weights_only=True)["trainer"]["modules"]


def _losses(folder):
    """losses.csv without the wall-clock column."""
    rows = [line.split(",") for line in (folder / "losses.csv").read_text().splitlines()]
    return [[v for i, v in enumerate(row) if i != 1] for row in rows]


@pytest.mark.slow
def test_an_interrupted_run_resumes_exactly_from_its_periodic_checkpoint(train_bids, tmp_path,
                                                                         monkeypatch, capsys):
    import torch

    from bids_enhance.training.gan import GANTrainer

    args = ["--model", "gan3p", "--val-subjects", "02", "--iterations", "4",
            "--checkpoint-every", "2"]
    assert _train(train_bids, tmp_path / "whole", *args) == 0
    whole = tmp_path / "whole" / "out" / "models" / "gan3p"

    original = GANTrainer.train_step

    def killed(self, source, target, iteration):
        if iteration == 2:  # the third step: after the checkpoint of iteration 2
            raise RuntimeError("node lost")
        return original(self, source, target, iteration)

    monkeypatch.setattr(GANTrainer, "train_step", killed)
    assert _train(train_bids, tmp_path, *args) == 1
    models = tmp_path / "out" / "models"
    partial = models / "gan3p.partial"
    assert sorted(p.name for p in models.iterdir()) == ["gan3p.partial"]  # nothing published
    assert torch.load(partial / "checkpoint_state.pt", weights_only=True)["iteration"] == 2
    assert f"--resume {partial / 'checkpoint.pt'}" in capsys.readouterr().err

    monkeypatch.setattr(GANTrainer, "train_step", original)
    assert _train(train_bids, tmp_path, *args, "--resume", str(partial / "checkpoint.pt")) == 0
    folder = models / "gan3p"
    assert sorted(p.name for p in models.iterdir()) == ["gan3p"]
    card = json.loads((folder / "model_card.json").read_text())
    assert card["training"]["iterations"] == 4
    assert torch.load(folder / "checkpoint_state.pt", weights_only=True)["iteration"] == 4
    resumed, uninterrupted = _trainer_modules(folder), _trainer_modules(whole)
    for role, state in uninterrupted.items():
        for key, value in state.items():
            assert torch.equal(value, resumed[role][key]), (role, key)
    assert _losses(folder) == _losses(whole)  # the curves cover the whole run, once


@pytest.mark.slow
def test_a_finished_run_is_cached_and_its_model_folder_restored(train_bids, tmp_path,
                                                                monkeypatch):
    from bids_enhance.models.checkpoint import sha256_file
    from bids_enhance.training import launch

    args = ["--model", "motion-gan", "--val-subjects", "03"]
    assert _train(train_bids, tmp_path, *args) == 0
    folder = tmp_path / "out" / "models" / "motion-gan"
    digest, inode = sha256_file(folder / "checkpoint.pt"), (folder / "checkpoint.pt").stat().st_ino
    card = (folder / "model_card.json").read_text()

    def no_training(*_, **__):
        raise AssertionError("a finished, cached run was trained again")

    monkeypatch.setattr(launch, "train_from_files", no_training)
    assert _train(train_bids, tmp_path, *args) == 0
    assert (folder / "checkpoint.pt").stat().st_ino == inode  # left alone: the same files
    shutil.rmtree(folder)
    assert _train(train_bids, tmp_path, *args) == 0  # the sink restores it from the cache
    assert sha256_file(folder / "checkpoint.pt") == digest
    assert (folder / "model_card.json").read_text() == card
    assert sorted(p.name for p in folder.parent.iterdir()) == ["motion-gan"]


@pytest.mark.slow
def test_a_guided_denoiser_trains_and_is_evaluated_on_the_unfiltered_input(train_bids, tmp_path):
    """``--degradation denoise-rician-wide-odct-stack``: the network takes ODCT3D's output and
    the noisy input as two channels; the held-out subject is simulated without the prefilter
    (the inference node runs it, as a participant run does), so it is filtered once."""
    from bids_enhance.models.checkpoint import load_checkpoint

    assert _train(train_bids, tmp_path, "--model", "denoise", "--val-subjects", "02",
                  "--degradation", "denoise-rician-wide-odct-stack") == 0
    folder = tmp_path / "out" / "models" / "denoise"
    _, meta = load_checkpoint(folder / "checkpoint.pt")
    assert meta["arch_kwargs"]["in_channels"] == 2
    card = json.loads((folder / "model_card.json").read_text())
    assert card["data"]["degradation"] == "denoise-rician-wide-odct-stack"
    assert card["held_out_evaluation"]["images"][0]["model"]["psnr"] is not None
