"""One training loop for every model in the course: `fit`, `evaluate`, and `batches`, the one
way vaelib walks through data.

A loss function has the signature ``loss_fn(model, batch)``, where ``batch`` is what the data
yields (for `InMemoryData`, an ``(x, y)`` tuple) already on the model's device. It returns the
mean loss over the batch as a scalar tensor, or a dict with that scalar under ``"loss"`` and
any other per-batch means to log (``{"loss": ..., "kl": ...}``).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import math
import os
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import numpy as np
import torch
from torch import nn

from . import checkpoint as ckpt
from .data import InMemoryData
from .device import MAX_MINUTES_ENV, get_device, keep_freed_memory, run_budget, training_dtype
from .progress import ProgressLine

History = dict  # {"epoch": [1, 2, ...], "loss": [...], "val_loss": [...], "seconds": [...]}
LossFn = Callable[[nn.Module, Any], "torch.Tensor | Mapping[str, torch.Tensor]"]

CHECKPOINT_FORMAT = "vaelib-fit-1"  # also read by `vaelib.load_model`


class NonFiniteLossError(RuntimeError):
    """Training met a NaN or infinite loss (or gradient) and stopped before applying it.

    Attributes: ``epoch`` and ``step`` (1-based, step within the epoch), ``value``
    (the offending loss, or gradient norm), ``history`` (the completed epochs).
    """

    def __init__(self, message: str, *, epoch: int, step: int, value: float, history: History):
        super().__init__(message)
        self.epoch, self.step, self.value, self.history = epoch, step, value, history


class LinearAnnealing:
    """A weight that rises linearly from ``start`` to ``end`` over ``steps`` optimizer steps, then stays.

    Pass it to `fit` as ``on_step`` and read ``.value`` in the loss function::

        beta = LinearAnnealing(steps=2000)
        fit(model, lambda m, b: vae_loss(m, b[0], beta=beta.value), data, epochs=10, on_step=beta)

    Because `fit` counts steps across epochs and resumes, the schedule resumes exactly too.
    """

    def __init__(self, steps: int, start: float = 0.0, end: float = 1.0) -> None:
        if steps < 1:
            raise ValueError(f"steps must be >= 1, got {steps}")
        self.steps, self.start, self.end = int(steps), float(start), float(end)
        self.value = self.start

    def at(self, step: int) -> float:
        """The weight after ``step`` optimizer steps."""
        fraction = min(max(step, 0) / self.steps, 1.0)
        return self.start + (self.end - self.start) * fraction

    def __call__(self, step: int) -> None:
        self.value = self.at(step)


def adam(params, lr: float = 1e-3, eps: float = 1e-8) -> torch.optim.Optimizer:
    """Adam with the fused (single-kernel) update where this PyTorch build has one for the
    parameters' device; the same algorithm as ``torch.optim.Adam(params, lr, eps=eps)``, faster."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, eps=eps, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr, eps=eps)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def batch_size_of(batch: Any) -> int:
    """How many examples a batch holds: the length of its first tensor."""
    if isinstance(batch, torch.Tensor):
        return len(batch)
    items = batch.values() if isinstance(batch, Mapping) else batch
    for item in items:
        if isinstance(item, torch.Tensor):
            return len(item)
    raise TypeError("a batch must contain at least one tensor")


def batches(data: Any, batch_size: int, device: torch.device | str, *, shuffle: bool = False,
            progress: str | None = None) -> Iterator[Any]:
    """The batches of ``data`` on ``device``: the one loop over data that `fit`, `evaluate` and
    every evaluation in vaelib share.

    ``data`` is an `InMemoryData` (moved to ``device`` once, then sliced; shuffled when
    ``shuffle``; dynamic binarisation drawn per batch) or any iterable of batches such as a
    ``DataLoader`` (each batch moved to ``device``). With ``progress`` (a label), one progress
    line counts the batches.
    """
    device = torch.device(device)
    if isinstance(data, InMemoryData):
        data = data.to(device)
        source, total = data.batches(batch_size, shuffle=shuffle), data.num_batches(batch_size)
    else:
        source, total = data, (len(data) if hasattr(data, "__len__") else None)
    line = ProgressLine(disable=progress is None)
    of = f"/{total}" if total is not None else ""
    try:
        for step, batch in enumerate(source, start=1):
            yield _to_device(batch, device)
            line.show(f"{progress}: {step}{of} batches")
    finally:
        line.close()


