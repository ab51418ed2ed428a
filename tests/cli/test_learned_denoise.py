"""``--denoise-method learned`` and ``train --model denoise`` (issue 12): a trained network run
as a method of the denoise step, with the classical methods' sidecar, report and σ."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bids_enhance.classical import denoise
from bids_enhance.cli.run import main
from bids_enhance.inference.learned import BLEND_MIN_GAIN_DB, SURE_CUBE
from bids_enhance.inference.weights import ModelSelectionError, resolve_model
from tests.conftest import phantom, write_bids
from tests.generative_helpers import save_tiny_generator, write_model_card


@pytest.fixture(scope="module")
def denoiser(tmp_path_factory):
    folder = tmp_path_factory.mktemp("denoiser") / "tiny_denoise"
    folder.mkdir()
    sha = save_tiny_generator(folder / "checkpoint.pt", task="denoise", scale=1,
                              preset="denoise-rician-wide")
    write_model_card(folder, name="tiny_denoise", sha256=sha, task="denoise")
    return folder, sha


def test_learned_method_records_its_model_and_sigma(denoiser):
    folder, sha = denoiser
    noisy = phantom((24, 24, 24), noise=4.0) / 100.0
    out, info = denoise(noisy, method="learned", checkpoint=str(folder / "checkpoint.pt"))
    assert out.shape == noisy.shape and out.dtype == np.float32 and (out >= 0).all()
    assert info["method"] == "learned" and info["sigma"] > 0
    assert info["sigma_estimator"] == "coupe2010"
    # named by the model record, not by a local path; averaged with PRI-NLM by default
    assert info["parameters"] == {"aggregate": "prinlm", "min_gain_db": BLEND_MIN_GAIN_DB}
    assert info["model"]["sha256"] == sha and info["model"]["task"] == "denoise"
    assert info["model"]["name"] == "tiny_denoise" and info["model"]["card"]
    agg = info["model"]["aggregate"]
    assert agg["method"] == "prinlm" and 0.0 <= agg["weight"] <= 1.0
    assert agg["voxels"] > 0 and f"cube(s) of {SURE_CUBE}³ voxels" in agg["region"]
    assert agg["sure_rmse"]["average"] <= min(agg["sure_rmse"]["network"],
                                              agg["sure_rmse"]["prinlm"]) + 1e-9
    json.dumps(info)


def test_the_network_is_averaged_with_prinlm_by_the_sure_weight(denoiser, monkeypatch):
    """The learned method's output is ``(1 − w)·network + w·PRI-NLM`` with the weight it
    records; ``aggregate=None`` runs the network alone; anything else is refused."""
    folder, _ = denoiser
    noisy = phantom((24, 24, 24), noise=4.0) / 100.0
    ckpt = str(folder / "checkpoint.pt")
    blended, info = denoise(noisy, method="learned", sigma=0.04, checkpoint=ckpt,
                            min_gain_db=0.0)  # whenever PRI-NLM's weight is above 0
    alone, plain = denoise(noisy, method="learned", sigma=0.04, checkpoint=ckpt, aggregate=None)
    nlm, _ = denoise(noisy, method="prinlm", sigma=0.04)
    w = info["model"]["aggregate"]["weight"]
    assert "aggregate" not in plain["model"] and plain["parameters"]["aggregate"] is None
    np.testing.assert_allclose(blended, np.maximum((1 - w) * alone + w * nlm, 0), atol=1e-5)
    with pytest.raises(ValueError, match="aggregate must be one of"):
        denoise(noisy, method="learned", sigma=0.04, checkpoint=ckpt, aggregate="bm4d")
    for bad in (-0.1, float("nan"), "0.1", True):
        with pytest.raises(ValueError, match="min_gain_db must be a finite number >= 0"):
            denoise(noisy, method="learned", sigma=0.04, checkpoint=ckpt, min_gain_db=bad)


def test_an_average_that_cannot_pay_is_skipped_and_recorded(denoiser, monkeypatch):
    """Where SURE estimates that the average gains less than BLEND_MIN_GAIN_DB over the network
    alone, PRI-NLM does not run on the whole image, the output is the network's, and the record
    says so: weight 0 applied, SURE's own weight and gain beside it. Above the threshold the
    average is applied with SURE's weight (SURE stubbed: the gate, not the estimate, is pinned
    here)."""
    import bids_enhance.classical as classical
    from bids_enhance.classical.sure import SureBlend
    from bids_enhance.inference import learned

    folder, _ = denoiser
    noisy = phantom((24, 24, 24), noise=4.0) / 100.0
    ckpt = str(folder / "checkpoint.pt")
    shapes = []
    original = classical.prinlm

    def counting(vol, **kwargs):
        shapes.append(np.shape(vol))
        return original(vol, **kwargs)

    def stub(average):
        return lambda *args, **kwargs: SureBlend(weight=0.3, rmse_first=1.0, rmse_second=1.2,
                                                 rmse_blend=average, voxels=8, region="stub")

    monkeypatch.setattr(classical, "prinlm", counting)
    alone, _ = denoise(noisy, method="learned", sigma=0.04, checkpoint=ckpt, aggregate=None)
    monkeypatch.setattr(learned, "_sure_weight", stub(0.999))  # 0.0087 dB
    skipped, info = denoise(noisy, method="learned", sigma=0.04, checkpoint=ckpt)
    record = info["model"]["aggregate"]
    assert not record["applied"] and record["weight"] == 0.0 and record["sure_weight"] == 0.3
    assert record["estimated_gain_db"] == pytest.approx(-20 * np.log10(0.999))
    assert record["min_gain_db"] == learned.BLEND_MIN_GAIN_DB > record["estimated_gain_db"]
    assert shapes == []  # PRI-NLM never ran
    np.testing.assert_array_equal(skipped, alone)
    monkeypatch.setattr(learned, "_sure_weight", stub(0.9))  # 0.92 dB
    averaged, info = denoise(noisy, method="learned", sigma=0.04, checkpoint=ckpt)
    record = info["model"]["aggregate"]
    assert record["applied"] and record["weight"] == record["sure_weight"] == 0.3
    assert shapes == [noisy.shape]  # once, on the whole image
    nlm = original(noisy, sigma=0.04, noise_model="rician")
    np.testing.assert_allclose(averaged, np.maximum(0.7 * alone + 0.3 * nlm, 0), atol=1e-5)


def test_sure_crop_runs_log_at_debug_and_leave_the_logger_alone(denoiser, caplog):
    """The whole volume's inference logs its progress at INFO; the runs on SURE's crops (a step
    inside it) at DEBUG, by a keyword, not by switching a process-wide logger's level."""
    import logging

    folder, _ = denoiser
    noisy = phantom((24, 24, 24), noise=4.0) / 100.0
    sliding = logging.getLogger("bids_enhance.inference.sliding")
    before = logging.getLogger("bids_enhance.inference").level, sliding.level
    with caplog.at_level(logging.DEBUG, logger="bids_enhance"):
        denoise(noisy, method="learned", sigma=0.04, checkpoint=str(folder / "checkpoint.pt"))
    runs = [r for r in caplog.records
            if r.name == "bids_enhance.inference.sliding" and r.getMessage().startswith("inference on")]
    assert [r.levelno for r in runs if r.levelno == logging.INFO] == [logging.INFO]
    assert sum(r.levelno == logging.DEBUG for r in runs) >= 2  # network on each crop, twice
    assert (logging.getLogger("bids_enhance.inference").level, sliding.level) == before


