import json

import numpy as np
import pytest

from bids_enhance.utils import atomic_path, dump_json, remove_stale_temporaries


def test_atomic_path_renames_only_on_success(tmp_path):
    final = tmp_path / "sub-01_desc-denoised_T1w.nii.gz"
    with atomic_path(final) as tmp:
        assert tmp.name.endswith(final.name) and tmp.name.startswith(".tmp-")
        tmp.write_bytes(b"complete")
    assert final.read_bytes() == b"complete"
    assert [p.name for p in tmp_path.iterdir()] == [final.name]


def test_interrupted_write_leaves_no_file_under_the_final_name(tmp_path):
    final = tmp_path / "out.nii.gz"
    final.write_bytes(b"old")
    with pytest.raises(KeyboardInterrupt), atomic_path(final) as tmp:
        tmp.write_bytes(b"half")
        raise KeyboardInterrupt
    assert final.read_bytes() == b"old"  # the previous complete file is untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.nii.gz"]


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / "sub-01").mkdir()
    stale = tmp_path / "sub-01" / ".tmp-1234abcd-sub-01_T1w.nii.gz"
    stale.write_bytes(b"x")
    assert remove_stale_temporaries(tmp_path) == [stale]
    assert not stale.exists()


def test_dump_json_is_strict():
    text = dump_json({"a": float("nan"), "b": np.float32(1.5), "c": [np.inf, 2],
                      "d": np.arange(2)})
    assert json.loads(text) == {"a": None, "b": 1.5, "c": [None, 2], "d": [0, 1]}
