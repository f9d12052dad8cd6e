import pytest
import torch

import vaelib
from fakes import FakeVAE
from vaelib import InMemoryData

DT = torch.float64


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
    # KL-based count: only the first dimension carries more than 0.1 nats (about 0.5 and 0.00125)
    assert stats["kl_units"] == 1
    assert vaelib.latent_statistics(model, InMemoryData(torch.arange(n, dtype=DT).view(n, 1, 1, 1)),
                                    kl_threshold=1e-4)["kl_units"] == 2


def test_active_units_count_dimensions_that_carry_almost_nothing():
    """A dimension at the 0.01 variance threshold with unit posterior variance carries about 0.005 nats."""
    g = torch.Generator().manual_seed(1)
    n = 20_000
    mu = torch.stack([0.11 * torch.randn(n, generator=g, dtype=DT), torch.randn(n, generator=g, dtype=DT)], 1)
    model = FakeVAE(mu, torch.zeros(n, 2, dtype=DT))
    stats = vaelib.latent_statistics(model, InMemoryData(torch.arange(n, dtype=DT).view(n, 1, 1, 1)))
    assert stats["active_units"] == 2 and stats["kl_units"] == 1
    assert stats["kl_per_dim"][0].item() == pytest.approx(0.5 * 0.11**2, rel=0.05)  # about 0.006 nats


def test_rate_plus_distortion_is_the_negative_elbo(mnist_test):
    torch.manual_seed(5)
    model = vaelib.VAE(latent_dim=5, hidden=(32,))
    data = InMemoryData(torch.bernoulli(mnist_test.x[:1000]))
    stats = vaelib.latent_statistics(model, data)
    elbos = torch.stack([vaelib.elbo(model, data.x).elbo.detach() for _ in range(20)]).mean(0)
    assert stats["rate"] + stats["distortion"] == pytest.approx(-elbos.mean().item(), rel=1e-3)


def test_interpolate_walks_straight_lines_evenly():
    z_a = torch.tensor([[0.0, 0.0], [1.0, -1.0]])
    z_b = torch.tensor([[4.0, 2.0], [1.0, 1.0]])
    path = vaelib.interpolate(z_a, z_b, steps=5)
    assert path.shape == (2, 5, 2)
    assert torch.equal(path[:, 0], z_a) and torch.equal(path[:, -1], z_b)
    steps = path[:, 1:] - path[:, :-1]
    assert torch.allclose(steps, ((z_b - z_a) / 4)[:, None].expand_as(steps))  # equal steps along the line
    assert vaelib.interpolate(z_a[0], z_b[0], steps=3).shape == (3, 2)
    with pytest.raises(ValueError, match="one shape"):
        vaelib.interpolate(z_a, z_b[:1])
    with pytest.raises(ValueError, match="steps must be >= 2"):
        vaelib.interpolate(z_a, z_b, steps=1)


def test_latent_grid_is_in_reading_order():
    values = torch.tensor([-1.0, 0.0, 2.0])
    grid = vaelib.latent_grid(values)
    assert grid.shape == (9, 2)
    rows = grid.view(3, 3, 2)
    assert torch.equal(rows[0, :, 1], torch.full((3,), 2.0)) and torch.equal(rows[-1, :, 1], torch.full((3,), -1.0))
    assert all(torch.equal(row[:, 0], values) for row in rows)  # z_1 grows left to right on every row
    assert len(set(map(tuple, grid.tolist()))) == 9  # every pair once
    with pytest.raises(ValueError, match="non-empty 1-D"):
        vaelib.latent_grid(torch.zeros(2, 2))

