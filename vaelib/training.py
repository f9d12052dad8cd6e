"""One training loop for every model in the course: `fit`, and `evaluate` for held-out data.

A loss function has the signature ``loss_fn(model, batch)``, where ``batch`` is
what the data yields (for `InMemoryData`, an ``(x, y)`` tuple) already on the
model's device. It returns the mean loss over the batch as a scalar tensor, or
a dict with that scalar under ``"loss"`` and any other per-batch means to log
(``{"loss": ..., "kl": ...}``).
"""

from __future__ import annotations

import math
import os
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from .data import InMemoryData
from .device import get_device
from .progress import ProgressLine

History = dict  # {"epoch": [1, 2, ...], "loss": [...], "val_loss": [...], "seconds": [...]}
LossFn = Callable[[nn.Module, Any], "torch.Tensor | Mapping[str, torch.Tensor]"]

CHECKPOINT_FORMAT = "vaelib-fit-1"


class NonFiniteLossError(RuntimeError):
    """Training met a NaN or infinite loss (or gradient) and stopped before applying it.

    Attributes: ``epoch`` and ``step`` (1-based, step within the epoch), ``value``
    (the offending loss, or gradient norm), ``history`` (the completed epochs).
    """

    def __init__(self, message: str, *, epoch: int, step: int, value: float, history: History):
        super().__init__(message)
        self.epoch, self.step, self.value, self.history = epoch, step, value, history


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, (list, tuple)):
        return type(batch)(_to_device(b, device) for b in batch)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


def _batch_len(batch: Any) -> int:
    if isinstance(batch, torch.Tensor):
        return len(batch)
    items = batch.values() if isinstance(batch, Mapping) else batch
    for item in items:
        if isinstance(item, torch.Tensor):
            return len(item)
    raise TypeError("a batch must contain at least one tensor")


def _iterate(data: Any, batch_size: int, shuffle: bool) -> tuple[Iterable, int | None]:
    """Batches and their count, for `InMemoryData` or any iterable of batches (a DataLoader)."""
    if hasattr(data, "batches"):
        return data.batches(batch_size, shuffle=shuffle), data.num_batches(batch_size)
    return data, (len(data) if hasattr(data, "__len__") else None)


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


