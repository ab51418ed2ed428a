"""The embedded demo dataset (`python -m bids_enhance.demo`, what `make demo` runs on)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np

from bids_enhance.demo import main


def test_demo_has_a_low_resolution_subject_with_the_exact_x2_geometry(tmp_path):
    assert main([str(tmp_path / "bids"), "--voxel-size", "4"]) == 0
    low = nib.load(tmp_path / "bids/sub-03/anat/sub-03_T1w.nii.gz")
    full = nib.load(tmp_path / "bids/sub-01/anat/sub-01_T1w.nii.gz")
    assert np.allclose(low.header.get_zooms()[:3], 8.0)
    assert low.shape == tuple(n // 2 for n in full.shape)
    # LR voxel 0 is centred between HR voxels 0 and 1 (METHODS.md, "Geometry of x2")
    assert np.allclose(low.affine[:3, 3], full.affine[:3, :3] @ [0.5, 0.5, 0.5] + full.affine[:3, 3])
    sidecar = json.loads((tmp_path / "bids/sub-03/anat/sub-03_T1w.json").read_text())
    assert sidecar["SimulatedLowResolution"]["VoxelSize"] == [8.0, 8.0, 8.0]
    participants = (tmp_path / "bids/participants.tsv").read_text().split()
    assert participants == ["participant_id", "sub-01", "sub-02", "sub-03"]


def test_demo_without_the_low_resolution_subject(tmp_path):
    main([str(tmp_path / "bids"), "--voxel-size", "6", "--no-lowres"])
    assert not (tmp_path / "bids/sub-03").exists()
