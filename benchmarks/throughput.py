"""Training throughput: vaelib.fit against a plain loop in the pytorch/examples style.

    python benchmarks/throughput.py [--repeats 5]
    python benchmarks/throughput.py --whole-process [--epochs 3] [--repeats 5]

Both train the same 784-400-20 MLP VAE (ReLU, Bernoulli/BCE loss summed over pixels,
analytic KL) with Adam(lr=1e-3) and batch size 128 on the 60 000 MNIST training images
with grey-level targets, on the same device, in the same process, with the methods'
epochs interleaved. Both use Adam with lr 1e-3 (fit's default is PyTorch's fused Adam
kernel, the same algorithm). fit runs its matrix products in bf16 where the CPU has native
bf16 (AVX512-BF16 or AMX; `vaelib.device.training_dtype`), fp32 elsewhere; set
VAELIB_PRECISION=fp32 to time it in fp32. The plain loop reads
the data the way the pytorch/examples VAE does: a DataLoader over
torchvision.datasets.MNIST with transforms.ToTensor(). A third row runs the plain loop
over in-memory tensors, to show where the difference comes from, and a fourth does fit's own
work (model, loss, batches, fused Adam, precision) in a bare loop with no guard against a
non-finite loss, no metrics and no progress line, to show what those cost.

Prints a Markdown table: seconds per epoch (median over repeats) and images per second,
and the floor for this machine: the time the model's matrix products alone take per epoch
(every forward and backward GEMM of a training step, timed with torch.mm on tensors of the
same shapes, at the GEMM speed measured here) in fp32, and in bf16 when fit uses it; each
loop's time is given as a multiple of the floor in the dtype fit uses.

Every loop runs under the same memory allocator settings: fit keeps freed memory in the
process (`vaelib.device.keep_freed_memory`, process-wide), so the benchmark sets that before
any loop runs, and the plain loops get the same benefit.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn

import vaelib


class ExamplesStyleVAE(nn.Module):
    """784-400-20: the architecture of the pytorch/examples VAE, written out by layer."""

    def __init__(self):
        super().__init__()
        self.enc, self.enc_mu, self.enc_logvar = nn.Linear(784, 400), nn.Linear(400, 20), nn.Linear(400, 20)
        self.dec1, self.dec2 = nn.Linear(20, 400), nn.Linear(400, 784)

    def forward(self, x):
        h = F.relu(self.enc(x.view(-1, 784)))
        mu, logvar = self.enc_mu(h), self.enc_logvar(h)
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp()
        return torch.sigmoid(self.dec2(F.relu(self.dec1(z)))), mu, logvar


def examples_loss(recon, x, mu, logvar):
    bce = F.binary_cross_entropy(recon, x.view(-1, 784), reduction="sum")
    return bce - 0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())


def plain_epoch(model, optimizer, loader, device) -> float:
    start = time.perf_counter()
    model.train()
    for x, _ in loader:
        x = x.to(device)
        optimizer.zero_grad()
        recon, mu, logvar = model(x)
        examples_loss(recon, x, mu, logvar).backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def fit_epoch(model, optimizer, data, device) -> float:
    start = time.perf_counter()
    vaelib.fit(model, lambda m, b: -vaelib.elbo(m, b[0]).elbo.mean(), data, epochs=1, batch_size=128,
               optimizer=optimizer, device=device, progress=False)
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def bare_epoch(model, optimizer, data, device, dtype) -> float:
    """The least a PyTorch loop can do for fit's work: the same model, loss, batches and kernels
    (InMemoryData's batches, fused Adam, fit's precision), without fit's guard, metrics or progress."""
    start = time.perf_counter()
    model.train()
    products = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    for x, _ in data.batches(128, shuffle=True):
        optimizer.zero_grad(set_to_none=True)
        with products:
            loss = -vaelib.elbo(model, x).elbo.mean()
        loss.backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


# (inputs, outputs) of each linear layer of the 784-400-20 VAE: encoder, (mu, logvar), decoder
LAYERS = [(784, 400), (400, 40), (20, 400), (400, 784)]


