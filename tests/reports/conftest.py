"""Fixtures for the report tests: tiny images, sidecars and output trees (all synthetic)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # the helpers module next to this file
from reports_helpers import CRASH_TEXT, head, make_sidecar, write_figure_svg  # noqa: E402


@pytest.fixture
def image_pair(tmp_path) -> tuple[Path, Path]:
    """(before, after) NIfTIs on one 2 mm grid: a noisy phantom and its smoothed version."""
    from scipy import ndimage as ndi

    affine = np.diag([2.0, 2.0, 2.0, 1.0])
    affine[:3, 3] = -30
    noisy = head(noise=5.0, seed=1)
    smooth = ndi.gaussian_filter(noisy, 0.8).astype(np.float32)
    paths = []
    for name, data in (("before.nii.gz", noisy), ("after.nii.gz", smooth)):
        path = tmp_path / name
        nib.save(nib.Nifti1Image(data, affine), path)
        paths.append(path)
    return paths[0], paths[1]

@pytest.fixture
def output_tree(tmp_path) -> tuple[Path, str]:
    """A participant output tree as a partly failed run leaves it.

    ``sub-01`` has three images: ``echo-1_part-mag`` (all figures), ``echo-2_part-mag``
    (crashed: no figures, a crash file), ``echo-1_part-phase`` (flicker only). The output
    directory sits under ``run-7/`` to catch entity parsing of absolute paths.
    """
    from bids_enhance.reports.boilerplate import write_citation_files
    from bids_enhance.reports.fragments import (
        about_html,
        iqm_table_html,
        subject_summary_html,
    )

    out = tmp_path / "run-7" / "sub-99" / "out"
    figures = out / "sub-01" / "figures"
    figures.mkdir(parents=True)
    sources = [f"/data/bids/sub-01/anat/sub-01_{e}_T1w.nii.gz"
               for e in ("echo-1_part-mag", "echo-2_part-mag", "echo-1_part-phase")]
    (figures / "sub-01_desc-summary_T1w.html").write_text(subject_summary_html(
        subject="01", source_files=sources, bids_dir="/data/bids", enhance=["denoise"],
        denoise_method="prinlm", noise_model="rician", device="cpu"))
    (figures / "sub-01_desc-about_T1w.html").write_text(about_html(
        version="0.1.0", command="bids_enhance /data/bids /out participant",
        date="2025-11-27 10:00:00 UTC"))
    write_figure_svg(figures / "sub-01_echo-1_part-mag_desc-flicker_T1w.svg", "flicker e1")
    write_figure_svg(figures / "sub-01_echo-1_part-mag_desc-residual_T1w.svg", "residual e1")
    (figures / "sub-01_echo-1_part-mag_desc-iqms_T1w.html").write_text(
        iqm_table_html(make_sidecar(source="sub-01/anat/sub-01_echo-1_part-mag_T1w.nii.gz")))
    write_figure_svg(figures / "sub-01_echo-1_part-phase_desc-flicker_T1w.svg", "flicker ph")
    (figures / ".tmp-1234abcd-sub-01_echo-1_part-phase_desc-residual_T1w.svg").write_text("x")
    run_uuid = "20251127-100000_0a1b2c3d"
    log = out / "sub-01" / "log" / run_uuid
    log.mkdir(parents=True)
    (log / "crash-20251127-100500-user-denoise-0a1b2c3d.txt").write_text(CRASH_TEXT)
    write_citation_files(out, "Images were denoised with PRI-NLM [@manjon2012], "
                              "with the noise estimated as in @coupe2010.\n")
    return out, run_uuid

@pytest.fixture
def sidecar_file(tmp_path) -> Path:
    path = tmp_path / "sidecar.json"
    path.write_text(json.dumps(make_sidecar(fixes=["set the qform from the sform <2 mm off>"])))
    return path

