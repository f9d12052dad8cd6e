"""Small stand-ins the tests share."""

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