@contextlib.contextmanager
def evaluation(model: nn.Module) -> Iterator[torch.device]:
    """Eval mode and no gradients for the block, the model's mode restored after; yields its device."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield next((p.device for p in model.parameters()), torch.device("cpu"))
    finally:
        model.train(was_training)


def _metrics(out: Any) -> dict[str, torch.Tensor]:
    if isinstance(out, Mapping):
        if "loss" not in out:
            raise KeyError(f"loss_fn returned a dict without a 'loss' entry (keys: {sorted(out)})")
        metrics = {"loss": out["loss"], **{k: v for k, v in out.items() if k != "loss"}}
    else:
        metrics = {"loss": out}
    for name, value in metrics.items():
        if not isinstance(value, torch.Tensor) or value.numel() != 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise ValueError(
                f"loss_fn must return scalar tensors (means over the batch), got {shape} for {name!r}; "
                "reduce it with .mean()"
            )
    return metrics


def evaluate(model: nn.Module, loss_fn: LossFn, data: Any, *, batch_size: int = 512) -> dict[str, float]:
    """Mean of each metric ``loss_fn`` returns over all of ``data`` (weighted by batch size),
    on the model's device, in eval mode and without gradients."""
    totals: dict[str, float] = {}
    count = 0
    with evaluation(model) as device:
        for batch in batches(data, batch_size, device):
            n = batch_size_of(batch)
            for k, v in _metrics(loss_fn(model, batch)).items():
                totals[k] = totals.get(k, 0.0) + float(v) * n
            count += n
    if count == 0:
        raise ValueError("evaluate got no data")
    return {k: v / count for k, v in totals.items()}


# --- checkpoints: everything needed to continue a run bit for bit -------------------------

