"""Chapter 10's library: L_k as a training loss (its gradient as self-normalised importance
weights), the signal-to-noise ratio of gradient estimates, the approximation and amortisation
gaps, and the recipe's iwae_k. Each is checked by an independent route: the same draws through
another formula, quadrature, draws with a known mean and variance, the linear-Gaussian model's
exact posterior and evidence."""

import math

import pytest
import torch
from torch import nn

import vaelib
from fakes import log_evidence_by_quadrature
from vaelib import VAE

DT = torch.float64


@pytest.fixture
def tiny():
    """A VAE with a 1-D latent on 3x3 images (so log p(x) is a quadrature), float64, with a
    deliberately poor encoder: the weights are far from uniform and L_k has room to grow."""
    torch.manual_seed(0)
    model = VAE(latent_dim=1, hidden=(16,), image_shape=(1, 3, 3)).double()
    with torch.no_grad():
        for p in model.decoder.parameters():
            p.mul_(3)
        model.encoder[1][-1].bias.add_(torch.tensor([0.3, 0.5], dtype=DT))
    x = torch.bernoulli(torch.full((4, 1, 3, 3), 0.4, dtype=DT), generator=torch.Generator().manual_seed(1))
    return model, x


def per_image_bound(model, x, k, repeats):
    """``repeats`` independent draws of L_k for each image, from `importance_weights`: (repeats, N)."""
    with torch.no_grad():
        log_w, _ = vaelib.importance_weights(model, x.repeat(repeats, 1, 1, 1), k)
    return (torch.logsumexp(log_w, 0) - math.log(k)).view(repeats, len(x))


# ---- iwae_loss and importance_weights ------------------------------------------------------------


def test_iwae_loss_at_k_1_is_the_elbo_loss(tiny):
    model, x = tiny
    torch.manual_seed(3)
    one = vaelib.iwae_loss(model, x, 1)
    torch.manual_seed(3)
    mc = vaelib.vae_loss(model, x, analytic_kl=False)  # the same draw of z, the sampled KL
    assert torch.allclose(one, mc, rtol=0, atol=1e-12)
    # and the analytic-KL loss in expectation: many draws of both, per image
    torch.manual_seed(4)
    l1 = per_image_bound(model, x, 1, 20_000)
    with torch.no_grad():
        e = vaelib.elbo(model, x.repeat(20_000, 1, 1, 1)).elbo.view(20_000, len(x))
    se = (l1.var(0) / 20_000 + e.var(0) / 20_000).sqrt()
    assert ((l1.mean(0) - e.mean(0)).abs() < 4 * se).all()


def test_weights_are_the_softmax_of_the_log_weights_and_carry_no_graph(tiny):
    model, x = tiny
    torch.manual_seed(5)
    log_w, w = vaelib.importance_weights(model, x, 7)
    assert log_w.shape == w.shape == (7, len(x))
    assert log_w.requires_grad and not w.requires_grad
    by_hand = (log_w.detach() - log_w.detach().max(0).values).exp()
    assert torch.allclose(w, by_hand / by_hand.sum(0), atol=1e-12)
    assert torch.allclose(w.sum(0), torch.ones(len(x), dtype=DT))
    # each log w_s is log p(x | z_s) + log p(z_s) - log q(z_s | x), here recomputed from the same draws
    torch.manual_seed(5)
    q = model.encode(x)
    z = q.rsample((7,))
    with torch.no_grad():
        expected = model.p_x(z).log_prob(x) + model.prior().log_prob(z) - q.log_prob(z)
    assert torch.allclose(log_w.detach(), expected, atol=1e-10)


