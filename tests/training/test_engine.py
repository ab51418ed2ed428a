"""The loop: files written (checkpoint, CSVs, plot), validation, exact resumption after an
interruption, refusal of inconsistent resumes."""

from __future__ import annotations

import csv
import os

import pytest
import torch
from training_helpers import tiny_config

from bids_enhance.models import CheckpointError, load_checkpoint
from bids_enhance.training import DiffusionTrainer, GANTrainer, state_path_for, train


def _rows(path):
    with open(path, newline="") as fh:
        return list(csv.reader(fh))


def test_files_checkpoint_and_validation(tmp_path, train_volumes, val_volumes):
    cfg = tiny_config(iterations=4, validate_every=2, checkpoint_every=2)
    result = train(train_volumes, config=cfg, out_dir=tmp_path / "run", val_volumes=val_volumes,
                   training_command=["bids_enhance", "bids", "out", "train"], progress=False)
    rows = _rows(result.losses_csv)
    assert rows[0][:3] == ["iteration", "elapsed_s", "loss_g"]
    assert [int(r[0]) for r in rows[1:]] == [1, 2, 3, 4]
    val = _rows(result.validation_csv)
    assert [int(r[0]) for r in val[1:]] == [2, 4]
    assert {"psnr", "ssim", "baseline_psnr", "psnr_gain"} <= set(val[0])
    assert result.plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(result.metrics) >= {"psnr", "ssim", "nrmse", "hfen"}
    assert result.iterations == 4 and result.device == "cpu" and result.world_size == 1
    assert result.precision == "fp32" and result.wall_time_s > 0
    assert len(result.validation_history) == 2 and len(result.degradation_records) == 2

    model, meta = load_checkpoint(result.checkpoint, expected_arch="rrdb_generator",
                                  expected_kwargs={"scale": 2},
                                  expected_sha256=result.checkpoint_sha256)
    assert meta["extra"]["task"] == "gan3p" and meta["extra"]["iteration"] == 4
    assert meta["extra"]["loss_weights"]["preset"] == "thesis"
    assert meta["degradation"]["preset"] == "sr-box-x2"
    assert meta["degradation"]["records"][0]["records"][0]["kind"] == "lowres"
    assert meta["training_command"] == ["bids_enhance", "bids", "out", "train"]
    assert meta["seed"] == cfg.seed
    state = torch.load(state_path_for(result.checkpoint), weights_only=True)
    assert state["iteration"] == 4 and set(state["trainer"]["modules"]) == {
        "generator", "critic", "feature_extractor"}


def test_evaluator_may_ask_for_a_checkpoint(tmp_path, train_volumes):
    seen = []

    def evaluate(model, checkpoint):
        loaded, meta = load_checkpoint(checkpoint)
        seen.append(meta["extra"]["iteration"])
        return {"score": float(len(seen))}

    result = train(train_volumes, config=tiny_config(iterations=2, validate_every=1),
                   out_dir=tmp_path, evaluate=evaluate, progress=False)
    assert seen == [1, 2] and result.metrics == {"score": 2.0}


class _Crash(RuntimeError):
    pass


@pytest.mark.parametrize("task", ["gan3p", "motion-ddpm"])
def test_resume_after_interruption_is_bit_identical(tmp_path, monkeypatch, train_volumes, task):
    extra = {"instance_noise_iterations": 6} if task == "gan3p" else {}
    cfg = tiny_config(task, iterations=6, checkpoint_every=3, log_every=2, **extra)
    whole = train(train_volumes, config=cfg, out_dir=tmp_path / "whole", progress=False)

    trainer_cls = GANTrainer if task == "gan3p" else DiffusionTrainer
    original = trainer_cls.train_step

    def crashing(self, source, target, iteration):
        if iteration == 4:
            raise _Crash("simulated failure")
        return original(self, source, target, iteration)

    monkeypatch.setattr(trainer_cls, "train_step", crashing)
    with pytest.raises(_Crash):
        train(train_volumes, config=cfg, out_dir=tmp_path / "broken", progress=False)
    assert len(_rows(tmp_path / "broken" / "losses.csv")) == 5  # rows 1–4 flushed
    monkeypatch.setattr(trainer_cls, "train_step", original)
    resumed = train(train_volumes, config=cfg, out_dir=tmp_path / "broken",
                    resume=tmp_path / "broken", progress=False)
    assert resumed.resumed_from == 3

    a = torch.load(state_path_for(whole.checkpoint), weights_only=True)
    b = torch.load(state_path_for(resumed.checkpoint), weights_only=True)
    for role, state in a["trainer"]["modules"].items():
        for key, value in state.items():
            assert torch.equal(value, b["trainer"]["modules"][role][key]), (role, key)
    for role, opt in a["trainer"]["optimizers"].items():
        for pid, slots in opt["state"].items():
            for name, value in slots.items():
                assert torch.equal(value, b["trainer"]["optimizers"][role]["state"][pid][name])
    assert a["stream"] == b["stream"]
    rows_a, rows_b = _rows(whole.losses_csv), _rows(resumed.losses_csv)
    assert len(rows_b) == 7
    for ra, rb in zip(rows_a, rows_b, strict=True):
        assert ra[0] == rb[0] and ra[2:] == rb[2:]  # same values (elapsed time aside)


