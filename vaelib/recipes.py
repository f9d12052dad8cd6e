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
import math
import os
from pathlib import Path

import torch
from torch import nn

from .conditional import M2, ConditionalVAE, conditional_elbo, labelled_subset, m2_loss, small_init_
from .data import InMemoryData, load_fashion_mnist, load_mnist
from .device import get_device, seed_everything
from .loop import History, LinearAnnealing, adam, fit
from .models import VAE, Autoencoder, make_encoder
from .objectives import check_kl_weight, iwae_loss, vae_loss
from .version import __version__

RUNS_ENV = "VAELIB_RUNS"
DATASETS = {"mnist": load_mnist, "fashion_mnist": load_fashion_mnist}


def runs_dir(runs: str | os.PathLike | None = None) -> Path:
    """The folder for cached runs: ``runs``, else ``$VAELIB_RUNS``, else ``runs`` in the working folder.

    Raises ``ValueError`` naming the setting when it is, or lies under, a file."""
    folder = Path(runs if runs is not None else (os.environ.get(RUNS_ENV) or "runs")).expanduser()
    if not _nearest_existing(folder).is_dir():
        raise ValueError(f"{_runs_setting(runs)}: {_nearest_existing(folder)} is a file, not a folder; "
                         f"point {RUNS_ENV} (or runs=) at a folder for the cached runs")
    return folder


def _nearest_existing(folder: Path) -> Path:
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _runs_setting(runs) -> str:
    if runs is not None:
        return f"runs={runs}"
    if os.environ.get(RUNS_ENV):
        return f"{RUNS_ENV}={os.environ[RUNS_ENV]}"
    return f"the runs folder runs/ ({RUNS_ENV} is not set)"


def run_path(config: dict, runs: str | os.PathLike | None = None) -> Path:
    """Where the run with this configuration lives: ``<runs>/<config["model"]["kind"]>-<hash>.pt``.

    A run that is not there yet will be written there: a folder without write permission is
    refused, naming the setting (a run already there can still be read)."""
    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    path = runs_dir(runs) / f"{config['model']['kind']}-{key}.pt"
    folder = _nearest_existing(path.parent)
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"{_runs_setting(runs)}: no permission to write in {folder}, where the run would be "
                         f"kept; point {RUNS_ENV} (or runs=) at a folder you can write")
    return path


def burda_schedule(stages: int = 8) -> list[tuple[int, float]]:
    """The learning-rate schedule of Burda et al. (2016): 3^i epochs at 1e-3 * 10^(-i/7) for
    i = 0 .. ``stages`` - 1; the paper's 8 stages are 3 280 epochs in all. A list of ``(epochs, lr)``
    for `train_mnist_model`'s ``lr_schedule``."""
    if isinstance(stages, bool) or not isinstance(stages, int) or not 1 <= stages <= 8:
        raise ValueError(f"stages must be a whole number from 1 to 8 (the paper's schedule has 8), got {stages!r}")
    return [(3 ** i, 1e-3 * 10 ** (-i / 7)) for i in range(stages)]


def stage_lr(stages, epoch: int) -> float:
    """The learning rate of 0-based ``epoch`` under a piecewise-constant schedule of ``(epochs, lr)``
    stages (the last stage's rate after its end)."""
    end = 0
    for length, rate in stages:
        end += length
        if epoch < end:
            return rate
    return stages[-1][1]


