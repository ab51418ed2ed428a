import pytest

from bids_enhance.bids.naming import (
    BIDSNameError,
    bids_uri,
    derivative_name,
    derivative_path,
    figure_path,
    image_id,
    parse_bids_name,
)


@pytest.mark.parametrize(("source", "kwargs", "expected"), [
    ("sub-01_T1w.nii.gz", {"desc": "denoised"}, "sub-01_desc-denoised_T1w.nii.gz"),
    ("sub-01_ses-a_acq-mp2rage_run-2_T1w.nii", {"desc": "denoised"},
     "sub-01_ses-a_acq-mp2rage_run-2_desc-denoised_T1w.nii.gz"),
    ("sub-01_echo-2_part-mag_T1w.nii.gz", {"desc": "denoised"},
     "sub-01_echo-2_part-mag_desc-denoised_T1w.nii.gz"),
    ("sub-01_inv-1_run-1_T1w.nii.gz", {"desc": "x", "res": "05mm"},
     "sub-01_run-1_inv-1_res-05mm_desc-x_T1w.nii.gz"),
    ("sub-01_ce-gad_rec-norm_FLAIR.nii.gz", {"desc": "denoised", "extension": ".json"},
     "sub-01_ce-gad_rec-norm_desc-denoised_FLAIR.json"),
])
def test_derivative_names_keep_every_entity_in_schema_order(source, kwargs, expected):
    assert derivative_name(source, **kwargs) == expected


def test_echoes_and_parts_never_collide():
    sources = [f"sub-01_echo-{e}_part-{p}_T1w.nii.gz" for e in (1, 2) for p in ("mag", "phase")]
    names = {derivative_name(s, desc="denoised") for s in sources}
    assert len(names) == len(sources)


@pytest.mark.parametrize("label", ["de-noised", "de_noised", "", "dénoised"])
def test_invalid_desc_labels_are_refused(label):
    with pytest.raises(BIDSNameError, match="letters and digits"):
        derivative_name("sub-01_T1w.nii.gz", desc=label)


@pytest.mark.parametrize("name", ["T1w.nii.gz", "sub-01.nii.gz", "sub-01_run_T1w.nii.gz",
                                  "sub-01_run-1_run-2_T1w.nii.gz"])
def test_non_bids_names_are_refused(name):
    with pytest.raises(BIDSNameError):
        parse_bids_name(name)


def test_paths_follow_subject_session_layout(tmp_path):
    src = tmp_path / "raw" / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_T1w.nii.gz"
    assert derivative_path(tmp_path / "out", src, desc="denoised") == (
        tmp_path / "out" / "sub-01" / "ses-2" / "anat" / "sub-01_ses-2_desc-denoised_T1w.nii.gz")
    assert figure_path(tmp_path / "out", src, desc="flicker") == (
        tmp_path / "out" / "sub-01" / "figures" / "sub-01_ses-2_desc-flicker_T1w.svg")


def test_bids_uri_and_image_id(tmp_path):
    src = tmp_path / "sub-01" / "anat" / "sub-01_run-1_T1w.nii.gz"
    assert bids_uri(src, tmp_path) == "bids:raw:sub-01/anat/sub-01_run-1_T1w.nii.gz"
    assert image_id(src) == "run_1_T1w"


def test_suffix_of_any_name():
    from bids_enhance.bids.naming import suffix_of

    assert suffix_of("/d/sub-01/anat/sub-01_ses-a_run-1_PDw.nii.gz") == "PDw"
    assert suffix_of("sub-01_T1w.nii") == "T1w"
    assert suffix_of("odd.name.nii.gz") == "odd.name"  # not BIDS: no error, the name itself


def test_names_above_the_subject_level_parse_only_when_asked():
    """Inherited sidecars (``T1w.json``, ``acq-mprage_T1w.json``) have no ``sub-`` entity."""
    assert parse_bids_name("acq-mprage_T1w.json", require_subject=False) == (
        {"acq": "mprage"}, "T1w", ".json")
    assert parse_bids_name("T1w.json", require_subject=False) == ({}, "T1w", ".json")
    with pytest.raises(BIDSNameError):
        parse_bids_name("T1w.json")
    with pytest.raises(BIDSNameError):
        parse_bids_name("dataset_description.json", require_subject=False)
