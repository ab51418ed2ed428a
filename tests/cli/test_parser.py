import json
import subprocess
import sys

import pytest

from bids_enhance.cli.parser import parse_args, parse_memory


def _error(capsys, argv):
    with pytest.raises(SystemExit) as info:
        parse_args(argv)
    err = capsys.readouterr().err.strip().splitlines()
    return info.value.code, err[-1]


def test_help_does_not_import_torch():
    code = ("import sys\nfrom bids_enhance.cli.run import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "usage: bids_enhance" in proc.stdout
    assert proc.stderr.strip().endswith("NO-TORCH")


def test_version(capsys):
    with pytest.raises(SystemExit) as info:
        parse_args(["--version"])
    assert info.value.code == 0
    assert capsys.readouterr().out.startswith("bids_enhance ")


def test_defaults_and_label_prefixes(tiny_bids, tmp_path):
    s = parse_args([str(tiny_bids), str(tmp_path / "out"), "participant",
                    "--participant-label", "sub-01", "02", "--session_label", "ses-a",
                    "--mem", "8G", "--random-seed", "3", "-w", str(tmp_path / "w")])
    assert s.participant_label == ["01", "02"] and s.session_label == ["a"]
    assert s.mem_gb == 8.0 and s.random_seed == 3
    assert s.suffix == ["T1w"] and s.enhance == ["denoise"] and s.denoise_method == "auto"
    assert s.noise_model == "rician" and s.device == "cpu"


@pytest.mark.parametrize(("value", "gb"), [("16000", 16.0), ("16G", 16.0), ("0.5T", 500.0),
                                           ("512MB", 0.512)])
def test_memory_units(value, gb):
    assert parse_memory(value) == pytest.approx(gb)


@pytest.mark.parametrize(("argv_tail", "message"), [
    (["participant", "--mem", "lots"], "not a memory size"),
    (["participant", "--nprocs", "0"], "must be at least 1"),
    (["participant", "--participant-label", "01_x"], "not a valid label"),
    (["participant", "--device", "gpu"], "not a device"),
    (["participant", "--suffix", "T3w"], "invalid choice"),
    (["participant", "--denoise-method", "bm4d"], "invalid choice"),
    (["training"], "invalid choice"),
    (["train"], "needs --model"),
])
def test_argument_errors_exit_2_with_one_sentence(capsys, tiny_bids, tmp_path, argv_tail,
                                                  message):
    code, last = _error(capsys, [str(tiny_bids), str(tmp_path / "out"), *argv_tail])
    assert code == 2 and message in last and last.startswith("bids_enhance: error:")


def test_missing_and_non_bids_directories(capsys, tmp_path):
    code, last = _error(capsys, [str(tmp_path / "nope"), str(tmp_path / "out"), "participant"])
    assert code == 2 and "does not exist" in last
    (tmp_path / "empty").mkdir()
    code, last = _error(capsys, [str(tmp_path / "empty"), str(tmp_path / "out"), "participant"])
    assert code == 2 and "dataset_description.json is missing" in last


def test_output_must_differ_from_input(capsys, tiny_bids):
    code, last = _error(capsys, [str(tiny_bids), str(tiny_bids), "participant"])
    assert code == 2 and "must not be the BIDS directory" in last


def test_work_dir_inside_bids_dir_is_refused(capsys, tiny_bids, tmp_path):
    code, last = _error(capsys, [str(tiny_bids), str(tmp_path / "out"), "participant",
                                 "-w", str(tiny_bids / "work")])
    assert code == 2 and "inside the BIDS directory" in last


def test_filter_file_validation(capsys, tiny_bids, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    code, last = _error(capsys, [str(tiny_bids), str(tmp_path / "o"), "participant",
                                 "--bids-filter-file", str(bad)])
    assert code == 2 and "not valid JSON" in last
    bad.write_text(json.dumps({"t1": {"run": 1}}))
    code, last = _error(capsys, [str(tiny_bids), str(tmp_path / "o"), "participant",
                                 "--bids-filter-file", str(bad)])
    assert code == 2 and "did you mean 't1w'" in last
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"t1w": {"session": "a", "run": None}}))
    s = parse_args([str(tiny_bids), str(tmp_path / "o"), "participant",
                    "--bids-filter-file", str(good)])
    assert s.bids_filters == {"t1w": {"session": "a", "run": None}}


