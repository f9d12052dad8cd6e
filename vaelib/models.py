"""The VAE: a Gaussian encoder q(z|x), a Bernoulli decoder p(x|z) and a standard-normal prior.

    q_phi(z | x) = N(mu_phi(x), diag exp(logvar_phi(x)))     the encoder (approximate posterior)
    p_theta(x | z) = prod_i Bernoulli(x_i; sigmoid(logits_theta(z)_i))   the decoder (likelihood)
    p(z) = N(0, I)                                           the prior
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import distributions as D
from torch import nn


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


def mlp(sizes: Sequence[int], activation: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    """Linear layers of the given sizes with ``activation`` between them (none after the last)."""
    layers: list[nn.Module] = []
    for i, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if i < len(sizes) - 2:
            layers.append(activation())
    return nn.Sequential(*layers)


class VAE(nn.Module):
    """A variational autoencoder with MLP encoder and decoder for binary (or [0, 1]) images.

    Args:
        latent_dim: d, the size of z.
        hidden: sizes of the hidden layers of the encoder; the decoder mirrors them.
        image_shape: the shape of one image, ``(1, 28, 28)`` for MNIST.

    Shapes: images ``x`` are ``(N, *image_shape)`` with values in [0, 1]; codes ``z``
    are ``(N, d)``. Log-probabilities are in nats, summed over pixels.
    """

    def __init__(self, latent_dim: int = 20, hidden: Sequence[int] = (400,), image_shape: Sequence[int] = (1, 28, 28)):
        super().__init__()
        self.latent_dim = int(latent_dim)
        self.image_shape = tuple(image_shape)
        n_pixels = math.prod(self.image_shape)
        self.encoder = nn.Sequential(nn.Flatten(), mlp([n_pixels, *hidden, 2 * self.latent_dim]))
        self.decoder = nn.Sequential(mlp([self.latent_dim, *reversed(hidden), n_pixels]), nn.Unflatten(1, self.image_shape))

    def check_input(self, x: torch.Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` is ``(N, *image_shape)`` with values in [0, 1]."""
        if x.dim() != len(self.image_shape) + 1 or tuple(x.shape[1:]) != self.image_shape:
            raise ValueError(
                f"expected images of shape (N, {', '.join(map(str, self.image_shape))}), got {tuple(x.shape)}"
            )
        if x.numel() and (x.min() < 0 or x.max() > 1):
            raise ValueError(
                f"a Bernoulli decoder needs pixel values in [0, 1], got [{x.min().item():.3g}, {x.max().item():.3g}]; "
                "scale images by 1/255 (vaelib.load_mnist does)"
            )

    def encode(self, x: torch.Tensor) -> DiagonalNormal:
        """q(z | x): a `DiagonalNormal` with batch shape ``(N,)`` and event shape ``(d,)``."""
        self.check_input(x)
        mu, logvar = self.encoder(x).chunk(2, dim=-1)
        return DiagonalNormal(mu, logvar)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """Bernoulli logits of p(x | z), ``(N, *image_shape)`` for ``z (N, d)``."""
        if z.dim() != 2 or z.shape[1] != self.latent_dim:
            raise ValueError(f"z must be (N, {self.latent_dim}), got {tuple(z.shape)}")
        return self.decoder(z)

    def p_x(self, z: torch.Tensor) -> D.Distribution:
        """p(x | z) as a distribution over whole images (pixels independent Bernoulli)."""
        return D.Independent(D.Bernoulli(logits=self.decode(z), validate_args=False), len(self.image_shape))

    def prior(self) -> DiagonalNormal:
        """p(z) = N(0, I), on the model's device and in its dtype."""
        p = next(self.parameters())
        zeros = torch.zeros(self.latent_dim, device=p.device, dtype=p.dtype)
        return DiagonalNormal(zeros, zeros)

    @torch.no_grad()
    def sample(self, n: int) -> torch.Tensor:
        """Pixel probabilities of p(x | z) for ``n`` codes z ~ p(z): ``(n, *image_shape)`` in [0, 1]."""
        z = self.prior().sample((n,))
        return torch.sigmoid(self.decode(z))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """Pixel probabilities of p(x | z) at the posterior mean z = mu(x)."""
        return torch.sigmoid(self.decode(self.encode(x).mu))
