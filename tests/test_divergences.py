import math

import pytest
import torch
from torch import distributions as D

import vaelib
from vaelib import kl_categorical, kl_grid, kl_mvn, kl_normal, mc_kl

DT = torch.float64


def rand_tril(*batch, k, generator):
    A = torch.randn(*batch, k, k, dtype=DT, generator=generator)
    L = torch.tril(A, diagonal=-1) + torch.diag_embed(torch.rand(*batch, k, dtype=DT, generator=generator) + 0.3)
    return L


def diag_normal(mu, logvar):
    return D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)


def test_kl_normal_matches_torch_distributions_on_random_batches():
    g = torch.Generator().manual_seed(0)
    mu_q, mu_p = torch.randn(2, 64, 7, dtype=DT, generator=g).unbind(0)
    lv_q, lv_p = (2 * torch.randn(2, 64, 7, dtype=DT, generator=g)).unbind(0)
    expected = D.kl_divergence(diag_normal(mu_q, lv_q), diag_normal(mu_p, lv_p))
    assert torch.allclose(kl_normal(mu_q, lv_q, mu_p, lv_p), expected, rtol=1e-10, atol=0)
    standard = D.kl_divergence(diag_normal(mu_q, lv_q), diag_normal(torch.zeros_like(mu_q), torch.zeros_like(lv_q)))
    assert torch.allclose(kl_normal(mu_q, lv_q), standard, rtol=1e-10, atol=0)
    assert kl_normal(mu_q, lv_q).shape == (64,)


def test_kl_normal_per_dim_matches_univariate_torch_distributions():
    g = torch.Generator().manual_seed(10)
    mu_q, mu_p = torch.randn(2, 32, 5, dtype=DT, generator=g).unbind(0)
    lv_q, lv_p = (2 * torch.randn(2, 32, 5, dtype=DT, generator=g)).unbind(0)
    expected = D.kl_divergence(D.Normal(mu_q, (0.5 * lv_q).exp()), D.Normal(mu_p, (0.5 * lv_p).exp()))
    assert torch.allclose(vaelib.kl_normal_per_dim(mu_q, lv_q, mu_p, lv_p), expected, rtol=1e-10, atol=0)
    standard = D.kl_divergence(D.Normal(mu_q, (0.5 * lv_q).exp()), D.Normal(0.0, 1.0))
    assert torch.allclose(vaelib.kl_normal_per_dim(mu_q, lv_q), standard, rtol=1e-10, atol=0)


def test_kl_normal_broadcasts_p_over_the_batch():
    g = torch.Generator().manual_seed(1)
    mu_q, lv_q = torch.randn(2, 10, 3, dtype=DT, generator=g).unbind(0)
    mu_p, lv_p = torch.randn(2, 3, dtype=DT, generator=g).unbind(0)
    assert torch.allclose(kl_normal(mu_q, lv_q, mu_p, lv_p), kl_normal(mu_q, lv_q, mu_p.expand(10, 3), lv_p.expand(10, 3)))


def test_kl_normal_univariate_formula():
    # KL(N(m1, s1^2) || N(m2, s2^2)) = log(s2/s1) + (s1^2 + (m1 - m2)^2) / (2 s2^2) - 1/2
    for m1, s1, m2, s2 in [(0.0, 1.0, 1.0, 2.0), (1.0, 2.0, 0.0, 1.0), (-3.0, 0.1, 2.0, 5.0)]:
        formula = math.log(s2 / s1) + (s1**2 + (m1 - m2) ** 2) / (2 * s2**2) - 0.5
        got = kl_normal(torch.tensor([m1], dtype=DT), torch.tensor([2 * math.log(s1)], dtype=DT),
                        torch.tensor([m2], dtype=DT), torch.tensor([2 * math.log(s2)], dtype=DT))
        assert got.item() == pytest.approx(formula, rel=1e-12)