def gemm_floor(device, steps: int, batch: int = 128, repeats: int = 50,
               dtype: torch.dtype = torch.float32) -> tuple[float, float]:
    """Seconds per epoch of ``steps`` training steps spent in matrix products alone, and GFLOP/s.

    Per layer: the forward product, the weight gradient and (except the first layer, whose
    input needs no gradient) the input gradient.
    """
    products = []
    for i, (n_in, n_out) in enumerate(LAYERS):
        x, w, g = (torch.randn(batch, n_in, device=device, dtype=dtype),
                   torch.randn(n_in, n_out, device=device, dtype=dtype),
                   torch.randn(batch, n_out, device=device, dtype=dtype))
        products += [(x, w), (x.T.contiguous(), g)] + ([(g, w.T.contiguous())] if i else [])
    flops = sum(2 * a.shape[0] * a.shape[1] * b.shape[1] for a, b in products)
    for _ in range(5):  # warm-up
        for a, b in products:
            torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        for a, b in products:
            torch.mm(a, b)
    if device.type == "cuda":
        torch.cuda.synchronize()
    per_step = (time.perf_counter() - start) / repeats
    return per_step * steps, flops / per_step / 1e9


def whole_process(epochs: int, repeats: int) -> None:
    """Time `vaelib train` and the pytorch/examples script (`examples_vae.py`) as a user would:
    each a fresh process, start to end, for ``epochs`` epochs, alternately ``repeats`` times; and
    split vaelib's time into start-up and saving, epochs, and the closing test evaluation."""
    import json
    import subprocess
    import sys
    import tempfile
    from pathlib import Path

    here = Path(__file__).resolve().parent
    examples, ours, floor = [], [], []
    least = "import torch; torch.optim.Adam([torch.zeros(1, requires_grad=True)])"
    for _ in range(repeats):
        start = time.perf_counter()  # what any PyTorch training process pays before its first step
        subprocess.run([sys.executable, "-c", least], check=True)
        floor.append(time.perf_counter() - start)
        start = time.perf_counter()
        out = subprocess.run([sys.executable, str(here / "examples_vae.py"), "--epochs", str(epochs)],
                             check=True, capture_output=True, text=True).stdout
        examples.append((time.perf_counter() - start, out.strip().splitlines()[-1]))
        with tempfile.TemporaryDirectory() as tmp:  # a fresh run: nothing cached to resume
            start = time.perf_counter()
            done = subprocess.run([sys.executable, "-m", "vaelib", "train", "--model", "vae", "--latent-dim", "20",
                                   "--hidden", "400", "--epochs", str(epochs), "--max-minutes", "inf",
                                   "--out", str(Path(tmp) / "vae.pt")],
                                  check=True, capture_output=True, text=True)
            ours.append((time.perf_counter() - start, json.loads(done.stdout.strip().splitlines()[-1])))
    ex = statistics.median(t for t, _ in examples)
    us = statistics.median(t for t, _ in ours)
    epochs_s = statistics.median(s["epoch_seconds"] for _, s in ours)
    eval_s = statistics.median(s["eval_seconds"] for _, s in ours)
    outside = statistics.median(t - s["epoch_seconds"] - s["eval_seconds"] for t, s in ours)
    print(f"whole processes, {epochs} epochs each, median of {repeats} (alternating), seconds start to end\n")
    print("| process | wall s | of which |")
    print("|---|---:|---|")
    print(f"| `python benchmarks/examples_vae.py --epochs {epochs}` (pytorch/examples recipe, a test pass "
          f"after every epoch) | {ex:.1f} | {examples[len(examples) // 2][1]} (one run) |")
    print(f"| `vaelib train --hidden 400 --latent-dim 20 --epochs {epochs}` | {us:.1f} | epochs {epochs_s:.1f} s, "
          f"closing test evaluation {eval_s:.1f} s, everything else (start-up, data, saving) {outside:.1f} s |")
    least_s = statistics.median(floor)
    print(f"| `python -c \"{least}\"`: the least a PyTorch training process does (torch.optim imports "
          f"torch._dynamo) | {least_s:.1f} | |")
    print(f"\nwhole-process speed-up of vaelib train over the pytorch/examples script: {ex / us:.2f}x")
    print(f"vaelib train outside its epochs and evaluation: {outside:.1f} s, of which {least_s:.1f} s is the "
          f"floor above and {outside - least_s:.1f} s vaelib's own (data, model, checks, saving)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5, help="epochs timed per method (median reported)")
    parser.add_argument("--whole-process", action="store_true",
                        help="instead, time `vaelib train` and the pytorch/examples script as whole processes")
    parser.add_argument("--epochs", type=int, default=3, help="epochs of each whole process (--whole-process)")
    args = parser.parse_args()
    if args.whole_process:
        return whole_process(args.epochs, args.repeats)
    from torchvision import datasets, transforms

    device = vaelib.get_device()
    vaelib.device.keep_freed_memory()  # fit would set it at its first call; every loop gets it
    vaelib.seed_everything(0)
    mnist = datasets.MNIST(vaelib.data_dir(), train=True, download=True, transform=transforms.ToTensor())
    loader = torch.utils.data.DataLoader(mnist, batch_size=128, shuffle=True)
    in_memory = vaelib.load_mnist("train")
    tensor_loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(in_memory.x, in_memory.y),
                                                batch_size=128, shuffle=True)
    n = len(in_memory)
    on_device, dtype = in_memory.to(device), vaelib.device.training_dtype(device)

    methods = [
        ("plain loop, DataLoader over torchvision MNIST + ToTensor (pytorch/examples)",
         ExamplesStyleVAE, lambda m, o: plain_epoch(m, o, loader, device)),
        ("plain loop, DataLoader over in-memory tensors",
         ExamplesStyleVAE, lambda m, o: plain_epoch(m, o, tensor_loader, device)),
        ("vaelib.fit, InMemoryData (its defaults: Adam 1e-3 fused kernel, automatic precision)",
         lambda: vaelib.VAE(latent_dim=20, hidden=(400,)), lambda m, o: fit_epoch(m, o, in_memory, device)),
        ("bare loop: fit's model, loss and kernels, without its checks, metrics and progress",
         lambda: vaelib.VAE(latent_dim=20, hidden=(400,)), lambda m, o: bare_epoch(m, o, on_device, device, dtype)),
    ]
    states = []
    for name, build, run in methods:
        model = build().to(device)
        optimizer = (vaelib.loop.adam(model.parameters(), lr=1e-3) if not name.startswith("plain")
                     else torch.optim.Adam(model.parameters(), lr=1e-3))
        run(model, optimizer)  # warm-up epoch, not timed
        states.append((model, optimizer))
    times = [[] for _ in methods]
    for _ in range(args.repeats):  # interleaved, so a slow spell of the machine hits every method
        for i, (_, _, run) in enumerate(methods):
            times[i].append(run(*states[i]))
    rows = [(name, statistics.median(t), n / statistics.median(t)) for (name, _, _), t in zip(methods, times)]
    # fit's overhead: each repeat's fit epoch over the bare loop's epoch beside it (paired), then the median
    overhead = statistics.median(f / b for f, b in zip(times[2], times[3]))

    floors = [(torch.float32, *gemm_floor(device, steps=-(-n // 128)))]
    if dtype != torch.float32:
        floors.append((dtype, *gemm_floor(device, steps=-(-n // 128), dtype=dtype)))
    floor = floors[-1][1]  # the floor in the dtype fit's products use here

    base = rows[0][2]
    print(f"device: {device}, torch {torch.__version__}, threads {torch.get_num_threads()}, "
          f"{n} images per epoch, median of {args.repeats} epochs; fit's matrix products in {str(dtype)[6:]} "
          f"(vaelib.device.training_dtype), the plain loops' in float32\n")
    print("| training loop | s / epoch | images / s | speed-up | multiple of the floor |")
    print("|---|---:|---:|---:|---:|")
    for name, seconds, rate in rows:
        print(f"| {name} | {seconds:.2f} | {rate:,.0f} | {rate / base:.2f}x | {seconds / floor:.1f}x |")
    for dt, seconds, gflops in floors:
        print(f"| floor: the matrix products alone in {str(dt)[6:]}, at {gflops:.0f} GFLOP/s | {seconds:.2f} | "
              f"{n / seconds:,.0f} | {n / seconds / base:.2f}x | {seconds / floor:.1f}x |")
    print(f"\nfit's time over the bare loop's: {overhead:.3f}x (median of {args.repeats} paired epochs; "
          f"the medians' ratio {rows[2][1] / rows[3][1]:.3f}x)")


if __name__ == "__main__":
    main()
