"""Golden record of what a participant run gives a user: images, sidecars, reports.

:func:`run_scenarios` runs the CLI in-process on a small copy of the demo dataset
(:func:`bids_enhance.demo.make_demo_dataset` at 4 mm; ``make demo`` runs the same builder at
1 mm): the demo's two commands (the default chain on two images, ``--enhance superres`` with
the shipped weights on the 8 mm subject, plus ``--fmriprep-compat``), the group level, and
``--simulate noise-rician-3`` into a second output folder (scenarios ``demo`` and
``simulate``, each named after its output folder). :func:`record_outputs` turns an
output folder into a JSON-able record and :func:`compare` lists every difference between two
records, with tolerances for numbers (floats may differ in their last bits between machines
and thread counts; a rounded hash would not tolerate that, so images are summarised by
statistics).

What the record holds, per file (relative path; ``<run>`` for the run-id folder of logs):

- NIfTI: shape, on-disk dtype, zooms, units, scaling, qform/sform (codes and affines) and the
  data's statistics (mean, std, min, max, percentiles, fraction of zeros, centre of mass and
  the means of a 3×3×3 partition of the grid, which catch flips and shifts that global
  statistics miss).
- JSON: the content, with run-specific values normalised (see :data:`VOLATILE_KEYS` and
  :func:`normalise_text`).
- HTML (reports and reportlets): the title, the headings, the files and anchors it links to,
  the kinds of embedded images, and its visible text block by block (no style, scripts or
  embedded SVG); numbers in the text are compared with a tolerance of one unit of their last
  printed digit.
- SVG figures: the view box, the number of embedded raster images and whether it animates.
- TSV: the columns and the rows, compared cell by cell (numbers as in HTML).
- Markdown, BibTeX and other text: the lines (numbers compared as in HTML).
- ``sub-*/log/<run>/*`` (run settings, crash files): the names only.

Left out or normalised, because they change from run to run or machine to machine: absolute
paths (``<OUT>``, ``<BIDS>``, ``<WORK>``, ``<TMP>``, ``<PKG>`` for the installed package),
run ids, uuids and timestamps, ``X.Y.Z`` version numbers, the JSON keys of
:data:`VOLATILE_KEYS` (value replaced, key kept) and the report rows of
:data:`VOLATILE_LABELS`; the work directory is not recorded at all.

Tolerances: floats within 1e-3 relative (JSON: or 1e-6 absolute; image statistics: or 1e-4 of
the image's largest absolute value; affines 1e-4 mm, zooms 1e-5 mm absolute); numbers printed in
text within one unit of their last printed digit (up to 4 decimals) or 1e-3 relative;
integers below 1000 (counts, shapes, labels) exactly.

Regenerate the committed record (``tests/data/golden_participant.json``) from COMMITTED code
only, never from a working tree with unreviewed edits::

    git worktree add /tmp/golden_src HEAD
    cp tests/golden.py /tmp/golden_src/tests/    # only while golden.py itself is uncommitted
    (cd /tmp/golden_src && PYTHONPATH=/tmp/golden_src .../.venv/bin/python -m tests.golden \\
        --update --output /path/to/repo/tests/data/golden_participant.json)
    git worktree remove --force /tmp/golden_src

or, in a clean checkout, ``python -m tests.golden --update`` (run from the repository root;
it refuses to write while ``bids_enhance/`` has uncommitted changes, and records the commit).
``python -m tests.golden`` without ``--update`` runs the scenarios and prints the differences
from the committed record (``--keep DIR`` keeps the outputs, ``--dump FILE`` the new record).
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

GOLDEN_PATH = Path(__file__).parent / "data" / "golden_participant.json"
FORMAT = 1

#: the demo dataset's images used here: sub-01 (float32, RAS, 3 % noise) and sub-02 ses-2
#: (int16 with scaling, LPS, qform 2 mm off the sform, 6 % noise); sub-03 is the 2x voxel one
VOXEL_SIZE = 4.0
DEMO_SUBSET = (("01", None, 0.03, "float32"), ("02", "2", 0.06, "int16-lps-qformshift"))
SEED = "42"
SIMULATE = "noise-rician-3"

#: tolerances: relative for every float, absolute floors for JSON floats, and for image
#: statistics a floor relative to the image's largest absolute value
REL_TOL = 1e-3
ABS_TOL_JSON = 1e-6
ABS_TOL_IMAGE = 1e-4
ABS_TOL_AFFINE = 1e-4

#: JSON keys whose values change from run to run (or machine to machine); the key is kept,
#: its value replaced by a placeholder, so that a key that disappears is still reported
VOLATILE_KEYS = {
    "RunId": "<run-id>",                # timestamp + uuid of the run
    "ElapsedSeconds": "<seconds>",      # wall time of a step (also any key ending in Seconds)
    "SoftwareDependencies": None,       # versions of installed packages: keys kept
    "Version": "<version>",             # GeneratedBy[].Version: the package version
}
_VOLATILE_KEY_SUFFIXES = ("Seconds", "Duration", "Hostname")
#: labels of report table rows whose cell changes from run to run
VOLATILE_LABELS = {
    "Command": "<command>",             # sys.argv of the process (pytest's, here)
    "Date processed": "<timestamp>",
    "Software": "<software versions>",
    "bids_enhance version": "<version>",
    "Run time": "<seconds>",            # wall time of a generative step
}

_RUN_DIR = re.compile(r"^\d{8}-\d{6}_[0-9a-f]{8}(-[0-9a-f]{4}){3}-[0-9a-f]{12}$")
_RUN_ID = re.compile(r"\d{8}-\d{6}_[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}")
_UUID = re.compile(r"[0-9a-f]{8}(?:-[0-9a-f]{4}){3}-[0-9a-f]{12}")
_TIMESTAMP = re.compile(r"\d{4}-\d{2}-\d{2}[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?"
                        r"(?:\s*UTC|Z|[+-]\d{2}:?\d{2})?")
#: X.Y.Z version numbers (``0.1.0``, ``2.13.0+cpu``), not parts of DOIs or dates
_VERSION = re.compile(r"(?<![\w.])\d+\.\d+\.\d+(?:[+\w]*)(?![\w.]*\d)")
_NUMBER = re.compile(r"(?<![\w.])[-+−]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?(?![\w])")


# -- running --------------------------------------------------------------------------------

def scenario_argv(bids: Path, root: Path) -> dict[str, list[list[str]]]:
    """The commands of each scenario (output folder name → CLI argument lists, in order)."""
    out, sim, work = root / "demo", root / "simulate", root / "work"
    common = ["-w", str(work), "--nprocs", "1", "--omp-nthreads", "1", "--random-seed", SEED,
              "--skip-bids-validation"]
    return {
        "demo": [
            [str(bids), str(out), "participant", "--participant-label", "01", "02", *common],
            [str(bids), str(out), "participant", "--participant-label", "03", "--enhance",
             "superres", "--fmriprep-compat", *common],
            [str(bids), str(out), "group"],
        ],
        "simulate": [
            [str(bids), str(sim), "participant", "--participant-label", "01", "--simulate",
             SIMULATE, *common],
        ],
    }


@contextlib.contextmanager
def _shipped_weights():
    """The package's own weights, whatever BIDS_ENHANCE_MODELS_DIR says."""
    from bids_enhance.inference.weights import MODELS_DIR_ENV

    saved = os.environ.pop(MODELS_DIR_ENV, None)
    try:
        yield
    finally:
        if saved is not None:
            os.environ[MODELS_DIR_ENV] = saved