def test_kl_is_not_symmetric_nor_a_metric():
    one = lambda m, s: (torch.tensor([m], dtype=DT), torch.tensor([2 * math.log(s)], dtype=DT))  # noqa: E731
    a, b, c = one(0.0, 1.0), one(1.0, 2.0), one(2.0, 1.0)
    ab, ba = kl_normal(*a, *b).item(), kl_normal(*b, *a).item()
    assert ab == pytest.approx(math.log(2) + 2 / 8 - 0.5) and ba == pytest.approx(-math.log(2) + 5 / 2 - 0.5)
    assert abs(ab - ba) > 0.8
    # no triangle inequality: N(0,1) -> N(2,1) costs 2 nats, via N(1,1) only 0.5 + 0.5
    m = one(1.0, 1.0)
    assert kl_normal(*a, *c).item() > kl_normal(*a, *m).item() + kl_normal(*m, *c).item()


def test_kl_mvn_matches_torch_distributions_on_random_batches():
    g = torch.Generator().manual_seed(2)
    k = 5
    mu_q, mu_p = torch.randn(2, 32, k, dtype=DT, generator=g).unbind(0)
    Lq, Lp = rand_tril(32, k=k, generator=g), rand_tril(32, k=k, generator=g)
    expected = D.kl_divergence(D.MultivariateNormal(mu_q, scale_tril=Lq), D.MultivariateNormal(mu_p, scale_tril=Lp))
    assert torch.allclose(kl_mvn(mu_q, Lq, mu_p, Lp), expected, rtol=1e-10, atol=0)
    # one p for the whole batch
    assert torch.allclose(kl_mvn(mu_q, Lq, mu_p[0], Lp[0]), kl_mvn(mu_q, Lq, mu_p[:1].expand(32, k), Lp[:1].expand(32, k, k)))


def test_kl_mvn_reduces_to_kl_normal_for_diagonal_factors():
    g = torch.Generator().manual_seed(3)
    mu_q, mu_p, lv_q, lv_p = torch.randn(4, 8, 4, dtype=DT, generator=g).unbind(0)
    got = kl_mvn(mu_q, torch.diag_embed((0.5 * lv_q).exp()), mu_p, torch.diag_embed((0.5 * lv_p).exp()))
    assert torch.allclose(got, kl_normal(mu_q, lv_q, mu_p, lv_p), rtol=1e-10)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_closed_forms_agree_with_monte_carlo(seed):
    torch.manual_seed(seed)
    g = torch.Generator().manual_seed(10 + seed)
    mu_q, mu_p, lv_q, lv_p = (0.7 * torch.randn(4, 3, dtype=DT, generator=g)).unbind(0)
    est, se = mc_kl(diag_normal(mu_q, lv_q), diag_normal(mu_p, lv_p), 200_000)
    assert abs(est - kl_normal(mu_q, lv_q, mu_p, lv_p)) < 4 * se
    Lq, Lp = rand_tril(k=3, generator=g), rand_tril(k=3, generator=g)
    est, se = mc_kl(D.MultivariateNormal(mu_q, scale_tril=Lq), D.MultivariateNormal(mu_p, scale_tril=Lp), 200_000)
    assert abs(est - kl_mvn(mu_q, Lq, mu_p, Lp)) < 4 * se


def test_mc_kl_is_batched_and_its_error_shrinks():
    torch.manual_seed(0)
    q = D.Normal(torch.zeros(3, dtype=DT), torch.ones(3, dtype=DT))
    p = D.Normal(torch.tensor([0.5, 1.0, 2.0], dtype=DT), torch.ones(3, dtype=DT))
    est, se = mc_kl(q, p, 4000)
    assert est.shape == se.shape == (3,)
    _, se_big = mc_kl(q, p, 400_000)
    assert torch.allclose(se_big * 10, se, rtol=0.1)  # 1/sqrt(S)


