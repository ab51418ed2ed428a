"""Reports say only what happened: captions, summaries and IQM tables follow the chain of steps.

Subject reports are generated from synthetic output trees (fragments written as the workflow's
reportlet nodes write them, figures as placeholders) for a denoise-only and a chained x2 run.
"""

from __future__ import annotations

import re

import pytest
from reports_helpers import assert_balanced_html, make_sidecar, write_figure_svg

from bids_enhance.reports.assemble import generate_report
from bids_enhance.reports.captions import (
    CAPTIONS,
    STEP_LABELS,
    Chain,
    caption,
    residual_legend,
)
from bids_enhance.reports.fragments import iqm_table_html, subject_summary_html

SUPERRES_STEP = {
    "Step": "superres", "Method": "x2 super-resolution, RRDB generator",
    "Model": {"Name": "gan3p_l1_x2", "Task": "gan3p", "Sha256": "ab" * 32,
              "Architecture": "rrdb_generator(scale=2)"},
    "VoxelSizeIn": [2.0, 2.0, 2.0], "VoxelSizeOut": [1.0, 1.0, 1.0],
    "ConsistencyError": {"method": "box", "rmse": 0.5, "rmse_percent": 0.5, "max_percent": 4.0},
}
MOTION_STEP = {"Step": "motion", "Method": "motion GAN", "Model": {"Name": "motion_gan"}}


def _sidecar(steps: list[str], *, simulate: str | None = None) -> dict:
    meta = make_sidecar()
    denoise = meta["EnhancementSteps"][0]
    by_name = {"denoise": denoise, "superres": SUPERRES_STEP, "motion": MOTION_STEP}
    meta["EnhancementSteps"] = [by_name[s] for s in steps]
    if simulate:
        meta["Simulation"] = {"Preset": simulate, "Seed": 3}
    return meta


def _output_tree(root, steps: list[str], *, iqms: bool = True, summary: bool = True):
    """``<root>/sub-01/figures`` as a run of ``steps`` over one T1w image leaves it."""
    figures = root / "sub-01" / "figures"
    figures.mkdir(parents=True)
    if summary:
        (figures / "sub-01_desc-summary_T1w.html").write_text(subject_summary_html(
            subject="01", source_files=["/d/sub-01/anat/sub-01_T1w.nii.gz"], bids_dir="/d",
            enhance=steps, denoise_method="prinlm", noise_model="rician", device="cpu"))
    for desc in ("flicker", "residual") + (("superres",) if "superres" in steps else ()):
        write_figure_svg(figures / f"sub-01_desc-{desc}_T1w.svg", desc)
    if iqms:
        (figures / "sub-01_desc-iqms_T1w.html").write_text(iqm_table_html(_sidecar(steps)))
    return root


def _section(page: str, subtitle: str) -> str:
    """Text (tags stripped) of the reportlet whose <h3> starts with ``subtitle``."""
    start = page.index(f"<h3>{subtitle}")
    end = page.index('<div class="be-reportlet"', start)
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", page[start:end]))


def _summary(page: str) -> str:
    return page[page.index('id="Summary"'):page.index('id="Images"')]


def test_denoise_only_report_says_nothing_of_super_resolution(tmp_path):
    out = _output_tree(tmp_path / "out", ["denoise"])
    page = generate_report(out, "01", "run").read_text()
    assert_balanced_html(page)
    flicker = _section(page, "Before and after")
    residual = _section(page, "What was removed")
    for text in (flicker, residual):
        assert "super-resolution" not in text and "B-spline" not in text and "x2" not in text
    assert "The input image and the image after denoising alternate" in flicker
    assert "switches between the two by itself" in flicker  # the animation is said
    assert "removed noise and texture" in flicker
    assert "the image after denoising" in residual and "Removed noise looks like" in residual
    assert "Rician noise model" in residual  # the noise model of the step that ran
    assert "desc-superres" not in page and "Super-resolution in detail" not in page
    summary = _summary(page)
    assert "Denoising method" in summary and "PRI-NLM" in summary and "Rician" in summary


def test_chained_x2_report_describes_each_step_that_ran(tmp_path):
    out = _output_tree(tmp_path / "out", ["denoise", "superres"])
    page = generate_report(out, "01", "run").read_text()
    assert_balanced_html(page)
    flicker = _section(page, "Before and after")
    assert ("The input image, interpolated with a cubic B-spline onto the x2 output grid, and "
            "the image after denoising and x2 super-resolution alternate") in flicker
    assert "removed noise" in flicker and "sharper edges" in flicker
    residual = _section(page, "What changed beyond interpolation")
    assert "Removed noise looks like" in residual and "model's invention" in residual
    superres = _section(page, "Super-resolution in detail")
    assert "the input image after denoising" in superres  # what the x2 step started from
    assert "e.g. denoising" not in page  # the old, hypothetical wording
    assert "What was removed (input − output)" not in page


def test_super_resolution_only_lists_no_denoising(tmp_path):
    out = _output_tree(tmp_path / "out", ["superres"])
    page = generate_report(out, "01", "run").read_text()
    summary = _summary(page)
    assert "x2 super-resolution" in summary
    assert "Denoising method" not in summary and "Noise model" not in summary
    assert "not used" not in page and "PRI-NLM" not in page
    flicker = _section(page, "Before and after")
    residual = _section(page, "What changed beyond interpolation")
    for text in (flicker, residual):
        assert "denois" not in text and "noise" not in text.replace("noise averages", "")
    # no noise estimate line: no step of this chain estimates the noise
    assert "Estimated noise" not in page
    superres = _section(page, "Super-resolution in detail")
    assert "after denoising" not in superres and "from the input image." in superres


