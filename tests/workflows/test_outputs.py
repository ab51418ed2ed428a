"""The ``init_ds_*_wf`` output builders: their sinks, and what they write when run."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from nipype.interfaces.base import isdefined

from bids_enhance.workflows.outputs import (
    init_ds_enhanced_wf,
    init_ds_reportlets_wf,
    init_ds_simulated_wf,
)
from bids_enhance.workflows.spec import ChainSpec

SOURCE = "sub-01/ses-a/anat/sub-01_ses-a_run-1_T1w.nii.gz"
RUN = {"command_line": "bids_enhance /d /o participant", "run_id": "20260101-000000_abc"}


def _nodes(wf):
    return {name.rsplit(".", 1)[-1]: wf.get_node(name) for name in wf.list_node_names()}


def test_ds_enhanced_wf_sinks():
    spec = ChainSpec(enhance=["denoise"], random_seed=1, **RUN)
    nodes = _nodes(init_ds_enhanced_wf(source_file=f"/bids/{SOURCE}", output_dir="/out",
                                       spec=spec, preproc_name="sub-01_ses-a_T1w.nii.gz"))
    assert set(nodes) == {"inputnode", "ds_image", "ds_preproc"}
    image, preproc = nodes["ds_image"].inputs, nodes["ds_preproc"].inputs
    assert image.desc == "denoised" and not isdefined(image.res)
    assert image.source_file == f"/bids/{SOURCE}" and image.base_directory == "/out"
    assert preproc.desc == "preproc" and preproc.source_file == "sub-01_ses-a_T1w.nii.gz"
    assert image.meta_dict == preproc.meta_dict == {"CommandLine": RUN["command_line"],
                                                    "RunId": RUN["run_id"]}
    plain = _nodes(init_ds_enhanced_wf(source_file=f"/bids/{SOURCE}", output_dir="/out",
                                       spec=ChainSpec(enhance=["denoise"], random_seed=1)))
    assert set(plain) == {"inputnode", "ds_image"} and plain["ds_image"].inputs.meta_dict == {}


def test_ds_enhanced_wf_writes_the_image_and_its_sidecar(tmp_path):
    spec = ChainSpec(enhance=["denoise"], random_seed=1, **RUN)
    image = tmp_path / "in.nii.gz"
    nib.save(nib.Nifti1Image(np.ones((4, 4, 4), np.float32), np.eye(4)), image)
    sidecar = tmp_path / "sidecar.json"
    sidecar.write_text(json.dumps({"Description": "enhanced"}))
    wf = init_ds_enhanced_wf(source_file=tmp_path / "bids" / SOURCE,
                             output_dir=tmp_path / "out", spec=spec,
                             preproc_name="sub-01_ses-a_T1w.nii.gz")
    wf.base_dir = str(tmp_path / "work")
    wf.inputs.inputnode.enhanced = str(image)
    wf.inputs.inputnode.sidecar = str(sidecar)
    wf.run()
    anat = tmp_path / "out/sub-01/ses-a/anat"
    written = sorted(p.name for p in anat.iterdir())
    assert written == ["sub-01_ses-a_desc-preproc_T1w.json", "sub-01_ses-a_desc-preproc_T1w.nii.gz",
                       "sub-01_ses-a_run-1_desc-denoised_T1w.json",
                       "sub-01_ses-a_run-1_desc-denoised_T1w.nii.gz"]
    meta = json.loads((anat / "sub-01_ses-a_run-1_desc-denoised_T1w.json").read_text())
    assert meta["Description"] == "enhanced" and meta["RunId"] == RUN["run_id"]


def test_ds_enhanced_wf_on_the_x2_grid():
    model = {"step": "superres", "path": "/m.pt", "sha256": "ab" * 32}
    x2 = ChainSpec(enhance=["superres"], random_seed=1, models={"superres": model})
    assert _nodes(init_ds_enhanced_wf(source_file=SOURCE, output_dir="/o", spec=x2))[
        "ds_image"].inputs.res == "x2"
    simulated = ChainSpec(enhance=["superres"], random_seed=1, models={"superres": model},
                          simulate="sr-box-x2")
    sink = _nodes(init_ds_enhanced_wf(source_file=SOURCE, output_dir="/o", spec=simulated))[
        "ds_image"]
    assert sink.inputs.desc == "simSuperres" and not isdefined(sink.inputs.res)


def test_ds_reportlets_and_simulated_wf(tmp_path):
    plain = _nodes(init_ds_reportlets_wf(source_file=SOURCE, output_dir="/o"))
    assert {n: s.inputs.desc for n, s in plain.items() if n != "inputnode"} == {
        "ds_report_flicker": "flicker", "ds_report_residual": "residual",
        "ds_report_iqm_table": "iqms"}
    x2 = _nodes(init_ds_reportlets_wf(source_file=SOURCE, output_dir="/o", x2=True))
    assert x2["ds_report_superres_report"].inputs.desc == "superres"
    assert all(s.inputs.datatype == "figures" for n, s in x2.items() if n != "inputnode")

    spec = ChainSpec(enhance=["denoise"], random_seed=1, simulate="noise-rician-3", **RUN)
    bids = tmp_path / "bids"
    sink = _nodes(init_ds_simulated_wf(source_file=bids / SOURCE, bids_dir=bids,
                                       output_dir="/o", spec=spec))["ds_degraded"]
    assert sink.inputs.desc == "simulated" and sink.inputs.meta_dict["RunId"] == RUN["run_id"]
    assert sink.inputs.meta_dict["SkullStripped"] is False
    with pytest.raises(ValueError, match="simulation mode"):
        init_ds_simulated_wf(source_file=bids / SOURCE, bids_dir=bids, output_dir="/o",
                             spec=ChainSpec(enhance=["denoise"], random_seed=1))
