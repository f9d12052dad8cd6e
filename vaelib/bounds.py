"""Bounds on log p(x) for a VAE, per example and in nats (summed over pixels and latent dimensions).

- `elbo`: the evidence lower bound E_q[log p(x|z)] - KL(q(z|x) || p(z)).
- `iwae_bound`: the importance-weighted bound L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)],
  which is the ELBO at k = 1, grows with k, and tends to log p(x) (Burda et al., 2016).
- `evaluate_bounds`: both, averaged over a dataset, with standard errors.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.nn.functional as F

from .divergences import kl_normal
from .progress import ProgressLine


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


def _decode_samples(model, z: torch.Tensor) -> torch.Tensor:
    """Decoder outputs for codes ``(S, N, d)``: ``(S, N, *image_shape)``."""
    return model.decode(z.flatten(0, 1)).unflatten(0, z.shape[:2])


def elbo(model, x: torch.Tensor, n_samples: int = 1, beta: float = 1.0, analytic_kl: bool = True) -> ELBOTerms:
    """The reparameterised ELBO of a `vaelib.VAE` for each image in ``x``.

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
    recon = model.log_likelihood(x, _decode_samples(model, z)).mean(0)
    if analytic_kl:
        kl = kl_normal(q.mu, q.logvar)
    else:
        kl = (q.log_prob(z) - model.prior().log_prob(z)).mean(0)
    return ELBOTerms(recon, kl, recon - beta * kl)


def kl_per_dimension(q) -> torch.Tensor:
    """KL(q(z_j | x) || N(0, 1)) for each latent dimension j of a `DiagonalNormal` q: ``(N, d)`` nats."""
    return 0.5 * (q.logvar.exp() + q.mu.pow(2) - 1.0 - q.logvar)


def vae_loss(model, x: torch.Tensor, beta: float = 1.0, free_bits: float = 0.0) -> torch.Tensor:
    """The training loss -mean_n [recon_n - beta * KL_n] for a batch, in nats per image (a scalar).

    ``beta`` weights the KL term (beta = 1 is the ELBO). ``free_bits`` (lambda, nats per latent
    dimension) replaces each dimension's batch-averaged KL by max(KL_j, lambda), so the
    optimiser gains nothing by pushing a dimension's KL below lambda (Kingma et al., 2016).
    With ``free_bits=0`` and ``beta=1`` this equals ``-elbo(model, x).elbo.mean()``.
    """
    if beta < 0 or free_bits < 0:
        raise ValueError(f"beta and free_bits must be >= 0, got beta={beta}, free_bits={free_bits}")
    q = model.encode(x)
    z = q.rsample()
    recon = model.log_likelihood(x, model.decode(z)).mean()
    kl_dims = kl_per_dimension(q).mean(0)  # (d,): batch-averaged KL of each dimension
    if free_bits > 0:
        kl_dims = kl_dims.clamp(min=free_bits)
    return -(recon - beta * kl_dims.sum())


def iwae_bound(model, x: torch.Tensor, k: int, chunk_size: int | None = None) -> torch.Tensor:
    """The importance-weighted bound L_k for each image, ``(N,)`` in nats.

    log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x) for z_1..z_k ~ q(z | x), and
    L_k = logsumexp_i(log w_i) - log k. The k samples are drawn ``chunk_size`` at a time
    (default: about 8192 decoder evaluations per chunk), so memory stays bounded for k = 5000;
    only the ``(k, N)`` log-weights are kept. Call it under ``torch.no_grad()`` to evaluate.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    q = model.encode(x)
    prior = model.prior()
    chunk = chunk_size or max(1, 8192 // max(1, len(x)))
    log_w = []
    for start in range(0, k, chunk):
        z = q.sample((min(chunk, k - start),))
        log_w.append(model.log_likelihood(x, _decode_samples(model, z)) + prior.log_prob(z) - q.log_prob(z))
    return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)


@torch.no_grad()
def evaluate_bounds(model, data, k: int = 1000, batch_size: int = 100, device=None, progress: bool = False) -> dict:
    """Average ELBO (analytic KL, one sample) and importance-sampled NLL = -L_k over ``data``.

    ``data`` is an `InMemoryData` (dynamic binarisation is drawn as usual) or any iterable
    of ``(x, ...)`` batches. Returns a dict of plain floats in nats per image: ``elbo``,
    ``elbo_se``, ``nll``, ``nll_se`` (standard errors over images), ``k`` and ``n``.
    """
    device = torch.device(device) if device is not None else next(model.parameters()).device
    was_training = model.training
    model.eval()
    elbos, iwaes = [], []
    if hasattr(data, "batches"):
        data = data.to(device)
        batches, total = data.batches(batch_size), data.num_batches(batch_size)
    else:
        batches, total = data, (len(data) if hasattr(data, "__len__") else None)
    line = ProgressLine(disable=not progress)
    of = f"/{total}" if total is not None else ""
    try:
        for step, batch in enumerate(batches, start=1):
            x = (batch[0] if isinstance(batch, (tuple, list)) else batch).to(device)
            elbos.append(elbo(model, x).elbo.double().cpu())
            iwaes.append(iwae_bound(model, x, k).double().cpu())
            line.show(f"bounds (k={k}): {step}{of} batches")
    finally:
        line.close()
        model.train(was_training)
    e, w = torch.cat(elbos), torch.cat(iwaes)
    n = len(e)
    if n < 2:
        raise ValueError("evaluate_bounds needs at least 2 images")
    return {"elbo": e.mean().item(), "elbo_se": (e.std() / math.sqrt(n)).item(),
            "nll": -w.mean().item(), "nll_se": (w.std() / math.sqrt(n)).item(), "k": k, "n": n}
