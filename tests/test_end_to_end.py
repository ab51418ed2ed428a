"""The CLI on a tiny BIDS dataset, participant then group level (runs for real)."""

from __future__ import annotations

import json
import subprocess

import nibabel as nib
import numpy as np
import pytest

from bids_enhance.cli.run import main
from bids_enhance.utils import find_executable
from tests.conftest import phantom, write_bids

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def run_once(tmp_path_factory):
    """One participant run over two subjects (sessions, runs, a T2w), then the group level."""
    tmp = tmp_path_factory.mktemp("e2e")
    bids = write_bids(tmp / "bids", {
        "sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=4.0, seed=1),
        "sub-02/ses-a/anat/sub-02_ses-a_run-1_T1w.nii.gz": phantom(noise=4.0, seed=2),
        "sub-02/ses-a/anat/sub-02_ses-a_run-2_T1w.nii.gz": phantom(noise=4.0, seed=3),
    })
    out = tmp / "out"
    argv = [str(bids), str(out), "participant", "-w", str(tmp / "work"), "--nprocs", "1",
            "--random-seed", "5", "--sloppy", "--fmriprep-compat"]
    code = main(argv)
    group_code = main([str(bids), str(out), "group"])
    return {"bids": bids, "out": out, "code": code, "group_code": group_code, "tmp": tmp,
            "argv": argv}


def test_exit_codes(run_once):
    assert run_once["code"] == 0 and run_once["group_code"] == 0


def test_outputs_have_bids_names_and_input_geometry(run_once):
    out, bids = run_once["out"], run_once["bids"]
    produced = sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz"))
    assert produced == [
        "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz",
        "sub-01/anat/sub-01_desc-preproc_T1w.nii.gz",
        "sub-02/ses-a/anat/sub-02_ses-a_desc-preproc_T1w.nii.gz",
        "sub-02/ses-a/anat/sub-02_ses-a_run-1_desc-denoised_T1w.nii.gz",
        "sub-02/ses-a/anat/sub-02_ses-a_run-2_desc-denoised_T1w.nii.gz",
    ]
    src = nib.load(bids / "sub-01/anat/sub-01_T1w.nii.gz")
    res = nib.load(out / "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz")
    np.testing.assert_allclose(res.affine, src.affine)
    assert res.shape == src.shape and res.get_data_dtype() == np.float32
    # Intensities stay in the input's scale (not normalised to [0, 1]).
    inside = src.get_fdata() > 50
    ratio = res.get_fdata()[inside].mean() / src.get_fdata()[inside].mean()
    assert 0.9 < ratio < 1.1
    # ... and the noise went down.
    clean = phantom()
    assert (np.abs(res.get_fdata() - clean).mean() < np.abs(src.get_fdata() - clean).mean())


def test_fmriprep_compat_writes_one_preproc_per_subject_session(run_once):
    out = run_once["out"]
    preproc = out / "sub-02/ses-a/anat/sub-02_ses-a_desc-preproc_T1w.nii.gz"
    run1 = out / "sub-02/ses-a/anat/sub-02_ses-a_run-1_desc-denoised_T1w.nii.gz"
    assert preproc.read_bytes() == run1.read_bytes()  # the first run in BIDS order
    meta = json.loads(preproc.with_name(preproc.name.replace(".nii.gz", ".json")).read_text())
    assert meta["Sources"] == ["bids:raw:sub-02/ses-a/anat/sub-02_ses-a_run-1_T1w.nii.gz"]
    assert "desc-preproc\t" in (out / "descriptions.tsv").read_text()
    assert not list(out.rglob("*space-*"))


