"""The book's structure: pages exist, notebooks are generated and executed, installs are pinned."""

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import nbformat
import pytest

from _ext.colab import GUIDE_PAGE, SETUP_TAG, base_url, read_config, setup_cell_source, toc_docs
from tools.notebooks import chapters, pair_problems

ROOT = Path(__file__).resolve().parent.parent
CONFIG = read_config(ROOT)
DOCS = [doc for doc, _ in toc_docs(ROOT)]
CHAPTERS = chapters()
REQUIRED_REFERENCES = [
    "kingma2014autoencoding", "kingma2019introduction", "rezende2014stochastic", "doersch2016tutorial",
    "burda2016importance", "higgins2017betavae", "mohamed2020monte", "williams1992simple", "blei2017variational",
]


def test_there_are_chapters():
    assert CHAPTERS, "book/ has no MyST notebooks"


def test_every_toc_entry_exists_and_every_notebook_is_in_the_toc():
    docs = DOCS
    for doc in docs:
        assert (ROOT / f"{doc}.md").is_file(), f"_toc.yml lists {doc}, but {doc}.md does not exist"
    listed = {ROOT / f"{doc}.md" for doc in docs}
    assert set(CHAPTERS) <= listed, f"notebooks missing from _toc.yml: {set(CHAPTERS) - listed}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_markdown_and_notebook_agree(md):
    assert pair_problems(md, md.with_suffix(".ipynb")) == []


def _git(*args):
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_first_cell_installs_the_vaelib_commit_that_made_the_outputs(md):
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    prov = nb.metadata["vaelib"]
    assert SETUP_TAG in first.metadata.get("tags", [])
    assert first.source == setup_cell_source(CONFIG["repository"]["url"], prov["commit"], prov["version"],
                                             base_url(CONFIG))
    assert f"{base_url(CONFIG)}{GUIDE_PAGE}" in first.source, "the set-up cell links to 'Running the course'"
    assert (ROOT / GUIDE_PAGE).with_suffix(".md").is_file()
    assert re.fullmatch(r"[0-9a-f]{40}", prov["commit"]) and not prov["dirty"] and prov["budget"] == "default"
    pinned = re.search(r'VAELIB = \("vaelib @ git\+(\S+)"\s+"@([0-9a-f]{40})"\)\n\s+%pip install -q "\$VAELIB"',
                       first.source)
    assert pinned and pinned.groups() == (CONFIG["repository"]["url"], prov["commit"]), "not @main: a commit"
    assert first.outputs == [], "where vaelib is installed the set-up cell must print nothing"
    if _git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        pytest.skip("a shallow clone cannot show whether the pinned commit exists")
    assert _git("cat-file", "-e", f"{prov['commit']}^{{commit}}").returncode == 0, (
        f"{md.name} pins vaelib at {prov['commit']}, which is not a commit of this repository")
    at_commit = tomllib.loads(_git("show", f"{prov['commit']}:pyproject.toml").stdout)
    assert at_commit["project"]["version"] == prov["version"]
    assert _git("cat-file", "-e", f"{prov['commit']}:vaelib/__init__.py").returncode == 0


def test_the_book_build_executes_nothing():
    """Pages take their outputs from the stored notebooks (_ext/stored_outputs.py)."""
    assert CONFIG["execute"]["execute_notebooks"] == "off"
    assert "_ext.stored_outputs" in CONFIG["sphinx"]["local_extensions"]


def test_license_matches_the_package_metadata():
    license_text = (ROOT / "LICENSE").read_text()
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["license"] == {"text": "MIT"}
    assert license_text.startswith("MIT License") and "WITHOUT WARRANTY OF ANY KIND" in license_text


def test_bibliography_has_the_course_references_and_every_citation_resolves():
    bib = (ROOT / "references.bib").read_text()
    keys = set(re.findall(r"@\w+\{([^,]+),", bib))
    assert set(REQUIRED_REFERENCES) <= keys
    cited = set()
    for page in (ROOT / "book").glob("*.md"):
        for group in re.findall(r"\{cite(?::\w+)?\}`([^`]+)`", page.read_text()):
            cited |= {k.strip() for k in group.split(",")}
    assert cited, "no citations found"
    assert cited <= keys, f"cited but not in references.bib: {cited - keys}"


