"""vaelib.conditional (Chapter 9): the conditional VAE and M2, each checked by an independent route."""

import math
import shutil

import pytest
import torch
from torch import distributions as D

import vaelib
from vaelib import recipes
from vaelib.conditional import ConditionalVAE, M2, conditional_elbo, labelled_subset, m2_loss

TINY = dict(latent_dim=1, hidden=(8,), n_classes=10, image_shape=(1, 2, 2))  # 4 pixels: log p(x) by quadrature


def tiny_m2(seed=0):
    torch.manual_seed(seed)
    model = M2(**TINY).double()
    for p in model.parameters():  # larger weights than the default init, so classes and codes matter
        p.data.mul_(3.0)
    return model


def binary_images(n, seed=1, shape=(1, 2, 2)):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n, *shape), generator=g).double()


# --- the conditional ELBO ------------------------------------------------------------------------

def test_conditional_elbo_against_torch_distributions():
    torch.manual_seed(0)
    model = ConditionalVAE(latent_dim=3, hidden=(16,), image_shape=(1, 4, 4)).double()
    x = binary_images(5, shape=(1, 4, 4))
    y = torch.tensor([0, 3, 9, 3, 1])
    eps = torch.randn(2, 5, 3, dtype=torch.double)
    terms = conditional_elbo(model, x, y, eps=eps)
    # by hand: q from the encoder on [x, onehot(y)], p(x | y, z) a product of Bernoullis on [z, onehot(y)]
    onehot = torch.nn.functional.one_hot(y, 10).double()
    mu, logvar = model.encoder(torch.cat([x.flatten(1), onehot], 1)).chunk(2, -1)
    q = D.Independent(D.Normal(mu, (0.5 * logvar).exp()), 1)
    z = mu + (0.5 * logvar).exp() * eps  # (2, 5, 3)
    logits = model.decoder(torch.cat([z, onehot.expand(2, 5, 10)], -1).reshape(10, 13)).reshape(2, 5, 1, 4, 4)
    recon = D.Independent(D.Bernoulli(logits=logits), 3).log_prob(x).mean(0)
    kl = D.kl_divergence(q, D.Independent(D.Normal(torch.zeros(3, dtype=torch.double), 1.0), 1))
    torch.testing.assert_close(terms.recon, recon)
    torch.testing.assert_close(terms.kl, kl)
    torch.testing.assert_close(terms.elbo, recon - kl)


def test_the_label_changes_both_networks_and_the_bound():
    torch.manual_seed(0)
    model = ConditionalVAE(latent_dim=2, hidden=(16,)).double()
    x = binary_images(3, shape=(1, 28, 28))
    eps = torch.randn(1, 3, 2, dtype=torch.double)
    a = conditional_elbo(model, x, torch.tensor([1, 1, 1]), eps=eps).elbo
    b = conditional_elbo(model, x, torch.tensor([2, 2, 2]), eps=eps).elbo
    assert (a - b).abs().min() > 1e-6
    assert not torch.allclose(model.code(x, torch.tensor([1, 1, 1])), model.code(x, torch.tensor([2, 2, 2])))


def test_labelled_bound_is_below_log_p_x_y_by_quadrature():
    model = tiny_m2()
    x = binary_images(6)
    y = torch.tensor([0, 1, 2, 7, 8, 9])
    torch.manual_seed(3)
    with torch.no_grad():
        bound = model.labelled_bound(x, y, eps=torch.randn(20_000, 6, 1, dtype=torch.double))
    assert (bound <= log_p_x_y(model, x)[torch.arange(6), y] + 1e-3).all()


def log_p_x_y(model, x, grid=4001):
    """log p(x, y) for every class, (N, C), by the trapezoidal rule over the one latent dimension."""
    z = torch.linspace(-10, 10, grid, dtype=torch.double)
    cols = []
    with torch.no_grad():
        for c in range(10):
            zz = z[:, None, None].expand(grid, len(x), 1)
            ll = model.cvae.log_likelihood(x, model.cvae.decode(zz, torch.full((len(x),), c)))  # (grid, N)
            log_joint = ll + D.Normal(0.0, 1.0).log_prob(z)[:, None]
            dz = z[1] - z[0]
            w = torch.full((grid,), math.log(dz), dtype=torch.double)
            w[[0, -1]] += math.log(0.5)
            cols.append(torch.logsumexp(log_joint + w[:, None], 0) + model.log_prior_y())
    return torch.stack(cols, 1)