def _save_checkpoint(path: Path, model, optimizer, epoch: int, history: History, steps: int,
                     config: Mapping | None) -> None:
    ckpt.atomic_save({"format": CHECKPOINT_FORMAT, "epoch": epoch, "steps": steps, "config": config,
                      "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                      "history": history, "rng": ckpt.rng_state(), "threads": torch.get_num_threads()}, path)


def _code_digest(code) -> str:
    """A hash of a function's bytecode, constants and names, the same in every process."""
    h = hashlib.sha256(code.co_code + repr(code.co_names).encode())
    for const in code.co_consts:  # nested functions are code objects, whose repr holds an address
        h.update((_code_digest(const) if hasattr(const, "co_code") else repr(const)).encode())
    return h.hexdigest()[:12]


def describe_loss(loss_fn: Callable) -> str:
    """The loss function's qualified name and a hash of its code: what `fit` stores as the
    configuration of a checkpointed run given no ``config``, so that resuming the checkpoint with
    another loss function is refused. (Values a closure captures, such as a beta, are not seen:
    pass ``config`` for those.)"""
    target = getattr(loss_fn, "func", loss_fn)  # functools.partial
    name = f"{getattr(target, '__module__', '?')}.{getattr(target, '__qualname__', type(target).__name__)}"
    code = getattr(target, "__code__", None)
    return name if code is None else f"{name} (code {_code_digest(code)})"


def _plain(value: Any, where: str) -> Any:
    """``value`` as plain Python (NumPy numbers and arrays converted), or ``ValueError`` naming ``where``."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if math.isnan(value):
            raise ValueError(f"{where} is NaN, which equals nothing, itself included, so a checkpoint storing it could "
                             "never be resumed; leave it out or store it as the string 'nan'")
        return float(value)
    if isinstance(value, Mapping):
        return {_plain(k, f"a key of {where}"): _plain(v, f"{where}[{k!r}]") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v, f"{where}[{i}]") for i, v in enumerate(value))
    if isinstance(value, torch.Tensor):
        raise ValueError(f"{where} is a torch.Tensor, not a plain value; store numbers with .item() or .tolist()")
    if isinstance(value, type) or (callable(value) and hasattr(value, "__qualname__")):
        kind, name = ("class", f"{value.__module__}.{value.__qualname__}") if isinstance(value, type) \
            else ("function", value.__qualname__)
        raise ValueError(f"{where} is the {kind} {name}, not a plain value: a checkpoint stores numbers, strings, "
                         f"lists and dicts, never code; store its name, e.g. {value.__name__!r}")
    raise ValueError(f"{where} is a {type(value).__name__}, not a plain value: a checkpoint stores numbers, strings, "
                     "lists and dicts; store what describes it as one of those")


def plain_config(config: Mapping) -> dict:
    """``fit``'s ``config`` as plain Python values, checked before anything is trained or saved:
    NumPy scalars and arrays become Python numbers and lists (a file naming NumPy's classes would
    be refused by the safe loader on every resume); NaN is refused (it equals nothing, so the run
    could never be resumed); classes, functions, tensors and other objects are refused, naming
    the entry."""
    if not isinstance(config, Mapping):
        raise ValueError(f"config must be a dict of plain values, got {type(config).__name__}")
    return _plain(config, "config")


def _config_difference(stored: Mapping | None, config: Mapping) -> str:
    if stored is None:
        return "it stores no configuration"
    keys = sorted(set(stored) | set(config))
    diffs = [f"{k}: {stored.get(k)!r} there, {config.get(k)!r} here" for k in keys if stored.get(k) != config.get(k)]
    return "; ".join(diffs)


def auto_config(loss_fn: Callable, train: Any, batch_size: int) -> dict:
    """What `fit` stores for a checkpointed run given no ``config``: the loss function (`describe_loss`)
    and, for an `InMemoryData`, the fingerprint of the training data and the batch size, so the
    checkpoint is never resumed with another loss function, on other data or in other batches."""
    config: dict = {"loss_fn": describe_loss(loss_fn)}
    if isinstance(train, InMemoryData):
        config.update(data=train.fingerprint(), batch_size=batch_size)
    return config


def _same_config(stored: Any, config: Mapping, auto: bool) -> bool:
    if not auto:
        return stored == dict(config)
    # a checkpoint an older vaelib wrote without config stored nothing, or only the loss function
    return stored is None or (isinstance(stored, dict) and set(stored) <= set(config)
                              and all(stored[k] == config[k] for k in stored))


FIT_WHAT = "a vaelib.fit checkpoint"
_FIT_KEYS = ("epoch", "history", "model", "optimizer", "rng", "config")


def _load_checkpoint(path: Path, model, optimizer, config: Mapping | None,
                     auto: bool = False) -> tuple[int, History, int]:
    payload = ckpt.load(path, CHECKPOINT_FORMAT, FIT_WHAT)
    ckpt.require(payload, _FIT_KEYS, path, FIT_WHAT)
    if isinstance(payload["epoch"], bool) or not isinstance(payload["epoch"], int) or payload["epoch"] < 0:
        raise ckpt.damaged(path, FIT_WHAT, f"its epoch is {payload['epoch']!r}, not a whole number")
    if not isinstance(payload["history"], dict) or not isinstance(payload["optimizer"], Mapping):
        raise ckpt.damaged(path, FIT_WHAT, "its history or optimizer state is not a dict")
    ckpt.check_weights(payload["model"], path, FIT_WHAT)
    stored = payload["config"]
    if config is not None and not _same_config(stored, config, auto):
        hint = (" (without config=, fit stores the loss function, a fingerprint of the training data and the batch "
                "size)") if auto else ""
        raise ValueError(f"checkpoint {path} was written by a run with another configuration "
                         f"({_config_difference(stored, config)}){hint}; delete it or pass "
                         "another checkpoint path")
    asked = [{k: v for k, v in group.items() if k != "params"} for group in optimizer.param_groups]
    try:
        ckpt.set_rng_state(payload["rng"])  # first, so a malformed state is found before the weights change
    except ValueError as err:
        raise ckpt.damaged(path, FIT_WHAT, f"its random-number state is malformed: {err}") from None
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])  # the moments; it also overwrites lr and the like
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(f"checkpoint {path} does not match this model or optimizer ({err}); "
                         "delete it or pass another checkpoint path") from None
    for group, settings in zip(optimizer.param_groups, asked):
        group.update(settings)  # run with the learning rate (and betas, ...) of the optimizer passed in
    threads = payload.get("threads")
    if threads is not None and threads != torch.get_num_threads():
        warnings.warn(f"resuming {path}, written with {threads} CPU threads, with {torch.get_num_threads()}: "
                      "CPU kernels split their sums by thread, so the result will not be bit-identical to an "
                      "uninterrupted run (torch.set_num_threads restores it)", stacklevel=3)
    return payload["epoch"], payload["history"], int(payload.get("steps", 0))


def _warn_more_epochs(path: Path, start: int, epochs: int, stacklevel: int = 3) -> None:
    warnings.warn(f"{path} holds {start} epochs, more than the {epochs} asked for: the model and "
                  f"history returned are those of epoch {start}. To train only {epochs}, pass "
                  "resume=False or another checkpoint path.", stacklevel=stacklevel)


_READ_ONLY = (errno.EACCES, errno.EPERM, errno.EROFS)  # no permission, a read-only file system


def _finished_run(path: Path, model, optimizer, config: Mapping, auto: bool, epochs: int, resume: bool,
                  err: OSError) -> History:
    """The run in ``path`` when its folder cannot be written, so no lock can be taken (a shared or
    read-only runs folder): a finished run is loaded without the lock, as a reader needs none
    (`vaelib.checkpoint.atomic_save` replaces files whole); anything that would write is refused."""
    why = err.strerror or str(err)
    if not (resume and path.is_file()):
        raise PermissionError(f"cannot write the checkpoint {path}: its folder cannot be written ({why}); choose a "
                              "folder you can write (for the recipes: runs= or VAELIB_RUNS)") from None
    start, history, _ = _load_checkpoint(path, model, optimizer, config, auto)
    if start < epochs:
        raise PermissionError(f"{path} holds {start} of the {epochs} epochs asked for, but its folder cannot be "
                              f"written ({why}), so the run cannot continue; copy it to a folder you can write and "
                              "pass that path (for the recipes: runs= or VAELIB_RUNS), or ask for the epochs it "
                              "holds") from None
    if start > epochs:
        _warn_more_epochs(path, start, epochs, stacklevel=4)
    return history


# --- one epoch -----------------------------------------------------------------------------

def _stop(epoch: int, step: int, loss: float, norm: float, path: Path | None, history: History,
          weights_finite: bool, restored: bool):
    what = f"the loss became {loss}" if not math.isfinite(loss) else f"the gradient norm became {norm} (loss {loss:.6g})"
    saved = path is not None and path.exists()
    if weights_finite:
        kept = ("The update was not applied: the model keeps the weights from the last good step"
                + (f", and {path} holds the last completed epoch" if saved else "") + ".")
    elif restored:
        kept = (f"The weights themselves were no longer finite (an earlier update with a finite loss made them so), "
                f"so the model and optimizer were restored from {path}, the last completed epoch.")
    else:
        kept = ("The weights themselves are no longer finite (an earlier update with a finite loss made them so) "
                "and no checkpoint of this run exists: train again, with a lower learning rate"
                + (" and a checkpoint" if path is None else "") + ".")
    return NonFiniteLossError(
        f"Training stopped at epoch {epoch}, step {step}: {what}. {kept} Common causes: a learning rate that "
        "is too high, the log of 0 or a variance that reached 0, or inputs outside the range the loss expects.",
        epoch=epoch, step=step, value=loss if not math.isfinite(loss) else norm, history=history)


_DEFER_ON_CPU = False  # tests turn this on to exercise the accelerator's guard on the CPU


def _grad_norm(params: list[torch.Tensor], max_norm: float, like: torch.Tensor) -> torch.Tensor:
    """The gradients' total 2-norm, clipping them to ``max_norm`` when it is finite."""
    grads = [p.grad for p in params if p.grad is not None]
    if not grads:
        return like.new_zeros(())
    if math.isinf(max_norm):  # only the guard reads it: one BLAS dot product per tensor is the cheapest
        # pass over the gradients (on a CPU about half the time of torch.nn.utils.get_total_norm)
        return torch.stack([torch.dot(v, v).float() for v in (g.reshape(-1) for g in grads)]).sum().sqrt()
    return torch.nn.utils.clip_grad_norm_(params, max_norm)


def _train_epoch(model, loss_fn, train, optimizer, *, batch_size, device, dtype, max_norm, on_step, steps,
                 show: Callable[[int, float], None], due: Callable[[], bool],
                 stop: Callable[[int, float, float], Exception]):
    """One pass over ``train``; returns (example-weighted means of the metrics, steps done so far).

    The guard against a non-finite loss or gradient reads values back from the device. On an
    accelerator with a fused optimizer (the default `adam`) it does so only when the progress
    line is redrawn and at the end of the epoch, not at every step: each step's values stay on
    the device, and a sticky flag passed to the optimizer as ``found_inf`` (the hook
    ``torch.amp.GradScaler`` uses) makes the kernel skip the first non-finite step's update and
    every one after it, so the model still keeps the weights of the last good step. On the CPU
    (where reading back costs nothing) and with any other optimizer, every step is checked
    before its update.
    """
    params = [p for group in optimizer.param_groups for p in group["params"]]
    products = (torch.autocast(device.type, dtype=dtype) if dtype != torch.float32
                else contextlib.nullcontext())  # the forward's matrix products in bf16 (`training_dtype`)
    # read back every step on the CPU (free there); on an accelerator only with fused kernels (found_inf)
    deferred = bool(getattr(optimizer, "defaults", {}).get("fused")) and (device.type != "cpu" or _DEFER_ON_CPU)
    model.train()
    sums: dict[str, float] = {}
    count = 0
    pending: list[tuple[int, int, torch.Tensor]] = []  # (step, batch size, [norm, *metrics]) not yet read
    flag = None  # 1.0 once any step so far was non-finite (on the device)

    def read_back() -> None:  # the one device-to-host copy: raise on the first bad step, else add up
        nonlocal count
        rows = torch.stack([row for _, _, row in pending]).tolist()
        for (step, n, _), (norm_value, *values) in zip(pending, rows):
            if not (math.isfinite(values[0]) and math.isfinite(norm_value)):
                optimizer.zero_grad(set_to_none=True)
                raise stop(step, values[0], norm_value)
            for k, v in zip(metrics, values):
                sums[k] = sums.get(k, 0.0) + v * n
            count += n
        pending.clear()

    try:
        for step, batch in enumerate(batches(train, batch_size, device, shuffle=True), start=1):
            if on_step is not None:
                on_step(steps)
            optimizer.zero_grad(set_to_none=True)
            with products:
                metrics = _metrics(loss_fn(model, batch))
            loss = metrics["loss"]
            if not loss.requires_grad:
                raise ValueError("loss_fn returned a loss with no gradient, so training would leave the weights "
                                 "unchanged; compute it from the model's output outside torch.no_grad() and "
                                 "without .detach() or .item()")
            loss.backward()
            if step == 1 and all(p.grad is None for p in params):
                raise ValueError("the loss does not depend on any parameter the optimizer updates; pass an "
                                 "optimizer built from this model's parameters")
            norm = _grad_norm(params, max_norm, loss)
            row = torch.stack([norm.to(loss.device)] + [v.detach().reshape(()) for v in metrics.values()])
            pending.append((step, batch_size_of(batch), row))
            if deferred:
                bad = (~torch.isfinite(row).all()).float()
                flag = bad if flag is None else torch.maximum(flag, bad)
                optimizer.found_inf = flag
            if not deferred or due():
                read_back()
                if count:
                    show(step, sums["loss"] / count)
            optimizer.step()
            steps += 1
        if pending:
            read_back()
    finally:
        if deferred and hasattr(optimizer, "found_inf"):
            del optimizer.found_inf  # leave the caller's optimizer as it was
    if count == 0:
        raise ValueError("fit got no training batches: the training data is empty")
    return {k: v / count for k, v in sums.items()}, steps


def _cap_message(cap: float, done: int, start: int, epochs: int, path: Path | None) -> str:
    then = (f"run it again to continue from {path}" if path is not None
            else "this run has no checkpoint, so running it again starts afresh")
    return (f"Stopped at the {cap:g}-minute cap ({MAX_MINUTES_ENV} changes it) after {done} of the "
            f"{epochs - start} epochs this call asked for (epoch {start + done} of {epochs}); {then}.")


def _of_total(train: Any, batch_size: int) -> str:
    if isinstance(train, InMemoryData):
        return f"/{train.num_batches(batch_size)}"
    return f"/{len(train)}" if hasattr(train, "__len__") else ""


def fit(
    model: nn.Module,
    loss_fn: LossFn,
    train: Any,
    *,
    epochs: int,
    val: Any = None,
    optimizer: torch.optim.Optimizer | None = None,
    batch_size: int = 128,
    device: torch.device | str | None = None,
    checkpoint: str | os.PathLike | None = None,
    config: Mapping | None = None,
    resume: bool = True,
    clip_grad_norm: float | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
    max_minutes: float | None = None,
    precision: str | None = None,
) -> History:
    """Train ``model`` to minimise ``loss_fn`` over ``train`` for ``epochs`` passes.

    Args:
        model: any ``nn.Module``; moved to ``device``.
        loss_fn: ``loss_fn(model, batch) -> loss`` or ``{"loss": loss, ...}`` (batch means).
        train: an `InMemoryData` (shuffled each epoch) or any iterable of batches (a ``DataLoader``).
        epochs: total number of passes (a resumed run trains only the missing ones).
        val: optional held-out data of the same kind, evaluated after every epoch.
        optimizer: defaults to Adam with lr 1e-3 (`adam`, the fused kernel where available).
        batch_size: used when ``train`` is an `InMemoryData`.
        device: defaults to `get_device()`.
        checkpoint: a file written at the end of every epoch (weights, optimizer, history and
            random-number states), atomically.
        config: a dict of plain values describing the run, stored in the checkpoint; resuming
            from a checkpoint whose stored configuration differs is refused. It is checked
            first (`plain_config`): NumPy values become Python ones, and NaN, classes, functions
            and tensors are refused. Without it, a checkpointed run stores `auto_config`: the
            loss function (`describe_loss`) and, for an `InMemoryData`, the fingerprint of the
            training data and the batch size, so a checkpoint is never resumed with another loss
            function, on other data or in other batches.
        resume: when ``checkpoint`` exists, continue from it; the result equals an
            uninterrupted run bit for bit on the same device. In a folder that cannot be written
            (no permission, a read-only file system), a checkpoint holding at least ``epochs``
            is loaded without taking the lock; anything that would write raises ``PermissionError``.
        clip_grad_norm: clip the gradient's total norm to this value.
        on_step: called with the number of optimizer steps done so far, before each step
            (counted across epochs and resumes): the hook for schedules such as KL annealing.
        progress: show progress as one line for the run (`vaelib.progress`).
        max_minutes: the wall-clock cap of this call: it stops at the first epoch boundary where
            one more epoch would pass the cap (always doing at least one epoch), saves, and
            prints how far it got; calling it again continues. Defaults to the run budget's
            cap (`RunBudget.max_minutes`: ``$VAELIB_MAX_MINUTES``, else 0.5 / 6 / 10 minutes);
            ``math.inf`` for none.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"``, the dtype of the training step's matrix
            products (`vaelib.device.training_dtype`; default ``$VAELIB_PRECISION``, else auto:
            bf16 on a CPU with native bf16, fp32 elsewhere). Weights, losses and evaluation stay fp32.

    On the CPU, fit first calls `vaelib.device.keep_freed_memory` (once per process, Linux with
    glibc): freed buffers are reused instead of being faulted in again at every step.

    Returns:
        the history: ``{"epoch": [...], "loss": [...], <other metrics>, "val_loss": [...],
        "seconds": [...]}``, one entry per completed epoch (fewer than ``epochs`` when the cap
        stopped the run), train metrics averaged over examples.

    Raises:
        NonFiniteLossError: the loss or the gradient became NaN or infinite. The
            offending update is not applied, so ``model`` keeps the last good weights (if an
            earlier update had already made the weights non-finite, they are restored from
            ``checkpoint``'s last completed epoch, and the message says which happened).
        ValueError: the loss has no gradient, or reaches none of the optimizer's parameters;
            ``config`` is not plain; the checkpoint belongs to another run, or is damaged
            (`vaelib.checkpoint.DamagedFileError`, a ``ValueError``).

    Resuming keeps the hyperparameters (learning rate, betas, ...) of the ``optimizer`` passed
    in and takes only its state (Adam's moments) from the checkpoint. A checkpoint that holds
    more epochs than ``epochs`` is returned as it is, with a warning.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a whole number >= 1, got {batch_size!r}")
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    train = train.to(device) if isinstance(train, InMemoryData) else train  # moved once, not per epoch
    optimizer = optimizer if optimizer is not None else adam(model.parameters())
    max_norm = float("inf") if clip_grad_norm is None else float(clip_grad_norm)
    path = Path(checkpoint) if checkpoint is not None else None
    auto = path is not None and config is None
    config = plain_config(config) if config is not None else (auto_config(loss_fn, train, batch_size) if auto else None)
    if max_minutes is not None and (isinstance(max_minutes, bool) or not isinstance(max_minutes, (int, float))
                                    or not max_minutes > 0):  # 0, -1 and nan would train one epoch or none
        raise ValueError(f"max_minutes must be a positive number of minutes (math.inf for no cap), got {max_minutes!r}")
    cap = run_budget(device).max_minutes if max_minutes is None else float(max_minutes)
    dtype = training_dtype(device, precision)
    if device.type == "cpu":
        keep_freed_memory()  # reuse freed buffers: no page faults per step (glibc; see its docstring)
    lock = contextlib.ExitStack()
    if path is not None:
        try:
            lock.enter_context(ckpt.exclusive(path))  # one writer per file
        except OSError as err:
            if err.errno not in _READ_ONLY:
                raise
            return _finished_run(path, model, optimizer, config, auto, epochs, resume, err)
    with lock:
        history: History = {}
        start = steps = 0
        if path is not None and resume and path.exists():
            start, history, steps = _load_checkpoint(path, model, optimizer, config, auto)
            if start > epochs:
                _warn_more_epochs(path, start, epochs)

        def stop(epoch: int, step: int, loss: float, norm: float) -> NonFiniteLossError:
            finite = all(bool(torch.isfinite(p).all()) for p in model.parameters())
            restored = not finite and path is not None and path.exists()
            if restored:  # keep the last good state we have: the last completed epoch
                _load_checkpoint(path, model, optimizer, config, auto)
            return _stop(epoch, step, loss, norm, path, history, finite, restored)
        of = _of_total(train, batch_size)  # "/<batches per epoch>" when known
        line = ProgressLine(disable=not progress)  # one line for the whole run
        run_t0, stopped = time.perf_counter(), False
        try:
            for epoch in range(start + 1, epochs + 1):
                if epoch > start + 1 and time.perf_counter() - run_t0 + history["seconds"][-1] > 60 * cap:
                    stopped = True  # one more epoch would pass the cap
                    break
                t0, steps_before = time.perf_counter(), steps
                row, steps = _train_epoch(
                    model, loss_fn, train, optimizer, batch_size=batch_size, device=device, dtype=dtype, max_norm=max_norm,
                    on_step=on_step, steps=steps,
                    show=lambda step, loss: line.show(f"epoch {epoch}/{epochs}: {step}{of} batches, "
                                                      f"{time.perf_counter() - t0:.0f} s, loss={loss:.4g}"),
                    due=line.due,
                    stop=lambda step, loss, norm: stop(epoch, step, loss, norm))
                if val is not None:
                    row.update({f"val_{k}": v for k, v in evaluate(model, loss_fn, val).items()})
                row["seconds"] = time.perf_counter() - t0
                history.setdefault("epoch", []).append(epoch)
                for k, v in row.items():
                    history.setdefault(k, []).append(v)
                text = f"epoch {epoch}/{epochs}: {steps - steps_before}{of} batches, {row['seconds']:.1f} s, " + ", ".join(
                    f"{k}={v:.4g}" for k, v in row.items() if k != "seconds")
                done = f" ({epochs - start} epochs in {time.perf_counter() - run_t0:.0f} s)" if epoch == epochs else ""
                line.epoch_done(text + done)
                if path is not None:
                    _save_checkpoint(path, model, optimizer, epoch, history, steps, config)
        finally:
            line.close()
    if stopped:
        print(_cap_message(cap, history["epoch"][-1] - start, start, epochs, path))
    return history