def test_sidecars_carry_provenance(run_once):
    meta = json.loads((run_once["out"] / "sub-01/anat/sub-01_desc-denoised_T1w.json").read_text())
    assert meta["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert meta["SkullStripped"] is False and meta["Description"]
    step = meta["EnhancementSteps"][0]
    assert step["Method"] == "odct3d" and step["NoiseModel"] == "rician"
    assert step["Parameters"] and step["Device"] == "cpu"
    # The estimator's accuracy is tested in tests/classical; on this 20-voxel phantom with sharp
    # edges it only has to land in the right range, and in input units.
    # One σ, recorded by the step that estimated it.
    assert 2.0 < step["NoiseSigma"] < 8.0 and "EstimatedNoiseSigma" not in meta
    assert [r["Key"] for r in step["References"]][:1] == ["manjon2012"]
    assert meta["RandomSeed"] == 5 and "torch" in meta["SoftwareDependencies"]
    assert {"Before", "After"} <= set(meta["QualityMetrics"])
    # the denoised background is zero: what cannot be measured says why
    reasons = meta["QualityMetrics"].get("NotAvailable", {}).get("After", {})
    assert set(reasons) == {k for k, v in meta["QualityMetrics"]["After"].items() if v is None}
    assert meta["QualityMetrics"]["After"]["snr_total"] > meta["QualityMetrics"]["Before"][
        "snr_total"]


def test_dataset_files_logs_and_reports(run_once):
    out = run_once["out"]
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["DatasetType"] == "derivative" and desc["GeneratedBy"][0]["Name"] == "bids_enhance"
    assert "desc-denoised\t" in (out / "descriptions.tsv").read_text()
    assert "*.html" in (out / ".bidsignore").read_text()
    for ext in ("md", "bib", "html"):
        assert (out / "logs" / f"CITATION.{ext}").stat().st_size > 0
    tomls = list(out.glob("sub-01/log/*/bids_enhance.toml"))
    assert len(tomls) == 1 and "random_seed = 5" in tomls[0].read_text()
    for subject in ("01", "02"):
        html = (out / f"sub-{subject}.html").read_text()
        assert "flicker" in html or "<svg" in html
    assert list((out / "sub-02" / "figures").glob("sub-02_ses-a_run-2_desc-residual_T1w.svg"))
    assert not list(out.rglob(".tmp-*"))


def test_group_outputs(run_once):
    out = run_once["out"]
    rows = (out / "group_T1w.tsv").read_text().strip().splitlines()
    assert len(rows) == 1 + 3
    assert (out / "group_T1w.html").exists()


def test_outputs_pass_the_bids_validator(run_once):
    exe = find_executable("bids-validator-deno")
    assert exe is not None, "bids-validator-deno (a declared dependency) is not installed"
    proc = subprocess.run([exe, str(run_once["out"]), "--ignoreWarnings", "--format", "json"],
                          capture_output=True, text=True, check=False)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    errors = [i for i in issues if i.get("severity") == "error"]
    assert errors == []


def test_the_only_validator_warning_is_the_sources(run_once):
    """README, descriptions.json and NIfTI units are ours and present; the source dataset has
    no Authors, so ours has none either (the validator wants two or more)."""
    exe = find_executable("bids-validator-deno")
    proc = subprocess.run([exe, str(run_once["out"]), "--format", "json"],
                          capture_output=True, text=True, check=False)
    issues = json.loads(proc.stdout)["issues"]["issues"]
    assert {i["code"] for i in issues if i.get("severity") == "warning"} <= {"TOO_FEW_AUTHORS"}


def test_rerun_reuses_the_work_directory(run_once, capsys):
    # Same inputs, different thread count: cached results are reused (nohash), output unchanged.
    out = run_once["out"]
    target = out / "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz"
    before = target.read_bytes()
    bids, tmp = run_once["bids"], run_once["tmp"]
    argv = [str(bids), str(out), "participant", "-w", str(tmp / "work"), "--nprocs", "2",
            "--omp-nthreads", "2", "--random-seed", "5", "--sloppy", "--participant-label", "01"]
    assert main(argv) == 0
    assert target.read_bytes() == before


def test_rerun_restores_deleted_outputs(run_once):
    # The sinks always run (nipype would skip them as cached): a rerun restores an image, a
    # sidecar or a reportlet that was deleted, or an image killed before its rename.
    out, bids, tmp = run_once["out"], run_once["bids"], run_once["tmp"]
    anat = out / "sub-01" / "anat"
    lost = [anat / "sub-01_desc-denoised_T1w.nii.gz", anat / "sub-01_desc-preproc_T1w.json",
            *(out / "sub-01" / "figures").glob("sub-01_desc-residual_T1w.svg")]
    assert len(lost) == 3
    kept = {path: path.read_bytes() for path in [*lost, anat / "sub-01_desc-denoised_T1w.json"]}
    for path in lost:
        path.unlink()
    argv = [str(bids), str(out), "participant", "-w", str(tmp / "work"), "--nprocs", "2",
            "--random-seed", "5", "--sloppy", "--fmriprep-compat", "--participant-label", "01",
            "--skip-bids-validation"]
    assert main(argv) == 0
    # a sidecar names the run that wrote it: all else is restored byte for byte
    assert {path: _without_run(path) for path in kept} == {path: _without_run(path, data)
                                                             for path, data in kept.items()}
    assert not list(out.rglob(".tmp-*"))


def _without_run(path, data: bytes | None = None):
    data = path.read_bytes() if data is None else data
    if path.suffix != ".json":
        return data
    meta = json.loads(data)
    return {k: v for k, v in meta.items() if k not in {"CommandLine", "RunId"}}


def test_bad_images_fail_alone_with_one_line_and_exit_1(tmp_path, capsys):
    bids = write_bids(tmp_path / "bids", {
        "sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=4.0),
        "sub-02/anat/sub-02_T1w.nii.gz": np.ones((20, 22, 18, 3), np.float32),
        "sub-03/anat/sub-03_T1w.nii.gz": b"\x1f\x8b\x08\x00 not really gzip",
    })
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"),
                 "--nprocs", "1", "--sloppy", "--skip-bids-validation"])
    assert code == 1
    err = capsys.readouterr().err
    assert "sub-02_T1w.nii.gz: image is 4D with 3 volumes" in err
    assert "sub-03_T1w.nii.gz: cannot read the file as NIfTI" in err
    assert (out / "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz").exists()
    assert not list(out.glob("sub-02/anat/*")) and not list(out.glob("sub-03/anat/*"))
    report = (out / "sub-02.html").read_text()
    assert "image is 4D with 3 volumes" in report
    assert list(out.glob("sub-02/log/*/crash-*.txt"))


