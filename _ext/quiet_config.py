"""Keep the build log readable: drop the two ~800-character configuration dumps that MyST
(``myst vX: MdParserConfig(...)``) and MyST-NB (``myst-nb vX: NbParserConfig(...)``) log at
every build. Warnings and errors are untouched; ``jupyter-book build -v`` shows the dumps."""

from __future__ import annotations

import logging


class _NoConfigDump(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args if isinstance(record.args, tuple) else ()
        dump = record.levelno == logging.INFO and any(type(a).__name__.endswith("ParserConfig") for a in args)
        return not dump


def setup(app):
    if app.verbosity < 1:  # the dumps stay with -v
        for handler in logging.getLogger("sphinx").handlers:
            handler.addFilter(_NoConfigDump())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
