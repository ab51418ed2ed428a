"""Methods text: BibTeX parsing, author–year citations, CITATION.{md,bib,html}."""

from __future__ import annotations

import re

import pytest
from reports_helpers import assert_balanced_html, external_assets

from bids_enhance.reports.boilerplate import (
    cited_keys,
    latex_to_text,
    load_bibliography,
    parse_bibtex,
    render_markdown,
    write_citation_files,
)

REQUIRED_KEYS = {"manjon2012", "manjon2010", "coupe2008", "coupe2010", "koay2006", "buades2005",
                 "nipype1", "nipype2", "mriqc", "wang2023threeplayer", "wang2023disgan"}


def test_shipped_bibliography_has_every_key_with_year_and_title():
    entries = load_bibliography()
    assert REQUIRED_KEYS <= set(entries)
    for key in REQUIRED_KEYS:
        entry = entries[key]
        assert entry.get("year") and entry.get("title") and entry.authors(), key
    assert entries["manjon2012"].get("journal") == "Medical Image Analysis"
    assert entries["manjon2012"].get("pages") == "18–27"
    assert entries["koay2006"].authors() == ["Koay", "Basser"]
    assert entries["nipype2"].get("doi") == "10.5281/zenodo.596855"
    assert entries["mriqc"].get("pages") == "e0184661"
    assert entries["wang2023threeplayer"].get("eprint") == "2303.13900"
    assert entries["wang2023disgan"].get("eprint") == "2308.12084"


def test_parse_bibtex_values_and_errors():
    entries = parse_bibtex("""
        @comment{ignored}
        @Article{k1, author = {Doe, J. and {ACME Consortium}}, title = "A {B} c",
                 year = 2020, note = {nested {braces} kept}}
    """)
    assert list(entries) == ["k1"]
    entry = entries["k1"]
    assert entry.kind == "article" and entry.get("title") == "A B c"
    assert entry.fields["year"] == "2020" and entry.get("note") == "nested braces kept"
    assert entry.authors() == ["Doe", "ACME Consortium"]
    with pytest.raises(ValueError, match="unbalanced"):
        parse_bibtex("@article{k2, title = {open")
    with pytest.raises(ValueError, match="Duplicate entry key 'k3'"):
        parse_bibtex("@misc{k3, title = {a}}\n@misc{k3, title = {b}}")


def test_parse_bibtex_names_macros_and_identifiers():
    entry = parse_bibtex(r"""
        @string{mia = {Medical Image Analysis}}
        @article{k, author = {van Gogh, Jr., Vincent and Ludwig van Beethoven and
                              M{\"u}ller, J{\"o}rg and others},
                 journal = mia, title = {{MRI} at 50\% -- ``fast''},
                 doi = {10.1000/a_b~c}}
    """)["k"]
    assert entry.full_authors() == [("van Gogh, Jr.", "Vincent"), ("van Beethoven", "Ludwig"),
                                    ("Müller", "Jörg"), ("et al.", "")]
    assert entry.authors()[:2] == ["van Gogh, Jr.", "van Beethoven"]
    assert entry.get("journal") == "Medical Image Analysis"
    assert entry.get("title") == "MRI at 50% – “fast”"
    assert entry.get("doi") == "10.1000/a_b~c"  # an identifier, not LaTeX
    assert entry.source.startswith("@article{k,") and entry.source.endswith("}")


def test_latex_accents():
    assert latex_to_text(r"Manj{\'o}n and Coup\'{e} -- M\"uller") == "Manjón and Coupé – Müller"


def test_cited_keys_bracketed_in_text_and_not_emails():
    md = ("Denoised [@manjon2012; @coupe2008, p. 3] as in @coupe2010. Mail me@example.org. "
          "[see @koay2006] and [@manjon2012] again.")
    assert cited_keys(md) == ["manjon2012", "coupe2008", "coupe2010", "koay2006"]


def test_citations_render_author_year_with_reference_list():
    md = ("Enhanced with *bids_enhance* [@nipype1; @nipype2]. Noise as in @coupe2010, "
          "corrected [@koay2006]. Super-resolution [@wang2023threeplayer; @wang2023disgan]. "
          "Unknown [@nosuchkey]. Escaped: 5 < 6 & `a<b>`.")
    body = render_markdown(md)
    assert_balanced_html(body)
    text = re.sub(r"<[^>]+>", "", body)
    assert "(Gorgolewski et al. 2011; Gorgolewski et al. 2018)" in text
    assert "Coupé et al. (2010)" in text
    assert "(Koay and Basser 2006)" in text
    # same first author and year → a/b suffixes, in reference-list order
    assert "(Wang et al. 2023a; Wang et al. 2023b)" in text
    assert "nosuchkey?" in text
    assert "5 &lt; 6 &amp;" in body and "<code>a&lt;b&gt;</code>" in body
    assert "<em>bids_enhance</em>" in body
    refs = re.findall(r'<li id="ref-([\w]+)">', body)
    assert set(refs) == {"nipype1", "nipype2", "coupe2010", "koay2006", "wang2023threeplayer",
                         "wang2023disgan"}
    assert refs.index("coupe2010") < refs.index("koay2006") < refs.index("wang2023threeplayer")
    assert "Journal of Magnetic Resonance</em> 179 (2): 317–322" in body
    assert 'href="https://doi.org/10.1016/j.jmr.2006.01.016"' in body


def test_markdown_blocks():
    body = render_markdown("### Heading\n\nPara one\ncontinues.\n\n- item *a*\n- item b\n\n"
                           "1. first\n2. second\n\n```\ncode <x>\n```\n", {})
    assert "<h3>Heading</h3>" in body and "<p>Para one continues.</p>" in body
    assert "<ul><li>item <em>a</em></li><li>item b</li></ul>" in body
    assert "<ol><li>first</li><li>second</li></ol>" in body
    assert "<pre><code>code &lt;x&gt;</code></pre>" in body
    assert "References" not in body


def test_write_citation_files(tmp_path):
    md = "Denoised with PRI-NLM [@manjon2012], noise from @coupe2010."
    paths = write_citation_files(tmp_path, md)
    assert [p.name for p in paths] == ["CITATION.md", "CITATION.bib", "CITATION.html"]
    assert all(p.parent == tmp_path / "logs" for p in paths)
    assert paths[0].read_text() == md + "\n"
    bib = paths[1].read_text()
    assert set(re.findall(r"@\w+\{(\w+),", bib)) == {"manjon2012", "coupe2010"}
    page = paths[2].read_text()
    assert page.startswith("<!DOCTYPE html>") and "<body>" in page
    assert "(Manjón et al. 2012)" in re.sub(r"<[^>]+>", "", page)
    assert not external_assets(page)
    assert not list((tmp_path / "logs").glob(".tmp-*"))
    # rewriting replaces the files (no stale entries)
    write_citation_files(tmp_path, "Only [@koay2006].")
    assert set(re.findall(r"@\w+\{(\w+),", paths[1].read_text())) == {"koay2006"}
