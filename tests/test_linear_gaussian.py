import math

import pytest
import torch
from torch import distributions as D

from vaelib import LinearGaussianModel, kl_mvn

DT = torch.float64


@pytest.fixture
def model():
    g = torch.Generator().manual_seed(0)
    return LinearGaussianModel(torch.randn(6, 3, dtype=DT, generator=g), torch.randn(6, dtype=DT, generator=g), 0.7)


@pytest.fixture
def x(model):
    return model.sample(20, generator=torch.Generator().manual_seed(1))[1]


def random_q(n, d, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, dtype=DT, generator=g), torch.randn(n, d, dtype=DT, generator=g)


def test_log_marginal_matches_the_gaussian_marginal(model, x):
    cov = model.W @ model.W.T + 0.49 * torch.eye(6, dtype=DT)
    assert torch.allclose(model.log_marginal(x), D.MultivariateNormal(model.b, cov).log_prob(x), rtol=1e-10)


def test_posterior_matches_gaussian_conditioning(model, x):
    # from the joint Gaussian of (z, x): E[z|x] = W^T C^-1 (x - b), Cov = I - W^T C^-1 W
    C = model.W @ model.W.T + 0.49 * torch.eye(6, dtype=DT)
    mean_expected = torch.linalg.solve(C, (x - model.b).T).T @ model.W
    cov_expected = torch.eye(3, dtype=DT) - model.W.T @ torch.linalg.solve(C, model.W)
    mean, L = model.posterior(x)
    assert torch.allclose(mean, mean_expected, rtol=1e-10, atol=1e-12)
    assert torch.allclose(L @ L.T, cov_expected, rtol=1e-10, atol=1e-12)


def test_bayes_rule_holds_at_any_z(model, x):
    # log p(x) = log p(x|z) + log p(z) - log p(z|x), for every z
    z = torch.randn(20, 3, dtype=DT, generator=torch.Generator().manual_seed(2))
    mean, L = model.posterior(x)
    rhs = (model.log_likelihood(x, z) + D.Normal(0.0, 1.0).log_prob(z).sum(-1)
           - D.MultivariateNormal(mean, scale_tril=L).log_prob(z))
    assert torch.allclose(model.log_marginal(x), rhs, rtol=1e-10)


def test_elbo_plus_kl_to_posterior_is_log_evidence(model, x):
    mean, L = model.posterior(x)
    for seed in range(5):
        mu_q, logvar_q = random_q(20, 3, seed)
        elbo = model.elbo(x, mu_q, logvar_q)
        gap = kl_mvn(mu_q, torch.diag_embed((0.5 * logvar_q).exp()), mean, L)
        assert torch.allclose(elbo + gap, model.log_marginal(x), rtol=0, atol=1e-8)
        assert (elbo <= model.log_marginal(x)).all()


def test_elbo_closed_form_agrees_with_monte_carlo(model, x):
    torch.manual_seed(3)
    mu_q, logvar_q = random_q(20, 3, 9)
    q = D.Independent(D.Normal(mu_q, (0.5 * logvar_q).exp()), 1)
    z = q.sample((100_000,))  # (S, N, d)
    terms = model.log_likelihood(x, z) + D.Normal(0.0, 1.0).log_prob(z).sum(-1) - q.log_prob(z)
    se = terms.std(0) / math.sqrt(len(z))
    assert (abs(terms.mean(0) - model.elbo(x, mu_q, logvar_q)) < 4 * se).all()
    recon = model.log_likelihood(x, z)
    se = recon.std(0) / math.sqrt(len(z))
    assert (abs(recon.mean(0) - model.expected_log_likelihood(x, mu_q, logvar_q)) < 4 * se).all()