def run_scenarios(root: Path) -> dict[str, Any]:
    """Build the dataset under ``root`` and run every scenario; returns the folders, the exit
    codes (``{scenario: [code, ...]}``) and the roots to normalise in the record."""
    from bids_enhance.cli.run import main
    from bids_enhance.demo import make_demo_dataset

    root = Path(root)
    bids = make_demo_dataset(root / "bids", voxel_size=VOXEL_SIZE, images=DEMO_SUBSET,
                             lowres=True)
    codes: dict[str, list[int]] = {}
    with _shipped_weights():
        for name, commands in scenario_argv(bids, root).items():
            codes[name] = [main(argv) for argv in commands]
    return {"root": root, "bids": bids, "codes": codes,
            "outputs": {name: root / name for name in codes}}


def _roots(root: Path, bids: Path, out: Path) -> list[tuple[str, str]]:
    import bids_enhance

    pkg = Path(bids_enhance.__file__).resolve().parent
    pairs = [(out, "<OUT>"), (bids, "<BIDS>"), (root / "work", "<WORK>"), (root, "<TMP>"),
             (pkg, "<PKG>")]
    found = []
    for path, name in pairs:
        for variant in {str(path), str(Path(path).resolve())}:
            found.append((variant, name))
    return sorted(found, key=lambda item: -len(item[0]))  # the longest path first


