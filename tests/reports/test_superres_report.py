"""Super-resolution reportlet: nearest-neighbour view of the input, spectra, detail figure,
and the model/consistency rows of the method table."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from reports_helpers import assert_balanced_html, head  # noqa: E402

from bids_enhance.degrade import downsample  # noqa: E402
from bids_enhance.reports.figures import nearest_on_grid, plot_superres, psd_shells  # noqa: E402

STEP = {
    "Step": "superres", "Method": "x2 super-resolution, three-player GAN",
    "Model": {"Name": "gan3p_x2", "Task": "gan3p", "Architecture": "rrdb_generator(scale=2)",
              "Checkpoint": "/m/checkpoint.pt", "Sha256": "ab" * 32, "Origin": "default",
              "Weights": "ema",
              "ModelCard": {"description": "x2 super-resolution <GAN>", "degradation": "sr-box-x2",
                            "training_images": 3, "held_out_images": 2, "iterations": 500,
                            "held_out_psnr": 37.2, "held_out_psnr_cubic": 36.8,
                            "card": "/m/model_card.json"}},
    "Parameters": {"method": "box", "mode": "whole"}, "Device": "cpu", "ElapsedSeconds": 1.5,
    "VoxelSizeIn": [2.0, 2.0, 2.0], "VoxelSizeOut": [1.0, 1.0, 1.0],
    "ConsistencyError": {"method": "box", "rmse": 1.5, "rmse_percent": 1.2, "max_percent": 9.0},
    "ConsistencyProjected": False,
}


@pytest.fixture
def grids():
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[:3, 3] = [-16.0, -17.0, -15.0]
    hr = head((32, 34, 30), noise=2.0)
    lr, lr_affine = downsample(hr, affine, method="box")
    return hr, affine, lr, lr_affine


def test_nearest_on_grid_shows_input_voxels_as_blocks(grids):
    _, affine, lr, lr_affine = grids
    up = nearest_on_grid(lr, lr_affine, (32, 34, 30), affine)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(np.repeat(lr, 2, 0), 2, 1), 2, 2))
    # a grid with swapped axes (world coordinates decide, not array axes)
    swapped = affine[:, [1, 0, 2, 3]]
    up = nearest_on_grid(lr, lr_affine, (34, 32, 30), swapped)
    np.testing.assert_array_equal(up, np.repeat(np.repeat(np.repeat(lr.transpose(1, 0, 2), 2, 0),
                                                          2, 1), 2, 2))


def test_spectral_density_is_comparable_across_grids(grids):
    hr, affine, lr, lr_affine = grids
    f_hr, p_hr = psd_shells(hr, (1.0, 1.0, 1.0), n_bins=16)
    f_lr, p_lr = psd_shells(lr, (2.0, 2.0, 2.0), n_bins=8)
    # same frequencies below the coarse grid's Nyquist: densities of the same order
    np.testing.assert_allclose(f_lr, f_hr[:8], rtol=1e-12)
    assert 0.3 < p_lr[1] / p_hr[1] < 3.0


def test_superres_figure_is_a_small_svg(grids, tmp_path):
    hr, affine, lr, lr_affine = grids
    out = plot_superres(lr, lr_affine, hr, hr, affine, tmp_path / "sr.svg",
                        consistency=STEP["ConsistencyError"], model_name="gan3p_x2")
    text = out.read_text()
    assert text.startswith("<?xml") and "data:image/jpeg;base64," in text
    assert len(text) < 400_000
    plot_superres(lr, lr_affine, hr, hr, affine, tmp_path / "p.svg",
                  consistency=STEP["ConsistencyError"], projected={"rmse_percent": 1e-6})
    with pytest.raises(ValueError, match="one shape"):
        plot_superres(lr, lr_affine, hr, hr[:-2], affine, tmp_path / "x.svg")


def test_superres_interface_reads_the_sidecar(grids, tmp_path):
    from bids_enhance.interfaces.reports import SuperResolutionRPT

    hr, affine, lr, lr_affine = grids
    paths = {}
    for name, data, aff in (("lr", lr, lr_affine), ("up", hr, affine), ("sr", hr, affine)):
        paths[name] = tmp_path / f"{name}.nii.gz"
        nib.save(nib.Nifti1Image(data, aff), paths[name])
    sidecar = tmp_path / "sidecar.json"
    sidecar.write_text(json.dumps({"EnhancementSteps": [STEP]}))
    result = SuperResolutionRPT(in_lowres=str(paths["lr"]), in_upsampled=str(paths["up"]),
                                in_after=str(paths["sr"]), in_sidecar=str(sidecar)).run(
        cwd=str(tmp_path))
    assert Path(result.outputs.out_report).stat().st_size > 1000


def test_method_table_shows_model_card_and_consistency():
    from bids_enhance.reports.fragments import iqm_table_html

    text = iqm_table_html({"EnhancementSteps": [STEP], "Sources": ["bids:raw:x"]})
    assert_balanced_html(text)
    assert "x2 super-resolution (three-player GAN)" in text and "gan3p_x2" in text
    assert "2 × 2 × 2 mm → 1 × 1 × 1 mm" in text
    assert "1.2 % of the input's robust maximum" in text and "not projected" in text
    assert "x2 super-resolution &lt;GAN&gt;" in text  # escaped
    assert "37.2 dB (cubic B-spline 36.8 dB)" in text and "shipped with bids_enhance" in text
    projected = dict(STEP, ConsistencyProjected=True,
                     ConsistencyErrorAfterProjection={"rmse_percent": 1e-5})
    assert "<strong>projected</strong>" in iqm_table_html({"EnhancementSteps": [projected]})


def test_sidecar_entry_of_a_generative_step_is_in_input_units(tmp_path):
    from bids_enhance.bids.sidecar import resolution as _resolution
    from bids_enhance.bids.sidecar import step_entry as _step_entry

    info = {"step": "superres", "model": "gan3p", "sha256": "cd" * 32, "path": "/x.pt",
            "architecture": "rrdb", "weights": "model", "method": "box", "mode": "whole",
            "device": "cpu", "seconds": 2.0, "voxel_size_in": [2, 2, 2],
            "voxel_size_out": [1, 1, 1], "model_card": {"name": "m", "origin": "user"},
            "consistency": {"method": "box", "rmse": 0.01, "rmse_percent": 1.0,
                            "robust_max": 1.0, "max_abs_error": 0.1, "mean_error": 0.0},
            "consistency_mode": "measure"}
    entry = _step_entry(info, 250.0)
    assert entry["Model"]["Origin"] == "user" and "origin" not in entry["Model"]["ModelCard"]
    assert entry["ConsistencyError"]["rmse"] == pytest.approx(2.5)
    assert entry["ConsistencyError"]["rmse_percent"] == 1.0
    assert entry["ConsistencyError"]["robust_max"] == 250.0
    assert entry["ConsistencyProjected"] is False
    assert _resolution([info]).startswith("x2 super-resolution: 1 × 1 × 1 mm voxels (source "
                                          "2 × 2 × 2 mm)")
    assert _resolution([{"voxel_size_in": [1, 1, 1], "voxel_size_out": [1, 1, 1]}]) is None


def test_model_card_rows_say_cpu_training_and_the_motion_baseline():
    from bids_enhance.reports.fragments import iqm_table_html

    card = {"description": "motion", "training_images": 3, "held_out_images": 2,
            "iterations": 2400, "cpu_hours": 0.84, "training_device": "cpu", "size": "compact",
            "held_out_psnr": 27.1, "held_out_psnr_cubic": None,
            "held_out_psnr_corrupted": 26.2}
    step = dict(STEP, Step="motion", Model=dict(STEP["Model"], ModelCard=card))
    text = iqm_table_html({"EnhancementSteps": [step]})
    assert "2400 iterations, 0.8 CPU-hours, size <code>compact</code>" in text
    assert "PSNR 27.1 dB (the motion-corrupted input 26.2 dB)" in text
    # a model that continued another run says so, with the CPU time of both
    card.update(continued_from={"model": "motion_gan", "iterations": 3000, "sha256": "ab" * 32},
                cpu_hours_total=1.9)
    text = iqm_table_html({"EnhancementSteps": [step]})
    assert ("2400 iterations after 3000 of <code>motion_gan</code>, 1.9 CPU-hours in all, "
            "size <code>compact</code>") in text


def test_superres_denoise_rows_show_its_prefilter_sigma_and_the_classical_chain():
    from bids_enhance.reports.fragments import iqm_table_html, noise_sigma

    card = dict(STEP["Model"]["ModelCard"], held_out_psnr=23.7, held_out_psnr_cubic=22.4,
                held_out_psnr_prinlm_cubic=22.9)
    step = dict(STEP, Step="superres-denoise", Model=dict(STEP["Model"], ModelCard=card),
                Prefilter={"Method": "odct3d", "NoiseModel": "rician", "NoiseSigma": 11.93,
                           "NoiseSigmaEstimator": "coupe2010"})
    sidecar = {"EnhancementSteps": [step], "IntensityNormalisation": {"Scale": 400.0}}
    assert noise_sigma(sidecar) == (11.93, "coupe2010")
    text = iqm_table_html(sidecar)
    assert_balanced_html(text)
    assert "<th>Prefilter</th>" in text and "<code>odct3d</code> on the input grid" in text
    assert "σ 11.93" in text and "coupe2010" in text and "rician noise model" in text
    assert "PSNR 23.7 dB (PRI-NLM then cubic B-spline 22.9 dB, cubic B-spline 22.4 dB)" in text
    assert "2.98 %</strong> of the robust maximum" in text
