"""Numbers quoted in a chapter's prose, and the stored outputs they must come from.

A result quoted in the text is written with the role ``{out}`...```, e.g.
"the VAE ends at {out}`91.00 ± 0.24` nats": the HTML book and the Colab notebooks show the
text as it is, and ``tests/test_quoted_numbers.py`` fails unless that text appears verbatim in the
outputs stored in the chapter's notebook (what one execution printed). So a number in the
prose can never drift from the run beside it: change the code, execute the chapter, and the
test names every quoted number the new outputs no longer contain.

A decimal number in the prose that is not marked (a paper's result, a constant of the text)
must be listed with its reason in ``NOT_FROM_OUTPUTS`` in ``tests/test_quoted_numbers.py``, so a result
copied by hand without the role is caught too.
"""

from __future__ import annotations

import html
import re

ROLE = re.compile(r"\{out\}`([^`\n]+)`")  # on one line (the Colab conversion needs it)
# fenced blocks (code cells, directives' bodies in backticks), display math, inline math, inline code
_NOT_PROSE = [re.compile(r"^(`{3,}|~{3,}).*?^\1", re.S | re.M), re.compile(r"\$\$.*?\$\$", re.S),
              re.compile(r"(?<![\\$])\$[^$\n]+\$"), re.compile(r"\{(?:math|eq|ref|doc|cite[:a-z]*)\}`[^`]*`"),
              re.compile(r"`[^`\n]*`"), re.compile(r"^---\n.*?^---\n", re.S | re.M), re.compile(r"\]\([^)]*\)")]
DECIMAL = re.compile(r"(?<![\w.])\d+\.\d+(?![\w.]*\d)")


def _space(text: str) -> str:
    return re.sub(r"\s+", " ", text).strip()


def quoted(md_text: str) -> list[str]:
    """The texts marked ``{out}`...``` in a chapter's MyST source, in order (whitespace collapsed)."""
    return [_space(m) for m in ROLE.findall(md_text)]


def unmarked_decimals(md_text: str) -> list[str]:
    """Decimal numbers in the prose that are not inside ``{out}``, math, code, a role or a link."""
    text = ROLE.sub(" ", md_text)
    for pattern in _NOT_PROSE:
        text = pattern.sub(" ", text)
    return DECIMAL.findall(text)


def output_text(nb) -> str:
    """Everything a notebook's code cells printed or displayed as text, tags stripped, whitespace collapsed."""
    parts = []
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for out in cell.get("outputs", []):
            if "text" in out:
                parts.append(out["text"])
            for mime, value in out.get("data", {}).items():
                if mime in ("text/plain", "text/html", "text/markdown"):
                    value = "".join(value) if isinstance(value, list) else value
                    parts.append(html.unescape(re.sub(r"<[^>]+>", " ", value)) if mime == "text/html" else value)
    return _space("\n".join(parts))


def missing_quotes(md_text: str, nb) -> list[str]:
    """The ``{out}`` texts of a chapter that its stored outputs do not contain."""
    printed = output_text(nb)
    return [q for q in quoted(md_text) if q not in printed]


def out_role(name, rawtext, text, lineno, inliner, options=None, content=None):
    """Sphinx role: ``{out}`91.00 ± 0.24``` shows its text, marked as copied from an output."""
    from docutils import nodes

    return [nodes.inline(rawtext, _space(text), classes=["from-output"])], []


def setup(app):
    app.add_role("out", out_role)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
