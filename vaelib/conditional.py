"""Models with a label y: the conditional VAE and the M2 model of semi-supervised learning (Chapter 9).

    ConditionalVAE (Sohn et al., 2015; Kingma et al., 2014):
        q_phi(z | x, y) = N(mu_phi(x, y), diag exp(logvar_phi(x, y)))   encoder sees [x, onehot(y)]
        p_theta(x | y, z) = prod_i Bernoulli(x_i; lambda_theta(y, z)_i)   decoder sees [z, onehot(y)]
        p(z) = N(0, I)
        conditional ELBO:  log p(x | y) >= E_q[log p(x | y, z)] - KL(q(z | x, y) || p(z))

    M2 (Kingma, Rezende, Mohamed and Welling, 2014): the same pair of networks, a uniform
    p(y) = 1/C, and a classifier q_phi(y | x). For a labelled image the bound is
        L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z))  <= log p(x, y),
    for an unlabelled one y is a latent too, summed out exactly:
        U(x) = sum_y q(y | x) L(x, y) + H(q(y | x))  <= log p(x).

Every bound is per image, in nats, a sum over pixels and latent dimensions (never a mean).
Images are ``(N, *image_shape)`` in [0, 1]; labels are integer ``(N,)`` in 0..C-1.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn

from .data import check_unit_range
from .divergences import kl_normal
from .models import DiagonalNormal, bernoulli_log_prob, make_decoder, make_encoder, mlp
from .objectives import ELBOTerms, check_batch


def check_labels(y: torch.Tensor, n: int | None = None, n_classes: int = 10) -> None:
    """Raise ``ValueError`` unless ``y`` is an integer tensor ``(n,)`` with values in 0..n_classes-1."""
    if not isinstance(y, torch.Tensor):
        raise ValueError(f"labels must be a tensor of class indices, got {type(y).__name__}")
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        if y.dim() == 2 and y.shape[1] == n_classes:  # one-hot (or probabilities): .long() would keep (N, C)
            raise ValueError(f"labels must be class indices (N,), got one-hot rows {tuple(y.shape)} of {y.dtype}; "
                             "convert with y.argmax(1)")
        raise ValueError(f"labels must be integer class indices (torch.long), got {y.dtype}; "
                         "convert with y.long()")
    if y.dim() != 1 or (n is not None and len(y) != n):
        want = f"({n},), one per image" if n is not None else "(N,)"
        raise ValueError(f"labels must have shape {want}, got {tuple(y.shape)}")
    if len(y) and (int(y.min()) < 0 or int(y.max()) >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}, got values from {int(y.min())} to {int(y.max())}")


def one_hot(y: torch.Tensor, n_classes: int = 10, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``(N, C)`` one-hot rows of labels ``y (N,)``, checked by `check_labels`."""
    check_labels(y, n_classes=n_classes)
    return torch.nn.functional.one_hot(y.long(), n_classes).to(dtype)


def small_init_(model: nn.Module, std: float = 1e-3) -> nn.Module:
    """Draw the weights and biases of every hidden layer of ``model``'s MLPs from N(0, std^2), leaving
    each network's output layer as PyTorch initialised it (Kingma et al.'s and Pyro's M2 start so:
    every hidden unit starts near the same value, so no label or code means anything at first).
    An MLP is each ``nn.Sequential`` holding ``nn.Linear`` layers directly; returns ``model``."""
    with torch.no_grad():
        for net in model.modules():
            if isinstance(net, nn.Sequential):
                layers = [m for m in net.children() if isinstance(m, nn.Linear)]
                for layer in layers[:-1]:
                    layer.weight.normal_(0.0, std)
                    layer.bias.normal_(0.0, std)
    return model


