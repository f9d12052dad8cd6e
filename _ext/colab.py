"""The chapters as notebooks that render anywhere: MyST markdown turned into CommonMark + MathJax.

The HTML book reads MyST (citations, equation labels and references, cross-references,
admonitions, definition lists). Colab and plain Jupyter render markdown cells as CommonMark
with MathJax, where every MyST construct would show as literal text. This module rewrites
exactly those constructs, found with the MyST parser's own syntax tree (markdown-it-py with
the same extensions as the book), and leaves every other character of the author's text as
written:

==========================  ===================================================================
MyST                        CommonMark + MathJax
==========================  ===================================================================
``{cite}`a,b```             "([Kingma and Welling, 2014](<book>/bibliography.html#cite-a); ...)"
``{cite:t}`a```             "[Doersch (2016)](<book>/bibliography.html#cite-a)"
``$$ ... $$ (eq-x)``        the display carries ``\\tag{6.1}``, the number the HTML book shows
``{eq}`eq-x```              "(6.1)"; a link to the HTML page when the equation is in another chapter
``{ref}`label```, ``{doc}`` a link to that page (and section) of the HTML book, titled as there
``(label)=``                removed
``Term`` / ``: definition`` a bullet list, "- **Term**: definition"
admonition directive        a block quote with a bold title
``{exercise} title``        a block quote headed "Exercise: title"
solution-start ... -end     a collapsed solution: its text in ``<details>``, its code cells
                            hidden (``jupyter.source_hidden``/``outputs_hidden``, Colab's form view)
``[text](02_kl_divergence)`` a link to that page of the HTML book
==========================  ===================================================================

Anything else MyST-only raises `ConversionError` naming the file and the construct, so the
generated notebooks cannot carry raw MyST silently. The numbers and anchors are computed
from the book's sources (`book_index`); ``tools/check_book.py`` checks them against the
built HTML.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

import jupytext
import nbformat
import yaml

ROOT = Path(__file__).resolve().parent.parent
SETUP_TAG = "vaelib-setup"  # the generated first code cell of every chapter notebook
CAPTION_TAG = "figure-caption"  # generated markdown cells that carry a figure's caption
ADMONITIONS = {"admonition", "note", "warning", "tip", "hint", "important", "caution", "attention",
               "danger", "error", "seealso", "exercise"}
SOLUTION_TAG = "solution"  # generated markdown cells that hold (the text of) a worked solution
# A solution's code cell in a notebook: collapsed in JupyterLab and Notebook 7 (source and
# outputs), in Colab's form view; the reader opens it after trying the exercise.
HIDDEN = {"jupyter": {"source_hidden": True, "outputs_hidden": True}, "cellView": "form"}


class ConversionError(ValueError):
    """A MyST construct that has no CommonMark rendering here (or a reference that leads nowhere)."""


# ---- the book's targets ---------------------------------------------------------------------

@dataclass
class BookIndex:
    """Every target a chapter can refer to, with the URL and number the HTML book gives it."""

    base_url: str  # the published book, ending in "/"
    titles: dict[str, str] = field(default_factory=dict)  # docname -> title
    labels: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (docname, title)
    equations: dict[str, tuple[str, str]] = field(default_factory=dict)  # label -> (docname, "6.1")
    figures: dict[str, list[str]] = field(default_factory=dict)  # docname -> ["6.1", "6.2", ...]
    citations: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (authors, year)
    bibliography: str = ""  # docname of the page with the bibliography

    def url(self, doc: str, anchor: str = "") -> str:
        if doc not in self.titles:
            raise ConversionError(f"no page {doc!r} in the book")
        return f"{self.base_url}{doc}.html" + (f"#{anchor}" if anchor else "")

    def equation_number(self, label: str) -> str:
        if label not in self.equations:
            raise ConversionError(f"no equation labelled {label!r} in the book")
        return self.equations[label][1]


def toc_docs(root: Path = ROOT) -> list[tuple[str, bool]]:
    """The documents listed in ``root/_toc.yml``, in order, with whether each is numbered.

    The one place that reads the table of contents: the book index, tools/check_book.py and
    the tests all take the chapter list from here."""
    toc = yaml.safe_load((root / "_toc.yml").read_text(encoding="utf-8"))
    docs = [(toc["root"], False)]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        numbered = bool(part.get("numbered", False))
        for chapter in part.get("chapters", []):
            docs.append((chapter["file"], numbered))
            docs += [(s["file"], numbered) for s in chapter.get("sections", [])]
    return docs


def read_config(root: Path = ROOT) -> dict:
    return yaml.safe_load((root / "_config.yml").read_text(encoding="utf-8"))


def base_url(config: dict) -> str:
    url = (config.get("html") or {}).get("baseurl", "")
    if not url.startswith(("https://", "http://")):
        raise ConversionError("_config.yml needs html.baseurl, the published book's address (https://...)")
    return url.rstrip("/") + "/"


@functools.lru_cache(maxsize=4)
def _parser(extensions: tuple[str, ...]):
    from markdown_it.renderer import RendererHTML
    from myst_parser.config.main import MdParserConfig
    from myst_parser.parsers.mdit import create_md_parser

    return create_md_parser(MdParserConfig(enable_extensions=set(extensions)), RendererHTML)


def parser(config: dict):
    """The markdown-it parser the book uses: MyST with the extensions listed in ``_config.yml``."""
    return _parser(tuple(sorted((config.get("parse") or {}).get("myst_enable_extensions", []))))


def _directive(token) -> tuple[str, str] | None:
    """(name, argument) of a ``{name} argument`` fence, or None for a plain code fence."""
    if token.type not in ("fence", "colon_fence"):
        return None
    m = re.match(r"\{([\w:-]+)\}\s*(.*)", token.info.strip())
    return (m.group(1), m.group(2).strip()) if m else None


def _directive_body(content: str) -> str:
    """A directive's content without its ``:option: value`` lines (or a leading YAML block)."""
    lines = content.split("\n")
    if lines and lines[0].strip() == "---":
        end = lines.index("---", 1) if "---" in lines[1:] else 0
        lines = lines[end + 1:]
    while lines and re.match(r"\s*:[\w-]+:", lines[0]):
        lines.pop(0)
    return "\n".join(lines).strip("\n")


