"""build_sidecar() and write_derivative(): the sidecar and the sink's files (no nipype)."""

from __future__ import annotations

import json

import pytest

from bids_enhance.bids.derivatives import write_derivative
from bids_enhance.bids.sidecar import build_sidecar, resolution, source_metadata, step_entry

DENOISE = {"method": "prinlm", "noise_model": "rician", "sigma": 0.02,
           "sigma_estimator": "coupe2010", "parameters": {"search_radius": 1},
           "device": "cpu", "elapsed_s": 0.5}
SUPERRES = {"step": "superres", "kind": "generative", "model": "gan3p", "sha256": "ab" * 32,
            "path": "/m/checkpoint.pt", "voxel_size_in": [2.0, 2.0, 2.0],
            "voxel_size_out": [1.0, 1.0, 1.0], "model_card": {"name": "m"}}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "bids" / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(b"")
    return path


def _sidecar(source, **extra):
    return build_sidecar(source_file=source, bids_dir=source.parents[2], description="d",
                         sanitise_report={"Orientation": "RAS", "Fixes": []}, steps=[DENOISE],
                         scale=100.0, random_seed=1, image_seed=2, **extra)


def test_the_sidecar_records_sources_steps_and_seeds(source):
    meta = _sidecar(source)
    assert list(meta) == ["Description", "Sources", "SkullStripped", "EnhancementSteps",
                          "InputSanitising", "IntensityNormalisation", "RandomSeed",
                          "ImageSeed", "SoftwareDependencies"]
    assert meta["Sources"] == ["bids:raw:sub-01/anat/sub-01_T1w.nii.gz"]
    assert meta["SkullStripped"] is False
    assert meta["EnhancementSteps"] == [step_entry(DENOISE, 100.0)]
    assert meta["EnhancementSteps"][0]["NoiseSigma"] == pytest.approx(2.0)
    assert meta["IntensityNormalisation"]["Scale"] == 100.0
    assert (meta["RandomSeed"], meta["ImageSeed"]) == (1, 2)


def test_the_sources_own_sidecar_says_whether_it_is_skull_stripped(source):
    source.with_name("sub-01_T1w.json").write_text(json.dumps({"SkullStripped": True}))
    assert source_metadata(source) == {"SkullStripped": True}
    assert _sidecar(source)["SkullStripped"] is True
    source.with_name("sub-01_T1w.json").write_text("{not json")
    assert source_metadata(source) == {}


def test_metrics_without_values_get_reasons_and_simulation_is_merged(source):
    iqms = {"Before": {"snr_total": 8.0}, "After": {"snr_total": None}}
    comparison = {"enhanced": {"psnr": None, "ssim": 0.9}, "baselines": {}}
    meta = _sidecar(source, iqms=iqms, simulation={"Simulation": {"Preset": "p"}},
                    reference_metrics=comparison)
    assert meta["QualityMetrics"]["NotAvailable"] == {"After": {"snr_total": meta[
        "QualityMetrics"]["NotAvailable"]["After"]["snr_total"]}}
    assert "NotAvailable" not in iqms  # the caller's record is left alone
    assert meta["Simulation"] == {"Preset": "p"}
    assert "psnr" in meta["ReferenceMetrics"]["NotAvailable"]["enhanced"]


def test_a_grid_change_is_the_resolution(source):
    assert resolution([DENOISE]) is None
    meta = build_sidecar(source_file=source, bids_dir=source.parents[2], description="d",
                         sanitise_report={}, steps=[SUPERRES], scale=1.0, random_seed=1,
                         image_seed=2)
    assert meta["Resolution"].startswith("x2 super-resolution: 1 × 1 × 1 mm voxels (source "
                                         "2 × 2 × 2 mm)")
    assert meta["EnhancementSteps"][0]["Model"]["Sha256"] == "ab" * 32


def test_write_derivative_names_the_file_and_writes_its_sidecar(tmp_path, source):
    in_file = tmp_path / "in.nii.gz"
    in_file.write_bytes(b"image")
    out, meta = write_derivative(in_file, base_directory=tmp_path / "out", source_file=source,
                                 desc="denoised", meta={"Description": "x"})
    assert out == tmp_path / "out" / "sub-01" / "anat" / "sub-01_desc-denoised_T1w.nii.gz"
    assert out.read_bytes() == b"image"
    assert json.loads(meta.read_text()) == {"Description": "x", "SkullStripped": False}
    with pytest.raises(ValueError, match="needs a 'Resolution'"):
        write_derivative(in_file, base_directory=tmp_path / "out", source_file=source,
                         desc="denoised", res="x2")
    svg = tmp_path / "in.svg"
    svg.write_text("<svg/>")
    fig, none = write_derivative(svg, base_directory=tmp_path / "out", source_file=source,
                                 desc="residual", datatype="figures")
    assert none is None and fig.parent.name == "figures" and fig.read_text() == "<svg/>"
    with pytest.raises(ValueError, match="datatype must be one of"):
        write_derivative(svg, base_directory=tmp_path, source_file=source, datatype="func")