def test_sure_region_is_two_cubes_in_opposite_octants():
    """SURE runs both denoisers twice on two crops of a head: each a 40³ cube plus its 12-voxel
    margin, centred in two opposite octants, so each half of the head along every axis holds
    one of them."""
    from bids_enhance.inference.learned import SURE_MARGIN, SURE_OCTANTS, _head_mask, _sure_weight

    data = phantom((120, 130, 110), noise=4.0) / 100.0
    shapes = []

    def network(vol):
        shapes.append(vol.shape)
        return vol * 0.9

    blend = _sure_weight(data, network, lambda vol: vol * 0.8, sigma=0.04, mask=_head_mask(data))
    edge = SURE_CUBE + 2 * SURE_MARGIN
    assert shapes == [(edge,) * 3] * 4  # 2 crops, each run on itself and on a probe
    assert "2 cube(s) of 40³ voxels" in blend.region and blend.voxels <= 2 * SURE_CUBE**3
    corners = np.array(SURE_OCTANTS)
    assert len(corners) == 2 and (corners[0] + corners[1] == 1).all()


def test_a_replaced_checkpoint_is_refused(denoiser):
    folder, _ = denoiser
    with pytest.raises(ValueError, match="was it replaced"):
        denoise(np.ones((8, 8, 8), np.float32), method="learned", sigma=0.1,
                checkpoint=str(folder / "checkpoint.pt"), sha256="0" * 64)