def labelled_subset(y: torch.Tensor, n_labels: int, seed: int = 0, n_classes: int = 10) -> torch.Tensor:
    """The indices of ``n_labels`` examples, ``n_labels / n_classes`` of each class, chosen by a seeded rule.

    For each class c in turn, the positions where ``y == c`` are shuffled by a ``torch.Generator``
    seeded with ``seed`` (one generator for all classes) and the first ``n_labels / n_classes``
    kept. Returns them sorted, ``(n_labels,)`` int64 on the CPU: the same indices on every
    machine for the same labels and seed.
    """
    check_labels(y, n_classes=n_classes)
    if isinstance(n_labels, bool) or not isinstance(n_labels, int) or n_labels < n_classes or n_labels % n_classes:
        raise ValueError(f"n_labels must be a positive multiple of the {n_classes} classes, got {n_labels!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be a whole number in [0, 2**63), got {seed!r}")
    per_class = n_labels // n_classes
    y = y.cpu()
    g = torch.Generator().manual_seed(seed)
    chosen = []
    for c in range(n_classes):
        where = (y == c).nonzero().flatten()
        if len(where) < per_class:
            raise ValueError(f"class {c} has {len(where)} examples, fewer than the {per_class} asked for")
        chosen.append(where[torch.randperm(len(where), generator=g)[:per_class]])
    return torch.cat(chosen).sort().values


