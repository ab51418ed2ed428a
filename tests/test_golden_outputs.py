"""What a user gets stays the same: the participant outputs of a small demo (images, sidecars,
reports, dataset files) against the golden record committed in
``tests/data/golden_participant.json`` (made by :mod:`tests.golden`, which says what the
record holds, what it leaves out and with which tolerances it compares).

The scenarios (about a minute on 2 cores): the demo dataset at 4 mm with the default chain
(ODCT3D) on two images, ``--enhance superres`` with the shipped weights on the 8 mm subject
(``--fmriprep-compat``), the group level, and ``--simulate noise-rician-3``.

A failure lists every difference (``<scenario>/<file>: <where> <new> != <golden> (golden)``)
and where the new record was written. A change that is meant (better output, a new sidecar
key, a reworded report) is accepted by regenerating the record FROM COMMITTED CODE and
committing it with the change that caused it::

    git worktree add /tmp/golden_src HEAD
    cd /tmp/golden_src && PYTHONPATH=/tmp/golden_src /path/to/repo/.venv/bin/python \\
        -m tests.golden --update --output /path/to/repo/tests/data/golden_participant.json
    cd - && git worktree remove --force /tmp/golden_src

(in a clean checkout simply ``python -m tests.golden --update``; it refuses to write while
``bids_enhance/`` has uncommitted changes).
"""

from __future__ import annotations

import copy
import json

import pytest

from tests.golden import (
    GOLDEN_PATH,
    build_record,
    compare,
    compare_file,
    load_golden,
    record_file,
    record_html,
    run_scenarios,
)


@pytest.fixture(scope="module")
def golden():
    assert GOLDEN_PATH.exists(), f"{GOLDEN_PATH} is missing: python -m tests.golden --update"
    return load_golden()


@pytest.fixture(scope="module")
def actual(tmp_path_factory):
    root = tmp_path_factory.mktemp("golden")
    record = build_record(run_scenarios(root / "run"))
    path = root / "golden_participant.actual.json"
    path.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return {"record": record, "path": path}


@pytest.mark.slow
@pytest.mark.parametrize("scenario", ["demo", "simulate"])
def test_participant_outputs_match_the_golden_record(scenario, golden, actual):
    diffs = compare(golden, actual["record"], scenarios=[scenario])
    source = golden.get("generated_from", {})
    assert not diffs, (
        f"{len(diffs)} difference(s) from the golden record (commit "
        f"{str(source.get('commit'))[:12]}); the new record is {actual['path']}; regenerate "
        "it only for a meant change (tests/golden.py):\n" + "\n".join(diffs))


# -- the comparison itself (no runs) ---------------------------------------------------------

def _tiny_record():
    return {"format": 1, "scenarios": {"demo": {"exit_codes": [0], "files": {
        "sub-01/anat/sub-01_desc-denoised_T1w.json": {"kind": "json", "content": {
            "EnhancementSteps": [{"NoiseSigma": 0.031, "Method": "odct3d"}],
            "Description": "Denoised; σ 3.1 % of the robust maximum",
            "SkullStripped": False, "Shape": [49, 58, 47]}},
        "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz": {
            "kind": "nifti", "shape": [4, 4, 4], "dtype": "float32", "zooms": [1.0, 1.0, 1.0],
            "xyzt_units": ["mm", "sec"], "scaled": False, "descrip": "", "sform_code": 1,
            "qform_code": 1, "sform": [[1.0, 0, 0, 0]], "qform": [[1.0, 0, 0, 0]],
            "nonfinite": 0, "stats": {"mean": 500.0, "p50": 0.0}, "zero_fraction": 0.5,
            "centre_of_mass_voxels": [1.5, 1.5, 1.5], "block_means": [100.0, 0.0],
            "scale": 1000.0},
        "sub-01.html": record_html(
            "<html><head><title>sub-01</title></head><body><h1>Summary</h1>"
            "<p>PSNR 31.42 dB, <b>3</b> images</p><object data='./sub-01/figures/f.svg'>"
            "</object><svg><text>skipped</text></svg><table><tr><th>Run time</th>"
            "<td>3.9 s</td></tr></table></body></html>", []),
    }}}}


