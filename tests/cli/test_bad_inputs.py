"""Faulty inputs through the whole CLI: the reason reaches the log, sidecar and exit code."""

from __future__ import annotations

import gzip
import json

import nibabel as nib
import numpy as np
import pytest

from bids_enhance.cli.run import main
from tests.conftest import phantom, write_bids

pytestmark = pytest.mark.slow


def _huge_header_nifti_gz(dims=(30000, 30000, 30000)) -> bytes:
    """A .nii.gz whose header claims ``dims`` (tens of thousands of GiB) over 1000 voxels."""
    header = nib.Nifti1Image(np.ones((8, 8, 8), np.int16), np.eye(4)).header.copy()
    header.set_data_shape(dims)
    header.set_data_offset(352)
    return gzip.compress(header.binaryblock.ljust(352, b"\0") + np.ones(1000, np.int16).tobytes())


def test_implausible_header_fails_with_its_reason_and_negatives_are_recorded(tmp_path, capsys):
    negative = phantom(noise=4.0, seed=2)
    negative[0, 0, :4] = [-3.0, -12.5, -0.5, -1.0]
    bids = write_bids(tmp_path / "bids", {
        "sub-01/anat/sub-01_T1w.nii.gz": _huge_header_nifti_gz(),
        "sub-02/anat/sub-02_T1w.nii.gz": negative,
    })
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"),
                 "--nprocs", "1", "--sloppy", "--skip-bids-validation"])
    assert code == 1
    err = capsys.readouterr().err
    reason = ("sub-01_T1w.nii.gz: implausible image header: dimensions 30000×30000×30000 "
              "(27,000,000,000,000 voxels, 50,291 GiB of int16 data)")
    assert reason in err
    assert "unknown error" not in err
    assert reason in (out / "sub-01.html").read_text()
    assert not list(out.glob("sub-01/anat/*"))

    sidecar = json.loads((out / "sub-02/anat/sub-02_desc-denoised_T1w.json").read_text())
    fixes = sidecar["InputSanitising"]["Fixes"]
    assert [f for f in fixes if f.startswith("clipped 4 negative voxel(s) to 0 (minimum -12.5;")]


def test_unusable_phase_encoding_direction_is_a_one_line_error_naming_its_sidecar(
        tmp_path, capsys, monkeypatch):
    """--enhance motion reads PhaseEncodingDirection; a value that is no voxel axis stops the
    run before anything is written, with the JSON file that holds it."""
    from bids_enhance.inference.weights import MODELS_DIR_ENV
    from tests.generative_helpers import save_tiny_generator

    monkeypatch.setenv(MODELS_DIR_ENV, str(tmp_path / "no_models"))
    (tmp_path / "no_models").mkdir()
    motion = tmp_path / "motion.pt"
    save_tiny_generator(motion, task="motion-gan")
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom(seed=1)})
    (bids / "T1w.json").write_text(json.dumps({"PhaseEncodingDirection": "y"}))
    out = tmp_path / "out"
    code = main([str(bids), str(out), "participant", "-w", str(tmp_path / "work"),
                 "--nprocs", "1", "--skip-bids-validation", "--enhance", "motion",
                 "--checkpoint", f"motion={motion}"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (f"bids_enhance: error: {bids / 'T1w.json'} (metadata of "
                       "sub-01_T1w.nii.gz): PhaseEncodingDirection must be one of i, j, k, i-, "
                       "j-, k-, got 'y'")
    assert not list(out.glob("sub-01/anat/*"))
