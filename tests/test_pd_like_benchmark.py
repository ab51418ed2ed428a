"""benchmarks/pd_like.py: the synthetic PD-weighted brain that stands in for the PD contrast
in the denoising benchmark (no PD scan is available offline)."""

from __future__ import annotations

import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def pd_like():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import pd_like

    return pd_like


def test_pure_tissues_have_pd_contrast(pd_like):
    # PD-weighted turbo spin echo at 3 T: grey matter brightest, CSF close, white matter darkest
    gm, csf, wm = (pd_like.signal(t) for t in ("gm", "csf", "wm"))
    assert gm > csf > wm
    assert 0.05 < (gm - wm) / gm < 0.25  # the low GM/WM contrast of PD weighting
    # a T1-weighted choice of the same equation (short TR) inverts CSF against white matter
    assert pd_like.signal("csf", tr=500.0) < pd_like.signal("wm", tr=500.0)


def test_partial_volumes_mix_linearly_and_the_background_stays_zero(pd_like):
    template = np.zeros((4, 4, 4), np.float32)
    template[1:3, 1:3, 1:3] = 100.0
    gm = np.zeros_like(template)
    wm = np.zeros_like(template)
    gm[1, 1, 1], wm[1, 1, 2] = 1.0, 1.0
    gm[2, 2, 2], wm[2, 2, 2] = 0.5, 0.5
    gm[0, 0, 0] = 1.0  # outside the template's brain: dropped
    gm[1, 2, 1], wm[1, 2, 1] = 0.8, 0.4  # byte-rounded maps summing above 1: renormalised
    image = pd_like.pd_like(template, gm, wm)
    peak = max(pd_like.signal(t) for t in pd_like.TISSUES)
    scale = pd_like.SCALE / peak
    assert image[0, 0, 0] == 0.0 and image[0, 3, 3] == 0.0
    assert image[1, 1, 1] == pytest.approx(scale * pd_like.signal("gm"))
    assert image[1, 1, 2] == pytest.approx(scale * pd_like.signal("wm"))
    assert image[2, 1, 1] == pytest.approx(scale * pd_like.signal("csf"))  # brain, no GM/WM
    assert image[2, 2, 2] == pytest.approx(
        scale * 0.5 * (pd_like.signal("gm") + pd_like.signal("wm")), rel=1e-5)
    mix = scale * (2 / 3 * pd_like.signal("gm") + 1 / 3 * pd_like.signal("wm"))
    assert image[1, 2, 1] == pytest.approx(mix, rel=1e-5)
    assert image.max() <= pd_like.SCALE + 1e-3


def test_writes_the_template_space_volume(pd_like, tmp_path):
    out = tmp_path / "pd.nii.gz"
    assert pd_like.main(["--out", str(out)]) == 0
    img = nib.load(out)
    data = np.asarray(img.dataobj)
    assert data.shape == (197, 233, 189) and img.header.get_zooms()[:3] == (1.0, 1.0, 1.0)
    brain = data > 0
    assert 0.15 < brain.mean() < 0.3 and data.max() <= pd_like.SCALE + 1e-3
    assert not list(tmp_path.glob(".tmp_*"))


def test_a_t1w_scan_is_remapped_onto_pd_contrast(pd_like):
    rng = np.random.default_rng(0)
    scan = np.zeros((20, 20, 20), np.float32)
    scan[2:18, 2:18, 2:18] = 500.0  # WM
    scan[2:18, 2:18, 2:6] = 400.0  # GM
    scan[2:18, 2:18, 14:18] = 200.0  # CSF
    scan[scan > 0] += rng.normal(0, 5, int((scan > 0).sum()))
    scan[9, 9, 9] = 700.0  # brighter than WM (a vessel with contrast agent)
    means = pd_like.tissue_means(scan)
    assert means == pytest.approx((200, 400, 500), abs=3)
    pd = pd_like.remap_to_pd(scan, means)
    peak = max(pd_like.signal(t) for t in pd_like.TISSUES)
    expect = {t: pd_like.SCALE * pd_like.signal(t) / peak for t in pd_like.TISSUES}
    assert pd[5, 5, 3] == pytest.approx(expect["gm"], abs=2)
    assert pd[5, 5, 10] == pytest.approx(expect["wm"], abs=2)
    assert pd[5, 5, 16] == pytest.approx(expect["csf"], abs=2)
    assert pd[0, 0, 0] == 0.0 and pd[9, 9, 9] < expect["wm"]  # beyond WM: the GM→WM slope
    assert (pd >= 0).all()
    with pytest.raises(ValueError, match="not ordered"):
        pd_like.remap_to_pd(scan, (400.0, 200.0, 500.0))
