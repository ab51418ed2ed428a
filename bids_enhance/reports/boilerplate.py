"""Methods text ("boilerplate") files: ``logs/CITATION.md``, ``.bib`` and ``.html``.

The Markdown comes from the workflows' ``__desc__`` texts with Pandoc citations (``[@key]``,
``[@a; @b]``, in-text ``@key``). fMRIPrep turns it into HTML with pandoc and citeproc; we do not
depend on pandoc: :func:`render_markdown` converts the small Markdown subset the descriptions use
and renders citations in author–year form (Chicago style, as pandoc's default) with a reference
list built from ``bids_enhance/data/boilerplate.bib``, which is read with bibtexparser (v2:
entries, ``@string`` macros, BibTeX name splitting, each entry's source text) and decoded with
pylatexenc. The renderer is ours: citeproc-py's CSL Chicago author–date gives no year suffixes
(2023a/2023b) for equal author–year labels. ``CITATION.md`` keeps the keys, so users who prefer
pandoc can still run it with ``CITATION.bib``.
"""

from __future__ import annotations

import functools
import html
import logging
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import bibtexparser
from bibtexparser.exceptions import BlockAbortedException
from bibtexparser.middlewares import NameParts, SeparateCoAuthors, SplitNameParts
from pylatexenc.latex2text import LatexNodes2Text

from bids_enhance.utils import atomic_write_text

logger = logging.getLogger(__name__)

__all__ = [
    "BibEntry",
    "DEFAULT_BIB",
    "cited_keys",
    "load_bibliography",
    "parse_bibtex",
    "render_markdown",
    "write_citation_files",
]

DEFAULT_BIB = Path(__file__).resolve().parent.parent / "data" / "boilerplate.bib"

#: Pandoc citation key: starts with a letter, digit or _, may contain internal punctuation.
_KEY = r"[A-Za-z0-9_](?:[A-Za-z0-9_]|[:.#$%&+?<>~/-](?=[A-Za-z0-9_]))*"
_BRACKET = re.compile(r"\[([^\[\]]*?-?@" + _KEY + r"[^\[\]]*?)\](?!\()")
_INTEXT = re.compile(r"(?<![\w@.])@(" + _KEY + r")")
_ITEM_KEY = re.compile(r"(-?)@(" + _KEY + r")")


# --------------------------------------------------------------------------------------------
# BibTeX
# --------------------------------------------------------------------------------------------
#: Fields whose values are identifiers, not LaTeX text: not decoded (``~``, ``%``, ``_`` kept).
_VERBATIM = frozenset({"doi", "url", "eprint", "file", "isbn", "issn"})


@dataclass
class BibEntry:
    """One BibTeX entry: type, key, fields (lower-case names, raw values), its source text and
    its authors as (family, given) pairs in plain text (``others`` as ``("et al.", "")``)."""

    kind: str
    key: str
    fields: dict[str, str] = field(default_factory=dict)
    source: str = ""
    people: list[tuple[str, str]] = field(default_factory=list)

    def authors(self) -> list[str]:
        """Family names of the authors; ``"others"`` becomes ``"et al."`` (kept last)."""
        return [family for family, _ in self.people]

    def full_authors(self) -> list[tuple[str, str]]:
        """(family, given) pairs of the authors, in order; ``others`` as ("et al.", "")."""
        return list(self.people)

    def get(self, name: str) -> str:
        """Plain text of field ``name`` (identifiers such as ``doi`` as written); ``""`` if
        absent."""
        value = self.fields.get(name, "")
        return " ".join(value.split()) if name in _VERBATIM else latex_to_text(value)


def _person(name: NameParts) -> tuple[str, str]:
    """(family, given) of one parsed name: family is "von Last" (", Jr" appended)."""
    if not name.first and not name.von and name.last == ["others"] and not name.jr:
        return ("et al.", "")
    family = latex_to_text(" ".join(name.von + name.last))
    if name.jr:
        family += ", " + latex_to_text(" ".join(name.jr))
    return (family, latex_to_text(" ".join(name.first)))