def test_the_gradient_of_l_k_is_the_self_normalised_weighted_gradient(tiny):
    """grad L_k = sum_s w~_s grad log w_s: per-sample gradients, weighted by hand, against autograd."""
    model, x = tiny
    k, params = 6, list(model.parameters())
    torch.manual_seed(6)
    log_w, _ = vaelib.importance_weights(model, x, k)
    torch.manual_seed(6)
    loss = vaelib.iwae_loss(model, x, k)  # the same draws
    assert torch.allclose(loss, -(torch.logsumexp(log_w, 0) - math.log(k)).mean(), atol=1e-12)
    autograd = torch.cat([g.flatten() for g in torch.autograd.grad(loss, params, retain_graph=True)])
    weights = log_w.detach().exp() / log_w.detach().exp().sum(0)  # no softmax: plain exp and divide
    weighted = torch.zeros_like(autograd)
    unweighted = torch.zeros_like(autograd)
    for s in range(k):
        for n in range(len(x)):
            g = torch.autograd.grad(log_w[s, n], params, retain_graph=True, allow_unused=True)
            g = torch.cat([(torch.zeros_like(p) if gi is None else gi).flatten() for p, gi in zip(params, g)])
            weighted -= weights[s, n] * g / len(x)  # the loss is -mean_n L_k
            unweighted -= g / (k * len(x))  # what plain averaging (the k-sample ELBO) would give
    assert torch.allclose(weighted, autograd, rtol=1e-9, atol=1e-12)
    assert not torch.allclose(unweighted, autograd, rtol=1e-2, atol=1e-3)  # the weights matter here


def test_l_k_rises_with_k_towards_log_p_x(tiny):
    model, x = tiny
    torch.manual_seed(7)
    log_px = log_evidence_by_quadrature(model, x)
    means, ses = [], []
    for k in (1, 5, 50):
        draws = per_image_bound(model, x, k, 4000)
        means.append(draws.mean(0))
        ses.append(draws.std(0) / math.sqrt(4000))
    for (m1, s1), (m2, s2) in zip(zip(means, ses), zip(means[1:], ses[1:])):
        assert (m2 - m1 > 3 * (s1**2 + s2**2).sqrt()).all()
    assert (means[-1] < log_px + 3 * ses[-1]).all()
    assert (log_px - means[-1] < log_px - means[0]).all()


def test_iwae_loss_trains_both_networks(tiny):
    model, x = tiny
    loss = vaelib.iwae_loss(model, x, 5)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("k", [0, -1, 2.5, True, "5"])
def test_bad_k_is_refused(tiny, k):
    model, x = tiny
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        vaelib.iwae_loss(model, x, k)
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        vaelib.importance_weights(model, x, k)


# ---- gradient_snr --------------------------------------------------------------------------------


class Noisy(nn.Module):
    """Two parameter groups whose loss gradient is known: d loss / d theta = m + s * eps per coordinate."""

    def __init__(self, m_enc, s_enc, m_dec, s_dec):
        super().__init__()
        self.encoder = nn.Linear(len(m_enc), 1, bias=False).double()
        self.decoder = nn.Linear(len(m_dec), 1, bias=False).double()
        self.known = [(torch.tensor(m_enc, dtype=DT), torch.tensor(s_enc, dtype=DT)),
                      (torch.tensor(m_dec, dtype=DT), torch.tensor(s_dec, dtype=DT))]
        self.draws = []

    def loss(self, _):
        terms = []
        for layer, (m, s) in zip((self.encoder, self.decoder), self.known):
            g = m + s * torch.randn(len(m), dtype=DT)
            self.draws.append(g)
            terms.append((layer.weight[0] * g).sum())  # a loss linear in the weights, gradient g
        return sum(terms)


def test_gradient_snr_recovers_a_known_signal_to_noise_ratio():
    torch.manual_seed(8)
    model = Noisy([1.0, -2.0, 0.5], [1.0, 0.5, 2.0], [3.0, 0.0], [1.0, 1.0])
    snr = vaelib.gradient_snr(model, model.loss, n_draws=20_000)
    assert set(snr) == {"encoder", "decoder"}
    assert torch.allclose(snr["encoder"], torch.tensor([1.0, 4.0, 0.25], dtype=DT), rtol=0.05, atol=0.02)
    assert torch.allclose(snr["decoder"], torch.tensor([3.0, 0.0], dtype=DT), rtol=0.05, atol=0.02)