def adam(params, lr: float = 1e-3) -> torch.optim.Optimizer:
    """Adam with the fused (single-kernel) update where this PyTorch build has one for the
    parameters' device; the same algorithm as ``torch.optim.Adam(params, lr)``, faster."""
    params = list(params)
    try:
        return torch.optim.Adam(params, lr=lr, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device or dtype
        return torch.optim.Adam(params, lr=lr)


@torch.no_grad()
def evaluate(
    model: nn.Module,
    loss_fn: LossFn,
    data: Any,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
) -> dict[str, float]:
    """Mean of each metric ``loss_fn`` returns over all of ``data`` (weighted by batch size).

    The model is put in eval mode for the pass and restored afterwards.
    """
    if device is None:
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
    device = torch.device(device)
    if isinstance(data, InMemoryData):
        data = data.to(device)
    was_training = model.training
    model.eval()
    totals: dict[str, float] = {}
    count = 0
    try:
        batches, _ = _iterate(data, batch_size, shuffle=False)
        for batch in batches:
            batch = _to_device(batch, device)
            n = _batch_len(batch)
            for k, v in _metrics(loss_fn(model, batch)).items():
                totals[k] = totals.get(k, 0.0) + float(v) * n
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        raise ValueError("evaluate got no data")
    return {k: v / count for k, v in totals.items()}


def _numpy_state_to_torch(state: tuple) -> tuple:
    # NumPy's state holds an ndarray; a tensor keeps the checkpoint loadable with weights_only=True
    name, keys, pos, has_gauss, cached = state
    return (name, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(cached))


def _numpy_state_from_torch(state: tuple) -> tuple:
    name, keys, pos, has_gauss, cached = state
    return (name, keys.numpy().astype(np.uint32), pos, has_gauss, cached)


def _rng_state() -> dict[str, Any]:
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


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(_numpy_state_from_torch(state["numpy"]))
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    if "mps" in state and torch.backends.mps.is_available():
        torch.mps.set_rng_state(state["mps"])


def _save_checkpoint(path: Path, model, optimizer, epoch: int, history: History, steps: int) -> None:
    payload = {
        "format": CHECKPOINT_FORMAT,
        "epoch": epoch,
        "steps": steps,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "history": history,
        "rng": _rng_state(),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, path)  # atomic: a crash never leaves half a checkpoint


def _load_checkpoint(path: Path, model, optimizer) -> tuple[int, History, int]:
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read checkpoint {path}: {err}. Delete it to start afresh.") from None
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path} is not a vaelib.fit checkpoint; delete it or choose another path")
    try:
        model.load_state_dict(payload["model"])
        optimizer.load_state_dict(payload["optimizer"])
    except (RuntimeError, ValueError, KeyError) as err:
        raise ValueError(
            f"checkpoint {path} does not match this model or optimizer ({err}); "
            "delete it or pass another checkpoint path"
        ) from None
    _set_rng_state(payload["rng"])
    return int(payload["epoch"]), payload["history"], int(payload.get("steps", 0))


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
    resume: bool = True,
    clip_grad_norm: float | None = None,
    on_step: Callable[[int], None] | None = None,
    progress: bool = True,
) -> History:
    """Train ``model`` to minimise ``loss_fn`` over ``train`` for ``epochs`` passes.

    Args:
        model: any ``nn.Module``; moved to ``device``.
        loss_fn: ``loss_fn(model, batch) -> loss`` or ``{"loss": loss, ...}`` (batch means).
        train: an `InMemoryData` (shuffled each epoch) or any iterable of batches
            such as a ``DataLoader``.
        epochs: total number of passes (a resumed run trains only the missing ones).
        val: optional held-out data of the same kind, evaluated after every epoch.
        optimizer: defaults to Adam with lr 1e-3 (`adam`, the fused kernel where available).
        batch_size: used when ``train`` is an `InMemoryData`.
        device: defaults to `get_device()`.
        checkpoint: a file written at the end of every epoch (weights, optimizer,
            history and random-number states).
        resume: when ``checkpoint`` exists, continue from it; the result equals an
            uninterrupted run bit for bit on the same device.
        clip_grad_norm: clip the gradient's total norm to this value.
        on_step: called with the number of optimizer steps done so far, before each step
            (counted across epochs and resumes): the hook for schedules such as KL annealing.
        progress: show progress as one line for the run (`vaelib.progress`).

    Returns:
        the history: ``{"epoch": [...], "loss": [...], <other metrics>, "val_loss": [...],
        "seconds": [...]}``, one entry per epoch, train metrics averaged over examples.

    Raises:
        NonFiniteLossError: the loss or the gradient became NaN or infinite. The
            offending update is not applied, so ``model`` keeps the last good weights.
    """
    if not isinstance(epochs, int) or epochs < 0:
        raise ValueError(f"epochs must be a non-negative int, got {epochs!r}")
    device = torch.device(device) if device is not None else get_device()
    model.to(device)
    if isinstance(train, InMemoryData):
        train = train.to(device)
    if isinstance(val, InMemoryData):
        val = val.to(device)
    if optimizer is None:
        optimizer = adam(model.parameters(), lr=1e-3)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    max_norm = float("inf") if clip_grad_norm is None else float(clip_grad_norm)

    history: History = {}
    start = steps_done = 0
    path = Path(checkpoint) if checkpoint is not None else None
    if path is not None and resume and path.exists():
        start, history, steps_done = _load_checkpoint(path, model, optimizer)

    line = ProgressLine(disable=not progress)  # one line for the whole run
    run_t0 = time.perf_counter()
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        model.train()
        batches, total = _iterate(train, batch_size, shuffle=True)
        of = f"/{total}" if total is not None else ""
        sums: dict[str, float] = {}
        count = 0
        for step, batch in enumerate(batches, start=1):
            batch = _to_device(batch, device)
            n = _batch_len(batch)
            if on_step is not None:
                on_step(steps_done)
            optimizer.zero_grad(set_to_none=True)
            metrics = _metrics(loss_fn(model, batch))
            loss = metrics["loss"]
            if loss.requires_grad:
                loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(params, max_norm) if params else loss.new_zeros(())
            # one device-to-host copy per step for the guard and the logs
            values = torch.stack([grad_norm.to(loss.device)] + [v.detach().reshape(()) for v in metrics.values()])
            norm_value, *metric_values = values.tolist()
            loss_value = metric_values[0]  # "loss" is the first key of every metrics dict
            if not (math.isfinite(loss_value) and math.isfinite(norm_value)):
                optimizer.zero_grad(set_to_none=True)
                line.close()
                what = f"the loss became {loss_value}" if not math.isfinite(loss_value) else (
                    f"the gradient norm became {norm_value} (loss {loss_value:.6g})"
                )
                raise NonFiniteLossError(
                    f"Training stopped at epoch {epoch}, step {step}: {what}. The update was not "
                    f"applied: the model keeps the weights from the last good step"
                    + (f" and {path} holds the last completed epoch" if path is not None else "")
                    + ". Common causes: a learning rate that is too high, the log of 0 or a "
                    "variance that reached 0, or inputs outside the range the loss expects.",
                    epoch=epoch, step=step, value=loss_value if not math.isfinite(loss_value) else norm_value,
                    history=history,
                )
            optimizer.step()
            steps_done += 1
            for k, v in zip(metrics, metric_values):
                sums[k] = sums.get(k, 0.0) + v * n
            count += n
            line.show(f"epoch {epoch}/{epochs}: {step}{of} batches, {time.perf_counter() - t0:.0f} s, "
                      f"loss={sums['loss'] / count:.4g}")
        if count == 0:
            line.close()
            raise ValueError("fit got no training batches: the training data is empty")
        row = {k: v / count for k, v in sums.items()}
        if val is not None:
            row.update({f"val_{k}": v for k, v in evaluate(model, loss_fn, val, device=device).items()})
        row["seconds"] = time.perf_counter() - t0
        history.setdefault("epoch", []).append(epoch)
        for k, v in row.items():
            history.setdefault(k, []).append(v)
        text = f"epoch {epoch}/{epochs}: {step}{of} batches, {row['seconds']:.1f} s, " + ", ".join(
            f"{k}={v:.4g}" for k, v in row.items() if k != "seconds")
        if epoch == epochs:
            text += f" ({epochs - start} epochs in {time.perf_counter() - run_t0:.0f} s)"
        line.epoch_done(text)
        if path is not None:
            _save_checkpoint(path, model, optimizer, epoch, history, steps_done)
    line.close()
    return history


