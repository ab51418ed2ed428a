"""What sidecars record beyond BIDS: references and the reasons for null metrics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bids_enhance.bids.provenance import (
    MODEL_REFERENCES,
    consistency_reasons,
    iqm_reasons,
    reference_metric_reasons,
    references,
    step_reference_keys,
)
from bids_enhance.classical import METHODS, REFERENCES
from bids_enhance.reports.boilerplate import load_bibliography
from bids_enhance.utils import dump_json


# -- references ------------------------------------------------------------------------------
def test_every_registered_reference_is_in_the_bibliography():
    bib = load_bibliography()
    keys = {k for v in [*REFERENCES.values(), *MODEL_REFERENCES.values()] for k in v}
    assert keys and keys <= set(bib)
    assert set(METHODS) <= set(REFERENCES)  # every classical method cites something
    for method in METHODS:
        assert REFERENCES[method], method


def test_model_tasks_are_those_of_the_training_code():
    from bids_enhance.models.registry import TASK_TITLES

    assert set(MODEL_REFERENCES) == set(TASK_TITLES)


@pytest.mark.parametrize(("record", "keys"), [
    ({"method": "prinlm", "sigma": 0.02, "sigma_estimator": "coupe2010"},
     ("manjon2012", "buades2005", "coupe2008", "coupe2010", "koay2006")),
    ({"method": "sanlm", "sigma": 0.02, "sigma_estimator": "coupe2010"},
     ("manjon2010", "coupe2008", "coupe2010", "koay2006")),
    ({"method": "sanlm", "sigma": 0.02, "sigma_estimator": "user"}, ("manjon2010", "coupe2008")),
    ({"model": "gan3p", "sha256": "ab"}, ("wang2023threeplayer",)),
    ({"model": "disgan", "sha256": "ab"}, ("wang2023disgan",)),
    ({"model": "motion-ddpm", "sha256": "ab"}, ("ho2020ddpm", "song2021ddim")),
    ({"model": "unknown-task", "sha256": "ab"}, ()),
])
def test_each_step_cites_its_method_and_noise_estimator(record, keys):
    assert step_reference_keys(record) == keys


def test_references_are_one_line_citations_with_a_link():
    prinlm, disgan = references(["manjon2012", "wang2023disgan"])
    assert prinlm == {
        "Key": "manjon2012",
        "Citation": "Manjón et al. (2012). New methods for MRI denoising based on sparseness "
                    "and self-similarity. Medical Image Analysis 16(1):18–27.",
        "DOI": "10.1016/j.media.2011.04.003",
        "URL": "https://doi.org/10.1016/j.media.2011.04.003"}
    assert "DOI" not in disgan and disgan["URL"] == "https://arxiv.org/abs/2308.12084"
    assert disgan["Citation"].startswith("Wang et al. (2023). DISGAN")
    assert [r["Key"] for r in references(["koay2006", "koay2006"])] == ["koay2006"]
    assert references(["koay2006"])[0]["Citation"].startswith("Koay and Basser (2006).")


def test_an_unknown_reference_key_names_the_known_ones():
    with pytest.raises(KeyError, match="'manjon2013' is not in .*manjon2012"):
        references(["manjon2013"])


# -- reasons for null metrics ----------------------------------------------------------------
def _head(n=40):
    grid = np.indices((n, n, n), dtype=np.float32) - (n - 1) / 2
    r = np.sqrt((grid ** 2).sum(0)) / (n / 2)
    return np.select([r < 0.35, r < 0.55, r < 0.7], [0.9, 0.55, 0.25], 0.0).astype(np.float32)


def test_every_null_iqm_of_a_zeroed_background_has_a_reason(rng):
    """As in the app: masks from the noisy input, the same masks for the denoised image, whose
    background is zero (no noise left to measure, no background energy)."""
    from bids_enhance.degrade import add_rician_noise
    from bids_enhance.image.mask import head_mask
    from bids_enhance.metrics.iqm import compute_iqms, tissue_masks

    clean = _head()
    before = add_rician_noise(clean, sigma=0.03, rng=rng)
    after = np.where(clean > 0, before, 0.0).astype(np.float32)
    mask = head_mask(before)
    tissues = tissue_masks(before, head_mask=mask)
    for image in (before, after):
        values = json.loads(dump_json(compute_iqms(image, head_mask=mask, tissues=tissues)))
        nulls = {k for k, v in values.items() if v is None}
        reasons = iqm_reasons(values)
        assert set(reasons) == nulls
        assert all(isinstance(r, str) and len(r) > 10 for r in reasons.values())
        if image is after:
            assert {"snr_dietrich", "fber"} <= nulls
            assert "zero" in reasons["fber"] and "noise" in reasons["snr_dietrich"]
        else:
            assert not nulls


def test_iqm_reasons_cover_non_finite_numbers_before_json():
    reasons = iqm_reasons({"cjv": float("inf"), "cnr": 1.5, "snr_wm": float("nan"),
                           "summary_wm_median": 1.0, "summary_gm_median": 1.0})
    assert set(reasons) == {"cjv", "snr_wm"} and "contrast" in reasons["cjv"]


def test_reference_and_consistency_reasons_mirror_the_record():
    comparison = {"label": "x", "protocol": "p",
                  "enhanced": {"psnr": None, "ssim": 1.0, "nrmse": 0.0, "hfen": 0.0},
                  "baselines": {"identity": {"psnr": 30.0}, "cubic": {"hfen": None}}}
    reasons = reference_metric_reasons(comparison)
    assert set(reasons) == {"enhanced", "baselines"}
    assert set(reasons["enhanced"]) == {"psnr"} and "equals the reference" in \
        reasons["enhanced"]["psnr"]
    assert set(reasons["baselines"]) == {"cubic"}
    assert reference_metric_reasons({"enhanced": {"psnr": 30.0}, "baselines": {}}) == {}
    record = {"method": "box", "rmse": 0.0, "rmse_percent": None, "relative_rms_error": None}
    assert set(consistency_reasons(record)) == {"rmse_percent", "relative_rms_error"}
    assert consistency_reasons(None) == {}