def test_gradient_snr_is_mean_over_std_of_the_very_draws():
    torch.manual_seed(9)
    model = Noisy([0.3, -0.1], [1.0, 0.2], [2.0], [0.7])
    snr = vaelib.gradient_snr(model, model.loss, n_draws=50)
    enc = torch.stack(model.draws[0::2])  # per draw: the encoder's gradient, then the decoder's
    dec = torch.stack(model.draws[1::2])
    assert len(enc) == len(dec) == 50
    assert torch.allclose(snr["encoder"], enc.mean(0).abs() / enc.std(0), rtol=1e-10)
    assert torch.allclose(snr["decoder"], dec.mean(0).abs() / dec.std(0), rtol=1e-10)


def test_gradient_snr_edge_cases_and_a_vae():
    model = Noisy([1.0, 0.0], [0.0, 0.0], [1.0], [1.0])  # constant gradients: inf, and 0/0: nan
    snr = vaelib.gradient_snr(model, model.loss, n_draws=3)
    assert snr["encoder"][0] == math.inf and math.isnan(snr["encoder"][1])
    torch.manual_seed(10)
    vae = VAE(latent_dim=2, hidden=(8,), image_shape=(1, 3, 3)).double()
    x = torch.bernoulli(torch.full((5, 1, 3, 3), 0.5, dtype=DT))
    snr = vaelib.gradient_snr(vae, lambda m: vaelib.iwae_loss(m, x, 3), n_draws=4)
    assert snr["encoder"].shape == (sum(p.numel() for p in vae.encoder.parameters()),)
    assert snr["decoder"].shape == (sum(p.numel() for p in vae.decoder.parameters()),)
    assert not (snr["encoder"] < 0).any() and not (snr["decoder"] < 0).any()  # nan where a pixel is 0 in every x
    with pytest.raises(ValueError, match="n_draws must be a whole number >= 2"):
        vaelib.gradient_snr(vae, lambda m: vaelib.iwae_loss(m, x, 3), n_draws=1)
    with pytest.raises(ValueError, match="every group needs parameters"):
        vaelib.gradient_snr(vae, lambda m: vaelib.iwae_loss(m, x, 3), n_draws=2, groups={"none": []})


# ---- the approximation and amortisation gaps, on the linear-Gaussian model --------------------------


class LinearAsVAE:
    """`vaelib.LinearGaussianModel` with the interface the gap helpers use (decode, log_likelihood,
    prior, encode). Its 'encoder' is a deliberately imperfect amortised q: the exact posterior
    mean shifted by 0.4, with 1.5 times the posterior's marginal standard deviations."""

    def __init__(self, lgm):
        self.lgm = lgm

    def decode(self, z):
        return z

    def log_likelihood(self, x, z):
        return self.lgm.log_likelihood(x, z)

    def prior(self):
        zeros = torch.zeros(self.lgm.d, dtype=DT)
        return vaelib.DiagonalNormal(zeros, zeros)

    def encode(self, x):
        mean, scale_tril = self.lgm.posterior(x)
        variance = (scale_tril @ scale_tril.T).diagonal()
        return vaelib.DiagonalNormal(mean + 0.4, (2.25 * variance).log().expand_as(mean))


@pytest.fixture
def linear():
    g = torch.Generator().manual_seed(11)
    W = torch.randn(6, 2, generator=g, dtype=DT)
    W[:, 1] += W[:, 0]  # correlated columns, so a correlated posterior that no diagonal Gaussian matches
    lgm = vaelib.LinearGaussianModel(W, torch.randn(6, generator=g, dtype=DT), noise_std=0.7)
    _, x = lgm.sample(8, generator=g)
    return lgm, x


