"""Command line: train and evaluate the course's models on MNIST.

    python -m vaelib train --model vae --arch mlp --latent-dim 20 --out runs/vae.pt
    python -m vaelib evaluate runs/vae.pt --k 1000

Both pick the device with `get_device`, read the data folder from ``VAELIB_DATA`` (or
``--data``) and take their default sizes from the run budget (`run_budget`).
`train` logs its epochs and then a timed test evaluation (the ELBO; ``--no-eval`` skips it) on
stderr, and prints one JSON line; `evaluate` prints one JSON line with the test ELBO and the
importance-sampled NLL in nats.
"""

from __future__ import annotations

import argparse
import errno
import json
import math
import os
import stat
import sys
import time
import traceback
from pathlib import Path

import torch

from .checkpoint import CheckpointInUseError, atomic_save
from .data import DatasetNotFoundError, load_mnist
from .device import get_device, run_budget, seed_everything
from .loop import NonFiniteLossError, evaluate
from .models import ARCHS, VAE, Autoencoder, load_model, save_model
from .objectives import evaluate_bounds
from .recipes import train_mnist_model
from .startup import release

# What `train` builds at most, checked before anything is allocated: a model of 200 million weights
# takes 0.8 GB as float32, about four times that to train (gradients and Adam's two moments).
MAX_LATENT_DIM, MAX_HIDDEN, MAX_WEIGHTS = 4096, 100_000, 200_000_000


def _binarize(model) -> str | None:
    # Bernoulli outputs model binary images; grey-level likelihoods see the grey levels
    return "dynamic" if model.likelihood == "bernoulli" else None


def _check_numbers(args) -> None:
    """Refuse impossible settings before any data is read or any epoch is trained."""
    for name in ("epochs", "batch_size", "limit", "latent_dim", "k"):
        value = getattr(args, name, None)
        if value is not None and value < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be a whole number >= 1, got {value}")
    lr = getattr(args, "lr", None)
    if lr is not None and not (math.isfinite(lr) and lr > 0):  # inf would pass the first step and fail the next
        raise ValueError(f"--lr must be a finite number > 0, got {lr}")
    max_minutes = getattr(args, "max_minutes", None)
    if max_minutes is not None and not max_minutes > 0:  # inf: no cap
        raise ValueError(f"--max-minutes must be a number > 0, got {max_minutes}")


def _check_sizes(args) -> None:
    """Refuse a model too large to build, before anything is allocated: it is counted on the meta device."""
    if args.latent_dim > MAX_LATENT_DIM:
        raise ValueError(f"--latent-dim must be at most {MAX_LATENT_DIM}, got {args.latent_dim}")
    hidden = args.hidden or ([512, 256] if args.arch == "mlp" else [32, 64])
    bad = [h for h in hidden if not 1 <= h <= MAX_HIDDEN]
    if bad:
        raise ValueError(f"--hidden sizes must be whole numbers from 1 to {MAX_HIDDEN}, got {bad[0]}")
    with torch.device("meta"):  # shapes only, no memory
        model = (VAE if args.model == "vae" else Autoencoder)(args.latent_dim, args.arch, hidden)
    n = sum(p.numel() for p in model.parameters())
    if n > MAX_WEIGHTS:
        raise ValueError(f"--latent-dim {args.latent_dim} --hidden {' '.join(map(str, hidden))} ({args.arch}) makes a "
                         f"model of {n:,} weights, {4 * n / 1e9:.1f} GB as float32 and about four times that to "
                         f"train; the command trains at most {MAX_WEIGHTS:,} weights: choose smaller sizes")