def parse_bibtex(text: str) -> dict[str, BibEntry]:
    """Parse BibTeX ``text`` into ``{key: BibEntry}`` with bibtexparser (``@comment``,
    ``@preamble`` skipped, ``@string`` macros resolved, author names split the BibTeX way).

    Raises ``ValueError`` naming the block that cannot be read (unbalanced braces or quotes,
    a duplicate key, a malformed name list).
    """
    library = bibtexparser.parse_string(
        text, append_middleware=[SeparateCoAuthors(), SplitNameParts()])
    if library.failed_blocks:
        block = library.failed_blocks[0]
        error = block.error
        reason = getattr(error, "abort_reason", "") or str(error) or type(error).__name__
        if isinstance(error, BlockAbortedException):
            reason += " (unbalanced braces or quotes?)"
        first = (block.raw or "").strip().splitlines()[:1]
        raise ValueError(f"BibTeX block at line {(block.start_line or 0) + 1} "
                         f"({first[0][:60] if first else '?'}): {reason}")
    entries: dict[str, BibEntry] = {}
    for entry in library.entries:
        fields: dict[str, str] = {}
        people: list[tuple[str, str]] = []
        for item in entry.fields:
            name = item.key.lower()
            if isinstance(item.value, list):  # author/editor/translator: list[NameParts]
                fields[name] = " and ".join(n.merge_last_name_first for n in item.value)
                if name == "author":
                    people = [_person(n) for n in item.value]
            else:
                fields[name] = " ".join(str(item.value).split())
        entries[entry.key] = BibEntry(kind=entry.entry_type.lower(), key=entry.key,
                                      fields=fields, source=entry.raw or "", people=people)
    return entries


#: LaTeX → plain text; math kept verbatim, as bibtexparser's ``LatexDecodingMiddleware`` does.
_LATEX = LatexNodes2Text(math_mode="verbatim")


@functools.lru_cache(maxsize=4096)
def latex_to_text(value: str) -> str:
    """Plain text of a BibTeX value (pylatexenc): accent macros to Unicode, ``--`` to an en
    dash, ``\\&`` to ``&``, braces dropped, whitespace collapsed."""
    return unicodedata.normalize("NFC", " ".join(_LATEX.latex_to_text(value).split()))


def load_bibliography(path: Path | str | None = None) -> dict[str, BibEntry]:
    return parse_bibtex(Path(path or DEFAULT_BIB).read_text(encoding="utf-8"))


# --------------------------------------------------------------------------------------------
# Citations
# --------------------------------------------------------------------------------------------
def cited_keys(markdown: str) -> list[str]:
    """Citation keys in ``markdown``, in order of first appearance (bracketed and in-text)."""
    keys: list[str] = []
    for match in re.finditer(_BRACKET.pattern + "|" + _INTEXT.pattern, markdown):
        if match.group(1) is not None:
            found = [m.group(2) for m in _ITEM_KEY.finditer(match.group(1))]
        else:
            found = [match.group(2)]
        keys.extend(k for k in found if k not in keys)
    return keys


def _author_label(entry: BibEntry) -> str:
    names = entry.authors()
    if not names:
        return entry.get("title") or entry.key
    if len(names) == 1:
        return names[0]
    if len(names) == 2 and names[1] != "et al.":
        return f"{names[0]} and {names[1]}"
    return f"{names[0]} et al."


def _sort_key(entry: BibEntry) -> tuple:
    names = entry.authors()
    return (unicodedata.normalize("NFKD", names[0] if names else entry.key).casefold(),
            entry.get("year"), entry.get("title").casefold())


