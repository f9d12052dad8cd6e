import math

import pytest
import torch
from torch import distributions as D

import vaelib
from vaelib import GaussianMixture1D, ScalarLatentModel


WEIGHTS, MEANS, STDS = [0.2, 0.5, 0.3], [-2.0, 0.5, 3.0], [0.6, 1.0, 0.4]


@pytest.fixture
def mixture():
    return GaussianMixture1D(WEIGHTS, MEANS, STDS)


def reference_mixture():
    """The same mixture built from torch.distributions: an independent route."""
    return D.MixtureSameFamily(
        D.Categorical(probs=torch.tensor(WEIGHTS, dtype=torch.float64)),
        D.Normal(torch.tensor(MEANS, dtype=torch.float64), torch.tensor(STDS, dtype=torch.float64)),
    )


def test_log_normal_matches_torch_distributions():
    x = torch.linspace(-3, 3, 7, dtype=torch.float64)
    mean, std = torch.tensor(0.3, dtype=torch.float64), torch.tensor(1.7, dtype=torch.float64)
    assert torch.allclose(vaelib.log_normal(x, mean, std), D.Normal(mean, std).log_prob(x), rtol=1e-12)


def test_mixture_marginal_matches_torch_distributions(mixture):
    x = torch.linspace(-6, 6, 101, dtype=torch.float64)
    assert torch.allclose(mixture.log_marginal(x), reference_mixture().log_prob(x), rtol=1e-12, atol=1e-12)


def test_mixture_marginal_integrates_to_one(mixture):
    x = torch.linspace(-12, 12, 24001, dtype=torch.float64)
    assert torch.trapezoid(mixture.log_marginal(x).exp(), x).item() == pytest.approx(1.0, abs=1e-9)


def test_mixture_posterior_is_bayes_rule(mixture):
    x = torch.tensor([-2.0, 0.0, 1.7, 3.2], dtype=torch.float64)
    components = D.Normal(torch.tensor(MEANS, dtype=torch.float64), torch.tensor(STDS, dtype=torch.float64))
    joint = torch.tensor(WEIGHTS, dtype=torch.float64) * components.log_prob(x[:, None]).exp()
    expected = joint / joint.sum(1, keepdim=True)
    post = mixture.posterior(x)
    assert torch.allclose(post, expected, rtol=1e-10)
    assert torch.allclose(post.sum(1), torch.ones(4, dtype=torch.float64))


def test_equal_variance_posterior_is_logistic_in_x():
    # p(y=1|x) = sigmoid(w x + b), w = (m1 - m0)/s^2, b = (m0^2 - m1^2)/(2 s^2) + log(pi1/pi0)
    pi0, m0, m1, s = 0.3, -1.0, 2.0, 1.5
    model = GaussianMixture1D([pi0, 1 - pi0], [m0, m1], [s, s])
    x = torch.linspace(-5, 6, 50, dtype=torch.float64)
    w, b = (m1 - m0) / s**2, (m0**2 - m1**2) / (2 * s**2) + math.log((1 - pi0) / pi0)
    assert torch.allclose(model.posterior(x)[:, 1], torch.sigmoid(w * x + b), rtol=1e-10)


def test_ancestral_samples_follow_the_mixture(mixture):
    g = torch.Generator().manual_seed(0)
    n = 20000
    z, x = mixture.sample(n, generator=g)
    freq = torch.bincount(z, minlength=3).double() / n
    w = torch.tensor(WEIGHTS, dtype=torch.float64)
    assert ((freq - w).abs() < 4 * (w * (1 - w) / n).sqrt()).all()
    # Kolmogorov-Smirnov distance to the exact CDF, below the 1% critical value 1.63/sqrt(n)
    xs, _ = torch.sort(x)
    comps = D.Normal(torch.tensor(MEANS, dtype=torch.float64), torch.tensor(STDS, dtype=torch.float64))
    cdf = (w * comps.cdf(xs[:, None])).sum(1)
    ecdf = torch.arange(1, n + 1, dtype=torch.float64) / n
    assert (cdf - ecdf).abs().max() < 1.63 / math.sqrt(n)
    # each x was drawn from its own z's component: standardised residuals are N(0, 1)
    r = (x - mixture.means[z]) / mixture.stds[z]
    assert abs(r.mean()) < 4 / math.sqrt(n) and abs(r.std() - 1) < 0.03


