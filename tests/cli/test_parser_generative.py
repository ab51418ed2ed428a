"""Command line of the generative steps: chains, --checkpoint, --consistency, --gpu-mem."""

from __future__ import annotations

import pytest

from bids_enhance.cli.parser import parse_args, parse_gpu_memory
from bids_enhance.inference.weights import MODELS_DIR_ENV
from tests.generative_helpers import save_tiny_generator, write_model_card


@pytest.fixture(autouse=True)
def _no_default_weights(tmp_path, monkeypatch):
    """An empty models folder: nothing ships, whatever is installed."""
    (tmp_path / "no_models").mkdir()
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "no_models"))


@pytest.fixture
def gan3p(tmp_path):
    path = tmp_path / "gan3p.pt"
    return path, save_tiny_generator(path)


def _args(tiny_bids, tmp_path, *extra):
    return [str(tiny_bids), str(tmp_path / "out"), "participant", "-w", str(tmp_path / "w"),
            *extra]


def _error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    return info.value.code, lines[-1]


def test_chain_is_put_in_its_fixed_order_with_verified_models(tiny_bids, tmp_path, gan3p):
    path, sha = gan3p
    s = parse_args(_args(tiny_bids, tmp_path, "--enhance", "superres", "denoise",
                         "--checkpoint", str(path), "--consistency", "project",
                         "--gpu-mem", "12", "--mem", "8G"))
    assert s.enhance == ["denoise", "superres"]
    assert s.consistency == "project" and s.gpu_mem_gb == 12.0 and s.mem_gb == 8.0
    assert s.checkpoint == [f"superres={path}"]
    assert set(s.models) == {"superres"} and s.models["superres"]["sha256"] == sha
    assert s.models["superres"]["lowres_method"] == "box"
    toml = s.to_toml_dict()
    assert toml["workflow"]["checkpoint"] == [f"superres={path}"]
    assert toml["workflow"]["consistency"] == "project" and toml["nipype"]["gpu_mem_gb"] == 12.0
    assert "models" not in toml["workflow"]


def test_denoise_alone_needs_no_model(tiny_bids, tmp_path):
    s = parse_args(_args(tiny_bids, tmp_path))
    assert s.enhance == ["denoise"] and s.models == {} and s.consistency == "measure"


@pytest.mark.parametrize(("extra", "message"), [
    (["--enhance", "superres", "superres-denoise"], "exclude each other"),
    (["--enhance", "superres"], "ships no default weights"),
    (["--enhance", "motion", "superres", "--checkpoint", "PATH"],
     "does not say which step it is for"),
    (["--enhance", "denoise", "--checkpoint", "PATH"], "no generative step"),
    (["--enhance", "superres", "--checkpoint", "motion=PATH"], "does not request"),
    (["--enhance", "superres", "--checkpoint", "superres=PATH", "--checkpoint",
      "superres=PATH"], "two models for superres"),
    (["--enhance", "superres", "--checkpoint", "superres=/no/such.pt"], "does not exist"),
])
def test_generative_argument_errors_exit_2_with_one_sentence(capsys, tiny_bids, tmp_path, gan3p,
                                                             extra, message):
    path, _ = gan3p
    extra = [e.replace("PATH", str(path)) for e in extra]
    code, last = _error(capsys, _args(tiny_bids, tmp_path, *extra))
    assert code == 2 and message in last and last.startswith("bids_enhance: error: ")


def test_no_default_weights_error_says_how_to_get_a_model(capsys, tiny_bids, tmp_path):
    code, last = _error(capsys, _args(tiny_bids, tmp_path, "--enhance", "superres"))
    assert code == 2
    assert "ships no default weights" in last
    assert "train --model gan3p" in last and "--checkpoint superres=" in last


