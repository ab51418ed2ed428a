"""HTML fragments (reportlets) of the subject report: IQM table, subject summary, about box.

Pure functions from plain Python data to an HTML string; every value that comes from a file or
the command line is escaped. The fragments use ``be-*`` classes that the report template
(``bids_enhance/data/report.tpl``) styles; on their own they are plain, readable HTML.
"""

from __future__ import annotations

import html
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

from bids_enhance.reports.captions import STEP_LABELS, Chain
from bids_enhance.steps import AUTO_DENOISE, DENOISE, DENOISE_METHODS, resolve_denoise_method

__all__ = [
    "IQM_DEFINITIONS",
    "MAIN_IQMS",
    "about_html",
    "format_number",
    "iqm_table_html",
    "noise_sigma",
    "subject_summary_html",
]

#: key → (label, better direction: "up" | "down" | None, definition). Definitions follow MRIQC
#: (Esteban et al. 2017, PLoS ONE 12(9):e0184661; mriqc.readthedocs.io, "IQMs for structural
#: images") as implemented in :mod:`bids_enhance.metrics.iqm`.
IQM_DEFINITIONS: dict[str, tuple[str, str | None, str]] = {
    "snr_total": ("SNR", "up",
                  "Signal-to-noise ratio: median intensity of a tissue divided by its standard "
                  "deviation, averaged over CSF, GM and WM."),
    "snr_wm": ("SNR (WM)", "up", "SNR inside the white-matter mask."),
    "snr_gm": ("SNR (GM)", "up", "SNR inside the grey-matter mask."),
    "snr_csf": ("SNR (CSF)", "up", "SNR inside the cerebrospinal-fluid mask."),
    "snr_dietrich": ("SNR (Dietrich)", "up",
                     "Tissue median divided by the noise standard deviation measured in the air "
                     "around the head (Dietrich et al. 2007). Not available when the background "
                     "is zeroed; grows without bound when a filter removes the background noise."),
    "cnr": ("CNR", "up",
            "Contrast-to-noise ratio: |median WM − median GM| / √(σ²air + σ²WM + σ²GM)."),
    "cjv": ("CJV", "down",
            "Coefficient of joint variation of WM and GM: (MAD WM + MAD GM) / |median WM − "
            "median GM| (Ganzetti et al. 2016). Lower means less noise and less intensity "
            "non-uniformity."),
    "efc": ("EFC", "down",
            "Entropy focus criterion: Shannon entropy of the voxel intensities relative to its "
            "maximum (Atkinson et al. 1997). Lower means the energy sits in fewer voxels: less "
            "ghosting and blurring."),
    "fber": ("FBER", "up",
             "Foreground-background energy ratio: median energy inside the head over median "
             "energy outside it. Grows without bound when the background becomes 0."),
    "wm2max": ("WM2MAX", None,
               "Median WM intensity over the 99.95th percentile of the image; MRIQC considers "
               "about 0.6–0.8 typical. Neither direction is better."),
}
#: Rows of the main table, in order.
MAIN_IQMS = ("snr_total", "snr_wm", "snr_gm", "snr_csf", "snr_dietrich", "cnr", "cjv", "efc",
             "fber", "wm2max")

_METHOD_NAMES = {name: method.title for name, method in DENOISE_METHODS.items()}
_STEP_NAMES = STEP_LABELS
_ARROWS = {"up": ("↑", "higher is better"), "down": ("↓", "lower is better"),
           None: ("–", "no better direction")}


def _e(value) -> str:
    return html.escape(str(value), quote=True)


