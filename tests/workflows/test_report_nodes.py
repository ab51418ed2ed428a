"""The report nodes know the chain of steps that ran; the methods text names only those steps.
Graphs are built, never run."""

from __future__ import annotations

import pytest

from bids_enhance.inference.weights import resolve_model
from bids_enhance.workflows.base import init_bids_enhance_wf, init_enhance_image_wf
from bids_enhance.workflows.spec import ChainSpec
from tests.generative_helpers import save_tiny_generator


@pytest.fixture(scope="module")
def superres_model(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "gan3p.pt"
    save_tiny_generator(path, task="gan3p")
    return resolve_model("superres", path).to_dict()


def _image_wf(tiny_bids, tmp_path, chain, models):
    return init_enhance_image_wf(
        source_file=tiny_bids / "sub-01/anat/sub-01_T1w.nii.gz", bids_dir=tiny_bids,
        output_dir=tmp_path / "out", image_seed=2, spec=ChainSpec(
            enhance=chain, denoise_method="prinlm", noise_model="rician", device="cpu",
            omp_nthreads=1, random_seed=1, models=models))


@pytest.mark.parametrize("chain", [["denoise"], ["superres", "denoise"], ["superres"]])
def test_report_nodes_get_the_chain(tiny_bids, tmp_path, superres_model, chain):
    from bids_enhance.interfaces.reports import BeforeAfterRPT

    models = {"superres": superres_model} if "superres" in chain else {}
    wf = _image_wf(tiny_bids, tmp_path, chain, models)
    residual = wf.get_node("residual")
    assert list(residual.inputs.steps) == [s for s in ("denoise", "superres") if s in chain]
    assert isinstance(wf.get_node("flicker").interface, BeforeAfterRPT)


def test_methods_text_names_only_the_steps_that_ran(tiny_bids, tmp_path, superres_model):
    from bids_enhance.bids.layout import collect_images, make_layout

    subjects = collect_images(make_layout(tiny_bids), suffixes=["T1w"])
    seeds = {str(p): i for i, p in enumerate(p for v in subjects.values() for p in v)}

    def methods(enhance):
        return init_bids_enhance_wf(
            subjects=subjects, bids_dir=tiny_bids, output_dir=tmp_path / "out", seeds=seeds,
            spec=ChainSpec(
                enhance=enhance, denoise_method="prinlm", noise_model="rician", device="cpu",
                omp_nthreads=1, random_seed=1,
                models={"superres": superres_model} if "superres" in enhance else {}),
            base_dir=tmp_path / "work").visit_desc()

    denoise = methods(["denoise"])
    assert "denoised" in denoise and "super-resolved" not in denoise
    superres = methods(["superres"])
    assert "super-resolved" in superres
    assert "denoised" not in superres and "noise model" not in superres