# -- normalising ----------------------------------------------------------------------------

def normalise_text(text: str, roots: list[tuple[str, str]]) -> str:
    """Absolute paths of this run → ``<OUT>``, ``<BIDS>``, ``<WORK>``, ``<TMP>``, ``<PKG>``
    (the installed package); run ids, uuids and timestamps → placeholders."""
    for path, name in roots:
        text = text.replace("file://" + path, "file://" + name).replace(path, name)
    text = _RUN_ID.sub("<run-id>", text)
    text = _UUID.sub("<uuid>", text)
    text = _TIMESTAMP.sub("<timestamp>", text)
    return _VERSION.sub("<version>", text)


def normalise_json(value: Any, roots: list[tuple[str, str]]) -> Any:
    if isinstance(value, dict):
        result = {}
        for key, item in value.items():
            if key in VOLATILE_KEYS or key.endswith(_VOLATILE_KEY_SUFFIXES):
                placeholder = VOLATILE_KEYS.get(key, "<volatile>")
                if placeholder is None and isinstance(item, dict):
                    result[key] = {k: "<version>" for k in sorted(item)}
                else:
                    result[key] = placeholder
            else:
                result[key] = normalise_json(item, roots)
        return result
    if isinstance(value, list):
        return [normalise_json(item, roots) for item in value]
    if isinstance(value, str):
        return normalise_text(value, roots)
    if isinstance(value, float):
        return _round(value)
    return value


def _round(value: float, digits: int = 7) -> float | str | None:
    if value is None:
        return None
    value = float(value)
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(f"{value:.{digits}g}")


# -- recording ------------------------------------------------------------------------------

def record_outputs(out: Path, roots: list[tuple[str, str]]) -> dict[str, Any]:
    """``{relative path: record}`` of every file under ``out``."""
    out = Path(out)
    files: dict[str, Any] = {}
    for path in sorted(p for p in out.rglob("*") if p.is_file()):
        rel = path.relative_to(out).parts
        if len(rel) >= 3 and rel[0].startswith("sub-") and rel[1] == "log":
            name = "/".join((*rel[:2], "<run>" if _RUN_DIR.match(rel[2]) else rel[2],
                             *rel[3:]))
            files[name] = {"kind": "log"}  # settings and crash files of a run: names only
            continue
        files["/".join(rel)] = record_file(path, roots)
    return files


def record_file(path: Path, roots: list[tuple[str, str]]) -> dict[str, Any]:
    name = path.name
    if name.endswith((".nii.gz", ".nii")):
        return record_nifti(path)
    if name.endswith(".json"):
        return {"kind": "json",
                "content": normalise_json(json.loads(path.read_text(encoding="utf-8")), roots)}
    if name.endswith(".html"):
        return record_html(path.read_text(encoding="utf-8"), roots)
    if name.endswith(".svg"):
        return record_svg(path.read_text(encoding="utf-8"))
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return {"kind": "binary", "size": len(data)}
    lines = [normalise_text(line.rstrip(), roots) for line in text.splitlines()]
    if name.endswith(".tsv") and lines:
        header, *rows = (line.split("\t") for line in lines if line)
        return {"kind": "tsv", "columns": header, "rows": rows}
    return {"kind": "text", "lines": lines}


