"""Kullback–Leibler divergences: closed forms, Monte Carlo, quadrature, and fitting a Gaussian by KL.

All functions are batched over leading dimensions, differentiable, and work on
any device. Results are in nats.

    KL(q || p) = E_q[log q(z) - log p(z)]
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import distributions as D


def _check_pair(mu: torch.Tensor, second: torch.Tensor, names: str) -> None:
    if mu.shape != second.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(mu.shape)} and {tuple(second.shape)}")
    if mu.dim() == 0:
        raise ValueError(f"{names.split(' and ')[0]} must have a last (event) dimension, got a scalar")


def kl_normal_per_dim(
    mu_q: torch.Tensor,
    logvar_q: torch.Tensor,
    mu_p: torch.Tensor | None = None,
    logvar_p: torch.Tensor | None = None,
) -> torch.Tensor:
    """KL(q_j || p_j) for each dimension j of two diagonal Gaussians (nats), ``(..., d)``.

    q = N(mu_q, diag(exp(logvar_q))), p = N(mu_p, diag(exp(logvar_p))); p defaults to the
    standard normal N(0, I). Per dimension,

        KL_j = 1/2 [logvar_p - logvar_q + (exp(logvar_q) + (mu_q - mu_p)^2) / exp(logvar_p) - 1].

    Args:
        mu_q, logvar_q: ``(..., d)``, the same shape.
        mu_p, logvar_p: ``(..., d)``, the same shape as each other and broadcastable with q.
    """
    _check_pair(mu_q, logvar_q, "mu_q and logvar_q")
    if (mu_p is None) != (logvar_p is None):
        raise ValueError("give both mu_p and logvar_p, or neither (for the standard normal)")
    if mu_p is None:
        # the standard-normal case, written out: the most used line of the course
        return 0.5 * (logvar_q.exp() + mu_q.pow(2) - 1.0 - logvar_q)
    _check_pair(mu_p, logvar_p, "mu_p and logvar_p")
    try:
        torch.broadcast_shapes(mu_q.shape, mu_p.shape)
    except RuntimeError:
        raise ValueError(
            f"q and p shapes do not broadcast: {tuple(mu_q.shape)} and {tuple(mu_p.shape)}"
        ) from None
    if mu_q.shape[-1] != mu_p.shape[-1]:
        raise ValueError(f"q and p have different dimensions: {mu_q.shape[-1]} and {mu_p.shape[-1]}")
    # the variance ratio as exp of a difference: exact where q = p even at log-variances of +-100,
    # where exp(logvar_q) / exp(logvar_p) would be inf / inf or a ratio of denormals
    return 0.5 * (logvar_p - logvar_q + (logvar_q - logvar_p).exp() + (mu_q - mu_p).pow(2) / logvar_p.exp() - 1.0)


def kl_normal(mu_q: torch.Tensor, logvar_q: torch.Tensor,
              mu_p: torch.Tensor | None = None, logvar_p: torch.Tensor | None = None) -> torch.Tensor:
    """KL(q || p) between diagonal Gaussians given means and log-variances (nats): the sum over
    the last dimension of `kl_normal_per_dim`. Shapes as there; returns ``(...)``, one KL per
    batch element."""
    return kl_normal_per_dim(mu_q, logvar_q, mu_p, logvar_p).sum(-1)


def _check_scale_tril(name: str, mu: torch.Tensor, L: torch.Tensor) -> None:
    k = mu.shape[-1] if mu.dim() else None
    if mu.dim() == 0 or L.dim() < 2 or L.shape[-1] != L.shape[-2] or L.shape[-1] != k:
        raise ValueError(
            f"{name} must be (..., k, k) for a mean of shape (..., k); got mean {tuple(mu.shape)} "
            f"and scale_tril {tuple(L.shape)}"
        )
    upper = torch.triu(L, diagonal=1)
    if (upper != 0).any():
        raise ValueError(
            f"{name} must be lower triangular (a Cholesky factor); its largest entry above the "
            f"diagonal is {upper.abs().max().item():.3g}"
        )
    diag = torch.diagonal(L, dim1=-2, dim2=-1)
    if not (diag > 0).all():
        raise ValueError(
            f"{name} must have a positive diagonal (a non-singular Cholesky factor); its smallest "
            f"diagonal entry is {diag.min().item():.3g}"
        )


def kl_mvn(
    mu_q: torch.Tensor,
    scale_tril_q: torch.Tensor,
    mu_p: torch.Tensor,
    scale_tril_p: torch.Tensor,
) -> torch.Tensor:
    """KL(q || p) between full-covariance Gaussians given Cholesky factors (nats).

    With Sigma = L L^T for each distribution and M = L_p^{-1} L_q, y = L_p^{-1}(mu_p - mu_q),

        KL = 1/2 [ ||M||_F^2 + ||y||^2 - k ] + sum log diag L_p - sum log diag L_q,

    computed with triangular solves (no inverse or determinant is formed).

    Args:
        mu_q, mu_p: ``(..., k)``; scale_tril_q, scale_tril_p: ``(..., k, k)`` lower
            triangular with a positive diagonal. Batch dimensions broadcast.

    Returns:
        ``(...)``.
    """
    _check_scale_tril("scale_tril_q", mu_q, scale_tril_q)
    _check_scale_tril("scale_tril_p", mu_p, scale_tril_p)
    if mu_q.shape[-1] != mu_p.shape[-1]:
        raise ValueError(f"q and p have different dimensions: {mu_q.shape[-1]} and {mu_p.shape[-1]}")
    try:
        batch = torch.broadcast_shapes(mu_q.shape[:-1], mu_p.shape[:-1], scale_tril_q.shape[:-2], scale_tril_p.shape[:-2])
    except RuntimeError:
        raise ValueError(
            f"batch shapes do not broadcast: mu_q {tuple(mu_q.shape)}, scale_tril_q {tuple(scale_tril_q.shape)}, "
            f"mu_p {tuple(mu_p.shape)}, scale_tril_p {tuple(scale_tril_p.shape)}"
        ) from None
    k = mu_q.shape[-1]
    Lq = scale_tril_q.expand(*batch, k, k)
    Lp = scale_tril_p.expand(*batch, k, k)
    M = torch.linalg.solve_triangular(Lp, Lq, upper=False)
    diff = (mu_p - mu_q).expand(*batch, k).unsqueeze(-1)
    y = torch.linalg.solve_triangular(Lp, diff, upper=False).squeeze(-1)
    log_det_ratio = torch.diagonal(Lp, dim1=-2, dim2=-1).log().sum(-1) - torch.diagonal(Lq, dim1=-2, dim2=-1).log().sum(-1)
    return 0.5 * (M.pow(2).sum((-2, -1)) + y.pow(2).sum(-1) - k) + log_det_ratio


def kl_categorical(q: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
    """KL(q || p) = sum_i q_i log(q_i / p_i) between categorical distributions (nats).

    ``q`` and ``p``: ``(..., C)`` probabilities summing to 1 over the last dimension.
    Terms with q_i = 0 contribute 0; q_i > 0 where p_i = 0 gives infinity.
    """
    if q.shape != p.shape:
        raise ValueError(f"q and p must have the same shape, got {tuple(q.shape)} and {tuple(p.shape)}")
    if (q < 0).any() or (p < 0).any():
        raise ValueError("probabilities must be non-negative")
    for name, probs in (("q", q), ("p", p)):
        total = probs.sum(-1)
        if not torch.allclose(total, torch.ones_like(total), atol=1e-4):
            worst = total[(total - 1).abs().argmax()] if total.dim() else total
            raise ValueError(f"{name} must sum to 1 over its last dimension; one row sums to {worst.item():.6g}")
    used = q > 0  # log only where q > 0: the masked terms are 0 and their gradient too (not 0 * inf)
    one = torch.ones_like(q)
    terms = torch.where(used, q * (torch.where(used, q, one).log() - torch.where(used, p, one).log()), 0.0)
    return terms.sum(-1)


def mc_kl(q: D.Distribution, p: D.Distribution, n_samples: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Monte Carlo estimate of KL(q || p) for any two ``torch.distributions`` objects.

    Draws z_1..z_S from q and averages log q(z_s) - log p(z_s).

    Returns:
        ``(estimate, standard_error)``, each of q's batch shape; the standard error
        is the sample standard deviation over sqrt(S).
    """
    if n_samples < 2:
        raise ValueError(f"n_samples must be at least 2 to estimate a standard error, got {n_samples}")
    z = q.sample((n_samples,))
    log_ratio = q.log_prob(z) - p.log_prob(z)
    return log_ratio.mean(0), log_ratio.std(0) / math.sqrt(n_samples)


