"""tools/check_book.py bites: a page that does not show its notebook's execution is reported.

A fixture site holds one chapter page made from a real chapter notebook (its images, its
printed lines, its equation and figure numbers, its Colab and download buttons); the clean
page passes, and each defect, introduced one at a time, is caught.
"""

import base64
import html
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from _ext.colab import book_index, read_config
from tools.check_book import chapter_problems, link_problems, notebook_images, notebook_lines

ROOT = Path(__file__).resolve().parent.parent
DOC = "book/03_elbo"
IPYNB = ROOT / f"{DOC}.ipynb"


@pytest.fixture(scope="module")
def index():
    return book_index(ROOT)


def write_site(root: Path, index, *, images=None, lines=None, eqno=None, colab=True, download=True):
    nb = nbformat.read(IPYNB, as_version=4)
    images = notebook_images(nb) if images is None else images
    lines = notebook_lines(nb) if lines is None else lines
    numbers = {label: n for label, (d, n) in index.equations.items() if d == DOC} if eqno is None else eqno
    (root / "_images").mkdir(parents=True)
    (root / "book").mkdir()
    parts = []
    if colab:
        parts.append('<a href="https://colab.research.google.com/github/vae-course/vae-course/blob/main/'
                     'book/03_elbo.ipynb">Colab</a>')
    for i, png in enumerate(images):
        (root / "_images" / f"{i}.png").write_bytes(png)
        parts.append(f'<img alt="" src="../_images/{i}.png" />')
    parts += [f"<pre>{html.escape(line)}</pre>" for line in lines]
    parts += [f'<span class="eqno">({n})<a class="headerlink" href="#equation-{label}">#</a></span>'
              for label, n in numbers.items()]
    parts += [f'<span class="caption-number">Fig. {n} </span>' for n in index.figures[DOC]]
    page = root / "book" / "03_elbo.html"
    page.write_text("\n".join(parts))
    if download:
        (root / "_sources" / "book").mkdir(parents=True)
        shutil.copyfile(IPYNB, root / "_sources" / "book" / "03_elbo.ipynb")
    return chapter_problems(DOC, page, IPYNB, root, index, read_config(ROOT))


def test_a_page_showing_its_notebook_passes(tmp_path, index):
    assert write_site(tmp_path, index) == []


def test_each_defect_is_caught(tmp_path, index):
    nb = nbformat.read(IPYNB, as_version=4)
    images, lines = notebook_images(nb), notebook_lines(nb)
    assert images and lines
    other = base64.b64decode(  # a 1x1 PNG: an image from some other execution
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg==")
    cases = {
        "images": dict(images=[other] + images[1:]),
        "printed line": dict(lines=lines[:-1]),
        "equation numbers": dict(eqno={"eq-elbo": "3.9"}),
        "no Colab launch button": dict(colab=False),
        ".ipynb download": dict(download=False),
    }
    for i, (what, change) in enumerate(cases.items()):
        problems = write_site(tmp_path / str(i), index, **change)
        assert len(problems) == 1 and what in problems[0], (what, problems)


def test_links_from_a_notebook_must_reach_a_page_and_an_anchor(tmp_path, index):
    site = tmp_path / "html"
    (site / "book").mkdir(parents=True)
    links = sorted({u for c in nbformat.read(IPYNB, as_version=4).cells if c.cell_type == "markdown"
                    for u in re.findall(r"\]\((https?://[^)\s]+)\)", c.source)
                    if u.startswith(index.base_url)})
    assert links, "Chapter 3 links into the book"
    for url in links:
        path, _, anchor = url[len(index.base_url):].partition("#")
        target = site / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text((target.read_text() if target.exists() else "") + f'<span id="{anchor}"></span>')
    assert link_problems(IPYNB, site, index) == []
    path, _, anchor = next(u for u in links if "#" in u)[len(index.base_url):].partition("#")
    (site / path).write_text((site / path).read_text().replace(f'id="{anchor}"', 'id="elsewhere"'))
    assert any(f"has no anchor #{anchor}" in p for p in link_problems(IPYNB, site, index))
    (site / path).unlink()
    assert any(f"the book has no {path}" in p for p in link_problems(IPYNB, site, index))
