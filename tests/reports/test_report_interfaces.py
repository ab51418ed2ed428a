"""Reportlet interfaces: each runs on tiny synthetic inputs and writes a valid SVG/HTML file."""

from __future__ import annotations

import html
import json
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from reports_helpers import assert_balanced_html, make_sidecar

from bids_enhance.interfaces.reports import (
    AboutRPT,
    IQMTableRPT,
    ResidualMosaicRPT,
    SubjectSummaryRPT,
)
from bids_enhance.reports.figures import axial_indices, bounding_box, plot_residual_mosaic
from bids_enhance.reports.fragments import format_number, iqm_table_html

SVG_NS = "{http://www.w3.org/2000/svg}"


def test_residual_mosaic_writes_a_small_valid_svg(image_pair, tmp_path):
    before, after = image_pair
    result = ResidualMosaicRPT(in_before=str(before), in_after=str(after)).run(
        cwd=str(tmp_path))
    out = Path(result.outputs.out_report)
    assert out.parent == tmp_path and out.suffix == ".svg"
    root = ET.parse(out).getroot()
    assert root.tag == f"{SVG_NS}svg" and root.get("viewBox")
    image = root.find(f"{SVG_NS}image")
    href = image.get("{http://www.w3.org/1999/xlink}href")
    assert href.startswith("data:image/jpeg;base64,")  # embedded, nothing to fetch
    assert out.stat().st_size < 300_000


def test_residual_mosaic_refuses_two_grids(image_pair, tmp_path):
    before, _ = image_pair
    other = tmp_path / "other.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((10, 10, 10), np.float32), np.eye(4)), other)
    with pytest.raises(ValueError, match="grid"):
        ResidualMosaicRPT(in_before=str(before), in_after=str(other)).run(cwd=str(tmp_path))


def test_residual_mosaic_core_handles_identical_images_and_anisotropy(tmp_path):
    data = np.random.default_rng(0).random((24, 20, 8)).astype(np.float32) + 1
    out = plot_residual_mosaic(data, data, tmp_path / "same.svg", zooms=(1.0, 1.0, 4.0))
    assert ET.parse(out).getroot().tag == f"{SVG_NS}svg"
    with pytest.raises(ValueError, match="zooms"):
        plot_residual_mosaic(data, data, tmp_path / "bad.svg", zooms=(1.0, 0.0, 1.0))


def test_bounding_box_and_slices():
    mask = np.zeros((20, 20, 20), bool)
    mask[5:10, 6:12, 4:16] = True
    box = bounding_box(mask, margin=1)
    assert box == (slice(4, 11), slice(5, 13), slice(3, 17))
    idx = axial_indices(box[2], 5)
    assert idx == sorted(set(idx)) and box[2].start <= idx[0] and idx[-1] < box[2].stop
    assert bounding_box(np.zeros((3, 4, 5), bool)) == (slice(0, 3), slice(0, 4), slice(0, 5))


def test_iqm_table_interface(sidecar_file, tmp_path):
    result = IQMTableRPT(in_sidecar=str(sidecar_file)).run(cwd=str(tmp_path))
    text = Path(result.outputs.out_report).read_text()
    assert_balanced_html(text)
    assert "<table" in text and "SNR" in text and "CJV" in text
    # direction arrows and verdicts: SNR went up (better), CJV went down (better)
    assert "↑" in text and "↓" in text and "be-better" in text
    # definitions are given, citing MRIQC
    assert "Esteban et al. 2017" in text and 'title="Coefficient of joint variation' in text
    # noise: absolute and as % of the robust maximum (Scale = 100 → 4.50 %)
    assert "4.500" in text and "4.50 %" in text
    # method, parameters, fixes (escaped)
    assert "PRI-NLM" in text and "search_radius" in text
    assert "&lt;2 mm off&gt;" in text and "<2 mm off>" not in text
    assert "n/a" in text  # FBER after is missing


