"""A checkpoint trained on a preset that ends in a classical filter (``Prefilter``) refines
that filter's output: inference runs the same filter first, records it, and the participant
sidecar, references and methods text say so."""

from __future__ import annotations

import numpy as np
import pytest

from bids_enhance.degrade import add_rician_noise, downsample, prefilter_of
from bids_enhance.inference import run_checkpoint
from tests.generative_helpers import save_tiny_generator
from tests.inference.conftest import smooth_volume


@pytest.fixture()
def noisy_lr():
    hr = smooth_volume((32, 32, 32)) * 100.0
    lr, affine = downsample(hr, np.eye(4), method="box")
    return add_rician_noise(lr, sigma=4.0, rng=np.random.default_rng(0)).astype(np.float32), affine


def test_the_superres_denoise_preset_ends_in_odct3d():
    step = prefilter_of("sr-box-x2-rician-wide-odct")
    assert step is not None and step.method == "odct3d"
    assert prefilter_of("sr-box-x2-rician-wide") is None


def test_run_checkpoint_applies_the_prefilter_of_its_training_preset(tmp_path, noisy_lr):
    lr, affine = noisy_lr
    path = tmp_path / "checkpoint.pt"
    save_tiny_generator(path, task="disgan", preset="sr-box-x2-rician-wide-odct")
    out, _, info = run_checkpoint(path, lr, affine, consistency="measure", normalise=False)
    # the same network given ODCT3D's output (σ estimated) by hand
    filtered = prefilter_of("sr-box-x2-rician-wide-odct").apply(lr)
    by_hand, _, plain = run_checkpoint(path, filtered, affine, consistency=None,
                                       normalise=False, prefilter=False)
    np.testing.assert_allclose(out, by_hand, rtol=1e-5, atol=1e-5)
    # normalised (the default): σ comes back in the caller's units
    _, _, scaled = run_checkpoint(path, lr, affine, consistency=None)
    assert scaled["normalisation_scale"] != 1.0
    assert scaled["prefilter"]["sigma"] == pytest.approx(info["prefilter"]["sigma"], rel=0.05)
    assert "prefilter" not in plain
    record = info["prefilter"]
    assert record["method"] == "odct3d" and record["noise_model"] == "rician"
    assert record["sigma_estimator"]
    assert 2.0 < record["sigma"] < 8.0  # in the caller's units (σ added: 4)
    # consistency is measured against the unfiltered input
    assert info["consistency"]["rmse_percent"] > 0


def test_a_model_without_a_prefilter_runs_on_its_input(tmp_path, noisy_lr):
    lr, affine = noisy_lr
    path = tmp_path / "checkpoint.pt"
    save_tiny_generator(path, task="disgan", preset="sr-box-x2-rician-wide")
    _, _, info = run_checkpoint(path, lr, affine)
    assert "prefilter" not in info


def test_sidecar_references_and_methods_name_the_prefilter(tmp_path):
    from bids_enhance.bids.provenance import step_reference_keys
    from bids_enhance.bids.sidecar import step_entry
    from bids_enhance.workflows.enhance import init_generative_wf

    info = {"kind": "generative", "step": "superres-denoise", "model": "disgan",
            "prefilter": {"method": "odct3d", "noise_model": "rician", "sigma": 0.05,
                          "sigma_estimator": "coupe2010-wavelet"}}
    entry = step_entry(info, scale=200.0)
    assert entry["Prefilter"] == {"Method": "odct3d", "NoiseModel": "rician",
                                  "NoiseSigma": pytest.approx(10.0),
                                  "NoiseSigmaEstimator": "coupe2010-wavelet"}
    keys = step_reference_keys(info)
    assert keys[0] == "wang2023disgan" and "manjon2012" in keys
    assert "prefilter" not in step_entry({**info, "prefilter": None}, scale=1.0)
    assert "Prefilter" not in step_entry({**info, "prefilter": None}, scale=1.0)

    (tmp_path / "checkpoint.pt").write_bytes(b"")
    model = {"path": str(tmp_path / "checkpoint.pt"), "sha256": "ab" * 32,
             "step": "superres-denoise", "task": "disgan",
             "degradation": "sr-box-x2-rician-wide-odct", "summary": {"name": "disgan_x2"}}
    text = init_generative_wf(step="superres-denoise", model=model).__desc__
    assert "output of ODCT3D [@manjon2012] applied to its input first" in text
    plain = init_generative_wf(step="superres-denoise",
                               model={**model, "degradation": "sr-box-x2-rician-wide"}).__desc__
    assert "ODCT3D" not in plain
