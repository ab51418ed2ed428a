"""``--denoise-method odct3d``: PRI-NLM's fast first stage as a method of its own (issue 12)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bids_enhance.cli.run import main
from tests.conftest import phantom, write_bids


@pytest.mark.slow
def test_odct3d_runs_with_the_sidecar_report_and_methods_of_a_classical_method(tmp_path):
    bids = write_bids(tmp_path / "bids", {"sub-01/anat/sub-01_T1w.nii.gz": phantom(noise=4.0)})
    out = tmp_path / "out"
    assert main([str(bids), str(out), "participant", "-w", str(tmp_path / "w"), "--nprocs",
                 "1", "--skip-bids-validation", "--denoise-method", "odct3d"]) == 0
    meta = json.loads((out / "sub-01/anat/sub-01_desc-denoised_T1w.json").read_text())
    step = meta["EnhancementSteps"][0]
    assert step["Method"] == "odct3d" and step["NoiseModel"] == "rician"
    assert step["NoiseSigma"] > 0 and step["References"][0]["Key"] == "manjon2012"
    report = (out / "sub-01.html").read_text()
    assert "ODCT3D: oracle-based 3D discrete cosine transform filter" in report
    assert "PRI-NLM: prefiltered" not in report  # the method that did not run
    methods = (out / "logs" / "CITATION.md").read_text()
    assert "discrete cosine transform filter (ODCT3D) [@manjon2012] alone" in methods


def test_an_explicit_method_on_pd_images_is_warned_about_once(caplog):
    import logging
    from types import SimpleNamespace

    from bids_enhance.cli.run import _warn_about_method_for_contrast

    subjects = {"01": [Path("/d/sub-01/anat/sub-01_PDw.nii.gz"),
                       Path("/d/sub-01/anat/sub-01_T1w.nii.gz")],
                "02": [Path("/d/sub-02/anat/sub-02_PDw.nii.gz")]}

    def warnings(method, enhance=("denoise",)):
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="bids_enhance"):
            _warn_about_method_for_contrast(
                SimpleNamespace(denoise_method=method, enhance=list(enhance)), subjects)
        return caplog.messages

    (line,) = warnings("odct3d")
    assert "--denoise-method odct3d on PDw images" in line and "PRI-NLM" in line
    assert "--denoise-method auto" in line
    assert warnings("auto") == [] and warnings("prinlm") == []
    # the learned method averages its network with PRI-NLM by SURE (never below it on the PD
    # stand-ins of docs/benchmarks/denoise.md): nothing to warn about
    assert warnings("learned") == []
    assert warnings("odct3d", enhance=("superres",)) == []  # no denoise step: nothing to say
