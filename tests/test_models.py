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


def test_bernoulli_log_likelihood_matches_torch_distributions(model, x):
    z = model.encode(x).mu
    expected = D.Independent(D.Bernoulli(logits=model.decode(z)), 3).log_prob(x)
    assert torch.allclose(model.log_likelihood(x, model.decode(z)), expected, rtol=1e-10)
    assert torch.allclose(model.p_x(z).log_prob(x), expected, rtol=1e-10)
    # sample dimensions in front broadcast against the images: (S, N, ...) -> (S, N)
    zs = torch.stack([z, 2 * z])
    both = model.log_likelihood(x, model.decode(zs))
    assert both.shape == (2, 5) and torch.allclose(both[1], model.log_likelihood(x, model.decode(2 * z)))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_fast_bernoulli_log_prob_and_its_gradient_match_torch(dtype):
    g = torch.Generator().manual_seed(0)
    logits = torch.cat([torch.randn(3, 500, generator=g, dtype=dtype) * 6,
                        torch.tensor([[-100.0, -30.0, -1e-4, 0.0, 1e-4, 30.0, 100.0] * 2] * 3, dtype=dtype)], 1)
    x = torch.cat([torch.rand(3, 500, generator=g, dtype=dtype), torch.tensor([[0.0] * 7 + [1.0] * 7] * 3, dtype=dtype)], 1)
    mine, theirs = logits.clone().requires_grad_(), logits.clone().requires_grad_()
    ours = vaelib.models.bernoulli_log_prob(mine, x)
    ref = -torch.nn.functional.binary_cross_entropy_with_logits(theirs, x, reduction="none")
    # per pixel: within 4 ulp of |l| (the final add's rounding) and 6e-8 (log(1 + e) for tiny e)
    tol = 4 * torch.finfo(dtype).eps * logits.abs().clamp(min=1) + (6e-8 if dtype == torch.float32 else 1e-15)
    assert ((ours - ref).abs() <= tol).all()
    w = torch.randn(logits.shape, generator=g, dtype=dtype)
    (ours * w).sum().backward(), (ref * w).sum().backward()
    assert torch.allclose(mine.grad, theirs.grad, rtol=1e-6, atol=1e-7)
    # the gradient in x too (x l is linear in x), and broadcasting a sample dimension in front
    if dtype == torch.float64:
        xs, ls = torch.rand(4, 6, dtype=dtype, requires_grad=True), torch.randn(2, 4, 6, dtype=dtype, requires_grad=True)
        assert torch.autograd.gradcheck(vaelib.models.bernoulli_log_prob, (ls, xs))


def test_decode_keeps_leading_dimensions_and_decode_mean_is_the_mean(model):
    z = torch.randn(4, 6, 3, dtype=DT, generator=torch.Generator().manual_seed(3))
    out = model.decode(z)
    assert out.shape == (4, 6, 1, 4, 4)
    assert torch.allclose(out[2], model.decode(z[2]), rtol=0, atol=1e-12)  # row by row, the same decoder
    mean = model.decode_mean(z)
    assert torch.allclose(mean, D.Bernoulli(logits=out).mean) and not mean.requires_grad
    assert model.decode(z[0, 0]).shape == (1, 4, 4)


def test_code_is_the_posterior_mean_and_reconstruction_uses_it(model, x):
    q = model.encode(x)
    assert torch.equal(model.code(x), q.mu.detach())
    assert torch.allclose(model.reconstruct(x), torch.sigmoid(model.decoder(q.mu)).detach())
    expected = -D.Independent(D.Bernoulli(logits=model.decoder(q.mu)), 3).log_prob(x)
    assert torch.allclose(model.reconstruction_loss(x), expected)


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
    with pytest.raises(ValueError, match=r"pixel values must lie in \[0, 1\], got \[0, 255\]"):
        model.encode(x * 255)
    with pytest.raises(ValueError, match=r"z must be \(\.\.\., 3\)"):
        model.decode(torch.zeros(5, 4, dtype=DT))
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        vaelib.elbo(model, x, n_samples=0)
    with pytest.raises(ValueError, match="one shape"):
        DiagonalNormal(torch.zeros(2), torch.zeros(3))


