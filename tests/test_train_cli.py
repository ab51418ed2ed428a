"""`bids_enhance BIDS OUT train`: the training workflow end to end with tiny networks."""

from __future__ import annotations

import json

import pytest

from bids_enhance.cli.run import main
from tests.conftest import phantom, write_bids


@pytest.fixture(scope="module")
def train_bids(tmp_path_factory):
    root = tmp_path_factory.mktemp("train") / "bids"
    return write_bids(root, {f"sub-0{i}/anat/sub-0{i}_T1w.nii.gz":
                             phantom((32, 32, 32), noise=1.0, seed=i) for i in range(1, 4)})


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


@pytest.mark.parametrize(("extra", "message"), [
    ([], "needs --model"),
    (["--model", "gan3p", "--val-subjects", "07"], "--val-subjects 07 not among"),
    (["--model", "gan3p", "--val-subjects", "01", "02", "03"], "no training subject left"),
    (["--model", "gan3p", "--participant-label", "01"], "at least 2 participants"),
    (["--model", "gan3p", "--patch-size", "64"], "smaller than --patch-size 64"),
    (["--model", "gan3p", "--patch-size", "15"], "patch_size must be even"),
    (["--model", "gan3p", "--degradation", "sr-boxx2"], "did you mean 'sr-box-x2'"),
    (["--model", "motion-ddpm", "--image-skip"], "not to motion-ddpm"),
    (["--model", "motion-ddpm", "--size", "compact"], "not to motion-ddpm"),
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
def test_image_skip_reaches_the_checkpoint(train_bids, tmp_path):
    from bids_enhance.models.checkpoint import load_checkpoint

    assert _train(train_bids, tmp_path, "--model", "gan3p", "--val-subjects", "02",
                  "--image-skip") == 0
    model, _ = load_checkpoint(tmp_path / "out" / "models" / "gan3p" / "checkpoint.pt")
    assert model.image_skip is True


@pytest.mark.slow
def test_compact_size_reaches_the_checkpoint(train_bids, tmp_path):
    """--size compact builds the networks of the shipped CPU weights (no --sloppy here)."""
    from bids_enhance.models.checkpoint import load_checkpoint
    from bids_enhance.models.registry import size_preset

    code = main([str(train_bids), str(tmp_path / "out"), "train", "--model", "motion-gan",
                 "--size", "compact", "--iterations", "1", "--patch-size", "32",
                 "--batch-size", "1", "--val-subjects", "03", "--nprocs", "1",
                 "-w", str(tmp_path / "work"), "--skip-bids-validation", "--random-seed", "1"])
    assert code == 0
    model, meta = load_checkpoint(tmp_path / "out" / "models" / "motion-gan" / "checkpoint.pt")
    expected = size_preset("compact", "motion-gan")["generator"]
    assert {k: meta["arch_kwargs"][k] for k in expected} == expected
    assert model.space_to_depth is True and model.hr_features == 8