def record_nifti(path: Path) -> dict[str, Any]:
    import nibabel as nib
    import numpy as np

    img = nib.load(path)
    header = img.header
    data = np.asanyarray(img.get_fdata(dtype=np.float64))
    finite = data[np.isfinite(data)]
    slope, inter = header.get_slope_inter()
    record: dict[str, Any] = {
        "kind": "nifti",
        "shape": list(img.shape),
        "dtype": str(header.get_data_dtype()),
        "zooms": [_round(z) for z in header.get_zooms()],
        "xyzt_units": list(header.get_xyzt_units()),
        "scaled": slope is not None and not (slope == 1 and (inter or 0) == 0),
        "descrip": header["descrip"].item().decode("latin-1"),
        "sform_code": int(header["sform_code"]),
        "qform_code": int(header["qform_code"]),
        "sform": [[_round(v) for v in row] for row in img.get_sform()],
        "qform": [[_round(v) for v in row] for row in img.get_qform()],
        "nonfinite": int(data.size - finite.size),
    }
    scale = float(np.abs(finite).max()) if finite.size else 0.0
    percentiles = (1, 5, 25, 50, 75, 95, 99)
    stats = {"mean": finite.mean(), "std": finite.std(), "min": finite.min(),
             "max": finite.max(),
             **{f"p{q}": v for q, v in zip(percentiles, np.percentile(finite, percentiles),
                                           strict=True)}} if finite.size else {}
    record["stats"] = {k: _round(v) for k, v in stats.items()}
    record["zero_fraction"] = _round(float((data == 0).mean()))
    clean = np.where(np.isfinite(data), data, 0.0)
    weights = np.abs(clean)
    total = weights.sum()
    grids = np.indices(data.shape[:3], dtype=np.float64)
    com = [float((g * weights.reshape(data.shape[:3] + (-1,)).sum(-1)).sum() / total)
           if total else 0.0 for g in grids]
    record["centre_of_mass_voxels"] = [_round(c) for c in com]
    volume = clean.reshape(data.shape[:3] + (-1,)).mean(-1)
    blocks = []
    for i in np.array_split(np.arange(volume.shape[0]), 3):
        for j in np.array_split(np.arange(volume.shape[1]), 3):
            for k in np.array_split(np.arange(volume.shape[2]), 3):
                blocks.append(_round(volume[np.ix_(i, j, k)].mean()))
    record["block_means"] = blocks
    record["scale"] = _round(scale)
    return record


class _HTMLText(HTMLParser):
    BLOCK = {"p", "div", "section", "header", "footer", "main", "nav", "article", "aside",
             "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol", "li", "dl", "dt", "dd", "table",
             "thead", "tbody", "tr", "td", "th", "caption", "pre", "br", "hr", "details",
             "summary", "figure", "figcaption", "blockquote", "object", "small", "title"}
    SKIP = {"style", "script", "svg"}

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.blocks: list[str] = []
        self.headings: list[str] = []
        self.links: set[str] = set()
        self.embedded: list[str] = []
        self.title = ""
        self._buffer: list[str] = []
        self._skip = 0
        self._heading: str | None = None
        self._heading_text: list[str] = []
        self._in_title = False

    def _flush(self) -> None:
        text = " ".join("".join(self._buffer).split())
        if text:
            self.blocks.append(text)
        self._buffer = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in self.SKIP:
            if tag == "svg" and not self._skip:
                self.embedded.append("svg")
            self._skip += 1
            return
        if self._skip:
            return
        if tag in self.BLOCK:
            self._flush()
        if tag in {"h1", "h2", "h3", "h4", "h5", "h6"}:
            self._heading, self._heading_text = tag, []
        if tag == "title":
            self._in_title = True
        for key in ("href", "src", "data"):
            value = attrs.get(key)
            if not value:
                continue
            if value.startswith("data:"):
                self.embedded.append(value.split(";", 1)[0].split(",", 1)[0])
            else:
                self.links.add(value)

    def handle_startendtag(self, tag, attrs):
        self.handle_starttag(tag, attrs)
        if tag in self.SKIP:
            self._skip -= 1

    def handle_endtag(self, tag):
        if tag in self.SKIP:
            self._skip = max(0, self._skip - 1)
            return
        if self._skip:
            return
        if tag in self.BLOCK:
            self._flush()
        if tag == self._heading:
            self.headings.append(f"{tag}: " + " ".join("".join(self._heading_text).split()))
            self._heading = None
        if tag == "title":
            self._in_title = False

    def handle_data(self, data):
        if self._skip:
            return
        self._buffer.append(data)
        if self._heading:
            self._heading_text.append(data)
        if self._in_title:
            self.title += data

    def close(self):
        super().close()
        self._flush()


def record_html(html: str, roots: list[tuple[str, str]]) -> dict[str, Any]:
    parser = _HTMLText()
    parser.feed(html)
    parser.close()
    blocks = [normalise_text(b, roots) for b in parser.blocks]
    # a key/value row whose value changes from run to run: the label stays, the value goes
    for i, block in enumerate(blocks[:-1]):
        if block in VOLATILE_LABELS:
            blocks[i + 1] = VOLATILE_LABELS[block]
    return {
        "kind": "html",
        "title": normalise_text(" ".join(parser.title.split()), roots),
        "headings": [normalise_text(h, roots) for h in parser.headings],
        "links": sorted(normalise_text(link, roots) for link in parser.links),
        "embedded": sorted(parser.embedded),
        "text": blocks,
    }