def test_a_learned_denoiser_names_the_filter_it_refines_and_what_it_was_given():
    from bids_enhance.bids.sidecar import step_entry

    info = {"step": "denoise", "method": "learned", "noise_model": "rician", "parameters": {},
            "sigma": 0.05, "sigma_estimator": "coupe2010",
            "model": {"name": "denoise_stack", "task": "denoise", "sha256": "ab" * 32,
                      "prefilter": "odct3d", "prefilter_stack": "input"}}
    entry = step_entry(info, 100.0)
    assert entry["Prefilter"] == {"Method": "odct3d", "NetworkInput": "filtered+input"}
    assert entry["NoiseSigma"] == pytest.approx(5.0)
    keys = [r["Key"] for r in entry["References"]]
    assert keys[0] == "wang2023threeplayer" and "manjon2012" in keys and "coupe2010" in keys
    nlm = step_entry({**info, "model": {**info["model"], "prefilter": "odct3d-wiener",
                                        "prefilter_stack": "input+prinlm"}}, 1.0)
    assert nlm["Prefilter"] == {"Method": "odct3d-wiener",
                                "NetworkInput": "filtered+input+prinlm"}
    assert {"dabov2007", "manjon2012", "buades2005", "coupe2008"} <= {
        r["Key"] for r in nlm["References"]}
    blind = step_entry({**info, "model": {**info["model"], "prefilter": None}}, 1.0)
    assert "Prefilter" not in blind
    assert "manjon2012" not in [r["Key"] for r in blind["References"]]


def test_the_report_names_what_a_learned_denoiser_refines():
    from bids_enhance.reports.fragments import _steps_html

    step = {"Step": "denoise", "Method": "learned", "NoiseModel": "rician",
            "Model": {"Name": "denoise_stack", "Sha256": "ab" * 32},
            "Prefilter": {"Method": "odct3d", "NetworkInput": "filtered+input+sigma"}}
    html = _steps_html([step])
    assert "<code>odct3d</code> first; the network is given its output, the noisy input and " \
           "a σ map" in html
    step["Prefilter"]["NetworkInput"] = "filtered+input+prinlm"
    assert "the noisy input and PRI-NLM's output" in _steps_html([step])


def test_a_skipped_average_is_recorded_and_reported_as_skipped():
    """The learned denoiser's average with PRI-NLM, skipped because SURE put its gain below the
    threshold: the sidecar says weight 0 was applied and keeps SURE's own weight and gain; the
    report says why PRI-NLM did not run on the whole image. An applied one reads as before."""
    from bids_enhance.bids.sidecar import step_entry
    from bids_enhance.reports.fragments import _steps_html

    aggregate = {"method": "prinlm", "weight": 0.0, "sure_weight": 0.12,
                 "estimated_gain_db": 0.021, "min_gain_db": 0.05, "applied": False,
                 "sure_rmse": {"network": 0.0337, "prinlm": 0.0377, "average": 0.0336},
                 "voxels": 1000, "region": "2 cube(s)"}
    info = {"step": "denoise", "method": "learned", "noise_model": "rician", "parameters": {},
            "model": {"name": "denoise_stack", "task": "denoise", "sha256": "ab" * 32,
                      "aggregate": aggregate}}
    entry = step_entry(info, 100.0)
    agg = entry["Aggregate"]
    assert agg["Weight"] == 0.0 and agg["NetworkWeight"] == 1.0 and agg["Applied"] is False
    assert agg["SureWeight"] == 0.12 and agg["EstimatedGainDB"] == 0.021
    assert agg["MinGainDB"] == 0.05 and agg["SureRMSE"]["network"] == pytest.approx(3.37)
    html = _steps_html([entry])
    assert "its best weight, 0.12, would have gained an estimated 0.021 dB" in html
    assert "less than 0.05 dB, so <code>prinlm</code> was not run on the whole image" in html
    applied = step_entry({**info, "model": {**info["model"], "aggregate": {
        **aggregate, "weight": 0.12, "applied": True, "estimated_gain_db": 0.2}}}, 100.0)
    assert applied["Aggregate"]["Applied"] is True
    assert "was not run" not in _steps_html([applied])
