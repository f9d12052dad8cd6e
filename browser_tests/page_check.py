"""One page of a built site as a reader sees it, in a Playwright page (test code, not a tool).

``check_page(page, root, url, rel)`` opens ``url + rel`` (the site in folder ``root`` is
served at ``url``) and returns a ``PageCheck``: one line per problem, and what it counted.
The page may reach nothing but the site: any request to another host is blocked and
reported. A page has a problem when

- it did not load (HTTP 200, a title, a main article with text), a script threw a
  JavaScript error, or a local file is missing (HTTP 4xx/5xx);
- MathJax did not typeset every math element (each ``.math`` node holds an
  ``mjx-container``), reported a TeX error (``mjx-merror``, an undefined macro in red),
  typeset a display equation wider than its text column (cut off, or scrolled), or
  left a raw ``$$``, ``\\begin``, ``\\frac``, ``\\(`` or ``\\[`` in the visible text outside code;
- an ``<img>`` did not load with a non-zero natural size, is drawn at another aspect ratio
  than its pixels, or a figure output of a cell does not sit in a ``<figure>`` with a caption;
- a figure output's smallest text shows smaller than ``MIN_TEXT_PX`` (9 px in a window at
  least 1000 px wide, 6 px on a phone): its PNG carries that size in image pixels
  (``vaelib.plotting.TEXT_SIZE_KEY``, written by ``vaelib.use_book_style``), scaled here by the
  width the image is shown at; a figure output without it cannot be checked and is a problem;
- a cell output shows an error, a traceback or a Python warning;
- a link to a page of the site leads to no file, or to no anchor: on the page itself as the
  browser sees it, on another page as its HTML has it;
- a worked solution (``.solution``) is shown when the page loads, or does not open when its
  toggle is clicked;
- it is a chapter page (``book/NN_*.html``) without a download button. (The Colab button and
  the download's content are tools/check_book.py's business.)

A page that only redirects (the site's ``index.html``) is not opened: its target must exist.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

CHAPTER_PAGES = r"book/\d\d_[^/]*\.html"  # numbered chapters; they must have a download button
TEXT_SIZE_KEY = "vaelib-smallest-text-px"  # as vaelib.plotting.TEXT_SIZE_KEY (vaelib is not imported here)
MIN_TEXT_PX = {"desktop": 9.0, "phone": 6.0}  # smallest figure text, CSS px, by window width
DESKTOP_MIN_WIDTH = 1000
SKIP_DIRS = ("_static", "_sources", "_images", "_downloads")
PAGE_TIMEOUT_MS = 60_000
REDIRECT = re.compile(r'<meta\s+http-equiv="refresh"\s+content="\d+;\s*url=([^"]+)"', re.IGNORECASE)


@dataclass
class PageCheck:
    """What the browser found on one page."""

    problems: list[str] = field(default_factory=list)
    math_nodes: int = 0
    images: int = 0
    solutions: int = 0


def site_pages(root: Path) -> list[str]:
    """Every HTML page of a built Sphinx site, as paths relative to ``root``."""
    pages = []
    for path in sorted(root.rglob("*.html")):
        rel = path.relative_to(root).as_posix()
        if not rel.startswith(SKIP_DIRS):
            pages.append(rel)
    return pages


def is_chapter(rel: str) -> bool:
    return re.fullmatch(CHAPTER_PAGES, rel) is not None


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

  // Display math wider than its column. On a desktop-wide window that is a problem either way;
  // on a narrow one (a phone) an equation may scroll inside its own box, but must not be cut.
  const wideMath = [];
  const klSingleBar = [];
  const scrolls = el => { for (let e = el, i = 0; e && i < 4; e = e.parentElement, i++) {
    if (/(auto|scroll)/.test(getComputedStyle(e).overflowX)) return true; } return false; };
  if (window.MathJax && MathJax.startup && MathJax.startup.document) {
    for (const item of MathJax.startup.document.math) {
      // KL(q || p) whose double bar became one (a markdown table eats the backslash of \|)
      if (/KL\}?\s*\((?:[^()]|\([^()]*\))*?(?<!\\)\|(?!\|)/.test(item.math)) klSingleBar.push(snippet(item.math));
      const box = item.display && item.typesetRoot;
      const inner = box && box.querySelector("mjx-math");
      if (!inner || !visible(box)) continue;
      const column = box.clientWidth;  // the room left beside a numbered equation's number
      const width = inner.getBoundingClientRect().width;
      if (width > column + 1 && (window.innerWidth >= 1000 || !scrolls(box)))
        wideMath.push({ tex: snippet(item.math), width: Math.round(width), column,
                        how: scrolls(box) ? "scrolled" : "cut off" });
    }
  }

  // The page itself must not pan sideways: name the first element that sticks out.
  const windowWidth = document.documentElement.clientWidth;
  let pans = null;
  if (document.documentElement.scrollWidth > windowWidth + 1) {
    const culprit = [...document.querySelectorAll("main *, article *")].find(el =>
      visible(el) && el.getBoundingClientRect().right > windowWidth + 1 && !el.closest("mjx-container, pre, .highlight") &&
      ![...el.children].some(c => c.getBoundingClientRect().right > windowWidth + 1));
    pans = { width: document.documentElement.scrollWidth, window: windowWidth,
             what: culprit ? culprit.tagName.toLowerCase() + ": " + snippet(culprit.textContent || culprit.outerHTML) : "?" };
  }

  // An image drawn at another aspect ratio than its pixels (a width narrowed, a height kept).
  const distorted = images.filter(img => img.complete && img.naturalWidth > 0 && visible(img) &&
                                         img.clientWidth > 0 && img.clientHeight > 0)
    .filter(img => Math.abs((img.clientWidth / img.clientHeight) / (img.naturalWidth / img.naturalHeight) - 1) > 0.02)
    .map(img => ({ src: img.getAttribute("src") || "(no src)", shown: `${img.clientWidth}x${img.clientHeight}`,
                   natural: `${img.naturalWidth}x${img.naturalHeight}` }));

  // Each figure output as shown: its file, its pixels and the width it is drawn at.
  const figures = [...document.querySelectorAll(".cell_output img")]
    .filter(img => img.complete && img.naturalWidth > 0 && visible(img) && img.clientWidth > 0)
    .map(img => ({ url: img.src, src: img.getAttribute("src") || "(no src)",
                   natural: img.naturalWidth, shown: img.clientWidth }));

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
  const downloads = [...document.querySelectorAll(
    ".dropdown-download-buttons a.btn-download-notebook-button, .dropdown-download-buttons a.btn-download-source-button")]
    .map(a => a.getAttribute("href"));

  return { title: document.title, mainText: main ? main.textContent.trim().length : 0,
           rawTex, mathCount: math.length, untypeset, mathErrors, wideMath, klSingleBar, pans, distorted,
           figures, window: window.innerWidth,
           imageCount: images.length, badImages, uncaptioned, outputProblems,
           links, ids, downloads,
           mathjax: !!(window.MathJax && MathJax.startup) };
}
"""