def _scan(tokens, md, visit) -> None:
    """Call ``visit(token)`` for every token, descending into admonition bodies."""
    for token in tokens:
        visit(token)
        d = _directive(token)
        if d and d[0] in ADMONITIONS:
            _scan(md.parse(_directive_body(token.content)), md, visit)


def _citation_labels(bib: Path) -> dict[str, tuple[str, str]]:
    """Author-year labels as the book prints them: "Doersch", "Kingma and Welling", "Rezende *et al.*"."""
    from pybtex.database import parse_file
    from pybtex.richtext import Text

    out = {}
    for key, entry in parse_file(str(bib)).entries.items():
        people = entry.persons.get("author") or entry.persons.get("editor") or []
        last = [Text.from_latex(" ".join(p.prelast_names + p.last_names)).render_as("text") for p in people]
        if not last:
            raise ConversionError(f"{bib.name}: {key} has no author")
        names = last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2 else f"{last[0]} *et al.*"
        out[key] = (names, entry.fields.get("year", "n.d."))
    return out


def book_index(root: Path = ROOT) -> BookIndex:
    """Read ``_config.yml``, ``_toc.yml``, every page of the book and the bibliography."""
    config = read_config(root)
    md = parser(config)
    index = BookIndex(base_url=base_url(config))
    for bibfile in config.get("bibtex_bibfiles", []):
        index.citations.update(_citation_labels(root / bibfile))
    chapter = 0
    for doc, numbered in toc_docs(root):
        chapter += numbered
        prefix = f"{chapter}." if numbered else ""
        source = (root / f"{doc}.md").read_text(encoding="utf-8")
        if is_notebook_text(source):
            nb = jupytext.reads(source, fmt="md:myst")
            text = "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
            captions = [c for c in nb.cells if c.cell_type == "code" and figure_caption(c)]
            index.figures[doc] = [f"{prefix}{i}" for i in range(1, len(captions) + 1)]
        else:
            text = source
        tokens = md.parse(text)
        pending: list[str] = []
        count = 0

        def visit(token, doc=doc, prefix=prefix):
            nonlocal count
            if token.type == "myst_target":
                pending.append(token.content)
            elif token.type == "inline" and pending:
                for label in pending:
                    index.labels[label] = (doc, token.content)
                pending.clear()
            elif token.type == "math_block_label":
                count += 1
                index.equations[token.info] = (doc, f"{prefix}{count}")
            elif _directive(token) and _directive(token)[0] == "bibliography":
                index.bibliography = doc

        _scan(tokens, md, visit)
        headings = [t for i, t in enumerate(tokens) if i and tokens[i - 1].type == "heading_open"
                    and tokens[i - 1].tag == "h1"]
        index.titles[doc] = headings[0].content if headings else doc
    return index


def is_notebook_text(text: str) -> bool:
    head = text[:400]
    return head.startswith("---") and "jupytext:" in head


