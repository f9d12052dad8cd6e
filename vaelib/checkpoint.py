"""Files that survive a crash: atomic saves, safe loads, and the random-number state of a run.

Every file vaelib writes (a model, a `fit` checkpoint) goes through `atomic_save`: the data
is written to a fresh temporary file in the same folder, flushed to disk, then renamed over
the target, so a reader sees the old file or the new one, never half of either. Every file
it reads goes through `load` with ``weights_only=True``: tensors and plain containers only,
never arbitrary pickled code.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import random
import re
import signal
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import torch


@contextlib.contextmanager
def _sigint_deferred() -> Iterator[None]:
    """Hold back Ctrl-C (SIGINT) for the block and raise it after, so a save is never cut in half.

    Only the main thread can set signal handlers; elsewhere the block runs as it is.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGINT) is not signal.default_int_handler:
        yield
        return
    caught: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if caught:
        raise KeyboardInterrupt


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a unique temporary file and ``os.replace``; returns ``path``.

    Ctrl-C during the save takes effect once the file is complete (the write is never torn).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with _sigint_deferred():
        fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
        os.close(fd)
        try:
            torch.save(obj, tmp)  # by name: PyTorch's own writer, no Python callbacks mid-write
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    return path


class CheckpointInUseError(RuntimeError):
    """Another run is writing the same checkpoint (it holds ``<checkpoint>.lock``)."""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def _local_pid(holder: list[str]) -> int | None:
    """The process id a lock file's ``holder`` fields name, if that process is of this host."""
    if len(holder) == 3 and holder[1] == socket.gethostname() and holder[0].isdigit():
        return int(holder[0])
    return None


def _holder_text(holder: list[str]) -> str:
    return f"process {holder[0]} on {holder[1]}, since {holder[2]}" if len(holder) == 3 else "unknown"


def _in_use(path: Path, lock: Path, holder: list[str]) -> CheckpointInUseError:
    return CheckpointInUseError(
        f"{path} is being written by another run ({_holder_text(holder)}); wait for it to finish or use "
        f"another checkpoint path. If no such run exists, delete {lock}.")


@contextlib.contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold ``<path>.lock`` for the block, so two runs never write one checkpoint at once.

    The lock file names the holder (process id, host, start time). Where the OS has `fcntl`
    (Linux, macOS), holding it means holding an exclusive ``flock`` on it, which the kernel
    releases when the holder dies, however it dies: so a lock left by a dead process is taken
    over atomically (one taker, whatever the host that wrote it, an empty file included),
    and a live holder makes any other run raise `CheckpointInUseError` at once, naming it. A
    lock file written without ``flock`` by a live process of this host (an older vaelib) is
    respected too. Elsewhere, a lock left by a process of this host that no longer exists is
    taken over, and any other raises.
    """
    path = Path(path)
    lock = path.with_name(path.name + ".lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    if lock.is_dir():
        raise CheckpointInUseError(f"the lock path {lock} of {path} is a folder, not a lock file; delete it "
                                   "(or use another checkpoint path)")
    me = f"{os.getpid()} {socket.gethostname()} {time.strftime('%Y-%m-%d %H:%M:%S')}"
    try:
        import fcntl
    except ImportError:  # Windows: the lock file alone
        fcntl = None
    if fcntl is None:
        with _exclusive_by_file(path, lock, me):
            yield
        return
    for _ in range(20):
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:  # a live run holds it
            holder = os.pread(fd, 512, 0).decode(errors="replace").split(" ", 2)
            os.close(fd)
            raise _in_use(path, lock, holder) from None
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock))
        except FileNotFoundError:  # its holder finished and removed it after we opened it
            same = False
        if not same:
            os.close(fd)
            continue
        holder = os.pread(fd, 512, 0).decode(errors="replace").split(" ", 2)
        pid = _local_pid(holder)
        if pid is not None and pid != os.getpid() and _alive(pid):  # a lock of an older vaelib
            os.close(fd)
            raise _in_use(path, lock, holder)
        os.ftruncate(fd, 0)
        os.pwrite(fd, me.encode(), 0)
        break
    else:
        raise CheckpointInUseError(f"could not take the lock {lock}; delete it if no run is using {path}")
    try:
        yield
    finally:
        try:  # remove it while still holding it, and only if it is still ours
            if os.path.samestat(os.fstat(fd), os.stat(lock)):
                lock.unlink()
        except FileNotFoundError:
            pass
        os.close(fd)


@contextlib.contextmanager
def _exclusive_by_file(path: Path, lock: Path, me: str) -> Iterator[None]:
    """`exclusive` without `fcntl`: create the lock file with O_EXCL; take over a dead local writer's."""
    for _ in range(3):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = lock.read_text(errors="replace").split(" ", 2) if lock.exists() else []
            pid = _local_pid(holder)
            if pid is not None and not _alive(pid):
                lock.unlink(missing_ok=True)  # its writer is gone: take the lock over
                continue
            if not lock.exists():
                continue
            raise _in_use(path, lock, holder) from None
        with os.fdopen(fd, "w") as f:
            f.write(me)
        break
    else:
        raise CheckpointInUseError(f"could not take the lock {lock}; delete it if no run is using {path}")
    try:
        yield
    finally:
        lock.unlink(missing_ok=True)


def load(path: str | os.PathLike, file_format: str | tuple[str, ...], what: str, map_location: Any = "cpu") -> dict:
    """Read a dict written by `atomic_save` whose ``"format"`` entry is ``file_format`` (or one of them).

    ``what`` names the kind of file in error messages ("a vaelib model", ...).
    Raises ``ValueError`` for an unreadable file or one of another format.
    """
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:  # torch's advice (weights_only=False) is the one thing not to do
        found = re.search(r"GLOBAL (\S+)|[Uu]nsupported global:? (\S+)", str(err))
        if found:
            raise ValueError(f"refusing to load {path}: it names the Python object {found.group(1) or found.group(2)}, "
                             f"which could run code when loaded; it is not {what}. Delete it (and never load it "
                             "with weights_only=False unless you made it yourself).") from None
        detail = re.search(r"(Unsupported operand \S+|invalid load key[^.]*)", str(err))
        raise ValueError(f"cannot read {path} as {what}: the file is damaged or of another kind (the safe loader "
                         f"stopped at: {detail.group(1) if detail else type(err).__name__}). Delete it to start "
                         "afresh.") from None
    except Exception as err:
        first = " ".join(str(err).split()).split(". ")[0][:200]  # torch's first sentence says what failed
        raise ValueError(f"cannot read {path} as {what}: the file is damaged (a copy cut short?) or of another "
                         f"kind ({type(err).__name__}: {first}). Delete it to start afresh.") from None
    formats = (file_format,) if isinstance(file_format, str) else tuple(file_format)
    if not isinstance(payload, dict) or payload.get("format") not in formats:
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
