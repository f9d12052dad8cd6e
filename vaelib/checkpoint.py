"""Files that survive a crash: atomic saves, safe loads, and the random-number state of a run.

Every file vaelib writes (a model, a `fit` checkpoint) goes through `atomic_save`: the data
is written to a fresh temporary file in the same folder, flushed to disk, then renamed over
the target, so a reader sees the old file or the new one, never half of either. Every file
it reads goes through `load` with ``weights_only=True``: tensors and plain containers only,
never arbitrary pickled code.
"""

from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a unique temporary file and ``os.replace``; returns ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load(path: str | os.PathLike, file_format: str, what: str, map_location: Any = "cpu") -> dict:
    """Read a dict written by `atomic_save` whose ``"format"`` entry is ``file_format``.

    ``what`` names the kind of file in error messages ("a vaelib model", ...).
    Raises ``ValueError`` for an unreadable file or one of another format.
    """
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:
        reason = " ".join(str(err).split())[:300]
        raise ValueError(f"cannot read {path} as {what}: {reason}. Delete it to start afresh.") from None
    if not isinstance(payload, dict) or payload.get("format") != file_format:
        raise ValueError(f"{path} is not {what}; delete it or choose another path")
    return payload


def _numpy_state_to_torch(state: tuple) -> tuple:
    # NumPy's state holds an ndarray; a tensor keeps the file loadable with weights_only=True
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def rng_state() -> dict[str, Any]:
    """The state of every random-number generator a run draws from (torch, NumPy, Python, CUDA, MPS)."""
    state = {
        "torch": torch.get_rng_state(),
        "numpy": _numpy_state_to_torch(np.random.get_state()),
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        state["mps"] = torch.mps.get_rng_state()
    return state


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])
