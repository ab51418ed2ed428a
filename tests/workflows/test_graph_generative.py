"""Workflow graphs with generative steps, for option combinations: built, never run."""

from __future__ import annotations

import itertools

import pytest
from nipype.interfaces.base import isdefined

from bids_enhance.inference.weights import resolve_model
from bids_enhance.workflows.base import init_bids_enhance_wf
from bids_enhance.workflows.enhance import output_desc
from bids_enhance.workflows.spec import ChainSpec
from tests.generative_helpers import save_tiny_generator

CHAINS = [["superres"], ["denoise", "superres"], ["superres-denoise"], ["motion"],
          ["motion", "denoise", "superres-denoise"]]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("models")
    out = {}
    for step, task in (("superres", "gan3p"), ("superres-denoise", "disgan"),
                       ("motion", "motion-gan")):
        save_tiny_generator(folder / f"{task}.pt", task=task)
        out[step] = resolve_model(step, folder / f"{task}.pt").to_dict()
    return out


def _build(tiny_bids, tmp_path, models, **kwargs):
    from bids_enhance.bids.layout import collect_images, make_layout

    subjects = collect_images(make_layout(tiny_bids), suffixes=["T1w"])
    seeds = {str(p): i for i, p in enumerate(p for v in subjects.values() for p in v)}
    options = {"enhance": ["denoise"], "denoise_method": "prinlm", "noise_model": "rician",
               "device": "cpu", "omp_nthreads": 1, "random_seed": 1, **kwargs}
    needed = {s: models[s] for s in options["enhance"] if s in models}
    return init_bids_enhance_wf(subjects=subjects, bids_dir=tiny_bids,
                                output_dir=tmp_path / "out", seeds=seeds,
                                spec=ChainSpec(models=needed, **options),
                                base_dir=tmp_path / "work")


def _nodes(wf, suffix):
    return [wf.get_node(n) for n in wf.list_node_names() if n.endswith(suffix)]


@pytest.mark.parametrize(("chain", "consistency", "mode"), [
    (chain, consistency, mode) for chain, consistency, mode in itertools.product(
        CHAINS, ["measure", "project", "off"], ["plain", "simulate", "fmriprep"])
    # motion and x2 are not simulated together (a parser error)
    if not (mode == "simulate" and "motion" in chain and chain[-1].startswith("superres"))])
def test_graph_builds_for_every_generative_combination(tiny_bids, tmp_path, models, chain,
                                                       consistency, mode):
    device = "cuda" if consistency == "project" else "cpu"  # both, without doubling the grid
    x2 = any(s.startswith("superres") for s in chain)
    simulate = None
    if mode == "simulate":
        simulate = "sr-box-x2" if x2 else ("motion" if "motion" in chain else "noise-rician-3")
    wf = _build(tiny_bids, tmp_path, models, enhance=list(reversed(chain)),
                consistency=consistency, device=device, simulate=simulate,
                fmriprep_compat=mode == "fmriprep", mem_budget_gb=6.0)
    enhance_nodes = _nodes(wf, "_wf.enhance")
    generative = [s for s in chain if s != "denoise"]
    assert len(enhance_nodes) == 4 * len(generative)  # sub-01 + three T1w of sub-02
    for node in enhance_nodes:
        step = node.inputs.step
        assert node.inputs.checkpoint == models[step]["path"]
        assert node.inputs.expected_sha256 == models[step]["sha256"]
        assert node.inputs.consistency == (consistency if step.startswith("superres")
                                           else "off")
        assert node.inputs.use_gpu == (device != "cpu") and node.inputs.mem_gb == 6.0
        assert node.inputs.model_summary["name"] == models[step]["summary"]["name"]
    sinks = _nodes(wf, "ds_image")
    assert {s.inputs.desc for s in sinks} == {output_desc(chain, simulated=bool(simulate))}
    for sink in sinks:
        if x2 and not simulate:
            assert sink.inputs.res == "x2"
        else:
            assert not isdefined(sink.inputs.res)
    names = wf.list_node_names()
    assert any(n.endswith("upsample_input") for n in names) == x2
    assert any(n.endswith("ds_report_superres_report") for n in names) == x2
    assert any(n.endswith("ds_preproc") for n in names) == (mode == "fmriprep")
    if simulate and x2:
        compare = _nodes(wf, ".compare")[0]
        assert compare.inputs.baselines == ["trilinear", "cubic", "kspace"]
        assert compare.inputs.lowres_method == "box"
    wf._create_flat_graph()  # connections are valid


def _image_wf(tiny_bids, tmp_path, models, chain):
    from bids_enhance.workflows.base import init_enhance_image_wf

    return init_enhance_image_wf(
        source_file=tiny_bids / "sub-01/anat/sub-01_T1w.nii.gz", bids_dir=tiny_bids,
        output_dir=tmp_path / "out", image_seed=2, spec=ChainSpec(
            enhance=chain, denoise_method="prinlm", noise_model="rician", device="cpu",
            omp_nthreads=1, random_seed=1, models={s: models[s] for s in chain if s in models}))


