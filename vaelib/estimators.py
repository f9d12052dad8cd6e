"""Two ways to estimate the gradient of an expectation, and tools to measure them.

The problem: g = d/d(mu, sigma) E_{z ~ N(mu, sigma^2)}[f(z)].

- Score function (likelihood ratio, REINFORCE): g = E[(f(z) - b) * d log N(z; mu, sigma^2)],
  with d/dmu log N = eps / sigma and d/dsigma log N = (eps^2 - 1) / sigma; needs only
  values of f. A baseline b that does not depend on z keeps it unbiased.
- Pathwise (reparameterisation): z = mu + sigma * eps, so g = E[f'(z) * (1, eps)];
  needs f to be differentiable.

Both return one estimate per sample, so callers can average and measure variance.
Gradients are with respect to mu and sigma (not log sigma; multiply by sigma for that).

`gradient_snr` measures any stochastic loss's gradient estimates on a model, parameter by
parameter: the signal-to-noise ratio |mean| / std over independent draws, for the encoder's and
the decoder's parameters apart (Chapter 10, after Rainforth et al., 2018).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .objectives import elbo
from .divergences import kl_normal

Cost = Callable[[torch.Tensor], torch.Tensor]


def _draw(mu: torch.Tensor, log_sigma: torch.Tensor, n_samples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    if mu.shape != log_sigma.shape:
        raise ValueError(f"mu and log_sigma must have one shape, got {tuple(mu.shape)} and {tuple(log_sigma.shape)}")
    shape = (n_samples,) if isinstance(n_samples, int) else tuple(n_samples)
    if not shape or min(shape) < 1:
        raise ValueError(f"n_samples must be a positive int or shape, got {n_samples}")
    sigma = log_sigma.exp()
    eps = torch.randn(*shape, *mu.shape, dtype=mu.dtype, device=mu.device)
    return eps, sigma, mu + sigma * eps


def _leave_one_out(values: torch.Tensor, dim: int) -> torch.Tensor:
    n = values.shape[dim]
    if n < 2:
        raise ValueError("a leave-one-out baseline needs at least 2 samples along the last sample dimension")
    return (values.sum(dim, keepdim=True) - values) / (n - 1)


def score_function_grad(
    f: Cost,
    mu: torch.Tensor,
    log_sigma: torch.Tensor,
    n_samples: int | tuple[int, ...],
    baseline: float | str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample score-function estimates of d/dmu and d/dsigma of E_{N(mu, sigma^2)}[f(z)].

    Args:
        f: the cost, applied elementwise to ``z`` of shape ``(*samples, *mu.shape)``; only
            its values are used.
        mu, log_sigma: ``(...)``, independent problems solved at once.
        n_samples: ``S`` or a sample shape such as ``(R, S)``.
        baseline: ``None``; a constant ``c`` subtracted from f; ``"loo"``, the mean of f over
            the other samples (along the last sample dimension); or ``"optimal"``, the
            per-parameter variance-minimising constant E[f s^2] / E[s^2] (s the score),
            estimated from the other samples. All keep the estimate unbiased.

    Returns:
        ``(grad_mu, grad_sigma)``, each ``(*samples, *mu.shape)``.
    """
    eps, sigma, z = _draw(mu, log_sigma, n_samples)
    with torch.no_grad():
        fz = f(z)
    scores = (eps / sigma, (eps**2 - 1) / sigma)
    dim = len(eps.shape) - mu.dim() - 1  # the last sample dimension
    grads = []
    for score in scores:
        if baseline is None:
            b = 0.0
        elif baseline == "loo":
            b = _leave_one_out(fz, dim)
        elif baseline == "optimal":
            s2 = score**2
            b = _leave_one_out(fz * s2, dim) / _leave_one_out(s2, dim)
        elif isinstance(baseline, (int, float)):
            b = float(baseline)
        else:
            raise ValueError(f"baseline must be None, a number, 'loo' or 'optimal', got {baseline!r}")
        grads.append((fz - b) * score)
    return grads[0], grads[1]