def test_the_gap_closes_at_the_exact_posterior():
    # orthogonal columns make W^T W diagonal, so the exact posterior is a diagonal Gaussian
    Q, _ = torch.linalg.qr(torch.randn(6, 3, dtype=DT, generator=torch.Generator().manual_seed(4)))
    model = LinearGaussianModel(Q * torch.tensor([2.0, 1.0, 0.5], dtype=DT), torch.zeros(6, dtype=DT), 0.5)
    x = model.sample(10, generator=torch.Generator().manual_seed(5))[1]
    mean, L = model.posterior(x)
    assert torch.allclose(L, torch.diag(L.diagonal()), atol=1e-12)
    elbo = model.elbo(x, mean, 2 * L.diagonal().log().expand(10, 3))
    assert torch.allclose(elbo, model.log_marginal(x), rtol=0, atol=1e-10)


def test_elbo_splits_into_reconstruction_minus_kl_to_prior(model, x):
    # an independent route to each term: for z ~ N(mu, diag v), Wz + b has mean W mu + b and
    # covariance W diag(v) W^T, so E_q[log N(x; Wz + b, s^2 I)] = log N(x; W mu + b, s^2 I)
    # - tr(W diag(v) W^T) / (2 s^2); the KL to the prior comes from torch.distributions
    mu_q, logvar_q = random_q(20, 3, 6)
    v = logvar_q.exp()
    plug_in = D.Normal(mu_q @ model.W.T + model.b, model.noise_std).log_prob(x).sum(-1)
    recon = plug_in - (v * model.W.pow(2).sum(0)).sum(-1) / (2 * model.noise_std**2)
    kl = D.kl_divergence(D.Normal(mu_q, v.sqrt()), D.Normal(0.0, 1.0)).sum(-1)
    assert torch.allclose(model.expected_log_likelihood(x, mu_q, logvar_q), recon, rtol=1e-12)
    assert torch.allclose(model.elbo(x, mu_q, logvar_q), recon - kl, rtol=1e-12)


def test_samples_have_the_marginal_covariance(model):
    n = 200_000
    _, x = model.sample(n, generator=torch.Generator().manual_seed(7))
    cov = model.W @ model.W.T + 0.49 * torch.eye(6, dtype=DT)
    se = (cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov**2).sqrt() / math.sqrt(n)
    assert ((torch.cov(x.T) - cov).abs() < 5 * se).all()


def test_bad_inputs_are_named(model, x):
    with pytest.raises(ValueError, match=r"W must be \(D, d\) and b \(D,\)"):
        LinearGaussianModel(torch.zeros(6), torch.zeros(6), 1.0)
    with pytest.raises(ValueError, match=r"W must be \(D, d\) and b \(D,\)"):
        LinearGaussianModel(torch.zeros(6, 2), torch.zeros(5), 1.0)
    with pytest.raises(ValueError, match="noise_std must be positive"):
        LinearGaussianModel(torch.zeros(6, 2), torch.zeros(6), -1.0)
    with pytest.raises(ValueError, match=r"x must be \(N, 6\)"):
        model.log_marginal(torch.zeros(3, 5))
    with pytest.raises(ValueError, match=r"mu_q and logvar_q must be \(20, 3\)"):
        model.elbo(x, torch.zeros(20, 2), torch.zeros(20, 2))


def test_best_diagonal_q_leaves_the_correlation_gap():
    # max over diagonal q of the ELBO falls short of log p(x) by 1/2 (sum log Lambda_ii + log det S);
    # in two dimensions that is -1/2 log(1 - rho^2)
    import vaelib

    g = torch.Generator().manual_seed(8)
    w1 = torch.randn(5, dtype=DT, generator=g)
    W = torch.stack([w1, 0.9 * w1 + 0.4 * torch.randn(5, dtype=DT, generator=g)], 1)
    model = LinearGaussianModel(W, torch.zeros(5, dtype=DT), 0.5)
    x = model.sample(1, generator=g)[1]
    mu, log_std, _ = vaelib.fit_gaussian(lambda m, s: -model.elbo(x, m[None], 2 * s[None]).sum(),
                                         torch.zeros(2, dtype=DT), torch.zeros(2, dtype=DT), steps=4000, lr=0.02)
    gap = (model.log_marginal(x) - model.elbo(x, mu[None], 2 * log_std[None])).item()
    _, L = model.posterior(x)
    S = L @ L.T
    rho = S[0, 1] / S.diagonal().prod().sqrt()
    assert gap == pytest.approx(-0.5 * math.log(1 - rho.item() ** 2), rel=1e-6)
    assert gap == pytest.approx(0.5 * (torch.linalg.inv(S).diagonal().log().sum() + torch.logdet(S)).item(), rel=1e-6)
    assert gap > 0.1


