"""Bounds on log p(x) for a VAE, per example and in nats (summed over pixels and latent dimensions)."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .divergences import kl_normal


class ELBOTerms(NamedTuple):
    """Per-example terms of the ELBO, each ``(N,)`` in nats: ``elbo = recon - beta * kl``."""

    recon: torch.Tensor
    kl: torch.Tensor
    elbo: torch.Tensor


def log_bernoulli(x: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """log p(x | logits) for independent Bernoulli pixels, summed over all but the batch dimension(s).

    ``x`` ``(N, *image)``, ``logits`` ``(..., N, *image)``; returns ``(..., N)``.
    """
    n_event = x.dim() - 1
    return -F.binary_cross_entropy_with_logits(logits, x.expand_as(logits), reduction="none").flatten(-n_event).sum(-1)


def elbo(model, x: torch.Tensor, n_samples: int = 1, beta: float = 1.0, analytic_kl: bool = True) -> ELBOTerms:
    """The reparameterised ELBO of ``model`` (a `vaelib.VAE`) for each image in ``x``.

    recon = (1/S) sum_s log p(x | z_s) with z_s = mu + sigma * eps_s, and kl is either the
    closed form KL(q(z|x) || N(0, I)) (``analytic_kl=True``) or its Monte Carlo estimate
    (1/S) sum_s [log q(z_s|x) - log p(z_s)] from the same samples.

    Returns `ELBOTerms` ``(recon, kl, elbo)``, each ``(N,)``: sums over pixels and latent
    dimensions, never means. The training loss is ``-elbo(...).elbo.mean()``.
    """
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    q = model.encode(x)
    z = q.rsample((n_samples,))  # (S, N, d)
    logits = model.decode(z.flatten(0, 1)).unflatten(0, (n_samples, len(x)))
    recon = log_bernoulli(x, logits).mean(0)
    if analytic_kl:
        kl = kl_normal(q.mu, q.logvar)
    else:
        kl = (q.log_prob(z) - model.prior().log_prob(z)).mean(0)
    return ELBOTerms(recon, kl, recon - beta * kl)
