"""benchmarks/train_default_weights.py end to end with tiny networks, on synthetic volumes, with
nibabel, TorchIO, nipype and matplotlib unimportable (as on the bare GPU node it is written for)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bids_enhance.inference.weights import resolve_model
from tests.conftest import phantom

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
BLOCKED_RUN = """
import runpy, sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in ('torchio', 'nibabel', 'nipype', 'matplotlib'):
            raise ImportError('blocked: ' + name)
sys.meta_path.insert(0, Block())
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def _npz(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_default_weights as tdw

    npz = tmp_path / "npz"
    npz.mkdir()
    for i, name in enumerate((*tdw.TRAINING, *tdw.HELD_OUT)):
        data = (phantom((36, 40, 34), noise=2.0, seed=i) * 3).astype(np.int16)
        np.savez_compressed(npz / f"{name}.npz", data=data, affine=np.diag([1.0, 1, 1, 1]))
    return npz


def test_smoke_run_ships_verified_model_folders(tmp_path):
    npz = _npz(tmp_path)
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-c", BLOCKED_RUN, str(ROOT / "benchmarks/train_default_weights.py"),
         "train", "--smoke", "--iterations", "2", "--validations", "1", "--threads", "1",
         "--models", "gan3p_l1_x2", "gan3p_x2", "disgan_x2",
         "--npz-dir", str(npz), "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT),
                                                       "PATH": "/usr/bin:/bin"}, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    ship = out / "ship"
    assert sorted(p.name for p in ship.iterdir()) == ["disgan_x2", "gan3p_l1_x2", "gan3p_x2"]
    for folder in ship.iterdir():
        # only checkpoint.pt is a weight file: the folder can go to bids_enhance/data/models
        assert sorted(p.name for p in folder.glob("*.pt")) == ["checkpoint.pt"]
        card = json.loads((folder / "model_card.json").read_text())
        assert card["name"] == folder.name and card["smoke_test"] is True
        assert len(card["data"]["training"]) == 3 and len(card["data"]["held_out"]) == 2
        ev = card["held_out_evaluation"]
        if folder.name.startswith("disgan"):  # 3/6/9 % noise against the classical chains
            assert set(ev["mean"]) == {"model", "cubic", "prinlm_cubic", "odct3d_cubic"}
            assert len(ev["images"]) == 6 and "psnr_gain_over_prinlm_cubic_db" in ev
            assert "PRI-NLM then cubic B-spline" in (folder / "model_card.md").read_text()
        else:
            assert set(ev["mean"]) == {"model", "trilinear", "cubic", "kspace"}
    gan = json.loads((ship / "gan3p_x2" / "model_card.json").read_text())
    assert gan["training"]["iterations"] == 4  # 2 L1 + 2 adversarial, resumed
    superres = resolve_model("superres", directory=ship)
    assert superres.origin == "default" and superres.summary["name"] == "gan3p_l1_x2"
    assert resolve_model("superres-denoise", directory=ship).task == "disgan"
    assert "matplotlib is not installed" in proc.stdout
    summary = (out / "summary.md").read_text()
    assert "| gan3p_l1_x2 | 2 |" in summary and "| disgan_x2 | 2 |" in summary