def _check_schedule(schedule, epochs: int, lr_decay: bool) -> list[tuple[int, float]]:
    if schedule is None:
        return []
    if lr_decay:
        raise ValueError("pass lr_decay or lr_schedule, not both")
    try:
        stages = [(int(e), float(r)) for e, r in schedule]
    except (TypeError, ValueError):
        raise ValueError(f"lr_schedule must be a list of (epochs, lr) pairs, got {schedule!r}") from None
    if not stages or any(e < 1 or e != float(e0) or not (math.isfinite(r) and r > 0)
                         for (e, r), (e0, _) in zip(stages, schedule)):
        raise ValueError(f"lr_schedule needs at least one stage, each a whole number of epochs >= 1 and a "
                         f"positive learning rate, got {schedule!r}")
    total = sum(e for e, _ in stages)
    if isinstance(epochs, int) and epochs > total:
        raise ValueError(f"epochs={epochs} asks for more than the {total} epochs lr_schedule covers")
    return stages


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
    activation: str = "relu",
    likelihood: str = "bernoulli",
    beta: float = 1.0,
    free_bits: float = 0.0,
    kl_warmup_steps: int = 0,
    analytic_kl: bool = True,
    iwae_k: int = 1,
    dataset: str = "mnist",
    binarize: str | None = "dynamic",
    dequantize: bool = False,
    limit: int | None = None,
    val_limit: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    lr_decay: bool = False,
    lr_schedule=None,
    adam_eps: float = 1e-8,
    seed: int = 0,
    device: torch.device | str | None = None,
    runs: str | os.PathLike | None = None,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
    max_minutes: float | None = None,
    precision: str | None = None,
) -> tuple[nn.Module, History]:
    """Train (or resume, or just load) one of the course's image models; returns ``(model, history)``.

    The model is an `Autoencoder` (``kind="ae"``, trained on its reconstruction loss) or a `VAE`
    (``kind="vae"``, trained on `vae_loss` with ``beta`` and ``free_bits``; with
    ``kl_warmup_steps``, beta rises linearly from 0 over that many steps; ``analytic_kl=False``
    estimates the KL by Monte Carlo; ``iwae_k`` > 1 trains on the importance-weighted bound
    L_k instead, `iwae_loss` with k = ``iwae_k``, which needs beta = 1, no free bits, no warm-up),
    with a ``likelihood`` decoder, on the first ``limit`` training images of ``dataset`` (``"mnist"``
    or ``"fashion_mnist"``) binarised as ``binarize`` (``"dynamic"``, ``"static"`` or None for
    grey levels; with ``dequantize``, grey levels spread over their 8-bit bins afresh every
    epoch, `vaelib.dequantize`), by Adam with learning rate ``lr`` (with ``lr_decay``, falling linearly from ``lr``
    to 0 over the ``epochs`` asked for: a short run ends as if annealed; with ``lr_schedule``, a list of
    ``(epochs, lr)`` stages, piecewise constant, `burda_schedule` for one, in place of ``lr``) and
    epsilon ``adam_eps``. ``hidden`` defaults to (512, 256) for ``mlp`` and (32, 64) for ``conv``, with
    ``activation`` between layers (``"relu"``, ``"tanh"`` or ``"softplus"``); ``precision`` is `fit`'s.
    With ``val_limit``, the loss on the first ``val_limit``
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
    check_kl_weight(beta, "beta")  # before the config: a NaN there would be blamed on resuming
    check_kl_weight(free_bits, "free_bits")
    if kind == "ae" and (beta != 1.0 or free_bits or kl_warmup_steps or not analytic_kl):
        raise ValueError("beta, free_bits and kl_warmup_steps shape a VAE's loss; the autoencoder has no KL term")
    if isinstance(iwae_k, bool) or not isinstance(iwae_k, int) or iwae_k < 1:
        raise ValueError(f"iwae_k must be a whole number >= 1 (1: the ELBO), got {iwae_k!r}")
    if iwae_k > 1 and (kind != "vae" or beta != 1.0 or free_bits or kl_warmup_steps or not analytic_kl):
        raise ValueError(f"iwae_k = {iwae_k} trains a VAE on the bound L_k, which has no KL term to weigh, "
                         "clamp or estimate: it needs kind='vae', beta=1, free_bits=0, kl_warmup_steps=0 and "
                         "the default analytic_kl")
    hidden = tuple(hidden) if hidden is not None else ((512, 256) if arch == "mlp" else (32, 64))
    stages = _check_schedule(lr_schedule, epochs, lr_decay)
    if not (isinstance(adam_eps, (int, float)) and math.isfinite(adam_eps) and adam_eps > 0):
        raise ValueError(f"adam_eps must be a positive number, got {adam_eps!r}")
    if isinstance(kl_warmup_steps, bool) or not isinstance(kl_warmup_steps, int) or kl_warmup_steps < 0:
        raise ValueError(f"kl_warmup_steps must be a whole number of steps >= 0 (0: no warm-up), got {kl_warmup_steps!r}")
    seed_everything(seed)
    model = (VAE if kind == "vae" else Autoencoder)(latent_dim=latent_dim, arch=arch, hidden=hidden,
                                                    likelihood=likelihood, activation=activation)
    data = _training_data(dataset, binarize, limit, data_root, dequantize)
    val = _validation_data(dataset, binarize, val_limit, data_root)
    annealing = LinearAnnealing(kl_warmup_steps, end=beta) if kl_warmup_steps else None
    optimizer = adam(model.parameters(), lr=stages[0][1] if stages else lr, eps=adam_eps)
    per_epoch = data.num_batches(batch_size)
    decay = LinearAnnealing(max(1, epochs * per_epoch), start=lr, end=0.0) if lr_decay else None

    def on_step(step: int) -> None:  # the schedules count optimizer steps, so a resumed run resumes them
        if annealing is not None:
            annealing(step)
        if decay is not None or stages:
            rate = decay.at(step) if decay is not None else stage_lr(stages, step // per_epoch)
            for group in optimizer.param_groups:
                group["lr"] = rate
    if kind == "ae":
        def loss(m, batch):
            return m.reconstruction_loss(batch[0]).mean()
    elif iwae_k > 1:
        def loss(m, batch):
            return iwae_loss(m, batch[0], iwae_k)
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
    if iwae_k > 1:  # only then, so the runs trained on the ELBO keep their names
        config["loss"]["iwae_k"] = int(iwae_k)
    if stages:  # likewise: only runs with a schedule or another epsilon record them
        config["optimizer"].update(lr=None, lr_schedule=[[e, r] for e, r in stages])
    if adam_eps != 1e-8:
        config["optimizer"]["eps"] = float(adam_eps)
    history = fit(model, loss, data, epochs=epochs, val=val, batch_size=batch_size, device=device,
                  optimizer=optimizer, on_step=on_step, checkpoint=run_path(config, runs), config=config,
                  progress=progress, max_minutes=max_minutes, precision=precision)
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


# --- Chapter 9: models with a label (vaelib.conditional) ---------------------------------------


def train_conditional_vae(
    latent_dim: int = 16,
    *,
    epochs: int,
    hidden=(256,),
    limit: int | None = None,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
    runs: str | os.PathLike | None = None,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
    max_minutes: float | None = None,
) -> tuple[nn.Module, History]:
    """Train (or resume, or load) a `vaelib.ConditionalVAE` on dynamically binarised MNIST with its labels.

    The loss is the negative conditional ELBO, -mean_n [E_q log p(x | y, z) - KL(q(z | x, y) || p(z))]
    (`vaelib.conditional_elbo`), on the first ``limit`` training images, by Adam. Cached like
    `train_mnist_model` (under ``cvae-<hash>.pt``); returns ``(model, history)``, the model in
    eval mode on ``device``.
    """
    seed_everything(seed)
    model = ConditionalVAE(latent_dim=latent_dim, hidden=tuple(hidden))
    data = _training_data("mnist", "dynamic", limit, data_root)

    def loss(m, batch):
        x, y = batch
        return -conditional_elbo(m, x, y).elbo.mean()

    config = {
        "model": {"kind": "cvae", **model.config},
        "loss": {"name": "negative conditional ELBO", "samples": 1, "kl": "closed form"},
        "data": _data_config(data, "mnist", "dynamic", limit),
        "optimizer": {"name": "adam", "lr": float(lr), "batch_size": int(batch_size)},
        "seed": seed,
        "vaelib": __version__,
    }
    history = fit(model, loss, data, epochs=epochs, batch_size=batch_size, device=device,
                  optimizer=adam(model.parameters(), lr=lr), checkpoint=run_path(config, runs), config=config,
                  progress=progress, max_minutes=max_minutes)
    return model.eval(), history


class _LabelledBatches:
    """``steps`` batches per pass, each all of a small labelled set (or a random ``batch_size`` of it),
    dynamically binarised afresh: an epoch of as many steps as another run's, on 100 images.
    Draws from PyTorch's global generator, which `fit` checkpoints, so a resumed run is exact."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, steps: int, batch_size: int,
                 binarize: str | None = "dynamic") -> None:
        self.x, self.y, self.steps, self.batch_size = x, y, int(steps), int(batch_size)
        self.binarize = binarize

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        for _ in range(self.steps):
            yield _labelled_batch(self.x, self.y, self.batch_size, self.binarize)


