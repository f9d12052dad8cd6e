"""Sphinx extension: build every chapter page from the one execution stored in its notebook.

A chapter is executed once, by ``make notebooks`` (``tools/notebooks.py``), into
``book/<chapter>.ipynb``: the notebook the Colab button opens, a JupyterLab user downloads,
and nbval checks. The book executes nothing (``execute_notebooks: "off"``). Instead, when
MyST-NB reads ``book/<chapter>.md`` (the MyST source, with its cross-references), this
extension gives each code cell the outputs stored for it, and adds the notebook's generated
set-up cell. A page whose code no longer matches its stored notebook is a build warning
(an error under ``-W``): its outputs would come from other code.

It also makes the page's ".ipynb" download button serve that notebook, and registers the
citation style ``author_year_round``: "(Kingma and Welling, 2014; Rezende et al., 2014)" and
"Doersch (2016)", as the notebooks write them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import nbformat
from sphinx.util import logging

from _ext.colab import chapter_code_cells, setup_cells, stale_code

logger = logging.getLogger(__name__)


def stored_notebook(source: Path) -> Path | None:
    """The executed notebook paired with a chapter source, if there is one."""
    ipynb = Path(source).with_suffix(".ipynb")
    return ipynb if Path(source).suffix == ".md" and ipynb.is_file() else None


def with_stored_outputs(nb, stored_path: Path):
    """``nb`` (read from a chapter's .md) with the outputs stored in ``stored_path``.

    Code cells are matched in order and must have the same source; the stored set-up cell
    is inserted before the first code cell. Raises ValueError when the code differs.
    """
    stored = nbformat.read(stored_path, as_version=4)
    where = stale_code(nb, stored)
    if where:
        raise ValueError(f"{stored_path.name} was executed from other code than its source ({where}); "
                         f"run `make notebooks` to execute it again")
    code = [c for c in nb.cells if c.cell_type == "code"]
    for cell, out in zip(code, chapter_code_cells(stored)):
        cell.outputs = out.outputs
        cell.execution_count = out.execution_count
    setup = setup_cells(stored)
    if setup and code:
        at = next(i for i, c in enumerate(nb.cells) if c is code[0])
        nb.cells.insert(at, setup[0])
        source_map = nb.metadata.get("source_map")  # MyST-NB's line of each cell in the .md
        if source_map:
            source_map.insert(at, source_map[at])
    return nb


def _install_reader_hook() -> None:
    import myst_nb.sphinx_ as mystnb_sphinx

    create = mystnb_sphinx.create_nb_reader
    if getattr(create, "stored_outputs", False):
        return

    def create_nb_reader(path, md_config, nb_config, content):
        reader = create(path, md_config, nb_config, content)
        stored = stored_notebook(Path(path))
        if reader is None or stored is None:
            return reader
        read = reader.read

        def read_with_outputs(text):
            nb = read(text)
            try:
                return with_stored_outputs(nb, stored)
            except ValueError as exc:
                logger.warning(f"{path}: {exc}", type="stored_outputs", location=str(path))
                return nb

        reader.read = read_with_outputs
        return reader

    create_nb_reader.stored_outputs = True
    mystnb_sphinx.create_nb_reader = create_nb_reader


def copy_notebooks_for_download(app, exception) -> None:
    """The ".ipynb" download button serves the notebook the Colab button opens."""
    if exception is not None or app.builder.format != "html":
        return
    for docname in app.env.found_docs:
        stored = stored_notebook(Path(app.env.doc2path(docname)))
        if stored is not None:
            target = Path(app.outdir) / "_sources" / f"{docname}.ipynb"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(stored, target)


def _register_citation_style() -> None:
    import sphinxcontrib.bibtex.plugin
    from sphinxcontrib.bibtex.style.referencing import BracketStyle
    from sphinxcontrib.bibtex.style.referencing.author_year import AuthorYearReferenceStyle

    def round_brackets():
        return BracketStyle(left="(", right=")")

    @dataclass
    class RoundAuthorYear(AuthorYearReferenceStyle):
        bracket_parenthetical: BracketStyle = field(default_factory=lambda: BracketStyle("(", ")", sep="; "))
        bracket_textual: BracketStyle = field(default_factory=round_brackets)
        bracket_author: BracketStyle = field(default_factory=round_brackets)
        bracket_label: BracketStyle = field(default_factory=round_brackets)
        bracket_year: BracketStyle = field(default_factory=round_brackets)

    sphinxcontrib.bibtex.plugin.register_plugin(
        "sphinxcontrib.bibtex.style.referencing", "author_year_round", RoundAuthorYear)


def author_year_label(entry) -> str:
    """"Kingma and Welling, 2014", "Burda et al., 2016": the bibliography's label of an entry,
    as the text cites it."""
    from pybtex.richtext import Text

    people = entry.persons.get("author") or entry.persons.get("editor") or []
    names = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render_as("text") for p in people]
    if not names:
        who = entry.fields.get("organization") or entry.fields.get("title", "?")
        names = [Text.from_latex(who).render_as("text")]
    who = names[0] if len(names) == 1 else " and ".join(names) if len(names) == 2 else f"{names[0]} et al."
    return f"{who}, {entry.fields.get('year', 'n.d.')}"


def _register_bibliography_labels() -> None:
    """The style ``author_year_plain``: pybtex's plain style with author-year labels, so the
    bibliography reads "[Kingma and Welling, 2014]" where the text says "(Kingma and Welling, 2014)"."""
    import pybtex.plugin
    from pybtex.style.formatting.plain import Style as Plain
    from pybtex.style.labels import BaseLabelStyle

    class AuthorYearLabels(BaseLabelStyle):
        def format_labels(self, sorted_entries):
            labels = [author_year_label(entry) for entry in sorted_entries]
            seen: dict[str, int] = {}
            for label in labels:  # "Kingma et al., 2014a" and "...2014b" where two would read alike
                if labels.count(label) == 1:
                    yield label
                else:
                    seen[label] = seen.get(label, 0) + 1
                    yield f"{label}{chr(ord('a') + seen[label] - 1)}"

    class AuthorYearPlain(Plain):
        default_label_style = "author_year"

    pybtex.plugin.register_plugin("pybtex.style.labels", "author_year", AuthorYearLabels)
    pybtex.plugin.register_plugin("pybtex.style.formatting", "author_year_plain", AuthorYearPlain)


def note_stored_notebook(app, docname: str, source: list[str]) -> None:
    """Make the page depend on its stored notebook: after ``make notebooks`` changes only the
    ``.ipynb`` (new outputs, same source), an incremental ``make book`` rebuilds the page."""
    ipynb = stored_notebook(Path(app.env.doc2path(docname)))
    if ipynb is not None:
        app.env.note_dependency(str(ipynb))


def setup(app):
    _install_reader_hook()
    _register_citation_style()
    _register_bibliography_labels()
    app.connect("source-read", note_stored_notebook)
    app.connect("build-finished", copy_notebooks_for_download)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
