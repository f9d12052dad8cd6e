"""Where a VAE's ELBO loses to log p(x): the approximation gap and the amortisation gap
(Cremer et al., 2018), in nats per image.

For one image x and a decoder p_theta held fixed,

    log p(x) - ELBO(q_phi(z|x)) = [log p(x) - ELBO(q*)] + [ELBO(q*) - ELBO(q_phi(z|x))]
                                   approximation gap      amortisation gap

where q* is the best diagonal Gaussian for this x alone, found by optimising its own mean and
log-variance (`optimise_local_posterior`). The approximation gap is KL(q* || p(z|x)): what the
Gaussian family cannot do. The amortisation gap is what the encoder loses by answering every x
with one network instead of optimising each q. `inference_gaps` measures both, with log p(x)
estimated by importance sampling (`iwae_bound`, proposing from q* and q_phi(z|x) half and half).
Both need the prior p(z) = N(0, I).

The model is anything with ``decode(z)``, ``log_likelihood(x, decode(z))`` and ``prior()`` (and
``encode(x)`` for the encoder's answer), such as a `vaelib.VAE`.
"""

from __future__ import annotations

import math

import torch

from .divergences import kl_normal
from .models import DiagonalNormal
from .objectives import check_finite_weights, check_images, iwae_bound


def _check_positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a whole number >= 1, got {value!r}")
    return value


def _check_lr(lr) -> None:
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be positive and finite, got {lr!r}")


