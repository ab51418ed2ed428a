"""Subject report assembly on synthetic output trees."""

from __future__ import annotations

import re

import pytest
import yaml
from reports_helpers import CRASH_TEXT, assert_balanced_html, external_assets

from bids_enhance.reports.assemble import (
    DATA_DIR,
    SPEC,
    FigureIndex,
    generate_report,
    image_id,
    parse_crash_file,
)


def _text(path):
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", path.read_text()))


def test_spec_is_valid_yaml_with_the_five_sections():
    spec = yaml.safe_load(SPEC.read_text().replace("{data_dir}", str(DATA_DIR)))
    assert [s["name"] for s in spec["sections"]] == ["Summary", "Images", "About", "Methods",
                                                     "Errors"]
    assert (DATA_DIR / "report.tpl").is_file()
    customs = [r["custom"] for s in spec["sections"] for r in s["reportlets"] if "custom" in r]
    assert customs == ["boilerplate", "errors"]


def test_report_sections_errors_and_offline(output_tree):
    out, run_uuid = output_tree
    path = generate_report(out, "sub-01", run_uuid)
    assert path == out / "sub-01.html" and path.is_file()
    page = path.read_text()
    assert_balanced_html(page)
    for section in ("Summary", "Images", "About", "Methods", "Errors"):
        assert f'id="{section}"' in page
    # the crash's one-line message, prominently, with the traceback folded below it
    message = ("ValueError: sub-01_echo-2_part-mag_T1w.nii.gz: noise estimate is not finite "
               "&lt;nan&gt;")
    assert f'<p class="be-crash-message">{message}</p>' in page
    assert page.index("be-crash-message") < page.index("<details><summary>Inputs and traceback")
    assert "NodeExecutionError" in page  # full traceback kept (folded)
    assert "This run did not complete cleanly" in page
    # offline: no scripts, stylesheets or images from the network
    assert not external_assets(page)
    assert "<script" not in page.lower()
    # methods text with author–year citations
    text = _text(path)
    assert "(Manjón et al. 2012)" in text and "Coupé et al. ( 2010 )" in text
    assert not list(out.glob(".tmp-*"))


def test_one_section_per_image_with_echo_and_part(output_tree):
    out, run_uuid = output_tree
    page = generate_report(out, "01", run_uuid).read_text()
    titles = re.findall(r'<div class="be-group" id="([^"]+)">\s*<h2>([^<]+)</h2>', page)
    names = [t for _, t in titles]
    # ordered by echo then part; the output directory's own "run-7"/"sub-99" are ignored
    assert names == ["sub-01_echo-1_part-mag_T1w", "sub-01_echo-1_part-phase_T1w",
                     "sub-01_echo-2_part-mag_T1w"]
    groups = re.split(r'<div class="be-group"', page)[1:]
    complete, phase, crashed = groups
    assert "echo-1_part-mag_desc-flicker" in complete and "echo-1_part-mag_desc-residual" in \
        complete and "be-iqm-table" in complete and "be-warning" not in complete
    assert "echo-1_part-phase_desc-flicker" in phase and "desc-residual" in phase
    assert "missing" in phase  # residual and IQM table are missing, said so
    assert "No figures were produced for this image" in crashed
    assert "noise estimate is not finite" in crashed  # its crash, shown where it is missing
    assert "_desc-flicker" not in crashed
    # the flicker is an <object> (interactive SVG), the residual an <img>
    assert re.search(r'<object class="svg-reportlet"[^>]*echo-1_part-mag_desc-flicker', page)
    assert re.search(r'<img class="svg-reportlet"[^>]*echo-1_part-mag_desc-residual', page)
    # the errors section lists the missing figures
    errors = page[page.index('id="Errors"'):]
    assert "image <code>sub-01_echo-2_part-mag_T1w</code>" in errors
    assert "sub-01_echo-1_part-phase_T1w" in errors and "sub-01_echo-2_part-mag_T1w" in errors


