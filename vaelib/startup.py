"""The `vaelib` command's first second: Ctrl-C while torch loads ends with one line and exit code 130.

``python -m vaelib`` and the ``vaelib`` console script both import the package, and so torch,
before `vaelib.cli.main` runs; a Ctrl-C then would end in a traceback. `vaelib/__init__.py`
calls `guard` first, before any heavy import: in the command (and only there) a Ctrl-C until
`release` prints one line and exits with 130. `vaelib.cli.main` calls `release` first, and from
then on handles Ctrl-C itself. Importing vaelib anywhere else (a notebook, a script) changes
nothing. This module imports nothing heavy.
"""

from __future__ import annotations

import os
import signal
import sys
import threading

MESSAGE = "interrupted while starting: nothing was done"
_previous = None


def is_the_command() -> bool:
    """Whether this process is the vaelib command: ``python [options] -m vaelib ...`` (while the
    package loads, ``sys.argv[0]`` is ``"-m"`` and the module's name is in ``sys.orig_argv``) or
    the ``vaelib`` console script."""
    argv, orig = sys.argv, getattr(sys, "orig_argv", [])
    if argv[:1] == ["-m"] and len(orig) > len(argv):
        return orig[len(orig) - len(argv)].removeprefix("-m") == "vaelib"
    return bool(argv) and os.path.basename(argv[0]) in ("vaelib", "vaelib.exe")


def _interrupted(signum, frame) -> None:
    sys.stderr.write(MESSAGE + "\n")
    sys.stderr.flush()
    os._exit(130)  # mid-import: nothing to clean up, nothing written yet


def guard() -> None:
    """In the vaelib command, end a Ctrl-C with `MESSAGE` and exit code 130 until `release`.

    Left alone when SIGINT is ignored (a background job) or already handled by someone else."""
    global _previous
    if _previous is None and threading.current_thread() is threading.main_thread() and is_the_command() \
            and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        _previous = signal.signal(signal.SIGINT, _interrupted)


def release() -> None:
    """Give Ctrl-C back to Python (a KeyboardInterrupt), if `guard` took it."""
    global _previous
    if _previous is not None and signal.getsignal(signal.SIGINT) is _interrupted:
        signal.signal(signal.SIGINT, _previous)
    _previous = None
