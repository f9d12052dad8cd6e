"""Quality at a CPU budget: train Chapter 6's default VAE (784-400-20) by its recipe and
report its test NLL on all 10 000 MNIST test images.

    python benchmarks/quality.py [--epochs 100] [--k 1000] [--precision auto|fp32|bf16]
                                 [--lr 3e-3] [--no-decay] [--batch-size 128] [--hidden 400] [--latent-dim 20]

Trains with `vaelib.train_mnist_model` as Chapter 6 does (dynamically binarised training
data, batch 128, Adam with lr 3e-3 falling linearly to 0 over the epochs), in a fresh
runs folder, then evaluates the test ELBO and the importance-sampled NLL (-L_k) on the
statically binarised test set. Prints a table with the training time, to set against the
5-minute target of issue 14. ``--precision`` sets the dtype of the training step's matrix
products (fit's default: auto), so the two precisions can be compared at equal work.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

import vaelib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--hidden", type=int, nargs="+", default=[400], help="hidden layer sizes (Chapter 6: 400)")
    parser.add_argument("--latent-dim", type=int, default=20, help="d (Chapter 6: 20)")
    parser.add_argument("--no-decay", action="store_true", help="keep the learning rate constant")
    parser.add_argument("--precision", default=None, choices=["auto", "fp32", "bf16"])
    args = parser.parse_args()

    device = vaelib.get_device()
    if args.precision:
        os.environ[vaelib.device.PRECISION_ENV] = args.precision  # read by every fit of the recipe
    dtype = vaelib.device.training_dtype(device)
    test = vaelib.load_mnist("test", binarize="static")
    with tempfile.TemporaryDirectory() as runs:
        start = time.perf_counter()
        model, history = vaelib.train_mnist_model(
            "vae", latent_dim=args.latent_dim, hidden=tuple(args.hidden), epochs=args.epochs, lr=args.lr, lr_decay=not args.no_decay,
            batch_size=args.batch_size,
            device=device, runs=runs, progress=False, max_minutes=float("inf"))
        spent = time.perf_counter() - start
    start = time.perf_counter()
    vaelib.seed_everything(1)
    result = vaelib.evaluate_bounds(model, test, k=args.k, batch_size=100)
    eval_s = time.perf_counter() - start

    schedule = "constant" if args.no_decay else "linear decay to 0"
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"training products in {str(dtype)[6:]}, batch {args.batch_size}, Adam lr {args.lr:g} ({schedule})\n")
    print("| model | training | epochs | test ELBO | test NLL (-L_k) | k | evaluation |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    sizes = "-".join(map(str, [784, *args.hidden, args.latent_dim]))
    print(f"| VAE {sizes} | {spent / 60:.1f} min | {len(history['epoch'])} | "
          f"{result['elbo']:.2f} ± {result['elbo_se']:.2f} | {result['nll']:.2f} ± {result['nll_se']:.2f} | "
          f"{args.k} | {eval_s / 60:.1f} min |")
    seconds = history["seconds"]
    tenth = max(1, len(seconds) // 10)
    print(f"\nseconds per epoch: median {statistics.median(seconds):.2f}, first tenth "
          f"{statistics.median(seconds[:tenth]):.2f}, last tenth {statistics.median(seconds[-tenth:]):.2f}, "
          f"slowest {max(seconds):.2f}")


if __name__ == "__main__":
    main()