def test_kl_is_non_negative_and_zero_only_at_equality():
    g = torch.Generator().manual_seed(4)
    mu_q, mu_p, lv_q, lv_p = torch.randn(4, 1000, 3, dtype=DT, generator=g).unbind(0)
    assert (kl_normal(mu_q, lv_q, mu_p, lv_p) > 0).all()
    assert torch.equal(kl_normal(mu_q, lv_q, mu_q, lv_q), torch.zeros(1000, dtype=DT))
    L = rand_tril(200, k=3, generator=g)
    assert (kl_mvn(mu_q[:200], L, mu_p[:200], rand_tril(200, k=3, generator=g)) > 0).all()
    assert kl_mvn(mu_q[:200], L, mu_q[:200], L).abs().max() < 1e-12
    q = torch.softmax(torch.randn(1000, 6, dtype=DT, generator=g), -1)
    p = torch.softmax(torch.randn(1000, 6, dtype=DT, generator=g), -1)
    assert (kl_categorical(q, p) > 0).all() and kl_categorical(q, q).abs().max() < 1e-15


def test_kl_categorical_matches_torch_and_handles_zeros():
    g = torch.Generator().manual_seed(5)
    q = torch.softmax(torch.randn(50, 4, dtype=DT, generator=g), -1)
    p = torch.softmax(torch.randn(50, 4, dtype=DT, generator=g), -1)
    expected = D.kl_divergence(D.Categorical(probs=q), D.Categorical(probs=p))
    assert torch.allclose(kl_categorical(q, p), expected, rtol=1e-10)
    assert kl_categorical(torch.tensor([0.5, 0.5, 0.0]), torch.tensor([0.25, 0.25, 0.5])).item() == pytest.approx(math.log(2))
    assert kl_categorical(torch.tensor([0.5, 0.5]), torch.tensor([1.0, 0.0])).item() == math.inf


def test_kl_grid_matches_the_closed_form():
    x = torch.linspace(-20, 20, 40001, dtype=DT)
    log_q = vaelib.log_normal(x, torch.tensor(1.0, dtype=DT), torch.tensor(0.5, dtype=DT))
    log_p = vaelib.log_normal(x, torch.tensor(-1.0, dtype=DT), torch.tensor(2.0, dtype=DT))
    exact = kl_normal(torch.tensor([1.0], dtype=DT), torch.tensor([2 * math.log(0.5)], dtype=DT),
                      torch.tensor([-1.0], dtype=DT), torch.tensor([2 * math.log(2.0)], dtype=DT))
    assert kl_grid(log_q, log_p, x).item() == pytest.approx(exact.item(), rel=1e-8)


def test_reverse_kl_diagonal_fit_reaches_inverse_precision_diagonal():
    # KL(q || p) over diagonal q is minimised at mu_p with variances 1 / Lambda_ii
    Sigma = torch.tensor([[1.0, 0.9, 0.3], [0.9, 1.0, 0.2], [0.3, 0.2, 0.5]], dtype=DT)
    mu_p, L_p = torch.tensor([1.0, -1.0, 0.5], dtype=DT), torch.linalg.cholesky(Sigma)
    reverse = lambda m, s: kl_mvn(m, torch.diag_embed(s.exp()), mu_p, L_p)  # noqa: E731
    mu, log_sigma, trace = vaelib.fit_gaussian(reverse, torch.zeros(3, dtype=DT), torch.zeros(3, dtype=DT),
                                               steps=3000, lr=0.02)
    optimum = 1 / torch.linalg.inv(Sigma).diagonal()
    assert torch.allclose(mu, mu_p, atol=1e-6)
    assert torch.allclose((2 * log_sigma).exp(), optimum, rtol=1e-5)
    assert ((2 * log_sigma).exp() < Sigma.diagonal()).all(), "reverse KL underestimates the marginal variances"
    assert trace[-1] <= trace[0]
    # the forward KL over diagonal q is minimised at the marginal variances
    forward = lambda m, s: kl_mvn(mu_p, L_p, m, torch.diag_embed(s.exp()))  # noqa: E731
    mu_f, log_sigma_f, _ = vaelib.fit_gaussian(forward, torch.zeros(3, dtype=DT), torch.zeros(3, dtype=DT),
                                                steps=3000, lr=0.02)
    assert torch.allclose(mu_f, mu_p, atol=1e-6) and torch.allclose((2 * log_sigma_f).exp(), Sigma.diagonal(), rtol=1e-5)


