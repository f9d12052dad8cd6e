"""After `jupyter-book build`: check that every chapter's Colab button opens a file that exists.

    python tools/check_book.py [_build/html]

For each notebook chapter in _toc.yml, the built page must carry a Colab link
``https://colab.research.google.com/github/<org>/<repo>/blob/<branch>/<path>.ipynb``
whose repository and branch are those in _config.yml and whose <path> is a file in
this repository.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from notebooks import is_notebook  # noqa: E402


def toc_files(toc: dict) -> list[str]:
    files = [toc["root"]]
    for part in toc.get("parts", [{"chapters": toc.get("chapters", [])}]):
        for chapter in part.get("chapters", []):
            files.append(chapter["file"])
            files += [s["file"] for s in chapter.get("sections", [])]
    return files


def main(html_dir: Path) -> int:
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    repo = config["repository"]["url"].removeprefix("https://github.com/").rstrip("/")
    branch = config["repository"].get("branch", "main")
    link = re.compile(r'href="https://colab\.research\.google\.com/github/([^"]+?)/blob/([^/"]+)/([^"]+)"')
    problems, checked = [], 0
    for doc in toc_files(toc):
        md = ROOT / f"{doc}.md"
        page = html_dir / f"{doc}.html"
        if not page.exists():
            problems.append(f"{page} was not built")
            continue
        links = set(link.findall(page.read_text(encoding="utf-8")))
        if md.exists() and is_notebook(md) and not links:
            problems.append(f"{page.relative_to(html_dir)} has no Colab launch button")
        for link_repo, link_branch, path in links:
            checked += 1
            if (link_repo, link_branch) != (repo, branch):
                problems.append(f"{page.name}: Colab link to {link_repo}@{link_branch}, expected {repo}@{branch}")
            if not (ROOT / path).is_file():
                problems.append(f"{page.name}: Colab opens {path}, which does not exist in the repository")
    for p in problems:
        print(f"check_book: {p}", file=sys.stderr)
    print(f"check_book: {checked} Colab link(s) checked, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "_build" / "html"))
