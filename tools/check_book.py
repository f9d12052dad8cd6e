"""After `jupyter-book build`: the HTML book shows the course that was tested.

    python -m tools.check_book [_build/html]      (from the repository root; make book runs it)

For every chapter page (built from ``book/<chapter>.md`` with its executed ``book/<chapter>.ipynb``):

- its Colab button opens that notebook in this repository (``repository.url``, ``branch``);
- its ".ipynb" download is that notebook, byte for byte;
- its images are the notebook's image outputs, byte for byte and in order, and every line
  its cells printed is on the page: the page shows the one stored execution;
- its equation and figure numbers are the ones the notebook writes (``\\tag``, captions).

And every link from a notebook into the published book (``html.baseurl``) leads to a page
and an anchor that exist in this build.
"""

from __future__ import annotations

import base64
import hashlib
import html
import re
import sys
from pathlib import Path

import nbformat

from _ext.colab import BookIndex, book_index, is_notebook_text, read_config, toc_docs

ROOT = Path(__file__).resolve().parent.parent

COLAB = re.compile(r'href="https://colab\.research\.google\.com/github/([^"]+?)/blob/([^/"]+)/([^"]+)"')
IMAGE = re.compile(r'<img[^>]+src="([^"]*_images/[^"]+)"')
EQNO = re.compile(r'<span class="eqno">\(([^)]+)\)<a class="headerlink" href="#equation-([^"]+)"')
FIGNO = re.compile(r'<span class="caption-number">Fig\. ([^ <]+) </span>')
BOOK_LINK = re.compile(r"\]\((https?://[^)\s]+)\)")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def notebook_images(nb) -> list[bytes]:
    return [base64.b64decode(out["data"]["image/png"]) for cell in nb.cells if cell.cell_type == "code"
            for out in cell.get("outputs", []) if "image/png" in out.get("data", {})]


def notebook_lines(nb) -> list[str]:
    """Every non-empty line the cells printed or showed as text, as the page shows it: a
    Markdown output (a `vaelib.Table`) is rendered, so its table cells are what must appear."""
    lines = []
    for cell in nb.cells:
        for out in cell.get("outputs", []) if cell.cell_type == "code" else []:
            data = out.get("data", {})
            if "image/png" in data:
                continue
            if "text/markdown" in data:
                for row in data["text/markdown"].splitlines():
                    if row.startswith("|") and not re.fullmatch(r"\|[\s:|-]+\|", row):
                        lines += [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", row)[1:-1]]
                continue
            text = out.get("text") or data.get("text/plain", "")
            lines += [line.strip() for line in text.splitlines()]
    return [line for line in lines if line]


def chapter_problems(doc: str, page: Path, ipynb: Path, html_dir: Path, index: BookIndex, config: dict) -> list[str]:
    problems = []
    text = page.read_text(encoding="utf-8")
    nb = nbformat.read(ipynb, as_version=4)
    name = page.relative_to(html_dir)

    repo = config["repository"]["url"].removeprefix("https://github.com/").rstrip("/")
    links = set(COLAB.findall(text))
    if not links:
        problems.append(f"{name} has no Colab launch button")
    for link_repo, link_branch, path in links:
        if (link_repo, link_branch) != (repo, config["repository"].get("branch", "main")):
            problems.append(f"{name}: Colab link to {link_repo}@{link_branch}, expected {repo}")
        if (ROOT / path).resolve() != ipynb.resolve():
            problems.append(f"{name}: Colab opens {path}, not {ipynb.relative_to(ROOT)}")

    download = html_dir / "_sources" / f"{doc}.ipynb"
    if not download.is_file() or download.read_bytes() != ipynb.read_bytes():
        problems.append(f"{name}: the .ipynb download is not {ipynb.relative_to(ROOT)}")

    shown = [sha((page.parent / src).read_bytes()) if (page.parent / src).is_file() else f"missing {src}"
             for src in IMAGE.findall(text)]
    stored = [sha(png) for png in notebook_images(nb)]
    if shown != stored:
        problems.append(f"{name}: its {len(shown)} images are not the {len(stored)} image outputs of "
                        f"{ipynb.name}, byte for byte and in order")
    visible = html.unescape(re.sub(r"<[^>]+>", "", text))
    missing = [line for line in notebook_lines(nb) if line not in visible]
    if missing:
        problems.append(f"{name}: {len(missing)} printed line(s) of {ipynb.name} are not on the page, "
                        f"first {missing[0]!r}")

    numbers = {label: number for number, label in EQNO.findall(text)}
    expected = {label: number for label, (d, number) in index.equations.items() if d == doc}
    if numbers != expected:
        problems.append(f"{name}: equation numbers {numbers} differ from the notebook's {expected}")
    if FIGNO.findall(text) != index.figures.get(doc, []):
        problems.append(f"{name}: figure numbers {FIGNO.findall(text)} differ from the notebook's "
                        f"{index.figures.get(doc, [])}")
    return problems


def link_problems(ipynb: Path, html_dir: Path, index: BookIndex) -> list[str]:
    problems = []
    nb = nbformat.read(ipynb, as_version=4)
    for url in BOOK_LINK.findall("\n".join(c.source for c in nb.cells if c.cell_type == "markdown")):
        if not url.startswith(index.base_url):
            continue
        path, _, anchor = url[len(index.base_url):].partition("#")
        target = html_dir / path
        if not target.is_file():
            problems.append(f"{ipynb.name} links to {url}, but the book has no {path}")
        elif anchor and f'id="{anchor}"' not in target.read_text(encoding="utf-8"):
            problems.append(f"{ipynb.name} links to {url}, but {path} has no anchor #{anchor}")
    return problems


def main(html_dir: Path) -> int:
    config = read_config(ROOT)
    index = book_index(ROOT)
    problems, chapters = [], 0
    for doc, _ in toc_docs(ROOT):
        md, page, ipynb = ROOT / f"{doc}.md", html_dir / f"{doc}.html", ROOT / f"{doc}.ipynb"
        if not page.exists():
            problems.append(f"{page} was not built")
            continue
        if md.exists() and is_notebook_text(md.read_text(encoding="utf-8")):
            chapters += 1
            problems += chapter_problems(doc, page, ipynb, html_dir, index, config)
            problems += link_problems(ipynb, html_dir, index)
    for p in problems:
        print(f"check_book: {p}", file=sys.stderr)
    print(f"check_book: {chapters} chapter page(s) checked against their notebooks, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "_build" / "html"))