def test_importance_estimate_is_exact_with_the_posterior_as_proposal(model, x):
    # with q = p(z | x) every weight equals p(x): each draw of log p_hat is log p(x), for any S
    mean, L = model.posterior(x)
    q = D.MultivariateNormal(mean, scale_tril=L.expand(len(x), -1, -1))
    torch.manual_seed(0)
    draws = model.log_importance_estimate(x, q, n_samples=3, repeats=5)
    assert draws.shape == (5, len(x))
    assert torch.allclose(draws, model.log_marginal(x).expand_as(draws), atol=1e-10)


def test_importance_estimate_is_unbiased_and_its_log_is_the_elbo_at_one_sample(model, x):
    mean, L = model.posterior(x)
    mu_q, logvar_q = mean + 0.3, (2 * L.diagonal().log() + 0.5).expand_as(mean)  # a deliberately poor q
    q = D.Independent(D.Normal(mu_q, (0.5 * logvar_q).exp()), 1)
    log_px = model.log_marginal(x)
    torch.manual_seed(1)
    one = model.log_importance_estimate(x, q, n_samples=1, repeats=200_000)
    se = one.std(0) / math.sqrt(len(one))
    assert ((one.mean(0) - model.elbo(x, mu_q, logvar_q)).abs() < 4 * se).all()  # E[log p_hat_1] = ELBO
    ratio = (one - log_px).exp()  # p_hat / p(x): mean 1, whatever q
    assert ((ratio.mean(0) - 1).abs() < 4 * ratio.std(0) / math.sqrt(len(ratio))).all()
    ten = model.log_importance_estimate(x, q, n_samples=10, repeats=20_000).mean(0)
    assert (one.mean(0) < ten).all() and (ten < log_px).all()  # Jensen: rises with S, stays below


def test_importance_estimate_checks_its_proposal(model, x):
    wrong = D.Independent(D.Normal(torch.zeros(len(x), 2, dtype=DT), 1.0), 1)
    with pytest.raises(ValueError, match="event shape"):
        model.log_importance_estimate(x, wrong, n_samples=2)
    with pytest.raises(ValueError, match="n_samples"):
        model.log_importance_estimate(x, wrong, n_samples=0)


def test_fisher_identity_on_the_linear_gaussian_model(model, x):
    # grad_W log p(x) by autograd through the closed-form marginal equals the posterior expectation
    # of grad_W log p(x, z) = (x - b - W z) z^T / sigma^2, in closed form and by Monte Carlo
    W = model.W.clone().requires_grad_(True)
    (autograd,) = torch.autograd.grad(LinearGaussianModel(W, model.b, model.noise_std).log_marginal(x).sum(), W)
    m, L = model.posterior(x)
    r = x - model.b
    closed = (r.T @ m - model.W @ (len(x) * L @ L.T + m.T @ m)) / model.noise_std**2
    assert torch.allclose(autograd, closed, atol=1e-10)
    torch.manual_seed(0)
    z = D.MultivariateNormal(m, scale_tril=L.expand(len(x), -1, -1)).sample((20_000,))  # (S, N, d)
    per_sample = torch.einsum("snD,snd->sDd", r - z @ model.W.T, z) / model.noise_std**2
    se = per_sample.std(0) / math.sqrt(len(z))
    assert ((per_sample.mean(0) - autograd).abs() < 4.5 * se).all()
