"""The models of the course: a deterministic `Autoencoder` and a `VAE`, each with an MLP or a
convolutional encoder and decoder built by the same functions, so the two can share an
architecture exactly.

    VAE:  q_phi(z | x) = N(mu_phi(x), diag exp(logvar_phi(x)))     encoder (approximate posterior)
          p_theta(x | z) = prod_i p(x_i | decoder_theta(z)_i)         decoder (likelihood)
          p(z) = N(0, I)                                             prior
    AE:   z = encoder(x), p_theta(x | decoder(z))                     a likelihood, but no prior over z
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

import torch
from torch import distributions as D
from torch import nn

from .checkpoint import atomic_save, check_weights, load, require
from .data import check_unit_range
from .loop import CHECKPOINT_FORMAT as FIT_FORMAT  # a training run of `fit`

ARCHS = ("mlp", "conv")
# the hidden layers' nonlinearity: ReLU by default; tanh is Burda et al.'s (2016), softplus Kingma et al.'s (2014)
ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "softplus": nn.Softplus}
LIKELIHOODS = ("bernoulli", "gaussian", "continuous_bernoulli")
MODEL_FORMAT = "vaelib-model-1"
# what `load_model` builds at most from a file's configuration, so an untrusted file cannot decide memory use
MAX_UNITS = 100_000  # latent_dim, each hidden size, each image dimension
MAX_LAYERS = 100  # hidden layers
MAX_PARAMETERS = 50_000_000  # 200 MB of float32 weights; the course's models have about a million or fewer


class _BernoulliLogProb(torch.autograd.Function):
    """log p(x | logits) = x l - softplus(l) per pixel, with its gradient x - sigmoid(l) in one step.

    The same numbers as ``-F.binary_cross_entropy_with_logits`` (within fp32 rounding), at
    about a third of its cost on a CPU: softplus(l) = max(l, 0) + log(1 + exp(-|l|)) uses
    ``log``, whose vectorised kernel is several times faster than ``log1p``'s; where
    exp(-|l|) < 6e-8 the two differ by less than 6e-8 nats per pixel.
    """

    @staticmethod
    def forward(ctx, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(logits, x)
        out = logits.clamp(min=0).neg_().addcmul_(x, logits)  # x l - max(l, 0), in one new tensor
        return out.sub_(logits.abs().neg_().exp_().add_(1).log_())  # - log(1 + exp(-|l|))

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        logits, x = ctx.saved_tensors
        grad_logits = grad_x = None
        if ctx.needs_input_grad[0]:
            grad_logits = torch.sigmoid(logits).neg_().add_(x).mul_(grad).sum_to_size(logits.shape)
        if ctx.needs_input_grad[1]:
            grad_x = (grad * logits).sum_to_size(x.shape)
        return grad_logits, grad_x


def bernoulli_log_prob(logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Per-pixel log Bernoulli(x; sigmoid(logits)) in nats, for ``x`` in [0, 1] (grey levels
    allowed), broadcast to a common shape. Equals ``-F.binary_cross_entropy_with_logits``."""
    return _BernoulliLogProb.apply(logits, x)


class DiagonalNormal(D.Independent):
    """N(mu, diag exp(logvar)) over the last dimension, keeping ``mu`` and ``logvar`` at hand.

    A ``torch.distributions`` object (``rsample``, ``log_prob``, ``entropy``, ``mean``)
    whose parameters are the ones an encoder outputs.
    """

    def __init__(self, mu: torch.Tensor, logvar: torch.Tensor) -> None:
        if mu.shape != logvar.shape:
            raise ValueError(f"mu and logvar must have one shape, got {tuple(mu.shape)} and {tuple(logvar.shape)}")
        super().__init__(D.Normal(mu, (0.5 * logvar).exp(), validate_args=False), 1, validate_args=False)
        self.mu, self.logvar = mu, logvar


