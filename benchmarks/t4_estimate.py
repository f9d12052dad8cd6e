"""An estimate, not a measurement: each chapter's training time under the `full` budget on a T4.

    python benchmarks/t4_estimate.py

There is no GPU on the development machine, so the full budget has never been run. This
script counts the floating-point operations of one training step of every model a chapter
trains at its full budget (forward and backward pass, by ``torch.utils.flop_counter``, on
the CPU) and turns them into time with two stated assumptions about a T4:

- sustained fp32 matrix throughput of ``--tflops`` (default 4 TFLOP/s, half the T4's
  8.1 TFLOP/s peak);
- a floor of ``--step-ms`` per optimizer step (default 1.5 ms: kernel launches and Python
  for a small MLP step with fused Adam), which dominates for these small models.

A step costs max(FLOPs / throughput, floor). Each `fit` call is then capped at the full
budget's 10 minutes (`RunBudget.max_minutes`), which is what the table's last column shows.
Evaluation (importance sampling) is counted the same way, without the floor, per batch.
"""

from __future__ import annotations

import argparse
import math

import torch
from torch.utils.flop_counter import FlopCounterMode

import vaelib

N_TRAIN, BATCH, CAP_S = 60_000, 128, 600.0
T4_FLOPS, T4_STEP_S = 4e12, 1.5e-3  # the two assumptions (see the module docstring)


def t4_step_seconds(flops: float, rate: float = T4_FLOPS, floor: float = T4_STEP_S) -> float:
    """The estimated time of one optimizer step of ``flops`` on a T4: max(FLOPs / throughput, floor)."""
    return max(flops / rate, floor)


def step_flops(model, loss, batch: int = BATCH) -> float:
    """FLOPs of one forward and backward pass on a batch of ``batch`` binary MNIST images."""
    x = torch.bernoulli(torch.full((batch, 1, 28, 28), 0.13))
    y = torch.randint(0, 10, (batch,))
    with FlopCounterMode(display=False) as counter:
        loss(model, (x, y)).backward()
    return counter.get_total_flops()


def decoder_flops(model, n_codes: int) -> float:
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        model.decode(torch.zeros(n_codes, model.latent_dim))
    return counter.get_total_flops()


def vae(d, hidden):
    return vaelib.VAE(latent_dim=d, hidden=hidden)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tflops", type=float, default=T4_FLOPS / 1e12, help="sustained fp32 TFLOP/s assumed")
    parser.add_argument("--step-ms", type=float, default=T4_STEP_S * 1e3, help="floor per optimizer step, ms")
    args = parser.parse_args()
    rate, floor = args.tflops * 1e12, args.step_ms / 1e3

    elbo = lambda m, b: vaelib.vae_loss(m, b[0])  # noqa: E731
    recon = lambda m, b: m.reconstruction_loss(b[0]).mean()  # noqa: E731
    xent = lambda m, b: torch.nn.functional.cross_entropy(m(b[0]), b[1])  # noqa: E731
    cvae = lambda m, b: -vaelib.conditional_elbo(m, b[0], b[1]).elbo.mean()  # noqa: E731
    m2 = lambda m, b: vaelib.m2_loss(m, b[0][:100], b[1][:100], b[0], alpha=60.0)["loss"]  # noqa: E731

    def iwae(k):
        return lambda m, b: vaelib.iwae_loss(m, b[0], k)
    classifier = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 256), torch.nn.ReLU(),
                                     torch.nn.Linear(256, 10))
    # chapter -> [(what, model, loss, epochs, how many such runs)], the full budget of each chapter
    runs = {
        4: [("VAE 784-400-20, pathwise", vae(20, (400,)), elbo, 10, 1)],
        5: [("AE 784-512-256-2", vaelib.Autoencoder(2, hidden=(512, 256)), recon, 50, 1)],
        6: [("VAE 784-512-256-2", vae(2, (512, 256)), elbo, 50, 1),
            ("VAE 784-400-20, two KL estimators", vae(20, (400,)), elbo, 20, 2),
            ("VAE 784-512-256-32", vae(32, (512, 256)), elbo, 1000, 1)],
        7: [("digit classifier 784-256-10", classifier, xent, 10, 1)],  # AE and VAE: Chapters 5 and 6's runs
        8: [("VAE 784-256-16/32, 18 variants", vae(16, (256,)), elbo, 20, 18)],
        9: [("conditional VAE 784+10-256-4", vaelib.ConditionalVAE(4, hidden=(256,)), cvae, 50, 1),
            ("M2 (d = 4, 256 units), 100 labels + 128 unlabelled per step", vaelib.M2(4, hidden=(256,)), m2, 200, 1),
            ("the 100-label classifier 784-256-10, as many steps", classifier, xent, 200, 1)],
        10: [("VAE 784-200-200-50 on L_1", vae(50, (200, 200)), elbo, 128, 1),
             ("the same on L_5", vae(50, (200, 200)), iwae(5), 80, 1),
             ("the same on L_50", vae(50, (200, 200)), iwae(50), 16, 1)],
    }
    steps_per_epoch = math.ceil(N_TRAIN / BATCH)
    print(f"Assumed T4: {args.tflops:g} TFLOP/s sustained, {args.step_ms:g} ms floor per step; "
          f"{steps_per_epoch} steps per epoch; each run capped at {CAP_S / 60:g} min.\n")
    print("| chapter | run | GFLOP per step | epochs x runs | estimate per run | capped total |")
    print("|---|---|---:|---:|---:|---:|")
    totals = {}
    for chapter, items in runs.items():
        for what, model, loss, epochs, count in items:
            flops = step_flops(model, loss)
            per_run = epochs * steps_per_epoch * t4_step_seconds(flops, rate, floor)
            capped = count * min(per_run, CAP_S)
            totals[chapter] = totals.get(chapter, 0.0) + capped
            print(f"| {chapter} | {what} | {flops / 1e9:.2f} | {epochs} x {count} | {per_run / 60:.1f} min | "
                  f"{capped / 60:.1f} min |")
    # Chapter 6's evaluation: k = 5000 importance samples for 10 000 test images, two models
    eval_s = sum(10_000 * 5000 * decoder_flops(m, 1) / rate for m in (vae(2, (512, 256)), vae(32, (512, 256))))
    totals[6] += eval_s
    print(f"| 6 | bounds, k = 5000 on 10 000 images, two models | | | {eval_s / 60:.1f} min | {eval_s / 60:.1f} min |")
    print("\n| chapter | estimated full-budget training time on a T4 |")
    print("|---|---:|")
    for chapter, seconds in totals.items():
        print(f"| {chapter} | {seconds / 60:.0f} min |")


if __name__ == "__main__":
    main()
