"""The chain spec: validated, normalised, immutable; its derived values; made from Settings."""

from __future__ import annotations

import copy
import dataclasses
import pickle
import shlex
import subprocess
import sys

import pytest

from bids_enhance.workflows.spec import ChainSpec, output_desc

SHA = "ab" * 32


def _model(step, **extra):
    return {"step": step, "path": f"/m/{step}.pt", "sha256": SHA, "origin": "shipped",
            "summary": {"name": f"{step}-model"}, **extra}


def test_chain_is_ordered_and_deduplicated():
    spec = ChainSpec(enhance=["superres", "denoise", "superres"], random_seed=3,
                     models={"superres": _model("superres")})
    assert spec.enhance == ("denoise", "superres")
    assert spec.desc == output_desc(["denoise", "superres"]) == "denoisedSuperres"


@pytest.mark.parametrize(("kwargs", "error", "match"), [
    ({"enhance": ["denoise", "sharpen"]}, ValueError, "unknown enhancement step"),
    ({"enhance": []}, ValueError, "at least one enhancement step"),
    ({"enhance": "denoise"}, TypeError, "not a string"),
    ({"enhance": ["superres"]}, ValueError, r"no model given .*superres"),
    ({"enhance": ["motion", "denoise"], "models": {"superres": _model("superres")}},
     ValueError, r"no model given .*motion"),
    ({"enhance": ["denoise"], "denoise_method": "bm4d"}, ValueError, "denoise_method"),
    ({"enhance": ["denoise"], "simulate": "noise-rician-3", "fmriprep_compat": True},
     ValueError, "exclude each other"),
])
def test_invalid_specs_are_refused(kwargs, error, match):
    with pytest.raises(error, match=match):
        ChainSpec(random_seed=1, **kwargs)


def test_the_learned_denoiser_needs_no_model():
    spec = ChainSpec(enhance=["denoise"], denoise_method="learned", random_seed=1)
    assert dict(spec.models) == {} and not spec.is_x2


def test_derived_values_same_grid():
    spec = ChainSpec(enhance=["denoise"], random_seed=1, command_line="bids_enhance a b",
                     run_id="20260101-000000_x")
    assert not spec.is_x2 and spec.x2_model is None and spec.lowres_method == "box"
    assert spec.res is None and spec.grid_factor == 1 and not spec.simulated
    assert spec.reference_baselines == ["identity"]
    assert spec.run_metadata == {"CommandLine": "bids_enhance a b",
                                 "RunId": "20260101-000000_x"}
    assert spec.description("T2w") == (
        "T2w image enhanced by bids_enhance (denoise); same grid, orientation and intensity "
        "scale as the source.")
    assert ChainSpec(enhance=["denoise"], random_seed=1).run_metadata == {}


def test_derived_values_x2():
    model = _model("superres", lowres_method="gaussian")
    spec = ChainSpec(enhance=["superres", "denoise"], random_seed=1,
                     models={"superres": model, "denoise": _model("denoise")})
    assert spec.is_x2 and dict(spec.x2_model) == model and spec.lowres_method == "gaussian"
    assert spec.res == "x2" and spec.grid_factor == 8
    assert spec.reference_baselines == ["trilinear", "cubic", "kspace"]
    assert "twice as fine" in spec.description("T1w")
    assert spec.model_lines == [
        f"superres: superres-model (shipped weights, sha256 {SHA[:12]}…)",
        f"denoise: denoise-model (shipped weights, sha256 {SHA[:12]}…)"]


def test_derived_values_in_simulation_mode():
    spec = ChainSpec(enhance=["superres"], random_seed=1, simulate="sr-box-x2",
                     models={"superres": _model("superres")})
    assert spec.simulated and spec.desc == "simSuperres"
    assert spec.res is None  # back on the source's grid
    assert spec.description("T1w").endswith(
        "back onto the source's grid; same orientation and intensity scale as the source. "
        "Simulation mode: the source was first degraded (sr-box-x2).")
    assert ChainSpec(enhance=["denoise"], random_seed=1, simulate="").simulate is None


def test_spec_is_immutable_and_keeps_copies_of_the_models():
    models = {"superres": _model("superres")}
    spec = ChainSpec(enhance=["superres"], random_seed=1, models=models)
    models["superres"]["sha256"] = "cd" * 32
    models["motion"] = _model("motion")
    assert spec.models["superres"]["sha256"] == SHA and "motion" not in spec.models
    with pytest.raises(TypeError):
        spec.models["motion"] = _model("motion")
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.device = "cuda"


def test_spec_pickles_copies_hashes_and_compares():
    spec = ChainSpec(enhance=["superres"], random_seed=1, models={"superres": _model("superres")},
                     device="cuda", mem_budget_gb=6.0)
    for other in (pickle.loads(pickle.dumps(spec)), copy.deepcopy(spec), copy.copy(spec)):
        assert other == spec and hash(other) == hash(spec)
        assert isinstance(other.enhance, tuple) and dict(other.models) == dict(spec.models)
    assert dataclasses.replace(spec, device="cpu") != spec
    assert {spec: 1}[pickle.loads(pickle.dumps(spec))] == 1


def test_spec_imports_without_nipype_or_torch():
    code = ("import sys, bids_enhance.workflows.spec; "
            "heavy = [m for m in ('nipype', 'torch') if m in sys.modules]; "
            "assert not heavy, heavy")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr


def test_from_settings(tmp_path):
    from bids_enhance.cli.run import inference_budget_gb
    from bids_enhance.config import Settings

    model = _model("superres")
    settings = Settings(
        bids_dir=tmp_path / "bids", output_dir=tmp_path / "out", analysis_level="participant",
        enhance=["superres", "denoise"], denoise_method="sanlm", noise_model="gaussian",
        consistency="project", models={"superres": model}, nprocs=4, omp_nthreads=2,
        mem_gb=8.0, random_seed=11, sloppy=True, argv=["/d", "/o o", "participant"],
        run_uuid="20260101-000000_abc")
    spec = ChainSpec.from_settings(settings)
    assert spec == ChainSpec(
        enhance=("denoise", "superres"), random_seed=11, denoise_method="sanlm",
        noise_model="gaussian", device="cpu", omp_nthreads=2, sloppy=True, simulate=None,
        fmriprep_compat=False, models={"superres": model}, consistency="project",
        mem_budget_gb=4.0, command_line="bids_enhance /d '/o o' participant",
        run_id="20260101-000000_abc")
    assert spec.mem_budget_gb == inference_budget_gb(settings)
    assert shlex.split(spec.command_line) == ["bids_enhance", *settings.argv]
    settings.device, settings.gpu_mem_gb = "cuda", 20.0
    assert ChainSpec.from_settings(settings).mem_budget_gb == 20.0
