"""Where to run and how much to run: device choice, seeding and the run budget.

The course has one code path for every device. `get_device` picks the best
accelerator present; `run_budget` turns "how much compute do we have" into a
mode that chapters read their epoch and sample counts from.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import random
import sys
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

BUDGET_MODES = ("smoke", "default", "full")
# the wall-clock cap of one training run (one `fit` call), in minutes, per mode
CAP_MINUTES = {"smoke": 0.5, "default": 6.0, "full": 10.0}
MAX_MINUTES_ENV = "VAELIB_MAX_MINUTES"
PRECISION_ENV = "VAELIB_PRECISION"
PRECISIONS = ("auto", "fp32", "bf16")


def get_device() -> torch.device:
    """Return the best available device: CUDA, then Apple MPS, then the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def describe_device(device: torch.device | str) -> str:
    """What a stored output was made on, for the reader of another machine: ``"cpu (AMD EPYC,
    2 threads)"``, ``"cuda (Tesla T4)"``, ``"mps"``. The CPU's name comes from ``/proc/cpuinfo``
    where there is one, else from `platform`."""
    device = torch.device(device)
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    if device.type != "cpu":
        return device.type
    threads = torch.get_num_threads()
    return f"cpu ({cpu_name()}, {threads} thread{'' if threads == 1 else 's'})"