def test_steps_run_in_the_fixed_order(tiny_bids, tmp_path, models):
    wf = _image_wf(tiny_bids, tmp_path, models, ["superres-denoise", "denoise", "motion"])
    edges = {(u.name, v.name) for u, v in wf._graph.edges()}
    assert {("normalize", "motion_wf"), ("motion_wf", "denoise_wf"),
            ("denoise_wf", "superres_denoise_wf"), ("superres_denoise_wf", "denormalize")} <= edges


def test_methods_text_cites_the_models(tiny_bids, tmp_path, models):
    text = _build(tiny_bids, tmp_path, models, enhance=["denoise", "superres"],
                  consistency="project").visit_desc()
    assert "[@wang2023threeplayer]" in text and "PRI-NLM" in text
    assert "world coordinates are preserved" in text and "gives back the input exactly" in text
    assert models["superres"]["sha256"][:12] in text
    disgan = _build(tiny_bids, tmp_path, models, enhance=["superres-denoise"]).visit_desc()
    assert "[@wang2023disgan]" in disgan and "gives back the input exactly" not in disgan
    from bids_enhance.reports.boilerplate import load_bibliography

    keys = set(load_bibliography())
    assert {"wang2023threeplayer", "wang2023disgan", "ho2020ddpm", "song2021ddim"} <= keys


def test_a_generative_step_without_a_model_is_refused(tiny_bids, tmp_path, models):
    with pytest.raises(ValueError, match="no model given"):
        _image_wf(tiny_bids, tmp_path, {}, ["superres"])


def test_generative_node_hash_ignores_device_threads_and_memory():
    from bids_enhance.interfaces.generative import GenerativeEnhance

    spec = GenerativeEnhance.input_spec()
    for name in ("device", "omp_nthreads", "use_gpu", "mem_gb"):
        assert spec.trait(name).nohash, name
    for name in ("checkpoint", "expected_sha256", "consistency", "seed", "step", "in_file"):
        assert not spec.trait(name).nohash, name


@pytest.mark.parametrize(("chain", "simulated", "label"), [
    (["denoise"], False, "denoised"),
    (["superres", "denoise"], False, "denoisedSuperres"),
    (["superres-denoise", "motion"], False, "motioncorrSuperresDenoised"),
    (["superres"], True, "simSuperres"),
])
def test_desc_labels_of_chains(chain, simulated, label):
    from bids_enhance.workflows.enhance import chain_description

    assert output_desc(chain, simulated=simulated) == label
    assert label.isalnum() and chain_description(chain, simulated=simulated)


def test_motion_step_takes_the_phase_encoding_axis_from_the_metadata(tiny_bids, tmp_path,
                                                                     models, caplog):
    """PhaseEncodingDirection of the image (inheritance principle) reaches the motion node; with
    none, the training axis is assumed and the log says so; simulated motion uses TorchIO's."""
    import json
    import logging
    import shutil

    bids = tmp_path / "pe_bids"
    shutil.copytree(tiny_bids, bids)
    source = bids / "sub-01/anat/sub-01_T1w.nii.gz"

    def motion_node(**kwargs):
        from bids_enhance.workflows.base import init_enhance_image_wf

        wf = init_enhance_image_wf(
            source_file=source, bids_dir=bids, output_dir=tmp_path / "out", image_seed=2,
            spec=ChainSpec(enhance=["motion"], denoise_method="prinlm", noise_model="rician",
                           device="cpu", omp_nthreads=1, random_seed=1,
                           models={"motion": models["motion"]}, **kwargs))
        return wf.get_node("motion_wf.enhance"), wf.visit_desc()

    with caplog.at_level(logging.WARNING):
        node, text = motion_node()
    assert "No phase-encoding direction was given" in text
    assert node.inputs.phase_encoding_axis == 2
    assert node.inputs.phase_encoding_source.startswith("assumed")
    assert "sub-01_T1w.nii.gz: no PhaseEncodingDirection" in caplog.text
    (bids / "T1w.json").write_text(json.dumps({"PhaseEncodingDirection": "j-"}))
    node, text = motion_node()
    assert node.inputs.phase_encoding_axis == 1
    assert "phase-encoding axis (j, its PhaseEncodingDirection)" in text
    node, _ = motion_node(simulate="motion")
    assert node.inputs.phase_encoding_axis == 2
    assert node.inputs.phase_encoding_source.startswith("simulated motion")
    (bids / "T1w.json").write_text(json.dumps({"PhaseEncodingDirection": "y"}))
    with pytest.raises(ValueError, match=r"T1w.json \(metadata of sub-01_T1w.nii.gz\): "
                                         "PhaseEncodingDirection"):
        motion_node()
