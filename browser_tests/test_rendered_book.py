"""The built book as a reader sees it, in headless Chromium (tools/check_html.py).

Two parts: a small site of hand-written pages, each broken in one known way, proves that
the check catches each defect and passes a clean page; then every page of the real book
(``_build/html``, or ``$BOOK_HTML``) must pass. Run with ``make check-html`` after
``make book``; the screenshots go to ``_build/screenshots`` (``$BOOK_SCREENSHOTS``).
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import yaml  # noqa: E402

import check_html  # noqa: E402  (tools/ and _ext/ are on pytest's pythonpath: pyproject.toml)
from colab import toc_docs  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

BOOK_HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SCREENSHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
MATHJAX = Path(
    importlib.metadata.distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static/mathjax")
)

# --- a fixture site: one clean chapter page and one page per defect ------------------------

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{stem}</title>
<script>window.MathJax = {{"options": {{"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}}}</script>
{mathjax}
{head}
</head><body>
<div class="dropdown dropdown-launch-buttons"><ul class="dropdown-menu">{launch}</ul></div>
<div class="dropdown dropdown-download-buttons"><ul class="dropdown-menu">
<li><a class="btn btn-sm btn-download-notebook-button dropdown-item" href="../_sources/book/{stem}.ipynb">.ipynb</a></li>
</ul></div>
<main><article role="main"><section class="tex2jax_ignore mathjax_ignore" id="top">
<h1>A test chapter</h1>
<p>Inline math <span class="math notranslate nohighlight">\\(\\mathrm{{KL}}(q \\,\\|\\, p) \\ge 0\\)</span>, code
<code>r"$\\frac{{a}}{{b}}$"</code> that must not count as raw TeX, and a
<a href="#results">link to a section</a> and <a href="01_clean.html#results">to another page</a>.</p>
<div class="math notranslate nohighlight">\\[\\log p(x) = \\frac{{1}}{{2}} \\mathcal{{L}} + \\begin{{aligned}} a &amp;= b \\end{{aligned}}\\]</div>
<div class="cell_output docutils container">
<div class="output stream"><pre>epoch 1/1: loss=1.0</pre></div>
<figure><img src="../_images/dot.png" alt="a dot"><figcaption>Fig. 1. A dot.</figcaption></figure>
</div>
<section id="results"><h2>Results</h2>{body}</section>
</section></article></main></body></html>
"""
COLAB = '<li><a href="https://colab.research.google.com/github/o/r/blob/main/book/{stem}.ipynb">Colab</a></li>'
MATHJAX_SCRIPT = '<script defer="defer" src="../_static/mathjax/tex-chtml.js"></script>'

# page stem -> (what is changed, text that must appear in one of its problems)
DEFECTS = {
    "02_raw_dollars": ({"body": "<p>$$ \\frac{1}{2} $$ was left as typed.</p>"}, "raw TeX in visible text"),
    "03_raw_begin": ({"body": "<p>\\begin{align} x \\end{align}</p>"}, "raw TeX in visible text"),
    "04_no_mathjax": ({"mathjax": ""}, "MathJax did not load"),
    "05_undefined_macro": ({"body": '<p><span class="math">\\(\\undefinedmacro{x}\\)</span></p>'},
                           "MathJax error: '\\\\undefinedmacro{x}'"),
    "05_tex_syntax_error": ({"body": '<p><span class="math">\\(\\left( x\\)</span></p>'},
                            "MathJax error: '\\\\left( x'"),
    "06_missing_image": (
        {"body": '<figure><img src="../_images/missing.png"><figcaption>Gone.</figcaption></figure>'},
        "image did not load: ../_images/missing.png",
    ),
    "07_uncaptioned": (
        {"body": '<div class="cell_output"><img src="../_images/dot.png"></div>'},
        "figure without a caption",
    ),
    "08_traceback": (
        {"body": '<div class="cell_output"><div class="output traceback"><pre>Traceback (most recent call last):\n'
                 "ZeroDivisionError: division by zero</pre></div></div>"},
        "error output",
    ),
    "09_warning": (
        {"body": '<div class="cell_output"><div class="output stderr"><pre>/x.py:3: UserWarning: '
                 "this overload is deprecated</pre></div></div>"},
        "cell output shows: UserWarning",
    ),
    "10_bad_anchor": ({"body": '<a href="#nowhere">see below</a>'}, "no anchor #nowhere"),
    "11_bad_page": ({"body": '<a href="12_never_built.html">next</a>'}, "no file book/12_never_built.html"),
    "13_external_script": (
        {"head": '<script src="https://cdn.example.org/mathjax/tex-chtml.js"></script>'},
        "external request blocked: https://cdn.example.org/mathjax/tex-chtml.js (script)",
    ),
    "14_external_font": (
        {"head": "<style>@font-face { font-family: F; src: url(https://fonts.example.org/f.woff2); }"
                 " body { font-family: F; }</style>"},
        "external request blocked: https://fonts.example.org/f.woff2 (font)",
    ),
    "15_no_colab": ({"launch": ""}, "no Colab launch button"),
    "16_js_error": ({"head": "<script>throw new Error('boom')</script>"}, "JavaScript error: boom"),
}