# ---- MyST -> CommonMark -----------------------------------------------------------------------

def _split_keys(content: str) -> list[str]:
    return [k.strip() for k in content.split(",") if k.strip()]


def _text_and_target(content: str) -> tuple[str | None, str]:
    m = re.fullmatch(r"(.*?)\s*<([^<>]+)>", content.strip(), flags=re.S)
    return (m.group(1).strip(), m.group(2).strip()) if m else (None, content.strip())


def _resolve_doc(target: str, doc: str, index: BookIndex) -> str:
    base = Path(doc).parent
    candidate = target.lstrip("/") if target.startswith("/") else str((base / target).as_posix())
    candidate = re.sub(r"\.(md|ipynb)$", "", candidate)
    parts = []
    for part in candidate.split("/"):
        if part == "..":
            parts = parts[:-1]
        elif part not in ("", "."):
            parts.append(part)
    return "/".join(parts)


def cite_anchor(key: str) -> str:
    """The bibliography entry's id under ``bibtex_cite_id: "cite-{key}"`` (docutils normalises ids)."""
    from docutils.nodes import make_id

    return make_id(f"cite-{key}")


def render_role(name: str, content: str, doc: str, index: BookIndex) -> str:
    """The CommonMark text for one MyST role in ``doc``."""
    if name.startswith("cite"):
        keys = _split_keys(content)
        missing = [k for k in keys if k not in index.citations]
        if missing:
            raise ConversionError(f"cited but not in the bibliography: {missing}")
        url = lambda k: index.url(index.bibliography, cite_anchor(k))  # noqa: E731
        if name in ("cite:t", "cite:ts"):
            return ", ".join(f"[{index.citations[k][0]} ({index.citations[k][1]})]({url(k)})" for k in keys)
        if name in ("cite", "cite:p", "cite:ps"):
            return "(" + "; ".join(f"[{index.citations[k][0]}, {index.citations[k][1]}]({url(k)})"
                                   for k in keys) + ")"
    elif name == "eq":
        label = content.strip()
        number = index.equation_number(label)
        where = index.equations[label][0]
        return f"({number})" if where == doc else f"[({number})]({index.url(where, f'equation-{label}')})"
    elif name == "ref":
        text, label = _text_and_target(content)
        if label not in index.labels:
            raise ConversionError(f"no target labelled {label!r} in the book")
        where, title = index.labels[label]
        return f"[{text or title}]({index.url(where, label)})"
    elif name == "doc":
        text, target = _text_and_target(content)
        where = _resolve_doc(target, doc, index)
        return f"[{text or index.titles.get(where, where)}]({index.url(where)})"
    elif name == "math":
        return f"${content}$"
    elif name == "out":  # a number copied from an output (_ext/quoted.py): the text itself
        return " ".join(content.split())
    raise ConversionError(f"the role {{{name}}} has no CommonMark rendering (add one in _ext/colab.py)")


def _replace_once(lines: list[str], start: int, end: int, cursor: int, old: str, new: str | None) -> int:
    """Replace the first ``old`` at or after ``cursor`` in ``lines[start:end]``; return the new cursor.

    With ``new=None`` nothing is replaced: the cursor moves past ``old`` (a code span, whose
    text must not be mistaken for a role), or stays put if the span cannot be found verbatim.
    """
    segment = "\n".join(lines[start:end])
    at = segment.find(old, cursor)
    if new is None:
        return cursor if at < 0 else at + len(old)
    if at < 0:
        raise ConversionError(f"cannot find {old!r} in lines {start + 1}-{end}")
    segment = segment[:at] + new + segment[at + len(old):]
    replaced = segment.split("\n")
    if len(replaced) != end - start:
        raise ConversionError(f"a rendering of {old!r} spans lines")
    lines[start:end] = replaced
    return at + len(new)


