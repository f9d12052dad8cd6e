"""The book's structure: pages exist, notebooks are paired and executed, Colab paths and citations resolve."""

import re
import shutil
import sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from check_book import toc_files  # noqa: E402
from notebooks import chapters, is_notebook, pair_problems  # noqa: E402

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())
CHAPTERS = chapters()
REQUIRED_REFERENCES = [
    "kingma2014autoencoding", "kingma2019introduction", "rezende2014stochastic", "doersch2016tutorial",
    "burda2016importance", "higgins2017betavae", "mohamed2020monte", "williams1992simple", "blei2017variational",
]


def test_there_are_chapters():
    assert CHAPTERS, "book/ has no MyST notebooks"


def test_every_toc_entry_exists_and_every_notebook_is_in_the_toc():
    docs = toc_files(TOC)
    for doc in docs:
        assert (ROOT / f"{doc}.md").is_file(), f"_toc.yml lists {doc}, but {doc}.md does not exist"
    listed = {ROOT / f"{doc}.md" for doc in docs}
    assert set(CHAPTERS) <= listed, f"notebooks missing from _toc.yml: {set(CHAPTERS) - listed}"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_markdown_and_notebook_agree(md):
    assert pair_problems(md, md.with_suffix(".ipynb")) == []


@pytest.mark.parametrize("doc", [d for d in toc_files(TOC) if is_notebook(ROOT / f"{d}.md")])
def test_colab_path_exists(doc):
    # sphinx-book-theme opens <repo>/blob/<branch>/<path_to_book>/<doc>.ipynb
    path = Path(CONFIG["repository"].get("path_to_book") or ".") / f"{doc}.ipynb"
    assert (ROOT / path).is_file(), f"the Colab button of {doc} would open {path}, which does not exist"


@pytest.mark.parametrize("md", CHAPTERS, ids=lambda p: p.name)
def test_first_cell_installs_vaelib_from_this_repository_only_when_missing(md):
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code")
    url = CONFIG["repository"]["url"]
    branch = CONFIG["repository"]["branch"]
    code = [line for line in first.source.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert [line.strip() for line in code[:3]] == ["try:", "import vaelib", "except ImportError:"]
    assert code[3].strip().startswith("%pip install") and f"git+{url}@{branch}" in code[3], (
        f"the install cell must pip-install {url}@{branch} when vaelib is missing"
    )
    assert first.outputs == [], "where vaelib is installed the first cell must print nothing"


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


def _edit(ipynb, change):
    nb = nbformat.read(ipynb, as_version=4)
    change(nb)
    nbformat.write(nb, ipynb)


def _last_code(nb):
    return [c for c in nb.cells if c.cell_type == "code"][-1]


def test_pair_check_catches_edited_code(pair):
    md, ipynb = pair
    assert pair_problems(md, ipynb) == []
    _edit(ipynb, lambda nb: setattr(_last_code(nb), "source", _last_code(nb).source + "\nprint(1)"))
    assert any("source" in p for p in pair_problems(md, ipynb))


def test_pair_check_catches_edited_text_and_tags(pair):
    md, ipynb = pair
    md.write_text(md.read_text().replace("## What to notice", "## What to see"))
    assert any("source" in p for p in pair_problems(md, ipynb))
    md.write_text(md.read_text().replace("## What to see", "## What to notice"))
    _edit(ipynb, lambda nb: _last_code(nb).metadata.setdefault("tags", []).append("nbval-ignore-output"))
    assert any("tags" in p for p in pair_problems(md, ipynb))


def test_pair_check_catches_unexecuted_cells_and_leaks(pair):
    md, ipynb = pair
    _edit(ipynb, lambda nb: setattr(_last_code(nb), "execution_count", None))
    assert any("not executed" in p for p in pair_problems(md, ipynb))
    _edit(ipynb, lambda nb: setattr(_last_code(nb), "execution_count", 1))
    leak = nbformat.v4.new_output("stream", name="stdout", text="saved to /home/someone/data\n")
    _edit(ipynb, lambda nb: _last_code(nb).outputs.append(leak))
    assert any("machine path" in p for p in pair_problems(md, ipynb))


def test_pair_check_catches_a_missing_notebook(pair):
    md, ipynb = pair
    ipynb.unlink()
    assert any("missing" in p for p in pair_problems(md, ipynb))


def test_repeated_page_scripts_are_dropped_once_each():
    """sphinx-thebe registers its inline config twice, once with filename None and once with "":
    the local extension must keep one copy (a doubled ``const`` throws in the browser) and keep
    every distinct script, in order."""
    from sphinx.builders.html._assets import _JavaScript

    sys.path.insert(0, str(ROOT / "_ext"))
    from dedupe_scripts import drop_repeated_scripts

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
