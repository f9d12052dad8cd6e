"""What the pytorch/examples VAE's "Test set loss" measures, and what it bounds.

    python benchmarks/examples_recipe.py [--epochs 10] [--k 1000] [--n-test 2000]

Trains the 784-400-20 VAE with the pytorch/examples `vae/main.py` recipe: a DataLoader over
torchvision's MNIST with `transforms.ToTensor()` (grey-level pixels in [0, 1]), shuffled,
batch 128, Adam with lr 1e-3, seed 1, binary cross-entropy summed over pixels against the
grey levels plus the closed-form KL. The model is `vaelib.VAE(latent_dim=20, hidden=(400,))`,
the same layers as the example's (its decoder returns logits; the example applies the sigmoid
inside the model). After each epoch it prints the test loss as the example computes it:
-ELBO against grey-level targets, one sample of z per image, averaged over the 10 000 test images.

Because binary cross-entropy is linear in its target, that loss is, per image,
E_{b ~ Bernoulli(x_grey)} of the negative ELBO of the binarised image b with the encoder's
q(z | x_grey): a one-sample *bound* on the expected negative log-likelihood of dynamically
binarised images. So the script then estimates, on the first ``--n-test`` test images with
one binarised draw b each, log p(b) by the importance-weighted bound L_k, once with the
proposal q(z | x_grey) (the encoder the model was trained with) and once with q(z | b), and
prints them beside the grey-level loss of the same images. Runs about four minutes on two
CPU cores.
"""

from __future__ import annotations

import argparse
import math
import time

import torch

import vaelib


def grey_level_loss(model, x: torch.Tensor) -> torch.Tensor:
    """-ELBO per image against grey-level targets: the pytorch/examples loss, ``(N,)`` nats."""
    return -vaelib.elbo(model, x).elbo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--k", type=int, default=1000)
    parser.add_argument("--n-test", type=int, default=2000)
    args = parser.parse_args()
    from torchvision import datasets, transforms

    device = vaelib.get_device()
    torch.manual_seed(1)  # the example's default --seed
    root = vaelib.data_dir()
    train = datasets.MNIST(root, train=True, download=True, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(train, batch_size=128, shuffle=True)
    test = vaelib.load_mnist("test").to(device)  # grey levels, as ToTensor gives them
    model = vaelib.VAE(latent_dim=20, hidden=(400,)).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    print(f"device: {device}; pytorch/examples recipe, {args.epochs} epochs\n")
    print("| epoch | train loss (nats) | test loss (nats) | seconds |")
    print("|---:|---:|---:|---:|")
    for epoch in range(1, args.epochs + 1):
        start, total = time.perf_counter(), 0.0
        model.train()
        for x, _ in loader:
            x = x.to(device)
            optimizer.zero_grad()
            loss = grey_level_loss(model, x).sum()
            loss.backward()
            optimizer.step()
            total += loss.item()
        with torch.no_grad():
            model.eval()
            test_loss = sum(grey_level_loss(model, test.x[i:i + 1000]).sum().item()
                            for i in range(0, len(test), 1000)) / len(test)
        print(f"| {epoch} | {total / len(train):.2f} | {test_loss:.2f} | {time.perf_counter() - start:.1f} |")

    n = args.n_test
    torch.manual_seed(2)
    grey = test.x[:n]
    b = torch.bernoulli(grey)  # one dynamically binarised draw per image
    rows = {"grey": [], "proposal q(z | x_grey)": [], "proposal q(z | b)": []}
    with torch.no_grad():
        model.eval()
        for i in range(0, n, 100):
            g, bb = grey[i:i + 100], b[i:i + 100]
            rows["grey"].append(grey_level_loss(model, g))
            rows["proposal q(z | x_grey)"].append(-vaelib.iwae_bound(model, bb, args.k, proposal=model.encode(g)))
            rows["proposal q(z | b)"].append(-vaelib.iwae_bound(model, bb, args.k))
    stats = {name: (torch.cat(v).double().mean().item(), (torch.cat(v).double().std() / math.sqrt(n)).item())
             for name, v in rows.items()}
    print(f"\nthe first {n} test images, one binarised draw b each, k = {args.k}:\n")
    print("| quantity | nats per image |")
    print("|---|---:|")
    print(f"| the example's test loss: -ELBO against grey levels, one z | {stats['grey'][0]:.2f} ± {stats['grey'][1]:.2f} |")
    for name in ("proposal q(z | x_grey)", "proposal q(z | b)"):
        mean, se = stats[name]
        print(f"| -log p(b) estimated by -L_{args.k}, {name} | {mean:.2f} ± {se:.2f} |")


if __name__ == "__main__":
    main()