def to_commonmark(text: str, doc: str, index: BookIndex, config: dict | None = None) -> str:
    """Rewrite the MyST constructs of one markdown cell of ``doc`` as CommonMark + MathJax."""
    md = parser(config if config is not None else read_config())
    tokens = md.parse(text)
    lines = text.split("\n")

    # 1. inline: roles and relative links, replaced where they stand (line count unchanged)
    cursors: dict[int, int] = {}
    for token in tokens:
        if token.type != "inline" or not token.children or token.map is None:
            continue
        start, end = token.map[0], max(token.map[1], token.map[0] + 1)
        for child in token.children:
            if child.type == "code_inline":
                old, new = child.markup + child.content + child.markup, None
            elif child.type == "myst_role":
                name = child.meta["name"]
                old = f"{{{name}}}`{child.content}`"
                new = render_role(name, child.content, doc, index)
            elif child.type == "link_open" and not re.match(r"[a-z][a-z0-9+.-]*:|#", child.attrs["href"]):
                href = child.attrs["href"]
                target, _, anchor = href.partition("#")
                old, new = f"]({href})", f"]({index.url(_resolve_doc(target, doc, index), anchor)})"
            else:
                continue
            try:
                cursors[start] = _replace_once(lines, start, end, cursors.get(start, 0), old, new)
            except ConversionError as exc:
                raise ConversionError(f"{doc}: {exc}") from None

    # 2. blocks: labels, numbered equations, definition lists, admonitions (bottom-up edits)
    edits: list[tuple[int, int, list[str]]] = []
    for i, token in enumerate(tokens):
        if token.type in ("myst_target", "myst_line_comment"):
            edits.append((token.map[0], token.map[1], []))
        elif token.type == "math_block_label":
            indent = re.match(r"\s*", lines[token.map[0]]).group(0)
            body = [line for line in token.content.split("\n") if line.strip()]
            number = index.equation_number(token.info)
            edits.append((token.map[0], token.map[1],
                          [indent + "$$", *body, f"{indent}\\tag{{{number}}}", indent + "$$"]))
        elif token.type == "dt_open":
            term = token.map[0]
            dd = next(t for t in tokens[i:] if t.type == "dd_open")
            first = next(j for j in range(term + 1, max(dd.map[1], term + 2))
                         if re.match(r"\s*:\s", lines[j]))
            m = re.match(r"(\s*):\s+(.*)", lines[first])
            edits.append((term, term + 1, []))
            edits.append((first, first + 1, [f"{m.group(1)}- **{lines[term].strip()}**: {m.group(2)}"]))
        elif _directive(token):
            name, argument = _directive(token)
            if name not in ADMONITIONS:
                raise ConversionError(f"{doc}: the directive {{{name}}} has no CommonMark rendering")
            title = argument if name == "admonition" else (argument or name.capitalize())
            if name == "exercise":
                title = f"Exercise: {argument}" if argument else "Exercise"
            if name == "seealso" and not argument:
                title = "See also"
            body = to_commonmark(_directive_body(token.content), doc, index, config)
            title = to_commonmark(title, doc, index, config).strip()
            quoted = [f"> **{title}**", ">"] + [f"> {line}".rstrip() for line in body.split("\n")]
            edits.append((token.map[0], token.map[1], quoted))
        elif token.type in ("amsmath",) and "\\label" in token.content:
            raise ConversionError(f"{doc}: label amsmath equations with $$ ... $$ (label) instead")
    for start, end, new in sorted(edits, key=lambda e: e[0], reverse=True):
        lines[start:end] = new
    out = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", out).strip("\n")


# ---- the notebook a reader opens ------------------------------------------------------------

GUIDE_PAGE = "book/running.html"  # "Running the course": devices, budgets, cached runs, data


def setup_cell_source(repo_url: str, commit: str, version: str, book_url: str) -> str:
    """The first code cell of every chapter: install the vaelib that produced the outputs, and
    say where the book explains running it (``book_url``: the published book, ending in '/')."""
    return (
        f"# Generated set-up. Where vaelib is missing (Colab), install the version that\n"
        f"# produced this notebook's outputs: vaelib {version}, commit {commit[:12]}.\n"
        f"# Devices, run budgets, cached runs (Google Drive) and data:\n"
        f"# {book_url}{GUIDE_PAGE}\n"
        f"try:\n"
        f"    import vaelib\n"
        f"except ImportError:\n"
        f"    VAELIB = (\"vaelib @ git+{repo_url}\"\n"
        f"              \"@{commit}\")\n"
        f"    %pip install -q \"$VAELIB\"\n"
        f"    import vaelib\n"
        f"vaelib.use_book_style()  # the book's text sizes; sharp figures on HiDPI screens"
    )


def figure_caption(cell) -> str | None:
    return ((cell.metadata.get("mystnb") or {}).get("figure") or {}).get("caption")