def test_only_denoise_checkpoints_run_as_the_learned_method(tmp_path, denoiser):
    sr = tmp_path / "sr.pt"
    save_tiny_generator(sr, task="gan3p")
    with pytest.raises(ModelSelectionError, match="--denoise-method learned needs a scale-1"):
        resolve_model("denoise", sr)
    motion = tmp_path / "motion.pt"
    save_tiny_generator(motion, task="motion-gan")
    with pytest.raises(ModelSelectionError, match="trained for 'motion-gan'.*--enhance motion"):
        resolve_model("denoise", motion)
    folder, _ = denoiser
    with pytest.raises(ModelSelectionError,
                       match="trained for 'denoise'.*use --denoise-method learned"):
        resolve_model("motion", folder / "checkpoint.pt")


def test_no_default_weights_is_one_line_naming_the_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("BIDS_ENHANCE_MODELS_DIR", str(tmp_path / "empty"))
    with pytest.raises(ModelSelectionError, match="^--denoise-method learned needs a trained "
                                                  "model.*train --model denoise"):
        resolve_model("denoise")


def test_a_denoise_checkpoint_needs_the_learned_method(tmp_path, capsys, denoiser):
    folder, _ = denoiser
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom()})
    with pytest.raises(SystemExit) as exited:
        main([str(bids), str(tmp_path / "out"), "participant", "--skip-bids-validation",
              "--checkpoint", f"denoise={folder}"])
    assert exited.value.code == 2
    assert "runs a model only with --denoise-method learned" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_learned_denoiser_runs_with_sidecar_report_and_methods(tmp_path, denoiser):
    folder, sha = denoiser
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=4.0)})
    out = tmp_path / "out"
    assert main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), "--nprocs",
                 "1", "--skip-bids-validation", "--denoise-method", "learned",
                 "--checkpoint", f"denoise={folder}"]) == 0
    meta = json.loads((out / "sub-01/anat/sub-01_desc-denoised_T1w.json").read_text())
    step = meta["EnhancementSteps"][0]
    assert step["Step"] == "denoise" and step["Method"] == "learned"
    assert step["NoiseSigma"] > 0 and step["NoiseModel"] == "rician"
    assert step["Model"]["Sha256"] == sha and step["Model"]["Name"] == "tiny_denoise"
    assert step["References"][0]["Key"] == "wang2023threeplayer"
    agg = step["Aggregate"]
    assert agg["Method"] == "prinlm" and agg["ChosenBy"] == "SURE"
    assert agg["Weight"] + agg["NetworkWeight"] == pytest.approx(1.0)
    assert set(agg["SureRMSE"]) == {"network", "prinlm", "average"}
    assert agg["MinGainDB"] == BLEND_MIN_GAIN_DB and isinstance(agg["Applied"], bool)
    assert agg["Weight"] == (agg["SureWeight"] if agg["Applied"] else 0.0)
    assert {"stein1981", "ramani2008", "manjon2012"} <= {r["Key"] for r in step["References"]}
    report = (out / "sub-01.html").read_text()
    assert "Learned denoiser: scale-1 RRDB generator" in report
    assert "tiny_denoise" in report and "residual map" in report
    assert "Averaged with" in report and "Stein&#x27;s unbiased risk estimate" in report
    assert "Held-out quality" in report  # from the model card next to the checkpoint
    assert "PRI-NLM: prefiltered" not in report
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "was denoised with a learned denoiser" in methods and sha[:12] in methods
    assert "averaged with that of PRI-NLM" in methods and "Stein's unbiased risk" in methods
    assert f"below {BLEND_MIN_GAIN_DB:g} dB, the network's output was used" in methods


