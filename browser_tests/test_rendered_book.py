"""The built book as a reader sees it: each page in headless Chromium (pytest-playwright's ``page``).

Two parts: a small site of hand-written pages, each broken in one known way, proves that
the check (page_check.py) catches each defect and passes a clean page; then every page of
the real book (``_build/html``, or ``$BOOK_HTML``) must pass at a desktop width (1280 px) and
a phone's (390 px), and each chapter and the introduction is photographed, full page, at both
widths into ``_build/screenshots/1280`` and ``/390`` (``$BOOK_SCREENSHOTS``).
Run with ``make check-html`` after ``make book``.
"""

from __future__ import annotations

import importlib.metadata
import os
from pathlib import Path
from typing import NamedTuple

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from _ext.colab import toc_docs  # noqa: E402  (the repository root is on pytest's pythonpath)
from page_check import TEXT_SIZE_KEY, check_page, is_chapter, site_pages  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

BOOK_HTML = Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
SCREENSHOTS = Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
MATHJAX = Path(
    importlib.metadata.distribution("sphinx-mathjax-offline").locate_file("sphinx-mathjax-offline/static/mathjax")
)


class Site(NamedTuple):
    root: Path  # the folder
    url: str  # where it is served, ending in "/"


def check(page, site: Site, rel: str):
    return check_page(page, site.root, site.url, rel)


# --- a fixture site: one clean chapter page and one page per defect ------------------------

PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>{stem}</title>
<script>window.MathJax = {{"options": {{"processHtmlClass": "tex2jax_process|mathjax_process|math|output_area"}}}}</script>
{mathjax}
{head}
</head><body>
<div class="dropdown dropdown-download-buttons"><ul class="dropdown-menu">{download}</ul></div>
<main><article role="main"><section class="tex2jax_ignore mathjax_ignore" id="top">
<h1>A test chapter</h1>
<p>Inline math <span class="math notranslate nohighlight">\\(\\mathrm{{KL}}(q \\,\\|\\, p) \\ge 0\\)</span>, code
<code>r"$\\frac{{a}}{{b}}$"</code> that must not count as raw TeX, and a
<a href="#results">link to a section</a> and <a href="02_raw_dollars.html#results">to another page</a>.</p>
<div class="math notranslate nohighlight">\\[\\log p(x) = \\frac{{1}}{{2}} \\mathcal{{L}} + \\begin{{aligned}} a &amp;= b \\end{{aligned}}\\]</div>
<div class="cell_output docutils container">
<div class="output stream"><pre>epoch 1/1: loss=1.0</pre></div>
<figure><img src="../_images/dot.png" alt="a dot"><figcaption>Fig. 1. A dot.</figcaption></figure>
</div>
<section id="results"><h2>Results</h2>{body}</section>
</section></article></main></body></html>
"""
DOWNLOAD = ('<li><a class="btn btn-sm btn-download-notebook-button dropdown-item" '
            'href="../_sources/book/{stem}.ipynb">.ipynb</a></li>')
MATHJAX_SCRIPT = '<script defer="defer" src="../_static/mathjax/tex-chtml.js"></script>'

# A worked solution as sphinx-exercise writes it; FOLD is sphinx-togglebutton's way of hiding it.
SOLUTION = ('<div class="{classes}"><p class="admonition-title">Solution to Exercise 1{button}</p>'
            "<section><p>The answer, $x = 2$.</p></section></div>")
FOLD = ("<style>.admonition.toggle-hidden .admonition-title ~ * "
        "{ height: 0; margin: 0; opacity: 0; visibility: hidden; display: block; }</style>")

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
    "10_bad_anchor": ({"body": '<a href="#nowhere">see below</a>'}, "no anchor #nowhere in book/10_bad_anchor.html"),
    "10_bad_anchor_elsewhere": ({"body": '<a href="01_clean.html#nowhere">see there</a>'},
                                "no anchor #nowhere in book/01_clean.html"),
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
    "15_no_download": ({"download": ""}, "chapter page has no download button"),
    "16_js_error": ({"head": "<script>throw new Error('boom')</script>"}, "JavaScript error: boom"),
    "17_wide_equation": (
        {"body": '<div class="math notranslate nohighlight">\\[' + " + ".join(f"x_{{{i}}}" for i in range(150))
                 + '\\]</div>'},
        "math wider than its column",
    ),
    "18_distorted_image": (
        {"body": '<figure><img src="../_images/dot.png" style="width: 200px; height: 20px">'
                 "<figcaption>Squeezed.</figcaption></figure>"},
        "image distorted: ../_images/dot.png shown 200x20",
    ),
    "19_pans_sideways": ({"body": '<p><span style="display: inline-block; width: 3000px">wide</span></p>'},
                         "page pans sideways"),
    "20_kl_single_bar": ({"body": '<p><span class="math notranslate nohighlight">\\(\\mathrm{KL}(q | p)\\)</span></p>'},
                         "KL written with a single bar"),
    "22_small_figure_text": (
        {"body": '<div class="cell_output"><figure><img src="../_images/small_text.png">'
                 "<figcaption>Tiny legend.</figcaption></figure></div>"},
        "figure text too small: ../_images/small_text.png shows its smallest text at 5.0 px",
    ),
    "23_figure_without_text_size": (
        {"body": '<div class="cell_output"><figure><img src="../_images/plain.png">'
                 "<figcaption>Drawn elsewhere.</figcaption></figure></div>"},
        "figure text not checked: ../_images/plain.png: it carries no text size",
    ),
    "24_wide_figure": (  # fine at 1280 px, too small on a phone (test_on_a_phone_a_wide_figure_...)
        {"head": "<style>img { max-width: 100%; }</style>",
         "body": '<div class="cell_output"><figure><img src="../_images/wide.png">'
                 "<figcaption>A wide figure.</figcaption></figure></div>"},
        "",
    ),
    "25_solution_shown": (
        {"body": SOLUTION.format(classes="solution dropdown admonition", button="")},
        "solution shown before it is asked for: 'Solution to Exercise 1'",
    ),
    "26_solution_stuck": (
        {"head": FOLD, "body": SOLUTION.format(classes="solution dropdown admonition toggle-hidden",
                                                 button='<button class="toggle-button"></button>')},
        "solution does not open when clicked: 'Solution to Exercise 1'",
    ),
    "27_folded_solution": (  # as sphinx-exercise and sphinx-togglebutton make it: passes (its own test)
        {"head": FOLD, "body": SOLUTION.format(
            classes="solution dropdown admonition toggle-hidden",
            button="<button class=\"toggle-button\" onclick=\"this.closest('.solution')"
                   ".classList.toggle('toggle-hidden')\"></button>")},
        "",
    ),
    "21_scrolled_equation": (  # allowed on a phone (test_a_phone_allows_an_equation_that_scrolls_in_its_box)
        {"head": "<style>div.math { overflow-x: auto; }</style>",
         "body": '<div class="math notranslate nohighlight">\\[' + " + ".join(f"x_{{{i}}}" for i in range(150))
                 + '\\]</div>'},
        "math wider than its column",
    ),
}
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}


def _write_page(site: Path, stem: str, **changes: str) -> None:
    parts = {"stem": stem, "mathjax": MATHJAX_SCRIPT, "head": "", "body": "<p>All fine.</p>",
             "download": DOWNLOAD.format(stem=stem)}
    parts.update(changes)
    (site / "book" / f"{stem}.html").write_text(PAGE.format(**parts), encoding="utf-8")
    (site / "_sources" / "book" / f"{stem}.ipynb").write_text("{}", encoding="utf-8")


@pytest.fixture(scope="session")
def fixture_site(tmp_path_factory, serve) -> Site:
    site = tmp_path_factory.mktemp("site")
    for folder in ("book", "_static", "_images", "_sources/book"):
        (site / folder).mkdir(parents=True, exist_ok=True)
    (site / "_static" / "mathjax").symlink_to(MATHJAX, target_is_directory=True)
    # Figure outputs carry their smallest text in image pixels, as vaelib.use_book_style writes it.
    def png(name, width, text_px):
        metadata = {} if text_px is None else {TEXT_SIZE_KEY: text_px}
        plt.imsave(site / "_images" / name, [[0.0, 1.0] * (width // 2), [1.0, 0.0] * (width // 2)],
                   cmap="gray", metadata=metadata)

    png("dot.png", 2, "12")  # shown at its own size: 12 px
    png("small_text.png", 2, "5")  # 5 px anywhere
    png("plain.png", 2, None)  # no text size: not drawn by vaelib
    png("wide.png", 600, "9")  # 9 px at 600 px wide: at 1280 px, 9 px; in a phone's 374-px body, 5.6 px
    (site / "index.html").write_text('<meta http-equiv="Refresh" content="0; url=book/01_clean.html" />')
    (site / "gone.html").write_text('<meta http-equiv="refresh" content="0; url=book/gone.html" />')
    _write_page(site, "01_clean")
    for stem, (changes, _) in DEFECTS.items():
        _write_page(site, stem, **changes)
    return Site(site, serve(site))


def test_clean_fixture_page_passes(page, fixture_site):
    result = check(page, fixture_site, "book/01_clean.html")
    assert result.problems == []
    assert result.math_nodes == 2 and result.images == 1


@pytest.mark.parametrize("stem", sorted(stem for stem, (_, expected) in DEFECTS.items() if expected))
def test_each_defect_is_caught(page, fixture_site, stem):
    expected = DEFECTS[stem][1]
    problems = check(page, fixture_site, f"book/{stem}.html").problems
    assert any(expected in p for p in problems), f"{stem}: expected {expected!r} among {problems}"


def test_on_a_phone_a_clean_page_passes_and_a_cut_equation_is_caught(page, fixture_site):
    page.set_viewport_size(PHONE)
    assert check(page, fixture_site, "book/01_clean.html").problems == []
    assert any("math wider than its column" in p and "cut off" in p
               for p in check(page, fixture_site, "book/17_wide_equation.html").problems)


def test_on_a_phone_a_wide_figure_with_desktop_sized_text_is_caught(page, fixture_site):
    assert check(page, fixture_site, "book/24_wide_figure.html").problems == []
    page.set_viewport_size(PHONE)
    problems = check(page, fixture_site, "book/24_wide_figure.html").problems
    assert any("figure text too small: ../_images/wide.png" in p and "(at least 6 px)" in p for p in problems), problems


def test_a_folded_solution_that_opens_on_a_click_passes(page, fixture_site):
    for viewport in (DESKTOP, PHONE):
        page.set_viewport_size(viewport)
        result = check(page, fixture_site, "book/27_folded_solution.html")
        assert result.problems == [] and result.solutions == 1


def test_a_phone_allows_an_equation_that_scrolls_in_its_box(page, fixture_site):
    page.set_viewport_size(PHONE)
    assert check(page, fixture_site, "book/21_scrolled_equation.html").problems == []


def test_a_redirect_must_lead_to_a_page(page, fixture_site):
    assert check(page, fixture_site, "index.html").problems == []
    assert check(page, fixture_site, "gone.html").problems == [
        "link 'book/gone.html' ('redirect'): no file book/gone.html"]


# --- the real book ------------------------------------------------------------------------

BOOK_PAGES = site_pages(BOOK_HTML) if (BOOK_HTML / "index.html").is_file() else []


@pytest.fixture(scope="session")
def book(serve) -> Site:
    if not BOOK_PAGES:
        pytest.fail(f"no built book in {BOOK_HTML}: run `make book` first (or set BOOK_HTML)", pytrace=False)
    for width in (DESKTOP["width"], PHONE["width"]):
        (SCREENSHOTS / str(width)).mkdir(parents=True, exist_ok=True)
    return Site(BOOK_HTML, serve(BOOK_HTML))


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["1280px", "390px"])
@pytest.mark.parametrize("rel", BOOK_PAGES or ["(no built book)"])
def test_book_page_reads_correctly(page, book, rel, viewport):
    page.set_viewport_size(viewport)
    result = check(page, book, rel)
    shot = SCREENSHOTS / str(viewport["width"]) / f"{Path(rel).stem}.png"
    if is_chapter(rel) or rel.endswith("/intro.html"):
        page.screenshot(path=shot, full_page=True)
    assert result.problems == [], "\n".join([rel, *result.problems])
    if is_chapter(rel):
        assert result.math_nodes > 0 and result.images > 0, f"{rel}: no math or no figure"
        source = ROOT / Path(rel).with_suffix(".md")
        written = source.read_text().count("```{solution-start}") if source.is_file() else 0
        assert result.solutions == written, f"{rel}: {result.solutions} solutions shown, {written} written"
        assert shot.stat().st_size > 50_000, f"{rel}: its screenshot {shot} is nearly empty"


def test_every_toc_page_is_checked_and_the_chapters_are_there(book):
    for doc, _ in toc_docs(ROOT):
        assert f"{doc}.html" in BOOK_PAGES, f"{doc} from _toc.yml was not built"
    assert len([rel for rel in BOOK_PAGES if is_chapter(rel)]) >= 8
