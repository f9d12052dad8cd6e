"""Sphinx extension: drop repeated <script> entries from every HTML page.

Under Jupyter Book 1.x, sphinx-thebe's inline configuration (``const THEBE_JS_URL = ...``)
is registered twice, so every page declares the same ``const`` twice and the browser
reports "Identifier 'THEBE_JS_URL' has already been declared". A script that appears
twice with the same file and attributes is never wanted, so keep the first. (The two
copies differ only in how "no file" is spelled, ``None`` or ``""``.)
"""

from __future__ import annotations


def drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    seen, kept = set(), []
    for script in context.get("script_files") or []:
        attributes = getattr(script, "attributes", {})
        key = (str(getattr(script, "filename", script) or ""), tuple(sorted(attributes.items())))
        if key not in seen:
            seen.add(key)
            kept.append(script)
    if "script_files" in context:
        context["script_files"] = kept


def setup(app):
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
