"""Group level: TSV and HTML across the image sidecars of an output tree."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from reports_helpers import assert_balanced_html, external_assets, make_sidecar

from bids_enhance.reports.group import collect_rows, group_columns, run_group


def _write(path: Path, meta: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta))


@pytest.fixture
def derivatives(tmp_path) -> Path:
    out = tmp_path / "out"
    _write(out / "sub-01/anat/sub-01_desc-denoised_T1w.json", make_sidecar())
    _write(out / "sub-02/ses-1/anat/sub-02_ses-1_run-1_desc-denoised_T1w.json",
           make_sidecar(sigma=None, snr=(12.0, 11.0)))
    meta = make_sidecar(cjv=(0.5, 0.3))
    del meta["QualityMetrics"]
    _write(out / "sub-02/ses-2/anat/sub-02_ses-2_echo-2_desc-denoised_T1w.json", meta)
    # not image sidecars: other suffix, figures, logs, the dataset description
    _write(out / "sub-01/anat/sub-01_desc-denoised_T2w.json", make_sidecar())
    _write(out / "sub-01/figures/sub-01_desc-iqms_T1w.json", {"x": 1})
    _write(out / "sub-01/log/run/sub-01_desc-crash_T1w.json", {"x": 1})
    _write(out / "dataset_description.json", {"Name": "x"})
    return out


def test_group_tsv_has_one_row_per_sidecar_and_expected_columns(derivatives):
    paths = run_group(derivatives, ["T1w"])
    assert [p.name for p in paths] == ["group_T1w.tsv", "group_T1w.html"]
    with open(paths[0], newline="") as fobj:
        reader = csv.DictReader(fobj, delimiter="\t")
        rows = list(reader)
        columns = reader.fieldnames
    assert len(rows) == 3
    assert columns[:3] == ["bids_name", "subject", "session"]
    for column in ("run", "echo", "desc", "method", "noise_model", "sigma", "sigma_percent",
                   "snr_total_before", "snr_total_after", "cjv_before", "cjv_after",
                   "efc_before", "fber_after", "n_wm_before"):
        assert column in columns, column
    assert columns.index("snr_total_before") < columns.index("n_wm_before")
    by_name = {r["bids_name"]: r for r in rows}
    first = by_name["sub-01_desc-denoised_T1w"]
    assert first["subject"] == "01" and first["session"] == "n/a" and first["run"] == "n/a"
    assert first["method"] == "prinlm" and first["noise_model"] == "rician"
    assert float(first["sigma"]) == 4.5 and float(first["sigma_percent"]) == pytest.approx(4.5)
    assert float(first["snr_total_before"]) == 8.0 and first["fber_after"] == "n/a"
    second = by_name["sub-02_ses-1_run-1_desc-denoised_T1w"]
    assert second["session"] == "1" and second["run"] == "1" and second["sigma"] == "n/a"
    third = by_name["sub-02_ses-2_echo-2_desc-denoised_T1w"]
    assert third["echo"] == "2" and third["snr_total_before"] == "n/a"
    assert all(v != "" for r in rows for v in r.values())  # BIDS: n/a, never empty


def test_group_html_is_self_contained(derivatives):
    crash_dir = derivatives / "sub-03" / "log" / "20251127-100000_abc"
    crash_dir.mkdir(parents=True)
    (crash_dir / "crash-1.txt").write_text("Traceback\nValueError: x\n")
    run_group(derivatives, ["T1w", "T2w"])
    page = (derivatives / "group_T1w.html").read_text()
    assert_balanced_html(page)
    assert page.count("<svg") >= 4  # noise plot + paired plots, inline
    assert "<script" not in page.lower() and not external_assets(page)
    assert "3 T1w images of 2 participants" in page
    assert 'href="sub-02.html"' in page and "group_T1w.tsv" in page
    assert 'href="sub-03.html#Errors"' in page  # participants whose last run crashed
    assert (derivatives / "group_T2w.tsv").is_file()
    assert not list(derivatives.glob(".tmp-*"))


def test_group_without_outputs_raises(tmp_path):
    (tmp_path / "sub-01" / "figures").mkdir(parents=True)
    with pytest.raises(ValueError, match=str(tmp_path)) as info:
        run_group(tmp_path, ["T1w"])
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="participant level"):
        run_group(tmp_path / "missing", ["T1w", "T2w"])


def test_columns_for_unknown_entities(tmp_path):
    _write(tmp_path / "sub-01/anat/sub-01_foo-bar_desc-denoised_T1w.json", make_sidecar())
    rows = collect_rows(tmp_path, "T1w")
    columns = group_columns(rows)
    assert "foo" in columns and columns.index("foo") < columns.index("method")
    assert "report" not in columns
