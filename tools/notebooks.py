"""Keep each chapter's MyST-markdown source and its executed .ipynb in step.

    python tools/notebooks.py sync  [book/01_x.md ...]   # md -> executed ipynb (default budget)
    python tools/notebooks.py check [book/01_x.md ...]   # fail if a pair disagrees

The markdown file is the source of truth. `sync` converts it with jupytext, runs
it with nbclient in book/ (as Colab and the book build do) under the *default*
run budget, and writes book/<name>.ipynb with its outputs. `check` compares the
code, the text and the cell tags of each pair, and that every code cell ran.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parent.parent
BOOK = ROOT / "book"
# Outputs must not leak the machine they were made on, nor hide a failure.
FORBIDDEN_OUTPUT = re.compile(r"(/work/|/root/|/home/|/tmp/|/Users/|Traceback \(most recent call last\))")


def chapters(paths: list[str] | None = None) -> list[Path]:
    """The MyST notebooks in book/ (markdown files with a jupytext header)."""
    if paths:
        return [Path(p).resolve() for p in paths]
    return sorted(p for p in BOOK.glob("*.md") if is_notebook(p))


def is_notebook(md: Path) -> bool:
    head = md.read_text(encoding="utf-8")[:400]
    return head.startswith("---") and "jupytext:" in head


def cell_signature(nb) -> list[tuple]:
    """What must agree between a pair: cell kinds, sources, tags and MyST-NB options."""
    sig = []
    for cell in nb.cells:
        meta = {k: cell.metadata[k] for k in ("tags", "mystnb") if k in cell.metadata}
        sig.append((cell.cell_type, cell.source.strip(), repr(sorted(meta.items()))))
    return sig


def pair_problems(md: Path, ipynb: Path) -> list[str]:
    """Reasons why ``ipynb`` is not an up-to-date executed copy of ``md`` (empty if it is)."""
    if not ipynb.exists():
        return [f"{ipynb.name} is missing: run `make notebooks`"]
    source, stored = cell_signature(jupytext.read(md)), cell_signature(nbformat.read(ipynb, as_version=4))
    problems = []
    if len(source) != len(stored):
        problems.append(f"{md.name} has {len(source)} cells but {ipynb.name} has {len(stored)}")
    for i, (a, b) in enumerate(zip(source, stored)):
        if a != b:
            what = "kind" if a[0] != b[0] else "source" if a[1] != b[1] else "tags/metadata"
            problems.append(f"cell {i} differs in its {what}: {a[1][:60]!r} vs {b[1][:60]!r}")
    nb = nbformat.read(ipynb, as_version=4)
    for i, cell in enumerate(nb.cells):
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


def sync(md: Path, timeout: int = 1800) -> Path:
    from nbclient import NotebookClient

    nb = jupytext.read(md)
    env_before = dict(os.environ)
    for name in ("CI", "VAELIB_SMOKE"):
        os.environ.pop(name, None)
    os.environ["VAELIB_BUDGET"] = "default"  # stored outputs show what a CPU reader gets
    try:
        NotebookClient(
            nb, timeout=timeout, kernel_name="python3", record_timing=False,
            resources={"metadata": {"path": str(md.parent)}},
        ).execute()
    finally:
        os.environ.clear()
        os.environ.update(env_before)
    for i, cell in enumerate(nb.cells):
        cell.id = f"cell-{i:03d}"  # stable ids keep diffs to what really changed
        if cell.cell_type == "code":
            cell.outputs = merge_streams(cell.outputs)
    nb.metadata.pop("jupytext", None)
    ipynb = md.with_suffix(".ipynb")
    nbformat.write(nb, ipynb)
    return ipynb


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["sync", "check"])
    parser.add_argument("files", nargs="*", help="chapter .md files (default: every notebook in book/)")
    args = parser.parse_args()
    failed = False
    for md in chapters(args.files):
        if args.command == "sync":
            print(f"executing {md.relative_to(ROOT)} ...", flush=True)
            sync(md)
        problems = pair_problems(md, md.with_suffix(".ipynb"))
        for p in problems:
            print(f"{md.relative_to(ROOT)}: {p}", file=sys.stderr)
        failed |= bool(problems)
        if not problems:
            print(f"{md.relative_to(ROOT)}: in step with its .ipynb")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
