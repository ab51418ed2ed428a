"""TrainConfig: validation with clear messages, defaults per task, plain-data round trip."""

from __future__ import annotations

import json

import pytest

from bids_enhance.training import TrainConfig
from bids_enhance.training.config import resume_mismatches


def test_defaults_resolve_per_task():
    assert TrainConfig(task="gan3p").resolved().degradation == "sr-box-x2"
    assert TrainConfig(task="disgan").resolved().degradation == "sr-box-x2-rician"
    motion = TrainConfig(task="motion-gan").resolved()
    assert motion.degradation == "motion" and motion.scale == 1
    ddpm = TrainConfig(task="motion-ddpm").resolved()
    assert ddpm.weight_decay == pytest.approx(1e-2) and ddpm.lr == pytest.approx(1e-4)
    cfg = TrainConfig(iterations=100, warmup_iterations=20).resolved()
    assert cfg.instance_noise_iterations == 80 and cfg.lr == pytest.approx(1e-4)
    assert cfg.betas == (0.9, 0.999)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"task": "gan3"}, "did you mean 'gan3p'"),
    ({"iterations": 0}, "iterations must be an integer >= 1"),
    ({"patch_size": 63}, "patch_size must be even"),
    ({"degradation": "sr-box"}, "degradation must be one of"),
    ({"loss_preset": "paper"}, "loss_preset must be one of"),
    ({"queue_length": 2, "samples_per_volume": 4}, "queue_length"),
    ({"feature_extractor_training": "adversarial"}, "feature_extractor_training"),
    ({"precision": "fp16"}, "precision must be one of"),
    ({"ddim_steps": 2000}, "ddim_steps"),
    ({"seed": -1}, "seed must be"),
    ({"generator": ["features", 4]}, "generator must be a mapping"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**kwargs)


def test_round_trip_through_json():
    cfg = TrainConfig(task="disgan", perceptual_layers=(-1,), critic={"widths": (4, 8)},
                      betas=(0.5, 0.9))
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg
    with pytest.raises(ValueError, match="did you mean 'iterations'"):
        TrainConfig.from_dict({"iteration": 3})


def test_resume_mismatches_ignore_resumable_fields():
    a = TrainConfig(iterations=10).resolved().to_dict()
    b = TrainConfig(iterations=20, log_every=5).resolved().to_dict()
    assert resume_mismatches(a, b) == []
    d = TrainConfig(iterations=10, lr=2e-4).resolved().to_dict()
    assert resume_mismatches(a, d)[0].startswith("lr:")


def test_a_checkpoint_from_before_a_setting_existed_resumes_with_its_default():
    current = TrainConfig(task="denoise").resolved().to_dict()
    saved = {k: v for k, v in current.items() if k != "augment"}  # written before `augment`
    assert resume_mismatches(saved, current) == []
    assert resume_mismatches(saved, {**current, "augment": True}) == [
        "augment: checkpoint False, now True"]
