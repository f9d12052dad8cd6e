"""The notebooks readers open render with plain CommonMark + MathJax: no MyST left, no dead links.

The first half checks the converter (_ext/colab.py) construct by construct on a small
index; the second renders every markdown cell of every chapter notebook as Colab and
Jupyter do (math set aside first, then CommonMark with tables, no MyST plugins) and fails
on any MyST syntax left or any link that leads nowhere.
"""

import re
from pathlib import Path

import nbformat
import pytest
from markdown_it import MarkdownIt

from _ext.colab import BookIndex, ConversionError, book_index, cite_anchor, read_config, to_commonmark
from tools.notebooks import chapters

ROOT = Path(__file__).resolve().parent.parent
BASE = "https://example.org/book/"


@pytest.fixture
def index():
    return BookIndex(
        base_url=BASE,
        titles={"book/a": "Chapter A", "book/b": "Chapter B", "book/refs": "Bibliography"},
        labels={"sec-x": ("book/b", "A section about $x$")},
        equations={"eq-one": ("book/a", "1.1"), "eq-two": ("book/b", "2.1")},
        citations={"k1": ("Kingma and Welling", "2014"), "k2": ("Rezende *et al.*", "2014"), "d": ("Doersch", "2016")},
        bibliography="book/refs",
    )


def convert(text, index, doc="book/a"):
    return to_commonmark(text, doc, index, read_config())


def test_citations_become_author_year_links_to_the_bibliography(index):
    out = convert("A VAE {cite}`k1,k2` and a tutorial by {cite:t}`d`.", index)
    assert out == (f"A VAE ([Kingma and Welling, 2014]({BASE}book/refs.html#cite-k1); "
                   f"[Rezende *et al.*, 2014]({BASE}book/refs.html#cite-k2)) and a tutorial by "
                   f"[Doersch (2016)]({BASE}book/refs.html#cite-d).")


def test_labelled_equations_carry_their_number_and_references_show_it(index):
    out = convert("$$\nx = 1\n$$ (eq-one)\n\nBy {eq}`eq-one` and {eq}`eq-two`.", index)
    assert out == ("$$\nx = 1\n\\tag{1.1}\n$$\n\nBy (1.1) and "
                   f"[(2.1)]({BASE}book/b.html#equation-eq-two).")


def test_targets_go_and_references_link_to_the_book(index):
    out = convert("(sec-y)=\n## Heading\n\nSee {ref}`sec-x`, {ref}`here <sec-x>` and {doc}`b`.", index)
    assert out == (f"## Heading\n\nSee [A section about $x$]({BASE}book/b.html#sec-x), "
                   f"[here]({BASE}book/b.html#sec-x) and [Chapter B]({BASE}book/b.html).")


def test_definition_lists_become_bullet_lists(index):
    text = "Prior $p(z)$\n: what we believe,\n  before data.\n\nLikelihood\n: the decoder, {cite}`d`."
    assert convert(text, index) == (
        "- **Prior $p(z)$**: what we believe,\n  before data.\n\n"
        f"- **Likelihood**: the decoder, ([Doersch, 2016]({BASE}book/refs.html#cite-d)).")


def test_admonitions_become_block_quotes_with_a_bold_title(index):
    text = "```{admonition} A common slip\n:class: warning\nBody, {cite:t}`d`.\n\nMore.\n```"
    assert convert(text, index) == (
        f"> **A common slip**\n>\n> Body, [Doersch (2016)]({BASE}book/refs.html#cite-d).\n>\n> More.")
    assert convert(":::{admonition} About {eq}`eq-one`\nShort.\n:::", index) == "> **About (1.1)**\n>\n> Short."
    assert convert(":::{note}\nShort.\n:::", index) == "> **Note**\n>\n> Short."


def test_an_exercise_becomes_a_block_quote_headed_exercise(index):
    text = "```{exercise} A KL by hand, ★\n:label: ex-kl\n\nCompute it, with {eq}`eq-one`.\n```"
    assert convert(text, index) == "> **Exercise: A KL by hand, ★**\n>\n> Compute it, with (1.1)."