def train_mnist_model(
    kind: str = "vae",
    latent_dim: int = 2,
    *,
    epochs: int,
    arch: str = "mlp",
    hidden=None,
    batch_size: int = 128,
    lr: float = 1e-3,
    limit: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint_dir: str | os.PathLike | None = "runs",
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
):
    """Train (or resume, or just load) one of the course's MNIST models; returns ``(model, history)``.

    The model is an `Autoencoder` (``kind="ae"``) or `VAE` (``kind="vae"``) with a Bernoulli
    decoder on dynamically binarised MNIST, trained with Adam by `fit` on -ELBO (VAE) or the
    reconstruction loss (AE). ``hidden`` defaults to (512, 256) for ``mlp`` and (32, 64)
    for ``conv``. With ``checkpoint_dir``, the run is saved under a name made of its
    settings, so a later call with the same settings (in the same chapter, another chapter,
    or the CLI) resumes it or, if ``epochs`` are already done, loads it without training.
    """
    from .bounds import elbo
    from .data import load_mnist
    from .device import seed_everything
    from .models import VAE, Autoencoder

    if kind not in ("ae", "vae"):
        raise ValueError(f"kind must be 'ae' or 'vae', got {kind!r}")
    hidden = tuple(hidden) if hidden is not None else ((512, 256) if arch == "mlp" else (32, 64))
    seed_everything(seed)
    model = (VAE if kind == "vae" else Autoencoder)(latent_dim=latent_dim, arch=arch, hidden=hidden)
    data = load_mnist("train", root=data_root, binarize="dynamic")
    if limit:
        data = data.subset(slice(0, limit))
    if kind == "vae":
        def loss(m, batch):
            return -elbo(m, batch[0]).elbo.mean()
    else:
        def loss(m, batch):
            return m.loss(batch[0]).mean()
    checkpoint = None
    if checkpoint_dir is not None:
        name = (f"{kind}_{arch}_d{latent_dim}_h{'-'.join(map(str, hidden))}_n{limit or len(data)}"
                f"_b{batch_size}_lr{lr:g}_s{seed}.pt")
        checkpoint = Path(checkpoint_dir) / name
    history = fit(model, loss, data, epochs=epochs, batch_size=batch_size, device=device,
                  optimizer=adam(model.parameters(), lr=lr), checkpoint=checkpoint,
                  progress=progress)
    model.eval()
    return model, history


def train_mnist_classifier(
    *,
    epochs: int,
    limit: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    checkpoint_dir: str | os.PathLike | None = "runs",
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
) -> nn.Module:
    """A small MLP digit classifier (784-256-10) on grey-level MNIST, to judge generated images.

    Checkpointed like `train_mnist_model`. Returns the model in eval mode; it maps images
    ``(N, 1, 28, 28)`` in [0, 1] to class logits ``(N, 10)``.
    """
    from .data import load_mnist
    from .device import seed_everything

    seed_everything(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    data = load_mnist("train", root=data_root)
    if limit:
        data = data.subset(slice(0, limit))

    def loss(m, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(m(x), y)

    checkpoint = None
    if checkpoint_dir is not None:
        checkpoint = Path(checkpoint_dir) / f"classifier_mlp256_n{limit or len(data)}_s{seed}.pt"
    fit(model, loss, data, epochs=epochs, device=device, checkpoint=checkpoint, progress=progress)
    return model.eval()
