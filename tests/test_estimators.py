import math

import pytest
import torch

import vaelib
from vaelib import gradient_stats, pathwise_grad, quadratic_cost_variances, score_function_grad

DT = torch.float64

# costs with known E_{N(mu, sigma^2)}[f] and hence known gradients (d/dmu, d/dsigma)
COSTS = {
    "quadratic": (lambda z: (z - 0.5) ** 2, lambda m, s: (2 * (m - 0.5), 2 * s)),
    "cos2": (lambda z: torch.cos(2 * z),
             lambda m, s: (-2 * math.sin(2 * m) * math.exp(-2 * s**2), -4 * s * math.cos(2 * m) * math.exp(-2 * s**2))),
    "exp": (lambda z: torch.exp(0.5 * z),
            lambda m, s: (0.5 * math.exp(0.5 * m + s**2 / 8), s / 4 * math.exp(0.5 * m + s**2 / 8))),
}
POINTS = [(0.0, 1.0), (1.0, 0.5), (-1.0, 2.0)]


@pytest.mark.parametrize("cost", COSTS)
@pytest.mark.parametrize("estimator", ["pathwise", "score", "score-loo", "score-optimal"])
def test_estimators_are_unbiased(cost, estimator):
    f, exact = COSTS[cost]
    torch.manual_seed(0)
    mu = torch.tensor([m for m, _ in POINTS], dtype=DT)
    log_sigma = torch.tensor([math.log(s) for _, s in POINTS], dtype=DT)
    if estimator == "pathwise":
        g_mu, g_sigma = pathwise_grad(f, mu, log_sigma, (40_000, 4))
    else:
        baseline = {"score": None, "score-loo": "loo", "score-optimal": "optimal"}[estimator]
        g_mu, g_sigma = score_function_grad(f, mu, log_sigma, (40_000, 4), baseline=baseline)
    for g, which in ((g_mu, 0), (g_sigma, 1)):
        stats = gradient_stats(g.mean(1))  # 40 000 independent 4-sample estimates
        want = torch.tensor([exact(m, s)[which] for m, s in POINTS], dtype=DT)
        assert ((stats.mean - want).abs() < 4 * stats.mean_se).all(), (estimator, which, stats.mean, want)


@pytest.mark.parametrize("k", [-2.0, 0.0, 1.0, 3.0])
def test_quadratic_variances_match_the_closed_forms(k):
    torch.manual_seed(1)
    mu, log_sigma = torch.ones(1, dtype=DT), torch.zeros(1, dtype=DT)
    f = lambda z: (z - k) ** 2  # noqa: E731
    want_pw, want_sf = quadratic_cost_variances(1.0, 1.0, k)
    got_pw = gradient_stats(pathwise_grad(f, mu, log_sigma, 400_000)[0]).variance.item()
    got_sf = gradient_stats(score_function_grad(f, mu, log_sigma, 400_000)[0]).variance.item()
    assert got_pw == pytest.approx(want_pw.item(), rel=0.05)
    assert got_sf == pytest.approx(want_sf.item(), rel=0.05)


@pytest.mark.parametrize("baseline", [None, "mean", "optimal"])
@pytest.mark.parametrize("mu,sigma,k", [(1.0, 1.0, 2.5), (0.5, 2.0, -1.0)])
def test_baseline_variances_match_monte_carlo(baseline, mu, sigma, k):
    # the closed forms against the empirical variance of (f(z) - b) * score with the exact b
    torch.manual_seed(4)
    a = mu - k
    b = {None: 0.0, "mean": a**2 + sigma**2, "optimal": a**2 + 3 * sigma**2}[baseline]
    f = lambda z: (z - k) ** 2 - b  # noqa: E731
    m, log_s = torch.tensor([mu], dtype=DT), torch.tensor([math.log(sigma)], dtype=DT)
    got = gradient_stats(score_function_grad(f, m, log_s, 1_000_000)[0]).variance.item()
    want = quadratic_cost_variances(mu, sigma, k, baseline=baseline)[1].item()
    assert got == pytest.approx(want, rel=0.03)
    # and b* is the minimiser: the variance is a parabola in b with its vertex there
    if baseline == "optimal":
        for other in (None, "mean"):
            assert want < quadratic_cost_variances(mu, sigma, k, baseline=other)[1].item()


def test_course_plan_values_at_mu_sigma_one_k_zero():
    pathwise, score = quadratic_cost_variances(1.0, 1.0, 0.0)
    assert (pathwise.item(), score.item()) == (4.0, 30.0)


def test_pathwise_loses_on_a_rapidly_oscillating_cost():
    torch.manual_seed(2)
    mu, log_sigma = torch.ones(1, dtype=DT), torch.zeros(1, dtype=DT)
    f = lambda z: torch.cos(5 * z)  # noqa: E731
    var_pw = gradient_stats(pathwise_grad(f, mu, log_sigma, 200_000)[0]).variance.item()
    var_sf = gradient_stats(score_function_grad(f, mu, log_sigma, 200_000)[0]).variance.item()
    assert var_pw > 10 * var_sf  # about 12.5 against 0.5


