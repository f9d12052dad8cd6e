"""Open every page of the built book in headless Chromium and check it as a reader sees it.

    python tools/check_html.py _build/html --screenshots _build/screenshots

The site is served from 127.0.0.1 and the browser may reach nothing else: any request
to another host is blocked and reported. For each page it checks that

- the page loaded (HTTP 200, a title, a main article with text) with no JavaScript error
  and no local file missing (HTTP 4xx/5xx);
- MathJax typeset every math element (each ``.math`` node holds an ``mjx-container``),
  reported no TeX error (``mjx-merror``), and left no raw ``$$``, ``\\begin``, ``\\frac``,
  ``\\(`` or ``\\[`` in the visible text outside code;
- every ``<img>`` loaded with a non-zero natural size, and every figure output of a cell
  sits in a ``<figure>`` with a caption;
- no cell output shows an error, a traceback or a Python warning;
- every link to a page of the site resolves, anchor included;
- chapter pages (``book/NN_*.html``) have the Colab launch button, pointing at the
  chapter's own ``.ipynb``, and a download button.

A full-page screenshot of every chapter (and the introduction) goes to ``--screenshots``.
Chromium comes from ``$CHROMIUM``, else ``chromium`` (Debian's package) on the PATH, else
Playwright's own build (``python -m playwright install chromium``). Exit status 1 when any
page has a problem; one line per problem.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import http.server
import os
import re
import shutil
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
CHAPTER_PAGES = r"book/\d\d_[^/]*\.html"  # numbered chapters; they must have launch buttons
SKIP_DIRS = ("_static", "_sources", "_images", "_downloads")
PAGE_TIMEOUT_MS = 60_000


@dataclass
class PageReport:
    """What the browser found on one page. ``path`` is relative to the site root."""

    path: str
    problems: list[str] = field(default_factory=list)
    math_nodes: int = 0
    images: int = 0
    links: int = 0
    screenshot: Path | None = None
    ids: set[str] = field(default_factory=set, repr=False)
    internal_links: list[tuple[str, str, str]] = field(default_factory=list, repr=False)


class ChromiumNotFoundError(RuntimeError):
    """No Chromium to drive: neither $CHROMIUM, nor one on the PATH, nor Playwright's own."""