# --- the unlabelled bound: enumeration, identity, inequality ------------------------------------

def test_unlabelled_bound_enumeration_matches_an_explicit_loop_over_classes():
    torch.manual_seed(0)
    model = M2(latent_dim=3, hidden=(16,), image_shape=(1, 4, 4)).double()
    x = binary_images(7, shape=(1, 4, 4))
    eps = torch.randn(2, 7, 3, dtype=torch.double)
    batched = model.bounds_per_class(x, eps=eps)
    loop = torch.stack([model.labelled_bound(x, torch.full((7,), c), eps=eps) for c in range(10)], 1)
    torch.testing.assert_close(batched, loop)
    # U(x) by hand: sum_y q(y|x) L(x, y) + H(q), with the entropy from torch.distributions
    q = D.Categorical(logits=model.classifier(x))
    by_hand = sum(q.probs[:, c] * loop[:, c] for c in range(10)) + q.entropy()
    torch.testing.assert_close(model.unlabelled_bound(x, eps=eps), by_hand)


def test_encoding_every_class_at_once_equals_encoding_the_repeated_pairs():
    # W [x; e_y] + b = W_x x + W[:, D + y] + b: the image's product made once must give the same q,
    # and the same gradients, as the concatenated input repeated for every label (two hidden layers).
    torch.manual_seed(3)
    model = M2(latent_dim=3, hidden=(16, 8), image_shape=(1, 4, 4)).double()
    x = binary_images(5, shape=(1, 4, 4))
    xs, ys = x.repeat(10, 1, 1, 1), torch.arange(10).repeat_interleave(5)
    once, pairs = model.cvae.encode_every_class(x), model.cvae.encode(xs, ys)
    torch.testing.assert_close(once.mu, pairs.mu)
    torch.testing.assert_close(once.logvar, pairs.logvar)
    eps = torch.randn(1, 5, 3, dtype=torch.double)
    params = list(model.cvae.parameters())
    batched = torch.autograd.grad(model.bounds_per_class(x, eps=eps).sum(), params)
    loop = torch.autograd.grad(sum(model.labelled_bound(x, torch.full((5,), c), eps=eps).sum()
                                   for c in range(10)), params)
    for a, b in zip(batched, loop):
        torch.testing.assert_close(a, b)
    with pytest.raises(ValueError, match="expected images of shape"):
        model.cvae.encode_every_class(x.flatten(1))


def test_unlabelled_bound_is_logsumexp_minus_a_kl_and_tight_at_the_softmax():
    # For any numbers L(x, y): sum_y q L + H(q) = logsumexp_y L - KL(q || softmax L), the largest at q = softmax L.
    model = tiny_m2()
    x = binary_images(8)
    eps = torch.randn(1, 8, 1, dtype=torch.double)
    with torch.no_grad():
        bounds = model.bounds_per_class(x, eps=eps)
        u = model.unlabelled_bound(x, eps=eps)
        q = torch.softmax(model.classify(x), -1)
    best = torch.logsumexp(bounds, -1)
    torch.testing.assert_close(u, best - vaelib.kl_categorical(q, torch.softmax(bounds, -1)))
    assert (u < best).all()
    model.classify = lambda _x: bounds  # q(y | x) := softmax_y L(x, y): the bound reaches logsumexp
    torch.testing.assert_close(model.unlabelled_bound(x, eps=eps), best)


def test_unlabelled_bound_is_below_log_p_x_by_quadrature():
    model = tiny_m2()
    x = binary_images(6)
    log_px = torch.logsumexp(log_p_x_y(model, x), -1)
    torch.manual_seed(4)
    with torch.no_grad():
        u = model.unlabelled_bound(x, eps=torch.randn(20_000, 6, 1, dtype=torch.double))
    assert (u <= log_px + 1e-3).all()
    assert (log_px - u).max() > 0.01  # a real gap for this q, not a bound that tests nothing