def format_number(value, *, digits: int = 4) -> str:
    """``n/a`` for missing or non-finite values, otherwise ``digits`` significant digits."""
    if value is None or isinstance(value, bool):
        return "n/a" if value is None else str(value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return _e(value)
    if not math.isfinite(number):
        return "n/a"
    if number == 0:
        return "0"
    if abs(number) >= 1e6 or abs(number) < 1e-3:
        return f"{number:.{digits - 1}e}"
    if abs(number) >= 10 ** digits:
        return f"{number:.0f}"
    import numpy as np

    return np.format_float_positional(number, precision=digits, unique=False,
                                      fractional=False, trim="k").rstrip(".")


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


#: IQMs that divide by the noise in the air around the head: a denoiser that zeroes that
#: background multiplies them by thousands whatever it does to the head.
BACKGROUND_IQMS = ("snr_dietrich", "fber")
#: From this factor on (after / before), a background IQM's change is shown as a factor, with a
#: footnote, and neither green nor red.
BACKGROUND_FACTOR = 10.0


def _change_cell(before, after, direction: str | None, notes: _Notes, marks: str = "",
                 key: str | None = None) -> str:
    """Relative change; n/a (with ``marks``, the footnotes of the missing values) when a value
    is missing. A background IQM (:data:`BACKGROUND_IQMS`) that grew by
    :data:`BACKGROUND_FACTOR` or more reads "×N" with a footnote instead of "+N00000 %"."""
    b, a = _finite(before), _finite(after)
    if b is None or a is None:
        return f'<td class="be-num be-na">n/a{marks}</td>'
    if key in BACKGROUND_IQMS and b > 0 and a / b >= BACKGROUND_FACTOR:
        mark = notes.mark("Change", "the filter removed the noise in the air around the head, "
                          "which this metric divides by, so it grows by orders of magnitude "
                          "whatever happened inside the head; read SNR, CNR and CJV for that")
        factor = a / b
        shown = f"{factor:,.0f}" if factor < 1e6 else f"{factor:.1e}"
        return f'<td class="be-num">×{shown}{mark}</td>'
    if b == 0:
        text = "±0" if a == 0 else "n/a" + notes.mark("Change", "the value before is 0, so a "
                                                      "relative change is undefined")
    else:
        text = f"{100 * (a - b) / abs(b):+.1f} %"
    verdict = ""
    if direction is not None and a != b:
        improved = (a > b) if direction == "up" else (a < b)
        verdict = " be-better" if improved else " be-worse"
    return f'<td class="be-num{verdict}">{text}</td>'


class _Notes:
    """Footnotes of one table: each distinct reason gets a letter, shown next to its n/a."""

    def __init__(self):
        self.notes: dict[str, str] = {}

    def mark(self, where: str, reason: str) -> str:
        text = f"{where}: {reason}."
        letter = self.notes.setdefault(text, "abcdefghijklmnopqrstuvwxyz"[len(self.notes) % 26])
        return f'<sup class="be-fn">{letter}</sup>'

    def html(self) -> str:
        if not self.notes:
            return ""
        items = "".join(f'<li><sup class="be-fn">{letter}</sup> {_e(text)}</li>'
                        for text, letter in self.notes.items())
        return f'<ul class="be-na-notes">{items}</ul>'


def _value_cell(key: str, values: Mapping, reasons: Mapping, label: str, when: str,
                notes: _Notes) -> tuple[str, str]:
    """A before/after cell: the number, or n/a with a footnote saying why (the sidecar's
    ``NotAvailable`` reason, else :func:`bids_enhance.metrics.iqm.undefined_reason`)."""
    from bids_enhance.metrics.iqm import undefined_reason

    text, mark = format_number(values.get(key)), ""
    if text == "n/a":
        if key not in values:
            reason = "not measured"
        else:
            reason = reasons.get(key) if isinstance(reasons, Mapping) else None
            reason = str(reason) if reason else undefined_reason(key, values)
        mark = notes.mark(f"{label} {when}", reason)
    return f'<td class="be-num">{text}{mark}</td>', mark


def iqm_table_html(sidecar: Mapping) -> str:
    """Table of image-quality metrics before/after, noise estimate, method and input fixes, from
    the image sidecar written by :class:`bids_enhance.interfaces.bids.BuildSidecar`.

    Every ``n/a`` carries a footnote saying why (:func:`bids_enhance.metrics.iqm.
    undefined_reason`). The outer element carries the image's chain of steps as ``data-*``
    attributes (:meth:`bids_enhance.reports.captions.Chain.html_attributes`), from which the
    report builds the captions of the image's figures.
    """
    metrics = sidecar.get("QualityMetrics") or {}
    before = metrics.get("Before") or {}
    after = metrics.get("After") or {}
    not_available = metrics.get("NotAvailable") or {}
    chain = Chain.from_sidecar(sidecar)
    parts = [f'<div class="be-iqms"{chain.html_attributes()}><div class="be-iqm-metrics">']
    sources = sidecar.get("Sources") or []
    if sources:
        parts.append('<p class="be-source">Source: '
                     + ", ".join(f"<code>{_e(s)}</code>" for s in sources) + "</p>")

    # --- metrics --------------------------------------------------------------------------
    if before or after:
        parts.append('<table class="be-table be-iqm-table">')
        parts.append('<thead><tr><th>Metric</th><th title="which direction is better">Better'
                     '</th><th class="be-num">Before</th><th class="be-num">After</th>'
                     '<th class="be-num">Change</th></tr></thead><tbody>')
        notes = _Notes()
        for key in MAIN_IQMS:
            if key not in before and key not in after:
                continue
            label, direction, definition = IQM_DEFINITIONS[key]
            arrow, arrow_title = _ARROWS[direction]
            before_cell, before_mark = _value_cell(
                key, before, not_available.get("Before") or {}, label, "before", notes)
            after_cell, after_mark = _value_cell(
                key, after, not_available.get("After") or {}, label, "after", notes)
            parts.append(
                f'<tr><td><abbr title="{_e(definition)}">{_e(label)}</abbr></td>'
                f'<td class="be-arrow" title="{arrow_title}">{arrow}</td>'
                + before_cell + after_cell
                + _change_cell(before.get(key), after.get(key), direction, notes,
                               before_mark + after_mark, key=key) + "</tr>")
        parts.append("</tbody></table>")
        parts.append(notes.html())
        parts.append(_definitions_html(k for k in MAIN_IQMS if k in before or k in after))
        others = sorted((set(before) | set(after)) - set(MAIN_IQMS))
        if others:
            rows = "".join(
                f"<tr><td><code>{_e(k)}</code></td><td class=\"be-num\">"
                f"{format_number(before.get(k))}</td><td class=\"be-num\">"
                f"{format_number(after.get(k))}</td></tr>" for k in others)
            parts.append(
                "<details><summary>All measured values</summary>"
                '<table class="be-table be-compact"><thead><tr><th>Key</th>'
                '<th class="be-num">Before</th><th class="be-num">After</th></tr></thead>'
                f"<tbody>{rows}</tbody></table></details>")
    else:
        parts.append('<p class="be-warning">No image-quality metrics were recorded for this '
                     "image.</p>")

    parts.append(_simulation_html(sidecar))
    parts.append('</div><div class="be-iqm-method">')
    # --- noise ----------------------------------------------------------------------------
    parts.append(_noise_html(sidecar))
    # --- method ---------------------------------------------------------------------------
    parts.append(_steps_html(sidecar.get("EnhancementSteps") or []))
    # --- input ----------------------------------------------------------------------------
    parts.append(_input_html(sidecar.get("InputSanitising") or {}))
    parts.append("</div></div>")
    return "\n".join(p for p in parts if p) + "\n"


def _simulation_html(sidecar: Mapping) -> str:
    """Simulation mode: the clean input was degraded, enhanced and compared with itself."""
    simulation = sidecar.get("Simulation") or {}
    comparison = sidecar.get("ReferenceMetrics") or {}
    if not simulation or not comparison:
        return ""
    rows = [("enhanced", comparison.get("enhanced") or {})]
    rows += [(f"{name} (no enhancement)" if name == "identity" else name, values)
             for name, values in sorted((comparison.get("baselines") or {}).items())]
    body = "".join(
        f"<tr><td>{_e(name)}</td><td class=\"be-num\">{format_number(m.get('psnr'))}</td>"
        f"<td class=\"be-num\">{format_number(m.get('ssim'))}</td>"
        f"<td class=\"be-num\">{format_number(m.get('hfen'))}</td></tr>" for name, m in rows)
    return (
        '<div class="be-simulation"><h4>Simulation against the original</h4>'
        f"<p>The input was degraded with <code>{_e(simulation.get('Preset'))}</code> (seed "
        f"{_e(simulation.get('Seed'))}), enhanced, and compared with the original image "
        f"({_e(comparison.get('protocol') or '')}).</p>"
        '<table class="be-table be-compact"><thead><tr><th>Image</th>'
        '<th class="be-num">PSNR (dB) ↑</th><th class="be-num">3D SSIM ↑</th>'
        '<th class="be-num">HFEN ↓</th></tr></thead>'
        f"<tbody>{body}</tbody></table></div>")


def _definitions_html(keys: Iterable[str]) -> str:
    items = []
    for key in keys:
        label, direction, definition = IQM_DEFINITIONS[key]
        arrow = _ARROWS[direction][0]
        items.append(f"<dt>{_e(label)} {arrow}</dt><dd>{_e(definition)}</dd>")
    return (
        '<details class="be-footnote"><summary>What the metrics mean</summary>'
        f'<dl class="be-defs">{"".join(items)}</dl>'
        "<p>Definitions as in MRIQC (Esteban et al. 2017, PLoS ONE 12(9):e0184661), measured on "
        "the same head and tissue masks (computed from the input) before and after. "
        "No-reference metrics reward any smoothing: a higher SNR does not show that anatomy was "
        "kept. Check the residual map above for structure.</p></details>"
    )


def noise_sigma(sidecar: Mapping) -> tuple[float | None, str | None]:
    """(σ, estimator) of an image sidecar, in input units: the first step with a finite
    ``NoiseSigma`` (its own, or its ``Prefilter``'s), else the top-level
    ``EstimatedNoiseSigma`` of older sidecars; (None, None) when no step estimated it."""
    steps = [s for s in sidecar.get("EnhancementSteps") or [] if isinstance(s, Mapping)]
    for step in steps:
        prefilter = step.get("Prefilter")  # a generative step's own filter (superres-denoise)
        for record in (step, prefilter if isinstance(prefilter, Mapping) else {}):
            sigma = _finite(record.get("NoiseSigma"))
            if sigma is not None and not isinstance(record.get("NoiseSigma"), bool):
                return sigma, record.get("NoiseSigmaEstimator")
    estimator = next((s.get("NoiseSigmaEstimator") for s in steps
                      if s.get("NoiseSigmaEstimator")), None)
    return _finite(sidecar.get("EstimatedNoiseSigma")), estimator


def _noise_html(sidecar: Mapping) -> str:
    sigma, estimator = noise_sigma(sidecar)
    steps = [s for s in sidecar.get("EnhancementSteps") or [] if isinstance(s, Mapping)]
    if sigma is None:
        if not any(s.get("Step") == DENOISE.name or "NoiseSigma" in s for s in steps):
            return ""  # no step of this chain estimates the noise: nothing to report
        return ('<p class="be-noise">Estimated noise σ: <strong>n/a</strong> (no step of the '
                "chain estimated it).</p>")
    scale = _finite((sidecar.get("IntensityNormalisation") or {}).get("Scale"))
    text = f"Estimated noise σ: <strong>{format_number(sigma)}</strong> (image units)"
    if scale:
        text += (f", <strong>{100 * sigma / scale:.2f} %</strong> of the robust maximum "
                 f"(99.9th percentile of the voxels &gt; 0: {format_number(scale)})")
    if estimator:
        text += f"; estimator: {_e(estimator)}"
    return f'<p class="be-noise">{text}.</p>'


def _format_parameter(value) -> str:
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, list | tuple):
        return ", ".join(_format_parameter(v) for v in value)
    if isinstance(value, dict):
        return "; ".join(f"{_e(k)} = {_format_parameter(v)}" for k, v in value.items())
    return _e(value)