# Each worked solution (sphinx-exercise's ``.solution`` admonition): folded when the page
# loads (sphinx-togglebutton hides it by visibility, height and opacity), opened by its toggle.
# Leaves every solution open, so the rest of the check (math width, raw TeX, images) covers
# solutions too; CLOSE_SOLUTIONS_JS folds them again before the screenshot.
SOLUTIONS_JS = r"""
async () => {
  const pause = () => new Promise(resolve => setTimeout(resolve, 400));
  const seen = el => el.getBoundingClientRect().height > 0 && (!el.checkVisibility || el.checkVisibility(
    { checkOpacity: true, checkVisibilityCSS: true, opacityProperty: true, visibilityProperty: true }));
  const results = [];
  for (const solution of document.querySelectorAll(".solution")) {
    const title = solution.querySelector(".admonition-title, summary");
    const body = [...solution.querySelectorAll(":scope > *, :scope > section > *")].filter(el =>
      !el.matches(".admonition-title, summary, button, .toggle-button, section") && el.textContent.trim());
    const shown = () => body.some(seen);
    const name = (title ? title.textContent : "(untitled)").replace(/\s+/g, " ").trim().slice(0, 60);
    const atLoad = shown();
    const toggle = solution.querySelector("button.toggle-button, summary") || title;
    if (toggle && !atLoad) { toggle.click(); await pause(); }
    const afterClick = shown();
    if (toggle && !atLoad && afterClick) solution.dataset.openedByCheck = "1";
    results.push({ name, atLoad, afterClick, parts: body.length, toggle: !!toggle });
  }
  return results;
}
"""
CLOSE_SOLUTIONS_JS = r"""
async () => {
  for (const solution of document.querySelectorAll(".solution[data-opened-by-check]")) {
    const toggle = solution.querySelector("button.toggle-button, summary") ||
                   solution.querySelector(".admonition-title");
    if (toggle) toggle.click();
    delete solution.dataset.openedByCheck;
  }
  await new Promise(resolve => setTimeout(resolve, 400));
}
"""