# ---- the pair check itself must catch disagreements ----------------------------------------

@pytest.fixture
def pair(tmp_path):
    md = CHAPTERS[0]
    shutil.copy(md, tmp_path / md.name)
    shutil.copy(md.with_suffix(".ipynb"), tmp_path / md.with_suffix(".ipynb").name)
    return tmp_path / md.name, tmp_path / md.with_suffix(".ipynb").name


def problems(pair):
    md, ipynb = pair
    return pair_problems(md, ipynb, doc=CHAPTERS[0].relative_to(ROOT).with_suffix("").as_posix())


def _edit(ipynb, change):
    nb = nbformat.read(ipynb, as_version=4)
    change(nb)
    nbformat.write(nb, ipynb)


def _last_code(nb):
    return [c for c in nb.cells if c.cell_type == "code"][-1]


def test_pair_check_catches_code_changed_after_the_outputs(pair):
    md, ipynb = pair
    assert problems(pair) == []
    _edit(ipynb, lambda nb: setattr(_last_code(nb), "source", _last_code(nb).source + "\nprint(1)"))
    assert any("code changed after the outputs" in p and "executes it again" in p for p in problems(pair))


def test_pair_check_catches_text_tags_and_set_up_out_of_date(pair):
    md, ipynb = pair
    md.write_text(md.read_text().replace("## What to notice", "## What to see"))
    assert any("out of date" in p and "without executing" in p for p in problems(pair))
    md.write_text(md.read_text().replace("## What to see", "## What to notice"))
    assert problems(pair) == []
    _edit(ipynb, lambda nb: _last_code(nb).metadata.setdefault("tags", []).append("nbval-ignore-output"))
    assert any("out of date" in p for p in problems(pair))
    _edit(ipynb, lambda nb: _last_code(nb).metadata["tags"].remove("nbval-ignore-output"))
    setup = lambda nb: next(c for c in nb.cells if c.cell_type == "code")  # noqa: E731
    _edit(ipynb, lambda nb: setattr(setup(nb), "source", setup(nb).source.replace("@", "@main#", 1)))
    assert any("out of date" in p for p in problems(pair))


def test_pair_check_wants_a_committed_vaelib_and_the_default_budget(pair):
    md, ipynb = pair
    _edit(ipynb, lambda nb: nb.metadata["vaelib"].update(dirty=True))
    assert any("committed vaelib" in p for p in problems(pair))
    _edit(ipynb, lambda nb: nb.metadata["vaelib"].update(dirty=False, budget="smoke"))
    assert any("default budget" in p for p in problems(pair))


def test_pair_check_catches_unexecuted_cells_and_leaks(pair):
    md, ipynb = pair
    _edit(ipynb, lambda nb: setattr(_last_code(nb), "execution_count", None))
    assert any("not executed" in p for p in problems(pair))
    _edit(ipynb, lambda nb: setattr(_last_code(nb), "execution_count", 1))
    leak = nbformat.v4.new_output("stream", name="stdout", text="saved to /home/someone/data\n")
    _edit(ipynb, lambda nb: _last_code(nb).outputs.append(leak))
    assert any("machine path" in p for p in problems(pair))


def test_pair_check_catches_a_missing_notebook(pair):
    md, ipynb = pair
    ipynb.unlink()
    assert any("missing" in p for p in problems(pair))


def test_pages_get_the_stored_outputs_and_refuse_other_code(pair):
    import jupytext
    from _ext.stored_outputs import with_stored_outputs

    md, ipynb = pair
    stored = nbformat.read(ipynb, as_version=4)
    page = with_stored_outputs(jupytext.read(md), ipynb)
    code = [c for c in page.cells if c.cell_type == "code"]
    stored_code = [c for c in stored.cells if c.cell_type == "code"]
    assert [c.source for c in code] == [c.source for c in stored_code]  # the set-up cell included
    assert [c.outputs for c in code] == [c.outputs for c in stored_code]
    assert any(c.outputs for c in code)
    md.write_text(md.read_text().replace("```{code-cell} ipython3\n", "```{code-cell} ipython3\nx = 0\n", 1))
    with pytest.raises(ValueError, match="executed from other code"):
        with_stored_outputs(jupytext.read(md), ipynb)