def pathwise_grad(
    f: Cost, mu: torch.Tensor, log_sigma: torch.Tensor, n_samples: int | tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample reparameterisation estimates of d/dmu and d/dsigma of E_{N(mu, sigma^2)}[f(z)].

    With z = mu + sigma * eps: d f(z)/dmu = f'(z) and d f(z)/dsigma = f'(z) * eps. ``f`` must be
    differentiable and elementwise. Same shapes as `score_function_grad`.
    """
    eps, _, z = _draw(mu, log_sigma, n_samples)
    z = z.detach().requires_grad_(True)
    with torch.enable_grad():
        (df,) = torch.autograd.grad(f(z).sum(), z)
    return df, df * eps


@dataclass
class GradientStats:
    """Mean and variance of an averaged gradient estimator, with their standard errors."""

    mean: torch.Tensor
    mean_se: torch.Tensor
    variance: torch.Tensor
    variance_se: torch.Tensor


def gradient_stats(estimates: torch.Tensor) -> GradientStats:
    """Statistics of R independent estimates ``(R, ...)``: each row one run of an estimator.

    ``variance`` is the variance of one estimate (unbiased, over the R rows); its standard
    error uses the sample fourth moment, which matters for the heavy-tailed score function.
    Pass per-sample estimates reshaped to ``(R, S, ...)`` and averaged over ``S`` to measure
    an S-sample estimator.
    """
    R = estimates.shape[0]
    if R < 2:
        raise ValueError("gradient_stats needs at least 2 repetitions")
    mean = estimates.mean(0)
    centred = estimates - mean
    m2 = centred.pow(2).mean(0)
    m4 = centred.pow(4).mean(0)
    variance = m2 * R / (R - 1)
    return GradientStats(
        mean=mean,
        mean_se=(variance / R).sqrt(),
        variance=variance,
        variance_se=((m4 - m2**2).clamp(min=0) / R).sqrt(),
    )


def quadratic_cost_variances(mu: float, sigma: float, k, baseline: str | None = None
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Closed-form variances of the one-sample d/dmu estimators for f(z) = (z - k)^2, z ~ N(mu, sigma^2).

    With a = mu - k: pathwise 4 sigma^2; score function with a constant baseline b,
    c^2 / sigma^2 + 6 c + 8 a^2 + 15 sigma^2 where c = a^2 - b. ``baseline``: None (b = 0:
    a^4 / sigma^2 + 14 a^2 + 15 sigma^2, Mohamed et al. 2020), ``"mean"`` (b = E[f] =
    a^2 + sigma^2: 8 a^2 + 10 sigma^2) or ``"optimal"`` (b* = E[f s^2] / E[s^2] = a^2 + 3 sigma^2,
    the minimiser: 8 a^2 + 6 sigma^2). Returns ``(pathwise, score_function)`` with the shape of ``k``.
    """
    a = mu - torch.as_tensor(k, dtype=torch.float64)
    baselines = {None: torch.zeros_like(a), "mean": a**2 + sigma**2, "optimal": a**2 + 3 * sigma**2}
    if baseline not in baselines:
        raise ValueError(f"baseline must be None, 'mean' or 'optimal', got {baseline!r}")
    c = a**2 - baselines[baseline]
    return torch.full_like(a, 4 * sigma**2), c**2 / sigma**2 + 6 * c + 8 * a**2 + 15 * sigma**2


# ---- the same two estimators on a VAE's encoder --------------------------------------------------


def elbo_surrogate(
    model, x: torch.Tensor, estimator: str = "pathwise", n_samples: int = 1, baseline: str | None = None
) -> torch.Tensor:
    """A scalar loss whose gradient is an estimate of the gradient of -mean ELBO (analytic KL).

    Its value is always a Monte Carlo estimate of -mean ELBO, so training curves are
    comparable across estimators.

    - ``"pathwise"``: the reparameterised ELBO; gradients flow through z = mu + sigma * eps.
    - ``"score"``: z is sampled without a path back to the encoder; the encoder gets
      (log p(x|z) - b) * grad log q(z|x), the decoder the usual grad log p(x|z).
      ``baseline="loo"`` uses the mean of log p(x|z) over the other ``n_samples - 1``
      samples of the same image (needs ``n_samples >= 2``).

    The KL term is the closed form in both cases, so the estimators differ only on
    E_q[log p(x|z)].
    """
    if not isinstance(n_samples, int) or n_samples < 1:
        raise ValueError(f"n_samples must be a whole number >= 1, got {n_samples!r}")
    if estimator == "pathwise":
        if baseline is not None:
            raise ValueError("baselines apply to the score-function estimator only")
        return -elbo(model, x, n_samples=n_samples).elbo.mean()
    if estimator != "score":
        raise ValueError(f"estimator must be 'pathwise' or 'score', got {estimator!r}")
    q = model.encode(x)
    z = q.sample((n_samples,))  # (S, N, d), no gradient path to the encoder
    log_lik = model.log_likelihood(x, model.decode(z))  # (S, N): reaches the decoder only
    if baseline is None:
        b = 0.0
    elif baseline == "loo":
        b = _leave_one_out(log_lik.detach(), 0)
    else:
        raise ValueError(f"baseline must be None or 'loo', got {baseline!r}")
    score_term = (log_lik.detach() - b) * q.log_prob(z)
    # adding (t - t.detach()) changes the gradient, not the value: the loss still reads as -ELBO
    surrogate = log_lik + (score_term - score_term.detach())
    return -(surrogate.mean(0) - kl_normal(q.mu, q.logvar)).mean()


def encoder_gradients(
    model,
    x: torch.Tensor,
    n_draws: int,
    estimator: str = "pathwise",
    n_samples: int = 1,
    baseline: str | None = None,
) -> torch.Tensor:
    """``n_draws`` independent estimates of the gradient of the mean ELBO of ``x`` with respect to
    the encoder's parameters, flattened: ``(n_draws, P)``.

    Each draw uses ``n_samples`` codes per image (see `elbo_surrogate`). The decoder is held
    fixed; only ``model.encoder``'s parameters are differentiated.
    """
    if not isinstance(n_draws, int) or n_draws < 1:
        raise ValueError(f"n_draws must be a whole number >= 1, got {n_draws!r}")
    params = [p for p in model.encoder.parameters() if p.requires_grad]
    rows = []
    for _ in range(n_draws):
        loss = elbo_surrogate(model, x, estimator, n_samples, baseline)
        grads = torch.autograd.grad(loss, params)
        rows.append(-torch.cat([g.reshape(-1) for g in grads]))  # gradient of the ELBO, not the loss
    return torch.stack(rows)


# ---- signal-to-noise ratio of gradient estimates, parameter by parameter -----------------------------


def gradient_snr(model, loss_fn: Callable, n_draws: int, groups: dict | None = None) -> dict[str, torch.Tensor]:
    """Per-parameter signal-to-noise ratio |E[g]| / std[g] of a stochastic gradient estimate g.

    ``loss_fn(model)`` returns a scalar loss computed with fresh random numbers at each call;
    its gradient is drawn ``n_draws`` (M) times. For each parameter coordinate, the mean and the
    standard deviation (with M - 1) over the M draws are accumulated in float64 by Welford's
    update (so memory does not grow with M), and SNR = |mean| / std: ``inf`` where the draws
    are all equal and non-zero, ``nan`` where they are all zero.

    ``groups`` maps a name to a module or an iterable of parameters; the default is
    ``{"encoder": model.encoder, "decoder": model.decoder}``. Parameters the loss does not reach
    count as zero gradients. Returns ``{name: (P_name,)}``, the flattened SNRs of each group.
    """
    if isinstance(n_draws, bool) or not isinstance(n_draws, int) or n_draws < 2:
        raise ValueError(f"n_draws must be a whole number >= 2 (a standard deviation needs two draws), got {n_draws!r}")
    if groups is None:
        groups = {"encoder": model.encoder, "decoder": model.decoder}
    params = {name: [p for p in (g.parameters() if isinstance(g, torch.nn.Module) else g) if p.requires_grad]
              for name, g in groups.items()}
    if not all(params.values()):
        raise ValueError(f"every group needs parameters that require gradients; empty: "
                         f"{[name for name, ps in params.items() if not ps]}")
    flat = [p for ps in params.values() for p in ps]
    sizes = [sum(p.numel() for p in ps) for ps in params.values()]
    device = flat[0].device
    mean = torch.zeros(sum(sizes), dtype=torch.float64, device=device)
    m2 = torch.zeros_like(mean)  # the sum of squared deviations from the running mean
    for n in range(1, n_draws + 1):
        grads = torch.autograd.grad(loss_fn(model), flat, allow_unused=True)
        g = torch.cat([(torch.zeros_like(p) if gr is None else gr).reshape(-1) for p, gr in zip(flat, grads)]).double()
        delta = g - mean
        mean += delta / n
        m2 += delta * (g - mean)
    snr = (mean.abs() / (m2 / (n_draws - 1)).sqrt()).cpu()
    return dict(zip(params, snr.split(sizes)))
