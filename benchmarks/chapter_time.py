"""How long a chapter takes to execute, cell by cell, under a chosen budget and cap.

    python -m benchmarks.chapter_time book/06_vae.ipynb [--budget full] [--max-minutes 0.5]

Executes the chapter's notebook in a fresh kernel in a temporary folder (so it trains into a
fresh runs folder and leaves book/ untouched), with ``VAELIB_BUDGET`` and ``VAELIB_MAX_MINUTES``
set as asked and ``CI`` unset, and prints each code cell's wall time, its first line, and the
total. Nothing is written back to the notebook.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nbformat


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebook", type=Path)
    parser.add_argument("--budget", choices=["smoke", "default", "full"], default="default")
    parser.add_argument("--max-minutes", default=None, help="VAELIB_MAX_MINUTES for the run (default: unset)")
    args = parser.parse_args(argv)

    from jupyter_client import KernelManager
    from nbclient import NotebookClient

    nb = nbformat.read(args.notebook, as_version=4)
    env = {k: v for k, v in os.environ.items() if k not in ("CI", "VAELIB_SMOKE", "VAELIB_MAX_MINUTES")}
    env["VAELIB_BUDGET"] = args.budget
    if args.max_minutes is not None:
        env["VAELIB_MAX_MINUTES"] = args.max_minutes
    if "VAELIB_DATA" in env:
        env["VAELIB_DATA"] = str(Path(env["VAELIB_DATA"]).resolve())
    rows, start = [], time.perf_counter()
    with tempfile.TemporaryDirectory() as folder:
        km = KernelManager(kernel_name="python3")
        km.start_kernel(env=env, cwd=folder)
        client = NotebookClient(nb, km=km, timeout=3600, allow_errors=False)
        try:
            with client.setup_kernel():
                for index, cell in enumerate(nb.cells):
                    if cell.cell_type != "code" or "%pip" in cell.source:
                        continue
                    t0 = time.perf_counter()
                    client.execute_cell(cell, index)
                    rows.append((index, time.perf_counter() - t0, cell.source.strip().splitlines()[0][:70]))
        finally:
            if km.has_kernel:
                km.shutdown_kernel(now=True)
        shutil.rmtree(folder, ignore_errors=True)
    total = time.perf_counter() - start
    print(f"{args.notebook}: VAELIB_BUDGET={args.budget}, VAELIB_MAX_MINUTES={args.max_minutes or '(unset)'}\n")
    print("| cell | seconds | first line |\n|---:|---:|---|")
    for index, seconds, line in rows:
        print(f"| {index} | {seconds:.1f} | `{line}` |")
    print(f"\ntotal, kernel start included: {total:.0f} s ({total / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