def record_svg(svg: str) -> dict[str, Any]:
    head = svg[:2000]
    match = re.search(r'viewBox="([^"]+)"', head)
    return {
        "kind": "svg",
        "viewBox": [_round(float(v), 4) for v in match.group(1).split()] if match else None,
        "raster_images": len(re.findall(r"<image\b", svg)),
        "animated": "@keyframes" in svg,
    }


def build_record(result: dict[str, Any]) -> dict[str, Any]:
    """The record of :func:`run_scenarios`' outputs."""
    root, bids = result["root"], result["bids"]
    scenarios = {}
    argv = scenario_argv(bids, root)
    for name, out in result["outputs"].items():
        roots = _roots(root, bids, out)
        scenarios[name] = {
            "commands": [[normalise_text(a, roots) for a in cmd] for cmd in argv[name]],
            "exit_codes": result["codes"][name],
            "files": record_outputs(out, roots),
        }
    return {"format": FORMAT, "scenarios": scenarios}


# -- comparing ------------------------------------------------------------------------------

def compare(golden: dict[str, Any], actual: dict[str, Any],
            scenarios: list[str] | None = None) -> list[str]:
    """Every difference between two records (or only their ``scenarios``), one line each:
    ``<scenario>/<file>: <where> <new> != <golden> (golden)``."""
    diffs: list[str] = []
    if golden.get("format") != actual.get("format"):
        return [f"record format {actual.get('format')} != {golden.get('format')} (golden)"]
    gs, as_ = golden["scenarios"], actual["scenarios"]
    for name in sorted(set(gs) | set(as_) if scenarios is None else scenarios):
        if name not in as_ or name not in gs:
            diffs.append(f"{name}: scenario {'missing' if name not in as_ else 'unexpected'}")
            continue
        g, a = gs[name], as_[name]
        if g["exit_codes"] != a["exit_codes"]:
            diffs.append(f"{name}: exit codes {a['exit_codes']} != {g['exit_codes']} (golden)")
        gf, af = g["files"], a["files"]
        for path in sorted(set(gf) - set(af)):
            diffs.append(f"{name}/{path}: missing (in the golden record)")
        for path in sorted(set(af) - set(gf)):
            diffs.append(f"{name}/{path}: new file (not in the golden record)")
        for path in sorted(set(gf) & set(af)):
            diffs.extend(compare_file(f"{name}/{path}", gf[path], af[path]))
    return diffs


def compare_file(where: str, golden: dict, actual: dict) -> list[str]:
    if golden.get("kind") != actual.get("kind"):
        return [f"{where}: kind {actual.get('kind')} != {golden.get('kind')} (golden)"]
    kind = golden["kind"]
    if kind == "nifti":
        return _compare_nifti(where, golden, actual)
    if kind == "json":
        diffs: list[str] = []
        _compare_json(f"{where}: ", "", golden["content"], actual["content"], diffs)
        return diffs
    if kind == "html":
        diffs = []
        for key in ("title", "headings", "links", "embedded"):
            if golden[key] != actual[key]:
                diffs.extend(_list_diff(f"{where}: {key}", _as_list(golden[key]),
                                        _as_list(actual[key])))
        diffs.extend(_compare_blocks(f"{where}: text", golden["text"], actual["text"]))
        return diffs
    if kind == "text":
        return _compare_blocks(f"{where}: line", golden["lines"], actual["lines"])
    if kind == "tsv":
        return _compare_tsv(where, golden, actual)
    diffs = []
    _compare_json(f"{where}: ", "", golden, actual, diffs)
    return diffs


def _compare_tsv(where: str, golden: dict, actual: dict) -> list[str]:
    """Rows matched on their first cell, cells on their column's name."""
    diffs = []
    if golden["columns"] != actual["columns"]:
        diffs.extend(_list_diff(f"{where}: columns", golden["columns"], actual["columns"]))
    grows = {row[0]: row for row in golden["rows"]}
    arows = {row[0]: row for row in actual["rows"]}
    if list(grows) != list(arows):
        diffs.extend(_list_diff(f"{where}: rows", list(grows), list(arows)))
    for key in (k for k in grows if k in arows):
        g = dict(zip(golden["columns"], grows[key], strict=False))
        a = dict(zip(actual["columns"], arows[key], strict=False))
        for column in (c for c in golden["columns"] if c in a and c in g):
            if g[column] != a[column] and not _text_equal(g[column], a[column]):
                diffs.append(f"{where}: row {key} column {column}: {_fmt(a[column])} != "
                             f"{_fmt(g[column])} (golden)")
    return diffs