def _mm(values) -> str:
    return " × ".join(f"{float(v):.3g}" for v in values) + " mm"


def _consistency_html(step: Mapping) -> str:
    error = step.get("ConsistencyError")
    if not error:
        return "not measured"
    percent = format_number(error.get("rmse_percent"), digits=2)
    text = (f"RMS {format_number(error.get('rmse'))} ({percent} % of the input's robust "
            "maximum), max "
            f"{format_number(error.get('max_percent'), digits=2)} %; "
            f"output degraded again by <code>{_e(error.get('method'))}</code> vs the input of "
            "this step")
    after = step.get("ConsistencyErrorAfterProjection")
    if step.get("ConsistencyProjected") and after:
        text += (f"<br><strong>projected</strong> onto the input: RMS now "
                 f"{format_number(after.get('rmse_percent'), digits=2)} %")
    else:
        text += "<br>not projected (<code>--consistency project</code> enforces it)"
    return text


def _model_card_html(model: Mapping) -> str:
    card = model.get("ModelCard") or {}
    rows = []
    if card.get("description"):
        rows.append(("Trained for", _e(card["description"])))
    if card.get("degradation"):
        rows.append(("Degradation", f"<code>{_e(card['degradation'])}</code>"))
    data = []
    if card.get("training_images") is not None:
        data.append(f"{int(card['training_images'])} training image(s)")
    if card.get("held_out_images") is not None:
        data.append(f"{int(card['held_out_images'])} held out")
    parent = card.get("continued_from") if isinstance(card.get("continued_from"), Mapping) else {}
    if card.get("iterations") is not None:
        text = f"{int(card['iterations'])} iterations"
        if parent.get("iterations") is not None:  # a run that continued another
            text += (f" after {int(parent['iterations'])} of "
                     f"<code>{_e(parent.get('model') or 'its parent')}</code>")
        data.append(text)
    if card.get("cpu_hours_total") is not None:
        data.append(f"{float(card['cpu_hours_total']):.1f} CPU-hours in all")
    elif card.get("cpu_hours") is not None:
        data.append(f"{float(card['cpu_hours']):.1f} CPU-hours")
    elif card.get("training_device"):
        data.append(f"on {_e(card['training_device'])}")
    if card.get("size"):
        data.append(f"size <code>{_e(card['size'])}</code>")
    if data:
        rows.append(("Training", ", ".join(data)))
    if card.get("held_out_psnr") is not None:
        text = f"PSNR {float(card['held_out_psnr']):.1f} dB"
        if card.get("held_out_psnr_prinlm_cubic") is not None:
            text += (f" (PRI-NLM then cubic B-spline "
                     f"{float(card['held_out_psnr_prinlm_cubic']):.1f} dB")
            if card.get("held_out_psnr_cubic") is not None:
                text += f", cubic B-spline {float(card['held_out_psnr_cubic']):.1f} dB"
            text += ")"
        elif card.get("held_out_psnr_cubic") is not None:
            text += f" (cubic B-spline {float(card['held_out_psnr_cubic']):.1f} dB)"
        elif card.get("held_out_psnr_prinlm") is not None:
            text += f" (PRI-NLM {float(card['held_out_psnr_prinlm']):.1f} dB)"
        elif card.get("held_out_psnr_corrupted") is not None:
            text += (f" (the motion-corrupted input "
                     f"{float(card['held_out_psnr_corrupted']):.1f} dB)")
        rows.append(("Held-out quality", text))
    if card.get("created"):
        rows.append(("Created", _e(card["created"])))
    origin = model.get("Origin")
    if origin:
        rows.append(("Weights", "shipped with bids_enhance" if origin == "default"
                     else "user-supplied (<code>--checkpoint</code>)"))
    if card.get("card"):
        rows.append(("Model card", f"<code>{_e(card['card'])}</code>"))
    elif not card.get("training_images"):
        rows.append(("Model card", "none next to the checkpoint (summary from the checkpoint's "
                                   "own metadata)"))
    return "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)


