"""Quality at a CPU budget: train Chapter 6's VAE (784-400-20) for a wall-clock budget and
report its test NLL on all 10 000 MNIST test images.

    python benchmarks/quality.py [--minutes 5] [--k 1000]

Trains on dynamically binarised MNIST with Adam(1e-3), batch 128, epoch by epoch until
the next epoch would exceed the budget, then evaluates the test ELBO and the
importance-sampled NLL (-L_k) on the statically binarised test set. Prints a table.
"""

from __future__ import annotations

import argparse
import time

import torch

import vaelib


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=5.0)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--latent-dim", type=int, default=20)
    parser.add_argument("--hidden", type=int, nargs="+", default=[400])
    args = parser.parse_args()

    device = vaelib.get_device()
    vaelib.seed_everything(0)
    model = vaelib.VAE(latent_dim=args.latent_dim, hidden=args.hidden)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    train = vaelib.load_mnist("train", binarize="dynamic")
    test = vaelib.load_mnist("test", binarize="static")
    loss = lambda m, b: vaelib.vae_loss(m, b[0])  # noqa: E731

    budget_s, spent, epochs = args.minutes * 60, 0.0, 0
    while epochs == 0 or spent / epochs * (epochs + 1) <= budget_s:  # stop before overrunning
        start = time.perf_counter()
        vaelib.fit(model, loss, train, epochs=1, optimizer=optimizer, device=device, progress=False)
        spent += time.perf_counter() - start
        epochs += 1
    start = time.perf_counter()
    vaelib.seed_everything(1)
    result = vaelib.evaluate_bounds(model, test, k=args.k, batch_size=100)
    eval_s = time.perf_counter() - start

    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}\n")
    print("| model | training | epochs | test ELBO | test NLL (-L_k) | k | evaluation |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    print(f"| VAE 784-{'-'.join(map(str, args.hidden))}-{args.latent_dim} | {spent / 60:.1f} min | {epochs} | "
          f"{result['elbo']:.2f} ± {result['elbo_se']:.2f} | {result['nll']:.2f} ± {result['nll_se']:.2f} | "
          f"{args.k} | {eval_s / 60:.1f} min |")


if __name__ == "__main__":
    main()
