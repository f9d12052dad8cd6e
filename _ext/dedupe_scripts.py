"""Sphinx extension: drop repeated <script> entries from every HTML page.

Under Jupyter Book 1.x, sphinx-thebe's inline configuration (``const THEBE_JS_URL = ...``)
is registered twice, so every page declares the same ``const`` twice and the browser
reports "Identifier 'THEBE_JS_URL' has already been declared". A script that appears
twice with the same file, priority and attributes is never wanted, so keep the first.
"""

from __future__ import annotations


def drop_repeated_scripts(app, pagename, templatename, context, doctree) -> None:
    scripts = context.get("script_files")
    if scripts:
        context["script_files"] = list(dict.fromkeys(scripts))  # keeps order; needs hashable entries


def setup(app):
    app.connect("html-page-context", drop_repeated_scripts, priority=900)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