def _check_out(out: str) -> None:
    """Refuse an --out that cannot be written, before training rather than after the first epoch."""
    path = Path(out)
    if out.endswith(("/", os.sep)) or path.is_dir():
        raise ValueError(f"--out must name a file to save the model in, such as {path / 'vae.pt'}; {out} is a folder")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent  # the nearest folder that exists: the rest will be created in it
    if not folder.is_dir():
        raise ValueError(f"--out {out} cannot be written: {folder} is a file, not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} cannot be written: no permission to write in {folder}")
    runs = _runs_for(path)
    if runs.exists() and not runs.is_dir():
        raise ValueError(f"--out {out} cannot be used: {runs}, where the run is kept between calls, is a file; "
                         "move it away or choose another --out")
    if runs.is_dir() and not os.access(runs, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} cannot be used: no permission to write in {runs}, where the run is kept "
                         "between calls")


def _check_checkpoint(path: str) -> None:
    """Say what ``path`` is when it is not a file to read a model from, without opening it (a named
    pipe would wait for a writer). A path that does not exist is `load_model`'s to report."""
    try:
        mode = os.stat(path).st_mode
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise ValueError(f"{path} is a symlink loop, not a model checkpoint") from None
        if os.path.islink(path):
            raise ValueError(f"{path} is a symlink to {os.readlink(path)}, which does not exist") from None
        return
    if stat.S_ISDIR(mode):
        raise ValueError(f"{path} is a folder, not a model checkpoint: give a file, the model saved by "
                         "train --out or a run such as CKPT.runs/vae-….pt")
    if not stat.S_ISREG(mode):
        kind = "a named pipe" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise ValueError(f"{path} is not a regular file ({kind}), not a model checkpoint")


def train(args) -> dict:
    _check_numbers(args)
    _check_sizes(args)
    _check_out(args.out)
    device = get_device()
    budget = run_budget(device)
    epochs = args.epochs if args.epochs is not None else budget.pick(smoke=1, default=20, full=100)
    limit = args.limit if args.limit is not None else budget.pick(smoke=2000, default=None, full=None)
    out = Path(args.out)
    runs = _runs_for(out)  # an interrupted or capped run resumes from here
    print(f"training {args.model} ({args.arch}, latent {args.latent_dim}) for {epochs} epochs on "
          f"{device}, budget {budget}", file=sys.stderr)
    start = time.perf_counter()
    model, history = train_mnist_model(
        args.model, args.latent_dim, epochs=epochs, arch=args.arch, hidden=args.hidden,
        batch_size=args.batch_size, lr=args.lr, lr_decay=args.lr_decay, limit=limit, seed=args.seed, device=device,
        runs=runs, data_root=args.data, max_minutes=args.max_minutes)
    seconds = time.perf_counter() - start
    save_model(model.cpu(), out)
    done = history["epoch"][-1] if history else 0
    result = {"saved": str(out), "model": args.model, "arch": args.arch, "latent_dim": args.latent_dim,
              "epochs": done, "epochs_asked": epochs, "complete": done >= epochs,
              "train_loss": history["loss"][-1] if history else None,
              "seconds": round(seconds, 1), "epoch_seconds": round(sum(history.get("seconds", [])), 2)}
    if not args.no_eval:
        result.update(_closing_evaluation(model.to(device), args, budget))
    return result


def _closing_evaluation(model, args, budget) -> dict:
    """The trained model on the test set (ELBO with one sample and analytic KL, or the autoencoder's
    reconstruction loss), timed and printed on its own line; `evaluate` gives the NLL."""
    start = time.perf_counter()
    scores = _test_scores(model, args.data, budget.pick(smoke=500, default=None, full=None), args.seed, k=1,
                          batch_size=500)
    n = scores["n"]
    if "test_elbo" in scores:  # with k = 1 the "NLL" is one more one-sample ELBO: not reported
        result = {"test_elbo": scores["test_elbo"], "test_elbo_se": scores["test_elbo_se"], "test_n": n}
        said = f"ELBO {scores['test_elbo']:.2f} ± {scores['test_elbo_se']:.2f} nats per image on {n} test images"
    else:
        result = {"test_recon_loss": scores["test_recon_loss"], "test_n": n}
        said = f"reconstruction loss {scores['test_recon_loss']:.2f} nats per image on {n} test images"
    seconds = time.perf_counter() - start
    print(f"test evaluation: {said}, in {seconds:.1f} s (--no-eval skips it)", file=sys.stderr)
    return {**result, "eval_seconds": round(seconds, 2)}