def _as_list(value) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _list_diff(where: str, golden: list[str], actual: list[str]) -> list[str]:
    lines = []
    for item in golden:
        if item not in actual:
            lines.append(f"{where}: lost {item!r}")
    for item in actual:
        if item not in golden:
            lines.append(f"{where}: new {item!r}")
    return lines or [f"{where}: order {actual} != {golden} (golden)"]


def _close(g: float, a: float, abs_tol: float, rel_tol: float = REL_TOL) -> bool:
    return abs(a - g) <= max(abs_tol, rel_tol * max(abs(g), abs(a)))


def _compare_nifti(where: str, g: dict, a: dict) -> list[str]:
    diffs = []
    for key in ("shape", "dtype", "xyzt_units", "scaled", "descrip", "sform_code",
                "qform_code", "nonfinite"):
        if g.get(key) != a.get(key):
            diffs.append(f"{where}: {key} {a.get(key)} != {g.get(key)} (golden)")
    for key, tol in (("zooms", 1e-5), ("sform", ABS_TOL_AFFINE), ("qform", ABS_TOL_AFFINE),
                     ("centre_of_mass_voxels", 1e-3), ("zero_fraction", 1e-3)):
        _compare_json(f"{where}: ", key, g.get(key), a.get(key), diffs, abs_tol=tol,
                      rel_tol=0.0 if key in ("sform", "qform", "zooms") else REL_TOL)
    floor = ABS_TOL_IMAGE * max(abs(g.get("scale") or 0.0), 1e-12)
    for key in ("scale", "stats", "block_means"):
        _compare_json(f"{where}: ", key, g.get(key), a.get(key), diffs, abs_tol=floor)
    return diffs


def _fmt(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str | dict | list) \
        else repr(value)


def _compare_json(prefix: str, path: str, g: Any, a: Any, diffs: list[str], *,
                  abs_tol: float = ABS_TOL_JSON, rel_tol: float = REL_TOL) -> None:
    here = path or "(root)"
    if isinstance(g, dict) and isinstance(a, dict):
        for key in g:
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                diffs.append(f"{prefix}{sub} missing (golden: {_short(_fmt(g[key]))})")
            else:
                _compare_json(prefix, sub, g[key], a[key], diffs, abs_tol=abs_tol,
                              rel_tol=rel_tol)
        for key in a:
            if key not in g:
                sub = f"{path}.{key}" if path else str(key)
                diffs.append(f"{prefix}{sub} new ({_short(_fmt(a[key]))})")
        return
    if isinstance(g, list) and isinstance(a, list):
        if len(g) != len(a):
            diffs.append(f"{prefix}{here} has {len(a)} items != {len(g)} (golden)")
        for i, (gi, ai) in enumerate(zip(g, a, strict=False)):
            _compare_json(prefix, f"{path}[{i}]", gi, ai, diffs, abs_tol=abs_tol,
                          rel_tol=rel_tol)
        return
    if isinstance(g, bool) or isinstance(a, bool):
        if g is not a:
            diffs.append(f"{prefix}{here} {_fmt(a)} != {_fmt(g)} (golden)")
        return
    if isinstance(g, float) and isinstance(a, int | float) or \
            isinstance(a, float) and isinstance(g, int | float):
        if not _close(float(g), float(a), abs_tol, rel_tol):
            diffs.append(f"{prefix}{here} {a!r} != {g!r} (golden)")
        return
    if isinstance(g, str) and isinstance(a, str):
        if g != a and not _text_equal(g, a):
            diffs.append(f"{prefix}{here} {_short(_fmt(a))} != {_short(_fmt(g))} (golden)")
        return
    if g != a:
        diffs.append(f"{prefix}{here} {_short(_fmt(a))} != {_short(_fmt(g))} (golden)")


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _template(text: str) -> str:
    return _NUMBER.sub("#", text)


def _numbers(text: str) -> list[str]:
    return _NUMBER.findall(text)


