"""Group level: one TSV and one HTML page per suffix summarising every enhanced image.

``<out>/group_<suffix>.tsv`` has one row per image sidecar (``<out>/sub-*/**/*_desc-*_<suffix>
.json``; figures and logs are skipped): its name, entities, the method and noise model, the
estimated noise, and every image-quality metric before and after (``n/a`` where missing, as
BIDS tabular files do). ``<out>/group_<suffix>.html`` is self-contained (inline CSS and SVG, no
script): a before/after plot per main metric across images, the noise estimates, and the table.
"""

from __future__ import annotations

import csv
import html
import io
import json
import logging
import math
from collections.abc import Iterable
from pathlib import Path

from bids_enhance.bids.naming import BIDSNameError, parse_bids_name
from bids_enhance.reports.fragments import (
    IQM_DEFINITIONS,
    MAIN_IQMS,
    format_number,
    noise_sigma,
)
from bids_enhance.utils import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["collect_rows", "group_columns", "run_group", "write_group_html", "write_group_tsv"]

NA = "n/a"
#: File-name entity keys → TSV column names (BIDS long names).
ENTITY_COLUMNS = {
    "sub": "subject", "ses": "session", "acq": "acquisition", "ce": "ceagent",
    "rec": "reconstruction", "dir": "direction", "run": "run", "echo": "echo", "flip": "flip",
    "inv": "inversion", "mt": "mtransfer", "part": "part", "chunk": "chunk",
    "res": "resolution", "desc": "desc",
}
_DATA_DIR = Path(__file__).resolve().parent.parent / "data"


# --------------------------------------------------------------------------------------------
# Rows
# --------------------------------------------------------------------------------------------
#: desc labels that are not enhancement results of their own: ``preproc`` copies one result
#: (``--fmriprep-compat``), ``simulated`` is a simulation-mode input.
_SKIPPED_DESCS = ("preproc", "simulated")


def _sidecars(output_dir: Path, suffix: str) -> list[Path]:
    found = []
    for path in sorted(output_dir.glob(f"sub-*/**/*_desc-*_{suffix}.json")):
        rel = path.relative_to(output_dir).parts
        if any(part in {"figures", "log"} or part.startswith(".") for part in rel):
            continue
        if any(f"_desc-{label}_" in path.name for label in _SKIPPED_DESCS):
            continue
        found.append(path)
    return found


def _number(value) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def collect_rows(output_dir: Path | str, suffix: str) -> list[dict]:
    """One dict per image sidecar of ``suffix`` under ``output_dir`` (see the module doc).

    Keys: ``bids_name``, entity columns, ``steps``, ``method``, ``noise_model``, ``device``,
    ``sigma``, ``sigma_percent``, ``report`` (relative path of the subject report) and
    ``<iqm>_before`` / ``<iqm>_after``; values are strings or floats (``None`` = missing).
    """
    output_dir = Path(output_dir)
    rows = []
    for path in _sidecars(output_dir, suffix):
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            logger.warning("Skipping %s: not readable JSON (%s)", path, exc)
            continue
        try:
            entities, _, _ = parse_bids_name(path)
        except BIDSNameError as exc:
            logger.warning("Skipping %s: %s", path, exc)
            continue
        row: dict = {"bids_name": path.name.removesuffix(".json")}
        for key, value in entities.items():
            row[ENTITY_COLUMNS.get(key, key)] = value
        steps = meta.get("EnhancementSteps") or []
        row["steps"] = "+".join(str(s.get("Step") or "?") for s in steps) or None
        row["method"] = "+".join(str(s.get("Method") or "?") for s in steps) or None
        row["noise_model"] = next((s.get("NoiseModel") for s in steps if s.get("NoiseModel")),
                                  None)
        row["device"] = next((s.get("Device") for s in steps if s.get("Device")), None)
        row["chain"] = [_step_text(s) for s in steps]
        sigma, _ = noise_sigma(meta)
        scale = _number((meta.get("IntensityNormalisation") or {}).get("Scale"))
        row["sigma"] = sigma
        row["sigma_percent"] = 100 * sigma / scale if sigma is not None and scale else None
        row["report"] = f"sub-{entities['sub']}.html"
        metrics = meta.get("QualityMetrics") or {}
        for when in ("Before", "After"):
            for key, value in (metrics.get(when) or {}).items():
                row[f"{key}_{when.lower()}"] = _number(value)
        rows.append(row)
    return rows


