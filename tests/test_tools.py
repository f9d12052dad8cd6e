"""The set-up scripts a newcomer meets: the browser install never runs sudo unasked."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "tools" / "install_chromium.sh"


@pytest.fixture
def machine(tmp_path):
    """A PATH with no browser, a fake apt-get and sudo that log their calls, and ``id -u`` set by the test."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    log = tmp_path / "calls.log"
    for name in ("apt-get", "sudo"):
        (bin_ / name).write_text(f"#!/bin/sh\necho {name} \"$@\" >> {log}\n")
    for tool in ("cat", "sh"):
        (bin_ / tool).symlink_to(shutil.which(tool))

    def run(uid: int):
        (bin_ / "id").write_text(f"#!/bin/sh\necho {uid}\n")
        for f in bin_.iterdir():
            f.chmod(0o755)
        env = {"PATH": str(bin_), "HOME": str(tmp_path), "CHROMIUM": ""}
        result = subprocess.run([shutil.which("bash"), str(SCRIPT)], env=env, capture_output=True, text=True,
                                stdin=subprocess.DEVNULL)
        calls = log.read_text().splitlines() if log.exists() else []
        return result, calls

    return run


def test_without_a_browser_a_non_root_run_never_calls_sudo_unasked(machine):
    result, calls = machine(uid=1000)
    assert result.returncode == 1 and calls == []
    assert "does not run unasked" in result.stderr and "make test SKIP_BROWSER=1" in result.stderr


def test_as_root_it_installs_debians_chromium(machine):
    result, calls = machine(uid=0)
    assert result.returncode == 0
    assert calls == ["apt-get update -qq", "apt-get install -y -qq --no-install-recommends chromium"]


def test_skip_browser_skips_loudly():
    root = SCRIPT.parents[1]
    result = subprocess.run(["make", "--no-print-directory", "-s", "check-html", "SKIP_BROWSER=1"], cwd=root,
                            capture_output=True, text=True, env={**os.environ})
    assert result.returncode == 0 and "SKIPPED: the browser check" in result.stderr


def test_the_build_log_drops_the_myst_configuration_dumps_and_nothing_else():
    import logging

    from myst_parser.config.main import MdParserConfig

    from _ext.quiet_config import _NoConfigDump

    def record(level, msg, *args):
        return logging.LogRecord("sphinx.myst_parser", level, __file__, 1, msg, args, None)

    keep = _NoConfigDump().filter
    assert not keep(record(logging.INFO, "myst v%s: %s", "3.0.1", MdParserConfig()))
    assert keep(record(logging.INFO, "reading sources... %s", "book/intro"))
    assert keep(record(logging.WARNING, "myst configuration invalid: %s", MdParserConfig()))


def test_chapters_are_executed_over_local_sockets_without_kernel_warnings(capfd):
    import nbformat

    from tools.notebooks import execute

    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("import os; repr(os.environ.get('VAELIB_BUDGET'))")])
    execute(nb, Path(__file__).parent)
    assert nb.cells[0].outputs[0]["data"]["text/plain"] == "'None'"  # a reader's run sets no budget either
    assert "WARNING" not in capfd.readouterr().err


def test_executing_a_chapter_profiles_its_cells_and_stores_no_timings(capsys):
    import nbformat

    from tools.notebooks import execute, print_profile

    cells = [nbformat.v4.new_code_cell("import time"), nbformat.v4.new_code_cell("time.sleep(0.6)"),
             nbformat.v4.new_code_cell("x = 1")]
    cells[2].metadata.update({"jupyter": {"source_hidden": True}})  # a folded solution
    nb = nbformat.v4.new_notebook(cells=cells)
    rows = execute(nb, Path(__file__).parent)
    assert [r[0] for r in rows] == [1, 2, 3]
    assert rows[1][1] >= 0.6 and rows[0][1] < 0.6 and rows[2][2] and not rows[1][2]
    assert all("execution" not in c.metadata for c in nb.cells)  # timings vary: never stored
    print_profile("ch", rows, top=1)
    out = capsys.readouterr().out
    assert "of which exercise solutions" in out and "cell   2" in out and "time.sleep" in out


def test_a_chapter_page_depends_on_its_stored_notebook():
    """An incremental `make book` after `make notebooks` must rebuild the pages whose outputs changed."""
    from types import SimpleNamespace

    from _ext.stored_outputs import note_stored_notebook

    noted = []
    book = Path(__file__).resolve().parent.parent / "book"
    env = SimpleNamespace(doc2path=lambda name: book / f"{name}.md", note_dependency=noted.append)
    note_stored_notebook(SimpleNamespace(env=env), "04_gradient_estimators", [""])
    note_stored_notebook(SimpleNamespace(env=env), "intro", [""])  # a page with no notebook
    assert noted == [str(book / "04_gradient_estimators.ipynb")]
