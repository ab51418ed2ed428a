import pytest

from bids_enhance.bids.layout import BIDSInputError, collect_images, make_layout
from tests.conftest import phantom, write_bids


def _names(result):
    return {sub: [p.name for p in paths] for sub, paths in result.items()}


def test_collects_all_subjects_sessions_and_runs(tiny_bids):
    result = collect_images(make_layout(tiny_bids))
    assert _names(result) == {
        "01": ["sub-01_T1w.nii.gz"],
        "02": ["sub-02_ses-a_run-1_T1w.nii.gz", "sub-02_ses-a_run-2_T1w.nii.gz",
               "sub-02_ses-b_T1w.nii.gz"],
    }


def test_labels_sessions_suffixes_and_filters(tiny_bids):
    layout = make_layout(tiny_bids)
    assert _names(collect_images(layout, participant_label=["02"], session_label=["b"],
                                 suffixes=["T1w", "T2w"])) == {
        "02": ["sub-02_ses-b_T1w.nii.gz", "sub-02_ses-b_T2w.nii.gz"]}
    # null = entity absent
    assert _names(collect_images(layout, participant_label=["02"],
                                 filters={"t1w": {"run": None}})) == {
        "02": ["sub-02_ses-b_T1w.nii.gz"]}
    assert _names(collect_images(layout, participant_label=["02"],
                                 filters={"t1w": {"run": "*"}}))["02"][0].startswith(
        "sub-02_ses-a_run-1")


def test_unknown_participant_and_empty_selection_are_errors(tiny_bids):
    layout = make_layout(tiny_bids)
    with pytest.raises(BIDSInputError, match="participant\\(s\\) 03 not found"):
        collect_images(layout, participant_label=["03"])
    with pytest.raises(BIDSInputError, match="no FLAIR image found for participant 01"):
        collect_images(layout, participant_label=["01"], suffixes=["FLAIR"])


def test_a_participant_without_the_suffix_is_skipped_unless_asked_for(tiny_bids, caplog):
    """ds000117's sub-emptyroom has no T1w: skipped with a warning, as fMRIPrep does."""
    (tiny_bids / "sub-emptyroom" / "meg").mkdir(parents=True)
    (tiny_bids / "sub-emptyroom" / "meg" / "sub-emptyroom_scans.tsv").write_text("filename\n")
    layout = make_layout(tiny_bids)
    with caplog.at_level("WARNING"):
        found = collect_images(layout)
    assert set(found) == {"01", "02"}
    assert "Skipping participant(s) without a T1w image" in caplog.text
    assert "emptyroom" in caplog.text
    with pytest.raises(BIDSInputError, match="no T1w image found for participant emptyroom"):
        collect_images(layout, participant_label=["emptyroom", "01"])
    with pytest.raises(BIDSInputError, match="no FLAIR image found in .*3 participant"):
        collect_images(layout, suffixes=["FLAIR"])


def test_phase_images_are_skipped_unless_asked_for(tmp_path):
    root = write_bids(tmp_path / "bids", {
        "sub-01/anat/sub-01_part-mag_T1w.nii.gz": phantom(),
        "sub-01/anat/sub-01_part-phase_T1w.nii.gz": phantom(),
    })
    layout = make_layout(root)
    assert _names(collect_images(layout)) == {"01": ["sub-01_part-mag_T1w.nii.gz"]}
    assert _names(collect_images(layout, filters={"t1w": {"part": "phase"}})) == {
        "01": ["sub-01_part-phase_T1w.nii.gz"]}


def test_same_name_with_two_extensions_is_refused(tmp_path):
    root = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom(),
                                          "sub-01/anat/sub-01_T1w.nii": phantom()})
    with pytest.raises(BIDSInputError, match="two extensions"):
        collect_images(make_layout(root))


def test_database_dir_is_reused(tiny_bids, tmp_path):
    db = tmp_path / "db"
    first = collect_images(make_layout(tiny_bids, database_dir=db))
    assert any(db.iterdir())
    # A new file is not seen through the existing index: the index is shared read-only.
    write_bids(tiny_bids, {"sub-03/anat/sub-03_T1w.nii.gz": phantom()})
    assert collect_images(make_layout(tiny_bids, database_dir=db)) == first