def _step_text(step: dict) -> str:
    """One step of the chain, short, for the HTML table: ``denoise: prinlm, rician``,
    ``superres: gan3p_l1_x2`` (the model's name rather than its long description)."""
    name = str(step.get("Step") or "?")
    model = step.get("Model") or {}
    detail = [str(model["Name"])] if model.get("Name") else (
        [str(step["Method"])] if step.get("Method") else [])
    if model.get("Name") and step.get("NoiseModel") and step.get("Method"):  # learned denoiser
        detail = [f"{step['Method']} ({model['Name']})"]
    if step.get("NoiseModel"):
        detail.append(str(step["NoiseModel"]))
    return f"{name}: {', '.join(detail)}" if detail else name


#: Non-entity, non-metric columns, in TSV order (``report`` and ``chain`` are only used by the
#: HTML page).
_FIXED = ["bids_name", "steps", "method", "noise_model", "device", "sigma", "sigma_percent"]
_INTERNAL = {"report", "chain"}


def group_columns(rows: Iterable[dict]) -> list[str]:
    """TSV columns: name, entities (subject and session always), method, noise, IQMs."""
    rows = list(rows)
    present: set[str] = set().union(*(r.keys() for r in rows)) if rows else set()
    known = list(dict.fromkeys(ENTITY_COLUMNS.values()))
    entities = ["subject", "session"] + [c for c in known
                                         if c not in {"subject", "session"} and c in present]
    unknown = sorted(k for k in present if k not in entities and k not in _FIXED
                     and k not in _INTERNAL and k not in known and not _is_iqm(k))
    iqms = [k for k in MAIN_IQMS if f"{k}_before" in present or f"{k}_after" in present]
    others = sorted({k.rsplit("_", 1)[0] for k in present if _is_iqm(k)} - set(iqms))
    iqm_cols = [f"{k}_{w}" for k in [*iqms, *others] for w in ("before", "after")]
    return ["bids_name", *entities, *unknown, *_FIXED[1:], *iqm_cols]


def _is_iqm(key: str) -> bool:
    return key.endswith(("_before", "_after"))


def _cell(value) -> str:
    if value is None:
        return NA
    if isinstance(value, float):
        return NA if not math.isfinite(value) else f"{value:.10g}"
    text = str(value)
    return text.replace("\t", " ").replace("\n", " ") or NA


def write_group_tsv(path: Path, rows: list[dict], columns: list[str]) -> Path:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter="\t", lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    return atomic_write_text(path, buffer.getvalue())


# --------------------------------------------------------------------------------------------
# Plots
# --------------------------------------------------------------------------------------------
def _svg(fig, salt: str) -> str:
    import matplotlib

    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    text = buffer.getvalue()
    return text[text.index("<svg"):]


