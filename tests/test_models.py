import math

import pytest
import torch
from torch import distributions as D

import vaelib
from vaelib import VAE, DiagonalNormal

DT = torch.float64


@pytest.fixture
def model():
    torch.manual_seed(0)
    return VAE(latent_dim=3, hidden=(16, 8), image_shape=(1, 4, 4)).double()


@pytest.fixture
def x():
    return torch.bernoulli(torch.full((5, 1, 4, 4), 0.3, dtype=DT), generator=torch.Generator().manual_seed(1))


def test_shapes_and_distributions(model, x):
    q = model.encode(x)
    assert isinstance(q, DiagonalNormal) and q.batch_shape == (5,) and q.event_shape == (3,)
    assert q.mu.shape == q.logvar.shape == (5, 3)
    assert torch.allclose(q.variance, q.logvar.exp())
    z = q.rsample()
    assert model.decode(z).shape == (5, 1, 4, 4)
    p = model.p_x(z)
    assert p.batch_shape == (5,) and p.event_shape == (1, 4, 4)
    assert model.sample(7).shape == (7, 1, 4, 4) and 0 <= model.sample(7).min() and model.sample(7).max() <= 1
    assert model.reconstruct(x).shape == x.shape
    prior = model.prior()
    assert torch.equal(prior.mu, torch.zeros(3, dtype=prior.mu.dtype))


def test_log_bernoulli_matches_torch_distributions(model, x):
    logits = model.decode(model.encode(x).mu)
    expected = D.Independent(D.Bernoulli(logits=logits), 3).log_prob(x)
    assert torch.allclose(vaelib.log_bernoulli(x, logits), expected, rtol=1e-10)
    assert torch.allclose(model.p_x(model.encode(x).mu).log_prob(x), expected, rtol=1e-10)


def test_elbo_terms_and_their_relation(model, x):
    torch.manual_seed(2)
    terms = vaelib.elbo(model, x, n_samples=4, beta=0.5)
    assert terms.recon.shape == terms.kl.shape == terms.elbo.shape == (5,)
    assert torch.allclose(terms.elbo, terms.recon - 0.5 * terms.kl)
    q = model.encode(x)
    assert torch.allclose(terms.kl, vaelib.kl_normal(q.mu, q.logvar))
    assert (terms.recon < 0).all()  # log-probabilities of binary images


def test_monte_carlo_kl_agrees_with_the_closed_form(model, x):
    torch.manual_seed(3)
    mc = vaelib.elbo(model, x, n_samples=200_000, analytic_kl=False).kl
    q = model.encode(x)
    closed = vaelib.kl_normal(q.mu, q.logvar)
    # the spread of log q - log p for one sample bounds the error of the average
    z = q.sample((20_000,))
    se = (q.log_prob(z) - model.prior().log_prob(z)).std(0) / math.sqrt(200_000)
    assert ((mc - closed).abs() < 4 * se).all()


def test_bad_inputs_are_explained(model, x):
    with pytest.raises(ValueError, match=r"expected images of shape \(N, 1, 4, 4\), got \(5, 16\)"):
        model.encode(x.view(5, 16))
    with pytest.raises(ValueError, match=r"pixel values in \[0, 1\], got \[0, 255\]"):
        model.encode(x * 255)
    with pytest.raises(ValueError, match=r"z must be \(N, 3\)"):
        model.decode(torch.zeros(5, 4, dtype=DT))
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        vaelib.elbo(model, x, n_samples=0)
    with pytest.raises(ValueError, match="one shape"):
        DiagonalNormal(torch.zeros(2), torch.zeros(3))


def test_a_small_vae_learns_mnist(mnist_train):
    vaelib.seed_everything(0)
    data = vaelib.InMemoryData(torch.bernoulli(mnist_train.x[:2000]), mnist_train.y[:2000])
    model = VAE(latent_dim=8, hidden=(128,))

    def loss(model, batch):
        return -vaelib.elbo(model, batch[0]).elbo.mean()

    before = vaelib.evaluate(model, loss, data)["loss"]
    history = vaelib.fit(model, loss, data, epochs=10, batch_size=100, device="cpu", progress=False)
    assert history["loss"][-1] < history["loss"][0] < before
    assert history["loss"][-1] < 200  # nats per image; an untrained model is near 543
