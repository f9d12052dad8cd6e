"""Small stand-ins the tests share."""

import math

import torch

from vaelib import DiagonalNormal


class FakeVAE(torch.nn.Module):
    """An 'encoder' with chosen posterior means and variances, and a decoder that explains nothing."""

    def __init__(self, mu, logvar):
        super().__init__()
        self.mu = torch.nn.Parameter(mu)
        self.logvar = torch.nn.Parameter(logvar)
        self.image_shape = (1, 1, 1)

    def encode(self, x):
        index = x.view(-1).long()  # each "image" is the index of its posterior
        return DiagonalNormal(self.mu[index], self.logvar[index])

    def decode(self, z):
        return torch.zeros(*z.shape[:-1], 1, 1, 1, dtype=z.dtype)

    def log_likelihood(self, x, out):
        return torch.zeros(out.shape[:-3], dtype=out.dtype)


def log_evidence_by_quadrature(model, x):
    """log p(x) = log ∫ p(x|z) N(z; 0, 1) dz of a model with a 1-D latent, on a fine grid; (N,)."""
    z = torch.linspace(-9, 9, 6001, dtype=torch.float64)[:, None]
    with torch.no_grad():
        log_lik = model.log_likelihood(x, model.decode(z)[:, None])  # broadcasts to (G, N)
    log_prior = -0.5 * z[:, 0] ** 2 - 0.5 * math.log(2 * math.pi)
    return torch.logsumexp(log_lik + log_prior[:, None], 0) + math.log(z[1, 0] - z[0, 0])