def elbo_of(model, x: torch.Tensor, q: DiagonalNormal, n_samples: int = 100) -> torch.Tensor:
    """The ELBO of any diagonal Gaussian ``q`` (batch shape ``(N,)``) for each image: ``(N,)`` in nats.

    E_q[log p(x | z)] is averaged over ``n_samples`` draws (in chunks of about 8192 decoder
    evaluations), and KL(q || N(0, I)) is the closed form. No gradients.
    """
    _check_positive_int(n_samples, "n_samples")
    check_images(model, x)
    if tuple(q.mu.shape[:-1]) != (len(x),):
        raise ValueError(f"q must hold one Gaussian per image, batch shape ({len(x)},), got {tuple(q.mu.shape[:-1])}")
    chunk = max(1, 8192 // max(1, len(x)))
    total = torch.zeros(len(x), dtype=q.mu.dtype, device=q.mu.device)
    with torch.no_grad():
        for start in range(0, n_samples, chunk):
            z = q.sample((min(chunk, n_samples - start),))
            total += model.log_likelihood(x, model.decode(z)).sum(0)
        return total / n_samples - kl_normal(q.mu, q.logvar)


def optimise_local_posterior(model, x: torch.Tensor, steps: int = 300, lr: float = 0.05, n_samples: int = 4,
                             init: DiagonalNormal | None = None) -> DiagonalNormal:
    """q*: a diagonal Gaussian N(mu_n, diag exp(logvar_n)) fitted to each image by itself.

    Maximises each image's ELBO, E_q[log p(x_n | z)] - KL(q_n || N(0, I)), over its own
    ``(mu_n, logvar_n)`` with the decoder fixed: ``steps`` Adam steps whose learning rate falls
    linearly from ``lr`` to 0, each on a reparameterised estimate from ``n_samples`` codes per
    image. Starts from ``init``, else the encoder's q_phi(z | x_n) (else the prior, for a model
    without ``encode``). The model's parameters get no gradient.

    Returns q* as a `DiagonalNormal` with batch shape ``(N,)``, detached. The images, the model's
    weights and ``init`` are checked first: a NaN in any of them would make q* NaN.
    """
    _check_positive_int(steps, "steps")
    _check_positive_int(n_samples, "n_samples")
    _check_lr(lr)
    check_images(model, x)
    check_finite_weights(model)
    with torch.no_grad():
        if init is None and hasattr(model, "encode"):
            init = model.encode(x)
        if init is None:
            zeros = torch.zeros(len(x), model.prior().mu.shape[-1], dtype=x.dtype, device=x.device)
            init = DiagonalNormal(zeros, zeros)
    if tuple(init.mu.shape[:-1]) != (len(x),):
        raise ValueError(f"init must hold one Gaussian per image, batch shape ({len(x)},), "
                         f"got {tuple(init.mu.shape[:-1])}")
    if not bool(torch.isfinite(init.mu).all() and torch.isfinite(init.logvar).all()):
        raise ValueError("init must hold finite means and log-variances; it has NaN or infinite values")
    mu = init.mu.detach().clone().requires_grad_(True)
    logvar = init.logvar.detach().clone().requires_grad_(True)
    optimizer = torch.optim.Adam([mu, logvar], lr=lr)
    with torch.enable_grad():
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr * (1 - step / steps)
            z = mu + (0.5 * logvar).exp() * torch.randn(n_samples, *mu.shape, dtype=mu.dtype, device=mu.device)
            elbo = model.log_likelihood(x, model.decode(z)).mean(0) - kl_normal(mu, logvar)  # (N,)
            # a sum, so each image's parameters get the gradient of that image's ELBO alone
            mu.grad, logvar.grad = torch.autograd.grad(-elbo.sum(), [mu, logvar])
            optimizer.step()
    return DiagonalNormal(mu.detach(), logvar.detach())


def inference_gaps(model, x: torch.Tensor, k: int = 1000, steps: int = 300, lr: float = 0.05,
                   n_samples: int = 4, n_elbo: int = 500) -> dict:
    """The approximation and amortisation gaps of each image, in nats (Cremer et al., 2018).

    q* comes from `optimise_local_posterior` (``steps``, ``lr``, ``n_samples``); both ELBOs are
    estimated from ``n_elbo`` draws each (`elbo_of`). log p(x) is estimated by L_k
    (`iwae_bound`) with the mixture proposal (q* + q_phi) / 2: its importance weights
    p(x, z) / ((q* + q_phi) / 2) are at most twice those of either proposal alone, so it is
    nearly as tight as the better one and its weights have light tails whenever either
    proposal's do (q* alone, narrower than the posterior, can have weights of infinite variance).

    Returns a dict of ``(N,)`` tensors: ``log_px``, ``elbo_local`` (ELBO of q*),
    ``elbo_amortised`` (ELBO of q_phi), ``approximation_gap`` = log_px - elbo_local and
    ``amortisation_gap`` = elbo_local - elbo_amortised (their sum is log_px - elbo_amortised);
    and ``local``, q* itself. Every count, ``lr``, the images and the model's weights are checked
    before any work.
    """
    for value, name in [(k, "k"), (steps, "steps"), (n_samples, "n_samples"), (n_elbo, "n_elbo")]:
        _check_positive_int(value, name)
    _check_lr(lr)
    check_images(model, x)
    check_finite_weights(model)
    with torch.no_grad():
        amortised = model.encode(x)
        amortised = DiagonalNormal(amortised.mu.detach(), amortised.logvar.detach())
    local = optimise_local_posterior(model, x, steps=steps, lr=lr, n_samples=n_samples, init=amortised)
    with torch.no_grad():
        both = DiagonalNormal(torch.stack([local.mu, amortised.mu], 1),  # (N, 2, d): the two components
                              torch.stack([local.logvar, amortised.logvar], 1))
        half = torch.full((len(x), 2), 0.5, dtype=local.mu.dtype, device=local.mu.device)
        mixture = torch.distributions.MixtureSameFamily(torch.distributions.Categorical(probs=half), both,
                                                        validate_args=False)
        log_px = iwae_bound(model, x, k, proposal=mixture)
    elbo_local, elbo_amortised = elbo_of(model, x, local, n_elbo), elbo_of(model, x, amortised, n_elbo)
    return {"log_px": log_px, "elbo_local": elbo_local, "elbo_amortised": elbo_amortised,
            "approximation_gap": log_px - elbo_local, "amortisation_gap": elbo_local - elbo_amortised,
            "local": local}