def test_iqm_table_worse_values_and_missing_sections():
    sidecar = make_sidecar(sigma=None, snr=(12.0, 8.0), cjv=(0.4, 0.5))
    del sidecar["QualityMetrics"]["After"]["cjv"]
    text = iqm_table_html(sidecar)
    assert "be-worse" in text  # SNR went down
    assert "n/a" in text and "no step of the chain estimated it" in text
    assert "No header or data repairs" in text
    bare = iqm_table_html({})
    assert_balanced_html(bare)
    assert "No image-quality metrics" in bare and "No enhancement step" in bare


@pytest.mark.parametrize(("value", "expected"), [
    (None, "n/a"), (float("nan"), "n/a"), (float("inf"), "n/a"), (2.0, "2.000"),
    (0.65884, "0.6588"), (1025.3, "1025"), (123456.7, "123457"), (2e7, "2.000e+07"), (0, "0"),
])
def test_format_number(value, expected):
    assert format_number(value) == expected


def test_subject_summary(tmp_path):
    bids = tmp_path / "bids"
    sources = [str(bids / "sub-01/ses-a/anat/sub-01_ses-a_echo-2_T1w.nii.gz"),
               "/elsewhere/sub-01_T2w.nii.gz"]
    result = SubjectSummaryRPT(subject="sub-01", source_files=sources, bids_dir=str(bids),
                               enhance=["denoise"], denoise_method="sanlm",
                               noise_model="gaussian", device="cuda:0").run(cwd=str(tmp_path))
    text = Path(result.outputs.out_report).read_text()
    assert_balanced_html(text)
    assert "sub-01/ses-a/anat/sub-01_ses-a_echo-2_T1w.nii.gz" in text
    assert str(bids) not in text  # paths shown relative to the dataset
    assert 'data-image="sub-01_ses-a_echo-2_T1w"' in text
    assert "<code>sub-01</code>" in text and "sub-sub-" not in text
    assert "SANLM" in text and "Gaussian" in text and "cuda:0" in text and "Images (2)" in text


def test_about(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "argv", ["/usr/bin/bids_enhance", "/data", "/out", "participant",
                                      "--participant-label", "01 <x>"])
    result = AboutRPT(version="9.8.7").run(cwd=str(tmp_path))
    text = Path(result.outputs.out_report).read_text()
    assert_balanced_html(text)
    assert "9.8.7" in text and "/usr/bin/bids_enhance /data /out participant" in text
    assert "'01 <x>'" in html.unescape(text) and "<x>" not in text  # shell-quoted, escaped
    assert "UTC" in text


def test_summary_and_about_always_rerun():
    assert AboutRPT().always_run and SubjectSummaryRPT().always_run
    assert not IQMTableRPT().always_run


def test_every_input_trait_has_a_description():
    for cls in (ResidualMosaicRPT, IQMTableRPT, SubjectSummaryRPT, AboutRPT):
        spec = cls.input_spec()
        for name in spec.copyable_trait_names():
            assert spec.trait(name).desc, f"{cls.__name__}.{name} has no desc"


def test_interface_names_match_the_workflow(tmp_path):
    """Inputs/outputs wired in workflows/base.py exist with these names."""
    assert set(ResidualMosaicRPT.input_spec().copyable_trait_names()) >= {"in_before",
                                                                          "in_after"}
    assert "in_sidecar" in IQMTableRPT.input_spec().copyable_trait_names()
    assert {"subject", "source_files", "bids_dir", "enhance", "denoise_method", "noise_model",
            "device"} <= set(SubjectSummaryRPT.input_spec().copyable_trait_names())
    assert "version" in AboutRPT.input_spec().copyable_trait_names()
    for cls in (ResidualMosaicRPT, IQMTableRPT, SubjectSummaryRPT, AboutRPT):
        assert "out_report" in cls.output_spec().copyable_trait_names()
    json.dumps(make_sidecar())  # the fixture sidecar is strict JSON