class ConditionalVAE(nn.Module):
    """A VAE whose encoder and decoder both see the label: q(z | x, y) and p(x | y, z), Bernoulli pixels.

    Args:
        latent_dim: d, the size of z.
        hidden: the MLP's hidden sizes; the encoder is ``D + C -> hidden -> 2d``, the decoder
            mirrors it, ``d + C -> reversed(hidden) -> D`` (`vaelib.models.make_decoder`).
        n_classes: C, the number of labels.
        image_shape: ``(C_img, H, W)``, ``(1, 28, 28)`` for MNIST.
        activation: the hidden layers' nonlinearity (``"relu"``, ``"tanh"`` or ``"softplus"``).

    Shapes: images ``x (N, *image_shape)`` in [0, 1], labels ``y (N,)`` integers in 0..C-1,
    codes ``z (..., N, d)``. Log-probabilities are in nats, summed over pixels.
    """

    kind = "cvae"

    def __init__(self, latent_dim: int = 16, hidden: Sequence[int] = (256,), n_classes: int = 10,
                 image_shape: Sequence[int] = (1, 28, 28), activation: str = "relu"):
        super().__init__()
        if isinstance(latent_dim, bool) or not float(latent_dim).is_integer() or int(latent_dim) < 1:
            raise ValueError(f"latent_dim must be a whole number >= 1, got {latent_dim!r}")
        if isinstance(n_classes, bool) or not isinstance(n_classes, int) or n_classes < 2:
            raise ValueError(f"n_classes must be a whole number >= 2, got {n_classes!r}")
        self.latent_dim, self.n_classes = int(latent_dim), n_classes
        if any(isinstance(h, bool) or not float(h).is_integer() or int(h) < 1 for h in hidden):
            raise ValueError(f"hidden must be whole numbers of units >= 1, got {tuple(hidden)!r}")
        self.hidden, self.image_shape = tuple(int(h) for h in hidden), tuple(int(s) for s in image_shape)
        if len(self.image_shape) != 3:
            raise ValueError(f"image_shape must be (channels, height, width), got {self.image_shape}")
        if not self.hidden or min(self.hidden) < 1:
            raise ValueError(f"hidden must be a non-empty list of positive sizes, got {hidden!r}")
        self.n_pixels, self.activation = math.prod(self.image_shape), activation
        self.encoder = mlp([self.n_pixels + n_classes, *self.hidden, 2 * self.latent_dim], activation)
        self.decoder = make_decoder("mlp", self.latent_dim + n_classes, self.hidden, self.image_shape, activation)

    @property
    def config(self) -> dict:
        """Everything needed to rebuild the model (the activation only when it is not ReLU)."""
        config = {"latent_dim": self.latent_dim, "hidden": list(self.hidden), "n_classes": self.n_classes,
                  "image_shape": list(self.image_shape)}
        if self.activation != "relu":
            config["activation"] = self.activation
        return config

    def _weight(self) -> torch.Tensor:
        return next(self.parameters())

    def check_input(self, x: torch.Tensor, y: torch.Tensor | None = None) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, *image_shape)`` in [0, 1] in the weights' dtype,
        and ``y`` (if given) holds N labels in 0..C-1."""
        if not isinstance(x, torch.Tensor) or x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ValueError(f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {shape}")
        dtype = self._weight().dtype
        if x.dtype != dtype:
            hint = " (uint8 pixels: divide by 255, x.float() / 255)" if not x.is_floating_point() else ""
            raise ValueError(f"images are {x.dtype} but the model's weights are {dtype}; convert with x.to({dtype}){hint}")
        if x.device.type == "cpu" or not self.training:  # as `VAE.check_input`: no read-back in a GPU step
            check_unit_range(x)
        if y is not None:
            check_labels(y, len(x), self.n_classes)

    def _one_hot(self, y: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return torch.nn.functional.one_hot(y.long(), self.n_classes).to(like.dtype)

    def encode(self, x: torch.Tensor, y: torch.Tensor) -> DiagonalNormal:
        """q(z | x, y): a `DiagonalNormal` with batch shape ``(N,)`` and event shape ``(d,)``."""
        self.check_input(x, y)
        h = torch.cat([x.flatten(1), self._one_hot(y, x)], dim=1)
        mu, logvar = self.encoder(h).to(x.dtype).chunk(2, dim=-1)  # fp32 out of a bf16 autocast
        return DiagonalNormal(mu, logvar)

    def encode_every_class(self, x: torch.Tensor) -> DiagonalNormal:
        """q(z | x, y) for every label y at once: batch shape ``(C * N,)`` in the order of
        ``x.repeat(C)`` (label 0's N images first), the same distributions as `encode` on the
        repeated images and labels.

        The encoder's first layer sees ``[x, one_hot(y)]``, so its output is W_x x + W_y[:, y] + b:
        the product with the image, D = 784 inputs, is made once per image instead of once per
        (image, label) pair, and only the label's column is added C times. The rest of the
        encoder runs on the C * N pairs as before.
        """
        self.check_input(x)
        first, rest = self.encoder[0], self.encoder[1:]
        n_pixels = self.n_pixels
        from_image = torch.nn.functional.linear(x.flatten(1), first.weight[:, :n_pixels])  # (N, H)
        from_label = first.weight[:, n_pixels:].T + first.bias  # (C, H): column y of W_y, plus b
        h = (from_label[:, None, :] + from_image[None]).reshape(-1, from_image.shape[-1])
        mu, logvar = rest(h).to(x.dtype).chunk(2, dim=-1)  # fp32 out of a bf16 autocast
        return DiagonalNormal(mu, logvar)

    def decode(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | y, z), ``(..., N, *image_shape)``, for codes ``z (..., N, d)``
        and labels ``y (N,)`` (the same label for every leading index of ``z``)."""
        if z.dim() < 2 or z.shape[-1] != self.latent_dim:
            raise ValueError(f"z must be (..., N, {self.latent_dim}), got {tuple(z.shape)}")
        check_labels(y, z.shape[-2], self.n_classes)
        c = self._one_hot(y, z).expand(*z.shape[:-1], self.n_classes)
        h = torch.cat([z, c], dim=-1).reshape(-1, self.latent_dim + self.n_classes)
        return self.decoder(h).to(z.dtype).reshape(*z.shape[:-1], *self.image_shape)

    @torch.no_grad()
    def decode_mean(self, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The mean image lambda of p(x | y, z), ``(..., N, *image_shape)`` in [0, 1]. Without gradients."""
        return torch.sigmoid(self.decode(z, y))

    def log_likelihood(self, x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
        """log p(x | y, z) in nats, summed over pixels, from logits ``(..., N, *image_shape)``: ``(..., N)``."""
        return bernoulli_log_prob(logits, x).flatten(-len(self.image_shape)).sum(-1)

    def prior(self) -> DiagonalNormal:
        """p(z) = N(0, I), on the model's device and in its dtype."""
        w = self._weight()
        zeros = torch.zeros(self.latent_dim, device=w.device, dtype=w.dtype)
        return DiagonalNormal(zeros, zeros)

    @torch.no_grad()
    def code(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """The posterior mean mu(x, y), ``(N, d)``. Without gradients: for looking at."""
        return self.encode(x, y).mu

    @torch.no_grad()
    def sample(self, y: torch.Tensor) -> torch.Tensor:
        """Means of p(x | y, z) for one code z ~ p(z) per label in ``y (N,)``: ``(N, *image_shape)``."""
        y = torch.as_tensor(y, device=self._weight().device)
        check_labels(y, n_classes=self.n_classes)
        return self.decode_mean(self.prior().sample((len(y),)), y)


def conditional_elbo(model: ConditionalVAE, x: torch.Tensor, y: torch.Tensor, n_samples: int = 1,
                     eps: torch.Tensor | None = None) -> ELBOTerms:
    """The conditional ELBO of each image given its label, a lower bound on log p(x | y).

    recon = (1/S) sum_s log p(x | y, z_s) with z_s = mu(x, y) + sigma(x, y) * eps_s, and
    kl = KL(q(z | x, y) || N(0, I)) in closed form. ``eps`` ``(S, N, d)`` fixes the standard-normal
    draws (default: drawn afresh, ``S = n_samples``).

    Returns `vaelib.ELBOTerms` ``(recon, kl, elbo)``, each ``(N,)`` in nats per image (sums).
    """
    check_batch(x)
    return _conditional_elbo_terms(model, model.encode(x, y), x, y, n_samples, eps)


def _conditional_elbo_terms(model: ConditionalVAE, q: DiagonalNormal, x: torch.Tensor, y: torch.Tensor,
                            n_samples: int = 1, eps: torch.Tensor | None = None) -> ELBOTerms:
    """`conditional_elbo` given the encoder's answer ``q`` for ``(x, y)``."""
    if eps is None:
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 1:
            raise ValueError(f"n_samples must be a whole number >= 1, got {n_samples!r}")
        z = q.rsample((n_samples,))
    else:
        if eps.dim() != 3 or tuple(eps.shape[1:]) != tuple(q.mu.shape):
            raise ValueError(f"eps must be (S, {len(x)}, {model.latent_dim}), got {tuple(eps.shape)}")
        z = q.mu + (0.5 * q.logvar).exp() * eps
    recon = model.log_likelihood(x, model.decode(z, y)).mean(0)
    kl = kl_normal(q.mu, q.logvar)
    return ELBOTerms(recon, kl, recon - kl)


class M2(nn.Module):
    """The M2 model for semi-supervised classification: a classifier q(y | x) beside a `ConditionalVAE`.

    Generative model: y ~ p(y) = uniform over C classes, z ~ N(0, I), x ~ p_theta(x | y, z).
    Inference model: q_phi(y | x) (``classifier``, an MLP ``D -> hidden -> C`` built by
    `vaelib.models.make_encoder`) and q_phi(z | x, y) (``cvae.encode``).

    Args:
        latent_dim, hidden, n_classes, image_shape, activation: as `ConditionalVAE`; the classifier
            has the same hidden sizes and activation.

    Every bound is ``(N,)``, in nats per image.
    """

    kind = "m2"

    def __init__(self, latent_dim: int = 16, hidden: Sequence[int] = (256,), n_classes: int = 10,
                 image_shape: Sequence[int] = (1, 28, 28), activation: str = "relu"):
        super().__init__()
        self.cvae = ConditionalVAE(latent_dim, hidden, n_classes, image_shape, activation)
        self.n_classes = n_classes
        self.classifier = make_encoder("mlp", n_classes, self.cvae.hidden, self.cvae.image_shape, activation)

    @property
    def config(self) -> dict:
        """Everything needed to rebuild the model."""
        return self.cvae.config

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        """The logits of q(y | x), ``(N, C)``."""
        self.cvae.check_input(x)
        return self.classifier(x).to(x.dtype)

    def log_prior_y(self) -> float:
        """log p(y) = -log C for every class, in nats."""
        return -math.log(self.n_classes)

    def labelled_bound(self, x: torch.Tensor, y: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """L(x, y) = E_q(z|x,y)[log p(x | y, z)] + log p(y) - KL(q(z | x, y) || p(z)) <= log p(x, y),
        ``(N,)`` in nats, one reparameterised draw (or the given ``eps (S, N, d)``)."""
        return conditional_elbo(self.cvae, x, y, eps=eps).elbo + self.log_prior_y()

    def bounds_per_class(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """L(x, y) for every class y at once, ``(N, C)``: one batched pass over the C * N pairs.

        The same noise ``eps (S, N, d)`` (default one fresh draw per image) serves every class, so
        differences between classes are not blurred by independent draws."""
        self.cvae.check_input(x)
        n, c = len(x), self.n_classes
        if eps is None:
            eps = torch.randn(1, n, self.cvae.latent_dim, device=x.device, dtype=x.dtype)
        if eps.dim() != 3 or tuple(eps.shape[1:]) != (n, self.cvae.latent_dim):
            raise ValueError(f"eps must be (S, {n}, {self.cvae.latent_dim}), got {tuple(eps.shape)}")
        xs = x.repeat(c, *([1] * (x.dim() - 1)))  # (C * N, ...): class 0's copies first
        ys = torch.arange(c, device=x.device).repeat_interleave(n)
        q = self.cvae.encode_every_class(x)  # = cvae.encode(xs, ys), the image's product made once
        bounds = _conditional_elbo_terms(self.cvae, q, xs, ys, eps=eps.repeat(1, c, 1)).elbo + self.log_prior_y()
        return bounds.view(c, n).T

    def unlabelled_bound(self, x: torch.Tensor, eps: torch.Tensor | None = None) -> torch.Tensor:
        """U(x) = sum_y q(y | x) L(x, y) + H(q(y | x)) <= log p(x), ``(N,)`` in nats, the sum over the
        C classes done exactly (`bounds_per_class`)."""
        bounds = self.bounds_per_class(x, eps)
        log_q = torch.log_softmax(self.classify(x), dim=-1)
        q = log_q.exp()
        return (q * bounds).sum(-1) - (q * log_q).sum(-1)


def m2_loss(model: M2, x_labelled: torch.Tensor, y_labelled: torch.Tensor, x_unlabelled: torch.Tensor,
            alpha: float, labelled_weight: float = 1.0) -> dict[str, torch.Tensor]:
    """The M2 training loss for one step, in nats per image, and its pieces (batch means):

        loss = labelled_weight * mean_l[-L(x, y)] + mean_u[-U(x)] + alpha * mean_l[-log q(y | x)].

    The paper's objective sums over the data set, J = sum_l -L + sum_u -U + alpha_paper * E_l[-log q];
    per labelled image its classification term then weighs alpha_paper / N_l against its bound,
    which is ``alpha`` here (both are means over the labelled batch): alpha_paper = 0.1 N gives
    ``alpha = 0.1 N / N_l``. Returns ``{"loss", "labelled_bound", "unlabelled_bound",
    "classification"}`` (the bounds as means of L and U, the last as mean cross-entropy in nats).
    """
    if not math.isfinite(alpha) or alpha < 0 or not math.isfinite(labelled_weight) or labelled_weight < 0:
        raise ValueError(f"alpha and labelled_weight must be finite and >= 0, got {alpha} and {labelled_weight}")
    check_batch(x_labelled, "x_labelled")
    check_batch(x_unlabelled, "x_unlabelled")
    check_labels(y_labelled, len(x_labelled), model.n_classes)
    labelled = model.labelled_bound(x_labelled, y_labelled).mean()
    unlabelled = model.unlabelled_bound(x_unlabelled).mean()
    classification = torch.nn.functional.cross_entropy(model.classify(x_labelled), y_labelled.long())
    loss = -labelled_weight * labelled - unlabelled + alpha * classification
    return {"loss": loss, "labelled_bound": labelled.detach(), "unlabelled_bound": unlabelled.detach(),
            "classification": classification.detach()}