class _Citer:
    """Author–year labels for the cited entries, with a/b suffixes for equal labels."""

    def __init__(self, entries: dict[str, BibEntry], keys: list[str]):
        self.entries = entries
        known = [k for k in keys if k in entries]
        self.ordered = sorted(known, key=lambda k: _sort_key(entries[k]))
        groups: dict[tuple[str, str], list[str]] = {}
        for key in self.ordered:
            entry = entries[key]
            groups.setdefault((_author_label(entry), entry.get("year")), []).append(key)
        self.year: dict[str, str] = {}
        for (_, year), members in groups.items():
            for index, key in enumerate(members):
                suffix = "abcdefghijklmnopqrstuvwxyz"[index] if len(members) > 1 else ""
                self.year[key] = (year or "n.d.") + suffix

    def parenthetical(self, content: str) -> str:
        items = []
        for raw in content.split(";"):
            match = _ITEM_KEY.search(raw)
            if not match:
                items.append(html.escape(raw.strip()))
                continue
            prefix = raw[: match.start()].strip()
            suffix = raw[match.end():].strip().lstrip(",").strip()
            key = match.group(2)
            suppress = match.group(1) == "-"
            if key not in self.entries:
                logger.warning("Citation key %r is not in the bibliography", key)
                cite = f"<strong>{html.escape(key)}?</strong>"
            else:
                label = "" if suppress else html.escape(_author_label(self.entries[key])) + " "
                cite = f'<a href="#ref-{html.escape(key)}">{label}{self.year[key]}</a>'
            text = " ".join(p for p in (html.escape(prefix), cite) if p)
            if suffix:
                text += ", " + html.escape(suffix)
            items.append(text)
        return "(" + "; ".join(items) + ")"

    def in_text(self, key: str) -> str | None:
        if key not in self.entries:
            return None
        label = html.escape(_author_label(self.entries[key]))
        return f'{label} (<a href="#ref-{html.escape(key)}">{self.year[key]}</a>)'

    def reference(self, key: str) -> str:
        entry = self.entries[key]
        people = entry.full_authors()
        shown = people[:7] + ([("et al.", "")] if len(people) > 7 and people[6][0] != "et al."
                              else [])
        names = []
        for index, (family, given) in enumerate(shown):
            if family == "et al.":
                names.append("et al.")
            elif index == 0:
                names.append(f"{family}, {given}" if given else family)
            else:
                names.append(f"{given} {family}".strip())
        if len(names) > 1 and names[-1] != "et al.":
            authors = ", ".join(names[:-1]) + ", and " + names[-1]
        else:
            authors = ", ".join(names)
        e = html.escape
        parts = [f"{e(authors.rstrip('.'))}. {self.year[key]}."]
        title = entry.get("title")
        venue = entry.get("journal") or entry.get("booktitle")
        if entry.kind == "misc" and not venue:
            parts.append(f"<em>{e(title)}</em>.")
            if entry.get("howpublished"):
                parts.append(f"{e(entry.get('howpublished'))}.")
        else:
            parts.append(f"“{e(title)}.”")
        if venue:
            prefix = "In " if entry.kind == "inproceedings" else ""
            venue_text = f"{prefix}<em>{e(venue)}</em>"
            volume, number = entry.get("volume"), entry.get("number")
            if volume and entry.kind == "article":
                venue_text += f" {e(volume)}"
                if number:
                    venue_text += f" ({e(number)})"
            pages = entry.get("pages")
            if pages:
                venue_text += (": " if entry.kind == "article" else ", ") + e(pages)
            parts.append(venue_text + ".")
        if entry.get("publisher"):
            parts.append(f"{e(entry.get('publisher'))}.")
        doi = entry.get("doi")
        if doi:
            url = f"https://doi.org/{doi}"
            parts.append(f'<a href="{e(url)}">{e(url)}</a>.')
        eprint = entry.get("eprint")
        if eprint and entry.get("archiveprefix").lower() == "arxiv":
            url = f"https://arxiv.org/abs/{eprint}"
            parts.append(f'arXiv: <a href="{e(url)}">{e(eprint)}</a>.')
        return f'<li id="ref-{e(key)}">{" ".join(parts)}</li>'


# --------------------------------------------------------------------------------------------
# Markdown
# --------------------------------------------------------------------------------------------
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
_BULLET = re.compile(r"^\s*[-*+]\s+(.*)$")
_NUMBERED = re.compile(r"^\s*\d+[.)]\s+(.*)$")


def _inline(text: str, citer: _Citer) -> str:
    """Escape ``text`` and apply code spans, citations, links, strong and emphasis."""
    slots: list[str] = []

    def keep(fragment: str) -> str:
        slots.append(fragment)
        return f"\x00{len(slots) - 1}\x00"

    text = re.sub(r"`([^`]+)`", lambda m: keep(f"<code>{html.escape(m.group(1))}</code>"),
                  text)
    text = _BRACKET.sub(lambda m: keep(citer.parenthetical(m.group(1))), text)

    def in_text(match: re.Match) -> str:
        rendered = citer.in_text(match.group(1))
        return keep(rendered) if rendered is not None else match.group(0)

    text = _INTEXT.sub(in_text, text)
    text = re.sub(
        r"\[([^\]]+)\]\(([^)\s]+)\)",
        lambda m: keep(f'<a href="{html.escape(m.group(2))}">{html.escape(m.group(1))}</a>'),
        text)
    text = html.escape(text, quote=False)
    text = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w])__(?!\s)(.+?)(?<!\s)__(?![\w])", r"<strong>\1</strong>", text)
    text = re.sub(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])", r"<em>\1</em>", text)
    text = re.sub(r"(?<![\w])_(?!\s)(.+?)(?<!\s)_(?![\w])", r"<em>\1</em>", text)
    return re.sub(r"\x00(\d+)\x00", lambda m: slots[int(m.group(1))], text)