# --- the M2 loss -----------------------------------------------------------------------------------

def test_m2_loss_is_its_pieces():
    model = tiny_m2()
    x_l, y_l, x_u = binary_images(5, seed=2), torch.tensor([0, 1, 2, 3, 4]), binary_images(6, seed=3)
    torch.manual_seed(5)
    out = m2_loss(model, x_l, y_l, x_u, alpha=7.0)
    torch.manual_seed(5)  # the same draws, in the same order
    lab = model.labelled_bound(x_l, y_l).mean()
    unl = model.unlabelled_bound(x_u).mean()
    ce = -D.Categorical(logits=model.classifier(x_l)).log_prob(y_l).mean()
    torch.testing.assert_close(out["loss"], -lab - unl + 7.0 * ce)
    torch.testing.assert_close(out["classification"], ce.detach())
    torch.manual_seed(5)
    out0 = m2_loss(model, x_l, y_l, x_u, alpha=0.0)
    torch.testing.assert_close(out["loss"] - out0["loss"], 7.0 * ce)


def test_the_unlabelled_bound_alone_trains_the_classifier():
    model = tiny_m2()
    loss = -model.unlabelled_bound(binary_images(6)).mean()
    loss.backward()
    assert model.classifier[-1][-1].weight.grad.abs().sum() > 0


# --- labelled subsets and the recipes -----------------------------------------------------------

def test_labelled_subset_takes_the_same_number_of_each_class(mnist_train):
    index = labelled_subset(mnist_train.y, 100, seed=0)
    assert index.shape == (100,) and len(set(index.tolist())) == 100
    assert torch.bincount(mnist_train.y[index], minlength=10).tolist() == [10] * 10
    assert torch.equal(index, labelled_subset(mnist_train.y, 100, seed=0))
    assert not torch.equal(index, labelled_subset(mnist_train.y, 100, seed=1))


@pytest.mark.parametrize("n_labels", [0, 95, 105.0, True])
def test_labelled_subset_refuses_counts_that_do_not_split_evenly(n_labels):
    with pytest.raises(ValueError, match="multiple"):
        labelled_subset(torch.arange(100) % 10, n_labels)


def test_labelled_subset_refuses_a_class_with_too_few_examples():
    with pytest.raises(ValueError, match="class 9 has 0"):
        labelled_subset(torch.arange(90) % 9, 10)


M2_BASE = dict(epochs=1, limit=640, hidden=(8,), latent_dim=2, n_labels=20, batch_size=128, device="cpu",
               progress=False)


@pytest.fixture(scope="module")
def m2_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    model, history, index = recipes.train_m2(**M2_BASE, runs=runs)
    return runs, model, history, index


def test_train_m2_reloads_and_keys_its_runs_by_labels_and_alpha(m2_run, tmp_path):
    runs, model, history, index = m2_run
    assert torch.bincount(vaelib.load_mnist("train").y[:640][index], minlength=10).tolist() == [2] * 10
    again, history_again, _ = recipes.train_m2(**M2_BASE, runs=runs)
    assert history_again == history and len(list(runs.iterdir())) == 1
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
    local = tmp_path / "runs"
    shutil.copytree(runs, local)
    for change in (dict(n_labels=30), dict(alpha=1.0), dict(label_seed=1), dict(weighting="batch"),
                   dict(activation="softplus"), dict(lr_decay=True), dict(init="small"), dict(binarize=None),
                   dict(labelled_every=2)):
        before = set(local.iterdir())
        recipes.train_m2(**{**M2_BASE, **change}, runs=local)
        assert len(set(local.iterdir()) - before) == 1, f"{change} did not give a run of its own"


