"""DDP: ``torchrun`` with 2 CPU processes (gloo) and batch B gives the weights of 1 process with
batch 2B — patch stream sharded, step noise sliced from the global batch, gradients averaged,
relativistic-average batch means and feature-extractor BatchNorm statistics global."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from training_helpers import tiny_config, volumes

from bids_enhance.training import state_path_for, train
from bids_enhance.training.ddp import DistributedContext, GlobalBatchNorm3d


def _spec(tmp_path, vols, config, name) -> dict:
    entries = []
    for v in vols:
        path = tmp_path / f"{v.subject}.npz"
        np.savez(path, data=v.data, affine=v.affine, mask=v.mask)
        entries.append({"subject": v.subject, "path": str(path)})
    return {"config": config.to_dict(), "out_dir": str(tmp_path / name), "train": entries,
            "normalise": False}


def _compare(single_state, ddp_state, *, lr: float, steps: int) -> None:
    """Weights must agree to 1e-5, except that Adam's first steps turn rounding-level gradients
    (zero-initialised layers of the U-Net; the critic's output bias, whose gradient is exactly
    zero in exact arithmetic since the relativistic loss ignores a constant logit shift) into
    updates of up to ``lr``: at most 0.1 % of a tensor's elements (and that bias) may differ by
    more, and never by more than Adam's bound ``lr`` per step."""
    a = torch.load(single_state, weights_only=True)
    b = torch.load(ddp_state, weights_only=True)
    assert a["stream"]["position"] == b["stream"]["position"]
    for role, state in a["trainer"]["modules"].items():
        for key, value in state.items():
            other = b["trainer"]["modules"][role][key]
            if not value.is_floating_point():
                assert torch.equal(value, other), (role, key)
                continue
            diff = (value - other).abs()
            assert diff.max() <= 2 * lr * steps, (role, key, diff.max().item())
            allowed = value.numel() if (role, key) == ("critic", "conv_out.bias") \
                else int(1e-3 * value.numel())
            assert int((diff > 1e-5).sum()) <= allowed, (role, key, diff.max().item())


@pytest.mark.slow
def test_two_processes_equal_one_process_with_the_doubled_batch(tmp_path):
    vols = volumes(2)
    common = {"iterations": 3, "checkpoint_every": 3, "log_every": 3}
    gan = {"warmup_iterations": 1, "instance_noise_iterations": 2}
    single_gan = train(vols, config=tiny_config("gan3p", batch_size=4, **common, **gan),
                       out_dir=tmp_path / "single-gan", progress=False)
    single_ddpm = train(vols, config=tiny_config("motion-ddpm", batch_size=4, **common),
                        out_dir=tmp_path / "single-ddpm", progress=False)

    specs = []
    for name, cfg in (("ddp-gan", tiny_config("gan3p", batch_size=2, **common, **gan)),
                      ("ddp-ddpm", tiny_config("motion-ddpm", batch_size=2, **common))):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps(_spec(tmp_path, vols, cfg, name)))
        specs += ["--spec", str(path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.getcwd()}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           "-m", "bids_enhance.training", *specs, "--no-progress"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("ddp-gan", "ddp-ddpm"):
        result = json.loads((tmp_path / name / "result.json").read_text())
        assert result["world_size"] == 2 and result["iterations"] == 3

    _compare(state_path_for(single_gan.checkpoint),
             state_path_for(tmp_path / "ddp-gan" / "checkpoint.pt"), lr=1e-4, steps=3)
    _compare(state_path_for(single_ddpm.checkpoint),
             state_path_for(tmp_path / "ddp-ddpm" / "checkpoint.pt"), lr=1e-4, steps=3)


def test_single_process_context_is_a_no_op():
    ctx = DistributedContext()
    x = torch.randn(4, 3)
    assert not ctx.distributed and ctx.is_main
    assert torch.equal(ctx.shard(x), x)
    torch.testing.assert_close(ctx.batch_mean(x), x.mean(0, keepdim=True))
    module = torch.nn.Linear(2, 2)
    assert ctx.wrap(module) is module and ctx.global_batch_norm(module) is module


def test_global_batch_norm_matches_batch_norm_outside_a_group():
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm3d(3)
    gbn = GlobalBatchNorm3d(3)
    x = torch.randn(2, 3, 4, 4, 4)
    torch.testing.assert_close(gbn(x), bn(x))
    torch.testing.assert_close(gbn.running_var, bn.running_var)