def test_a_solution_is_folded_and_its_code_cells_collapsed(tmp_path):
    """The notebook a reader opens shows the question, then a folded solution: its text in
    <details>, its code cells hidden (JupyterLab, Notebook 7, Colab's form view)."""
    from _ext.colab import HIDDEN, SOLUTION_TAG, colab_notebook

    md = tmp_path / "book" / "ex.md"
    md.parent.mkdir()
    (tmp_path / "_config.yml").write_text((ROOT / "_config.yml").read_text())
    md.write_text(
        "---\njupytext:\n  text_representation:\n    extension: .md\n    format_name: myst\n"
        "kernelspec:\n  name: python3\n  display_name: Python 3\n---\n\n# Ex\n\n"
        "```{code-cell} ipython3\nx = 1\n```\n\n"
        "```{exercise} Twice, ★\n:label: ex-twice\n\nWhat is $2x$?\n```\n\n"
        "```{solution-start} ex-twice\n:class: dropdown\n```\n\nDouble it:\n\n"
        "```{code-cell} ipython3\nprint(2 * x)\n```\n\nSo $2x = 2$.\n\n"
        "```{code-cell} ipython3\nassert 2 * x == 2\n```\n\n"
        "```{solution-end}\n```\n\nAfter the exercise.\n\n"
        "```{code-cell} ipython3\ny = 3\n```\n")
    index = BookIndex(base_url=BASE, titles={"book/ex": "Ex"})
    nb = colab_notebook(md, {"commit": "f" * 40, "version": "0"}, root=tmp_path, index=index, doc="book/ex")
    kinds = [(c.cell_type, c.source.splitlines()[0] if c.source else "") for c in nb.cells]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert [c.source for c in code[1:]] == ["x = 1", "print(2 * x)", "assert 2 * x == 2", "y = 3"]
    hidden = [all(c.metadata.get(k) == v for k, v in HIDDEN.items()) for c in code[1:]]
    assert hidden == [False, True, True, False]
    folded = [c for c in nb.cells if SOLUTION_TAG in c.metadata.get("tags", [])]
    assert [c.source.count("<details>") for c in folded] == [1, 1]
    assert "Double it:" in folded[0].source and "So $2x = 2$." in folded[1].source
    assert kinds.index(("markdown", "> **Exercise: Twice, ★**")) < nb.cells.index(folded[0])
    assert any(c.source == "After the exercise." for c in nb.cells if c.cell_type == "markdown")
    assert not any("solution-" in c.source for c in nb.cells)


def test_code_and_relative_links(index):
    out = convert("Write ``{cite}`k1` `` to get {cite:t}`k1`; see [B](b.md#sec-x) and [web](https://x.org).", index)
    assert out == (f"Write ``{{cite}}`k1` `` to get [Kingma and Welling (2014)]({BASE}book/refs.html#cite-k1); "
                   f"see [B]({BASE}book/b.html#sec-x) and [web](https://x.org).")


def test_roles_in_tables_are_replaced_cell_by_cell(index):
    out = convert("| a | b |\n|---|---|\n| {eq}`eq-one` | {eq}`eq-one` |", index)
    assert out == "| a | b |\n|---|---|\n| (1.1) | (1.1) |"


@pytest.mark.parametrize("text, message", [
    ("{cite}`nobody`", "not in the bibliography"),
    ("{eq}`eq-none`", "no equation labelled"),
    ("{ref}`nowhere`", "no target labelled"),
    ("{numref}`fig-a`", "no CommonMark rendering"),
    ("```{figure} a.png\n```", "directive {figure}"),
    ("[gone](missing-page)", "no page"),
])
def test_what_cannot_be_rendered_is_an_error_not_raw_text(index, text, message):
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert(text, index)


# ---- every chapter notebook, rendered as Colab renders it -----------------------------------

NOTEBOOKS = [md.with_suffix(".ipynb") for md in chapters()]
MATH = re.compile(r"\$\$.+?\$\$|\\begin\{(\w+\*?)\}.+?\\end\{\1\}|(?<![\\$])\$[^$]+?(?<!\\)\$", re.S)
# What MyST leaves in the rendered HTML of a CommonMark renderer.
LEFTOVERS = {
    "a MyST role": re.compile(r"\{[a-zA-Z][\w:.-]*\}<code>"),
    "a target line (label)=": re.compile(r"^(<p>)?\([\w.:-]+\)=", re.M),
    "a directive": re.compile(r"<code class=\"language-\{|(```|:::)\s*\{"),
    "an equation label after $$": re.compile(r"\$\$\s*\([\w.:-]+\)"),
    "a definition-list line": re.compile(r"^\s*:\s", re.M),
}


def render_like_jupyter(text: str) -> str:
    """Jupyter and Colab set math aside, render CommonMark (with tables), then put math back."""
    maths = []

    def keep(m):
        maths.append(m.group(0))
        return f"@@{len(maths) - 1}@@"

    html = MarkdownIt("commonmark").enable("table").render(MATH.sub(keep, text))
    return re.sub(r"@@(\d+)@@", lambda m: maths[int(m.group(1))], html)


@pytest.fixture(scope="module")
def real_index():
    return book_index(ROOT)