@pytest.mark.parametrize("k", [-2.0, 0.0, 1.0, 3.0])
def test_baselines_never_increase_score_function_variance_on_the_quadratic(k):
    torch.manual_seed(3)
    mu, log_sigma = torch.ones(1, dtype=DT), torch.zeros(1, dtype=DT)
    f = lambda z: (z - k) ** 2  # noqa: E731
    expected_f = (1.0 - k) ** 2 + 1.0  # E[f], the natural constant baseline

    def variance(baseline):
        g, _ = score_function_grad(f, mu, log_sigma, (100_000, 8), baseline=baseline)
        return gradient_stats(g.mean(1))

    plain = variance(None)
    for baseline in (expected_f, "loo", "optimal"):
        stats = variance(baseline)
        assert stats.variance.item() < plain.variance.item(), baseline


def test_variance_falls_as_one_over_the_number_of_samples():
    torch.manual_seed(4)
    mu, log_sigma = torch.zeros(1, dtype=DT), torch.zeros(1, dtype=DT)
    f = lambda z: z**2  # noqa: E731
    one = gradient_stats(pathwise_grad(f, mu, log_sigma, (100_000, 1))[0].mean(1)).variance
    sixteen = gradient_stats(pathwise_grad(f, mu, log_sigma, (100_000, 16))[0].mean(1)).variance
    assert (one / sixteen).item() == pytest.approx(16, rel=0.05)


def test_gradient_stats_on_known_data():
    torch.manual_seed(5)
    x = 3.0 + 2.0 * torch.randn(200_000, 2, dtype=DT)
    s = gradient_stats(x)
    assert torch.allclose(s.mean, torch.full((2,), 3.0, dtype=DT), atol=4 * s.mean_se.max().item())
    assert torch.allclose(s.variance, torch.full((2,), 4.0, dtype=DT), atol=4 * s.variance_se.max().item())
    # for a normal, se(var) = var sqrt(2 / R)
    assert s.variance_se[0].item() == pytest.approx(4.0 * math.sqrt(2 / 200_000), rel=0.05)
    with pytest.raises(ValueError, match="at least 2"):
        gradient_stats(x[:1])


def test_estimator_input_errors():
    z = torch.zeros(2)
    with pytest.raises(ValueError, match="one shape"):
        pathwise_grad(torch.sin, z, torch.zeros(3), 4)
    with pytest.raises(ValueError, match="positive int or shape"):
        score_function_grad(torch.sin, z, z, 0)
    with pytest.raises(ValueError, match="baseline must be"):
        score_function_grad(torch.sin, z, z, 4, baseline="mean")
    with pytest.raises(ValueError, match="at least 2 samples"):
        score_function_grad(torch.sin, z, z, 1, baseline="loo")


# ---- on a VAE encoder -----------------------------------------------------------------------------


@pytest.fixture
def tiny_vae():
    torch.manual_seed(6)
    model = vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 2, 3)).double()
    x = torch.bernoulli(torch.full((3, 1, 2, 3), 0.4, dtype=DT), generator=torch.Generator().manual_seed(7))
    return model, x


def test_encoder_gradient_estimators_agree_in_mean(tiny_vae):
    model, x = tiny_vae
    torch.manual_seed(8)
    runs = {
        "pathwise": vaelib.encoder_gradients(model, x, 3000, "pathwise"),
        "score": vaelib.encoder_gradients(model, x, 3000, "score"),
        "score-loo": vaelib.encoder_gradients(model, x, 3000, "score", n_samples=4, baseline="loo"),
    }
    ref = gradient_stats(runs["pathwise"])
    assert ref.mean.shape == (sum(p.numel() for p in model.encoder.parameters()),)
    for name in ("score", "score-loo"):
        s = gradient_stats(runs[name])
        z = (s.mean - ref.mean) / (s.mean_se**2 + ref.mean_se**2).sqrt().clamp(min=1e-12)
        assert z.abs().max() < 4.5, (name, z.abs().max())
    # the score function is the noisier estimator for this encoder
    assert gradient_stats(runs["score"]).variance.sum() > gradient_stats(runs["pathwise"]).variance.sum()


def test_elbo_surrogate_errors(tiny_vae):
    model, x = tiny_vae
    with pytest.raises(ValueError, match="'pathwise' or 'score'"):
        vaelib.elbo_surrogate(model, x, "reinforce")
    with pytest.raises(ValueError, match="score-function estimator only"):
        vaelib.elbo_surrogate(model, x, "pathwise", baseline="loo")
    with pytest.raises(ValueError, match="None or 'loo'"):
        vaelib.elbo_surrogate(model, x, "score", n_samples=2, baseline="optimal")


def test_surrogate_values_estimate_the_negative_elbo_for_both_estimators(tiny_vae):
    model, x = tiny_vae
    torch.manual_seed(10)
    with torch.no_grad():
        q = model.encode(x)
        # an independent route: E_q[log p(x|z)] by torch.distributions and many samples
        z = q.sample((100_000,))
        log_lik = model.p_x(z.flatten(0, 1)).log_prob(x.repeat(100_000, 1, 1, 1)).view(100_000, 3)
        want = -(log_lik.mean(0) - vaelib.kl_normal(q.mu, q.logvar)).mean()
        for estimator, n, baseline in [("pathwise", 1, None), ("score", 1, None), ("score", 4, "loo")]:
            values = torch.stack([vaelib.elbo_surrogate(model, x, estimator, n, baseline) for _ in range(3000)])
            assert abs(values.mean() - want) < 4 * values.std() / math.sqrt(3000), estimator
