"""Assemble ``<out>/sub-<label>.html`` from the reportlets in ``<out>/sub-<label>/figures/``.

nireports' :class:`~nireports.assembler.report.Report` reads our specification
(``bids_enhance/data/reports-spec.yml``) and builds sections of
:class:`~nireports.assembler.reportlet.Reportlet` objects that our template
(``bids_enhance/data/report.tpl``, self-contained, no CDN) renders. Three parts are ours:

* **Finding the figures.** nireports indexes reportlets with a pybids layout whose entity
  patterns are matched against *absolute* paths: an output directory under ``…/run-2/`` or
  ``/scratch/sub-07/`` gives every figure that run or subject, and its ``figures`` configuration
  lacks some anatomical entities (``chunk``) and accepts only ``mag|phase|real|imag`` for
  ``part``. :class:`FigureIndex` answers the same ``get(**entities)`` queries from the file
  names alone (:func:`bids_enhance.bids.naming.parse_bids_name`): every entity of the source is
  kept, so echoes, parts, runs, … each get their own section.
* **Errors.** nireports' ``custom: errors`` reportlet also loads pickled crash files, does not
  escape tracebacks and relies on Bootstrap's JavaScript; ours reads the plain-text ones
  (``crash-*.txt``, with nireports' ``read_crashfile``; pickled ones are never loaded), shows
  each error's one-line message first with the traceback folded, and lists the figures that are
  missing.
* **Captions.** Reportlets with ``captions: <kind>`` get a subtitle and description built from
  the steps that ran on their image (:mod:`bids_enhance.reports.captions`; the chain is read
  from the image's IQM reportlet, else from the subject summary); the specification's own text
  is the fallback when neither says.
* **Methods.** ``custom: boilerplate`` shows ``logs/CITATION.html`` (written by
  :mod:`bids_enhance.reports.boilerplate`), with the Markdown and BibTeX folded below.

The report is produced whatever is missing, so a failed run still explains itself.
"""

from __future__ import annotations

import copy
import html
import logging
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from nireports.assembler.misc import read_crashfile
from nireports.assembler.report import Report, SubReport
from nireports.assembler.reportlet import Reportlet

from bids_enhance.bids.naming import BIDSNameError, parse_bids_name, split_extension
from bids_enhance.reports.captions import Chain, caption
from bids_enhance.utils import atomic_path, atomic_write_text

logger = logging.getLogger(__name__)

__all__ = ["DATA_DIR", "SPEC", "FigureIndex", "SubjectReport", "generate_report",
           "parse_crash_file"]

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SPEC = DATA_DIR / "reports-spec.yml"

#: File-name entity keys → the entity names nireports/pybids queries use.
ENTITY_NAMES = {
    "sub": "subject", "ses": "session", "acq": "acquisition", "ce": "ceagent",
    "rec": "reconstruction", "dir": "direction", "mod": "modality", "trc": "tracer",
    "nuc": "nucleus", "voi": "volume", "res": "resolution", "den": "density",
}
_EXCEPTION_LINE = re.compile(
    r"^\s*(?:[A-Za-z_][\w]*\.)*([A-Za-z_]\w*(?:Error|Exception|Exit|Interrupt|Failure|Warning))"
    r"(?::\s?(.*))?$")


# --------------------------------------------------------------------------------------------
# Figure index
# --------------------------------------------------------------------------------------------
@dataclass
class FigureFile:
    """A reportlet file and its entities (pybids names), as nireports' Reportlet expects."""

    path: str
    entities: dict[str, str] = field(default_factory=dict)

    def get_entities(self) -> dict[str, str]:
        return dict(self.entities)

    @property
    def filename(self) -> str:
        return Path(self.path).name


def figure_entities(path: Path | str) -> dict[str, str] | None:
    """Entities of a reportlet file name, or ``None`` if it is not a BIDS name."""
    try:
        entities, suffix, ext = parse_bids_name(path)
    except BIDSNameError:
        return None
    out = {ENTITY_NAMES.get(k, k): v for k, v in entities.items()}
    out.update(suffix=suffix, extension=ext, datatype="figures")
    return out