def exact_optimal_diagonal(lgm, x):
    """The diagonal Gaussian closest to p(z|x) = N(m, Lambda^-1) in KL(q || p): mean m, variances 1 / Lambda_jj;
    its KL to the posterior, the approximation gap, is (sum_j log Lambda_jj - log det Lambda) / 2 for every x."""
    mean, scale_tril = lgm.posterior(x)
    precision = torch.cholesky_inverse(scale_tril)
    gap = 0.5 * (precision.diagonal().log().sum() - torch.logdet(precision))
    return mean, -precision.diagonal().log(), gap


def test_local_posterior_is_the_optimal_diagonal_gaussian(linear):
    lgm, x = linear
    torch.manual_seed(12)
    q = vaelib.optimise_local_posterior(LinearAsVAE(lgm), x, steps=600, lr=0.05, n_samples=16)
    mean, logvar, gap = exact_optimal_diagonal(lgm, x)
    assert gap > 0.2  # the posterior is correlated, so no diagonal Gaussian is exact
    assert torch.allclose(q.mu, mean, atol=0.03) and torch.allclose(q.logvar, logvar.expand_as(q.logvar), atol=0.05)
    exact_gap = lgm.log_marginal(x) - lgm.elbo(x, q.mu, q.logvar)
    assert torch.allclose(exact_gap, gap.expand_as(exact_gap), atol=0.01)


def test_inference_gaps_match_the_closed_forms(linear):
    lgm, x = linear
    model = LinearAsVAE(lgm)
    torch.manual_seed(13)
    gaps = vaelib.inference_gaps(model, x, k=2000, steps=600, lr=0.05, n_samples=16, n_elbo=20_000)
    _, _, gap = exact_optimal_diagonal(lgm, x)
    log_px = lgm.log_marginal(x)
    assert torch.allclose(gaps["log_px"], log_px, atol=0.05)
    assert abs(gaps["approximation_gap"].mean() - gap) < 0.03
    enc = model.encode(x)
    exact_amortisation = lgm.elbo(x, gaps["local"].mu, gaps["local"].logvar) - lgm.elbo(x, enc.mu, enc.logvar)
    assert (exact_amortisation > 0.2).all()  # the shifted, widened 'encoder' loses to q* on every x
    assert torch.allclose(gaps["amortisation_gap"], exact_amortisation, rtol=0.02, atol=0.1)
    total = gaps["approximation_gap"] + gaps["amortisation_gap"]
    assert torch.allclose(total, gaps["log_px"] - gaps["elbo_amortised"], atol=1e-9)
    exact_elbo = lgm.elbo(x, enc.mu, enc.logvar)
    assert torch.allclose(vaelib.elbo_of(model, x, enc, 20_000), exact_elbo, rtol=0.01, atol=0.1)


def test_gap_helpers_refuse_bad_settings(linear):
    lgm, x = linear
    model = LinearAsVAE(lgm)
    for kwargs, message in [({"steps": 0}, "steps must be"), ({"lr": 0.0}, "lr must be positive"),
                            ({"n_samples": 0}, "n_samples must be")]:
        with pytest.raises(ValueError, match=message):
            vaelib.optimise_local_posterior(model, x, **kwargs)
    with pytest.raises(ValueError, match="one Gaussian per image"):
        vaelib.optimise_local_posterior(model, x, init=model.encode(x[:3]))
    with pytest.raises(ValueError, match="one Gaussian per image"):
        vaelib.elbo_of(model, x, model.encode(x[:3]))
    with pytest.raises(ValueError, match="k must be"):
        vaelib.inference_gaps(model, x, k=0)


# ---- the recipe: train_mnist_model(iwae_k=...) ---------------------------------------------------


