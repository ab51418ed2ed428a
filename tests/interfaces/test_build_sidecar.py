"""BuildSidecar: references per step, one noise σ, a reason beside every null metric."""

from __future__ import annotations

import json

import pytest

from bids_enhance.interfaces.bids import BuildSidecar

SCALE = 200.0
DENOISE = {"method": "prinlm", "noise_model": "rician", "sigma": 0.02,
           "sigma_estimator": "coupe2010", "parameters": {"search_radius": 1},
           "device": "cpu", "elapsed_s": 0.5}
SUPERRES = {"step": "superres", "model": "gan3p", "architecture": "rrdb(...)",
            "path": "/m/checkpoint.pt", "sha256": "ab" * 32, "weights": "ema", "mode": "whole",
            "patch_size": None, "overlap": [0, 0, 0], "precision": "float32",
            "device": "cpu", "seconds": 1.0, "shape_in": [8, 8, 8], "shape_out": [16, 16, 16],
            "voxel_size_in": [2.0, 2.0, 2.0], "voxel_size_out": [1.0, 1.0, 1.0],
            "model_card": {"name": "gan3p_l1_x2", "description": "x2", "origin": "default",
                           "held_out_psnr": 25.4, "held_out_psnr_corrupted": None},
            "consistency": {"method": "box", "rmse": 0.01, "max_abs_error": 0.1,
                            "mean_error": 0.0, "relative_rms_error": 0.02, "robust_max": 1.0,
                            "rmse_percent": 1.0, "max_percent": None}}
IQMS = {"Before": {"snr_total": 8.0, "snr_dietrich": 12.0, "fber": 300.0, "n_air": 5000.0,
                   "summary_bg_mad": 0.02, "summary_bg_median": 0.03},
        "After": {"snr_total": 15.0, "snr_dietrich": None, "fber": None, "n_air": 5000.0,
                  "summary_bg_mad": 0.0, "summary_bg_median": 0.0}}


def _json(path, data):
    path.write_text(json.dumps(data))
    return str(path)


@pytest.fixture
def build(tmp_path):
    bids = tmp_path / "bids"
    source = bids / "sub-01" / "anat" / "sub-01_T1w.nii.gz"
    source.parent.mkdir(parents=True)
    source.write_bytes(b"")
    sanitise = _json(tmp_path / "sanitise.json", {"Orientation": "RAS", "Fixes": []})

    def run(steps, **extra):
        files = [_json(tmp_path / f"step{i}.json", s) for i, s in enumerate(steps)]
        extra.setdefault("iqms", IQMS)
        node = BuildSidecar(source_file=str(source), bids_dir=str(bids), description="d",
                            sanitise_report=sanitise, steps=files, scale=SCALE, random_seed=1,
                            image_seed=2,
                            **{k: _json(tmp_path / f"{k}.json", v) for k, v in extra.items()})
        node.run(cwd=str(tmp_path))
        return json.loads((tmp_path / "sidecar.json").read_text())
    return run


def _nulls(obj, path=()):
    """Paths of every null in ``obj``."""
    if obj is None:
        return [path]
    if isinstance(obj, dict):
        return [p for k, v in obj.items() for p in _nulls(v, (*path, k))]
    if isinstance(obj, list):
        return [p for i, v in enumerate(obj) for p in _nulls(v, (*path, i))]
    return []


def _reason(meta, path):
    """The reason of the null at ``path``: in the NotAvailable map of an enclosing object,
    under the rest of the path."""
    for cut in range(len(path) - 1, -1, -1):
        node = meta
        for key in path[:cut]:
            node = node[key]
        reason = node.get("NotAvailable") if isinstance(node, dict) else None
        for key in path[cut:]:
            reason = reason.get(key) if isinstance(reason, dict) else None
        if isinstance(reason, str) and reason:
            return reason
    return None


def test_every_step_cites_its_method(build):
    meta = build([DENOISE, SUPERRES])
    denoise, superres = meta["EnhancementSteps"]
    assert [r["Key"] for r in denoise["References"]] == [
        "manjon2012", "buades2005", "coupe2008", "coupe2010", "koay2006"]
    assert [r["Key"] for r in superres["References"]] == ["wang2023threeplayer"]
    assert all(r["Citation"] and r["URL"].startswith("https://")
               for s in meta["EnhancementSteps"] for r in s["References"])


def test_noise_sigma_is_recorded_once_by_the_step_that_estimated_it(build):
    meta = build([DENOISE, SUPERRES])
    assert "EstimatedNoiseSigma" not in meta
    denoise, superres = meta["EnhancementSteps"]
    assert denoise["NoiseSigma"] == pytest.approx(0.02 * SCALE)  # input units
    assert denoise["NoiseSigmaEstimator"] == "coupe2010"
    assert "NoiseSigma" not in superres
    assert json.dumps(meta).count("NoiseSigma\"") == 1
    # what the report and the group table read
    from bids_enhance.reports.fragments import noise_sigma

    assert noise_sigma(meta) == (pytest.approx(0.02 * SCALE), "coupe2010")


def test_every_null_in_a_sidecar_has_its_reason(build):
    comparison = {"label": "x", "protocol": "p", "enhanced": {"psnr": None, "ssim": 0.9},
                  "baselines": {"cubic": {"psnr": 28.0, "hfen": None}}}
    meta = build([DENOISE, SUPERRES], reference_metrics=comparison,
                 simulation={"Simulation": {"Preset": "sr-box-x2", "Seed": 3}})
    nulls = _nulls(meta)
    assert ("QualityMetrics", "After", "fber") in nulls
    assert ("ReferenceMetrics", "baselines", "cubic", "hfen") in nulls
    assert ("EnhancementSteps", 1, "ConsistencyError", "max_percent") in nulls
    missing = [p for p in nulls if _reason(meta, p) is None]
    assert missing == []
    quality = meta["QualityMetrics"]
    assert set(quality["NotAvailable"]) == {"After"}  # Before has no null
    assert set(quality["NotAvailable"]["After"]) == {"snr_dietrich", "fber"}
    assert "zero" in quality["NotAvailable"]["After"]["fber"]


def test_what_does_not_apply_is_left_out_not_null(build):
    superres = build([SUPERRES])["EnhancementSteps"][0]
    assert "patch_size" not in superres["Parameters"]  # whole-volume mode
    assert superres["Parameters"]["mode"] == "whole"
    assert "held_out_psnr_corrupted" not in superres["Model"]["ModelCard"]
    assert superres["Model"]["ModelCard"]["held_out_psnr"] == 25.4


def test_no_reasons_without_nulls(build):
    meta = build([DENOISE], iqms={"Before": IQMS["Before"], "After": IQMS["Before"]})
    assert _nulls(meta) == []
    assert "NotAvailable" not in meta["QualityMetrics"]
    assert set(meta["QualityMetrics"]) == {"Before", "After"}