def _generative_rows(step: Mapping) -> list[tuple[str, str]]:
    model = step.get("Model") or {}
    rows = [("Model", f"<code>{_e(model.get('Name') or 'n/a')}</code> "
                      f"<small>sha256 <code>{_e(str(model.get('Sha256'))[:16])}…</code></small>"),
            ("Architecture", f"<code>{_e(model.get('Architecture'))}</code>")]
    prefilter = step.get("Prefilter")
    if isinstance(prefilter, Mapping) and prefilter.get("Method"):
        text = (f"<code>{_e(prefilter['Method'])}</code> on the input grid, before the network "
                f"(the filter it was trained behind)")
        sigma = _finite(prefilter.get("NoiseSigma"))
        if sigma is not None:
            text += f"; σ {format_number(sigma)} (image units"
            if prefilter.get("NoiseSigmaEstimator"):
                text += f", estimated: {_e(prefilter['NoiseSigmaEstimator'])}"
            text += ")"
        if prefilter.get("NoiseModel"):
            text += f"; {_e(prefilter['NoiseModel'])} noise model"
        rows.append(("Prefilter", text))
    if step.get("VoxelSizeIn") and step.get("VoxelSizeOut"):
        rows.append(("Voxel size", f"{_mm(step['VoxelSizeIn'])} → {_mm(step['VoxelSizeOut'])}"))
    if "ConsistencyError" in step or step.get("VoxelSizeOut") != step.get("VoxelSizeIn"):
        rows.append(("Data consistency", _consistency_html(step)))
    return rows