def test_forward_kl_matches_moments_and_reverse_kl_picks_a_mode():
    target = vaelib.GaussianMixture1D([0.5, 0.5], [-2.0, 2.0], [0.6, 0.6])
    x = torch.linspace(-12, 12, 4001, dtype=DT)
    with torch.no_grad():
        log_p = target.log_marginal(x)

    def forward(m, s):
        return kl_grid(log_p, vaelib.log_normal(x, m, s.exp()), x)

    def reverse(m, s):
        return kl_grid(vaelib.log_normal(x, m, s.exp()), log_p, x)

    mu, log_sigma, _ = vaelib.fit_gaussian(forward, torch.tensor(0.5, dtype=DT), torch.tensor(0.0, dtype=DT), steps=2000)
    assert mu.item() == pytest.approx(0.0, abs=1e-4)
    assert log_sigma.exp().item() ** 2 == pytest.approx(0.6**2 + 4.0, rel=1e-4)  # the mixture's variance
    for start in (0.5, -0.5):  # each start falls into the nearer mode
        mu, log_sigma, trace = vaelib.fit_gaussian(reverse, torch.tensor(start, dtype=DT),
                                                   torch.tensor(-0.5, dtype=DT), steps=2000)
        assert mu.item() == pytest.approx(4 * start, abs=0.01) and log_sigma.exp().item() == pytest.approx(0.6, abs=0.01)
        # one mode of an equal two-mode mixture: KL(q || p) = -log(1/2) up to the modes' overlap
        assert trace[-1] == pytest.approx(math.log(2), abs=0.002)


def test_bad_inputs_are_named():
    z3, z4 = torch.zeros(3), torch.zeros(4)
    with pytest.raises(ValueError, match=r"mu_q and logvar_q must have the same shape, got \(3,\) and \(4,\)"):
        kl_normal(z3, z4)
    with pytest.raises(ValueError, match="give both mu_p and logvar_p"):
        kl_normal(z3, z3, mu_p=z3)
    with pytest.raises(ValueError, match="do not broadcast"):
        kl_normal(torch.zeros(5, 3), torch.zeros(5, 3), torch.zeros(4, 3), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="different dimensions"):
        kl_normal(torch.zeros(5, 3), torch.zeros(5, 3), torch.zeros(1), torch.zeros(1))
    eye = torch.eye(3)
    with pytest.raises(ValueError, match="lower triangular"):
        kl_mvn(z3, eye + torch.triu(torch.ones(3, 3), 1), z3, eye)
    with pytest.raises(ValueError, match="positive diagonal.*0"):
        kl_mvn(z3, torch.diag(torch.tensor([1.0, 0.0, 1.0])), z3, eye)
    with pytest.raises(ValueError, match="positive diagonal.*-2"):
        kl_mvn(z3, eye, z3, torch.diag(torch.tensor([1.0, -2.0, 1.0])))
    with pytest.raises(ValueError, match=r"scale_tril_q must be \(\.\.\., k, k\)"):
        kl_mvn(z3, torch.eye(4), z3, eye)
    with pytest.raises(ValueError, match="same shape"):
        kl_categorical(torch.ones(3) / 3, torch.ones(4) / 4)
    with pytest.raises(ValueError, match="non-negative"):
        kl_categorical(torch.tensor([1.5, -0.5]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="at least 2"):
        mc_kl(D.Normal(0.0, 1.0), D.Normal(0.0, 1.0), 1)
    with pytest.raises(ValueError, match="1-D of one length"):
        kl_grid(torch.zeros(3), torch.zeros(4), torch.zeros(3))
    with pytest.raises(ValueError, match="became nan at step 1"):
        vaelib.fit_gaussian(lambda m, s: (m * float("nan")).sum(), torch.zeros(1), torch.zeros(1))