def evaluate_checkpoint(args) -> dict:
    _check_numbers(args)
    device = get_device()
    budget = run_budget(device)
    _check_checkpoint(args.checkpoint)
    model = load_model(args.checkpoint).to(device)
    k = args.k if args.k is not None else budget.pick(smoke=10, default=1000, full=5000)
    limit = args.limit if args.limit is not None else budget.pick(smoke=500, default=None, full=None)
    result = {"checkpoint": str(args.checkpoint), "model": model.kind, **model.config, "device": str(device)}
    return {**result, **_test_scores(model, args.data, limit, args.seed, k, args.batch_size, progress=True)}


def _test_scores(model, root, limit: int | None, seed: int, k: int, batch_size: int, progress: bool = False) -> dict:
    """A VAE's test ELBO and NLL (-L_k), or an autoencoder's test reconstruction loss, in nats per
    image on the first ``limit`` test images (all for None), binarised as the model was trained."""
    data = load_mnist("test", root=root, binarize=_binarize(model))
    if limit:
        data = data.subset(slice(0, limit))
    seed_everything(seed)
    if isinstance(model, VAE):
        bounds = evaluate_bounds(model, data, k=k, batch_size=batch_size, progress=progress)
        return {"test_elbo": bounds["elbo"], "test_elbo_se": bounds["elbo_se"], "test_nll": bounds["nll"],
                "test_nll_se": bounds["nll_se"], "k": k, "n": bounds["n"]}
    loss = evaluate(model, lambda m, batch: m.reconstruction_loss(batch[0]).mean(), data,
                    batch_size=batch_size)["loss"]
    return {"test_recon_loss": loss, "n": len(data)}


def _runs_for(out: Path) -> Path:
    """Where `train --out CKPT` keeps its run between calls: ``CKPT.runs/``."""
    return out.parent / (out.name + ".runs")


def _failed_write(err: BaseException) -> Path | None:
    """The file whose writing raised ``err``, if ``err`` is a RuntimeError out of `atomic_save`, else None.

    vaelib writes every file (a run's checkpoint, the saved model) through `atomic_save`, and
    PyTorch's writer reports a write that fails, on a full disk or past a file-size limit, as a
    RuntimeError ("file write failed", "unexpected pos"), not as an OSError."""
    if isinstance(err, RuntimeError):
        for frame, _ in traceback.walk_tb(err.__traceback__):
            if frame.f_code is atomic_save.__code__:
                return Path(frame.f_locals["path"])
    return None


def _resume_hint(args) -> str:
    if args.command != "train":
        return "nothing was saved"
    runs = _runs_for(Path(args.out))
    saved = sorted(runs.glob("*.pt"), key=lambda p: p.stat().st_mtime) if runs.is_dir() else []
    if not saved:
        return "no epoch was saved; the same command starts afresh"
    return f"the same command continues from {saved[-1]} (the last finished epoch)"