def _labelled_batch(x: torch.Tensor, y: torch.Tensor, batch_size: int,
                    binarize: str | None = "dynamic") -> tuple[torch.Tensor, torch.Tensor]:
    """All of a small labelled set (or a random ``batch_size`` of it), dynamically binarised afresh
    (or its grey levels, ``binarize=None``), from PyTorch's global generator (which `fit` checkpoints)."""
    if batch_size < len(x):
        pick = torch.randperm(len(x), device=x.device)[:batch_size]
        x, y = x[pick], y[pick]
    return (torch.rand_like(x).lt_(x).to(x.dtype) if binarize else x), y


def _labelled_batch_size(labelled_batch_size, n_labels: int) -> int:
    if isinstance(labelled_batch_size, bool) or not isinstance(labelled_batch_size, int) or labelled_batch_size < 1:
        raise ValueError(f"labelled_batch_size must be a whole number >= 1, got {labelled_batch_size!r}")
    return min(labelled_batch_size, n_labels)


def _semi_supervised_split(n_labels: int, label_seed: int, limit: int | None, data_root, device,
                           binarize: str | None = "dynamic"):
    """The labelled images ``(x, y)`` on ``device``, the unlabelled rest (labels removed), and the config part."""
    if binarize not in ("dynamic", None):
        raise ValueError(f"binarize must be 'dynamic' or None (grey levels), got {binarize!r}")
    data = _training_data("mnist", None, limit, data_root)
    index = labelled_subset(data.y, n_labels, seed=label_seed)
    rest = torch.ones(len(data), dtype=torch.bool)
    rest[index] = False
    unlabelled = InMemoryData(data.x[rest], None, binarize=binarize, name="MNIST-train-unlabelled")
    config = {"dataset": "mnist", "split": "train", "binarize": binarize, "limit": limit, "n": len(data),
              "fingerprint": data.fingerprint(), "n_labels": int(n_labels),
              "labels": f"labelled_subset(y, {n_labels}, seed={label_seed}): {n_labels // 10} per class",
              "labelled_indices": index.tolist(), "n_unlabelled": len(unlabelled)}
    return data.x[index].to(device), data.y[index].to(device), unlabelled, config