def test_train_m2_resumes_exactly(m2_run, tmp_path):
    runs, *_ = m2_run
    straight, h2, _ = recipes.train_m2(**{**M2_BASE, "epochs": 2}, runs=tmp_path / "a")
    recipes.train_m2(**M2_BASE, runs=tmp_path / "b")
    resumed, h2b, _ = recipes.train_m2(**{**M2_BASE, "epochs": 2}, runs=tmp_path / "b")
    assert h2["loss"] == h2b["loss"]
    assert all(torch.equal(a, b) for a, b in zip(straight.state_dict().values(), resumed.state_dict().values()))


def test_default_weighting_is_the_papers_objective_per_unlabelled_image(m2_run):
    runs, *_ = m2_run
    (path,) = runs.iterdir()
    config = torch.load(path, weights_only=False)["config"]
    assert config["data"]["n_unlabelled"] == 620
    loss = config["loss"]
    assert loss["weighting"] == "paper" and loss["alpha"] == pytest.approx(0.1 * 640)  # alpha = 0.1 N
    assert loss["labelled_weight"] == pytest.approx(20 / 620) and loss["classification_weight"] == pytest.approx(64 / 620)


def test_the_papers_weighting_is_its_data_set_objective_divided_by_the_unlabelled_count():
    """J^alpha = sum_l -L + sum_u -U + alpha * mean_l CE, computed by hand over a whole small data set,
    against m2_loss with `m2_weights` given all of it in one step."""
    model = tiny_m2()
    x_l, y_l, x_u = binary_images(4, seed=2), torch.tensor([0, 3, 3, 9]), binary_images(9, seed=3)
    alpha = 0.1 * (4 + 9)
    labelled_weight, class_weight = recipes.m2_weights("paper", alpha, 4, 9)
    torch.manual_seed(6)
    step = m2_loss(model, x_l, y_l, x_u, alpha=class_weight, labelled_weight=labelled_weight)["loss"]
    torch.manual_seed(6)  # the same draws, in m2_loss's order: labelled bounds, then unlabelled
    sum_l = -model.labelled_bound(x_l, y_l).sum()
    sum_u = -model.unlabelled_bound(x_u).sum()
    ce = -torch.log_softmax(model.classifier(x_l), -1)[torch.arange(4), y_l].mean()
    torch.testing.assert_close(step, (sum_l + sum_u + alpha * ce) / 9)
    # the course's earlier weighting: the labelled batch as heavy as the unlabelled one
    assert recipes.m2_weights("batch", alpha, 4, 9) == (1.0, alpha / 4)
    with pytest.raises(ValueError, match="weighting must be one of"):
        recipes.m2_weights("mean", alpha, 4, 9)
    with pytest.raises(ValueError, match="alpha must be a finite number"):
        recipes.m2_weights("paper", float("inf"), 4, 9)


def test_labelled_every_k_steps_is_k_times_as_heavy(m2_run, tmp_path, monkeypatch):
    """labelled_every=K: the labelled terms enter every K-th step only, with K times the weights."""
    seen = []
    monkeypatch.setattr(recipes, "m2_loss", lambda *args, **kw: seen.append((kw["alpha"], kw["labelled_weight"]))
                        or m2_loss(*args, **kw))
    recipes.train_m2(**{**M2_BASE, "labelled_every": 2}, runs=tmp_path)
    lw, cw = recipes.m2_weights("paper", 0.1 * 640, 20, 620)
    assert seen == [(2 * cw, 2 * lw), (0.0, 0.0)] * 2 + [(2 * cw, 2 * lw)]  # 5 steps of 128 of 620 images


def test_small_init_draws_hidden_layers_only():
    model = vaelib.conditional.small_init_(M2(latent_dim=3, hidden=(64, 32)))
    for net in (model.cvae.encoder, model.cvae.decoder[0], model.classifier[1]):
        layers = [m for m in net if isinstance(m, torch.nn.Linear)]
        for layer in layers[:-1]:
            assert layer.weight.std().item() == pytest.approx(1e-3, rel=0.2) and layer.bias.abs().max() < 1e-2
        assert layers[-1].weight.std().item() > 0.02  # the output layer keeps PyTorch's initialisation
    with pytest.raises(ValueError, match="init must be"):
        recipes.train_m2(**{**M2_BASE, "init": "xavier"})
    with pytest.raises(ValueError, match="binarize must be"):
        recipes.train_m2(**{**M2_BASE, "binarize": "static"})


