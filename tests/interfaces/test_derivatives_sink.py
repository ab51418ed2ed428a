"""DerivativesDataSink: an image and its sidecar are one unit, and a rerun restores them."""

from __future__ import annotations

import json
import os
import shutil

import nibabel as nib
import numpy as np
import pytest
from nipype.pipeline import engine as pe

from bids_enhance import utils
from bids_enhance.interfaces.bids import DerivativesDataSink

SOURCE = "sub-01/anat/sub-01_T1w.nii.gz"
IMAGE = "sub-01/anat/sub-01_desc-denoised_T1w.nii.gz"
SIDECAR = "sub-01/anat/sub-01_desc-denoised_T1w.json"


@pytest.fixture
def sink(tmp_path):
    """A sink of a tiny image into ``tmp_path / "out"``, and the expected sidecar content."""
    in_file = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.arange(24, dtype=np.float32).reshape(2, 3, 4), np.eye(4)),
             in_file)
    meta = {"Description": "test", "Sources": ["bids:raw:" + SOURCE]}
    interface = DerivativesDataSink(base_directory=str(tmp_path / "out"),
                                    source_file=str(tmp_path / "bids" / SOURCE),
                                    in_file=str(in_file), desc="denoised", meta_dict=meta)
    return interface, {**meta, "SkullStripped": False}


def _listing(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def _assert_pair(out, interface, meta):
    assert json.loads((out / SIDECAR).read_text()) == meta
    assert (out / IMAGE).read_bytes() == open(interface.inputs.in_file, "rb").read()
    assert _listing(out) == sorted([IMAGE, SIDECAR])  # no temporaries


def test_sink_writes_image_and_sidecar(sink, tmp_path):
    interface, meta = sink
    result = interface.run()
    assert result.outputs.out_file == str(tmp_path / "out" / IMAGE)
    assert result.outputs.out_meta == str(tmp_path / "out" / SIDECAR)
    _assert_pair(tmp_path / "out", interface, meta)


def test_failure_after_the_sidecar_temporary_leaves_nothing(sink, tmp_path, monkeypatch):
    interface, _ = sink
    out = tmp_path / "out"
    written = []

    def broken_copy(src, dst, **kwargs):
        written.extend(p.name for p in dst.parent.iterdir())  # the sidecar's temporary
        raise OSError("disk full")

    monkeypatch.setattr(shutil, "copyfile", broken_copy)
    with pytest.raises(OSError, match="disk full"):
        interface.run()
    assert len(written) == 1 and written[0].startswith(".tmp-")
    assert written[0].endswith("sub-01_desc-denoised_T1w.json")
    assert _listing(out) == []


def _kill_after_first_rename(monkeypatch) -> list[str]:
    """Make the second ``os.replace`` of the sink raise KeyboardInterrupt (a kill between the
    renames); returns the list of destinations it was called with."""
    real_replace, calls = os.replace, []

    def killed_after_first_rename(src, dst):
        calls.append(os.fspath(dst))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real_replace(src, dst)

    monkeypatch.setattr(utils.os, "replace", killed_after_first_rename)
    return calls


def test_a_kill_between_the_renames_leaves_no_image_and_a_rerun_repairs(sink, tmp_path,
                                                                        monkeypatch):
    interface, meta = sink
    out = tmp_path / "out"
    calls = _kill_after_first_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        interface.run()
    assert calls == [str(out / SIDECAR), str(out / IMAGE)]  # the image is renamed last
    assert _listing(out) == [SIDECAR]  # a sidecar without its image, no temporary
    monkeypatch.undo()
    interface.run()
    _assert_pair(out, interface, meta)


def test_a_changed_rerun_killed_between_renames_leaves_no_mismatched_pair(sink, tmp_path,
                                                                          monkeypatch):
    interface, meta = sink
    out = tmp_path / "out"
    interface.run()
    interface.inputs.meta_dict = {**meta, "Description": "changed"}
    _kill_after_first_rename(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        interface.run()
    # The old image went before the new sidecar came: it never sits beside the wrong sidecar.
    assert _listing(out) == [SIDECAR]
    assert json.loads((out / SIDECAR).read_text())["Description"] == "changed"


@pytest.mark.parametrize("lost", [IMAGE, SIDECAR])
def test_a_cached_sink_node_reruns_and_restores_a_deleted_output(sink, tmp_path, lost,
                                                                 monkeypatch):
    interface, meta = sink
    out = tmp_path / "out"

    def run_node():
        pe.Node(interface, name="ds_image", base_dir=str(tmp_path / "work")).run()

    run_node()
    (out / lost).unlink()
    with monkeypatch.context() as patch:  # what nipype does with a sink that is cached
        patch.setattr(DerivativesDataSink, "_always_run", False)
        run_node()
        assert not (out / lost).exists()
    run_node()
    _assert_pair(out, interface, meta)


def test_figures_are_written_atomically(tmp_path):
    svg = tmp_path / "in.svg"
    svg.write_text("<svg/>")
    result = DerivativesDataSink(base_directory=str(tmp_path / "out"),
                                 source_file=str(tmp_path / SOURCE), in_file=str(svg),
                                 desc="residual", datatype="figures").run()
    assert result.outputs.out_file.endswith("sub-01/figures/sub-01_desc-residual_T1w.svg")
    assert _listing(tmp_path / "out") == ["sub-01/figures/sub-01_desc-residual_T1w.svg"]
