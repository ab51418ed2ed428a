"""Figures and tables a reader understands without tooltips: the flicker animates by itself,
the residual's local mean hides the background instead of saturating it, every n/a in the IQM
table says why, and the group table fits the page."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from reports_helpers import assert_balanced_html, make_sidecar

from bids_enhance.metrics.iqm import undefined_reason
from bids_enhance.reports.figures import animate_flicker, masked_local_mean
from bids_enhance.reports.fragments import iqm_table_html

NIREPORTS_STYLE = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 10 10">
  <g>
<style type="text/css">
@keyframes flickerAnimationabc-1 { 0% {opacity: 1;} 100% { opacity: 0; }}
.foreground-svg { animation: 1s ease-in-out 0s alternate none infinite paused flickerAnimationabc-1;}
.foreground-svg:hover { animation-play-state: running;}
</style>
    <g class="background-svg"></g><g class="foreground-svg"></g>
  </g>
</svg>
"""


# -- (a) flicker --------------------------------------------------------------------------------
def test_flicker_runs_by_itself_and_pauses_on_hover():
    svg = animate_flicker(NIREPORTS_STYLE)
    style = svg[svg.index("<style"):svg.index("</style>")]
    assert "paused flickerAnimation" not in style and "running flickerAnimationabc-1" in style
    assert "svg:hover .foreground-svg { animation-play-state: paused; }" in style
    assert "prefers-reduced-motion" in style
    assert style.count("@keyframes flickerAnimationabc-1") == 1
    assert svg.endswith('<g class="foreground-svg"></g>\n  </g>\n</svg>\n')  # the rest kept
    plain = '<svg xmlns="http://www.w3.org/2000/svg"><g/></svg>'
    assert animate_flicker(plain) == plain


def test_before_after_interface_writes_the_running_animation(image_pair, tmp_path):
    from bids_enhance.interfaces.reports import BeforeAfterRPT

    before, after = image_pair
    result = BeforeAfterRPT(before=str(before), after=str(after), before_label="input",
                            after_label="denoised").run(cwd=str(tmp_path))
    svg = Path(result.outputs.out_report).read_text()
    assert "running flickerAnimation" in svg and "infinite paused" not in svg


# -- (b) residual ---------------------------------------------------------------------------------
def test_local_mean_is_masked_and_does_not_leak_the_background():
    residual = np.zeros((20, 20, 20), np.float32)
    residual[:, :, :] = 5.0  # e.g. the Rician noise floor a denoiser removed from the air
    mask = np.zeros_like(residual, dtype=bool)
    mask[5:15, 5:15, 5:15] = True
    residual[mask] = 0.0  # nothing removed inside the head
    smooth = masked_local_mean(residual, mask, sigma_vox=(2.0, 2.0, 2.0))
    assert np.isnan(smooth[~mask]).all()  # drawn black (cmap "bad"), not a saturated block
    assert np.allclose(smooth[mask], 0.0, atol=1e-5)  # the edge stays clean
    with pytest.raises(ValueError, match="shape"):
        masked_local_mean(residual, mask[:-1], sigma_vox=(1, 1, 1))


def test_residual_figure_prints_the_background_mean_and_the_chain_legend(tmp_path,
                                                                         monkeypatch):
    from matplotlib.figure import Figure

    from bids_enhance.reports import figures

    texts = []
    original = Figure.text

    def spy(self, x, y, s, *args, **kwargs):
        texts.append(s)
        return original(self, x, y, s, *args, **kwargs)

    monkeypatch.setattr(Figure, "text", spy)
    rng = np.random.default_rng(0)
    before = rng.normal(5.0, 1.0, (24, 24, 20)).astype(np.float32)
    before[6:18, 6:18, 5:15] += 100
    after = np.where(before > 50, before, 0).astype(np.float32)
    figures.plot_residual_mosaic(before, after, tmp_path / "r.svg",
                                 legend=["Top: custom legend line."])
    text = "\n".join(texts)
    assert "Outside the head (black in the bottom row): mean" in text.replace("\n  ", " ")
    assert "Top: custom legend line." in text and "noise removed" not in text
    assert all(len(line) <= figures._TEXT_WIDTH for line in text.splitlines())


# -- (c) n/a reasons ------------------------------------------------------------------------------
def _zero_background_iqms() -> dict:
    """IQMs of a denoised image whose background became exactly 0, as its sidecar has them
    (values of a real run on the phantom of tests/conftest.py)."""
    return {"snrd_csf": None, "snrd_gm": None, "snrd_wm": None, "snr_dietrich": None,
            "fber": None, "summary_bg_mean": 0.00086, "summary_bg_median": 0.0,
            "summary_bg_stdv": 0.043, "summary_bg_mad": 0.0, "n_air": 24901.0,
            "n_head": 15001.0, "n_frame": 0.0}


def test_undefined_metrics_have_reasons():
    values = _zero_background_iqms()
    assert values["snr_dietrich"] is None and values["fber"] is None
    assert "no noise left in the air" in undefined_reason("snr_dietrich", values)
    assert "background outside the head is zero" in undefined_reason("fber", values)
    assert "fewer than 1000" in undefined_reason("snr_dietrich", {"n_air": 12.0})
    assert "same median" in undefined_reason("cjv", {"summary_wm_median": 3.0,
                                                     "summary_gm_median": 3.0})
    assert undefined_reason("fber", {})  # a general reason without the statistics