def test_a_refinement_model_runs_on_its_prefilter_output(tmp_path):
    """A model trained on ``denoise-rician-wide-odct`` refines ODCT3D's output: the learned
    method filters first (σ as given), then runs the network; a network that adds nothing
    returns ODCT3D's result."""
    import torch

    from bids_enhance.models import build_model, save_checkpoint
    from tests.generative_helpers import NORMALISATION, TINY

    kwargs = {**TINY, "scale": 1, "image_skip": True}
    model = build_model("rrdb_generator", **kwargs)
    with torch.no_grad():  # the residual is zero: output = input
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, model=model, arch_name="rrdb_generator", arch_kwargs=kwargs,
                    degradation={"preset": "denoise-rician-wide-odct", "records": []},
                    normalisation=NORMALISATION, seed=1, extra={"task": "denoise", "iteration": 1})
    noisy = phantom((24, 24, 24), noise=4.0)
    out, info = denoise(noisy, method="learned", sigma=4.0, checkpoint=str(path),
                        aggregate=None)
    odct, _ = denoise(noisy, method="odct3d", sigma=4.0)
    assert info["model"]["prefilter"] == "odct3d"
    np.testing.assert_allclose(out, np.maximum(odct, 0), rtol=1e-4, atol=1e-3)


def test_methods_text_names_the_prefilter_of_a_refinement_model(tmp_path):
    from bids_enhance.workflows.enhance import init_denoise_wf

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    model = {"path": str(tmp_path / "checkpoint.pt"), "sha256": "ab" * 32, "degradation":
             "denoise-rician-wide-odct", "summary": {"name": "denoise_odct"}}
    text = init_denoise_wf(method="learned", model=model).__desc__
    assert "refines the output of ODCT3D [@manjon2012]" in text and "denoise_odct" in text
    blind = init_denoise_wf(method="learned", model={**model, "degradation":
                                                     "denoise-rician-wide"}).__desc__
    assert "refines" not in blind and "For the report" in blind
    stacked = init_denoise_wf(method="learned", model={**model, "degradation":
                                                       "denoise-rician-wide-odct-stack"}).__desc__
    assert "refines the output of ODCT3D" in stacked and "noisy image, as two channels" in stacked
    # the filters cite their papers (BM-DCT: the shipped weights'); a PRI-NLM channel is named
    wiener = init_denoise_wf(method="learned", model={
        **model, "degradation": "denoise-rician-wide-odct-wiener-stack"}).__desc__
    assert "refines the output of ODCT3D-Wiener [@manjon2012; @dabov2007]" in wiener
    bm = init_denoise_wf(method="learned", model={
        **model, "degradation": "denoise-rician-wide-blockmatch-stack"}).__desc__
    assert "refines the output of BM-DCT [@maggioni2013; @dabov2007; @manjon2012]" in bm
    nlm = init_denoise_wf(method="learned", model={
        **model, "degradation": "denoise-rician-wide-odct-wiener-stack-prinlm"}).__desc__
    assert "the output of PRI-NLM with the same noise level, as three channels" in nlm