def solution_problems(solutions: list[dict]) -> list[str]:
    """A solution must be folded at load and open at a click (SOLUTIONS_JS's findings)."""
    problems = []
    for s in solutions:
        if not s["parts"]:
            problems.append(f"solution {s['name']!r} is empty")
        elif s["atLoad"]:
            problems.append(f"solution shown before it is asked for: {s['name']!r}")
        elif not s["afterClick"]:
            problems.append(f"solution does not open when clicked: {s['name']!r}")
    return problems


def watch(page, url: str, problems: list[str]) -> None:
    """Let ``page`` reach nothing but the site at ``url``; report what it asks for elsewhere,
    a missing local file and a JavaScript error in ``problems``."""

    def route(r):
        if r.request.url.startswith((url, "data:", "blob:")):
            r.continue_()
        else:
            problems.append(f"external request blocked: {r.request.url} ({r.request.resource_type})")
            r.abort()

    def on_response(resp):
        if resp.status >= 400 and resp.url.startswith(url) and not resp.url.endswith("/favicon.ico"):
            problems.append(f"HTTP {resp.status} for {resp.url[len(url):]}")

    page.context.route("**/*", route)
    page.on("response", on_response)
    page.on("pageerror", lambda err: problems.append(f"JavaScript error: {err}"))


def fact_problems(facts: dict) -> list[str]:
    """The problem lines for what INSPECT_JS found on a page (links aside)."""
    problems = []
    if not facts["title"].strip():
        problems.append("page has no title")
    if facts["mainText"] == 0:
        problems.append("page has no main content")
    problems += [f"raw TeX in visible text: {text!r}" for text in facts["rawTex"]]
    if facts["mathCount"] and not facts["mathjax"]:
        problems.append(f"{facts['mathCount']} math elements but MathJax did not load")
    problems += [f"math not typeset: {text!r}" for text in facts["untypeset"]]
    problems += [f"MathJax error: {text!r}" for text in facts["mathErrors"]]
    problems += [f"math wider than its column ({m['width']} px in {m['column']} px, {m['how']}): {m['tex']!r}"
                 for m in facts["wideMath"]]
    problems += [f"KL written with a single bar: {tex!r}" for tex in facts["klSingleBar"]]
    if facts["pans"]:
        p = facts["pans"]
        problems.append(f"page pans sideways ({p['width']} px in a {p['window']} px window), first at {p['what']!r}")
    problems += [f"image distorted: {d['src']} shown {d['shown']}, drawn {d['natural']}" for d in facts["distorted"]]
    problems += [f"image did not load: {src}" for src in facts["badImages"]]
    problems += [f"figure without a caption: {src}" for src in facts["uncaptioned"]]
    return problems + facts["outputProblems"]


def smallest_text(path: Path) -> float | None | str:
    """The smallest text of the PNG at ``path`` in its own pixels, None for a figure without
    text, or a string saying why it is not known."""
    from PIL import Image  # matplotlib's dependency; only the figure check needs it

    try:
        with Image.open(path) as image:
            value = getattr(image, "text", {}).get(TEXT_SIZE_KEY)
    except OSError as err:
        return f"cannot read it ({err})"
    if value is None:
        return "it carries no text size (draw it after vaelib.use_book_style())"
    if value == "none":
        return None
    try:
        return float(value)
    except ValueError:
        return f"its text size {value!r} is not a number"


