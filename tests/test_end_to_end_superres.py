"""The CLI with generative steps on tiny BIDS datasets with tiny checkpoints (runs for real)."""

from __future__ import annotations

import json
import subprocess

import nibabel as nib
import numpy as np
import pytest

from bids_enhance.cli.run import main
from bids_enhance.degrade import downsample, upsampled_affine
from bids_enhance.inference.weights import MODELS_DIR_ENV
from bids_enhance.utils import find_executable
from tests.conftest import phantom, write_bids
from tests.generative_helpers import save_tiny_generator, write_model_card

pytestmark = pytest.mark.slow


def _sidecar(path):
    return json.loads(path.with_name(path.name.replace(".nii.gz", ".json")).read_text())


def _validator_errors(root):
    exe = find_executable("bids-validator-deno")
    assert exe is not None, "bids-validator-deno (a declared dependency) is not installed"
    proc = subprocess.run([exe, str(root), "--ignoreWarnings", "--format", "json"],
                          capture_output=True, text=True, check=False)
    return [i for i in json.loads(proc.stdout)["issues"]["issues"]
            if i.get("severity") == "error"]


def _world_com(data, affine):
    data = np.asarray(data, dtype=np.float64)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in data.shape], indexing="ij")
    ijk = np.array([(g * data).sum() / data.sum() for g in grids])
    return affine[:3, :3] @ ijk + affine[:3, 3]


@pytest.fixture(autouse=True)
def _no_default_weights(tmp_path, monkeypatch):
    (tmp_path / "no_models").mkdir()
    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "no_models"))


@pytest.fixture(scope="module")
def oblique_affine():
    a, b = np.deg2rad(20.0), np.deg2rad(-10.0)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rz @ rx @ np.diag([0.9, 1.0, 1.2])
    affine[:3, 3] = [-40.0, 12.5, 7.25]
    return affine


def test_landmark_keeps_its_world_position_through_the_cli(tmp_path, oblique_affine):
    """A 2 mm-ish oblique input made by box-averaging a 1 mm image with an off-grid landmark:
    the output grid covers the same field of view and the landmark stays where it was."""
    shape, centre = (40, 44, 36), (17.3, 22.7, 15.4)
    grids = np.meshgrid(*[np.arange(n, dtype=np.float64) for n in shape], indexing="ij")
    hr = 40.0 * phantom(shape) / 100.0 + 200.0 * np.exp(
        -0.5 * sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True)) / 3.0**2)
    lr, lr_affine = downsample(hr.astype(np.float32), oblique_affine, method="box")
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": lr},
                      affine=lr_affine)
    ckpt = tmp_path / "zero.pt"
    save_tiny_generator(ckpt, zero=True)
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--nprocs",
                 "1", "--skip-bids-validation", "--enhance", "superres", "--checkpoint",
                 str(ckpt), "--consistency", "project", "--random-seed", "1"])
    assert code == 0
    result = out / "sub-01/anat/sub-01_res-x2_desc-superres_T1w.nii.gz"
    img = nib.load(result)
    src = nib.load(bids / "sub-01/anat/sub-01_T1w.nii.gz")
    assert img.shape == tuple(2 * n for n in src.shape) and img.get_data_dtype() == np.float32
    np.testing.assert_allclose(img.affine, upsampled_affine(src.affine, method="box"),
                               atol=1e-5)
    np.testing.assert_allclose(img.affine, oblique_affine, atol=1e-5)  # the 1 mm grid again
    out_data = img.get_fdata()
    # with the output projected onto the input, degrading it gives the input back, in the
    # input's units
    np.testing.assert_allclose(downsample(out_data, img.affine, method="box")[0],
                               src.get_fdata(), atol=1e-3 * src.get_fdata().max())
    # the landmark (the image's centre of mass) stays where it was, to a thousandth of a mm
    com = _world_com(out_data, img.affine)
    np.testing.assert_allclose(com, _world_com(src.get_fdata(), src.affine), atol=1e-3)
    assert np.linalg.norm(com - _world_com(hr, oblique_affine)) < 0.05
    naive = src.affine @ np.diag([0.5, 0.5, 0.5, 1.0])  # forgetting the half-voxel offset
    assert np.linalg.norm(_world_com(out_data, naive) - com) > 0.4
    meta = _sidecar(result)
    step = meta["EnhancementSteps"][0]
    assert step["ConsistencyProjected"] is True
    assert step["ConsistencyErrorAfterProjection"]["rmse_percent"] < 1e-3
    assert step["VoxelSizeOut"] == pytest.approx([v / 2 for v in step["VoxelSizeIn"]])
    assert meta["Resolution"].startswith("x2 super-resolution: 0.9 × 1 × 1.2 mm voxels (source "
                                         "1.8 × 2 × 2.4 mm)")


