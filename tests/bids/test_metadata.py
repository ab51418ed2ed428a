"""BIDS metadata with the inheritance principle, and the phase-encoding axis of the motion step."""

from __future__ import annotations

import json
import logging

import pytest

from bids_enhance.bids.metadata import (
    inherited_metadata,
    motion_phase_encoding,
    phase_encoding_axis,
)


def _dataset(tmp_path):
    anat = tmp_path / "sub-01" / "ses-a" / "anat"
    anat.mkdir(parents=True)
    image = anat / "sub-01_ses-a_run-1_T1w.nii.gz"
    image.write_bytes(b"")
    return tmp_path, anat, image


def test_nearer_and_more_specific_sidecars_override(tmp_path):
    root, anat, image = _dataset(tmp_path)
    (root / "T1w.json").write_text(json.dumps({"PhaseEncodingDirection": "j", "A": 1}))
    (root / "sub-01" / "sub-01_T1w.json").write_text(json.dumps({"A": 2, "B": 2}))
    (anat / "sub-01_ses-a_T1w.json").write_text(json.dumps({"B": 3}))
    (anat / "sub-01_ses-a_run-1_T1w.json").write_text(json.dumps({"PhaseEncodingDirection": "i-"}))
    # not applicable: another run, another suffix, another subject
    (anat / "sub-01_ses-a_run-2_T1w.json").write_text(json.dumps({"C": "run-2"}))
    (anat / "sub-01_ses-a_run-1_T2w.json").write_text(json.dumps({"C": "T2w"}))
    (root / "sub-02_T1w.json").write_text(json.dumps({"C": "sub-02"}))
    meta = inherited_metadata(image, root)
    assert meta == {"PhaseEncodingDirection": "i-", "A": 2, "B": 3}
    assert phase_encoding_axis(meta) == 0
    # without the dataset root only the image's own folder counts
    assert inherited_metadata(image, None) == {"PhaseEncodingDirection": "i-", "B": 3}


def test_unreadable_sidecar_is_skipped_with_a_warning_naming_it(tmp_path, caplog):
    root, anat, image = _dataset(tmp_path)
    (root / "T1w.json").write_text(json.dumps({"PhaseEncodingDirection": "k"}))
    (anat / "sub-01_ses-a_run-1_T1w.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        assert inherited_metadata(image, root) == {"PhaseEncodingDirection": "k"}
    assert "sub-01_ses-a_run-1_T1w.json" in caplog.text


@pytest.mark.parametrize("value, axis", [("i", 0), ("j-", 1), ("k", 2), (None, None)])
def test_phase_encoding_axis(value, axis):
    meta = {} if value is None else {"PhaseEncodingDirection": value}
    assert phase_encoding_axis(meta) == axis


@pytest.mark.parametrize("value", ["x", "-j", "j--", 1, "ij"])
def test_phase_encoding_axis_refuses_other_values_naming_the_file(value):
    with pytest.raises(ValueError, match="sub-01_T1w.json: PhaseEncodingDirection"):
        phase_encoding_axis({"PhaseEncodingDirection": value}, where="sub-01_T1w.json")


def test_motion_phase_encoding_sources(tmp_path, caplog):
    root, anat, image = _dataset(tmp_path)
    with caplog.at_level(logging.WARNING):
        axis, source = motion_phase_encoding(image, root)
    assert axis == 2 and source.startswith("assumed")
    assert "sub-01_ses-a_run-1_T1w.nii.gz: no PhaseEncodingDirection" in caplog.text
    (root / "T1w.json").write_text(json.dumps({"PhaseEncodingDirection": "j"}))
    assert motion_phase_encoding(image, root) == (
        1, "PhaseEncodingDirection j in the image's metadata")
    # simulated motion runs along TorchIO's axis whatever the scan's own
    axis, source = motion_phase_encoding(image, root, simulate="motion")
    assert axis == 2 and source.startswith("simulated motion")
    assert motion_phase_encoding(image, root, simulate="sr-box-x2")[0] == 1
