"""The pytorch/examples VAE recipe as one script, to time as a user would (start to end).

    python benchmarks/examples_vae.py [--epochs 3]

What `vae/main.py` of pytorch/examples does, written here for the benchmark (not copied): a
784-400-20 VAE (`throughput.ExamplesStyleVAE`) trained with a DataLoader over torchvision's
MNIST with `ToTensor()`, batch 128, shuffled, Adam 1e-3, binary cross-entropy summed over
grey-level pixels plus the closed-form KL; after every epoch, the test loss over the 10 000 test
images. Prints one line per epoch and the seconds spent in training epochs and in test passes.
`benchmarks/throughput.py --whole-process` runs it beside `vaelib train`.
"""

from __future__ import annotations

import argparse
import time

import torch
from torchvision import datasets, transforms

import vaelib
from throughput import ExamplesStyleVAE, examples_loss, plain_epoch  # beside this file


def test_loss(model, loader, device) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for x, _ in loader:
            x = x.to(device)
            recon, mu, logvar = model(x)
            total += examples_loss(recon, x, mu, logvar).item()
    return total / len(loader.dataset)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    torch.manual_seed(1)
    device = vaelib.get_device()
    root = vaelib.data_dir()
    train = torch.utils.data.DataLoader(
        datasets.MNIST(root, train=True, download=True, transform=transforms.ToTensor()),
        batch_size=128, shuffle=True)
    test = torch.utils.data.DataLoader(
        datasets.MNIST(root, train=False, transform=transforms.ToTensor()), batch_size=128)
    model = ExamplesStyleVAE().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    in_epochs = in_tests = 0.0
    for epoch in range(1, args.epochs + 1):
        in_epochs += plain_epoch(model, optimizer, train, device)
        start = time.perf_counter()
        loss = test_loss(model, test, device)
        in_tests += time.perf_counter() - start
        print(f"epoch {epoch}: test loss {loss:.2f}")
    print(f"seconds in training epochs {in_epochs:.2f}, in test passes {in_tests:.2f}")


if __name__ == "__main__":
    main()
