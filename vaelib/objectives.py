"""What a VAE is trained on and judged by, per image and in nats (sums over pixels and latent
dimensions, never means).

- `elbo`: the evidence lower bound E_q[log p(x|z)] - KL(q(z|x) || p(z)).
- `vae_loss`: the training loss -(recon - beta * KL), with free bits.
- `iwae_bound`: the importance-weighted bound L_k = E[log (1/k) sum_i p(x, z_i) / q(z_i | x)],
  which is the ELBO at k = 1, grows with k, and tends to log p(x) (Burda et al., 2016).
- `evaluate_bounds`: the ELBO and -L_k averaged over a dataset, with standard errors, within a
  wall-clock cap (on a random subset when the whole set would take longer).
- `importance_weights` and `iwae_loss`: L_k as a training objective (Chapter 10): the
  reparameterised log-weights log w_s with their self-normalised weights, and -mean L_k, whose
  gradient is sum_s w~_s grad log w_s.

The log-likelihood log p(x | z) is always the model's own (`VAE.log_likelihood`), whatever
its decoder; the KL terms come from `vaelib.divergences`.

Every function here refuses an empty batch (`check_batch`), the per-image bounds as well as
the mean losses: one rule, where a mean over no images would be NaN.
"""

from __future__ import annotations

import math
import time
from typing import NamedTuple

import torch

from .data import InMemoryData
from .device import MAX_MINUTES_ENV, run_budget
from .divergences import kl_normal, kl_normal_per_dim
from .loop import batches, evaluation


# The most decoded values `importance_weights` (so `iwae_loss`) holds at once, with their graph:
# k * N * D for k samples of N images of D pixels. 2**27 of them take 512 MiB as float32, and the
# graph a few times that; the course trains with k * N * D near 2**19 (k = 5, N = 128, D = 784).
MAX_DECODED = 2**27


def check_batch(x: torch.Tensor, name: str = "x") -> None:
    """Raise ``ValueError`` when ``x`` holds no images: every objective refuses an empty batch."""
    if isinstance(x, torch.Tensor) and x.dim() > 0 and x.shape[0] == 0:
        raise ValueError(f"{name}: got an empty batch (0 images); pass at least one image")


def check_images(model, x: torch.Tensor) -> None:
    """Raise ``ValueError`` unless ``x`` is a non-empty batch the model takes: the model's own check
    (`VAE.check_input`: shape, dtype, values in [0, 1], NaN named) where it has one, else finite values."""
    check_batch(x)
    if hasattr(model, "check_input"):
        model.check_input(x)
    elif not bool(torch.isfinite(x).all()):
        raise ValueError(f"the data must be finite numbers; {int((~torch.isfinite(x)).sum())} are NaN or infinite")


def check_finite_weights(model) -> None:
    """Raise ``ValueError`` when a parameter of ``model`` holds a NaN or infinite value (a diverged or
    damaged model), before it makes every bound NaN or a sampler fail on a NaN standard deviation."""
    named = list(model.named_parameters()) if hasattr(model, "named_parameters") else []
    bad = [int((~torch.isfinite(p.detach())).sum()) for _, p in named]
    if sum(bad):
        first = next(name for (name, _), n in zip(named, bad) if n)
        raise ValueError(f"the model has {sum(bad)} NaN or infinite weight{'s' if sum(bad) > 1 else ''} (first in "
                         f"{first}): its training diverged or its file is damaged; load a good checkpoint")


