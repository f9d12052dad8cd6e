"""One M2 training step (Chapter 9) with the encoder's image product made once per image, as
`M2.bounds_per_class` does, against the per-pair route it replaced (the image and label concatenated
and encoded for each of the ten labels). Both steps compute the same loss and gradients (tested in
tests/test_conditional.py); only the order of the sums differs.

    python benchmarks/m2_step.py [--repeats 7] [--steps 20]

Prints the median milliseconds per step of each, timed alternately in one process, and their ratio.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

import vaelib
from vaelib.device import keep_freed_memory, training_dtype
from vaelib.conditional import M2, m2_loss


def per_pair_bounds(model: M2, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
    """L(x, y) for every label, ``(N, C)``: every (image, label) pair through the whole encoder."""
    n, c = len(x), model.n_classes
    if eps is None:
        eps = torch.randn(1, n, model.cvae.latent_dim, device=x.device, dtype=x.dtype)
    xs = x.repeat(c, *([1] * (x.dim() - 1)))
    ys = torch.arange(c, device=x.device).repeat_interleave(n)
    return model.labelled_bound(xs, ys, eps=eps.repeat(1, c, 1)).view(c, n).T


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    args = parser.parse_args()
    device = vaelib.get_device()
    dtype = training_dtype(device)
    keep_freed_memory()
    torch.manual_seed(0)
    model = M2(latent_dim=4, hidden=(256,)).to(device)  # Chapter 9's M2
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    x_u = (torch.rand(128, 1, 28, 28, device=device) < 0.3).float()
    x_l = (torch.rand(100, 1, 28, 28, device=device) < 0.3).float()
    y_l = torch.arange(100, device=device) % 10
    once = M2.bounds_per_class

    def block(route) -> float:
        M2.bounds_per_class = route
        start = time.perf_counter()
        for _ in range(args.steps):
            with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
                loss = m2_loss(model, x_l, y_l, x_u, alpha=60.0)["loss"]
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - start) / args.steps * 1000

    routes = {"image product once per image (now)": once, "once per (image, label) pair": per_pair_bounds}
    try:
        for route in routes.values():
            block(route)  # warm-up
        times = {name: [] for name in routes}
        for _ in range(args.repeats):
            for name, route in routes.items():
                times[name].append(block(route))
    finally:
        M2.bounds_per_class = once
    print(f"device {vaelib.describe_device(device)}, products in {dtype}, {torch.get_num_threads()} threads; "
          f"batch 128 unlabelled + 100 labelled, median of {args.repeats} blocks of {args.steps} steps")
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, m in medians.items():
        print(f"  {name:40s} {m:7.2f} ms per step")
    ratios = [b / a for a, b in zip(*times.values())]
    print(f"per-pair time over once-per-image time: {statistics.median(ratios):.2f}x (median of paired blocks)")


if __name__ == "__main__":
    main()