class FigureIndex:
    """``get(**entities)`` over the reportlets of one ``figures`` folder, from file names only.

    Query values: a string (equal), a list (any of), ``None`` (entity absent); with
    ``regex_search=True`` strings are regular expressions matched in full.
    """

    def __init__(self, figures_dir: Path | str, *, root: Path | str):
        self.figures_dir = Path(figures_dir)
        self.root = str(root)
        self.files: list[FigureFile] = []
        if self.figures_dir.is_dir():
            for path in sorted(self.figures_dir.iterdir()):
                if path.name.startswith(".") or not path.is_file():
                    continue  # hidden and .tmp-* files of an interrupted write
                entities = figure_entities(path)
                if entities is None:
                    logger.debug("Ignoring %s: not a BIDS file name", path)
                    continue
                self.files.append(FigureFile(str(path), entities))

    def get(self, regex_search: bool = False, **query) -> list[FigureFile]:
        def matches(have: str | None, want) -> bool:
            if want is None:
                return have is None
            if have is None:
                return False
            if isinstance(want, list | tuple | set):
                return any(matches(have, w) for w in want)
            if regex_search:
                return re.fullmatch(str(want), str(have)) is not None
            return str(have) == str(want)

        return [f for f in self.files
                if all(matches(f.entities.get(k), v) for k, v in query.items())]


def image_id(path: Path | str) -> str:
    """``sub-01_ses-a_run-1_desc-flicker_T1w.svg`` → ``sub-01_ses-a_run-1_T1w``."""
    stem, _ = split_extension(Path(path).name)
    return re.sub(r"_desc-[A-Za-z0-9]+", "", stem)


def _image_key(name: str) -> tuple:
    """Order-independent identity of an image name (entities and suffix)."""
    try:
        entities, suffix, _ = parse_bids_name(name + ".nii.gz")
    except BIDSNameError:
        return (name,)
    entities.pop("desc", None)
    return (frozenset(entities.items()), suffix)


def _anchor(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_-]+", "-", text).strip("-") or "item"


# --------------------------------------------------------------------------------------------
# Crash files
# --------------------------------------------------------------------------------------------
def parse_crash_file(path: Path | str) -> dict:
    """Read a nipype plain-text crash file with nireports' reader, plus its one-line error.

    Returns ``{"file", "node", "workdir", "inputs": [(name, value)], "traceback", "error",
    "message"}``. ``message`` is the one-line error: the innermost ``SomethingError: …`` line
    (e.g. the error a nipype ``NodeExecutionError`` wraps), else the last line of the file;
    ``error`` is that exception's name (``None`` if no line names one). Files without the
    ``Node:`` header (errors raised outside a node) are read too. Only ``*.txt`` files are
    read: pickled crash files are never loaded (unpickling runs code).
    """
    path = Path(path)
    if path.suffix != ".txt":
        raise ValueError(f"{path}: only plain-text crash files (crash-*.txt) are read")
    try:
        data = read_crashfile(path)
    except (UnicodeDecodeError, IndexError, ValueError):
        # not quite nipype's layout (empty, not UTF-8, an input line without " = "): keep the
        # node, so the error is still shown with its image, and the whole text
        text = path.read_text(encoding="utf-8", errors="replace")
        first = text.split("\n", 1)[0]
        data = {"traceback": text.strip(),
                "node": first[len("Node:"):].strip() if first.startswith("Node:") else None}
    info: dict = {"file": str(path), "node": data.get("node"), "workdir": None,
                  "inputs": list(data.get("inputs", [])), "traceback": data["traceback"]}
    if info["node"] is not None:
        info["workdir"] = data.get("node_dir")
    info["error"], info["message"] = _crash_message(info["traceback"])
    return info


def _crash_message(traceback: str) -> tuple[str | None, str]:
    """(exception name, one-line message) of the innermost exception of a traceback."""
    lines = traceback.splitlines()
    for line in reversed(lines):
        match = _EXCEPTION_LINE.match(line)
        if match:
            name, message = match.group(1), (match.group(2) or "").strip()
            return name, f"{name}: {message}" if message else name
    return None, next((ln.strip() for ln in reversed(lines) if ln.strip()), "unknown error")


