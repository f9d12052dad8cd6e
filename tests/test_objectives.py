import math

import pytest
import torch

import vaelib
from fakes import FakeVAE, log_evidence_by_quadrature
from vaelib import VAE

DT = torch.float64


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    model = VAE(latent_dim=1, hidden=(16,), image_shape=(1, 3, 3)).double()
    with torch.no_grad():  # a sharp decoder and a deliberately poor encoder: a visible gap to close
        for p in model.decoder.parameters():
            p.mul_(3)
        model.encoder[1][-1].bias.add_(torch.tensor([0.3, 0.5], dtype=DT))
    x = torch.bernoulli(torch.full((4, 1, 3, 3), 0.4, dtype=DT), generator=torch.Generator().manual_seed(1))
    return model, x


def repeated(bound, model, x, n, **kwargs):
    """n independent draws of a per-image bound, computed in one batch: (n, N)."""
    with torch.no_grad():
        return bound(model, x.repeat(n, 1, 1, 1), **kwargs).view(n, len(x))


def iwae(model, x, k, **kwargs):
    return vaelib.iwae_bound(model, x, k, **kwargs)


def elbo(model, x):
    return vaelib.elbo(model, x).elbo


def test_iwae_with_one_sample_is_the_elbo_in_expectation(tiny):
    model, x = tiny
    torch.manual_seed(2)
    iwae1 = repeated(iwae, model, x, 20_000, k=1)
    one_sample_elbo = repeated(elbo, model, x, 20_000)
    se = (iwae1.var(0) / 20_000 + one_sample_elbo.var(0) / 20_000).sqrt()
    assert ((iwae1.mean(0) - one_sample_elbo.mean(0)).abs() < 4 * se).all()


def test_bounds_increase_with_k_towards_the_evidence(tiny):
    model, x = tiny
    torch.manual_seed(3)
    log_px = log_evidence_by_quadrature(model, x)
    means, ses = [], []
    for k in (1, 5, 50):
        runs = repeated(iwae, model, x, 3000, k=k, chunk_size=7)
        means.append(runs.mean(0))
        ses.append(runs.std(0) / math.sqrt(3000))
    for (m1, s1), (m2, s2) in zip(zip(means, ses), zip(means[1:], ses[1:])):
        assert (m2 - m1 > 3 * (s1**2 + s2**2).sqrt()).all()  # ELBO < L_5 < L_50
    assert (means[-1] < log_px + 4 * ses[-1]).all()
    big = vaelib.iwae_bound(model, x, k=5000).detach()
    assert torch.allclose(big, log_px, atol=0.02)  # L_5000 is within a few hundredths of a nat


def test_elbo_is_below_the_evidence(tiny):
    model, x = tiny
    torch.manual_seed(4)
    mean_elbo = repeated(elbo, model, x, 2000).mean(0)
    assert (mean_elbo < log_evidence_by_quadrature(model, x)).all()


def test_evaluate_bounds_reports_means_and_errors(tiny):
    model, x = tiny
    data = vaelib.InMemoryData(x.repeat(5, 1, 1, 1))
    torch.manual_seed(5)
    r = vaelib.evaluate_bounds(model, data, k=200, batch_size=7)
    assert set(r) == {"elbo", "elbo_se", "nll", "nll_se", "k", "n", "of"} and r["n"] == r["of"] == 20 and r["k"] == 200
    assert r["nll"] < -r["elbo"]
    exact = -log_evidence_by_quadrature(model, x).mean().item()
    assert r["nll"] == pytest.approx(exact, abs=0.05)


def test_evaluation_within_its_cap_is_the_uncapped_evaluation(tiny):
    model, x = tiny
    data = vaelib.InMemoryData(x.repeat(5, 1, 1, 1))
    torch.manual_seed(5)
    free = vaelib.evaluate_bounds(model, data, k=50, batch_size=7, max_minutes=math.inf)
    torch.manual_seed(5)
    capped = vaelib.evaluate_bounds(model, data, k=50, batch_size=7, max_minutes=60.0)
    assert capped == free


def test_evaluation_past_its_cap_scores_a_seeded_random_subset(tiny, capsys):
    model, x = tiny
    data = vaelib.InMemoryData(torch.cat([x.repeat(25, 1, 1, 1), 1 - x.repeat(25, 1, 1, 1)]))  # 200 images
    r = vaelib.evaluate_bounds(model, data, k=20, batch_size=10, max_minutes=1e-9)
    assert r["n"] == 20 and r["of"] == 200  # the two batches it always keeps
    assert "all 200 images would take" in capsys.readouterr().out
    # the subset is uniform over the images, not a prefix (all of which are copies of x here)
    index = torch.randperm(200, generator=torch.Generator().manual_seed(0))[:20]
    assert 0 < (index >= 100).sum() < 20
    torch.manual_seed(3)
    a = vaelib.evaluate_bounds(model, data, k=20, batch_size=10, max_minutes=1e-9)
    torch.manual_seed(3)  # by hand: the timed first batch (set aside), then those 20 images uncapped
    with torch.no_grad():
        vaelib.elbo(model, data.x[:10]), vaelib.iwae_bound(model, data.x[:10], 20)
    b = vaelib.evaluate_bounds(model, data.subset(index.sort().values), k=20, batch_size=10, max_minutes=math.inf)
    assert {key: a[key] for key in a if key != "of"} == {key: b[key] for key in b if key != "of"}