def find_chromium() -> str | None:
    """Path of the Chromium to launch, or None to use Playwright's bundled build."""
    candidates = [os.environ.get("CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    for name in candidates:
        if name and (path := shutil.which(name)):
            return path
    return None


def site_pages(root: Path) -> list[str]:
    """Every HTML page of a built Sphinx site, as paths relative to ``root``."""
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root).as_posix()
        if not rel.startswith(SKIP_DIRS):
            pages.append(rel)
    return pages


@contextlib.contextmanager
def serve(root: Path) -> Iterator[str]:
    """Serve ``root`` on a free port of 127.0.0.1; yields the base URL (ending in '/')."""

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


# Runs in the page once it has loaded: waits for MathJax and images, then collects facts.
INSPECT_JS = r"""
async () => {
  const withTimeout = (promise, ms) =>
    Promise.race([promise, new Promise(resolve => setTimeout(resolve, ms))]);
  if (window.MathJax && MathJax.startup && MathJax.startup.promise) {
    await withTimeout(MathJax.startup.promise, 30000);
  }
  const images = [...document.images];
  images.forEach(img => { img.loading = "eager"; });
  await withTimeout(Promise.all(images.map(img => img.complete ? null : new Promise(resolve => {
    img.addEventListener("load", resolve); img.addEventListener("error", resolve);
  }))), 15000);

  const visible = el => !el.checkVisibility || el.checkVisibility();
  const snippet = s => s.replace(/\s+/g, " ").trim().slice(0, 80);

  // Raw TeX left in the visible text, outside code and outside typeset math.
  const rawTex = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  const skip = "pre, code, script, style, textarea, mjx-container, .highlight, .tex2jax_ignore_text";
  const pattern = /\$\$|\\begin\{|\\frac|\\\(|\\\[/;
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    const parent = node.parentElement;
    if (!parent || parent.closest(skip) || !visible(parent)) continue;
    const m = node.textContent.match(pattern);
    if (m) rawTex.push(snippet(node.textContent));
  }

  const math = [...document.querySelectorAll(".math")];
  const untypeset = math.filter(el => !el.querySelector("mjx-container")).map(el => snippet(el.textContent));
  // TeX that MathJax could not parse becomes an merror; an undefined macro becomes red text.
  const mathErrors = [];
  if (window.MathJax && MathJax.startup && MathJax.startup.document && MathJax.startup.toMML) {
    for (const item of MathJax.startup.document.math) {
      const mml = item.root ? MathJax.startup.toMML(item.root) : "";
      if (/<merror|mathcolor="red"/.test(mml)) mathErrors.push(snippet(item.math));
    }
  }

  const badImages = images.filter(img => !(img.complete && img.naturalWidth > 0))
    .map(img => img.getAttribute("src") || "(no src)");
  const uncaptioned = [...document.querySelectorAll(".cell_output img")]
    .filter(img => { const fig = img.closest("figure");
                     return !fig || !fig.querySelector("figcaption") ||
                            !fig.querySelector("figcaption").textContent.trim(); })
    .map(img => img.getAttribute("src") || "(no src)");

  const outputProblems = [];
  document.querySelectorAll(".cell_output .output.traceback, .cell_output .output.error")
    .forEach(el => outputProblems.push("error output: " + snippet(el.textContent)));
  document.querySelectorAll(".cell_output").forEach(el => {
    const text = el.textContent;
    const m = text.match(/Traceback \(most recent call last\)|^\s*\w*(Error|Exception): .*$|\b\w+Warning: .*$/m);
    if (m) outputProblems.push("cell output shows: " + snippet(m[0]));
  });

  const main = document.querySelector("main, [role=main], article");
  const links = [...document.querySelectorAll("a[href]")].map(a => ({
    href: a.href, raw: a.getAttribute("href"), text: snippet(a.textContent) }));
  const ids = [...document.querySelectorAll("[id]")].map(el => el.id)
    .concat([...document.querySelectorAll("a[name]")].map(el => el.getAttribute("name")));
  const colab = [...document.querySelectorAll(".dropdown-launch-buttons a[href*='colab.research.google.com']")]
    .map(a => a.href);
  const downloads = [...document.querySelectorAll(
    ".dropdown-download-buttons a.btn-download-notebook-button, .dropdown-download-buttons a.btn-download-source-button")]
    .map(a => a.getAttribute("href"));

  return { title: document.title, mainText: main ? main.textContent.trim().length : 0,
           rawTex, mathCount: math.length, untypeset, mathErrors,
           imageCount: images.length, badImages, uncaptioned, outputProblems,
           links, ids, colab, downloads,
           mathjax: !!(window.MathJax && MathJax.startup) };
}
"""


REDIRECT = re.compile(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.IGNORECASE)


def _inspect_page(page, base: str, rel: str, report: PageReport, chapter: bool, root: Path) -> None:
    redirect = REDIRECT.search((root / rel).read_text(encoding="utf-8", errors="replace"))
    if redirect:  # e.g. the site's index.html, which only sends the reader to the first page
        target = (Path(rel).parent / redirect.group(1)).as_posix().removeprefix("./")
        report.internal_links.append((target, redirect.group(1), "redirect"))
        return
    response = page.goto(base + rel, wait_until="load", timeout=PAGE_TIMEOUT_MS)
    if response is None or response.status != 200:
        report.problems.append(f"did not load (HTTP {response.status if response else 'no response'})")
        return
    facts = page.evaluate(INSPECT_JS)
    if not facts["title"].strip():
        report.problems.append("page has no title")
    if facts["mainText"] == 0:
        report.problems.append("page has no main content")
    for text in facts["rawTex"]:
        report.problems.append(f"raw TeX in visible text: {text!r}")
    if facts["mathCount"] and not facts["mathjax"]:
        report.problems.append(f"{facts['mathCount']} math elements but MathJax did not load")
    for text in facts["untypeset"]:
        report.problems.append(f"math not typeset: {text!r}")
    for text in facts["mathErrors"]:
        report.problems.append(f"MathJax error: {text!r}")
    for src in facts["badImages"]:
        report.problems.append(f"image did not load: {src}")
    for src in facts["uncaptioned"]:
        report.problems.append(f"figure without a caption: {src}")
    report.problems.extend(facts["outputProblems"])
    report.math_nodes = facts["mathCount"]
    report.images = facts["imageCount"]
    report.links = len(facts["links"])
    report.ids = set(facts["ids"])
    for link in facts["links"]:
        if link["href"].startswith(base):
            report.internal_links.append((link["href"][len(base):], link["raw"], link["text"]))
    if chapter:
        stem = Path(rel).with_suffix(".ipynb").as_posix()
        if not facts["colab"]:
            report.problems.append("chapter page has no Colab launch button")
        elif not any(url.endswith("/" + stem) for url in facts["colab"]):
            report.problems.append(f"Colab button does not open {stem}: {facts['colab']}")
        if not facts["downloads"]:
            report.problems.append("chapter page has no download button")


def _check_links(reports: dict[str, PageReport], root: Path) -> None:
    """Every internal link must reach a file of the site and, for a page, an existing anchor."""
    for report in reports.values():
        seen = set()
        for target, raw, text in report.internal_links:
            parts = urlsplit(target)
            path = unquote(parts.path)
            if path == "" or path.endswith("/"):
                path += "index.html"
            if (path, parts.fragment) in seen:
                continue
            seen.add((path, parts.fragment))
            where = f"link {raw!r} ({text!r})" if text else f"link {raw!r}"
            if not (root / path).is_file():
                report.problems.append(f"{where}: no file {path}")
            elif parts.fragment and path in reports:
                if unquote(parts.fragment) not in reports[path].ids:
                    report.problems.append(f"{where}: no anchor #{parts.fragment} in {path}")


def check_site(
    root: Path | str,
    screenshots: Path | str | None = None,
    chapter_pages: str = CHAPTER_PAGES,
    pages: list[str] | None = None,
) -> list[PageReport]:
    """Check every page of the built site at ``root``; see the module docstring.

    Returns one ``PageReport`` per page, in order. ``pages`` restricts the check to some
    pages (paths relative to ``root``); links into unchecked pages are checked for the
    file only.
    """
    from playwright.sync_api import sync_playwright

    root = Path(root).resolve()
    if not (root / "index.html").is_file():
        raise FileNotFoundError(f"{root} has no index.html: build the book first (make book)")
    pages = site_pages(root) if pages is None else pages
    shots = Path(screenshots) if screenshots is not None else None
    if shots is not None:
        shots.mkdir(parents=True, exist_ok=True)
    executable = find_chromium()
    reports: dict[str, PageReport] = {}
    with serve(root) as base, sync_playwright() as p:
        try:
            browser = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        except Exception as err:  # playwright raises its own Error with a long log
            where = executable or "Playwright's bundled Chromium"
            raise ChromiumNotFoundError(
                f"could not start Chromium ({where}): {str(err).splitlines()[0]}. Install it "
                "(Debian/Ubuntu: apt-get install chromium; elsewhere: python -m playwright "
                "install chromium) or set CHROMIUM to a Chromium or Chrome executable."
            ) from None
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        current: list[PageReport] = []

        def route(r):
            url = r.request.url
            if url.startswith(base) or url.startswith(("data:", "blob:")):
                r.continue_()
            else:
                current[0].problems.append(f"external request blocked: {url} ({r.request.resource_type})")
                r.abort()

        def on_response(resp):
            url = resp.url
            if resp.status >= 400 and url.startswith(base) and not url.endswith("/favicon.ico"):
                current[0].problems.append(f"HTTP {resp.status} for {url[len(base):]}")

        context.route("**/*", route)
        page = context.new_page()
        page.on("response", on_response)
        page.on("pageerror", lambda err: current[0].problems.append(f"JavaScript error: {err}"))
        for rel in pages:
            report = PageReport(rel)
            current[:] = [report]
            chapter = re.fullmatch(chapter_pages, rel) is not None
            try:
                _inspect_page(page, base, rel, report, chapter, root)
            except Exception as err:
                report.problems.append(f"could not inspect: {type(err).__name__}: {str(err).splitlines()[0]}")
            if shots is not None and (chapter or rel.endswith("/intro.html")):
                report.screenshot = shots / (Path(rel).stem + ".png")
                page.screenshot(path=str(report.screenshot), full_page=True)
            reports[rel] = report
        browser.close()
    _check_links(reports, root)
    return list(reports.values())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("html", nargs="?", default="_build/html", help="the built site (default: _build/html)")
    parser.add_argument("--screenshots", default=None, help="folder for full-page screenshots of chapters")
    args = parser.parse_args(argv)
    try:
        reports = check_site(args.html, args.screenshots)
    except (FileNotFoundError, ChromiumNotFoundError) as err:
        print(f"check_html: {err}", file=sys.stderr)
        return 2
    bad = 0
    print(f"{'page':42s} {'math':>5s} {'images':>6s} {'links':>5s}  result")
    for r in reports:
        print(f"{r.path:42s} {r.math_nodes:5d} {r.images:6d} {r.links:5d}  "
              f"{'ok' if not r.problems else f'{len(r.problems)} problem(s)'}")
        for problem in r.problems:
            print(f"    - {problem}")
        bad += bool(r.problems)
    print(f"{len(reports)} pages checked, {bad} with problems")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
