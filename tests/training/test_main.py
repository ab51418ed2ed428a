"""``python -m bids_enhance.training --spec run.json``: NIfTI and .npz inputs, normalisation,
result.json (the torchrun path itself is exercised by test_ddp.py)."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from training_helpers import head, tiny_config

from bids_enhance.training.__main__ import load_volume, main


def test_main_runs_a_spec(tmp_path):
    img = nib.Nifti1Image(200.0 * head((24, 24, 24), seed=1), np.diag([2.0, 2.0, 2.0, 1.0]))
    nib.save(img, tmp_path / "sub-01_T1w.nii.gz")
    np.savez(tmp_path / "s2.npz", data=150.0 * head((24, 24, 24), seed=2))
    spec = {"config": tiny_config(iterations=2).to_dict(), "out_dir": "out",
            "train": [{"subject": "01", "path": "sub-01_T1w.nii.gz"},
                      {"subject": "02", "path": "s2.npz"}],
            "training_command": ["bids_enhance", "x"]}
    (tmp_path / "run.json").write_text(json.dumps(spec))
    assert main(["--spec", str(tmp_path / "run.json"), "--no-progress"]) == 0
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["iterations"] == 2 and result["task"] == "gan3p"
    assert (tmp_path / "out" / "checkpoint.pt").is_file()


def test_load_volume_normalises_and_checks(tmp_path):
    np.savez(tmp_path / "v.npz", data=300.0 * head((16, 16, 16)), affine=np.eye(4))
    vol = load_volume({"subject": "v", "path": "v.npz"}, base=tmp_path)
    assert vol.data.max() == pytest.approx(1.0, abs=0.05) and vol.subject == "v"
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_volume({"subject": "w", "path": "missing.npz"}, base=tmp_path)
    with pytest.raises(ValueError, match="'subject' and 'path'"):
        load_volume({"path": "v.npz"}, base=tmp_path)