def _step_table(index: int, name: str, step: dict, rows: list[tuple[str, str]], *,
                params_label: str) -> str:
    """One enhancement step's heading and key/value table: ``rows``, then the step's
    parameters, device and run time."""
    rows = list(rows)
    params = step.get("Parameters") or {}
    if params:
        rows.append((params_label, "<br>".join(
            f"<code>{_e(k)}</code> = {_format_parameter(v)}" for k, v in params.items())))
    if step.get("Device"):
        rows.append(("Device", f"<code>{_e(step['Device'])}</code>"))
    elapsed = _finite(step.get("ElapsedSeconds"))
    if elapsed is not None:
        rows.append(("Run time", f"{elapsed:.1f} s"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return (f'<h4 class="be-step">Step {index}: {_e(_STEP_NAMES.get(name, name))}</h4>'
            f'<table class="be-table be-kv">{body}</table>')



def _steps_html(steps: list) -> str:
    if not steps:
        return '<p class="be-warning">No enhancement step was recorded.</p>'
    tables = []
    for index, step in enumerate(steps, start=1):
        name = step.get("Step") or "step"
        if step.get("Model") and name != DENOISE.name:  # a generative step
            rows = [("Method", _e(step.get("Method") or "n/a")), *_generative_rows(step)]
            table = _step_table(index, name, step, rows, params_label="Inference")
            tables.append(table + _model_card_details(step["Model"]))
            continue
        method = step.get("Method")
        rows = [("Method", _e(_METHOD_NAMES.get(str(method), method)) if method else "n/a")]
        if step.get("NoiseModel"):
            rows.append(("Noise model", _e(str(step["NoiseModel"]).capitalize())))
        model = step.get("Model") if isinstance(step.get("Model"), Mapping) else None
        if model:  # the learned denoiser: which weights ran
            rows.append(("Model", f"{_e(model.get('Name') or 'n/a')} (sha256 "
                                  f"<code>{_e(str(model.get('Sha256') or '')[:12])}…</code>)"))
        prefilter = step.get("Prefilter")
        if isinstance(prefilter, Mapping) and prefilter.get("Method"):  # what it refines
            given = {"filtered+input": "its output and the noisy input",
                     "filtered+input+sigma": "its output, the noisy input and a σ map",
                     "filtered+input+prinlm": "its output, the noisy input and PRI-NLM's "
                                              "output"}.get(
                str(prefilter.get("NetworkInput")), "its output")
            rows.append(("Prefilter", f"<code>{_e(prefilter['Method'])}</code> first; the "
                                      f"network is given {given}"))
        agg = step.get("Aggregate")
        if isinstance(agg, Mapping) and agg.get("Method"):  # a SURE-weighted average
            weight = _finite(agg.get("Weight"))
            rmse = agg.get("SureRMSE") if isinstance(agg.get("SureRMSE"), Mapping) else {}
            text = (f"<code>{_e(agg['Method'])}</code>, weight "
                    f"{format_number(weight, digits=2) if weight is not None else 'n/a'} "
                    "(the network: the rest), chosen by Stein's unbiased risk estimate")
            best, gain = _finite(agg.get("SureWeight")), _finite(agg.get("EstimatedGainDB"))
            least = _finite(agg.get("MinGainDB"))
            if agg.get("Applied") is False and best and gain is not None and least is not None:
                text += (f"; its best weight, {best:.2f}, would have gained an estimated "
                         f"{gain:.3f} dB over the network alone, less than {least:.2f} dB, so "
                         f"<code>{_e(agg['Method'])}</code> was not run on the whole image")
            if rmse:
                text += " (estimated RMSE: " + ", ".join(
                    f"{_e(str(k))} {format_number(v, digits=3)}" for k, v in rmse.items()
                    if _finite(v) is not None) + ")"
            rows.append(("Averaged with", text))
        region = step.get("NetworkRegion")
        if isinstance(region, Mapping) and isinstance(region.get("Box"), list):
            try:
                edges = "×".join(str(int(b) - int(a)) for a, b in region["Box"])
                shape = "×".join(str(int(n)) for n in region.get("Shape") or [])
            except (TypeError, ValueError):
                edges = shape = ""
            if edges:
                rows.append(("Network region", f"the head's bounding box plus {_e(str(region.get('Margin')))} "
                                       f"voxels ({edges} of {shape} voxels); outside it "
                                       f"{_e(str(region.get('Outside') or 'n/a'))}"))
        table = _step_table(index, name, step, rows, params_label="Parameters")
        tables.append(table + (_model_card_details(model) if model else ""))
    return "".join(tables)


def _model_card_details(model: Mapping) -> str:
    """The folded model-card table of a step that ran a trained network ("" when empty)."""
    card = _model_card_html(model)
    return (f'<details open><summary>Model card</summary><table class="be-table be-kv '
            f'be-compact">{card}</table></details>' if card else "")


def _input_html(info: Mapping) -> str:
    if not info:
        return ""
    bits = []
    if info.get("Shape"):
        bits.append("shape " + "×".join(str(int(s)) for s in info["Shape"]))
    if info.get("VoxelSize"):
        bits.append("voxels " + " × ".join(format_number(v, digits=3) for v in info["VoxelSize"])
                    + " mm")
    if info.get("Orientation"):
        bits.append(f"orientation {_e(info['Orientation'])}")
    if info.get("OriginalDataType"):
        bits.append(f"data type <code>{_e(info['OriginalDataType'])}</code>")
    text = f'<p class="be-input">Input image: {", ".join(bits)}.</p>' if bits else ""
    fixes = info.get("Fixes") or []
    if fixes:
        items = "".join(f"<li>{_e(f)}</li>" for f in fixes)
        text += ('<div class="be-fixes"><p>The input was repaired before processing:</p>'
                 f"<ul>{items}</ul></div>")
    else:
        text += '<p class="be-input">No header or data repairs were needed.</p>'
    return text


def subject_summary_html(*, subject: str, source_files: list[str], bids_dir: str,
                         enhance: list[str], denoise_method: str, noise_model: str,
                         device: str, models: list[str] | None = None) -> str:
    """Summary box: subject, images found (paths relative to the dataset), chain, method."""
    from nipype.utils.filemanip import split_filename

    root = Path(bids_dir).absolute() if bids_dir else None
    items = []
    for path in source_files:
        shown = str(path)
        if root is not None:
            try:
                shown = Path(path).absolute().relative_to(root).as_posix()
            except ValueError:
                shown = Path(path).name
        items.append(f'<li data-image="{_e(split_filename(path)[1])}"><code>{_e(shown)}</code></li>')
    images = f'<ul class="be-images">{"".join(items)}</ul>' if items else "none found"
    chain = " → ".join(_e(_STEP_NAMES.get(s, s)) for s in enhance) or "none"
    rows = [
        ("Subject", f"<code>sub-{_e(subject.removeprefix('sub-'))}</code>"),
        (f"Images ({len(source_files)})", images),
        ("Enhancement chain", chain),
    ]
    if DENOISE.name in enhance:  # only what ran: the method and noise model of denoising
        rows.append(("Denoising method", _denoise_method_html(denoise_method, source_files)))
        rows.append(("Noise model", _e(noise_model.capitalize() if noise_model else "n/a")))
    if models:
        rows.append(("Models", "<br>".join(_e(m) for m in models)))
    rows.append(("Device", f"<code>{_e(device)}</code>"))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    attributes = Chain(steps=tuple(enhance)).html_attributes()
    return (f'<div class="be-summary"{attributes}><table class="be-table be-kv">{body}</table>'
            "</div>\n")


def _denoise_method_html(method: str, source_files: list[str]) -> str:
    """The method's title; for ``auto``, the method each contrast of the subject got."""
    if method != AUTO_DENOISE:
        return _e(_METHOD_NAMES.get(method, method))
    from bids_enhance.bids.naming import suffix_of

    suffixes = sorted({suffix_of(p) for p in source_files})
    chosen = [f"{_e(_METHOD_NAMES[resolve_denoise_method(method, s)])} ({_e(s)})"
              for s in suffixes]
    return ("<br>".join(chosen) + "<br><small>chosen by contrast "
            "(<code>--denoise-method auto</code>); another method is one flag away</small>")


def about_html(*, version: str, command: str, date: str,
               software: Mapping[str, str] | None = None) -> str:
    """Provenance box: bids_enhance version, the command line as run, the date."""
    rows = [
        ("bids_enhance version", f"<code>{_e(version or 'unknown')}</code>"),
        ("Command", f'<code class="be-command">{_e(command)}</code>'),
        ("Date processed", _e(date)),
    ]
    if software:
        rows.append(("Software", ", ".join(f"{_e(k)} {_e(v)}" for k, v in software.items())))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<div class="be-about"><table class="be-table be-kv">{body}</table></div>\n'