def figure_text_problems(root: Path, url: str, figures: list[dict], window: int) -> list[str]:
    """Each figure output's smallest text, scaled to the width it is shown at, must reach
    MIN_TEXT_PX for the window's width."""
    least = MIN_TEXT_PX["desktop" if window >= DESKTOP_MIN_WIDTH else "phone"]
    problems = []
    for fig in figures:
        if not fig["url"].startswith(url):
            continue  # a data: URI or another host: not a file of the site
        path = root / unquote(urlsplit(fig["url"][len(url):]).path)
        size = smallest_text(path)
        if isinstance(size, str):
            problems.append(f"figure text not checked: {fig['src']}: {size}")
        elif size is not None and size * fig["shown"] / fig["natural"] < least - 1e-9:
            shown = size * fig["shown"] / fig["natural"]
            problems.append(f"figure text too small: {fig['src']} shows its smallest text at "
                            f"{shown:.1f} px in a {window} px window (at least {least:g} px): "
                            "larger fonts, or a narrower figure")
    return problems


class _Ids(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs) -> None:
        for name, value in attrs:
            if value is not None and (name == "id" or (tag == "a" and name == "name")):
                self.ids.add(value)


@functools.lru_cache(maxsize=None)
def static_ids(path: Path) -> frozenset[str]:
    """The anchors (``id``, ``<a name>``) in the HTML of the page at ``path``."""
    parser = _Ids()
    parser.feed(path.read_text(encoding="utf-8", errors="replace"))
    return frozenset(parser.ids)


def link_problems(root: Path, rel: str, links: list[tuple[str, str, str]], ids: set[str]) -> list[str]:
    """Every link must reach a file of the site and, on a page, an existing anchor.

    ``links``: (target relative to ``root``, the href as written, the link's text) of page
    ``rel``, whose own anchors, as the browser sees them, are ``ids``."""
    problems, seen = [], set()
    for target, raw, text in links:
        parts = urlsplit(target)
        path = unquote(parts.path)
        if path == "" or path.endswith("/"):
            path += "index.html"
        if (path, parts.fragment) in seen:
            continue
        seen.add((path, parts.fragment))
        where = f"link {raw!r} ({text!r})" if text else f"link {raw!r}"
        if not (root / path).is_file():
            problems.append(f"{where}: no file {path}")
        elif parts.fragment and path.endswith(".html"):
            anchors = ids if path == rel else static_ids(root / path)
            if unquote(parts.fragment) not in anchors:
                problems.append(f"{where}: no anchor #{parts.fragment} in {path}")
    return problems


def check_page(page, root: Path, url: str, rel: str) -> PageCheck:
    """Open page ``rel`` of the site in folder ``root``, served at ``url``; see the module docstring."""
    check = PageCheck()
    redirect = REDIRECT.search((root / rel).read_text(encoding="utf-8", errors="replace"))
    if redirect:  # e.g. the site's index.html, which only sends the reader to the first page
        target = (Path(rel).parent / redirect.group(1)).as_posix().removeprefix("./")
        check.problems += link_problems(root, rel, [(target, redirect.group(1), "redirect")], set())
        return check
    watch(page, url, check.problems)
    response = page.goto(url + rel, wait_until="load", timeout=PAGE_TIMEOUT_MS)
    if response is None or response.status != 200:
        check.problems.append(f"did not load (HTTP {response.status if response else 'no response'})")
        return check
    solutions = page.evaluate(SOLUTIONS_JS)  # and leaves them open for the checks below
    check.problems += solution_problems(solutions)
    check.solutions = len(solutions)
    facts = page.evaluate(INSPECT_JS)
    page.evaluate(CLOSE_SOLUTIONS_JS)
    check.problems += fact_problems(facts)
    check.problems += figure_text_problems(root, url, facts["figures"], facts["window"])
    check.math_nodes, check.images = facts["mathCount"], facts["imageCount"]
    links = [(link["href"][len(url):], link["raw"], link["text"]) for link in facts["links"]
             if link["href"].startswith(url)]
    check.problems += link_problems(root, rel, links, set(facts["ids"]))
    if is_chapter(rel) and not facts["downloads"]:
        check.problems.append("chapter page has no download button")
    return check