def test_per_image_values_say_which_images_were_scored_so_other_models_can_be_paired(tiny):
    model, x = tiny
    data = vaelib.InMemoryData(torch.cat([x.repeat(25, 1, 1, 1), 1 - x.repeat(25, 1, 1, 1)]))  # 200 images
    r = vaelib.evaluate_bounds(model, data, k=20, batch_size=10, max_minutes=1e-9, per_image=True)
    index = torch.randperm(200, generator=torch.Generator().manual_seed(0))[:20].sort().values
    assert torch.equal(r["index"], index)  # the seeded subset, in order
    assert r["nll_per_image"].shape == r["elbo_per_image"].shape == (20,)
    assert r["nll_per_image"].mean().item() == pytest.approx(r["nll"])
    assert r["elbo_per_image"].std().item() / math.sqrt(20) == pytest.approx(r["elbo_se"])
    # another model scored by hand on data.subset(index) sees exactly those images
    assert torch.equal(data.subset(r["index"]).x, data.x[index])
    free = vaelib.evaluate_bounds(model, data, k=20, batch_size=10, max_minutes=math.inf, per_image=True)
    assert torch.equal(free["index"], torch.arange(200)) and len(free["nll_per_image"]) == 200
    assert "index" not in vaelib.evaluate_bounds(model, data, k=20, batch_size=10, max_minutes=math.inf)


def test_an_iterable_past_the_cap_stops_at_a_batch_and_says_how_far(tiny):
    model, x = tiny
    loader = [(x,)] * 6
    r = vaelib.evaluate_bounds(model, loader, k=10, max_minutes=1e-9)
    assert r["n"] == r["of"] == len(x)
    assert vaelib.evaluate_bounds(model, loader, k=10, max_minutes=math.inf)["n"] == 6 * len(x)


@pytest.mark.parametrize("cap", [0, -1.0, float("nan"), True])
def test_a_cap_that_is_not_a_positive_number_is_refused(tiny, cap):
    model, x = tiny
    with pytest.raises(ValueError, match="max_minutes must be a positive number"):
        vaelib.evaluate_bounds(model, vaelib.InMemoryData(x), k=2, max_minutes=cap)


def test_bound_arguments_are_checked(tiny):
    model, x = tiny
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        vaelib.iwae_bound(model, x, k=0)
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        vaelib.elbo(model, x, n_samples=0)


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


def test_vae_loss_with_monte_carlo_kl_is_the_monte_carlo_elbo():
    torch.manual_seed(1)
    model = vaelib.VAE(latent_dim=3, hidden=(8,), image_shape=(1, 3, 3)).double()
    x = torch.bernoulli(torch.full((5, 1, 3, 3), 0.5, dtype=DT))
    torch.manual_seed(2)
    a = vaelib.vae_loss(model, x, analytic_kl=False)
    torch.manual_seed(2)
    assert torch.equal(a, -vaelib.elbo(model, x, analytic_kl=False).elbo.mean())
    torch.manual_seed(2)
    assert not torch.equal(a, vaelib.vae_loss(model, x))  # the closed form differs from one draw
    with pytest.raises(ValueError, match="free bits clamp the closed-form KL"):
        vaelib.vae_loss(model, x, free_bits=0.5, analytic_kl=False)


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


def test_iwae_with_another_proposal_is_still_a_bound_on_the_same_evidence(tiny):
    model, x = tiny
    log_px = log_evidence_by_quadrature(model, x)
    with torch.no_grad():
        q = model.encode(x)
        other = vaelib.DiagonalNormal(q.mu + 0.7, q.logvar)  # a worse proposal: shifted codes
        torch.manual_seed(6)
        l1 = torch.stack([vaelib.iwae_bound(model, x, k=1, proposal=other) for _ in range(3000)])
        l5000 = vaelib.iwae_bound(model, x, k=5000, proposal=other)
    assert (l1.mean(0) + 4 * l1.std(0) / math.sqrt(3000) < log_px).all()  # a bound, looser than with q
    assert torch.allclose(l5000, log_px, atol=0.05)  # and it still tends to log p(x)
    with pytest.raises(ValueError, match=r"batch shape \(4,\)"):
        vaelib.iwae_bound(model, x, k=2, proposal=vaelib.DiagonalNormal(q.mu[:2], q.logvar[:2]))


def test_grey_level_bce_is_the_expected_log_likelihood_of_binarised_images(tiny):
    """-BCE(x_grey, lambda) = E_{b ~ Bernoulli(x_grey)} log p(b | z), by enumerating all 2^9 images b,
    so the grey-level ELBO is a lower bound on E_b log p(b) (evidence by quadrature)."""
    model, _ = tiny
    grey = torch.tensor([0.0, 0.1, 0.5, 0.9, 1.0, 0.3, 0.7, 0.2, 0.6], dtype=DT).view(1, 1, 3, 3)
    bits = torch.tensor([[(i >> j) & 1 for j in range(9)] for i in range(512)], dtype=DT)  # every b
    prob_b = (grey.flatten() ** bits * (1 - grey.flatten()) ** (1 - bits)).prod(1)  # P(b | x_grey)
    images = bits.view(512, 1, 3, 3)
    with torch.no_grad():
        out = model.decode(torch.tensor([[0.4], [-1.3]], dtype=DT))  # two codes z
        grey_ll = model.log_likelihood(grey, out[:, None])  # (2, 1)
        each_ll = model.log_likelihood(images, out[:, None])  # (2, 512)
    assert prob_b.sum().item() == pytest.approx(1.0)
    assert torch.allclose(grey_ll[:, 0], (each_ll * prob_b).sum(1), atol=1e-10)

    expected_log_pb = (log_evidence_by_quadrature(model, images) * prob_b).sum()
    torch.manual_seed(7)
    grey_elbo = repeated(elbo, model, grey, 20_000)  # q(z | x_grey), recon against the grey target
    assert grey_elbo.mean() + 4 * grey_elbo.std() / math.sqrt(20_000) < expected_log_pb