def test_a_training_step_off_the_cpu_reads_no_values_back():
    # on the "meta" device tensors have shapes but no values: any read back to the host fails,
    # as a GPU would stall on it. A training-mode forward must not read; eval mode checks values.
    model = VAE(latent_dim=3, hidden=(16,), image_shape=(1, 4, 4)).to("meta")
    x = torch.empty(5, 1, 4, 4, device="meta")
    model.train()
    assert vaelib.elbo(model, x).elbo.shape == (5,)
    with pytest.raises(ValueError, match=r"expected images of shape"):
        model.encode(x.view(5, 16))  # the shape is still checked
    model.eval()
    with pytest.raises(RuntimeError):
        model.encode(x)  # now the [0, 1] check reads the minimum and maximum


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


# ---- architectures, likelihoods, the autoencoder, saving ------------------------------------------


@pytest.mark.parametrize("arch, hidden", [("mlp", (32,)), ("conv", (4, 8))])
@pytest.mark.parametrize("cls", [vaelib.VAE, vaelib.Autoencoder])
def test_both_architectures_map_images_to_codes_and_back(cls, arch, hidden):
    torch.manual_seed(0)
    model = cls(latent_dim=3, arch=arch, hidden=hidden)
    x = torch.rand(6, 1, 28, 28)
    code = model.encode(x)
    z = code.rsample() if cls is vaelib.VAE else code
    assert z.shape == (6, 3)
    assert model.decode(z).shape == (6, 1, 28, 28)
    recon = model.reconstruct(x)
    assert recon.shape == x.shape and 0 <= recon.min() and recon.max() <= 1


def test_vae_and_autoencoder_share_an_architecture_exactly():
    vae = vaelib.VAE(latent_dim=2, hidden=(64, 32))
    ae = vaelib.Autoencoder(latent_dim=2, hidden=(64, 32))
    vae_shapes = [p.shape for p in vae.decoder.parameters()]
    assert vae_shapes == [p.shape for p in ae.decoder.parameters()]
    # the encoders differ only in the last layer's width: 2d outputs (mu, logvar) against d
    enc_v, enc_a = [p.shape for p in vae.encoder.parameters()], [p.shape for p in ae.encoder.parameters()]
    assert enc_v[:-2] == enc_a[:-2] and enc_v[-1][0] == 2 * enc_a[-1][0]


def test_autoencoder_loss_is_binary_cross_entropy(x):
    # a decoder whose last layer ignores the code and outputs the logit b for every pixel:
    # then -log p(x | z) = -sum_i [x_i log sigmoid(b) + (1 - x_i) log(1 - sigmoid(b))], by hand
    ae = vaelib.Autoencoder(latent_dim=2, hidden=(8,), image_shape=(1, 4, 4)).double()
    last = ae.decoder[0][-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.7)
    p = 1 / (1 + math.exp(-0.7))
    ones = x.flatten(1).sum(1)
    by_hand = -(ones * math.log(p) + (16 - ones) * math.log(1 - p))
    assert torch.allclose(ae.reconstruction_loss(x), by_hand, rtol=1e-12)
    assert torch.equal(ae.code(x), ae.encode(x).detach())


@pytest.mark.parametrize("likelihood", ["gaussian", "continuous_bernoulli"])
def test_grey_level_likelihoods_are_normalised_densities(likelihood):
    torch.manual_seed(1)
    model = vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 1, 1), likelihood=likelihood).double()
    z = torch.randn(3, 2, dtype=DT)
    out = model.decode(z)  # (3, 1, 1, 1): one pixel per image
    grid = torch.linspace(0, 1, 20001, dtype=DT) if likelihood == "continuous_bernoulli" else \
        torch.linspace(-30, 30, 200001, dtype=DT)
    values = grid.view(-1, 1, 1, 1, 1).expand(-1, 3, 1, 1, 1)
    density = model.log_likelihood(values, out.expand(len(grid), -1, -1, -1, -1)).exp()  # (G, 3)
    assert torch.allclose(torch.trapezoid(density, grid, dim=0), torch.ones(3, dtype=DT), atol=1e-6)
    # and it is the log-density of the distribution p_x returns
    x = torch.rand(3, 1, 1, 1, dtype=DT)
    assert torch.allclose(model.log_likelihood(x, out), model.p_x(z).log_prob(x), rtol=1e-10)


