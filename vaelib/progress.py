"""Progress as one line per run, drawn where the reader is.

- In a Jupyter kernel (JupyterLab, Colab, the executed chapters, nbval) the line is
  a display that is updated in place: a notebook keeps exactly one output line per
  run, on the normal output (never a red stderr box), and a stored notebook holds
  its final state.
- In a terminal the line is redrawn on stderr with a carriage return.
- Anywhere else (a log file, CI, a pipe) a line is printed to stderr per finished epoch,
  and in between at most one every ``log_interval`` seconds (30), so a long evaluation
  shows that it is alive.
"""

from __future__ import annotations

import sys
import time


def in_kernel() -> bool:
    """True when running inside a Jupyter (IPython) kernel."""
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and "IPKernelApp" in shell.get_ipython().config
    except Exception:
        return False


class ProgressLine:
    """One progress line for a whole run (see the module docstring for where it goes).

    ``show(text)`` replaces the line (at most every ``min_interval`` seconds),
    ``epoch_done(text)`` replaces it at once (and is the line a log prints), and
    ``close()`` ends it. With ``disable=True`` nothing is shown.
    """

    def __init__(self, *, disable: bool = False, min_interval: float = 0.5, log_interval: float = 30.0):
        if disable:
            self.mode = "off"
        elif in_kernel():
            self.mode = "notebook"
        elif sys.stderr.isatty():
            self.mode = "terminal"
        else:
            self.mode = "log"
        self.min_interval, self.log_interval = min_interval, log_interval
        self.text, self._shown, self._last, self._handle = "", "", 0.0, None
        self._logged = time.monotonic()  # a log's first line comes log_interval after the start

    def show(self, text: str) -> None:
        self.text = text
        now = time.monotonic()
        if self.mode == "log":
            if now - self._logged >= self.log_interval:
                self._log(text)
        elif now - self._last >= self.min_interval:
            self._draw()

    def _log(self, text: str) -> None:
        print(text, file=sys.stderr, flush=True)
        self._shown, self._logged = text, time.monotonic()

    def due(self) -> bool:
        """True when `show` would redraw now (so a caller can skip computing the text)."""
        return self.mode in ("notebook", "terminal") and time.monotonic() - self._last >= self.min_interval

    def epoch_done(self, text: str) -> None:
        self.text = text
        if self.mode == "log":
            self._log(text)
        else:
            self._draw()

    def close(self) -> None:
        """Show the last text and end the line; closing twice does nothing more."""
        if self.mode == "off":
            return
        if self.mode != "log" and self.text != self._shown:
            self._draw()
        if self.mode == "terminal" and self._shown:
            sys.stderr.write("\n")
            sys.stderr.flush()
        self.mode = "off"

    def _draw(self) -> None:
        self._last = time.monotonic()
        if self.mode == "notebook":
            from IPython.display import Pretty, display

            if self._handle is None:
                self._handle = display(Pretty(self.text), display_id=True)
            else:
                self._handle.update(Pretty(self.text))
        elif self.mode == "terminal":
            sys.stderr.write("\r" + self.text + "\x1b[K")
            sys.stderr.flush()
        else:
            return
        self._shown = self.text