@pytest.fixture(scope="module")
def chained(tmp_path_factory):
    """denoise → superres over two subjects, with a checkpoint folder as the train level
    writes it (checkpoint.pt + model_card.json), --fmriprep-compat, then the group level."""
    tmp = tmp_path_factory.mktemp("chain")
    bids = write_bids(tmp / "bids", {
        "sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=4.0, seed=1),
        "sub-02/ses-a/anat/sub-02_ses-a_run-1_T1w.nii.gz": phantom(noise=4.0, seed=2),
    })
    model_dir = tmp / "trained" / "models" / "gan3p"
    sha = save_tiny_generator(model_dir / "checkpoint.pt")
    write_model_card(model_dir, name="gan3p", sha256=sha)
    out = tmp / "out"
    argv = [str(bids), str(out), "participant", "-w", str(tmp / "work"), "--nprocs", "1",
            "--random-seed", "5", "--sloppy", "--fmriprep-compat", "--enhance", "denoise",
            "superres", "--checkpoint", f"superres={model_dir}"]
    mp = pytest.MonkeyPatch()
    mp.setenv(MODELS_DIR_ENV, str(tmp / "none"))
    try:
        code = main(argv)
        group = main([str(bids), str(out), "group"])
    finally:
        mp.undo()
    return {"bids": bids, "out": out, "code": code, "group": group, "sha": sha,
            "model_dir": model_dir}


def test_chain_writes_res_outputs_with_provenance(chained):
    assert chained["code"] == 0 and chained["group"] == 0
    out = chained["out"]
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*.nii.gz")) == [
        "sub-01/anat/sub-01_desc-preproc_T1w.nii.gz",
        "sub-01/anat/sub-01_res-x2_desc-denoisedSuperres_T1w.nii.gz",
        "sub-02/ses-a/anat/sub-02_ses-a_desc-preproc_T1w.nii.gz",
        "sub-02/ses-a/anat/sub-02_ses-a_run-1_res-x2_desc-denoisedSuperres_T1w.nii.gz",
    ]
    result = out / "sub-01/anat/sub-01_res-x2_desc-denoisedSuperres_T1w.nii.gz"
    src = nib.load(chained["bids"] / "sub-01/anat/sub-01_T1w.nii.gz")
    img = nib.load(result)
    assert img.shape == (40, 44, 36)
    np.testing.assert_allclose(img.affine, upsampled_affine(src.affine, method="box"))
    meta = _sidecar(result)
    assert meta["Resolution"].startswith("x2 super-resolution: 1 × 1 × 1 mm voxels (source "
                                         "2 × 2 × 2 mm)")
    denoise, superres = meta["EnhancementSteps"]
    assert denoise["Step"] == "denoise" and superres["Step"] == "superres"
    assert superres["Model"]["Sha256"] == chained["sha"]
    assert superres["Model"]["Checkpoint"] == str(chained["model_dir"] / "checkpoint.pt")
    assert superres["Model"]["Origin"] == "user"
    assert superres["Model"]["ModelCard"]["name"] == "gan3p"
    assert superres["Model"]["ModelCard"]["held_out_psnr"] == 30.5
    assert [r["Key"] for r in superres["References"]] == ["wang2023threeplayer"]
    assert superres["VoxelSizeIn"] == [2.0, 2.0, 2.0]
    assert superres["VoxelSizeOut"] == [1.0, 1.0, 1.0]
    assert superres["ConsistencyProjected"] is False
    error = superres["ConsistencyError"]
    assert error["method"] == "box" and error["rmse"] > 0 and error["rmse_percent"] > 0
    # in input units: the robust maximum is the input's (about 100 for this phantom)
    assert 80 < error["robust_max"] < 130
    assert {"Before", "After"} <= set(meta["QualityMetrics"])
    preproc = _sidecar(out / "sub-01/anat/sub-01_desc-preproc_T1w.nii.gz")
    assert preproc["Resolution"] == meta["Resolution"]
    tsv = (out / "descriptions.tsv").read_text()
    assert "desc-denoisedSuperres\t" in tsv and "desc-preproc\t" in tsv