def check_kl_weight(value, name: str) -> None:
    """Raise ``ValueError`` unless ``value`` (``beta`` or ``free_bits``) is a finite number >= 0."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = math.nan
    if isinstance(value, bool) or not (math.isfinite(number) and number >= 0):
        raise ValueError(f"{name} must be >= 0 and finite (it weighs the KL term), got {value!r}")


class ELBOTerms(NamedTuple):
    """Per-example terms of the ELBO, each ``(N,)`` in nats: ``elbo = recon - beta * kl``."""

    recon: torch.Tensor
    kl: torch.Tensor
    elbo: torch.Tensor


def elbo(model, x: torch.Tensor, n_samples: int = 1, beta: float = 1.0, analytic_kl: bool = True) -> ELBOTerms:
    """The reparameterised ELBO of a `vaelib.VAE` for each image in ``x``.

    recon = (1/S) sum_s log p(x | z_s) with z_s = mu + sigma * eps_s, and kl is either the
    closed form KL(q(z|x) || N(0, I)) (``analytic_kl=True``) or its Monte Carlo estimate
    (1/S) sum_s [log q(z_s|x) - log p(z_s)] from the same samples.

    Returns `ELBOTerms` ``(recon, kl, elbo)``, each ``(N,)``: sums over pixels and latent
    dimensions, never means. The training loss is ``-elbo(...).elbo.mean()`` (`vae_loss`).
    """
    check_batch(x)
    if n_samples < 1:
        raise ValueError(f"n_samples must be >= 1, got {n_samples}")
    check_kl_weight(beta, "beta")
    q = model.encode(x)
    z = q.rsample((n_samples,))  # (S, N, d)
    recon = model.log_likelihood(x, model.decode(z)).mean(0)
    if analytic_kl:
        kl = kl_normal(q.mu, q.logvar)
    else:
        kl = (q.log_prob(z) - model.prior().log_prob(z)).mean(0)
    return ELBOTerms(recon, kl, recon - beta * kl)


def vae_loss(model, x: torch.Tensor, beta: float = 1.0, free_bits: float = 0.0,
             analytic_kl: bool = True) -> torch.Tensor:
    """The training loss -mean_n [recon_n - beta * KL_n] for a batch, in nats per image (a scalar).

    ``beta`` weights the KL term (beta = 1 is the ELBO: then this is ``-elbo(model, x).elbo.mean()``),
    whose KL is the closed form or, with ``analytic_kl=False``, its one-sample Monte Carlo
    estimate (see `elbo`). ``free_bits`` (delta, nats per latent dimension) replaces each
    dimension's batch-averaged KL by max(KL_j, delta), so the optimiser gains nothing by pushing
    a dimension's KL below delta (Kingma et al., 2016); it needs the closed-form KL.
    """
    check_batch(x)
    check_kl_weight(beta, "beta")
    check_kl_weight(free_bits, "free_bits")
    if free_bits == 0:
        return -elbo(model, x, beta=beta, analytic_kl=analytic_kl).elbo.mean()
    if not analytic_kl:
        raise ValueError("free bits clamp the closed-form KL of each dimension; use analytic_kl=True")
    q = model.encode(x)
    recon = model.log_likelihood(x, model.decode(q.rsample())).mean()
    kl_dims = kl_normal_per_dim(q.mu, q.logvar).mean(0).clamp(min=free_bits)  # (d,), batch-averaged
    return -(recon - beta * kl_dims.sum())


def iwae_bound(model, x: torch.Tensor, k: int, chunk_size: int | None = None,
               proposal: torch.distributions.Distribution | None = None) -> torch.Tensor:
    """The importance-weighted bound L_k for each image, ``(N,)`` in nats.

    log w_i = log p(x | z_i) + log p(z_i) - log q(z_i | x) for z_1..z_k ~ q(z | x), and
    L_k = logsumexp_i(log w_i) - log k. The k samples are drawn ``chunk_size`` at a time
    (default: about 8192 decoder evaluations per chunk), so memory stays bounded for k = 5000;
    only the ``(k, N)`` log-weights are kept. Call it under ``torch.no_grad()`` to evaluate.

    ``proposal`` replaces q(z | x) = ``model.encode(x)`` by any distribution over codes with
    batch shape ``(N,)`` and event shape ``(d,)`` (for instance the encoder's answer for another
    input); L_k stays a lower bound on log p(x) for any proposal, only its tightness changes.

    The model's weights are checked first (`check_finite_weights`), and the images too when the
    encoder, which checks them, is not asked (a ``proposal``).
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a whole number >= 1, got {k!r}")
    if chunk_size is not None and (isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1):
        raise ValueError(f"chunk_size must be a whole number >= 1 (or None for the default), got {chunk_size!r}")
    check_batch(x)
    check_finite_weights(model)
    if proposal is not None:
        check_images(model, x)
    q = model.encode(x) if proposal is None else proposal
    if proposal is not None and tuple(q.batch_shape) != (len(x),):
        raise ValueError(f"proposal has batch shape {tuple(q.batch_shape)}; it needs one distribution "
                         f"per image, batch shape ({len(x)},)")
    prior = model.prior()
    chunk = chunk_size or max(1, 8192 // max(1, len(x)))
    log_w = []
    for start in range(0, k, chunk):
        z = q.sample((min(chunk, k - start),))
        log_w.append(model.log_likelihood(x, model.decode(z)) + prior.log_prob(z) - q.log_prob(z))
    return torch.logsumexp(torch.cat(log_w), dim=0) - math.log(k)


def _check_k(k) -> int:
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise ValueError(f"k must be a whole number >= 1 (the number of importance samples), got {k!r}")
    return k


def importance_weights(model, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The k reparameterised log importance weights of each image and their self-normalised weights.

    z_s = mu(x) + sigma(x) * eps_s with eps_s ~ N(0, I), s = 1..k, all in one chunk, and
    log w_s = log p(x | z_s) + log p(z_s) - log q(z_s | x), in nats.

    Returns ``(log_w, w_tilde)``, both ``(k, N)``: ``log_w`` keeps its graph (it depends on the
    decoder through log p(x | z_s) and on the encoder through z_s and log q), ``w_tilde`` =
    softmax of ``log_w`` over the k samples, detached: each column sums to 1.
    L_k = logsumexp_s(log w_s) - log k, and its gradient is sum_s w~_s grad log w_s.
    Draws ``q.rsample((k,))``, so with the same seed ``k = 1`` uses the noise of `elbo`.
    A k whose k * N * D decoded values would pass `MAX_DECODED` is refused, pointing to `iwae_bound`.
    """
    check_batch(x)
    _check_k(k)
    decoded = k * len(x) * x[0].numel()
    if decoded > MAX_DECODED:
        raise ValueError(f"k = {k} importance samples of {len(x)} images of {x[0].numel()} values hold {decoded:,} "
                         f"decoded values at once with their graph, more than the {MAX_DECODED:,} allowed in one "
                         "chunk; to evaluate L_k use iwae_bound(model, x, k, chunk_size=...) under torch.no_grad(), "
                         "which draws in chunks; to train, use a smaller k or batch")
    q = model.encode(x)
    z = q.rsample((k,))  # (k, N, d): gradients flow through the sampling path
    log_w = model.log_likelihood(x, model.decode(z)) + model.prior().log_prob(z) - q.log_prob(z)
    return log_w, torch.softmax(log_w.detach(), dim=0)


def iwae_loss(model, x: torch.Tensor, k: int) -> torch.Tensor:
    """The IWAE training loss -mean_n L_k(x_n), a scalar in nats per image (Burda et al., 2016).

    L_k(x) = log (1/k) sum_s w_s with the reparameterised weights of `importance_weights`, in one
    chunk, with gradients for the encoder and the decoder. At ``k = 1`` it is the one-sample ELBO
    with the Monte Carlo KL, ``vae_loss(model, x, analytic_kl=False)`` (the same number for the
    same seed). For evaluation with large k use `iwae_bound`, which draws in chunks.
    """
    log_w, _ = importance_weights(model, x, k)
    return -(torch.logsumexp(log_w, dim=0) - math.log(k)).mean()


def _bounds_of(model, x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The one-sample ELBO (analytic KL) and L_k of each image in ``x``, float64 on the CPU."""
    return elbo(model, x).elbo.double().cpu(), iwae_bound(model, x, k).double().cpu()


def evaluate_bounds(model, data, k: int = 1000, batch_size: int = 100, progress: bool = False,
                    max_minutes: float | None = None, per_image: bool = False) -> dict:
    """Average ELBO (analytic KL, one sample) and importance-sampled NLL = -L_k over ``data``.

    ``data`` is an `InMemoryData` (dynamic binarisation is drawn as usual) or any iterable
    of ``(x, ...)`` batches; the model's device is used. Returns a dict of plain floats in
    nats per image: ``elbo``, ``elbo_se``, ``nll``, ``nll_se`` (standard errors over images),
    ``k``, ``n`` (the images scored) and ``of`` (the images given).

    Like training, evaluation has a wall-clock cap: ``max_minutes``, default the run budget's
    (`RunBudget.max_minutes`, ``$VAELIB_MAX_MINUTES``), ``math.inf`` for none. The first batch
    is timed; when all of ``data`` would take longer than the cap, that batch is set aside and
    a seeded uniform random subset of the images, as many as fit in the cap (at least two
    batches' worth), is scored instead, with a printed line saying so; then ``n < of``, and the
    standard errors are those of the subset's mean as an estimate of the whole set's. (A random
    subset, not the first images: MNIST's test set is ordered, its first half the easier one.)
    When everything fits, the images are scored in order, exactly as without a cap. An iterable
    that is not an `InMemoryData` cannot be subsampled: it is scored up to the batch that would
    pass the cap, and ``n`` says how far.

    With ``per_image=True`` the dict also holds ``index``, the ``(n,)`` positions in ``data`` of
    the images scored, and ``elbo_per_image``, ``nll_per_image``, their ``(n,)`` values (float64,
    on the CPU): score other models on ``data.subset(index)`` to compare them on the same images
    (paired differences).
    """
    if isinstance(max_minutes, bool) or (max_minutes is not None and not max_minutes > 0):
        raise ValueError(f"max_minutes must be a positive number of minutes (math.inf for no cap), got {max_minutes!r}")
    elbos, iwaes = [], []
    with evaluation(model) as device:
        cap = 60 * (run_budget(device).max_minutes if max_minutes is None else float(max_minutes))
        label = f"bounds (k={k})" if progress else None
        total = len(data) if isinstance(data, InMemoryData) else None
        start = time.perf_counter()
        walk = batches(data, batch_size, device, progress=label)
        try:
            for i, batch in enumerate(walk):
                x = batch[0] if isinstance(batch, (tuple, list)) else batch
                e, w = _bounds_of(model, x, k)
                elbos.append(e)
                iwaes.append(w)
                spent = time.perf_counter() - start
                if i == 0 and total is not None and spent * data.num_batches(batch_size) > cap \
                        and max(2, int(cap / spent)) * batch_size < total:
                    walk.close()
                    return _evaluate_subset(model, data, k, batch_size, label, cap, spent, per_image)
                if total is None and spent * (i + 2) / (i + 1) > cap:  # the next batch would pass the cap
                    break
        finally:
            walk.close()
    e = torch.cat(elbos) if elbos else torch.zeros(0)
    return _summary(e, torch.cat(iwaes) if iwaes else torch.zeros(0), k, total,
                    torch.arange(len(e)) if per_image else None)


def _evaluate_subset(model, data, k: int, batch_size: int, label, cap: float, per_batch: float,
                     per_image: bool = False) -> dict:
    """`evaluate_bounds` on the seeded random subset of ``data`` that fits in ``cap`` seconds."""
    fit = max(2, int(cap / per_batch)) * batch_size
    n = min(len(data), fit)
    index = torch.randperm(len(data), generator=torch.Generator().manual_seed(0))[:n].sort().values
    print(f"evaluate_bounds: all {len(data):,} images would take about {per_batch * data.num_batches(batch_size) / 60:.1f} "
          f"min, past the {cap / 60:g}-minute cap ({MAX_MINUTES_ENV} changes it), so a seeded random {n:,} of them "
          "were scored; the standard errors are those of that subset's mean")
    elbos, iwaes = [], []
    with evaluation(model) as device:
        for batch in batches(data.subset(index), batch_size, device, progress=label):
            e, w = _bounds_of(model, batch[0], k)
            elbos.append(e)
            iwaes.append(w)
    return _summary(torch.cat(elbos), torch.cat(iwaes), k, len(data), index if per_image else None)


def _summary(e: torch.Tensor, w: torch.Tensor, k: int, of: int | None, index: torch.Tensor | None = None) -> dict:
    n = len(e)
    if n < 2:
        raise ValueError(f"evaluate_bounds needs at least 2 images (for a standard error), got {n}")
    summary = {"elbo": e.mean().item(), "elbo_se": (e.std() / math.sqrt(n)).item(),
               "nll": -w.mean().item(), "nll_se": (w.std() / math.sqrt(n)).item(), "k": k, "n": n,
               "of": of if of is not None else n}
    if index is not None:
        summary.update(index=index, elbo_per_image=e.detach().double().cpu(), nll_per_image=-w.detach().double().cpu())
    return summary