def _blocks(markdown: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    current: list[str] = []
    in_fence = False
    for line in markdown.splitlines():
        if line.strip().startswith("```"):
            current.append(line)
            in_fence = not in_fence
            if not in_fence:
                blocks.append(current)
                current = []
            continue
        if in_fence:
            current.append(line)
            continue
        if not line.strip():
            if current:
                blocks.append(current)
                current = []
            continue
        if _HEADING.match(line):  # a heading is always a block of its own
            if current:
                blocks.append(current)
            blocks.append([line])
            current = []
            continue
        current.append(line)
    if current:
        blocks.append(current)
    return blocks


def render_markdown(markdown: str, entries: dict[str, BibEntry] | None = None) -> str:
    """HTML body for ``markdown``: paragraphs, headings, lists, code, citations and a
    "References" list of the entries cited."""
    entries = load_bibliography() if entries is None else entries
    citer = _Citer(entries, cited_keys(markdown))
    out: list[str] = []
    for block in _blocks(markdown):
        first = block[0]
        if first.strip().startswith("```"):
            body = "\n".join(block[1:-1] if block[-1].strip().startswith("```") else block[1:])
            out.append(f"<pre><code>{html.escape(body)}</code></pre>")
        elif heading := _HEADING.match(first):
            level = len(heading.group(1))
            out.append(f"<h{level}>{_inline(heading.group(2), citer)}</h{level}>")
        elif all(_BULLET.match(line) or line.startswith("  ") for line in block) and \
                _BULLET.match(first):
            out.append("<ul>" + "".join(f"<li>{_inline(item, citer)}</li>"
                                        for item in _list_items(block, _BULLET)) + "</ul>")
        elif all(_NUMBERED.match(line) or line.startswith("  ") for line in block) and \
                _NUMBERED.match(first):
            out.append("<ol>" + "".join(f"<li>{_inline(item, citer)}</li>"
                                        for item in _list_items(block, _NUMBERED)) + "</ol>")
        else:
            out.append(f"<p>{_inline(' '.join(line.strip() for line in block), citer)}</p>")
    if citer.ordered:
        out.append('<h3 class="references">References</h3>')
        out.append('<ol class="references">'
                   + "".join(citer.reference(k) for k in citer.ordered) + "</ol>")
    return "\n".join(out) + "\n"


def _list_items(block: list[str], pattern: re.Pattern) -> list[str]:
    items: list[str] = []
    for line in block:
        match = pattern.match(line)
        if match:
            items.append(match.group(1).strip())
        elif items:
            items[-1] += " " + line.strip()
    return items


_HTML_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>bids_enhance: methods and references</title>
<style>
body {{ font-family: Charter, "Bitstream Charter", Georgia, serif; max-width: 48em;
       margin: 2em auto; padding: 0 1em; line-height: 1.5; color: #222; }}
code {{ font-family: ui-monospace, Menlo, Consolas, monospace; font-size: 0.9em; }}
ol.references li {{ margin-bottom: 0.4em; }}
a {{ color: #1f5f99; }}
</style>
</head>
<body>
{body}</body>
</html>
"""


def write_citation_files(output_dir: Path, markdown: str, *,
                         bibliography: Path | str | None = None) -> list[Path]:
    """Write ``<out>/logs/CITATION.md``, ``CITATION.bib`` (only the entries cited) and
    ``CITATION.html`` (author–year citations and a reference list), each atomically.

    Returns the three paths. Keys missing from the bibliography are logged and shown as
    ``key?`` in the HTML.
    """
    entries = load_bibliography(bibliography)
    logs = Path(output_dir) / "logs"
    keys = cited_keys(markdown)
    missing = [k for k in keys if k not in entries]
    if missing:
        logger.warning("Methods text cites keys missing from %s: %s",
                       bibliography or DEFAULT_BIB, ", ".join(missing))
    text = markdown if markdown.endswith("\n") else markdown + "\n"
    md = atomic_write_text(logs / "CITATION.md", text)
    bib_text = "\n\n".join(entries[k].source.strip() for k in keys if k in entries)
    bib = atomic_write_text(logs / "CITATION.bib", bib_text + "\n" if bib_text else "")
    page = atomic_write_text(logs / "CITATION.html",
                             _HTML_PAGE.format(body=render_markdown(markdown, entries)))
    return [md, bib, page]