def activation_class(name: str) -> type[nn.Module]:
    """The module class of a hidden-layer nonlinearity named in `ACTIVATIONS` (``"relu"``, ``"tanh"``, ``"softplus"``)."""
    if name not in ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]


def mlp(sizes: Sequence[int], activation: str = "relu") -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` (a name in `ACTIVATIONS`) between them
    (none after the last)."""
    act = activation_class(activation)
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(act())
    return nn.Sequential(*layers)


def _check_arch(arch: str, hidden: Sequence[int], image_shape: Sequence[int]) -> None:
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {ARCHS}, got {arch!r}")
    if not hidden or any(int(h) < 1 for h in hidden):
        raise ValueError(f"hidden must be a non-empty list of positive sizes, got {hidden!r}")
    if arch == "conv" and (len(hidden) != 2 or image_shape[-1] % 4 or image_shape[-2] % 4):
        raise ValueError(
            "the conv architecture takes hidden=(channels_1, channels_2) and images whose height and "
            f"width are multiples of 4; got hidden={tuple(hidden)}, image_shape={tuple(image_shape)}"
        )


def make_encoder(arch: str, out_dim: int, hidden: Sequence[int], image_shape: Sequence[int],
                 activation: str = "relu") -> nn.Module:
    """A network from images ``(N, *image_shape)`` to ``(N, out_dim)``.

    ``mlp``: Flatten, then Linear layers of sizes ``hidden``, each followed by ``activation``.
    ``conv``: two 4x4 stride-2 convolutions with ``hidden`` channels (each halves height and
    width, each followed by ``activation``), then a Linear layer.
    """
    _check_arch(arch, hidden, image_shape)
    act = activation_class(activation)
    c, h, w = image_shape
    if arch == "mlp":
        return nn.Sequential(nn.Flatten(), mlp([c * h * w, *hidden, out_dim], activation))
    c1, c2 = hidden
    return nn.Sequential(
        nn.Conv2d(c, c1, 4, stride=2, padding=1), act(),
        nn.Conv2d(c1, c2, 4, stride=2, padding=1), act(),
        nn.Flatten(), nn.Linear(c2 * (h // 4) * (w // 4), out_dim),
    )


def make_decoder(arch: str, latent_dim: int, hidden: Sequence[int], image_shape: Sequence[int],
                 activation: str = "relu") -> nn.Module:
    """A network from codes ``(N, latent_dim)`` to per-pixel outputs ``(N, *image_shape)``, mirroring `make_encoder`."""
    _check_arch(arch, hidden, image_shape)
    act = activation_class(activation)
    c, h, w = image_shape
    if arch == "mlp":
        return nn.Sequential(mlp([latent_dim, *reversed(hidden), c * h * w], activation), nn.Unflatten(1, (c, h, w)))
    c1, c2 = hidden
    return nn.Sequential(
        nn.Linear(latent_dim, c2 * (h // 4) * (w // 4)), act(),
        nn.Unflatten(1, (c2, h // 4, w // 4)),
        nn.ConvTranspose2d(c2, c1, 4, stride=2, padding=1), act(),
        nn.ConvTranspose2d(c1, c, 4, stride=2, padding=1),
    )


def _check_images(x: torch.Tensor, image_shape: tuple[int, ...], values: bool = True, dtype=None) -> None:
    if x.dim() != len(image_shape) + 1 or tuple(x.shape[1:]) != image_shape:
        raise ValueError(f"expected images of shape (N, {', '.join(map(str, image_shape))}), got {tuple(x.shape)}")
    if dtype is not None and x.dtype != dtype:
        hint = " (uint8 pixels: divide by 255, x.float() / 255)" if not x.is_floating_point() else ""
        raise ValueError(f"images are {x.dtype} but the model's weights are {dtype}; convert with "
                         f"x.to({dtype}){hint} or the model with model.to({x.dtype})")
    if values:
        check_unit_range(x)


class _ImageModel(nn.Module):
    """What the two models share: configuration, input checks, the decoder's log-likelihood."""

    kind = "model"

    def _setup(self, latent_dim, arch, hidden, image_shape, likelihood, activation) -> None:
        if isinstance(latent_dim, bool) or not float(latent_dim).is_integer() or int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be a whole number >= 1, got {latent_dim!r}")
        if likelihood not in LIKELIHOODS:
            raise ValueError(f"likelihood must be one of {LIKELIHOODS}, got {likelihood!r}")
        activation_class(activation)
        self.latent_dim, self.arch, self.likelihood, self.activation = int(latent_dim), arch, likelihood, activation
        self.hidden, self.image_shape = tuple(int(h) for h in hidden), tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (channels, height, width), got {self.image_shape}")
        if likelihood == "gaussian":
            self.log_scale = nn.Parameter(torch.zeros(()))  # one learned pixel noise level

    @property
    def config(self) -> dict:
        """Everything needed to rebuild the model (see `save_model` / `load_model`). The activation
        is listed only when it is not the default ReLU, so the course's earlier runs keep their names."""
        config = {"latent_dim": self.latent_dim, "arch": self.arch, "hidden": list(self.hidden),
                  "image_shape": list(self.image_shape), "likelihood": self.likelihood}
        if self.activation != "relu":
            config["activation"] = self.activation
        return config

    @torch.no_grad()
    def code(self, x: torch.Tensor) -> torch.Tensor:
        """The deterministic code of each image, ``(N, d)``: the encoder's output for the
        autoencoder, the posterior mean mu(x) for the VAE. Without gradients: for looking at."""
        return self._code(x)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, *image_shape)`` with values in [0, 1].

        The shape is always checked. The values are checked on the CPU, and on an accelerator
        in eval mode; a training step on a GPU skips it, because reading the minimum and
        maximum back would stall the device at every step (`vaelib.load_mnist` data lie in
        [0, 1] by construction)."""
        weight = next((p for p in self.parameters() if p.is_floating_point()), None)
        _check_images(x, self.image_shape, values=x.device.type == "cpu" or not self.training,
                      dtype=None if weight is None else weight.dtype)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """The decoder's per-pixel output for codes ``z (..., d)``: ``(..., *image_shape)``,
        Bernoulli or continuous-Bernoulli logits, or Gaussian means. Any leading dimensions
        (samples, batch, a grid) are kept."""
        if z.dim() < 1 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must be (..., {self.latent_dim}), got {tuple(z.shape)}")
        weights = next(self.decoder.parameters()).dtype
        if z.dtype != weights:
            raise ValueError(f"codes are {z.dtype} but the model's weights are {weights}; convert with "
                             f"z.to({weights}) or the model with model.to({z.dtype})")
        out = self.decoder(z.reshape(-1, self.latent_dim)).to(z.dtype)  # fp32 out of a bf16 autocast
        return out.reshape(*z.shape[:-1], *self.image_shape)

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor) -> torch.Tensor:
        """The mean image of p(x | z) for codes ``z (..., d)``: ``(..., *image_shape)`` in [0, 1]
        (for the Gaussian decoder, its unclamped mean). Without gradients: for looking at."""
        return self._mean(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The mean image of p(x | z) at the deterministic code z = `code` (x), ``(N, *image_shape)``."""
        return self.decode_mean(self.code(x))

    def reconstruction_loss(self, x: torch.Tensor) -> torch.Tensor:
        """-log p(x | z) at the deterministic code z = `code` (x), per image, ``(N,)`` in nats: the
        autoencoder's training loss, and a VAE's reconstruction error at its posterior mean."""
        return -self.log_likelihood(x, self.decode(self._code(x)))

    def p_x(self, z: torch.Tensor) -> D.Distribution:
        """p(x | z) as a distribution over whole images (pixels independent)."""
        out = self.decode(z)
        n = len(self.image_shape)
        if self.likelihood == "bernoulli":
            return D.Independent(D.Bernoulli(logits=out, validate_args=False), n)
        if self.likelihood == "continuous_bernoulli":
            return D.Independent(D.ContinuousBernoulli(logits=out, validate_args=False), n)
        return D.Independent(D.Normal(out, self.log_scale.exp().expand_as(out), validate_args=False), n)

    def log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x | z) in nats, summed over pixels, from decoder outputs ``out (..., N, *image_shape)``;
        returns ``(..., N)``."""
        x, out = torch.broadcast_tensors(x, out)
        if self.likelihood == "bernoulli":
            per_pixel = bernoulli_log_prob(out, x)
        elif self.likelihood == "continuous_bernoulli":
            per_pixel = D.ContinuousBernoulli(logits=out, validate_args=False).log_prob(x)
        else:
            per_pixel = D.Normal(out, self.log_scale.exp(), validate_args=False).log_prob(x)
        return per_pixel.flatten(-len(self.image_shape)).sum(-1)

    def _mean(self, out: torch.Tensor) -> torch.Tensor:
        """The mean of p(x | z) from decoder outputs."""
        if self.likelihood == "bernoulli":
            return torch.sigmoid(out)
        if self.likelihood == "continuous_bernoulli":
            return D.ContinuousBernoulli(logits=out, validate_args=False).mean
        return out


class Autoencoder(_ImageModel):
    """A deterministic bottleneck autoencoder: z = encoder(x), x_hat = decoder(z).

    Trained by minimising `reconstruction_loss`, -log p(x | decoder(encoder(x))) (binary
    cross-entropy for the default Bernoulli output). It has no prior and no posterior.

    Args:
        latent_dim: the size of the code z.
        arch: ``"mlp"`` or ``"conv"``; hidden: layer sizes (mlp) or two channel counts (conv).
        image_shape: ``(C, H, W)``; likelihood: how reconstructions are scored.
        activation: the hidden layers' nonlinearity, ``"relu"``, ``"tanh"`` or ``"softplus"``.
    """

    kind = "ae"

    def __init__(self, latent_dim: int = 2, arch: str = "mlp", hidden: Sequence[int] = (512, 256),
                 image_shape: Sequence[int] = (1, 28, 28), likelihood: str = "bernoulli", activation: str = "relu"):
        super().__init__()
        self._setup(latent_dim, arch, hidden, image_shape, likelihood, activation)
        self.encoder = make_encoder(arch, self.latent_dim, self.hidden, self.image_shape, activation)
        self.decoder = make_decoder(arch, self.latent_dim, self.hidden, self.image_shape, activation)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """The code z, ``(N, latent_dim)``."""
        self.check_input(x)
        return self.encoder(x).to(x.dtype)

    def _code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)


class VAE(_ImageModel):
    """A variational autoencoder for images in [0, 1].

    Args:
        latent_dim: d, the size of z.
        arch: ``"mlp"`` or ``"conv"``; hidden: layer sizes (mlp; the decoder mirrors them) or
            two channel counts (conv).
        image_shape: ``(C, H, W)``, ``(1, 28, 28)`` for MNIST.
        likelihood: ``"bernoulli"`` (binary images), ``"continuous_bernoulli"`` or ``"gaussian"``
            (grey levels; one learned noise scale).
        activation: the hidden layers' nonlinearity, ``"relu"`` (default), ``"tanh"`` (Burda et
            al.'s architecture) or ``"softplus"``.

    Shapes: images ``x`` are ``(N, *image_shape)``; codes ``z`` are ``(N, d)``.
    Log-probabilities are in nats, summed over pixels.
    """

    kind = "vae"

    def __init__(self, latent_dim: int = 20, arch: str = "mlp", hidden: Sequence[int] = (400,),
                 image_shape: Sequence[int] = (1, 28, 28), likelihood: str = "bernoulli", activation: str = "relu"):
        super().__init__()
        self._setup(latent_dim, arch, hidden, image_shape, likelihood, activation)
        self.encoder = make_encoder(arch, 2 * self.latent_dim, self.hidden, self.image_shape, activation)
        self.decoder = make_decoder(arch, self.latent_dim, self.hidden, self.image_shape, activation)

    def encode(self, x: torch.Tensor) -> DiagonalNormal:
        """q(z | x): a `DiagonalNormal` with batch shape ``(N,)`` and event shape ``(d,)``."""
        self.check_input(x)
        mu, logvar = self.encoder(x).to(x.dtype).chunk(2, dim=-1)  # fp32 out of a bf16 autocast
        return DiagonalNormal(mu, logvar)

    def prior(self) -> DiagonalNormal:
        """p(z) = N(0, I), on the model's device and in its dtype."""
        p = next(self.parameters())
        zeros = torch.zeros(self.latent_dim, device=p.device, dtype=p.dtype)
        return DiagonalNormal(zeros, zeros)

    def _code(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x).mu

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Means of p(x | z) for ``n`` codes z ~ p(z): ``(n, *image_shape)``."""
        return self.decode_mean(self.prior().sample((n,)))


def save_model(model: _ImageModel, path: str | Path) -> Path:
    """Save weights and configuration; `load_model` rebuilds the model from the file alone.
    The file carries a checksum of its content (`vaelib.checkpoint.atomic_save`)."""
    return atomic_save({"format": MODEL_FORMAT, "kind": model.kind, "config": model.config,
                        "state": model.state_dict()}, path)


MODEL_WHAT = ("a vaelib model checkpoint (saved by vaelib.save_model or `python -m vaelib train`) or a training run "
              "of vaelib.fit")


def _from_training_run(path: Path, payload: dict) -> dict:
    """The model part of a `fit` checkpoint written by a recipe (`vaelib.train_mnist_model`: the
    chapters' ``book/runs/*.pt``, the CLI's ``CKPT.runs/*.pt``), as a `save_model` payload."""
    require(payload, ("config", "model"), path, MODEL_WHAT)
    stored = payload["config"]
    model = stored.get("model") if isinstance(stored, dict) else None
    if not isinstance(model, dict) or model.get("kind") not in ("ae", "vae"):
        what = f"a {model.get('kind')}" if isinstance(model, dict) and model.get("kind") else "a model it does not describe"
        raise ValueError(f"{path} is a training checkpoint of {what}, not of one of the course's autoencoders or "
                         "VAEs (those written by train_mnist_model or `python -m vaelib train`)")
    config = {k: v for k, v in model.items() if k != "kind"}
    return {"kind": model["kind"], "config": config, "state": payload["model"]}


def _size(value) -> int | None:
    """``value`` as a whole number of units, or None when it is not one (the constructor then says so)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, int):
        return value
    return int(value) if math.isfinite(value) and value.is_integer() else None


def parameter_count(kind: str, config: dict) -> int:
    """How many parameters `Autoencoder` (``kind="ae"``) or `VAE` (``"vae"``) has with ``config``
    (`_ImageModel.config`), by arithmetic: nothing is built. Whole-number sizes are assumed."""
    d, hidden = int(config["latent_dim"]), [int(h) for h in config["hidden"]]
    c, h, w = (int(s) for s in config["image_shape"])
    out = 2 * d if kind == "vae" else d  # the VAE's encoder gives a mean and a log-variance per dimension

    def linear(sizes):
        return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))
    if config["arch"] == "conv" and len(hidden) == 2:
        c1, c2 = hidden
        flat = c2 * (h // 4) * (w // 4)
        encoder = (c * c1 * 16 + c1) + (c1 * c2 * 16 + c2) + flat * out + out
        decoder = d * flat + flat + (c2 * c1 * 16 + c1) + (c1 * c * 16 + c)
    else:
        encoder, decoder = linear([c * h * w, *hidden, out]), linear([d, *reversed(hidden), c * h * w])
    return encoder + decoder + (config.get("likelihood") == "gaussian")  # the Gaussian's one noise scale


def _check_sizes(path: Path, kind: str, config: dict) -> None:
    """Refuse a configuration that would build more than `MAX_UNITS` per layer, `MAX_LAYERS` hidden
    layers or `MAX_PARAMETERS` in all, before anything is allocated: the file is not trusted."""
    hidden, shape = config["hidden"], config["image_shape"]
    lists = isinstance(hidden, (list, tuple)) and isinstance(shape, (list, tuple))
    if isinstance(hidden, (list, tuple)) and len(hidden) > MAX_LAYERS:
        raise ValueError(f"{path} holds a model configuration with {len(hidden)} hidden layers, more than "
                         f"{MAX_LAYERS}: vaelib does not build it from a file; it was edited or is not one of "
                         "vaelib's models")
    named = [("latent_dim", config["latent_dim"])]
    named += [("hidden size", v) for v in (hidden if isinstance(hidden, (list, tuple)) else [])]
    named += [("image_shape size", v) for v in (shape if isinstance(shape, (list, tuple)) else [])]
    for name, value in named:
        size = _size(value)
        if size is not None and size > MAX_UNITS:
            raise ValueError(f"{path} holds a model configuration with {name} {value!r}; vaelib builds at most "
                             f"{MAX_UNITS:,} units per layer from a file; it was edited or is not one of "
                             "vaelib's models")
    if lists and all(_size(v) is not None and _size(v) >= 1 for _, v in named) and len(shape) == 3:
        count = parameter_count(kind, config)
        if count > MAX_PARAMETERS:
            raise ValueError(f"{path} holds a model configuration of {count:,} parameters, more than the "
                             f"{MAX_PARAMETERS:,} vaelib builds from a file (vaelib.models.MAX_PARAMETERS); "
                             "it was edited or is not one of vaelib's models")


def load_model(path: str | Path, map_location: str | torch.device = "cpu") -> _ImageModel:
    """Rebuild a model saved by `save_model` (or by ``python -m vaelib train --out``), or the model of
    a training run the recipes keep (the chapters' ``book/runs/*.pt``, the CLI's ``CKPT.runs/*.pt``).

    The file is not trusted: it is read with the safe loader, its checksum is verified (files
    written before checksums load without one), a missing entry or NaN/infinite weights raise
    `vaelib.checkpoint.DamagedFileError`, and sizes beyond `MAX_UNITS` per layer, `MAX_LAYERS` hidden
    layers or `MAX_PARAMETERS` in all are refused before anything is built."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no model checkpoint at {path}; train one with `python -m vaelib train --out {path}`")
    payload = load(path, (MODEL_FORMAT, FIT_FORMAT), MODEL_WHAT, map_location=map_location)
    if payload["format"] == FIT_FORMAT:
        payload = _from_training_run(path, payload)
    require(payload, ("kind", "config", "state"), path, MODEL_WHAT)
    cls = {"ae": Autoencoder, "vae": VAE}.get(payload["kind"]) if isinstance(payload["kind"], str) else None
    if cls is None:
        raise ValueError(f"{path} holds an unknown model kind {payload['kind']!r}")
    config = payload["config"]
    expected = {"latent_dim", "arch", "hidden", "image_shape", "likelihood"}  # `_ImageModel.config`
    if not isinstance(config, dict) or not expected <= set(config) <= expected | {"activation"}:
        keys = sorted(config) if isinstance(config, dict) else type(config).__name__
        raise ValueError(f"{path} holds a model configuration with keys {keys}, not {sorted(expected)}: it was not "
                         "written by this version of vaelib's save_model, or was edited; train the model again")
    check_weights(payload["state"], path, MODEL_WHAT)
    _check_sizes(path, payload["kind"], config)
    try:
        model = cls(**config)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path} holds a model configuration that cannot be built: {err}") from None
    try:
        model.load_state_dict(payload["state"])
    except RuntimeError as err:
        raise ValueError(f"the weights in {path} do not fit its configuration: {err}") from None
    return model