def test_maximum_likelihood_recovers_the_mixture(mixture):
    g = torch.Generator().manual_seed(1)
    _, x = mixture.sample(5000, generator=g)
    model = GaussianMixture1D([1 / 3] * 3, [-1.0, 0.0, 1.0], [1.0, 1.0, 1.0])
    data = vaelib.InMemoryData(x)
    vaelib.fit(model, lambda m, batch: -m.log_marginal(batch[0]).mean(), data, epochs=400, batch_size=len(x),
               optimizer=torch.optim.Adam(model.parameters(), lr=0.05), device="cpu", progress=False)
    assert torch.allclose(model.means.detach(), torch.tensor(MEANS, dtype=torch.float64), atol=0.1)
    assert torch.allclose(model.stds.detach(), torch.tensor(STDS, dtype=torch.float64), atol=0.1)
    assert torch.allclose(model.weights.detach(), torch.tensor(WEIGHTS, dtype=torch.float64), atol=0.03)


def test_mixture_rejects_bad_parameters_and_inputs(mixture):
    with pytest.raises(ValueError, match="one length C"):
        GaussianMixture1D([0.5, 0.5], [0.0], [1.0, 1.0])
    with pytest.raises(ValueError, match="must be positive"):
        GaussianMixture1D([0.5, 0.5], [0.0, 1.0], [1.0, -1.0])
    with pytest.raises(ValueError, match="must be finite"):
        GaussianMixture1D([0.5, 0.5], [0.0, float("nan")], [1.0, 1.0])
    with pytest.raises(ValueError, match="1-D tensor of N scalar"):
        mixture.log_marginal(torch.zeros(3, 2))


# ---- the continuous-latent model ---------------------------------------------------------------

W = torch.tensor([1.2, -0.7], dtype=torch.float64)
B = torch.tensor([0.3, 0.5], dtype=torch.float64)
SIGMA = 0.4


def linear_model():
    return ScalarLatentModel(lambda z: z[:, None] * W + B, SIGMA)


def spiral_model():
    return ScalarLatentModel(lambda z: torch.stack([z * torch.cos(2 * z), z * torch.sin(2 * z)], 1), 0.3)


def test_linear_decoder_marginal_is_the_gaussian_closed_form():
    # z ~ N(0,1), x = W z + B + noise  =>  x ~ N(B, W W^T + sigma^2 I)
    x = torch.tensor([[0.0, 0.0], [1.5, -0.3], [-2.0, 2.0]], dtype=torch.float64)
    exact = D.MultivariateNormal(B, torch.outer(W, W) + SIGMA**2 * torch.eye(2)).log_prob(x)
    assert torch.allclose(linear_model().log_marginal(x), exact, rtol=1e-9)


def test_linear_decoder_posterior_matches_the_closed_form():
    x = torch.tensor([[1.5, -0.3], [-2.0, 2.0]], dtype=torch.float64)
    z, density = linear_model().posterior_density(x)
    precision = 1 + W @ W / SIGMA**2
    mean, var = ((x - B) @ W / SIGMA**2) / precision, 1 / precision
    got_mean = torch.trapezoid(density * z, z, dim=1)
    got_var = torch.trapezoid(density * (z - got_mean[:, None]) ** 2, z, dim=1)
    assert torch.allclose(torch.trapezoid(density, z, dim=1), torch.ones(2, dtype=torch.float64), atol=1e-9)
    assert torch.allclose(got_mean, mean, atol=1e-8) and torch.allclose(got_var, var.expand(2), atol=1e-8)