def colab_notebook(md_path: Path, provenance: dict, root: Path = ROOT,
                   index: BookIndex | None = None, doc: str | None = None) -> nbformat.NotebookNode:
    """The chapter ``md_path`` as a notebook that renders anywhere, without outputs.

    ``provenance`` is ``{"commit": ..., "version": ...}``: the vaelib that executes it.
    ``doc`` is the page's name in the book (default: ``md_path`` relative to ``root``).
    The cells: the chapter's cells in order, markdown converted to CommonMark; the set-up
    cell before the first code cell; after each captioned figure a markdown cell with
    its number and caption (cell metadata, which Colab does not show).
    """
    config = read_config(root)
    index = index or book_index(root)
    doc = doc or md_path.resolve().relative_to(root.resolve()).with_suffix("").as_posix()
    source = jupytext.read(md_path)
    cells, figures = [], iter(index.figures.get(doc, []))
    in_solution = False
    for cell in source.cells:
        if cell.cell_type == "markdown":
            parts, in_solution = solution_parts(cell.source, config, in_solution)
            for part, solution in parts:
                text = to_commonmark(part, doc, index, config) if part.strip() else ""
                if solution and (text.strip() or not part.strip()):
                    note = nbformat.v4.new_markdown_cell(
                        f"<details><summary><b>Solution</b> (open it when you have tried)</summary>\n\n"
                        f"{text}\n\n</details>" if text.strip() else
                        "**Solution**: the cells below are collapsed; open them when you have tried.")
                    note.metadata["tags"] = [SOLUTION_TAG]
                    cells.append(note)
                elif text.strip():
                    cells.append(nbformat.v4.new_markdown_cell(text))
            continue
        if cell.cell_type != "code":
            continue
        if not any(SETUP_TAG in c.metadata.get("tags", []) for c in cells):
            setup = nbformat.v4.new_code_cell(setup_cell_source(
                config["repository"]["url"], provenance["commit"], provenance["version"], base_url(config)))
            setup.metadata["tags"] = [SETUP_TAG]
            cells.append(setup)
        code = nbformat.v4.new_code_cell(cell.source)
        code.metadata.update({k: cell.metadata[k] for k in ("tags", "mystnb") if k in cell.metadata})
        if in_solution:
            code.metadata.update(HIDDEN)
        cells.append(code)
        caption = figure_caption(cell)
        if caption:
            text = to_commonmark(" ".join(caption.split()), doc, index, config)
            note = nbformat.v4.new_markdown_cell(f"*Figure {next(figures)}.* {text}")
            note.metadata["tags"] = [CAPTION_TAG]
            cells.append(note)
    nb = nbformat.v4.new_notebook(cells=cells, metadata={
        "kernelspec": source.metadata.get("kernelspec", {"display_name": "Python 3 (ipykernel)",
                                                          "language": "python", "name": "python3"}),
        "language_info": {"name": "python"},
        "vaelib": dict(provenance),
    })
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:03d}"  # stable ids keep diffs to what really changed
    return nb


def solution_parts(text: str, config: dict, in_solution: bool) -> tuple[list[tuple[str, bool]], bool]:
    """``text`` (one markdown cell) cut at its ``{solution-start}`` and ``{solution-end}``
    directives, which are dropped: ([(part, inside a solution?)], inside a solution at its end).
    ``in_solution`` says whether the cell begins inside one (a solution's code cells sit between
    markdown cells). The part that opens a solution is kept even when empty, so the notebook
    says that a solution follows; other empty parts are dropped."""
    lines = text.split("\n")
    parts, start, opening = [], 0, False
    for token in parser(config).parse(text):
        d = _directive(token)
        if not d or d[0] not in ("solution-start", "solution-end"):
            continue
        parts.append(("\n".join(lines[start:token.map[0]]), in_solution, opening))
        in_solution, start = d[0] == "solution-start", token.map[1]
        opening = in_solution
    parts.append(("\n".join(lines[start:]), in_solution, opening))
    return [(part, solution) for part, solution, opens in parts if part.strip() or opens], in_solution


def chapter_code_cells(nb) -> list:
    """The code cells that come from the chapter's source (the set-up cell is generated)."""
    return [c for c in nb.cells if c.cell_type == "code" and SETUP_TAG not in c.metadata.get("tags", [])]


def setup_cells(nb) -> list:
    return [c for c in nb.cells if SETUP_TAG in c.metadata.get("tags", [])]


def stale_code(source, stored) -> str | None:
    """Where the code of ``source`` (read from a chapter's .md) differs from the code whose
    outputs ``stored`` holds, or None when they are the same."""
    code = [c.source.strip() for c in source.cells if c.cell_type == "code"]
    kept = [c.source.strip() for c in chapter_code_cells(stored)]
    changed = [i for i, (a, b) in enumerate(zip(code, kept)) if a != b]
    if changed:
        return f"code cell {changed[0] + 1}"
    return None if len(code) == len(kept) else f"{len(code)} code cells against {len(kept)}"