class _Help(argparse.RawDescriptionHelpFormatter):
    """The module docstring as written, and each option's default at the end of its help (those
    whose default depends on the run budget or a setting say so in their own words)."""

    def _get_help_string(self, action):
        text = action.help or ""
        no_default = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if no_default or "default" in text or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def parser() -> argparse.ArgumentParser:
    prog = "python -m vaelib" if Path(sys.argv[0]).name == "__main__.py" else "vaelib"  # as it was called
    p = argparse.ArgumentParser(prog=prog, description=__doc__, formatter_class=_Help)
    sub = p.add_subparsers(dest="command", required=True)
    t = sub.add_parser("train", help="train an autoencoder or a VAE on MNIST and save it", formatter_class=_Help,
                       description="Train an autoencoder or a VAE on MNIST and save it to --out. A capped or "
                                   "interrupted run continues when the same command runs again.")
    t.add_argument("--model", choices=["ae", "vae"], default="vae", help="a deterministic autoencoder or a VAE")
    t.add_argument("--arch", choices=ARCHS, default="mlp", help="fully connected layers or convolutions")
    t.add_argument("--latent-dim", type=int, default=20, help=f"the size d of the code z, at most {MAX_LATENT_DIM}")
    t.add_argument("--hidden", type=int, nargs="+",
                   help=f"layer sizes (mlp, default 512 256) or two channel counts (conv, default 32 64), at most "
                        f"{MAX_HIDDEN} each and {MAX_WEIGHTS // 10**6} million weights in the whole model")
    t.add_argument("--epochs", type=int, help="default from the run budget: smoke 1, default 20, full 100")
    t.add_argument("--batch-size", type=int, default=128, help="images per training step")
    t.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate")
    t.add_argument("--lr-decay", action="store_true", help="let the learning rate fall linearly to 0 over the epochs")
    t.add_argument("--limit", type=int, help="use only the first N training images (default: all; 2000 in smoke mode)")
    t.add_argument("--seed", type=int, default=0, help="seed of every random draw (weights, batches, binarisation)")
    t.add_argument("--data", help="data folder (default: $VAELIB_DATA, else ~/.cache/vaelib/data)")
    t.add_argument("--out", required=True, help="where to save the trained model")
    t.add_argument("--max-minutes", type=float,
                   help="wall-clock cap of the run; it stops at an epoch boundary, saves, and the same command "
                        "continues it (default: $VAELIB_MAX_MINUTES, else the run budget's: 0.5 / 6 / 10)")
    t.add_argument("--no-eval", action="store_true",
                   help="skip the closing test evaluation (the test ELBO, or an autoencoder's test loss)")
    e = sub.add_parser("evaluate", help="test ELBO and importance-sampled NLL of a saved model, as JSON",
                       formatter_class=_Help,
                       description="Print one JSON line: the test ELBO and NLL (-L_k) in nats per image, with "
                                   "standard errors (for an autoencoder, its test reconstruction loss).")
    e.add_argument("checkpoint", help="a model saved by train --out, or a training run of the chapters "
                                      "(book/runs/*.pt) or of train (CKPT.runs/*.pt)")
    e.add_argument("--k", type=int, help="importance samples (default from the run budget: 10 / 1000 / 5000)")
    e.add_argument("--limit", type=int, help="use only the first N test images (default: all; 500 in smoke mode)")
    e.add_argument("--batch-size", type=int, default=100, help="test images per batch")
    e.add_argument("--seed", type=int, default=0, help="seed of the importance samples")
    e.add_argument("--data", help="data folder (default: $VAELIB_DATA, else ~/.cache/vaelib/data)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = None
    try:
        release()  # Ctrl-C is a KeyboardInterrupt from here on (vaelib.startup handled it while torch loaded)
        args = parser().parse_args(argv)
        result = train(args) if args.command == "train" else evaluate_checkpoint(args)
    except KeyboardInterrupt:
        print(f"interrupted: {_resume_hint(args) if args is not None else 'nothing was done'}", file=sys.stderr)
        return 130
    except (DatasetNotFoundError, OSError, ValueError, NonFiniteLossError, CheckpointInUseError) as err:  # OSError: a full disk
        return _error(str(err))
    except RuntimeError as err:
        path = _failed_write(err)
        if path is None:
            raise
        return _error(f"could not write {path} ({err}): is the disk full? Free some space; {_resume_hint(args)}")
    print(json.dumps(result))
    return 0


def _error(message: str) -> int:
    print("error: " + " ".join(message.split()), file=sys.stderr)  # one line, whatever the message
    return 2


def run() -> None:
    """The ``vaelib`` console script: `main` with its exit code."""
    sys.exit(main())
