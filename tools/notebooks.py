"""Execute each chapter once, and keep the notebook readers open in step with its source.

    python -m tools.notebooks sync  [--force] [--allow-dirty] [book/06_vae.md ...]
    python -m tools.notebooks check [book/06_vae.md ...]

(from the repository root; ``make notebooks`` and ``make check-notebooks`` run these.)

``book/<chapter>.md`` (MyST markdown, jupytext) is the source of truth. ``book/<chapter>.ipynb``
is generated from it and is what Colab opens, a JupyterLab user downloads, nbval checks and
the HTML book shows (``_ext/stored_outputs.py``):

- markdown cells in CommonMark + MathJax (``_ext/colab.py``), figure captions as cells;
- a first code cell that pip-installs vaelib from ``repository.url`` in ``_config.yml`` at the
  commit that produced the outputs;
- the outputs of one execution under the ``default`` run budget.

``sync`` executes a chapter when its code changed since its outputs were made (``--force``:
always), and otherwise only regenerates the notebook around its stored outputs, in seconds.
Executing records ``git rev-parse HEAD`` as the vaelib that made the outputs, so ``vaelib/``
and ``pyproject.toml`` must be committed first (``--allow-dirty`` drafts anyway; ``check``
then fails until the chapter is executed from a commit).

``check`` fails when a notebook is not what ``sync`` would write: code changed after the
outputs were made, text or set-up out of date, a cell not executed, an error, a machine path.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from pathlib import Path

import nbformat
from nbclient.exceptions import CellExecutionError

from _ext.colab import (
    book_index, chapter_code_cells, colab_notebook, is_notebook_text, setup_cells, stale_code,
)

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"

BUDGET = "default"  # every stored output comes from this run budget
# Pages whose outputs come from long runs, not from one execution of their cells here: `sync` (make
# notebooks) never executes them, and nbval skips them; `python -m benchmarks.reproduce page` executes them.
NOT_EXECUTED = ("reproductions.md",)
COMMIT = re.compile(r"[0-9a-f]{40}")
# Outputs must not leak the machine they were made on, nor hide a failure.
FORBIDDEN_OUTPUT = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|Traceback \(most recent call last\))")


def chapters(paths: list[str] | None = None) -> list[Path]:
    """The MyST notebooks in book/ (markdown files with a jupytext header)."""
    if paths:
        return [Path(p).resolve() for p in paths]
    return sorted(p for p in BOOK.glob("*.md") if is_notebook(p))


def is_notebook(md: Path) -> bool:
    return is_notebook_text(md.read_text(encoding="utf-8")[:400])


def cell_signature(nb) -> list[tuple]:
    """What must agree between the notebook and its regeneration: kinds, sources, tags, options."""
    sig = []
    for cell in nb.cells:
        meta = {k: cell.metadata[k] for k in ("tags", "mystnb") if k in cell.metadata}
        sig.append((cell.cell_type, cell.source.strip(), repr(sorted(meta.items()))))
    return sig


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, check=True, capture_output=True, text=True).stdout.strip()


def vaelib_provenance(allow_dirty: bool = False) -> dict:
    """The vaelib that executes the chapters now: HEAD, which must hold the working tree's vaelib."""
    changed = _git("status", "--porcelain", "--", "vaelib", "pyproject.toml")
    if changed and not allow_dirty:
        raise SystemExit(
            "vaelib/ or pyproject.toml has uncommitted changes:\n" + changed + "\n"
            "Commit them first: each notebook installs the commit that produced its outputs "
            "(or pass --allow-dirty for a draft, which `check` rejects)."
        )
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return {"version": version, "commit": _git("rev-parse", "HEAD"), "dirty": bool(changed), "budget": BUDGET}


def code_changed(md: Path, stored) -> bool:
    """True when the stored outputs were made from other code than the chapter's now."""
    from jupytext import read

    return stale_code(read(md), stored) is not None