def test_input_errors_exit_2(tiny_bids, tmp_path, capsys):
    code = main([str(tiny_bids), str(tmp_path / "o"), "participant", "--participant-label", "09",
                 "--skip-bids-validation"])
    assert code == 2
    assert "participant(s) 09 not found" in capsys.readouterr().err.strip().splitlines()[-1]


def test_invalid_bids_input_is_refused_by_the_validator(tmp_path, capsys):
    assert find_executable("bids-validator-deno") is not None, "bids-validator-deno is missing"
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=4.0)})
    (bids / "dataset_description.json").write_text("{}")  # Name and BIDSVersion missing
    code = main([str(bids), str(tmp_path / "o"), "participant", "-w", str(tmp_path / "w")])
    assert code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert "is not valid BIDS" in last and "--skip-bids-validation" in last


def test_simulation_mode_degrades_enhances_and_compares(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz":
                                          phantom((28, 30, 26))})
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--nprocs",
                 "1", "--skip-bids-validation", "--simulate", "noise-rician-6",
                 "--random-seed", "3", "--denoise-method", "prinlm"])
    assert code == 0
    anat = out / "sub-01" / "anat"
    assert sorted(p.name for p in anat.glob("*.nii.gz")) == [
        "sub-01_desc-simDenoised_T1w.nii.gz", "sub-01_desc-simulated_T1w.nii.gz"]
    meta = json.loads((anat / "sub-01_desc-simDenoised_T1w.json").read_text())
    assert meta["Simulation"]["Preset"] == "noise-rician-6"
    assert meta["Simulation"]["Records"][0]["fraction"] == 0.06
    ref = meta["ReferenceMetrics"]
    # a noise-free piecewise-constant phantom: non-local means' best case (ODCT3D, the default,
    # gains about 1 dB here; on real scans it is the better one, docs/benchmarks/denoise.md)
    assert ref["enhanced"]["psnr"] > ref["baselines"]["identity"]["psnr"] + 3
    degraded = json.loads((anat / "sub-01_desc-simulated_T1w.json").read_text())
    assert degraded["Simulation"] == meta["Simulation"]
    assert "Simulation against the original" in (out / "sub-01.html").read_text()
    assert "desc-simulated\t" in (out / "descriptions.tsv").read_text()


def test_simulation_preset_must_fit_the_chain(tiny_bids, tmp_path, capsys):
    with pytest.raises(SystemExit) as info:
        main([str(tiny_bids), str(tmp_path / "o"), "participant", "--simulate", "sr-box-x2"])
    assert info.value.code == 2
    assert "does not fit --enhance denoise" in capsys.readouterr().err