def test_every_n_a_in_the_iqm_table_has_a_visible_reason():
    meta = make_sidecar()
    meta["QualityMetrics"]["After"].update(_zero_background_iqms())
    meta["QualityMetrics"]["Before"].pop("snr_dietrich")  # not measured at all
    text = iqm_table_html(meta)
    assert_balanced_html(text)
    table = text[text.index("be-iqm-table"):text.index("</table>")]
    cells = re.findall(r"<td[^>]*>(n/a[^<]*(?:<sup[^>]*>[a-z]</sup>)*)</td>", table)
    assert cells and all("be-fn" in c for c in cells), cells
    notes = text[text.index('class="be-na-notes"'):]
    plain = re.sub(r"<[^>]+>", "", notes)
    assert "SNR (Dietrich) after: no noise left in the air around the head" in plain
    assert "FBER after: the background outside the head is zero" in plain
    assert "SNR (Dietrich) before: not measured" in plain
    # one letter per distinct reason, each explained once
    letters = re.findall(r'<sup class="be-fn">([a-z])</sup>', notes)
    assert len(letters) == len(set(letters))


def test_a_background_metric_that_explodes_reads_as_a_factor_with_a_reason():
    """Dietrich's SNR and FBER divide by the air's noise: after denoising they grow by
    thousands. The change cell says "×N" with a footnote, neither green nor red; an ordinary
    change of the same metric stays a percentage."""
    meta = make_sidecar()
    meta["QualityMetrics"]["Before"].update({"snr_dietrich": 20.0, "fber": 1500.0})
    meta["QualityMetrics"]["After"].update({"snr_dietrich": 25.0, "fber": 3.1e7})
    text = iqm_table_html(meta)
    assert_balanced_html(text)
    rows = {re.sub(r"<[^>]+>", "", m.group(1)): m.group(0)
            for m in re.finditer(r"<tr><td><abbr[^>]*>([^<]*)</abbr>.*?</tr>", text)}
    assert "+25.0 %" in rows["SNR (Dietrich)"] and "be-better" in rows["SNR (Dietrich)"]
    fber = rows["FBER"]
    assert "×20,667" in fber and "%" not in fber.split("be-arrow")[1]
    assert "be-better" not in fber and "be-worse" not in fber and "be-fn" in fber
    plain = re.sub(r"<[^>]+>", "", text)
    assert "removed the noise in the air around the head" in plain


def test_iqm_table_uses_the_sidecar_reasons_when_recorded():
    meta = make_sidecar()
    meta["QualityMetrics"]["NotAvailable"] = {"After": {"fber": "recorded reason"}}
    text = iqm_table_html(meta)
    assert "FBER after: recorded reason." in text
    assert "NotAvailable" not in text  # not a metric row


def test_noise_sigma_from_the_step_or_the_legacy_field():
    from bids_enhance.reports.fragments import noise_sigma

    meta = make_sidecar(sigma=None)
    meta["EnhancementSteps"][0]["NoiseSigma"] = 3.25
    assert noise_sigma(meta) == (3.25, meta["EnhancementSteps"][0]["NoiseSigmaEstimator"])
    assert "3.250" in iqm_table_html(meta)
    legacy = make_sidecar(sigma=4.5) | {"EnhancementSteps": [], "EstimatedNoiseSigma": 4.5}
    assert noise_sigma(legacy) == (4.5, None)  # a sidecar of bids_enhance 0.1.0


# -- (d) group table ------------------------------------------------------------------------------
def test_group_table_fits_the_page(tmp_path):
    from bids_enhance.reports.group import run_group

    out = tmp_path / "out"
    for name in ("sub-01/anat/sub-01_desc-denoised_T1w.json",
                 "sub-02/ses-1/anat/sub-02_ses-1_run-1_desc-denoised_T1w.json"):
        path = out / name
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(make_sidecar()))
    run_group(out, ["T1w"])
    page = (out / "group_T1w.html").read_text()
    assert_balanced_html(page)
    table = page[page.index('class="be-table be-group-table"'):page.index("</table>")]
    headers = re.findall(r"<th\b[^>]*>(.*?)</th>", table)
    # image, steps, σ and the metrics: the entities are in the image name, which wraps
    assert headers[:3] == ["image", "steps", "σ"] and len(headers) <= 13
    assert "sub-02_<wbr>ses-1_<wbr>run-1" in table
    assert '<span class="be-nowrap">denoise: prinlm, rician</span>' in table
    # before over after in one cell, the after value coloured by its direction
    assert re.search(r"8\.000<br><span class=\"be-after be-better\">12\.00</span>", table)
    # headers wrap, and no rule of the group table forbids wrapping
    assert ".be-group-table th.be-num { white-space: normal;" in page
    rules = re.findall(r"\.be-(?:group-table|table-wrap)[^{]*\{[^}]*\}", page)
    assert rules and not any("nowrap" in r for r in rules)
    legend = page[page.index('class="be-legend"'):]
    assert "before</strong> enhancement above" in legend and "CJV</strong>: coefficient" in legend
    assert "n/a</strong>" in legend
    # the TSV keeps every column
    tsv = (out / "group_T1w.tsv").read_text().splitlines()[0].split("\t")
    assert {"subject", "session", "run", "method", "noise_model", "sigma"} <= set(tsv)
    assert "chain" not in tsv
