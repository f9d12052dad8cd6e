import math

import pytest
import torch

import vaelib
from vaelib import DiagonalNormal, InMemoryData, LinearAnnealing

DT = torch.float64


def test_linear_annealing_values():
    a = LinearAnnealing(steps=10, start=0.0, end=1.0)
    assert [a.at(s) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]
    a(3)
    assert a.value == pytest.approx(0.3)
    assert LinearAnnealing(4, start=2.0, end=0.0).at(1) == 1.5
    with pytest.raises(ValueError, match="steps must be >= 1"):
        LinearAnnealing(0)


def test_fit_counts_steps_across_epochs_and_resumes(tmp_path):
    data = InMemoryData(torch.randn(20, 2), torch.randn(20, 1))  # 5 batches of 4

    def run(epochs, checkpoint, seen):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        vaelib.fit(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), data, epochs=epochs, batch_size=4,
                   device="cpu", checkpoint=checkpoint, on_step=seen.append, progress=False)

    straight, first, second = [], [], []
    run(3, None, straight)
    run(2, tmp_path / "c.pt", first)
    run(3, tmp_path / "c.pt", second)
    assert straight == list(range(15)) and first + second == straight


class FakeVAE(torch.nn.Module):
    """An 'encoder' with chosen posterior means and variances, and a decoder that explains nothing."""

    def __init__(self, mu, logvar):
        super().__init__()
        self.mu = torch.nn.Parameter(mu)
        self.logvar = torch.nn.Parameter(logvar)
        self.image_shape = (1, 1, 1)

    def encode(self, x):
        index = x.view(-1).long()  # each "image" is the index of its posterior
        return DiagonalNormal(self.mu[index], self.logvar[index])

    def decode(self, z):
        return torch.zeros(len(z), 1, 1, 1, dtype=z.dtype)

    def log_likelihood(self, x, out):
        return torch.zeros(out.shape[:-3], dtype=out.dtype)


def test_active_units_on_constructed_encoders():
    g = torch.Generator().manual_seed(0)
    n = 400
    # posterior means of three dimensions vary across the data with std 1, 0.05 and 0
    mu = torch.stack([torch.randn(n, generator=g, dtype=DT), 0.05 * torch.randn(n, generator=g, dtype=DT),
                      torch.zeros(n, dtype=DT)], 1)
    model = FakeVAE(mu, torch.zeros(n, 3, dtype=DT))
    stats = vaelib.latent_statistics(model, InMemoryData(torch.arange(n, dtype=DT).view(n, 1, 1, 1)))
    assert torch.allclose(stats["mean_variance"], mu.var(0))
    assert stats["active_units"] == 1  # 1 > 0.01 > 0.0025 > 0
    # KL per dimension with unit variances is mu^2 / 2 on average
    assert torch.allclose(stats["kl_per_dim"], 0.5 * mu.pow(2).mean(0))
    assert stats["distortion"] == 0.0 and stats["rate"] == pytest.approx(0.5 * mu.pow(2).sum(1).mean().item())


def test_free_bits_clamp_each_dimension_and_stop_its_gradient():
    mu = torch.tensor([[2.0, 0.1, 0.0]], dtype=DT)  # KLs 2.0, 0.005, 0
    model = FakeVAE(mu, torch.zeros(1, 3, dtype=DT))
    x = torch.zeros(1, 1, 1, 1, dtype=DT)
    loss = vaelib.vae_loss(model, x, free_bits=0.5)
    assert loss.item() == pytest.approx(2.0 + 0.5 + 0.5)
    loss.backward()
    assert model.mu.grad[0, 0] == pytest.approx(2.0) and model.mu.grad[0, 1:].abs().max() == 0
    assert vaelib.vae_loss(model, x).item() == pytest.approx(2.0 + 0.005)
    with pytest.raises(ValueError, match="must be >= 0"):
        vaelib.vae_loss(model, x, beta=-1)


def test_vae_loss_is_the_negative_mean_elbo():
    torch.manual_seed(1)
    model = vaelib.VAE(latent_dim=3, hidden=(8,), image_shape=(1, 3, 3)).double()
    x = torch.bernoulli(torch.full((5, 1, 3, 3), 0.5, dtype=DT))
    torch.manual_seed(2)
    a = vaelib.vae_loss(model, x, beta=2.0)
    torch.manual_seed(2)
    b = -vaelib.elbo(model, x, beta=2.0).elbo.mean()
    assert torch.allclose(a, b)


def test_mean_over_pixels_with_summed_kl_is_beta_784():
    torch.manual_seed(3)
    model = vaelib.VAE(latent_dim=4, hidden=(16,))
    x = torch.bernoulli(torch.full((8, 1, 28, 28), 0.3))

    def grads(loss):
        model.zero_grad()
        loss.backward()
        return torch.cat([p.grad.flatten() for p in model.parameters()])

    torch.manual_seed(4)
    t = vaelib.elbo(model, x)
    mean_sum = -(t.recon / 784 - t.kl).mean()  # the mistake: pixels averaged, KL summed
    g1 = grads(mean_sum)
    torch.manual_seed(4)
    g2 = grads(vaelib.vae_loss(model, x, beta=784.0))
    assert torch.allclose(784 * g1, g2, rtol=1e-4, atol=1e-6)


def test_rate_plus_distortion_is_the_negative_elbo(mnist_test):
    torch.manual_seed(5)
    model = vaelib.VAE(latent_dim=5, hidden=(32,))
    data = InMemoryData(torch.bernoulli(mnist_test.x[:1000]))
    stats = vaelib.latent_statistics(model, data)
    elbos = torch.stack([vaelib.elbo(model, data.x).elbo.detach() for _ in range(20)]).mean(0)
    assert stats["rate"] + stats["distortion"] == pytest.approx(-elbos.mean().item(), rel=1e-3)