def test_chain_falls_back_to_the_summary_then_to_the_specification(tmp_path):
    page = generate_report(_output_tree(tmp_path / "a", ["superres"], iqms=False), "01",
                           "run").read_text()
    assert "What changed beyond interpolation" in page  # from the summary's chain
    page = generate_report(_output_tree(tmp_path / "b", ["superres"], iqms=False,
                                        summary=False), "01", "run").read_text()
    flicker = _section(page, "Before and after")
    assert "The input image and the enhanced image alternate" in flicker  # the spec's text
    assert "B-spline" not in flicker


@pytest.mark.parametrize(("steps", "simulate", "present", "absent"), [
    (["denoise"], None, ["after denoising", "removed noise"],
     ["B-spline", "motion", "super-resolution"]),
    (["superres"], None, ["x2 output grid", "after x2 super-resolution", "sharper edges"],
     ["denois", "motion"]),
    (["motion", "denoise", "superres"], None,
     ["after motion correction, denoising and x2 super-resolution", "motion artefacts",
      "removed noise", "sharper edges"], []),
    (["superres-denoise"], None, ["x2 super-resolution with noise removal", "less noise"],
     ["after denoising"]),
    (["denoise"], "noise-rician-6", ["simulated input", "noise-rician-6"], ["B-spline"]),
])
def test_flicker_caption_per_chain(steps, simulate, present, absent):
    chain = Chain.from_sidecar(_sidecar([s for s in steps if s != "superres-denoise"],
                                        simulate=simulate))
    if "superres-denoise" in steps:
        chain = Chain(steps=tuple(steps))
    subtitle, text = caption("flicker", chain)
    assert subtitle == "Before and after"
    for phrase in present:
        assert phrase in text, phrase
    for phrase in absent:
        assert phrase not in text, phrase


def test_residual_legend_follows_the_chain():
    assert residual_legend(Chain(steps=("denoise",)))[0] == (
        "Top: speckle without anatomy = noise removed.")
    x2 = " ".join(residual_legend(Chain(steps=("superres",))))
    assert "noise removed" not in x2 and "cubic interpolation" in x2
    motion = " ".join(residual_legend(Chain(steps=("motion",))))
    assert "motion artefacts removed" in motion and "noise removed" not in motion


def test_chain_html_round_trip_and_order():
    chain = Chain(steps=("superres", "denoise", "bogus"), simulated='a"<b>',
                  noise_model="rician")
    assert chain.steps == ("denoise", "superres")  # fixed order, unknown names dropped
    html = f"<div{chain.html_attributes()}>x</div>"
    assert '"<b>' not in html
    assert Chain.from_html(html) == chain
    assert Chain.from_html("<div>no chain</div>") is None
    with pytest.raises(ValueError, match="unknown caption"):
        caption("nope", chain)


def test_one_vocabulary_with_the_workflows():
    from bids_enhance.workflows.enhance import CHAIN_ORDER, X2_STEPS

    assert tuple(STEP_LABELS) == CHAIN_ORDER
    assert {s for s in CHAIN_ORDER if Chain(steps=(s,)).x2} == set(X2_STEPS)
    assert set(CAPTIONS) == {"flicker", "residual", "superres"}


def test_superres_annotations_come_from_the_step_that_changed_the_grid():
    from bids_enhance.reports.captions import superres_annotations

    denoise = {"Step": "denoise", "VoxelSizeIn": [2, 2, 2], "VoxelSizeOut": [2, 2, 2]}
    superres = {"Step": "superres", "VoxelSizeIn": [2, 2, 2], "VoxelSizeOut": [1, 1, 1],
                "Model": {"Name": None, "Task": "gan3p", "Sha256": "ab" * 32},
                "ConsistencyError": {"rmse": 1.0}, "ConsistencyProjected": False,
                "ConsistencyErrorAfterProjection": {"rmse": 0.0}}
    out = superres_annotations({"EnhancementSteps": [denoise, superres]})
    assert out == {"consistency": {"rmse": 1.0}, "projected": None,
                   "model_name": f"gan3p (sha256 {'ab' * 6}…)"}
    projected = superres_annotations({"EnhancementSteps": [dict(superres,
                                                                ConsistencyProjected=True)]})
    assert projected["projected"] == {"rmse": 0.0}
    assert superres_annotations({}) == {"consistency": None, "projected": None,
                                        "model_name": None}


def test_subject_summary_names_the_method_each_contrast_got_under_auto():
    html = subject_summary_html(
        subject="01", source_files=["/d/sub-01/anat/sub-01_T1w.nii.gz",
                                    "/d/sub-01/anat/sub-01_PDw.nii.gz"],
        bids_dir="/d", enhance=["denoise"], denoise_method="auto", noise_model="rician",
        device="cpu")
    assert "PRI-NLM: prefiltered" in html and "(PDw)" in html
    assert "ODCT3D: oracle" in html and "(T1w)" in html
    assert "--denoise-method auto" in html
    explicit = subject_summary_html(
        subject="01", source_files=["/d/sub-01/anat/sub-01_PDw.nii.gz"], bids_dir="/d",
        enhance=["denoise"], denoise_method="odct3d", noise_model="rician", device="cpu")
    assert "ODCT3D: oracle" in explicit and "PRI-NLM" not in explicit
    assert "auto" not in explicit