def steps_taken(runs):
    (path,) = runs.iterdir()
    return torch.load(path, weights_only=False)["steps"]


def test_label_classifier_has_m2s_classifier_and_its_steps(m2_run, tmp_path):
    base = dict(epochs=1, limit=640, hidden=(8,), n_labels=20, device="cpu", progress=False, runs=tmp_path)
    clf, history = recipes.train_label_classifier(**base)
    m2 = M2(hidden=(8,))
    assert [p.shape for p in clf.parameters()] == [p.shape for p in m2.classifier.parameters()]
    assert steps_taken(tmp_path) == steps_taken(m2_run[0]) == 5  # 620 unlabelled images in batches of 128
    recipes.train_label_classifier(**{**base, "n_labels": 30})
    assert len(list(tmp_path.iterdir())) == 2


def test_train_conditional_vae_caches(tmp_path):
    base = dict(epochs=1, limit=256, hidden=(8,), latent_dim=2, device="cpu", progress=False, runs=tmp_path)
    model, history = recipes.train_conditional_vae(**base)
    again, history_again = recipes.train_conditional_vae(**base)
    assert history_again == history and len(list(tmp_path.iterdir())) == 1
    recipes.train_conditional_vae(**{**base, "latent_dim": 3})
    assert len(list(tmp_path.iterdir())) == 2
    assert model.sample(torch.arange(10)).shape == (10, 1, 28, 28)


# --- bad inputs --------------------------------------------------------------------------------

@pytest.mark.parametrize("y, match", [
    (torch.tensor([0.0, 1.0]), "integer"),
    (torch.tensor([0, 10]), r"0\.\.9"),
    (torch.tensor([-1, 2]), r"0\.\.9"),
    (torch.tensor([[0, 1]]), "shape"),
    (torch.tensor([0, 1, 2]), "shape"),
    ([0, 1], "tensor"),
])
def test_bad_labels_are_refused(y, match):
    model = ConditionalVAE(latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=match):
        model.encode(torch.zeros(2, 1, 28, 28), y)


@pytest.mark.parametrize("x, match", [
    (torch.zeros(2, 784), "shape"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.float64), "float64"),
    (torch.zeros(2, 1, 28, 28, dtype=torch.uint8), "divide by 255"),
    (torch.full((2, 1, 28, 28), 2.0), r"\[0, 1\]"),
])
def test_bad_images_are_refused(x, match):
    model = M2(latent_dim=2, hidden=(8,))
    with pytest.raises(ValueError, match=match):
        model.unlabelled_bound(x)


def test_bad_codes_noise_and_weights_are_refused():
    model = M2(latent_dim=2, hidden=(8,))
    x = torch.zeros(3, 1, 28, 28)
    with pytest.raises(ValueError, match="z must be"):
        model.cvae.decode(torch.zeros(3, 5), torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="eps must be"):
        model.bounds_per_class(x, eps=torch.zeros(1, 3, 5))
    with pytest.raises(ValueError, match="alpha"):
        m2_loss(model, x, torch.tensor([0, 1, 2]), x, alpha=-1.0)
    with pytest.raises(ValueError, match="latent_dim"):
        ConditionalVAE(latent_dim=0)


def test_the_benchmarks_per_pair_route_computes_the_same_bounds():
    # benchmarks/m2_step.py times bounds_per_class against this route; it must be the same computation
    from benchmarks.m2_step import per_pair_bounds

    torch.manual_seed(4)
    model = M2(latent_dim=3, hidden=(16,), image_shape=(1, 4, 4)).double()
    x = binary_images(6, shape=(1, 4, 4))
    eps = torch.randn(1, 6, 3, dtype=torch.double)
    torch.testing.assert_close(per_pair_bounds(model, x, eps), model.bounds_per_class(x, eps=eps))