def pair_problems(md: Path, ipynb: Path, index=None, doc: str | None = None) -> list[str]:
    """Reasons why ``ipynb`` is not what ``sync`` would write for ``md`` (empty if it is).

    ``doc``: the page's name in the book, when ``md`` is a copy outside the repository."""
    if not ipynb.exists():
        return [f"{ipynb.name} is missing: run `make notebooks`"]
    stored = nbformat.read(ipynb, as_version=4)
    problems = []
    prov = stored.metadata.get("vaelib") or {}
    if not COMMIT.fullmatch(str(prov.get("commit", ""))) or prov.get("dirty") or prov.get("budget") != BUDGET:
        problems.append(f"{ipynb.name} does not record a committed vaelib and the {BUDGET} budget as what "
                        f"made its outputs (metadata.vaelib = {prov}): run `make notebooks FORCE=1`")
        prov = {"commit": "0" * 40, "version": "?"}
    if code_changed(md, stored):
        return problems + [f"{md.name}: code changed after the outputs in {ipynb.name} were made: "
                           f"run `make notebooks` (executes it again)"]
    expected = colab_notebook(md, prov, index=index, doc=doc)
    a, b = cell_signature(expected), cell_signature(stored)
    if a != b:
        i = next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
        what = f"cell {i}: {a[i][1][:60]!r} vs {b[i][1][:60]!r}" if i < min(len(a), len(b)) else (
            f"{len(a)} cells expected, {len(b)} stored")
        problems.append(f"{ipynb.name} is out of date with {md.name} or _config.yml ({what}): "
                        f"run `make notebooks` (regenerates it without executing)")
    for i, cell in enumerate(stored.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("execution_count") is None:
            problems.append(f"{ipynb.name} cell {i} was not executed")
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                problems.append(f"{ipynb.name} cell {i} stored an error: {out.get('ename')}")
            text = out.get("text", "") + "".join(str(v) for k, v in out.get("data", {}).items() if k.startswith("text/"))
            if FORBIDDEN_OUTPUT.search(text):
                problems.append(f"{ipynb.name} cell {i} output contains a machine path or a traceback")
    return problems


def merge_streams(outputs: list) -> list:
    """Join consecutive stdout (or stderr) chunks, which the kernel splits by timing."""
    merged = []
    for out in outputs:
        prev = merged[-1] if merged else None
        if out.get("output_type") == "stream" and prev is not None and prev.get("output_type") == "stream" \
                and prev.get("name") == out.get("name"):
            prev["text"] += out["text"]
        else:
            merged.append(out)
    return merged


def execute(nb, cwd: Path, timeout: int = 1800) -> list[tuple[int, float, bool, str]]:
    """Run ``nb`` in a fresh kernel in ``cwd`` under the default budget, whatever the machine;
    return each code cell's time (``cell_seconds``)."""
    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    import torch

    env_before = dict(os.environ)
    for name in ("CI", "VAELIB_SMOKE", "VAELIB_BUDGET", "VAELIB_MAX_MINUTES"):
        os.environ.pop(name, None)
    if torch.cuda.is_available():  # a GPU would pick the full budget: force the default one
        os.environ["VAELIB_BUDGET"] = BUDGET
    # else nothing is set: the stored outputs read as a CPU reader's own run ("default (cpu device)")
    try:
        with tempfile.TemporaryDirectory() as sockets:  # IPC: local sockets, not TCP (ipykernel warns on TCP)
            km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
            try:
                NotebookClient(nb, km=km, timeout=timeout, kernel_name="python3", record_timing=True,
                               resources={"metadata": {"path": str(cwd)}}).execute()
            finally:
                if km.has_kernel:  # a kernel manager passed in is ours to stop
                    km.shutdown_kernel(now=True)
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    return cell_seconds(nb)


def cell_seconds(nb) -> list[tuple[int, float, bool, str]]:
    """(code cell number, seconds, is a hidden solution, first line) for each executed code cell of
    ``nb``, from the timings nbclient recorded; the timings are removed (they differ every run and
    are not part of the stored notebook)."""
    rows, number = [], 0
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        number += 1
        timing = cell.metadata.pop("execution", None)
        if not timing or "shell.execute_reply" not in timing:
            continue
        start = timing.get("iopub.execute_input") or timing["shell.execute_reply.started"]
        seconds = (_when(timing["shell.execute_reply"]) - _when(start)).total_seconds()
        first = next((line for line in cell.source.splitlines() if line.strip()), "")
        rows.append((number, seconds, bool(cell.metadata.get("jupyter", {}).get("source_hidden")), first))
    return rows


def _when(stamp: str):
    from datetime import datetime

    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def _seconds(rows) -> tuple[float, float]:
    """(all cells, exercise solutions' cells) seconds of one chapter's profile."""
    return sum(s for _, s, _, _ in rows), sum(s for _, s, hidden, _ in rows if hidden)


def print_profile(name, rows, top: int = 8) -> None:
    """The chapter's slowest cells, and how much of its time went to its exercise solutions."""
    total, solutions = _seconds(rows)
    print(f"{name}: {total:.0f} s in cells, of which exercise solutions {solutions:.1f} s; slowest cells:")
    for number, seconds, hidden, first in sorted(rows, key=lambda r: -r[1])[:top]:
        tag = " (solution)" if hidden else ""
        print(f"  cell {number:3d} {seconds:7.1f} s{tag}  {first[:70]}")


def regenerate(md: Path, stored, index) -> nbformat.NotebookNode:
    """The notebook for ``md`` around the outputs and provenance stored in ``stored``."""
    nb = colab_notebook(md, stored.metadata["vaelib"], index=index)
    for cell, old in zip(chapter_code_cells(nb), chapter_code_cells(stored)):
        cell.outputs, cell.execution_count = old.outputs, old.execution_count
    for cell, old in zip(setup_cells(nb), setup_cells(stored)):
        cell.outputs, cell.execution_count = old.outputs, old.execution_count
    if "language_info" in stored.metadata:  # as the executing kernel reported it
        nb.metadata.language_info = stored.metadata.language_info
    return nb


def sync(mds: list[Path], force: bool = False, allow_dirty: bool = False, pages: bool = False) -> int:
    """Execute the chapters among ``mds`` whose code changed (``force``: all), regenerate the rest.
    A page of `NOT_EXECUTED` is only regenerated around its stored outputs, unless ``pages``."""
    index = book_index()
    todo, stale_pages = [], []
    for md in mds:
        ipynb = md.with_suffix(".ipynb")
        stored = nbformat.read(ipynb, as_version=4) if ipynb.exists() else None
        fresh = stored is None or force or "vaelib" not in stored.metadata or code_changed(md, stored)
        if md.name in NOT_EXECUTED and not pages:
            if stored is None or "vaelib" not in stored.metadata or code_changed(md, stored):
                print(f"{md.relative_to(ROOT)}: its code changed, and make notebooks does not execute it: run "
                      "`python -m benchmarks.reproduce page`", file=sys.stderr)
                stale_pages.append(md)
                continue
            print(f"{md.relative_to(ROOT)}: not executed here (its outputs are the long runs' results; "
                  "`python -m benchmarks.reproduce page` executes it)")
            fresh = False
        todo.append((md, ipynb, stored, fresh))
    provenance = vaelib_provenance(allow_dirty) if any(fresh for *_, fresh in todo) else None
    if provenance is not None and not pages:
        shutil.rmtree(BOOK / "runs", ignore_errors=True)  # outputs come from fresh training runs
    profiles = []
    for md, ipynb, stored, fresh in todo:
        name = md.relative_to(ROOT)
        if fresh:
            print(f"{name}: executing (budget {BUDGET}, vaelib {provenance['commit'][:12]}) ...", flush=True)
            t0 = time.perf_counter()
            nb = colab_notebook(md, provenance, index=index)
            try:
                profile = execute(nb, md.parent)
            except CellExecutionError as err:  # the error itself, not nbclient's page of context
                print(f"{name}: a cell failed, so {ipynb.name} was left as it was and no later chapter ran.\n"
                      f"{err.ename}: {err.evalue}", file=sys.stderr)
                return 1
            print(f"{name}: executed in {time.perf_counter() - t0:.0f} s", flush=True)
            print_profile(name, profile)
            profiles.append((name, profile))
        else:
            nb = regenerate(md, stored, index)
        before = ipynb.read_text(encoding="utf-8") if ipynb.exists() else None
        after = nbformat.writes(nb) + "\n"
        if after != before:
            ipynb.write_text(after, encoding="utf-8")
            if not fresh:
                print(f"{name}: regenerated around its stored outputs")
        else:
            print(f"{name}: up to date")
    if len(profiles) > 1:
        print_summary(profiles)
    return 1 if stale_pages else check(mds, index)


def print_summary(profiles) -> None:
    """One row per executed chapter: its cells' seconds, its solutions' share, its slowest cell."""
    print(f"\n{'chapter':44s} {'cells s':>8s} {'solutions s':>12s} {'slowest cell s':>15s}")
    for name, rows in profiles:
        total, solutions = _seconds(rows)
        slowest = max((s for _, s, _, _ in rows), default=0.0)
        print(f"{str(name):44s} {total:8.0f} {solutions:12.1f} {slowest:15.0f}")
    totals = [_seconds(rows) for _, rows in profiles]
    print(f"{'all':44s} {sum(t for t, _ in totals):8.0f} {sum(s for _, s in totals):12.1f}")


def check(mds: list[Path], index=None) -> int:
    index = index or book_index()
    failed = False
    for md in mds:
        problems = pair_problems(md, md.with_suffix(".ipynb"), index)
        for p in problems:
            print(f"{md.relative_to(ROOT)}: {p}", file=sys.stderr)
        failed |= bool(problems)
    return 1 if failed else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["sync", "check"])
    parser.add_argument("files", nargs="*", help="chapter .md files (default: every notebook in book/)")
    parser.add_argument("--force", action="store_true", help="execute every chapter given, changed or not")
    parser.add_argument("--allow-dirty", action="store_true", help="execute with uncommitted vaelib changes (a draft)")
    args = parser.parse_args()
    mds = chapters(args.files)
    if args.command == "sync":
        return sync(mds, force=args.force, allow_dirty=args.allow_dirty)
    status = check(mds)
    if status == 0:
        print(f"{len(mds)} chapter notebook(s) in step with their sources")
    return status


if __name__ == "__main__":
    sys.exit(main())
