"""The course's trained models, each made by one recipe and cached by its complete configuration.

`train_mnist_model` trains an autoencoder or a VAE on MNIST or Fashion-MNIST, and
`train_mnist_classifier` the small digit classifier Chapter 7 judges generated images with.
A recipe writes its run to ``<runs>/<kind>-<key>.pt``, where ``key`` is a hash of everything
that decides the result: the model and its architecture, the likelihood, the loss and its
beta, the data (a fingerprint of the very images and labels, their binarisation and limit),
the optimiser, the seed and the vaelib version. The configuration is also stored in the
file and compared when the run is resumed, so a recipe never hands back a model trained with
other settings; a later call with the same settings resumes the run, or loads it when its
epochs are done.

The runs folder is one setting: the ``runs`` argument, else ``$VAELIB_RUNS``, else ``runs/``
in the working folder (``book/runs`` for the chapters). On Colab, point ``VAELIB_RUNS`` at a
folder of Google Drive to keep runs across sessions.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import torch
from torch import nn

from .data import InMemoryData, load_fashion_mnist, load_mnist
from .device import seed_everything
from .loop import History, LinearAnnealing, adam, fit
from .models import VAE, Autoencoder
from .objectives import vae_loss
from .version import __version__

RUNS_ENV = "VAELIB_RUNS"
DATASETS = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}


def runs_dir(runs: str | os.PathLike | None = None) -> Path:
    """The folder for cached runs: ``runs``, else ``$VAELIB_RUNS``, else ``runs`` in the working folder."""
    return Path(runs if runs is not None else (os.environ.get(RUNS_ENV) or "runs")).expanduser()


def run_path(config: dict, runs: str | os.PathLike | None = None) -> Path:
    """Where the run with this configuration lives: ``<runs>/<config["model"]["kind"]>-<hash>.pt``."""
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    return runs_dir(runs) / f"{config['model']['kind']}-{key}.pt"


def _training_data(dataset: str, binarize: str | None, limit: int | None, root,
                   dequantize: bool = False) -> InMemoryData:
    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {sorted(DATASETS)}, got {dataset!r}")
    if limit is not None and (not isinstance(limit, int) or limit < 1):
        raise ValueError(f"limit must be a positive number of images or None (all of them), got {limit!r}")
    data = DATASETS[dataset]("train", root=root, binarize=binarize, dequantize=dequantize)
    return data.subset(slice(0, limit)) if limit is not None else data


def _validation_data(dataset: str, binarize: str | None, n: int | None, root) -> InMemoryData | None:
    if n is None:
        return None
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"val_limit must be a positive number of test images or None, got {n!r}")
    test = DATASETS[dataset]("test", root=root, binarize="static" if binarize else None)
    return test.subset(slice(0, n))


def _data_config(data: InMemoryData, dataset: str, binarize: str | None, limit: int | None) -> dict:
    config = {"dataset": dataset, "split": "train", "binarize": binarize, "limit": limit, "n": len(data),
              "fingerprint": data.fingerprint()}
    if data.dequantize:  # only when set, so the other runs keep their names
        config["dequantize"] = True
    return config


def train_mnist_model(
    kind: str = "vae",
    latent_dim: int = 2,
    *,
    epochs: int,
    arch: str = "mlp",
    hidden=None,
    likelihood: str = "bernoulli",
    beta: float = 1.0,
    free_bits: float = 0.0,
    kl_warmup_steps: int = 0,
    analytic_kl: bool = True,
    dataset: str = "mnist",
    binarize: str | None = "dynamic",
    dequantize: bool = False,
    limit: int | None = None,
    val_limit: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    lr_decay: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    runs: str | os.PathLike | None = None,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
    max_minutes: float | None = None,
) -> tuple[nn.Module, History]:
    """Train (or resume, or just load) one of the course's image models; returns ``(model, history)``.

    The model is an `Autoencoder` (``kind="ae"``, trained on its reconstruction loss) or a `VAE`
    (``kind="vae"``, trained on `vae_loss` with ``beta`` and ``free_bits``; with
    ``kl_warmup_steps``, beta rises linearly from 0 over that many steps; ``analytic_kl=False``
    estimates the KL by Monte Carlo), with a
    ``likelihood`` decoder, on the first ``limit`` training images of ``dataset`` (``"mnist"``
    or ``"fashion_mnist"``) binarised as ``binarize`` (``"dynamic"``, ``"static"`` or None for
    grey levels; with ``dequantize``, grey levels spread over their 8-bit bins afresh every
    epoch, `vaelib.dequantize`), by Adam with learning rate ``lr`` (with ``lr_decay``, falling linearly from ``lr``
    to 0 over the ``epochs`` asked for: a short run ends as if annealed). ``hidden`` defaults to (512, 256) for
    ``mlp`` and (32, 64) for ``conv``. With ``val_limit``, the loss on the first ``val_limit``
    test images (statically binarised where training binarises) is in the history as
    ``val_loss`` after every epoch.

    The run is kept in the runs folder (``runs``; see the module docstring) under a name made
    from a hash of its whole configuration: the same call in another cell, chapter or the
    CLI resumes it or loads it; any other setting trains anew. (For a run that is not
    cached, build the model and call `fit`.) Training stops at the wall-clock cap
    (``max_minutes``, default the run budget's; see `fit`); calling again continues.
    The model is returned in eval mode on ``device``.
    """
    if kind not in ("ae", "vae"):
        raise ValueError(f"kind must be 'ae' or 'vae', got {kind!r}")
    if kind == "ae" and (beta != 1.0 or free_bits or kl_warmup_steps or not analytic_kl):
        raise ValueError("beta, free_bits and kl_warmup_steps shape a VAE's loss; the autoencoder has no KL term")
    hidden = tuple(hidden) if hidden is not None else ((512, 256) if arch == "mlp" else (32, 64))
    seed_everything(seed)
    model = (VAE if kind == "vae" else Autoencoder)(latent_dim=latent_dim, arch=arch, hidden=hidden,
                                                    likelihood=likelihood)
    data = _training_data(dataset, binarize, limit, data_root, dequantize)
    val = _validation_data(dataset, binarize, val_limit, data_root)
    annealing = LinearAnnealing(kl_warmup_steps, end=beta) if kl_warmup_steps else None
    optimizer = adam(model.parameters(), lr=lr)
    decay = LinearAnnealing(max(1, epochs * data.num_batches(batch_size)), start=lr, end=0.0) if lr_decay else None

    def on_step(step: int) -> None:  # both schedules count optimizer steps, so a resumed run resumes them
        if annealing is not None:
            annealing(step)
        if decay is not None:
            for group in optimizer.param_groups:
                group["lr"] = decay.at(step)
    if kind == "ae":
        def loss(m, batch):
            return m.reconstruction_loss(batch[0]).mean()
    else:
        def loss(m, batch):
            return vae_loss(m, batch[0], beta=annealing.value if annealing else beta, free_bits=free_bits,
                            analytic_kl=analytic_kl)
    config = {
        "model": {"kind": kind, **model.config},
        "loss": {"beta": float(beta), "free_bits": float(free_bits), "kl_warmup_steps": int(kl_warmup_steps),
                 "analytic_kl": bool(analytic_kl)},
        "data": _data_config(data, dataset, binarize, limit),
        "val": None if val is None else {"n": len(val), "fingerprint": val.fingerprint()},
        "optimizer": {"name": "adam", "lr": float(lr), "batch_size": int(batch_size),
                      "lr_decay": f"linear to 0 over {epochs} epochs" if lr_decay else None},
        "seed": seed,
        "vaelib": __version__,
    }
    history = fit(model, loss, data, epochs=epochs, val=val, batch_size=batch_size, device=device,
                  optimizer=optimizer, on_step=on_step,
                  checkpoint=run_path(config, runs), config=config, progress=progress, max_minutes=max_minutes)
    return model.eval(), history


def train_mnist_classifier(
    *,
    epochs: int,
    limit: int | None = None,
    seed: int = 0,
    device: torch.device | str | None = None,
    runs: str | os.PathLike | None = None,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
) -> nn.Module:
    """A small MLP digit classifier (784-256-10) on grey-level MNIST, to judge generated images.

    Cached like `train_mnist_model`. Returns the model in eval mode; it maps images
    ``(N, 1, 28, 28)`` in [0, 1] to class logits ``(N, 10)``.
    """
    seed_everything(seed)
    model = nn.Sequential(nn.Flatten(), nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 10))
    data = _training_data("mnist", None, limit, data_root)

    def loss(m, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(m(x), y)

    config = {
        "model": {"kind": "classifier", "layers": [784, 256, 10]},
        "loss": {"name": "cross_entropy"},
        "data": _data_config(data, "mnist", None, limit),
        "optimizer": {"name": "adam", "lr": 1e-3, "batch_size": 128},
        "seed": seed,
        "vaelib": __version__,
    }
    fit(model, loss, data, epochs=epochs, device=device, checkpoint=run_path(config, runs),
        config=config, progress=progress)
    return model.eval()