def _write_page(site: Path, stem: str, **changes: str) -> None:
    parts = {"stem": stem, "mathjax": MATHJAX_SCRIPT, "head": "", "body": "<p>All fine.</p>",
             "launch": COLAB.format(stem=stem)}
    parts.update(changes)
    (site / "book" / f"{stem}.html").write_text(PAGE.format(**parts), encoding="utf-8")
    (site / "_sources" / "book" / f"{stem}.ipynb").write_text("{}", encoding="utf-8")


@pytest.fixture(scope="module")
def fixture_reports(tmp_path_factory) -> dict[str, check_html.PageReport]:
    site = tmp_path_factory.mktemp("site")
    for folder in ("book", "_static", "_images", "_sources/book"):
        (site / folder).mkdir(parents=True, exist_ok=True)
    (site / "_static" / "mathjax").symlink_to(MATHJAX, target_is_directory=True)
    plt.imsave(site / "_images" / "dot.png", [[0.0, 1.0], [1.0, 0.0]], cmap="gray")
    (site / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/01_clean.html" />')
    _write_page(site, "01_clean")
    for stem, (changes, _) in DEFECTS.items():
        _write_page(site, stem, **changes)
    return {r.path: r for r in check_html.check_site(site)}


def test_clean_fixture_page_passes(fixture_reports):
    report = fixture_reports["book/01_clean.html"]
    assert report.problems == []
    assert report.math_nodes == 2 and report.images == 1
    assert fixture_reports["index.html"].problems == []  # a redirect to a page that exists


@pytest.mark.parametrize("stem", sorted(DEFECTS))
def test_each_defect_is_caught(fixture_reports, stem):
    expected = DEFECTS[stem][1]
    problems = fixture_reports[f"book/{stem}.html"].problems
    assert any(expected in p for p in problems), f"{stem}: expected {expected!r} among {problems}"


def test_redirect_to_a_missing_page_is_caught(tmp_path):
    (tmp_path / "index.html").write_text('<meta http-equiv="refresh" content="0; url=book/gone.html" />')
    (report,) = check_html.check_site(tmp_path)
    assert report.problems == ["link 'book/gone.html' ('redirect'): no file book/gone.html"]


def test_missing_site_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="build the book first"):
        check_html.check_site(tmp_path / "nothing")


# --- the real book ------------------------------------------------------------------------

BOOK_PAGES = check_html.site_pages(BOOK_HTML) if (BOOK_HTML / "index.html").is_file() else []


@pytest.fixture(scope="module")
def book_reports() -> dict[str, check_html.PageReport]:
    if not BOOK_PAGES:
        pytest.fail(f"no built book in {BOOK_HTML}: run `make book` first (or set BOOK_HTML)")
    return {r.path: r for r in check_html.check_site(BOOK_HTML, screenshots=SCREENSHOTS)}


@pytest.mark.parametrize("page", BOOK_PAGES or ["(no built book)"])
def test_book_page_reads_correctly(book_reports, page):
    assert book_reports[page].problems == [], "\n".join([page, *book_reports[page].problems])


def test_every_toc_page_was_checked_and_every_chapter_photographed(book_reports):
    for file, _ in toc_docs(yaml.safe_load((ROOT / "_toc.yml").read_text())):
        assert f"{file}.html" in book_reports, f"{file} from _toc.yml was not built"
    chapters = [r for r in book_reports.values() if r.path.startswith("book/") and r.path[5:7].isdigit()]
    assert len(chapters) >= 8
    for report in chapters:
        assert report.math_nodes > 0 and report.images > 0, report.path
        assert report.screenshot is not None and report.screenshot.stat().st_size > 50_000, report.path