def test_config_file_sets_defaults_and_the_command_line_wins(tiny_bids, tmp_path):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text('[workflow]\ndenoise_method = "sanlm"\nnoise_model = "gaussian"\n'
                   '[nipype]\nnprocs = 1\n')
    s = parse_args([str(tiny_bids), str(tmp_path / "o"), "participant", "--config-file",
                    str(cfg), "--noise-model", "rician"])
    assert s.denoise_method == "sanlm" and s.noise_model == "rician" and s.nprocs == 1


@pytest.mark.parametrize(("content", "message"), [
    ('denoise_methd = "sanlm"\n', "unknown setting(s) denoise_methd"),
    ('denoise_method = "bm4d"\n', "sets denoise_method to 'bm4d'"),
    ("not toml ===", "--config-file"),
])
def test_config_file_errors(capsys, tiny_bids, tmp_path, content, message):
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(content)
    code, last = _error(capsys, [str(tiny_bids), str(tmp_path / "o"), "participant",
                                 "--config-file", str(cfg)])
    assert code == 2 and message in last


def test_gpu_requested_without_gpu_fails_with_hint(capsys, tiny_bids, tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    code, last = _error(capsys, [str(tiny_bids), str(tmp_path / "o"), "participant",
                                 "--device", "cuda"])
    assert code == 2 and "--gpus all" in last and "--nv" in last
    s = parse_args([str(tiny_bids), str(tmp_path / "o"), "participant", "--device", "auto"])
    assert s.device == "cpu"


def test_settings_round_trip_through_toml(tiny_bids, tmp_path):
    from bids_enhance.config import read_config_file

    s = parse_args([str(tiny_bids), str(tmp_path / "o"), "participant", "--random-seed", "7",
                    "--denoise-method", "sanlm", "--mem", "2G"])
    path = s.dump_toml(tmp_path / "run.toml")
    again = parse_args([str(tiny_bids), str(tmp_path / "o"), "participant",
                        "--config-file", str(path)])
    assert read_config_file(path)["random_seed"] == 7
    assert (again.random_seed, again.denoise_method, again.mem_gb) == (7, "sanlm", 2.0)


def test_child_seeds_are_stable_and_distinct(tiny_bids, tmp_path):
    s = parse_args([str(tiny_bids), str(tmp_path / "o"), "participant", "--random-seed", "7"])
    assert s.seed_for("a") == s.seed_for("a") != s.seed_for("b")
    other = parse_args([str(tiny_bids), str(tmp_path / "o"), "participant", "--random-seed", "8"])
    assert other.seed_for("a") != s.seed_for("a")


def test_image_seeds_use_the_training_seed_scheme(tiny_bids, tmp_path):
    from bids_enhance.seeding import child_seed
    from bids_enhance.training.seeding import child_seed as training_child_seed

    s = parse_args([str(tiny_bids), str(tmp_path / "o"), "participant", "--random-seed", "7"])
    assert training_child_seed is child_seed
    assert s.seed_for("simulate", "sub-01/anat/sub-01_T1w.nii.gz") == child_seed(
        7, "simulate", "sub-01/anat/sub-01_T1w.nii.gz")
    assert 2**32 <= max(s.seed_for(str(k)) for k in range(8)) < 2**63  # 63-bit children


@pytest.mark.parametrize("bad", ["-1", str(2**63), "x"])
def test_random_seed_out_of_range_is_refused(tiny_bids, tmp_path, capsys, bad):
    with pytest.raises(SystemExit) as exc:
        parse_args([str(tiny_bids), str(tmp_path / "o"), "participant", "--random-seed", bad])
    assert exc.value.code == 2
    assert "--random-seed" in capsys.readouterr().err


def test_pd_weighted_suffixes_are_accepted(tiny_bids, tmp_path):
    s = parse_args([str(tiny_bids), str(tmp_path / "out"), "participant",
                    "--suffix", "PDw", "PD", "T1w"])
    assert s.suffix == ["PDw", "PD", "T1w"]