def anchors(index: BookIndex) -> dict[str, set[str]]:
    """The anchors each page of the book has, from the book's sources."""
    out = {doc: {""} for doc in index.titles}
    for label, (doc, _) in index.labels.items():
        out[doc].add(label)
    for label, (doc, _) in index.equations.items():
        out[doc].add(f"equation-{label}")
    out[index.bibliography] |= {cite_anchor(k) for k in index.citations}
    return out


def test_there_are_chapter_notebooks():
    assert NOTEBOOKS


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_markdown_renders_with_plain_commonmark_no_myst_and_no_dead_link(ipynb, real_index):
    targets = anchors(real_index)
    nb = nbformat.read(ipynb, as_version=4)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        html = render_like_jupyter(cell.source)
        for what, pattern in LEFTOVERS.items():
            found = pattern.search(html)
            assert not found, f"{ipynb.name} cell {i} shows {what}: {found.group(0)!r}"
        assert cell.source.count("$$") % 2 == 0, f"{ipynb.name} cell {i}: unbalanced $$"
        for href in re.findall(r'href="([^"]*)"', html):
            assert href.startswith(("https://", "http://")), f"{ipynb.name} cell {i}: {href!r} is dead in Colab"
            if href.startswith(real_index.base_url):
                page, _, anchor = href[len(real_index.base_url):].partition("#")
                doc = page.removesuffix(".html")
                assert doc in targets, f"{ipynb.name} cell {i}: {href} is not a page of the book"
                assert anchor in targets[doc], f"{ipynb.name} cell {i}: {href} has no such anchor"


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_every_labelled_equation_carries_its_number(ipynb, real_index):
    doc = ipynb.relative_to(ROOT).with_suffix("").as_posix()
    text = "\n".join(c.source for c in nbformat.read(ipynb, as_version=4).cells if c.cell_type == "markdown")
    tags = re.findall(r"\\tag\{([^}]*)\}", text)
    assert tags == [n for d, n in real_index.equations.values() if d == doc]


def test_index_numbers_match_the_html_book(real_index):
    """Numbers and citation labels as the HTML book printed them (read off a built page)."""
    assert real_index.equations["eq-vae-objective"] == ("book/06_vae", "6.1")
    assert real_index.equations["eq-iwae"] == ("book/06_vae", "6.2")
    assert real_index.equations["eq-joint"] == ("book/01_generative_models", "1.3")
    assert real_index.figures["book/03_elbo"] == ["3.1"]
    assert real_index.citations["rezende2014stochastic"] == ("Rezende *et al.*", "2014")
    assert real_index.citations["locatello2019challenging"][0] == "Locatello *et al.*"
    assert real_index.citations["loaizaganem2019continuous"] == ("Loaiza-Ganem and Cunningham", "2019")
    assert real_index.labels["sec-intractable"][0] == "book/01_generative_models"


@pytest.mark.parametrize("bad, what", [
    ("As shown {cite}`kingma2014autoencoding`.", "a MyST role"),
    ("(sec-x)=\n## A section", "a target line (label)="),
    ("```{admonition} Title\nBody\n```", "a directive"),
    (":::{note}\nBody\n:::", "a directive"),
    ("$$\nx = 1\n$$ (eq-x)", "an equation label after $$"),
    ("Prior\n: what we believe", "a definition-list line"),
])
def test_the_leftover_check_bites(bad, what):
    def caught(text):
        return [name for name, pattern in LEFTOVERS.items() if pattern.search(render_like_jupyter(text))]

    assert what in caught(bad)
    assert caught("A clean cell: $a_1 : b$, `code {x}`, a [link](https://x.org) and\n\n$$\ny = 2 \\tag{1.1}\n$$") == []


@pytest.mark.parametrize("ipynb", NOTEBOOKS, ids=lambda p: p.name)
def test_the_chapter_notebooks_fold_every_worked_solution(ipynb):
    """Every code cell that the chapter's source puts between {solution-start} and
    {solution-end} is collapsed in the notebook a reader opens, and nothing else is."""
    import jupytext

    from _ext.colab import HIDDEN, SOLUTION_TAG, solution_parts

    config = read_config()
    in_solution, expected = False, []
    for cell in jupytext.read(ipynb.with_suffix(".md")).cells:
        if cell.cell_type == "markdown":
            _, in_solution = solution_parts(cell.source, config, in_solution)
        elif cell.cell_type == "code":
            expected.append(in_solution)
    nb = nbformat.read(ipynb, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and "vaelib-setup" not in c.metadata.get("tags", [])]
    folded = [all(c.metadata.get(k) == v for k, v in HIDDEN.items()) for c in code]
    assert folded == expected
    solutions = ipynb.with_suffix(".md").read_text().count("```{solution-start}")
    notes = [c for c in nb.cells if SOLUTION_TAG in c.metadata.get("tags", [])]
    assert len(notes) >= solutions and all(c.cell_type == "markdown" for c in notes)