def test_repeated_page_scripts_are_dropped_once_each():
    """sphinx-thebe registers its inline config twice, once with filename None and once with "":
    the local extension must keep one copy (a doubled ``const`` throws in the browser) and keep
    every distinct script, in order."""
    from sphinx.builders.html._assets import _JavaScript

    from _ext.dedupe_scripts import drop_repeated_scripts

    thebe = 'const THEBE_JS_URL = "https://example.org/thebe.js"'
    scripts = [
        _JavaScript("_static/a.js"),
        _JavaScript(None, body=thebe),
        _JavaScript("", body=thebe),
        _JavaScript("_static/a.js"),
        _JavaScript("_static/b.js", defer="defer"),
        _JavaScript("_static/b.js"),
    ]
    context = {"script_files": scripts}
    drop_repeated_scripts(None, "page", "page.html", context, None)
    assert context["script_files"] == [scripts[0], scripts[1], scripts[4], scripts[5]]


def test_a_failing_chapter_stops_the_run_and_shows_its_error_not_a_page_of_context(monkeypatch, capsys):
    from nbclient.exceptions import CellExecutionError

    import tools.notebooks as notebooks

    md, ipynb = CHAPTERS[0], CHAPTERS[0].with_suffix(".ipynb")
    before = ipynb.read_text()
    ran = []

    def failing(nb, cwd):
        ran.append(cwd)
        raise CellExecutionError("traceback ...", "DatasetNotFoundError",
                                 "MNIST was not found in /nowhere (VAELIB_DATA is set to '/nowhere')")

    monkeypatch.setattr(notebooks, "execute", failing)
    monkeypatch.setattr(notebooks, "vaelib_provenance", lambda allow_dirty: {"version": "0", "commit": "0" * 40, "dirty": False, "budget": "default"})
    monkeypatch.setattr(notebooks.shutil, "rmtree", lambda *a, **k: None)  # keep book/runs
    assert notebooks.sync([md, md], force=True) == 1
    err = capsys.readouterr().err
    assert len(ran) == 1 and ipynb.read_text() == before  # stopped at the first chapter, left it as it was
    assert "a cell failed" in err and "DatasetNotFoundError: MNIST was not found in /nowhere" in err


def test_stored_outputs_read_as_a_readers_own_run():
    for md in CHAPTERS:
        text = md.with_suffix(".ipynb").read_text()
        assert "(VAELIB_BUDGET)" not in text, f"{md.name}: an output names a variable the reader never set"


def test_the_bibliography_is_labelled_as_the_text_cites():
    """One citation style: the bibliography's labels are the text's author-year citations."""
    from pybtex.database import parse_file

    from _ext.colab import book_index
    from _ext.stored_outputs import author_year_label

    assert CONFIG["sphinx"]["config"]["bibtex_default_style"] == "author_year_plain"
    cited = book_index(ROOT).citations
    for key, entry in parse_file(str(ROOT / "references.bib")).entries.items():
        names, year = cited[key]
        assert author_year_label(entry) == f"{names.replace('*', '')}, {year}", key


CODE_COLUMN = 88  # characters: what a code block shows without scrolling in the book's column


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_code_lines_fit_the_books_code_column(md):
    import jupytext

    long = [(i, line) for cell in jupytext.read(md).cells if cell.cell_type == "code"
            for i, line in enumerate(cell.source.splitlines(), 1) if len(line) > CODE_COLUMN]
    assert long == [], f"{md.name}: code lines over {CODE_COLUMN} characters: {long[:3]}"


def test_the_set_up_cell_fits_the_code_column_too():
    source = setup_cell_source("https://github.com/some-organisation/some-course", "f" * 40, "10.20.30",
                               "https://some-organisation.github.io/some-course/")
    assert max(len(line) for line in source.splitlines()) <= CODE_COLUMN