def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo`` where there is one, else `platform`)."""
    import platform

    name = platform.processor() or platform.machine() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as info:
            name = next((line.split(":", 1)[1].strip() for line in info if line.startswith("model name")), name)
    except OSError:
        pass
    return name


# glibc's mallopt parameters and the values `keep_freed_memory` sets (bytes)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = {M_TRIM_THRESHOLD: 256 << 20, M_MMAP_THRESHOLD: 64 << 20}
_allocator_tuned = False


def keep_freed_memory() -> bool:
    """Let this process reuse freed tensor memory instead of handing it back to the OS (Linux, glibc).

    A CPU training step allocates and frees the same megabyte-sized buffers every step (the
    bf16 copies of the weights, their gradients, the batch). By default glibc returns such
    blocks to the operating system and takes them back at the next step, paying one page fault
    per 4 KiB; on a virtual machine that is about a tenth of a step of the 784-400-20 VAE.
    This raises glibc's mmap and trim thresholds (``mallopt``) to 64 MiB and 256 MiB, so freed
    blocks stay in the process and are reused: the process may keep up to 256 MiB more memory
    than it uses. It changes no result. It acts once per process, only on Linux with glibc, and
    returns whether the thresholds are set. `fit` calls it when it trains on the CPU.
    """
    global _allocator_tuned
    if not _allocator_tuned and sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
            mallopt = libc.mallopt  # glibc only (musl has none)
        except (OSError, AttributeError):
            return False
        _allocator_tuned = all(mallopt(param, value) == 1 for param, value in KEEP_FREED_BYTES.items())
    return _allocator_tuned


def _cpu_has_native_bf16() -> bool:
    has = getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None)
    return any(f is not None and f() for f in has)


def training_dtype(device: torch.device | str, precision: str | None = None) -> torch.dtype:
    """The dtype of a training step's matrix products on ``device``: ``torch.bfloat16`` or ``torch.float32``.

    ``precision`` is ``"fp32"``, ``"bf16"`` or ``"auto"`` (default: ``$VAELIB_PRECISION``, else
    ``"auto"``). ``"auto"`` picks bf16 only where bf16 products are native and about twice as
    fast as fp32: a CPU with AVX512-BF16 or AMX. Everywhere else (CUDA, MPS, other CPUs) it
    picks fp32. Only the products run in bf16 (`torch.autocast`); weights, optimizer state,
    losses and every evaluation stay fp32.
    """
    choice = (precision if precision is not None else os.environ.get(PRECISION_ENV, "") or "auto").strip().lower()
    if choice not in PRECISIONS:
        where = "precision" if precision is not None else PRECISION_ENV
        raise ValueError(f"{where}={choice!r} is not one of {PRECISIONS}")
    if choice == "auto":
        choice = "bf16" if torch.device(device).type == "cpu" and _cpu_has_native_bf16() else "fp32"
    return torch.bfloat16 if choice == "bf16" else torch.float32


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and PyTorch's (CPU and every GPU) random generators.

    Two runs that call this with the same seed and then do the same work on the
    same device draw the same random numbers.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}")
    if not 0 <= seed < 2**63:
        raise ValueError(f"seed must lie in [0, 2**63) (PyTorch's generators take 64 bits), got {seed}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def _env_flag(name: str) -> bool:
    value = os.environ.get(name)
    return value is not None and value.strip().lower() not in ("", "0", "false", "no", "off")


@dataclass(frozen=True)
class RunBudget:
    """How much compute a run may spend, as one of three modes.

    - ``smoke``: a few seconds per chapter, to check that the code runs (CI).
    - ``default``: minutes on a laptop CPU, with results a reader would accept.
    - ``full``: longer GPU runs, each capped at 10 minutes (the papers' protocols, which take
      hours, are `benchmarks/reproduce.py`'s).

    Chapters state their sizes for every mode in one place::

        epochs = budget.pick(smoke=1, default=10, full=100)
    """

    mode: str
    reason: str

    def __post_init__(self) -> None:
        if self.mode not in BUDGET_MODES:
            raise ValueError(f"budget mode must be one of {BUDGET_MODES}, got {self.mode!r}")

    @property
    def smoke(self) -> bool:
        return self.mode == "smoke"

    def pick(self, *, smoke: T, default: T, full: T) -> T:
        """Return the value given for the current mode."""
        return {"smoke": smoke, "default": default, "full": full}[self.mode]

    @property
    def max_minutes(self) -> float:
        """The wall-clock cap of one training run in minutes: ``$VAELIB_MAX_MINUTES`` when set,
        else 0.5 (smoke), 6 (default: a 2-core CPU) or 10 (full: a T4-class GPU). `fit` stops at
        the first epoch boundary that would pass it, saves, and a rerun continues."""
        value = os.environ.get(MAX_MINUTES_ENV, "").strip()
        if not value:
            return CAP_MINUTES[self.mode]
        try:
            minutes = float(value)
        except ValueError:
            minutes = float("nan")
        if not minutes > 0:
            raise ValueError(f"{MAX_MINUTES_ENV}={value!r} is not a positive number of minutes; "
                             "set it to, say, 30 (or inf for no cap), or unset it")
        return minutes

    def run_cap(self, runs: int = 1) -> float:
        """The cap of each of ``runs`` training runs made by one notebook cell: the cell shares one
        cap (`max_minutes`) equally, so a cell that trains several models is bounded like one that
        trains one. Pass it as ``max_minutes=`` to `fit` or a recipe."""
        if not isinstance(runs, int) or runs < 1:
            raise ValueError(f"runs must be a positive int, got {runs!r}")
        return self.max_minutes / runs

    def __str__(self) -> str:
        return f"{self.mode} ({self.reason})"


def run_budget(device: torch.device | str | None = None) -> RunBudget:
    """Decide the run budget from the environment and the device.

    In order of precedence:

    1. ``VAELIB_BUDGET`` set to ``smoke``, ``default`` or ``full`` forces that mode;
    2. ``CI`` or ``VAELIB_SMOKE`` set (to anything but ``0``/``false``) gives ``smoke``;
    3. a CUDA device gives ``full``;
    4. anything else (CPU, Apple MPS) gives ``default``.

    ``device`` defaults to `get_device()`.
    """
    forced = os.environ.get("VAELIB_BUDGET", "").strip().lower()
    if forced:
        if forced not in BUDGET_MODES:
            raise ValueError(
                f"VAELIB_BUDGET={forced!r} is not a budget mode; use one of {BUDGET_MODES} or unset it"
            )
        return RunBudget(forced, "VAELIB_BUDGET")
    for name in ("CI", "VAELIB_SMOKE"):
        if _env_flag(name):
            return RunBudget("smoke", f"{name} is set")
    device = torch.device(device) if device is not None else get_device()
    if device.type == "cuda":
        return RunBudget("full", "CUDA device")
    return RunBudget("default", f"{device.type} device")
