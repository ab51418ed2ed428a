"""Dataset-level files under concurrent runs: no lost row, no corrupt file, no live temporary
removed."""

from __future__ import annotations

import csv
import json
import multiprocessing

import pytest

from bids_enhance.bids.dataset import (
    BIDSIGNORE,
    DESCRIPTIONS_SIDECAR,
    LOCK_NAME,
    README_MARKER,
    write_bidsignore,
    write_dataset_description,
    write_descriptions,
    write_readme,
)
from bids_enhance.utils import remove_stale_temporaries

N_WRITERS, N_ITERATIONS = 6, 20


def _writer(out, bids, index: int, errors) -> None:
    try:
        for iteration in range(N_ITERATIONS):
            label = f"w{index}i{iteration}"
            write_descriptions(out, {label: f"row {label}, with a tab-free sentence."})
            write_dataset_description(out, bids)
            write_bidsignore(out)
    except BaseException as exc:  # reported to the test, which fails on it
        errors.put(f"writer {index}: {exc!r}")


def _cleaner(out, stop, errors) -> None:
    # What every starting run does: its temporaries must not be those of the running writers.
    try:
        while not stop.is_set():
            removed = remove_stale_temporaries(out)
            if removed:
                errors.put(f"cleaner removed live temporaries {removed}")
    except BaseException as exc:
        errors.put(f"cleaner: {exc!r}")


@pytest.fixture
def dataset(tmp_path):
    bids = tmp_path / "bids"
    bids.mkdir()
    (bids / "dataset_description.json").write_text(
        json.dumps({"Name": "raw", "BIDSVersion": "1.10.0", "License": "CC0"}))
    out = tmp_path / "out"
    out.mkdir()
    # What a user (or an earlier version) put there is kept.
    (out / "dataset_description.json").write_text(json.dumps({"Custom": 1}))
    (out / ".bidsignore").write_text("custom/\n")
    return bids, out


def test_concurrent_writers_lose_nothing(dataset):
    bids, out = dataset
    ctx = multiprocessing.get_context("fork")  # the writers need nothing re-imported
    errors, stop = ctx.Queue(), ctx.Event()
    cleaner = ctx.Process(target=_cleaner, args=(out, stop, errors))
    writers = [ctx.Process(target=_writer, args=(out, bids, i, errors))
               for i in range(N_WRITERS)]
    cleaner.start()
    for proc in writers:
        proc.start()
    for proc in writers:
        proc.join(timeout=120)
    stop.set()
    cleaner.join(timeout=30)
    messages = []
    while not errors.empty():
        messages.append(errors.get())
    assert messages == []
    assert [p.exitcode for p in [*writers, cleaner]] == [0] * (N_WRITERS + 1)

    with open(out / "descriptions.tsv", newline="") as fobj:
        rows = list(csv.DictReader(fobj, delimiter="\t"))
    expected = {f"desc-w{i}i{j}" for i in range(N_WRITERS) for j in range(N_ITERATIONS)}
    assert sorted(r["desc_id"] for r in rows) == sorted(expected)
    desc = json.loads((out / "dataset_description.json").read_text())
    assert desc["Custom"] == 1 and desc["DatasetType"] == "derivative"
    assert desc["License"] == "CC0"
    lines = (out / ".bidsignore").read_text().splitlines()
    assert lines == ["custom/", *BIDSIGNORE]
    assert not list(out.rglob(".tmp-*"))
    # The lock file stays, hidden (the BIDS validator ignores dot-files).
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [".bidsignore", LOCK_NAME, "README.md", "dataset_description.json", "descriptions.json",
         "descriptions.tsv"])


def test_descriptions_merge_rows(tmp_path):
    write_descriptions(tmp_path, ["denoised"])
    write_descriptions(tmp_path, {"chain": "A chain."})
    text = (tmp_path / "descriptions.tsv").read_text().splitlines()
    assert text[0] == "desc_id\tdescription"
    assert [line.split("\t")[0] for line in text[1:]] == ["desc-chain", "desc-denoised"]


def test_descriptions_have_a_sidecar_describing_the_columns(tmp_path):
    write_descriptions(tmp_path, ["denoised"])
    sidecar = json.loads((tmp_path / "descriptions.json").read_text())
    assert sidecar == DESCRIPTIONS_SIDECAR
    header = (tmp_path / "descriptions.tsv").read_text().splitlines()[0].split("\t")
    assert sidecar["Description"] and all(sidecar[c]["Description"] for c in header)


def _source(tmp_path, **fields):
    bids = tmp_path / "bids"
    bids.mkdir(exist_ok=True)
    (bids / "dataset_description.json").write_text(json.dumps(
        {"Name": "raw", "BIDSVersion": "1.8.0", **fields}))
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return bids, out


def _description(out):
    return json.loads((out / "dataset_description.json").read_text())


def test_source_version_is_the_dataset_version_never_the_bids_version(tmp_path):
    bids, out = _source(tmp_path, DatasetVersion="2.0.1", DatasetDOI="doi:10.1/x")
    write_dataset_description(out, bids)
    assert _description(out)["SourceDatasets"] == [{"DOI": "doi:10.1/x", "Version": "2.0.1"}]
    bids, out = _source(tmp_path)  # no DatasetVersion: no Version
    write_dataset_description(out, bids)
    assert _description(out)["SourceDatasets"] == [{"URL": bids.absolute().as_uri()}]


def test_authors_come_from_the_source_and_a_users_edit_is_kept(tmp_path):
    bids, out = _source(tmp_path, Authors=["A. Author", "B. Author"])
    write_dataset_description(out, bids)
    assert _description(out)["Authors"] == ["A. Author", "B. Author"]
    desc = _description(out)
    desc["Authors"] = ["C. Processor"]
    (out / "dataset_description.json").write_text(json.dumps(desc))
    write_dataset_description(out, bids)
    assert _description(out)["Authors"] == ["C. Processor"]


def test_no_authors_are_invented(tmp_path):
    bids, out = _source(tmp_path)
    write_dataset_description(out, bids)
    assert "Authors" not in _description(out)


def test_readme_says_what_the_dataset_is_and_where_to_look(tmp_path):
    bids, out = _source(tmp_path)
    write_dataset_description(out, bids)  # writes the README too
    text = (out / "README.md").read_text()
    assert text.splitlines()[0] == README_MARKER
    for where in ("logs/CITATION.md", "sub-<label>.html", "descriptions.tsv", "RunId"):
        assert where in text, where
    assert not list(out.glob(".tmp-*"))


@pytest.mark.parametrize("name", ["README", "README.md", "README.txt"])
def test_a_users_readme_is_kept_and_not_doubled(tmp_path, name):
    (tmp_path / name).write_text("My own notes.\n")
    assert write_readme(tmp_path) is None
    assert (tmp_path / name).read_text() == "My own notes.\n"
    assert sorted(p.name for p in tmp_path.glob("README*")) == [name]


def test_our_readme_is_refreshed_and_stays_single(tmp_path):
    (tmp_path / "README").write_text(README_MARKER + "\nan older text\n")
    assert write_readme(tmp_path) == tmp_path / "README.md"
    assert sorted(p.name for p in tmp_path.glob("README*")) == ["README.md"]
    assert "an older text" not in (tmp_path / "README.md").read_text()