def _paired_plot(rows: list[dict], key: str) -> tuple[str, str] | None:
    """Inline SVG of a metric before vs after (one line per image) and a one-line summary."""
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.collections import LineCollection
    from matplotlib.figure import Figure

    label, direction, _ = IQM_DEFINITIONS.get(key, (key, None, ""))
    pairs = [(r.get(f"{key}_before"), r.get(f"{key}_after")) for r in rows]
    pairs = [(b, a) for b, a in pairs if b is not None and a is not None]
    if not pairs:
        return None
    values = np.array(pairs, dtype=float)
    log = bool((values > 0).all() and values.max() / max(values.min(), 1e-12) > 100)
    better = {"up": values[:, 1] > values[:, 0], "down": values[:, 1] < values[:, 0]}.get(
        direction, np.zeros(len(values), dtype=bool))
    worse = {"up": values[:, 1] < values[:, 0], "down": values[:, 1] > values[:, 0]}.get(
        direction, np.zeros(len(values), dtype=bool))
    colours = np.where(better, "#1d7a3a", np.where(worse, "#b3261e", "#6b7686"))

    fig = Figure(figsize=(3.4, 2.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    alpha = float(np.clip(8 / np.sqrt(len(values)), 0.15, 0.8))
    segments = [[(0.0, b), (1.0, a)] for b, a in values]
    lines = LineCollection(segments, colors=list(colours), linewidths=0.9, alpha=alpha,
                           rasterized=len(values) > 300)
    ax.add_collection(lines)
    ax.scatter(np.zeros(len(values)), values[:, 0], s=7, color="#6b7686", alpha=alpha, lw=0,
               rasterized=len(values) > 300)
    ax.scatter(np.ones(len(values)), values[:, 1], s=7, color=list(colours), alpha=alpha, lw=0,
               rasterized=len(values) > 300)
    medians = np.median(values, axis=0)
    ax.plot([0, 1], medians, color="#1d2430", lw=2.2, marker="D", ms=5, zorder=5,
            label="median")
    if log:
        ax.set_yscale("log")
    ax.set_xlim(-0.25, 1.25)
    ax.set_xticks([0, 1], ["before", "after"])
    ax.margins(y=0.08)
    ax.autoscale_view()
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.tick_params(labelsize=8)
    ax.grid(axis="y", color="#e3e7ee", lw=0.6)
    arrow = {"up": " (↑ better)", "down": " (↓ better)"}.get(direction, "")
    ax.set_title(f"{label}{arrow}", fontsize=9.5, loc="left")
    fig.tight_layout(pad=0.4)
    svg = _svg(fig, salt=f"group-{key}")
    n = len(values)
    if direction is None:
        note = f"{n} image{'s' if n > 1 else ''}; median {format_number(medians[0])} → " \
               f"{format_number(medians[1])}."
    else:
        note = (f"Better after enhancement in {int(better.sum())} of {n} image"
                f"{'s' if n > 1 else ''}; median {format_number(medians[0])} → "
                f"{format_number(medians[1])}.")
    return svg, note


def _sigma_plot(rows: list[dict]) -> str | None:
    import numpy as np
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    data = [(r["bids_name"], r.get("sigma_percent")) for r in rows]
    data = sorted([(n, v) for n, v in data if v is not None], key=lambda x: x[1])
    if not data:
        return None
    fig = Figure(figsize=(3.4, 2.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    values = np.array([v for _, v in data])
    ax.scatter(np.arange(len(values)), values, s=12, color="#1f5f99", lw=0)
    ax.axhline(float(np.median(values)), color="#6b7686", lw=1, ls="--")
    ax.set_ylim(0, float(values.max()) * 1.15)
    ax.set_xlabel("images, sorted", fontsize=8)
    ax.set_ylabel("% of robust maximum", fontsize=8)
    ax.set_xticks([])
    ax.tick_params(labelsize=8)
    for side in ("top", "right"):
        ax.spines[side].set_visible(False)
    ax.set_title("Estimated noise σ", fontsize=9.5, loc="left")
    fig.tight_layout(pad=0.4)
    return _svg(fig, salt="group-sigma")


# --------------------------------------------------------------------------------------------
# HTML
# --------------------------------------------------------------------------------------------
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>bids_enhance group report: {{ suffix }}</title>
<style>
{{ css }}
</style>
</head>
<body>
<header class="be-topbar">
  <div class="be-brand">bids_enhance<small>group report · {{ suffix }}</small></div>
  <ul class="be-nav">
    <li><a href="#metrics">Metrics</a></li>
    <li><a href="#table">Table</a></li>
  </ul>
</header>
<main class="be-wide">
<section class="be-section" id="metrics">
  <h1>{{ n_images }} {{ suffix }} image{{ "s" if n_images != 1 }} of {{ n_subjects }} participant{{ "s" if n_subjects != 1 }}</h1>
  <p class="be-desc">Each line is one image, from its value before enhancement to its value after
  (green: better, red: worse, grey: no better direction); the dark line joins the medians.
  Metrics as in MRIQC (Esteban et al. 2017), measured on the same masks before and after. They
  reward any smoothing: check the residual maps of the subject reports for removed structure.
  The data are in <a href="{{ tsv_name }}"><code>{{ tsv_name }}</code></a>.</p>
  {% if failures %}
  <div class="be-warning"><strong>Some participants have failed processing steps</strong> in
  their latest run; their images may be missing here:
  <ul>{% for f in failures %}<li><a href="{{ f.report }}#Errors"><code>sub-{{ f.subject }}</code></a>:
  {{ f.count }} crash file{{ "s" if f.count > 1 }}</li>{% endfor %}</ul></div>
  {% endif %}
  <div class="be-plots">
  {% for plot in plots %}
    <div class="be-plot">{{ plot.svg }}<p>{{ plot.note }}</p></div>
  {% endfor %}
  </div>
</section>
<section class="be-section" id="table">
  <h1>Images</h1>
  <div class="be-table-wrap">
  <table class="be-table be-group-table">
    <thead><tr>{% for c in columns %}<th{% if c.num %} class="be-num"{% endif %}{% if c.title %} title="{{ c.title }}"{% endif %}>{{ c.label }}</th>{% endfor %}</tr></thead>
    <tbody>
    {% for row in table %}<tr>{% for cell in row %}<td{% if cell.num %} class="be-num"{% endif %}>{{ cell.html }}</td>{% endfor %}</tr>
    {% endfor %}
    </tbody>
  </table>
  </div>
  <div class="be-legend">{{ legend }}</div>
</section>
</main>
<footer class="be-footer">Generated {{ generated }} by bids_enhance {{ version }} from the
image sidecars under <code>sub-*/</code>.</footer>
</body>
</html>
"""


def latest_failures(output_dir: Path) -> list[dict]:
    """Participants whose most recent run (``sub-*/log/<run>/``) left crash files."""
    failures = []
    for log in sorted(Path(output_dir).glob("sub-*/log")):
        runs = sorted(p for p in log.iterdir() if p.is_dir())
        if not runs:
            continue
        count = len(list(runs[-1].glob("crash*")))
        if count:
            subject = log.parent.name.removeprefix("sub-")
            failures.append({"subject": html.escape(subject), "count": count,
                             "report": html.escape(f"sub-{subject}.html")})
    return failures


def write_group_html(path: Path, rows: list[dict], suffix: str, tsv_name: str) -> Path:
    from datetime import UTC, datetime

    import jinja2

    from bids_enhance import __version__

    plots = []
    sigma = _sigma_plot(rows)
    if sigma:
        plots.append({"svg": sigma, "note": "Noise estimated by the denoiser, as a percentage "
                                            "of each input's robust maximum (P99.9)."})
    for key in MAIN_IQMS:
        made = _paired_plot(rows, key)
        if made:
            plots.append({"svg": made[0], "note": html.escape(made[1])})

    e = html.escape
    iqms = [k for k in MAIN_IQMS if any(r.get(f"{k}_before") is not None for r in rows)]
    columns = [{"label": "image"}, {"label": "steps"},
               {"label": "σ", "num": True,
                "title": "estimated noise, image units and % of the robust maximum"}]
    for key in iqms:
        label, direction, definition = IQM_DEFINITIONS[key]
        arrow = {"up": " ↑", "down": " ↓"}.get(direction, "")
        columns.append({"label": f"{e(label)}{arrow}", "num": True,
                        "title": e(f"before, after. {definition}")})
    table = []
    for row in sorted(rows, key=lambda r: r["bids_name"]):
        name = "_<wbr>".join(e(part) for part in row["bids_name"].split("_"))
        cells = [{"html": f'<a href="{e(row["report"])}"><code>{name}</code></a>'}]
        chain = row.get("chain") or []
        cells.append({"html": "<br>".join(f'<span class="be-nowrap">{e(s)}</span>'
                                          for s in chain) if chain
                      else f'<span class="be-na">{NA}</span>'})
        sigma = format_number(row.get("sigma"))
        if row.get("sigma_percent") is not None:
            sigma += f'<br><small>{format_number(row["sigma_percent"], digits=3)} %</small>'
        cells.append({"html": _na(sigma), "num": True})
        for key in iqms:
            direction = IQM_DEFINITIONS[key][1]
            cells.append({"html": _pair_html(row.get(f"{key}_before"),
                                             row.get(f"{key}_after"), direction),
                          "num": True})
        table.append(cells)
    legend = _legend_html(iqms)

    css = (_DATA_DIR / "report.css").read_text(encoding="utf-8")
    text = jinja2.Template(_PAGE, autoescape=False).render(
        suffix=e(suffix), css=css, plots=plots, columns=columns, table=table, legend=legend,
        failures=latest_failures(path.parent),
        n_images=len(rows), n_subjects=len({r.get("subject") for r in rows}),
        tsv_name=e(tsv_name), version=__version__,
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
    return atomic_write_text(path, text)


def _na(text: str) -> str:
    return f'<span class="be-na">{NA}</span>' if text == NA else text


def _pair_html(before, after, direction: str | None) -> str:
    """A metric cell of the group table: the value before over the value after, the latter
    green when better, red when worse."""
    verdict = ""
    if direction is not None and before is not None and after is not None and after != before:
        better = after > before if direction == "up" else after < before
        verdict = " be-better" if better else " be-worse"
    return (f"{_na(format_number(before))}<br>"
            f'<span class="be-after{verdict}">{_na(format_number(after))}</span>')


#: Short expansions of the metric abbreviations for the legend under the group table.
_ABBREVIATIONS = {
    "snr_total": "signal-to-noise ratio, mean over CSF, GM and WM",
    "snr_wm": "SNR in white matter", "snr_gm": "SNR in grey matter",
    "snr_csf": "SNR in cerebrospinal fluid",
    "snr_dietrich": "SNR with the noise measured in the air around the head",
    "cnr": "contrast-to-noise ratio of WM and GM",
    "cjv": "coefficient of joint variation of WM and GM",
    "efc": "entropy focus criterion",
    "fber": "foreground-background energy ratio",
    "wm2max": "median WM intensity over the image's 99.95th percentile",
}


def _legend_html(iqms: list[str]) -> str:
    e = html.escape
    names = "; ".join(f"<strong>{e(IQM_DEFINITIONS[k][0])}</strong>: {e(_ABBREVIATIONS[k])}"
                      for k in iqms if k in _ABBREVIATIONS)
    items = "".join(f"<dt>{e(IQM_DEFINITIONS[k][0])}</dt><dd>{e(IQM_DEFINITIONS[k][2])}</dd>"
                    for k in iqms)
    return (
        "<p>Each metric cell shows the value <strong>before</strong> enhancement above the "
        "value <strong>after</strong> it, green when better and red when worse (↑: higher is "
        "better, ↓: lower is better). <strong>n/a</strong>: the metric has no finite value "
        "(e.g. Dietrich's SNR and FBER once the background is zero); the IQM table of the "
        "subject report says why. <strong>σ</strong>: the noise the denoiser estimated, in "
        "image units and as a percentage of the robust maximum. <strong>steps</strong>: the "
        "chain, with the method or model of each step. The image name links to its subject "
        "report; every column is in the TSV.</p>"
        + (f"<p>{names}.</p>" if names else "")
        + (f'<details class="be-footnote"><summary>What the metrics mean</summary>'
           f'<dl class="be-defs">{items}</dl></details>' if items else ""))


def run_group(output_dir: Path, suffixes: list[str]) -> list[Path]:
    """Write ``group_<suffix>.tsv`` and ``.html`` for every suffix with outputs.

    Returns the paths written. Raises ``ValueError`` (one line, naming ``output_dir``) when no
    image sidecar of any of ``suffixes`` is found.
    """
    output_dir = Path(output_dir)
    written: list[Path] = []
    for suffix in dict.fromkeys(suffixes):
        rows = collect_rows(output_dir, suffix)
        if not rows:
            logger.info("No %s outputs under %s", suffix, output_dir)
            continue
        tsv = write_group_tsv(output_dir / f"group_{suffix}.tsv", rows, group_columns(rows))
        page = write_group_html(output_dir / f"group_{suffix}.html", rows, suffix, tsv.name)
        written += [tsv, page]
    if not written:
        wanted = ", ".join(f"*_desc-*_{s}.json" for s in dict.fromkeys(suffixes)) or "nothing"
        raise ValueError(f"{output_dir}: no enhanced-image sidecars ({wanted}) were found under "
                         "sub-*/; run the participant level first")
    return written