def test_continuous_bernoulli_mean_is_not_its_parameter():
    model = vaelib.VAE(latent_dim=1, hidden=(4,), image_shape=(1, 1, 1), likelihood="continuous_bernoulli")
    with torch.no_grad():  # the decoder's output logit is 2 whatever the code
        model.decoder[0][-1].weight.zero_()
        model.decoder[0][-1].bias.fill_(2.0)
    lam = torch.sigmoid(torch.tensor([[[[2.0]]]]))
    mean = model.decode_mean(torch.zeros(1, 1))
    # E[x] = lam / (2 lam - 1) + 1 / (2 artanh(1 - 2 lam)) for the continuous Bernoulli
    expected = lam / (2 * lam - 1) + 1 / (2 * torch.atanh(1 - 2 * lam))
    assert torch.allclose(mean, expected, rtol=1e-5) and not torch.allclose(mean, lam, rtol=1e-2)


def test_save_and_load_round_trip(tmp_path, x):
    torch.manual_seed(2)
    for model in (vaelib.VAE(latent_dim=3, arch="conv", hidden=(4, 8)), vaelib.Autoencoder(latent_dim=2)):
        path = vaelib.save_model(model, tmp_path / f"{model.kind}.pt")
        loaded = vaelib.load_model(path)
        assert type(loaded) is type(model) and loaded.config == model.config
        for a, b in zip(model.state_dict().values(), loaded.state_dict().values()):
            assert torch.equal(a, b)


@pytest.mark.parametrize("activation, module", [("tanh", torch.nn.Tanh), ("softplus", torch.nn.Softplus)])
def test_the_activation_is_every_hidden_nonlinearity_and_survives_a_round_trip(tmp_path, activation, module):
    model = vaelib.VAE(latent_dim=3, hidden=(12, 6), activation=activation)
    kinds = [type(m) for m in model.modules() if not isinstance(m, (torch.nn.Sequential, torch.nn.Linear,
                                                                    torch.nn.Flatten, torch.nn.Unflatten))]
    assert kinds[1:] == [module] * 4  # two hidden layers in the encoder, two in the decoder
    h = torch.rand(5, 1, 28, 28).flatten(1)
    layer = model.encoder[1][0]
    assert torch.allclose(model.encoder[1][:2](h), module()(layer(h)))  # the first layer, then the nonlinearity
    assert model.config["activation"] == activation and "activation" not in vaelib.VAE().config
    loaded = vaelib.load_model(vaelib.save_model(model, tmp_path / "m.pt"))
    assert loaded.config == model.config and isinstance(loaded.encoder[1][1], module)


def test_load_model_explains_what_is_wrong(tmp_path):
    with pytest.raises(FileNotFoundError, match="no model checkpoint at .*python -m vaelib train"):
        vaelib.load_model(tmp_path / "missing.pt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="is not a vaelib model checkpoint"):
        vaelib.load_model(tmp_path / "other.pt")
    (tmp_path / "text.pt").write_text("not a checkpoint")
    with pytest.raises(ValueError, match="cannot read"):
        vaelib.load_model(tmp_path / "text.pt")
    path = vaelib.save_model(vaelib.VAE(latent_dim=2), tmp_path / "v.pt")
    payload = torch.load(path, weights_only=True)
    payload["config"]["latent_dim"] = 3
    torch.save(payload, path)  # edited by hand: its checksum no longer matches
    with pytest.raises(ValueError, match="damaged .*does not match the checksum written with it"):
        vaelib.load_model(path)
    vaelib.checkpoint.atomic_save(payload, path)  # written with a fresh checksum: the content is what is wrong
    with pytest.raises(ValueError, match="do not fit its configuration"):
        vaelib.load_model(path)


def test_bad_configurations_are_named():
    with pytest.raises(ValueError, match="arch must be one of"):
        vaelib.VAE(arch="transformer")
    with pytest.raises(ValueError, match=r"conv architecture takes hidden=\(channels_1, channels_2\)"):
        vaelib.VAE(arch="conv", hidden=(8, 16, 32))
    with pytest.raises(ValueError, match="likelihood must be one of"):
        vaelib.VAE(likelihood="poisson")
    with pytest.raises(ValueError, match=r"activation must be one of \['relu', 'softplus', 'tanh'\]"):
        vaelib.VAE(activation="sigmoid")
    with pytest.raises(ValueError, match="latent_dim must be a whole number >= 1"):
        vaelib.Autoencoder(latent_dim=0)