def test_identical_records_compare_equal():
    assert compare(_tiny_record(), _tiny_record()) == []


def test_html_record_keeps_text_and_links_but_not_figures_or_run_times():
    html = _tiny_record()["scenarios"]["demo"]["files"]["sub-01.html"]
    assert html["title"] == "sub-01" and html["headings"] == ["h1: Summary"]
    assert html["links"] == ["./sub-01/figures/f.svg"] and html["embedded"] == ["svg"]
    assert "PSNR 31.42 dB, 3 images" in html["text"] and "skipped" not in html["text"]
    assert html["text"][-2:] == ["Run time", "<seconds>"]


def test_differences_are_listed_with_their_path_and_tolerances_apply():
    golden, new = _tiny_record(), _tiny_record()
    files = new["scenarios"]["demo"]["files"]
    sidecar = files["sub-01/anat/sub-01_desc-denoised_T1w.json"]["content"]
    sidecar["EnhancementSteps"][0]["NoiseSigma"] = 0.029         # beyond 1e-3 relative
    sidecar["Description"] = "Denoised; σ 3.2 % of the robust maximum"  # one printed unit
    sidecar["Shape"] = [49, 58, 48]
    sidecar["NewKey"] = 1
    image = files["sub-01/anat/sub-01_desc-denoised_T1w.nii.gz"]
    image["stats"]["mean"] = 500.2                               # within 1e-3 relative
    image["block_means"] = [0.0, 100.0]                          # a flip
    html = files["sub-01.html"]
    html["text"][html["text"].index("PSNR 31.42 dB, 3 images")] = "PSNR 31.52 dB, 3 images"
    files["sub-01/figures/new.svg"] = {"kind": "svg"}
    del files["sub-01.html"]
    files["sub-01.html"] = html
    diffs = compare(golden, new)
    where = "demo/sub-01/anat/sub-01_desc-denoised_T1w"
    assert f"{where}.json: EnhancementSteps[0].NoiseSigma 0.029 != 0.031 (golden)" in diffs
    assert f"{where}.json: Shape[2] 48 != 47 (golden)" in diffs
    assert f"{where}.json: NewKey new (1)" in diffs
    assert f"{where}.nii.gz: block_means[0] 0.0 != 100.0 (golden)" in diffs
    assert any(d.startswith("demo/sub-01.html: text") and "31.52" in d for d in diffs)
    assert "demo/sub-01/figures/new.svg: new file (not in the golden record)" in diffs
    assert not any("Description" in d or "stats" in d for d in diffs), diffs
    assert len(diffs) == 7, diffs


def test_missing_files_and_exit_codes_are_reported():
    golden, new = _tiny_record(), copy.deepcopy(_tiny_record())
    del new["scenarios"]["demo"]["files"]["sub-01.html"]
    new["scenarios"]["demo"]["exit_codes"] = [1]
    assert compare(golden, new) == [
        "demo: exit codes [1] != [0] (golden)",
        "demo/sub-01.html: missing (in the golden record)"]


def test_tsv_cells_are_compared_by_row_and_column(tmp_path):
    path = tmp_path / "group_T1w.tsv"
    path.write_text("bids_name\tsnr\tmethod\nsub-01_T1w\t12.3456789\todct3d\n")
    golden = record_file(path, [])
    path.write_text("bids_name\tsnr\tmethod\nsub-01_T1w\t12.3457\tprinlm\n")
    new = record_file(path, [])
    assert golden["kind"] == "tsv" and golden["columns"] == ["bids_name", "snr", "method"]
    assert compare_file("g.tsv", golden, new) == [
        'g.tsv: row sub-01_T1w column method: "prinlm" != "odct3d" (golden)']