def test_clean_early_stop_then_resume_is_bit_identical(tmp_path, train_volumes):
    """stop_at (and a spent time budget) end a run with a checkpoint at that iteration; the
    same run resumed from it ends exactly where an uninterrupted one does."""
    cfg = tiny_config(iterations=5, checkpoint_every=100, log_every=100,
                      instance_noise_iterations=5)
    whole = train(train_volumes, config=cfg, out_dir=tmp_path / "whole", progress=False)
    part = train(train_volumes, config=cfg, out_dir=tmp_path / "part", progress=False,
                 stop_at=2)
    assert part.iterations == 2
    assert torch.load(state_path_for(part.checkpoint), weights_only=True)["iteration"] == 2
    assert [int(r[0]) for r in _rows(part.losses_csv)[1:]] == [1, 2]
    spent = train(train_volumes, config=cfg, out_dir=tmp_path / "part", progress=False,
                  resume=tmp_path / "part", time_budget_s=0.0)
    assert spent.iterations == 3  # one iteration, then the (zero) budget is spent
    rest = train(train_volumes, config=cfg, out_dir=tmp_path / "part", progress=False,
                 resume=tmp_path / "part")
    assert rest.resumed_from == 3 and rest.iterations == 5
    a = torch.load(state_path_for(whole.checkpoint), weights_only=True)
    b = torch.load(state_path_for(rest.checkpoint), weights_only=True)
    for role, state in a["trainer"]["modules"].items():
        for key, value in state.items():
            assert torch.equal(value, b["trainer"]["modules"][role][key]), (role, key)


def test_inconsistent_resumes_are_refused(tmp_path, train_volumes):
    cfg = tiny_config(iterations=2, checkpoint_every=2, instance_noise_iterations=2)
    train(train_volumes, config=cfg, out_dir=tmp_path, progress=False)
    with pytest.raises(ValueError, match="lr: checkpoint"):
        train(train_volumes, config=tiny_config(iterations=4, lr=1e-3), out_dir=tmp_path,
              resume=tmp_path, progress=False)
    with pytest.raises(ValueError, match="beyond iterations=1"):
        train(train_volumes, config=tiny_config(iterations=1), out_dir=tmp_path,
              resume=tmp_path, progress=False)
    state = state_path_for(tmp_path / "checkpoint.pt")
    payload = torch.load(state, weights_only=True)
    payload["checkpoint_sha256"] = "0" * 64
    torch.save(payload, state)
    with pytest.raises(CheckpointError, match="do not belong together"):
        train(train_volumes, config=cfg, out_dir=tmp_path, resume=tmp_path, progress=False)
    torch.save({"format": "x", "payload": os.path.join}, state)  # a global: never unpickled
    with pytest.raises(CheckpointError, match=r"not a bids_enhance training state \(cannot be "
                                              r"read as a safe torch file") as info:
        train(train_volumes, config=cfg, out_dir=tmp_path, resume=tmp_path, progress=False)
    assert "weights_only" not in str(info.value).lower() and "\n" not in str(info.value)
    state.unlink()
    with pytest.raises(FileNotFoundError, match="checkpoint_state.pt is missing"):
        train(train_volumes, config=cfg, out_dir=tmp_path, resume=tmp_path, progress=False)


def test_resumed_run_can_be_extended(tmp_path, train_volumes):
    train(train_volumes, config=tiny_config(iterations=2), out_dir=tmp_path, progress=False)
    result = train(train_volumes, config=tiny_config(iterations=3), out_dir=tmp_path,
                   resume=tmp_path / "checkpoint.pt", progress=False)
    assert [int(r[0]) for r in _rows(result.losses_csv)[1:]] == [1, 2, 3]
    state = torch.load(state_path_for(result.checkpoint), weights_only=True)
    assert state["config"]["instance_noise_iterations"] == 2  # the started annealing is kept


def test_prefetcher_yields_the_same_batches_with_their_positions(train_volumes):
    from bids_enhance.training import PairedPatchStream, PatchGeometry
    from bids_enhance.training.engine import _Prefetcher

    def stream():
        return PairedPatchStream(train_volumes, degradation="sr-box-x2", seed=1,
                                 geometry=PatchGeometry(scale=2, patch_size=(16, 16, 16)),
                                 samples_per_volume=3, queue_length=4)

    direct = stream()
    expected = [direct.next_batch(2) for _ in range(4)]
    pre = _Prefetcher(stream(), batch_size=2, rank=0, world_size=1, count=4, pin=False)
    try:
        for k, (src, tgt) in enumerate(expected):
            position, a, b = pre.next()
            assert position == 2 * (k + 1) and torch.equal(a, src) and torch.equal(b, tgt)
    finally:
        pre.close()

    class Broken:
        position = 0

        def next_batch(self, *args, **kwargs):
            raise RuntimeError("no patches")

    pre = _Prefetcher(Broken(), batch_size=2, rank=0, world_size=1, count=1, pin=False)
    with pytest.raises(RuntimeError, match="no patches"):
        pre.next()
    pre.close()


def test_warmup_may_change_while_still_inside_it(tmp_path, train_volumes):
    """A CPU run planned too long can be shortened: inside the warm-up its end (and the
    annealing after it) may move; once the adversarial phase has begun it may not."""
    cfg = tiny_config(iterations=8, warmup_iterations=6, checkpoint_every=2)
    train(train_volumes, config=cfg, out_dir=tmp_path, progress=False, stop_at=2)
    short = tiny_config(iterations=5, warmup_iterations=3, checkpoint_every=2)
    result = train(train_volumes, config=short, out_dir=tmp_path, resume=tmp_path,
                   progress=False, stop_at=4)
    assert result.iterations == 4 and result.config["warmup_iterations"] == 3
    assert result.config["instance_noise_iterations"] == 2  # follows the new plan
    with pytest.raises(ValueError, match="warmup_iterations: checkpoint 3, now 2"):
        train(train_volumes, config=tiny_config(iterations=5, warmup_iterations=2),
              out_dir=tmp_path, resume=tmp_path, progress=False)