def test_compact_cpu_run_resumes_and_ships_mid_run(tmp_path):
    """The CPU path of the shipped weights: compact motion GAN, train with --no-ship, interrupt
    (a shorter run), continue exactly from the checkpoint, and `ship` a checkpoint into a card
    with CPU-hours and the gain over the corrupted input."""
    npz = _npz(tmp_path)
    out = tmp_path / "out"
    script = str(ROOT / "benchmarks/train_default_weights.py")
    common = ["--smoke", "--size", "compact", "--models", "motion_gan", "--threads", "1",
              "--validations", "1", "--checkpoint-every", "2", "--npz-dir", str(npz),
              "--out", str(out), "--no-ship"]
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    first = subprocess.run([sys.executable, script, "train", "--iterations", "6", "--stop-at",
                            "4", *common],
                           capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    run = out / "runs" / "motion_gan"
    assert json.loads((run / "run_info.json").read_text())["size"] == "compact"
    assert "stopping at iteration 4 of 6" in first.stdout + first.stderr
    # the same command again continues from iteration 4 instead of restarting
    second = subprocess.run([sys.executable, script, "train", "--iterations", "6", *common],
                            capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert "resuming motion-gan from iteration 4" in second.stdout + second.stderr
    shipped = subprocess.run([sys.executable, script, "ship", "--models", "motion_gan",
                              "--npz-dir", str(npz), "--out", str(out)],
                             capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert shipped.returncode == 0, shipped.stdout[-3000:] + shipped.stderr[-3000:]
    card = json.loads((out / "ship" / "motion_gan" / "model_card.json").read_text())
    assert card["training"]["iterations"] == 6 and card["training"]["cpu_hours"] > 0
    assert card["size"] == "compact"
    assert "space_to_depth" in json.dumps(card["training"]["config"]["generator"])
    assert set(card["held_out_evaluation"]["mean"]) == {"model", "corrupted"}
    assert "psnr_gain_over_corrupted_db" in card["held_out_evaluation"]
    model = resolve_model("motion", directory=out / "ship")
    assert model.task == "motion-gan"


def test_diffusion_motion_model_trains_and_ships_against_the_corrupted_input(tmp_path):
    """``motion_ddpm``: the conditional-diffusion motion model through the same script (2.5D
    slices, DDIM sampling of the whole held-out volumes in the card)."""
    npz = _npz(tmp_path)
    out = tmp_path / "out"
    script = str(ROOT / "benchmarks/train_default_weights.py")
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, script, "train", "--smoke", "--size", "compact",
                           "--models", "motion_ddpm", "--iterations", "3", "--validations", "1",
                           "--threads", "1", "--ddim-steps", "2", "--npz-dir", str(npz),
                           "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, env=env, check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    folder = out / "ship" / "motion_ddpm"
    card = json.loads((folder / "model_card.json").read_text())
    assert card["task"] == "motion-ddpm" and card["training"]["iterations"] == 3
    assert set(card["held_out_evaluation"]["mean"]) == {"model", "corrupted"}
    assert "psnr_gain_over_corrupted_db" in card["held_out_evaluation"]
    from bids_enhance.models import read_checkpoint

    payload = read_checkpoint(folder / "checkpoint.pt")
    assert payload["arch_name"] == "diffusion_unet" and payload["extra"]["ddim_steps"] == 2


def test_zero_residual_starts_a_refinement_as_the_identity():
    """``--zero-residual``: with the image skip, the fresh generator returns its input (the
    prefilter's output) exactly, so a refinement starts at its baseline's level."""
    import types

    import torch

    from bids_enhance.models import build_model

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_default_weights as tdw

    net = build_model("rrdb_generator", features=8, growth=4, num_blocks=1, scale=1,
                      image_skip=True, space_to_depth=True)
    tdw._zero_residual(types.SimpleNamespace(main_model=net))
    x = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        torch.testing.assert_close(net(x), x)
    plain = build_model("rrdb_generator", features=8, growth=4, num_blocks=1, scale=1)
    with pytest.raises(SystemExit, match="image skip"):
        tdw._zero_residual(types.SimpleNamespace(main_model=plain))


def test_grown_generator_starts_as_the_smaller_one():
    """``--num-blocks`` with ``--init-from`` a generator of fewer RRDBs: the extra RRDBs start as
    the identity, so the grown network computes what the smaller one did; any other mismatch
    is refused."""
    import torch

    from bids_enhance.models import build_model

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_default_weights as tdw

    kw = dict(features=8, growth=4, scale=2, image_skip=True, hr_features=4)
    torch.manual_seed(0)
    small = build_model("rrdb_generator", num_blocks=1, **kw)
    big = build_model("rrdb_generator", num_blocks=3, **kw)
    state, added = tdw.grow_state_dict(big, small.state_dict())
    assert added == [1, 2]
    big.load_state_dict(state)
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(big(x), small(x))
    # the new blocks still learn: only their last convolutions are zero
    assert big.body[1].rdb1.conv1.weight.abs().sum() > 0
    assert tdw.grow_state_dict(small, big.state_dict()) is None  # shrinking is refused
    other = build_model("rrdb_generator", num_blocks=1, **{**kw, "features": 16})
    assert tdw.grow_state_dict(other, small.state_dict()) is None


def test_grown_input_channels_start_at_zero_and_change_nothing():
    """A denoiser given a further prefilter channel (``input+prinlm``) starts from the two-
    channel model: the stem's weights of the new channel are zero, so the output is the same
    whatever that channel holds; fewer channels are refused."""
    import torch

    from bids_enhance.models import build_model

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_default_weights as tdw

    kw = dict(features=8, growth=4, scale=1, image_skip=True, num_blocks=1, space_to_depth=True)
    torch.manual_seed(0)
    two = build_model("rrdb_generator", in_channels=2, **kw)
    three = build_model("rrdb_generator", in_channels=3, **kw)
    state, added = tdw.grow_state_dict(three, two.state_dict())
    assert added == []
    three.load_state_dict(state)
    x = torch.rand(1, 2, 8, 8, 8)
    with torch.no_grad():
        for extra in (torch.zeros(1, 1, 8, 8, 8), torch.rand(1, 1, 8, 8, 8)):
            torch.testing.assert_close(three(torch.cat([x, extra], 1)), two(x))
    assert tdw.grow_state_dict(two, three.state_dict()) is None


def test_baseline_cache_computes_each_baseline_once_and_never_reads_it_stale(tmp_path):
    """The cards of several candidate denoisers share their held-out inputs: PRI-NLM on a whole
    head runs once, and a changed input (or reference) is computed afresh, not read from the
    cache."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_default_weights as tdw

    rng = np.random.default_rng(0)
    clean = rng.random((6, 6, 6))
    noisy = clean + 0.1
    calls = []

    def compute():
        calls.append(1)
        return {"psnr": float(len(calls))}

    path = tmp_path / "cache.json"
    assert tdw.BaselineCache(path).get("prinlm", noisy, clean, compute) == {"psnr": 1.0}
    again = tdw.BaselineCache(path)  # a new process reads the file
    assert again.get("prinlm", noisy, clean, compute) == {"psnr": 1.0}
    assert len(calls) == 1
    assert again.get("odct3d", noisy, clean, compute) == {"psnr": 2.0}
    assert again.get("prinlm", noisy + 1e-6, clean, compute) == {"psnr": 3.0}
    assert again.get("prinlm", noisy, clean * 2, compute) == {"psnr": 4.0}
    assert len(json.loads(path.read_text())) == 4
    assert not list(tmp_path.glob("*.tmp"))
    none = tdw.BaselineCache(None)  # no file: computed every time a new cache is made
    none.get("prinlm", noisy, clean, compute)
    assert len(calls) == 5


def test_pd_like_training_volumes_are_their_sources_remapped(tmp_path):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import pd_like
    import train_default_weights as tdw

    npz = tmp_path / "npz"
    npz.mkdir()
    for name, (source, contrast) in tdw.DERIVED_PD.items():
        rng = np.random.default_rng(len(name))
        data = np.zeros((24, 24, 24), np.float32)
        tissues = (60.0, 100.0, 140.0)  # darkest → brightest: the source contrast's order
        for k, value in enumerate(tissues):
            data[4:20, 4:20, 4 + 5 * k:9 + 5 * k] = value
        data[data > 0] += rng.normal(0, 2, int((data > 0).sum()))
        np.savez_compressed(npz / f"{source}.npz", data=data, affine=np.eye(4))
        out, affine = tdw._read_volume(npz, name)
        np.testing.assert_array_equal(affine, np.eye(4))
        np.testing.assert_allclose(out, pd_like.remap_to_pd(data, contrast=contrast))
        # the PD order of the three slabs, whatever the source's: GM > CSF > WM
        slab = {t: out[12, 12, 6 + 5 * k] for k, t in enumerate(pd_like.SOURCE_ORDER[contrast])}
        assert slab["gm"] > slab["csf"] > slab["wm"]
        assert tdw.SHARED_FILES[name] == tdw.SHARED_FILES[source]
        assert "remapped from" in tdw.SOURCES[name]
    assert set(tdw.DERIVED_PD) <= set(tdw.split_for("denoise_stack_pd")[0])


def test_a_copy_of_shipped_weights_names_them_as_the_parent(tmp_path):
    """A run started from a copy of shipped weights (kept while the package's weights change)
    finds their card by sha256; a file with no card, run or match is named only."""
    import shutil

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import train_default_weights as tdw

    shipped = ROOT / "bids_enhance" / "data" / "models" / "motion_gan"
    card = json.loads((shipped / "model_card.json").read_text())
    copy = tmp_path / "init" / "motion_copy.pt"
    copy.parent.mkdir()
    shutil.copy2(shipped / "checkpoint.pt", copy)
    parent = tdw._parent_run(["train", "--init-from", str(copy)])
    assert parent["model"] == "motion_gan"
    assert parent["sha256"] == card["checkpoint"]["sha256"]
    assert parent["cpu_hours"] == (card["training"].get("cpu_hours_total")
                                   or card["training"]["cpu_hours"])
    other = tmp_path / "init" / "other.pt"
    other.write_bytes(b"not shipped")
    assert tdw._parent_run(["train", "--init-from", str(other)]) == {"checkpoint": str(other)}