def _initialised(model: nn.Module, init: str) -> nn.Module:
    """``model`` as PyTorch initialised it (``"default"``), or with `small_init_` (``"small"``)."""
    if init not in ("default", "small"):
        raise ValueError(f"init must be 'default' or 'small', got {init!r}")
    return small_init_(model) if init == "small" else model


M2_WEIGHTINGS = ("paper", "batch")


def m2_weights(weighting: str, alpha: float, n_labelled: int, n_unlabelled: int) -> tuple[float, float]:
    """The weights ``(labelled_weight, classification_weight)`` that `vaelib.m2_loss` puts on the means
    over a labelled batch, beside weight 1 on the mean of -U over an unlabelled batch.

    - ``"paper"``: Kingma et al.'s objective over the data set, sum_l -L + sum_u -U + alpha * E_l[-log q(y|x)],
      divided by the N_u unlabelled images: ``(N_l / N_u, alpha / N_u)``. Its expected gradient per step is
      the paper's, whichever images a step draws.
    - ``"batch"``: the course's earlier weighting, each step's labelled batch as heavy as its unlabelled
      batch, with the paper's ratio alpha / N_l of cross-entropy to bound per labelled image: ``(1, alpha / N_l)``.
    """
    if weighting not in M2_WEIGHTINGS:
        raise ValueError(f"weighting must be one of {M2_WEIGHTINGS}, got {weighting!r}")
    if not (isinstance(alpha, (int, float)) and math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if weighting == "paper":
        return n_labelled / n_unlabelled, alpha / n_unlabelled
    return 1.0, alpha / n_labelled


def train_m2(
    *,
    epochs: int,
    n_labels: int = 100,
    weighting: str = "paper",
    alpha: float | None = None,
    latent_dim: int = 16,
    hidden=(256,),
    activation: str = "relu",
    init: str = "default",
    binarize: str | None = "dynamic",
    label_seed: int = 0,
    limit: int | None = None,
    batch_size: int = 128,
    labelled_batch_size: int = 100,
    labelled_every: int = 1,
    lr: float = 1e-3,
    lr_decay: bool = False,
    seed: int = 0,
    device: torch.device | str | None = None,
    runs: str | os.PathLike | None = None,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
    max_minutes: float | None = None,
) -> tuple[nn.Module, History, torch.Tensor]:
    """Train (or resume, or load) the M2 model on MNIST with ``n_labels`` labels and the rest unlabelled.

    The labelled images are ``vaelib.labelled_subset(y, n_labels, seed=label_seed)`` of the first
    ``limit`` training images (``n_labels / 10`` of each digit); the others lose their labels.
    Each step takes ``batch_size`` unlabelled images and ``labelled_batch_size`` labelled ones (all
    of them when there are no more), both dynamically binarised, and minimises `vaelib.m2_loss`
    with the weights of `m2_weights`: by default (``weighting="paper"``) Kingma et al.'s objective
    J^alpha over the whole data set, scaled per unlabelled image, with their alpha = 0.1 N
    (``alpha``; N training images in all); ``weighting="batch"`` is the course's earlier, much
    heavier weighting of the labelled images. The networks are MLPs with ``hidden`` units and
    ``activation`` (Kingma et al. used softplus), initialised as PyTorch does or, with ``init="small"``,
    as Kingma et al. and Pyro's example do (`vaelib.conditional.small_init_`). Images are dynamically
    binarised, or with ``binarize=None`` kept as grey levels (Bernoulli targets, as Pyro's example
    does). With ``labelled_every`` = K > 1 the labelled terms enter every K-th step only, K times as
    heavy (the same sum over any K steps). An epoch is one pass over the unlabelled images;
    Adam with learning rate ``lr`` (with ``lr_decay``, falling linearly to 0 over the ``epochs``
    asked for). The labelled draws come from PyTorch's global generator, which `fit` checkpoints,
    so a resumed run equals an uninterrupted one. Cached like `train_mnist_model` (``m2-<hash>.pt``,
    the configuration holds the labelled indices).

    Returns ``(model, history, labelled_indices)``, the model in eval mode on ``device``.
    """
    device = torch.device(device) if device is not None else get_device()
    seed_everything(seed)
    model = _initialised(M2(latent_dim=latent_dim, hidden=tuple(hidden), activation=activation), init)
    x_l, y_l, unlabelled, data_config = _semi_supervised_split(n_labels, label_seed, limit, data_root, device,
                                                               binarize)
    alpha = 0.1 * data_config["n"] if alpha is None else alpha
    labelled_weight, class_weight = m2_weights(weighting, alpha, n_labels, len(unlabelled))
    take = _labelled_batch_size(labelled_batch_size, n_labels)
    if isinstance(labelled_every, bool) or not isinstance(labelled_every, int) or labelled_every < 1:
        raise ValueError(f"labelled_every must be a whole number of steps >= 1, got {labelled_every!r}")
    optimizer = adam(model.parameters(), lr=lr)
    decay = (LinearAnnealing(max(1, epochs * unlabelled.num_batches(batch_size)), start=lr, end=0.0)
             if lr_decay else None)
    step_now = [0]

    def on_step(step: int) -> None:
        step_now[0] = step
        if decay is not None:
            for group in optimizer.param_groups:
                group["lr"] = decay.at(step)

    def loss(m, batch):
        x_lab, y_lab = _labelled_batch(x_l, y_l, take, binarize)  # binarised afresh, as the unlabelled batch
        every = labelled_every if step_now[0] % labelled_every == 0 else 0  # the same sum over any K steps
        return m2_loss(m, x_lab, y_lab, batch[0], alpha=every * class_weight, labelled_weight=every * labelled_weight)

    config = {
        "model": {"kind": "m2", **model.config, "classifier": [784, *hidden, 10],
                  **({"init": init} if init != "default" else {})},
        "loss": {"name": "m2_loss", "weighting": weighting, "alpha": float(alpha),
                 "labelled_weight": labelled_weight, "classification_weight": class_weight, "samples": 1},
        "data": data_config,
        "optimizer": {"name": "adam", "lr": float(lr), "batch_size": int(batch_size),
                      "labelled_batch_size": int(take), "labelled_every": labelled_every,
                      "lr_decay": f"linear to 0 over {epochs} epochs" if lr_decay else None},
        "seed": seed,
        "vaelib": __version__,
    }
    history = fit(model, loss, unlabelled, epochs=epochs, batch_size=batch_size, device=device,
                  optimizer=optimizer, on_step=on_step, checkpoint=run_path(config, runs), config=config,
                  progress=progress, max_minutes=max_minutes)
    return model.eval(), history, torch.tensor(data_config["labelled_indices"])


def train_label_classifier(
    *,
    epochs: int,
    n_labels: int = 100,
    hidden=(256,),
    activation: str = "relu",
    init: str = "default",
    binarize: str | None = "dynamic",
    label_seed: int = 0,
    limit: int | None = None,
    batch_size: int = 128,
    labelled_batch_size: int = 100,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device | str | None = None,
    runs: str | os.PathLike | None = None,
    progress: bool = True,
    data_root: str | os.PathLike | None = None,
    max_minutes: float | None = None,
) -> tuple[nn.Module, History]:
    """The baseline of `train_m2`: M2's classifier q(y | x) (an MLP ``784 -> hidden -> 10`` with ``activation``) trained
    by cross-entropy on the same ``n_labels`` labelled images alone, with the same optimizer steps.

    An epoch has as many steps as an epoch of `train_m2` with the same arguments (one per
    ``batch_size`` unlabelled images), each on ``labelled_batch_size`` labelled images (all of them
    when there are no more), dynamically binarised afresh, so the two runs take the same number of
    steps for the same ``epochs``. Cached like `train_mnist_model` (``label-classifier-<hash>.pt``).
    Returns ``(classifier, history)``: logits ``(N, 10)`` of images ``(N, 1, 28, 28)``, in eval mode.
    """
    device = torch.device(device) if device is not None else get_device()
    seed_everything(seed)
    model = _initialised(make_encoder("mlp", 10, tuple(hidden), (1, 28, 28), activation), init)  # as M2's classifier
    x_l, y_l, unlabelled, data_config = _semi_supervised_split(n_labels, label_seed, limit, data_root, device,
                                                               binarize)
    steps = unlabelled.num_batches(batch_size)
    labelled = _LabelledBatches(x_l, y_l, steps, _labelled_batch_size(labelled_batch_size, n_labels), binarize)

    def loss(m, batch):
        x, y = batch
        return torch.nn.functional.cross_entropy(m(x), y)

    config = {
        "model": {"kind": "label-classifier", "layers": [784, *hidden, 10],
                  **({"activation": activation} if activation != "relu" else {}),
                  **({"init": init} if init != "default" else {})},
        "loss": {"name": "cross_entropy"},
        "data": {**data_config, "steps_per_epoch": steps},
        "optimizer": {"name": "adam", "lr": float(lr), "labelled_batch_size": labelled.batch_size},
        "seed": seed,
        "vaelib": __version__,
    }
    history = fit(model, loss, labelled, epochs=epochs, device=device, optimizer=adam(model.parameters(), lr=lr),
                  checkpoint=run_path(config, runs), config=config, progress=progress, max_minutes=max_minutes)
    return model.eval(), history