def _number_close(g: str, a: str) -> bool:
    """Printed numbers: one unit of the last printed digit, or the relative tolerance;
    integers below 1000 exactly (counts, shapes, labels)."""
    if g == a:
        return True
    gv, av = (float(s.replace("−", "-")) for s in (g, a))
    mantissa = g.lower().split("e")[0]
    decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
    unit = 10.0 ** -decimals * 1.0001 if 0 < decimals <= 4 else 0.0
    if decimals == 0 and abs(gv) < 1000:
        return False
    return _close(gv, av, max(unit, ABS_TOL_JSON))


def _text_equal(g: str, a: str) -> bool:
    if _template(g) != _template(a):
        return False
    gn, an = _numbers(g), _numbers(a)
    return len(gn) == len(an) and all(_number_close(x, y) for x, y in zip(gn, an, strict=True))


def _compare_blocks(where: str, golden: list[str], actual: list[str]) -> list[str]:
    """Text blocks (or lines) aligned on their text with the numbers masked; numbers then
    compared with :func:`_number_close`."""
    diffs = []
    matcher = difflib.SequenceMatcher(a=[_template(b) for b in golden],
                                      b=[_template(b) for b in actual], autojunk=False)
    for op, g0, g1, a0, a1 in matcher.get_opcodes():
        if op == "equal":
            for i, j in zip(range(g0, g1), range(a0, a1), strict=True):
                if not _text_equal(golden[i], actual[j]):
                    label = next((golden[k] for k in range(i - 1, -1, -1)
                                  if re.search(r"[^\W\d_]", _template(golden[k]))), None)
                    after = f" (after {_short(_fmt(label), 60)})" if label else ""
                    diffs.append(f"{where} {i + 1}{after}: {_short(_fmt(actual[j]))} != "
                                 f"{_short(_fmt(golden[i]))} (golden)")
            continue
        for i in range(g0, g1):
            diffs.append(f"{where} {i + 1} (golden) lost: {_short(_fmt(golden[i]))}")
        for j in range(a0, a1):
            diffs.append(f"{where} {j + 1} new: {_short(_fmt(actual[j]))}")
    return diffs


# -- provenance and the command line --------------------------------------------------------

def _source_commit() -> dict[str, Any]:
    """The commit of the imported package's checkout, and whether its package differs."""
    import bids_enhance

    repo = Path(bids_enhance.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], check=True,
                                capture_output=True, text=True).stdout.strip()
        status = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--",
                                 "bids_enhance"], check=True, capture_output=True,
                                text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return {"commit": None, "package_modified": None}
    return {"commit": commit, "package_modified": bool(status)}


def load_golden(path: Path = GOLDEN_PATH) -> dict[str, Any]:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def write_golden(record: dict[str, Any], path: Path = GOLDEN_PATH) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(record, indent=1, ensure_ascii=False, sort_keys=False) + "\n"
    path.write_text(text, encoding="utf-8")


def digest(record: dict[str, Any]) -> str:
    """sha256 of a record without its provenance (two runs: the same digest, or not)."""
    body = {k: v for k, v in record.items() if k != "generated_from"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.golden", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--update", action="store_true",
                        help="write the record instead of comparing with it")
    parser.add_argument("--output", type=Path, default=GOLDEN_PATH,
                        help=f"the golden record (default: {GOLDEN_PATH})")
    parser.add_argument("--keep", type=Path, default=None,
                        help="run in this folder and keep it (default: a temporary one)")
    parser.add_argument("--dump", type=Path, default=None,
                        help="also write the new record here")
    args = parser.parse_args(argv)
    source = _source_commit()
    if args.update and source["package_modified"]:
        print("refusing --update: the package has uncommitted changes (generate the record "
              "from committed code, see the module docstring)", file=sys.stderr)
        return 2
    with contextlib.ExitStack() as stack:
        root = args.keep or Path(stack.enter_context(tempfile.TemporaryDirectory()))
        record = build_record(run_scenarios(root))
    record = {"generated_from": {**source, "command": "python -m tests.golden --update"},
              **record}
    if args.dump:
        write_golden(record, args.dump)
    if args.update:
        write_golden(record, args.output)
        print(f"wrote {args.output} (commit {source['commit']}, digest {digest(record)[:12]})")
        return 0
    diffs = compare(load_golden(args.output), record)
    print("\n".join(diffs) if diffs else "no differences")
    return 1 if diffs else 0


if __name__ == "__main__":
    raise SystemExit(main())