def test_nonlinear_marginal_quadrature_agrees_with_monte_carlo():
    model = spiral_model()
    x = torch.tensor([[0.5, 0.2], [-1.0, 1.0]], dtype=torch.float64)
    z = torch.randn(400_000, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    lik = model.log_likelihood(x, z).exp()  # p(x|z_s), z_s ~ p(z); its mean estimates p(x)
    estimate, se = lik.mean(1), lik.std(1) / math.sqrt(len(z))
    exact = model.log_marginal(x).exp()
    assert ((estimate - exact).abs() < 4 * se).all()


def test_nonlinear_marginal_is_a_density_over_x():
    model = spiral_model()
    t = torch.linspace(-8, 8, 321, dtype=torch.float64)
    xx, yy = torch.meshgrid(t, t, indexing="ij")
    p = model.log_marginal(torch.stack([xx.ravel(), yy.ravel()], 1), n_grid=801).exp().view(321, 321)
    assert torch.trapezoid(torch.trapezoid(p, t, dim=1), t).item() == pytest.approx(1.0, abs=2e-3)


def test_naive_monte_carlo_estimate_converges():
    model = spiral_model()
    x = torch.tensor([[0.5, 0.2]], dtype=torch.float64)
    est = model.log_marginal_mc(x, 400_000, generator=torch.Generator().manual_seed(1))
    assert est.item() == pytest.approx(model.log_marginal(x).item(), abs=0.02)


def test_scalar_latent_samples_match_the_marginal():
    model = linear_model()
    n = 100_000
    _, x = model.sample(n, generator=torch.Generator().manual_seed(2))
    cov = torch.outer(W, W) + SIGMA**2 * torch.eye(2, dtype=torch.float64)
    scale = cov.diag().max().item()
    assert torch.allclose(x.mean(0), B, atol=4 * math.sqrt(scale / n))
    assert torch.allclose(torch.cov(x.T), cov, atol=4 * scale * math.sqrt(2 / n))  # 4 standard errors


def test_scalar_latent_model_input_errors():
    model = linear_model()
    with pytest.raises(ValueError, match="noise_std must be positive"):
        ScalarLatentModel(lambda z: z[:, None], 0.0)
    with pytest.raises(ValueError, match=r"x must be \(N, 2\)"):
        model.log_marginal(torch.zeros(3, 3))
    with pytest.raises(ValueError, match="decoder must map"):
        ScalarLatentModel(lambda z: z, 1.0).log_marginal(torch.zeros(1, 1))


def test_em_never_decreases_the_likelihood_and_stops_at_a_stationary_point(mixture):
    _, x = mixture.sample(3000, generator=torch.Generator().manual_seed(5))
    model = GaussianMixture1D([1 / 3] * 3, [-1.0, 0.0, 1.0], [1.0] * 3)
    lls = [model.log_marginal(x).mean().item()]
    for _ in range(300):
        new = model.em_step(x)
        # the M-step maximises the ELBO at q = the old posterior: that ELBO rises above the old log-likelihood
        r = model.posterior(x)
        elbo_new = (r * (new.log_joint(x) - r.clamp(min=1e-300).log())).sum(1).mean().item()
        assert elbo_new >= lls[-1] - 1e-12
        model = new
        lls.append(model.log_marginal(x).mean().item())
        assert lls[-1] >= elbo_new - 1e-12  # and log p(x) >= ELBO under the new parameters
    assert all(b >= a - 1e-12 for a, b in zip(lls, lls[1:]))
    # at convergence the gradient of the log-likelihood (by autograd) vanishes
    model.zero_grad()
    (-model.log_marginal(x).mean()).backward()
    assert max(p.grad.abs().max().item() for p in model.parameters()) < 1e-4
    assert sorted(model.means.tolist()) == pytest.approx(MEANS, abs=0.15)