BASE = dict(kind="vae", latent_dim=2, hidden=(16,), epochs=1, limit=256, device="cpu", progress=False)


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_iwae_k_is_a_run_of_its_own_and_k_1_keeps_the_elbo_runs_names(tmp_path):
    base, _ = vaelib.train_mnist_model(**BASE, runs=tmp_path)
    (base_path,) = tmp_path.iterdir()
    stored = torch.load(base_path, weights_only=False)["config"]["loss"]
    assert set(stored) == {"beta", "free_bits", "kl_warmup_steps", "analytic_kl"}  # no iwae_k at k = 1
    same, _ = vaelib.train_mnist_model(**BASE, iwae_k=1, runs=tmp_path)
    assert list(tmp_path.iterdir()) == [base_path] and torch.equal(weights(same), weights(base))
    five, history = vaelib.train_mnist_model(**BASE, iwae_k=5, runs=tmp_path)
    new = set(tmp_path.iterdir()) - {base_path}
    assert len(new) == 1 and not torch.equal(weights(five), weights(base))
    assert torch.load(new.pop(), weights_only=False)["config"]["loss"]["iwae_k"] == 5
    vaelib.train_mnist_model(**BASE, iwae_k=50, runs=tmp_path)
    assert len(list(tmp_path.iterdir())) == 3
    assert 100 < history["loss"][0] < 600  # -L_5 of binarised MNIST in nats, not a mean over pixels


@pytest.mark.parametrize("bad, message", [
    (dict(iwae_k=0), "iwae_k must be a whole number"),
    (dict(iwae_k=2.0), "iwae_k must be a whole number"),
    (dict(iwae_k=5, beta=2.0), "needs kind='vae', beta=1"),
    (dict(iwae_k=5, free_bits=0.5), "needs kind='vae', beta=1"),
    (dict(iwae_k=5, kl_warmup_steps=10), "needs kind='vae', beta=1"),
    (dict(iwae_k=5, analytic_kl=False), "needs kind='vae', beta=1"),
    (dict(iwae_k=5, kind="ae"), "needs kind='vae', beta=1"),
])
def test_bad_iwae_settings_are_named(tmp_path, bad, message):
    with pytest.raises(ValueError, match=message):
        vaelib.train_mnist_model(**{**BASE, **bad}, runs=tmp_path)


def test_the_gap_of_l_k_is_var_w_over_2k_p_squared_for_large_k():
    """Chapter 10's asymptotic gap log p(x) - L_k ~ Var_q[w] / (2 k p(x)^2), on a 1-D Gaussian model
    where p(x) is closed-form and E_q[w^2] a quadrature. The gap is estimated without bias and with
    little noise as the mean of r - 1 - log r, r = (mean of k weights) / p(x), since E[r] = 1."""
    normal = torch.distributions.Normal
    noise_var, x = 0.5, torch.tensor(1.2, dtype=DT)
    log_px = normal(torch.tensor(0.0, dtype=DT), math.sqrt(1 + noise_var)).log_prob(x)  # z ~ N(0,1), x|z ~ N(z, 0.5)
    q = normal(torch.tensor(0.5, dtype=DT), torch.tensor(0.9, dtype=DT))  # a proposal off the posterior

    def log_w(z):
        return normal(0.0, 1.0).log_prob(z) + normal(z, math.sqrt(noise_var)).log_prob(x) - q.log_prob(z)

    grid = torch.linspace(-15, 15, 300_001, dtype=DT)
    relative_var = torch.trapezoid((2 * log_w(grid) + q.log_prob(grid)).exp(), grid) / (2 * log_px).exp() - 1
    generator = torch.Generator().manual_seed(0)
    for k in (50, 200, 1000):
        z = q.mean + q.stddev * torch.randn(20_000, k, dtype=DT, generator=generator)
        log_r = torch.logsumexp(log_w(z), 1) - math.log(k) - log_px
        gap = (log_r.exp() - 1 - log_r).mean()
        assert gap.item() == pytest.approx(relative_var.item() / (2 * k), rel=0.05), k