def kl_grid(log_q: torch.Tensor, log_p: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """KL(q || p) = ∫ q(x) [log q(x) - log p(x)] dx by the trapezoidal rule on a 1-D grid.

    ``log_q`` and ``log_p`` are log-densities evaluated at the grid points ``x``
    (``(G,)``, increasing), which must cover essentially all of q's mass.
    """
    if not (log_q.shape == log_p.shape == x.shape) or x.dim() != 1:
        raise ValueError(
            f"log_q, log_p and x must be 1-D of one length, got {tuple(log_q.shape)}, "
            f"{tuple(log_p.shape)}, {tuple(x.shape)}"
        )
    q = log_q.exp()
    return torch.trapezoid(torch.where(q > 0, q * (log_q - log_p), torch.zeros_like(q)), x)


def fit_gaussian(
    kl: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    *,
    steps: int = 2000,
    lr: float = 0.05,
) -> tuple[torch.Tensor, torch.Tensor, list[float]]:
    """Fit a (diagonal) Gaussian's mean and log standard deviation by minimising ``kl(mu, log_sigma)``.

    ``kl`` is any differentiable objective, e.g. ``lambda m, s: kl_mvn(m, diag(exp(s)), mu_p, L_p)``
    for the reverse KL to a full-covariance Gaussian. Adam, full-batch, ``steps`` updates.

    Returns:
        ``(mu, log_sigma, trace)``: the fitted values (detached) and the objective at every step.
    """
    mu = mu.detach().clone().requires_grad_(True)
    log_sigma = log_sigma.detach().clone().requires_grad_(True)
    opt = torch.optim.Adam([mu, log_sigma], lr=lr)
    trace = []
    for step in range(1, steps + 1):
        opt.zero_grad()
        loss = kl(mu, log_sigma)
        if not torch.isfinite(loss):
            raise ValueError(
                f"fit_gaussian: the objective became {loss.item()} at step {step}; "
                "start closer to the target or lower lr"
            )
        loss.backward()
        opt.step()
        trace.append(loss.item())
    return mu.detach(), log_sigma.detach(), trace
