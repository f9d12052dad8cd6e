"""Files that survive a crash: atomic saves, safe loads, and the random-number state of a run.

Every file vaelib writes (a model, a `fit` checkpoint) goes through `atomic_save`: the data
is written to a fresh temporary file in the same folder, flushed to disk, then renamed over
the target, so a reader sees the old file or the new one, never half of either, and it
carries a checksum of its content. Every file it reads goes through `load` with
``weights_only=True``: tensors and plain containers only, never arbitrary pickled code; the
checksum is verified, so bytes changed on disk or in a copy give `DamagedFileError` rather
than a model with wrong weights.
"""

from __future__ import annotations

import contextlib
import hashlib
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


CHECKSUM = "checksum"  # the entry of a saved dict holding `content_digest` of the rest


def _digest_into(h, obj: Any) -> None:
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous().reshape(-1)
        h.update(f"T{t.dtype}{tuple(obj.shape)};".encode())
        h.update(t.view(torch.uint8).numpy())  # the raw bytes, whatever the dtype (bf16 included)
    elif isinstance(obj, Mapping):
        h.update(f"D{len(obj)};".encode())
        for key, value in obj.items():
            _digest_into(h, key)
            _digest_into(h, value)
    elif isinstance(obj, (list, tuple)):
        h.update(f"{'L' if isinstance(obj, list) else 'U'}{len(obj)};".encode())
        for value in obj:
            _digest_into(h, value)
    else:  # numbers, strings, None, torch.Size, dtypes: their repr is exact and the same in every process
        h.update(f"{type(obj).__name__}:{obj!r};".encode())


def content_digest(obj: Any) -> str:
    """A SHA-256 of a payload's content (every tensor's bytes, dtype and shape, every plain value,
    in order): the same for the dict saved and the dict loaded back, different when any byte of a
    weight or any value changed."""
    h = hashlib.sha256()
    _digest_into(h, obj)
    return "sha256:" + h.hexdigest()


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` through a unique temporary file and ``os.replace``; returns ``path``.

    A dict is saved with a ``"checksum"`` entry (`content_digest` of the rest, replacing any it
    had), which `load` verifies. Ctrl-C during the save takes effect once the file is complete
    (the write is never torn).
    """
    path = Path(path)
    if isinstance(obj, dict):
        obj = {k: v for k, v in obj.items() if k != CHECKSUM}
        obj[CHECKSUM] = content_digest(obj)
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
        except OSError:  # gone already, or a folder we may not change: an unheld lock is taken over
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


class DamagedFileError(ValueError):
    """A file vaelib wrote that cannot be used as it is: cut short, overwritten (its checksum does
    not match), missing an entry, holding NaN or infinite weights or a malformed random-number
    state. The message names the file and says to delete it. (A file that is there but cannot be
    read, for lack of permission or because it is a folder, raises an ``OSError`` instead, which
    never advises deleting it.)"""


def damaged(path: str | os.PathLike, what: str, why: str) -> DamagedFileError:
    """The one error for a damaged file: what it should have been, what is wrong, what to do."""
    return DamagedFileError(f"cannot read {path} as {what}: the file is damaged ({why}). Delete it to start afresh.")


def _unreadable(path: str | os.PathLike, what: str, err: OSError) -> OSError:
    """An ``OSError`` of the same kind, saying that ``path`` cannot be read and why, without calling
    it damaged: an intact file behind a permission or a wrong path must not be deleted."""
    if isinstance(err, IsADirectoryError):
        why = "it is a folder, not a file; pass the path of the file itself"
    elif isinstance(err, PermissionError):
        why = f"{err.strerror or err}; the file may well be intact: give yourself read access to it (or its folder)"
    else:
        why = f"{err.strerror or err}; check the path and the disk"
    return type(err)(f"cannot read {path} as {what}: {why}")


def require(payload: Mapping, keys: tuple[str, ...], path: str | os.PathLike, what: str) -> None:
    """Raise `DamagedFileError` naming the first of ``keys`` that ``payload`` lacks."""
    for key in keys:
        if key not in payload:
            raise damaged(path, what, f"it has no {key!r} entry")


def check_weights(state: Any, path: str | os.PathLike, what: str) -> None:
    """Raise `DamagedFileError` unless ``state`` is a table of tensors whose floating-point values
    are all finite (a state dict as ``model.state_dict()`` gives it)."""
    if not isinstance(state, Mapping) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise damaged(path, what, f"its weights are a {type(state).__name__}, not a table of tensors")
    bad = {name: int((~torch.isfinite(v)).sum()) for name, v in state.items()
           if (v.is_floating_point() or v.is_complex()) and not bool(torch.isfinite(v).all())}
    if bad:
        where = ", ".join(f"{n} in {name}" for name, n in list(bad.items())[:3])
        raise damaged(path, what, f"{sum(bad.values())} of its weights are NaN or infinite ({where})")


def load(path: str | os.PathLike, file_format: str | tuple[str, ...], what: str, map_location: Any = "cpu") -> dict:
    """Read a dict written by `atomic_save` whose ``"format"`` entry is ``file_format`` (or one of them).

    ``what`` names the kind of file in error messages ("a vaelib model", ...). Its checksum is
    verified and removed from the dict returned; a file written before checksums (it has no
    ``"checksum"`` entry) is read as it is. Raises `DamagedFileError` (a ``ValueError``) for a
    damaged file, ``ValueError`` for one of another format, and an ``OSError`` that does not call it
    damaged for one that cannot be read (a folder, no permission).
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
        raise DamagedFileError(f"cannot read {path} as {what}: the file is damaged or of another kind (the safe loader "
                               f"stopped at: {detail.group(1) if detail else type(err).__name__}). Delete it to start "
                               "afresh.") from None
    except OSError as err:  # there, perhaps intact, but not readable by us: never advise deleting it
        raise _unreadable(path, what, err) from None
    except Exception as err:
        first = " ".join(str(err).split()).split(". ")[0][:200]  # torch's first sentence says what failed
        raise DamagedFileError(f"cannot read {path} as {what}: the file is damaged (a copy cut short?) or of another "
                               f"kind ({type(err).__name__}: {first}). Delete it to start afresh.") from None
    formats = (file_format,) if isinstance(file_format, str) else tuple(file_format)
    if not isinstance(payload, dict) or payload.get("format") not in formats:
        raise ValueError(f"{path} is not {what}; delete it or choose another path")
    stored = payload.pop(CHECKSUM, None)
    if stored is not None and stored != content_digest(payload):
        raise damaged(path, what, "its content does not match the checksum written with it: bytes changed on disk "
                                  "or in a copy, or the file was edited")
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


def _apply_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what `rng_state` returned. A malformed state raises ``ValueError`` saying what was
    wrong, and leaves every generator as it was."""
    before = rng_state()
    try:
        _apply_rng_state(state)
    except (KeyError, TypeError, ValueError, RuntimeError, IndexError, AttributeError) as err:
        _apply_rng_state(before)
        first = " ".join(str(err).split())[:200]
        raise ValueError(f"{type(err).__name__}: {first}") from None