# --------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------
class _Note:
    """A reportlet with ready-made HTML (same attributes as nireports' Reportlet)."""

    def __init__(self, name: str, body: str, *, title: str | None = None,
                 subtitle: str | None = None, description: str | None = None,
                 caption: str | None = None):
        self.name = name
        self.title = title
        self.subtitle = subtitle
        self.description = description
        self.components = [(body, caption)]

    def is_empty(self) -> bool:
        return not self.components


class SubjectReport(Report):
    """nireports Report over ``<out>/sub-<subject>/figures`` with our index, errors, methods."""

    def __init__(self, output_dir: Path | str, run_uuid: str, *, subject: str,
                 spec: Path | str | None = None):
        self.problems: list[str] = []
        self.crashes: list[dict] = []
        self.crash_dir: Path | None = None
        self.image_names: list[str] = []
        self.n_crashes = 0
        self.subject = subject.removeprefix("sub-")
        self.run_uuid = run_uuid
        super().__init__(
            Path(output_dir), run_uuid, bootstrap_file=Path(spec or SPEC),
            out_filename=f"sub-{self.subject}.html", reportlets_dir=Path(output_dir),
            metadata={"data_dir": str(DATA_DIR)}, subject=self.subject)

    # -- indexing ---------------------------------------------------------------------------
    def index(self, config):
        out_dir = Path(config["out_dir"])
        filters = dict(config.get("bids_filters") or {})
        index = FigureIndex(out_dir / f"sub-{self.subject}" / "figures", root=out_dir)
        metadata = config.get("metadata", {})
        expected = self._expected_images(index, filters)
        self.crashes = []
        for section in config["sections"]:
            for cfg in section.get("reportlets", []):
                if cfg.get("custom") == "errors":
                    self.crash_dir = _resolve(cfg.get("path", ""), out_dir)
                    if self.crash_dir.is_dir():
                        self.crashes = [parse_crash_file(f)
                                        for f in sorted(self.crash_dir.glob("crash*.txt"))]
        built: list[SubReport | dict] = []
        for section in config["sections"]:
            if any("custom" in r for r in section.get("reportlets", [])):
                built.append(section)  # rendered last, once every problem is known
            elif section.get("ordering"):
                built.append(self._image_section(section, index, filters, metadata, out_dir,
                                                 expected))
            else:
                built.append(self._plain_section(section, index, filters, metadata, out_dir))
        self.sections = []
        for item in built:
            if isinstance(item, dict):
                item = self._custom_section(item, out_dir)
            if item is not None and item.reportlets:
                self.sections.append(item)

    def _reportlet(self, cfg, index, filters, metadata, out_dir):
        newest_only = cfg.get("newest_only", False)
        cfg = {k: copy.deepcopy(v) for k, v in cfg.items()
               if k not in {"missing", "newest_only", "optional", "captions"}}
        if newest_only and "bids" in cfg:
            # Subject-level reportlets are named after the first suffix of the run: a run over
            # other suffixes leaves an older one behind. Show the newest only.
            hits = index.get(**{**filters, **cfg["bids"]})
            if len(hits) > 1:
                newest = max(hits, key=lambda f: (Path(f.path).stat().st_mtime, f.path))
                cfg["bids"]["suffix"] = newest.entities["suffix"]
        rlet = Reportlet(index, config=cfg, out_dir=out_dir, bids_filters=filters,
                         metadata=metadata)
        rlet.name = _anchor(rlet.name)
        return rlet

    def _plain_section(self, section, index, filters, metadata, out_dir) -> SubReport:
        reportlets = []
        for cfg in section.get("reportlets", []):
            rlet = self._reportlet(cfg, index, filters, metadata, out_dir)
            if not rlet.is_empty():
                reportlets.append(rlet)
            elif cfg.get("missing"):
                self.problems.append(cfg["missing"])
                reportlets.append(_Note(f"missing-{_anchor(section['name'])}",
                                        f'<p class="be-warning">{cfg["missing"]} See '
                                        '<a href="#Errors">Errors</a>.</p>'))
        return SubReport(section["name"], reportlets=reportlets, title=section.get("title"))

    def _image_section(self, section, index, filters, metadata, out_dir,
                       expected: dict[tuple, str]) -> SubReport:
        cfgs = [c for c in section.get("reportlets", []) if "bids" in c]
        descs = sorted({c["bids"]["desc"] for c in cfgs if "desc" in c["bids"]})
        hits = index.get(**filters, desc=descs) if descs else index.get(**filters)
        orderings = [s.strip() for s in section["ordering"].split(",") if s.strip()]
        entities, combos = self._process_orderings(orderings, hits)
        if hits and not combos:
            entities, combos = [], [()]
        reportlets: list = []
        seen: set[tuple] = set()
        subject_chain = self._subject_chain(index, filters)
        for combo in combos:
            query = dict(zip(entities, combo, strict=True))
            group = [h for h in hits
                     if all(h.entities.get(k) == v for k, v in query.items())]
            names = sorted({image_id(h.path) for h in group})
            self.image_names.extend(n for n in names if n not in self.image_names)
            seen.update(_image_key(n) for n in names)
            title = ", ".join(names)
            chain = _image_chain(group) or subject_chain
            members, missing = [], []
            for cfg in cfgs:
                cfg = copy.deepcopy(cfg)
                cfg["bids"].update(query)
                rlet = self._reportlet(cfg, index, filters, metadata, out_dir)
                if rlet.is_empty():
                    if cfg.get("optional"):
                        continue  # only some images have it (e.g. super-resolution)
                    missing.append(cfg.get("missing") or cfg.get("subtitle") or "a figure")
                else:
                    if cfg.get("captions") and chain is not None:
                        rlet.subtitle, rlet.description = caption(cfg["captions"], chain)
                    members.append(rlet)
            if missing:
                items = "".join(f"<li>{m}</li>" for m in missing)
                items += "".join(f"<li>{self._crash_summary(n)}</li>" for n in names
                                 if self._crash_summary(n))
                self.problems.append(f"<code>{html.escape(title)}</code>: missing "
                                     + ", ".join(missing) + ".")
                members.append(_Note(
                    "missing", '<div class="be-warning">Some figures of this image are missing '
                    f'(see <a href="#Errors">Errors</a>):<ul>{items}</ul></div>'))
            members[0].title = title
            members[0].name = "image-" + _anchor(title)
            reportlets.extend(members)
        for key, name in expected.items():
            if name not in self.image_names:
                self.image_names.append(name)
            if key in seen:
                continue
            self.problems.append(f"<code>{html.escape(name)}</code>: no figures at all "
                                 "(processing of this image probably failed).")
            reportlets.append(_Note(
                "image-" + _anchor(name),
                '<div class="be-warning">No figures were produced for this image: its '
                'processing probably failed. See <a href="#Errors">Errors</a>.'
                + self._crash_summary(name) + "</div>", title=name))
        return SubReport(section["name"], isnested=True, reportlets=reportlets,
                         title=section.get("title"))

    def _image_of(self, crash: dict) -> str | None:
        """The image whose workflow a crash happened in, among the images the report knows."""
        for name in self.image_names:
            if crash in self._crashes_of(name):
                return name
        return None

    def _crashes_of(self, name: str) -> list[dict]:
        """Crash files whose node belongs to the workflow of image ``name``."""
        workflow = _workflow_id(name)
        if workflow is None:
            return []
        return [c for c in self.crashes if c["node"] and workflow in c["node"].split(".")]

    def _crash_summary(self, name: str) -> str:
        """The one-line errors of the crashes of image ``name`` (HTML; empty if none)."""
        items = []
        for crash in self._crashes_of(name):
            node = ".".join(crash["node"].split(".")[-2:])
            items.append(f'<li><code class="be-crash-inline">{html.escape(crash["message"])}'
                         f"</code> (node <code>{html.escape(node)}</code>)</li>")
        if not items:
            return ""
        return f'<div class="be-crash-list">Error in this image:<ul>{"".join(items)}</ul></div>'

    def _subject_chain(self, index: FigureIndex, filters) -> Chain | None:
        """The chain of steps the newest subject summary names (``data-steps``), if any."""
        summaries = index.get(**filters, desc="summary", extension=".html")
        if not summaries:
            return None
        summary = max(summaries, key=lambda f: (Path(f.path).stat().st_mtime, f.path))
        return Chain.from_html(Path(summary.path).read_text(encoding="utf-8",
                                                            errors="replace"))

    def _expected_images(self, index: FigureIndex, filters) -> dict[tuple, str]:
        """Images the subject summary lists (``data-image`` attributes), by identity."""
        out: dict[tuple, str] = {}
        summaries = index.get(**filters, desc="summary", extension=".html")
        if summaries:  # the newest one (see ``newest_only`` in the specification)
            summary = max(summaries, key=lambda f: (Path(f.path).stat().st_mtime, f.path))
            text = Path(summary.path).read_text(encoding="utf-8", errors="replace")
            for name in re.findall(r'data-image="([^"]+)"', text):
                name = html.unescape(name)
                out.setdefault(_image_key(name), name)
        return out

    # -- custom sections --------------------------------------------------------------------
    def _custom_section(self, section, out_dir: Path) -> SubReport | None:
        reportlets = []
        for cfg in section.get("reportlets", []):
            kind = cfg.get("custom")
            path = _resolve(cfg.get("path", ""), out_dir)
            if kind == "errors":
                reportlets.append(self._errors(path, out_dir, cfg.get("caption")))
            elif kind == "boilerplate":
                reportlets.append(self._boilerplate(path, cfg.get("caption")))
            else:
                logger.warning("Unknown custom reportlet %r in the report specification", kind)
        return SubReport(section["name"], reportlets=reportlets, title=section.get("title"))

    def _errors(self, crash_dir: Path, out_dir: Path, caption: str | None) -> _Note:
        pickled = sorted(crash_dir.glob("crash*.pklz")) if crash_dir.is_dir() else []
        crashes = self.crashes if crash_dir == self.crash_dir else [
            parse_crash_file(f) for f in sorted(crash_dir.glob("crash*.txt"))
        ] if crash_dir.is_dir() else []
        self.n_crashes = len(crashes) + len(pickled)
        parts = []
        if crashes or pickled:
            parts.append('<div class="be-alert be-alert-error"><strong>'
                         f"{self.n_crashes} processing step"
                         f"{'s' if self.n_crashes > 1 else ''} failed.</strong> The error "
                         "message of each is shown first; unfold for the node's inputs and "
                         "the full traceback.</div>")
        for crash in crashes:
            parts.append(_crash_html(crash, out_dir, image=self._image_of(crash)))
        for crash in pickled:
            parts.append('<div class="be-crash"><p class="be-crash-message">A pickled crash '
                         f"file was not read: <code>{html.escape(_rel(crash, out_dir))}</code>"
                         "</p><p class=\"be-crash-meta\">Crash files are only read as plain text "
                         "(nipype <code>crashfile_format = txt</code>).</p></div>")
        if self.problems:
            items = "".join(f"<li>{p}</li>" for p in self.problems)
            parts.append('<div class="be-warning"><strong>Missing figures.</strong> '
                         f"<ul>{items}</ul></div>")
        if not parts:
            parts.append('<p class="be-alert be-alert-ok">No errors to report.</p>')
        return _Note("errors", "\n".join(parts), caption=caption)

    def _boilerplate(self, logs: Path, caption: str | None) -> _Note:
        html_file, md_file, bib_file = (logs / f"CITATION.{x}" for x in ("html", "md", "bib"))
        parts = []
        if html_file.is_file():
            text = html_file.read_text(encoding="utf-8", errors="replace")
            match = re.search(r"<body[^>]*>(.*?)</body>", text, re.DOTALL | re.IGNORECASE)
            parts.append(f'<div class="be-boilerplate">{(match.group(1) if match else text).strip()}'
                         "</div>")
        if md_file.is_file():
            md = html.escape(md_file.read_text(encoding="utf-8", errors="replace"))
            if parts:
                parts.append("<details><summary>Markdown (with citation keys, for pandoc)"
                             f"</summary><pre>{md}</pre></details>")
            else:
                parts.append(f'<pre class="be-boilerplate">{md}</pre>')
        if bib_file.is_file() and parts:
            bib = html.escape(bib_file.read_text(encoding="utf-8", errors="replace"))
            parts.append(f"<details><summary>BibTeX</summary><pre>{bib}</pre></details>")
        if not parts:
            self.problems.append("The methods text (<code>logs/CITATION.html</code>) was not "
                                 "found.")
            return _Note("boilerplate", '<p class="be-warning">The methods text was not '
                         "generated (<code>logs/CITATION.*</code> is missing).</p>")
        return _Note("boilerplate", "\n".join(parts), caption=caption)

    # -- rendering --------------------------------------------------------------------------
    def _problems_text(self) -> str:
        bits = []
        if self.n_crashes:
            bits.append(f"{self.n_crashes} processing step{'s' if self.n_crashes > 1 else ''} "
                        "failed")
        if self.problems:
            n = len(self.problems)
            bits.append(f"figures or texts are missing for {n} item{'s' if n > 1 else ''}")
        return ("; ".join(bits) + ".") if bits else ""

    def generate_report(self):
        """Render the template and write ``out_filename`` atomically."""
        import jinja2

        from bids_enhance import __version__

        env = jinja2.Environment(
            loader=jinja2.FileSystemLoader(searchpath=str(self.template_path.parent)),
            trim_blocks=True, lstrip_blocks=True, autoescape=False)
        text = env.get_template(self.template_path.name).render(
            title=self.title, sections=self.sections, header=self.header, navbar=self.navbar,
            footer=self.footer, subject=self.subject, run_uuid=self.run_uuid,
            n_errors=self.n_crashes + len(self.problems), n_crashes=self.n_crashes,
            n_missing=len(self.problems), problems_text=self._problems_text(),
            version=__version__,
            generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"))
        atomic_write_text(self.out_filename, text)
        return 0


def _image_chain(group: list[FigureFile]) -> Chain | None:
    """The chain of steps of one image, from its IQM reportlet (``data-steps``)."""
    for figure in group:
        if figure.entities.get("desc") == "iqms" and figure.entities.get("extension") == ".html":
            chain = Chain.from_html(Path(figure.path).read_text(encoding="utf-8",
                                                                errors="replace"))
            if chain is not None:
                return chain
    return None


def _resolve(path, out_dir: Path) -> Path:
    path = Path(str(path))
    return path if path.is_absolute() else out_dir / path


def _workflow_id(name: str) -> str | None:
    """Name of the per-image workflow (``<image_id>_wf``, workflows/base.py) of an image."""
    from bids_enhance.bids.naming import image_id as workflow_image_id

    try:
        return f"{workflow_image_id(name + '.nii.gz')}_wf"
    except BIDSNameError:
        return None


def _rel(path: Path, root: Path) -> str:
    try:
        return Path(path).relative_to(root).as_posix()
    except ValueError:
        return str(path)


def _crash_html(info: dict, out_dir: Path, *, image: str | None = None) -> str:
    e = html.escape
    meta = [f"image <code>{e(image)}</code>"] if image else []
    if info["node"]:
        meta.append(f"node <code>{e(info['node'])}</code>")
    meta.append(f"crash file <code>{e(_rel(Path(info['file']), out_dir))}</code>")
    details = []
    if info["workdir"]:
        details.append(f"<p>Working directory: <code>{e(info['workdir'])}</code></p>")
    if info["inputs"]:
        items = "".join(f"<li><code>{e(k)}</code> = <code>{e(v)}</code></li>"
                        for k, v in info["inputs"])
        details.append(f"<p>Inputs:</p><ul>{items}</ul>")
    details.append(f"<pre>{e(info['traceback'])}</pre>")
    return ('<div class="be-crash">'
            f'<p class="be-crash-message">{e(info["message"])}</p>'
            f'<p class="be-crash-meta">{" · ".join(meta)}</p>'
            f'<details><summary>Inputs and traceback</summary>{"".join(details)}</details>'
            "</div>")


def generate_report(output_dir: Path, subject: str, run_uuid: str) -> Path:
    """Write ``<output_dir>/sub-<subject>.html`` (atomically) and return its path.

    Works on whatever the run left: missing figures and crash files are explained in the
    report's Errors section rather than stopping the report.
    """
    output_dir = Path(output_dir).absolute()
    subject = subject.removeprefix("sub-")
    final = output_dir / f"sub-{subject}.html"
    report = SubjectReport(output_dir, run_uuid, subject=subject)
    with atomic_path(final) as tmp:
        report.out_filename = tmp
        report.generate_report()
    return final