def test_report_of_a_run_that_produced_nothing(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    path = generate_report(out, "02", "norun")
    page = path.read_text()
    assert_balanced_html(page)
    assert 'id="Errors"' in page and "The subject summary" in page
    assert "methods text" in page.lower()
    assert not external_assets(page)


def test_report_without_problems_says_so(output_tree):
    from bids_enhance.reports.fragments import subject_summary_html

    out, _ = output_tree
    figures = out / "sub-01" / "figures"
    for path in figures.glob("*echo-1_part-phase*"):
        path.unlink()
    (figures / "sub-01_desc-summary_T1w.html").write_text(subject_summary_html(
        subject="01", source_files=["/d/sub-01/anat/sub-01_echo-1_part-mag_T1w.nii.gz"],
        bids_dir="/d", enhance=["denoise"], denoise_method="prinlm", noise_model="rician",
        device="cpu"))
    page = generate_report(out, "01", "another-run").read_text()
    assert "No errors to report" in page
    assert "did not complete cleanly" not in page


def test_parse_crash_file(tmp_path):
    crash = tmp_path / "crash-1.txt"
    crash.write_text(CRASH_TEXT)
    info = parse_crash_file(crash)
    assert info["node"].endswith("denoise_wf.denoise")
    assert info["message"].startswith("ValueError: sub-01_echo-2_part-mag_T1w.nii.gz")
    assert dict(info["inputs"])["method"] == "prinlm"
    assert "'b': 2" in dict(info["inputs"])["parameters"]
    assert info["traceback"].startswith("Traceback")
    plain = tmp_path / "crash-2.txt"
    plain.write_text("Traceback (most recent call last):\n  File x\n"
                     "bids_enhance.image.sanitize.ImageInputError: a.nii: 2D image\n")
    info = parse_crash_file(plain)
    assert info["node"] is None and info["message"] == "ImageInputError: a.nii: 2D image"
    odd = tmp_path / "crash-3.txt"
    odd.write_text("something odd happened\n")
    assert parse_crash_file(odd)["message"] == "something odd happened"


def test_parse_crash_file_beyond_nipypes_layout(tmp_path):
    # an input whose value runs over an unindented line: nireports' reader gives up, the node
    # (which ties the crash to its image), message and whole text are still there
    odd = tmp_path / "crash-1.txt"
    odd.write_text(CRASH_TEXT.replace("    'b': 2}", "'b': 2}"))
    info = parse_crash_file(odd)
    assert info["node"].endswith("denoise_wf.denoise")
    assert info["message"].startswith("ValueError: sub-01_echo-2_part-mag_T1w.nii.gz")
    assert "'b': 2}" in info["traceback"] and "NodeExecutionError" in info["traceback"]
    # a node that failed without a traceback; an empty file
    bare = tmp_path / "crash-2.txt"
    bare.write_text(CRASH_TEXT.split("Traceback (most")[0] + "RuntimeError: boom\n")
    info = parse_crash_file(bare)
    assert info["node"].endswith("denoise_wf.denoise") and info["message"] == "RuntimeError: boom"
    empty = tmp_path / "crash-3.txt"
    empty.write_text("")
    assert parse_crash_file(empty)["message"] == "unknown error"


def test_pickled_crash_files_are_never_loaded(tmp_path, monkeypatch):
    import gzip
    import pickle

    from bids_enhance.cli.run import crash_messages

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled')",))

    pklz = tmp_path / "crash-1.pklz"
    pklz.write_bytes(gzip.compress(pickle.dumps(Boom())))  # as nipype writes them
    with pytest.raises(ValueError, match="only plain-text crash files"):
        parse_crash_file(pklz)
    (tmp_path / "crash-2.txt").write_text(CRASH_TEXT)
    (tmp_path / "crash-3.txt").write_text("Traceback (most recent call last):\n  File x\n"
                                          "MemoryError\n")
    # the CLI's one-line causes come from the same reader, without the exception's name
    assert [m for _, m in crash_messages(tmp_path)] == [
        "sub-01_echo-2_part-mag_T1w.nii.gz: noise estimate is not finite <nan>", "MemoryError"]


@pytest.mark.parametrize(("name", "expected"), [
    ("sub-01_ses-a_run-1_desc-flicker_T1w.svg", "sub-01_ses-a_run-1_T1w"),
    ("sub-01_echo-2_part-phase_desc-iqms_T1w.html", "sub-01_echo-2_part-phase_T1w"),
])
def test_image_id(name, expected):
    assert image_id(name) == expected


def test_figure_index_queries(tmp_path):
    figures = tmp_path / "run-3" / "sub-01" / "figures"
    figures.mkdir(parents=True)
    for name in ("sub-01_desc-summary_T1w.html", "sub-01_ses-a_run-01_desc-flicker_T1w.svg",
                 "sub-01_ses-a_run-02_desc-flicker_T1w.svg", "sub-01_chunk-2_desc-flicker_T2w.svg",
                 "notbids.svg", ".tmp-ab-sub-01_desc-about_T1w.html"):
        (figures / name).write_text("x")
    index = FigureIndex(figures, root=tmp_path)
    assert len(index.files) == 4
    assert [f.filename for f in index.get(session="a", run="02")] == [
        "sub-01_ses-a_run-02_desc-flicker_T1w.svg"]
    assert [f.filename for f in index.get(session=None, desc="flicker")] == [
        "sub-01_chunk-2_desc-flicker_T2w.svg"]
    assert len(index.get(desc=["flicker", "summary"], extension=".svg")) == 3
    assert len(index.get(run="0[12]", regex_search=True)) == 2
    assert all(f.entities.get("run") in (None, "01", "02") for f in index.files)


def test_only_the_newest_subject_summary_is_shown(output_tree):
    import os

    from bids_enhance.reports.fragments import subject_summary_html

    out, run_uuid = output_tree
    figures = out / "sub-01" / "figures"
    old = figures / "sub-01_desc-summary_T1w.html"
    new = figures / "sub-01_desc-summary_T2w.html"
    new.write_text(subject_summary_html(
        subject="01", source_files=["/d/sub-01/anat/sub-01_T2w.nii.gz"], bids_dir="/d",
        enhance=["denoise"], denoise_method="sanlm", noise_model="rician", device="cpu"))
    os.utime(old, (1_000_000, 1_000_000))
    page = generate_report(out, "01", run_uuid).read_text()
    summary = page[page.index('id="Summary"'):page.index('id="Images"')]
    assert "SANLM" in summary and "PRI-NLM" not in summary
    assert "sub-01_T2w" in page  # expected from the newest summary: no figures → flagged