def test_default_weights_are_used_and_a_tampered_file_is_refused(capsys, tiny_bids, tmp_path,
                                                                 monkeypatch):
    folder = tmp_path / "shipped"
    sha = save_tiny_generator(folder / "gan3p_l1_x2" / "checkpoint.pt")
    write_model_card(folder / "gan3p_l1_x2", name="gan3p_l1_x2", sha256=sha)
    monkeypatch.setenv(MODELS_DIR_ENV, str(folder))
    s = parse_args(_args(tiny_bids, tmp_path, "--enhance", "superres"))
    assert s.models["superres"]["origin"] == "default"
    weights = folder / "gan3p_l1_x2" / "checkpoint.pt"
    weights.write_bytes(weights.read_bytes()[:-1] + b"!")
    code, last = _error(capsys, _args(tiny_bids, tmp_path, "--enhance", "superres"))
    assert code == 2 and str(weights) in last and "sha256" in last


def test_wrong_architecture_fails_before_the_workflow(capsys, tiny_bids, tmp_path):
    path = tmp_path / "motion.pt"
    save_tiny_generator(path, task="motion-gan")
    code, last = _error(capsys, _args(tiny_bids, tmp_path, "--enhance", "superres",
                                      "--checkpoint", str(path)))
    assert code == 2 and "needs an x2 super-resolution generator" in last


def test_simulation_presets_follow_the_models_geometry(capsys, tiny_bids, tmp_path, gan3p):
    path, _ = gan3p
    s = parse_args(_args(tiny_bids, tmp_path, "--enhance", "superres", "--checkpoint",
                         str(path), "--simulate", "sr-box-x2"))
    assert s.simulate == "sr-box-x2"
    s = parse_args(_args(tiny_bids, tmp_path, "--enhance", "superres", "--checkpoint",
                         str(path), "--simulate", "model"))
    assert s.simulate == "sr-box-x2"  # what the checkpoint was trained for
    code, last = _error(capsys, _args(tiny_bids, tmp_path, "--simulate", "model"))
    assert code == 2 and "--simulate model needs a generative step" in last
    code, last = _error(capsys, _args(tiny_bids, tmp_path, "--enhance", "superres",
                                      "--checkpoint", str(path), "--simulate", "noise-rician-3"))
    assert code == 2 and "sr-box-x2-rician" in last and "sr-kspace-x2" not in last
    motion = tmp_path / "motion.pt"
    save_tiny_generator(motion, task="motion-gan")
    code, last = _error(capsys, _args(tiny_bids, tmp_path, "--enhance", "motion", "superres",
                                      "--checkpoint", f"superres={path}", "--checkpoint",
                                      f"motion={motion}", "--simulate", "motion"))
    assert code == 2 and "no simulation preset fits" in last


def test_checkpoints_come_back_from_a_config_file_and_the_command_line_wins(tiny_bids, tmp_path,
                                                                           gan3p):
    path, _ = gan3p
    other = tmp_path / "other.pt"
    save_tiny_generator(other, seed=2)
    first = parse_args(_args(tiny_bids, tmp_path, "--enhance", "superres", "--checkpoint",
                             f"superres={path}"))
    toml = first.dump_toml(tmp_path / "run.toml")
    again = parse_args(_args(tiny_bids, tmp_path, "--config-file", str(toml)))
    assert again.enhance == ["superres"] and again.models["superres"]["path"] == str(path)
    wins = parse_args(_args(tiny_bids, tmp_path, "--config-file", str(toml), "--checkpoint",
                            str(other)))
    assert wins.checkpoint == [f"superres={other}"]


@pytest.mark.parametrize(("value", "gb"), [("12", 12.0), ("0.5", 0.5), ("8000M", 8.0),
                                           ("16G", 16.0)])
def test_gpu_memory_units(value, gb):
    assert parse_gpu_memory(value) == pytest.approx(gb)


def test_inference_budget_follows_the_device(tiny_bids, tmp_path):
    from bids_enhance.cli.run import inference_budget_gb

    s = parse_args(_args(tiny_bids, tmp_path, "--mem", "8G", "--nprocs", "4", "--omp-nthreads",
                         "2", "--gpu-mem", "20"))
    assert inference_budget_gb(s) == 4.0  # --mem shared by the 2 processes that run at once
    s.device = "cuda"
    assert inference_budget_gb(s) == 20.0
    s.gpu_mem_gb = None
    assert inference_budget_gb(s) is None  # 85 % of the free GPU memory