def test_chain_outputs_pass_the_bids_validator(chained):
    assert _validator_errors(chained["out"]) == []


def test_report_has_the_super_resolution_section(chained):
    out = chained["out"]
    figures = out / "sub-01" / "figures"
    assert (figures / "sub-01_desc-superres_T1w.svg").stat().st_size > 1000
    html = (out / "sub-01.html").read_text()
    assert "Super-resolution in detail" in html and "Data consistency" in html
    assert "Model card" in html and "x2 super-resolution (three-player GAN)" in html
    assert "missing" not in html.split("Enhanced images")[1].split("About")[0].lower()


def test_simulation_mode_degrades_by_the_models_own_degradation(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz":
                                          phantom((28, 30, 26))})
    ckpt = tmp_path / "gan3p.pt"
    save_tiny_generator(ckpt)
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--nprocs",
                 "1", "--skip-bids-validation", "--enhance", "superres", "--checkpoint",
                 str(ckpt), "--simulate", "sr-box-x2", "--random-seed", "3"])
    assert code == 0
    anat = out / "sub-01" / "anat"
    assert sorted(p.name for p in anat.glob("*.nii.gz")) == [
        "sub-01_desc-simSuperres_T1w.nii.gz", "sub-01_desc-simulated_T1w.nii.gz"]
    src = nib.load(bids / "sub-01/anat/sub-01_T1w.nii.gz")
    sim = nib.load(anat / "sub-01_desc-simulated_T1w.nii.gz")
    res = nib.load(anat / "sub-01_desc-simSuperres_T1w.nii.gz")
    assert sim.shape == (14, 15, 13) and res.shape == src.shape
    np.testing.assert_allclose(res.affine, src.affine)  # back on the source's own grid
    meta = _sidecar(anat / "sub-01_desc-simSuperres_T1w.nii.gz")
    assert meta["Simulation"]["Preset"] == "sr-box-x2" and "Resolution" in meta
    ref = meta["ReferenceMetrics"]
    assert set(ref["baselines"]) == {"trilinear", "cubic", "kspace"}
    assert ref["baselines"]["cubic"]["psnr"] > ref["baselines"]["trilinear"]["psnr"]
    assert "Simulation against the original" in (out / "sub-01.html").read_text()


def test_superres_without_weights_fails_before_any_work(tmp_path, capsys):
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom()})
    with pytest.raises(SystemExit) as info:
        main([str(bids), str(tmp_path / "out"), "participant", "--enhance", "superres"])
    assert info.value.code == 2
    assert "ships no default weights" in capsys.readouterr().err.strip().splitlines()[-1]
    assert not (tmp_path / "out").exists()


def test_motion_step_runs_first_and_keeps_the_grid(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=3.0)})
    ckpt = tmp_path / "motion.pt"
    sha = save_tiny_generator(ckpt, task="motion-gan")
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"), "--nprocs",
                 "1", "--skip-bids-validation", "--sloppy", "--enhance", "denoise", "motion",
                 "--checkpoint", f"motion={ckpt}"])
    assert code == 0
    result = out / "sub-01/anat/sub-01_desc-motioncorrDenoised_T1w.nii.gz"
    src = nib.load(bids / "sub-01/anat/sub-01_T1w.nii.gz")
    img = nib.load(result)
    assert img.shape == src.shape
    np.testing.assert_allclose(img.affine, src.affine)
    meta = _sidecar(result)
    motion, denoise = meta["EnhancementSteps"]
    assert motion["Step"] == "motion" and motion["Model"]["Sha256"] == sha
    assert "ConsistencyError" not in motion and denoise["Step"] == "denoise"
    assert "Resolution" not in meta
    assert "desc-motioncorrDenoised\t" in (out / "descriptions.tsv").read_text()
    assert not list((out / "sub-01" / "figures").glob("*desc-superres*"))
