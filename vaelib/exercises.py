"""Checks for the chapters' exercises: ``check(name, answer)`` says right or not yet, with a hint.

Each exercise whose answer is a number or a function has an entry in ``EXERCISES``, under the
name the chapter shows beside it (``vaelib.exercises.check("kl-by-hand", 0.443)``). A check
compares the answer with a value computed here by another route than the worked solution's
(a closed form against ``torch.distributions``, say), or calls an answered function on random
inputs; it never prints the solution. Its hints name the usual mistakes: the sign of a KL,
a log-variance read as a log standard deviation, a mean over pixels where a sum belongs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch.distributions import Normal, kl_divergence

__all__ = ["EXERCISES", "Exercise", "check"]


@dataclass(frozen=True)
class Exercise:
    """One checkable exercise: where it is, what it asks for, and how an answer is judged.

    ``judge(answer)`` returns None for a right answer, else a hint (never the answer itself).
    """

    chapter: int
    asks: str
    judge: Callable[[Any], str | None]


def _number(answer: Any) -> float:
    if isinstance(answer, torch.Tensor):
        if answer.numel() != 1:
            raise TypeError(f"the answer is one number; got a tensor of shape {tuple(answer.shape)}")
        answer = answer.item()
    if isinstance(answer, bool) or not isinstance(answer, (int, float)):
        raise TypeError(f"the answer is one number (a float); got {type(answer).__name__}")
    return float(answer)


def _close(a: float, b: float, rel: float = 1e-3, abs_: float = 1e-4) -> bool:
    return math.isclose(a, b, rel_tol=rel, abs_tol=abs_)


# ---- Chapter 1: generative models -------------------------------------------------------------

def _log_odds(answer: Any) -> str | None:
    """A function x -> log p(y=1 | x) / p(y=0 | x) for weights 0.3, 0.7, means -1, 2, stds 1, 2."""
    x = torch.linspace(-6, 8, 57, dtype=torch.float64)
    truth = (math.log(0.7) + Normal(2.0, 2.0).log_prob(x)) - (math.log(0.3) + Normal(-1.0, 1.0).log_prob(x))
    got = _call(answer, x)
    if got.shape != truth.shape:
        return f"one log-odds per x: for {tuple(x.shape)} inputs the answer has that shape; yours gave {tuple(got.shape)}"
    return _match(got, truth, [
        (-truth, "upside down: the log-odds of y = 1 has p(y=1 | x) on top"),
        (truth + math.log(2.0), "the normalising constants differ now: keep log(sigma_0 / sigma_1)"),
        (truth - math.log(2.0), "the normalising constants differ now: keep log(sigma_0 / sigma_1)"),
        (truth + (got - truth)[0], "off by a constant: check the class weights and the log(sigma_0 / sigma_1) term"),
    ], "write log p(x, y) = log w_y - (x - m_y)^2 / (2 s_y^2) - log s_y + const for each class and subtract")


def _grey_bce(answer: Any) -> str | None:
    """The smallest binary cross-entropy a grey pixel x = 0.3 can have, over the predicted mean, in nats."""
    value = _number(answer)
    lam = torch.linspace(1e-6, 1 - 1e-6, 200_001, dtype=torch.float64)
    truth = (-(0.3 * lam.log() + 0.7 * (1 - lam).log())).min().item()
    if _close(value, truth, rel=1e-4, abs_=1e-5):
        return None
    if _close(value, 0.0):
        return "a perfect reconstruction lambda = x does not make the loss zero when x is grey"
    if _close(value, truth / math.log(2.0), rel=1e-4):
        return "that is in bits; the course measures in nats (natural logarithms)"
    return "minimise -(x log lambda + (1 - x) log(1 - lambda)) over lambda: where is it smallest, and what is it there?"


def _bits_per_dim(answer: Any) -> str | None:
    """80 nats per 28 x 28 image, in bits per pixel."""
    value = _number(answer)
    truth = 80 / (784 * math.log(2.0))
    if _close(value, truth):
        return None
    if _close(value, 80 / 784):
        return "that is nats per pixel: a bit is log 2 nats"
    if _close(value, 80 / math.log(2.0)):
        return "that is bits per image: divide by the number of pixels"
    if _close(value, 80 * math.log(2.0) / 784):
        return "a bit is log 2 nats, so divide by log 2"
    return "divide by the 784 pixels and convert nats to bits (1 bit = log 2 nats)"


# ---- Chapter 2: KL divergence -----------------------------------------------------------------

def _kl_by_hand(answer: Any) -> str | None:
    """KL(N(1, 0.5^2) || N(0, 1)) in nats."""
    value = _number(answer)
    truth = kl_divergence(Normal(1.0, 0.5), Normal(0.0, 1.0)).item()
    if _close(value, truth):
        return None
    if value < 0:
        return "a KL divergence is never negative: check the sign of each term (KL = E_q[log q - log p])"
    if _close(value, kl_divergence(Normal(0.0, 1.0), Normal(1.0, 0.5)).item()):
        return "that is KL(p || q), the other direction: the expectation is under q = N(1, 0.5^2)"
    wrong_var = 0.5 * (1.0 + 0.5 - math.log(0.5) - 1.0)  # 0.5 used as the variance
    if _close(value, wrong_var):
        return "0.5 is the standard deviation: the variance is 0.25"
    return "write KL = log(s_p / s_q) + (s_q^2 + (m_q - m_p)^2) / (2 s_p^2) - 1/2 and put the numbers in"


def _random_normals(n: int = 64, d: int = 5, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    mu = torch.randn(n, d, generator=g, dtype=torch.float64)
    logvar = torch.randn(n, d, generator=g, dtype=torch.float64)
    return mu, logvar


def _match(got: torch.Tensor, truth: torch.Tensor, mistakes: list[tuple[torch.Tensor, str]], otherwise: str,
           rtol: float = 1e-6, atol: float = 1e-8) -> str | None:
    """None when ``got`` equals ``truth``; else the hint of the first known mistake it equals;
    else ``otherwise``. Shapes must agree for a match."""
    def same(a: torch.Tensor, b: torch.Tensor) -> bool:
        return a.shape == b.shape and torch.allclose(a, b, rtol=rtol, atol=atol)

    if same(got, truth):
        return None
    return next((hint for wrong, hint in mistakes if same(got, wrong)), otherwise)


def _call(fn: Any, *args) -> torch.Tensor:
    if not callable(fn):
        raise TypeError(f"the answer is a function; got {type(fn).__name__}")
    out = fn(*args)
    return torch.as_tensor(out, dtype=torch.float64)


def _kl_from_logvar(answer: Any) -> str | None:
    """A function (mu, logvar) -> KL(N(mu, exp(logvar)) || N(0, I)) per row, (N, d) -> (N,)."""
    mu, logvar = _random_normals()
    truth = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0)).sum(-1)
    got = _call(answer, mu, logvar)
    if got.shape != truth.shape:
        if got.shape == mu.shape:
            return "one KL per row: sum over the d dimensions (the KL of independent dimensions adds up)"
        return f"for (N, d) inputs the answer has shape (N,) = {tuple(truth.shape)}; yours gave {tuple(got.shape)}"
    as_log_sigma = kl_divergence(Normal(mu, logvar.exp()), Normal(0.0, 1.0)).sum(-1)
    return _match(got, truth, [
        (-truth, "the sign is flipped: KL >= 0, so -1/2 sum(1 + logvar - mu^2 - exp(logvar))"),
        (as_log_sigma, "you treated logvar as log(sigma): the variance is exp(logvar), sigma is exp(logvar / 2)"),
        (truth / mu.shape[1], "you averaged over the dimensions: the KL of a diagonal Gaussian is their sum"),
    ], "compare with the closed form of Chapter 2 term by term on one dimension first")


def _kl_unit_variance(answer: Any) -> str | None:
    """A function (mu_q, mu_p) -> KL(N(mu_q, 1) || N(mu_p, 1)), elementwise."""
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(50, generator=g, dtype=torch.float64), torch.randn(50, generator=g, dtype=torch.float64)
    truth = kl_divergence(Normal(a, 1.0), Normal(b, 1.0))
    got = _call(answer, a, b)
    return _match(got, truth, [
        ((a - b).abs(), "|mu_q - mu_p| is a distance; the KL of unit-variance Gaussians grows with its square"),
        ((a - b) ** 2, "close: check the constant in front of the square"),
    ], "put sigma_q = sigma_p = 1 into the closed form: only one term is left")


# ---- Chapter 3: the ELBO ----------------------------------------------------------------------

def _gaussian_entropy(answer: Any) -> str | None:
    """A function logvar -> entropy (nats) of N(mu, diag(exp(logvar))), (N, d) -> (N,)."""
    _, logvar = _random_normals(seed=2)
    truth = Normal(torch.zeros_like(logvar), (0.5 * logvar).exp()).entropy().sum(-1)
    got = _call(answer, logvar)
    if got.shape != truth.shape:
        return f"one entropy per row: for (N, d) log-variances the answer has shape (N,); yours gave {tuple(got.shape)}"
    as_log_sigma = Normal(torch.zeros_like(logvar), logvar.exp()).entropy().sum(-1)
    return _match(got, truth, [(as_log_sigma, "you treated logvar as log(sigma): H = 1/2 sum(log(2 pi e) + logvar)")],
                  "H(N(mu, sigma^2)) = 1/2 log(2 pi e sigma^2) per dimension, summed over the dimensions")


def _hidden_beta(answer: Any) -> str | None:
    """The beta of a loss that averages BCE over the 784 pixels but sums the KL over the codes."""
    value = _number(answer)
    if _close(value, 784.0):
        return None
    if _close(value, 1 / 784):
        return "upside down: divide the whole loss by the reconstruction's factor, then read the KL's weight"
    if _close(value, 1.0):
        return "the two terms are not on the same scale: one is a mean over 784 pixels, the other a sum"
    return ("write the mean over the D pixels as (1/D) times their sum, then scale the whole loss so its "
            "reconstruction term is the summed log-likelihood: what weighs the KL?")


def _gap_correlation(answer: Any) -> str | None:
    """The posterior correlation rho > 0 at which the best diagonal q falls 1 nat short."""
    value = _number(answer)
    # the gap of the best diagonal q, from the covariance itself: KL(q* || p) by log-determinants
    def gap(rho: float) -> float:
        cov = torch.tensor([[1.0, rho], [rho, 1.0]], dtype=torch.float64)
        return 0.5 * (torch.linalg.inv(cov).diagonal().log().sum() + torch.logdet(cov)).item()

    if 0 < value < 1 and _close(gap(value), 1.0, rel=1e-4, abs_=1e-4):
        return None
    if -1 < value < 0 and _close(gap(-value), 1.0, rel=1e-4, abs_=1e-4):
        return "either sign leaves the same gap; give the positive correlation"
    if 0 < value < 1 and _close(value, 1 - math.exp(-2.0)):
        return "that is rho squared"
    if not -1 < value < 1:
        return "a correlation lies strictly between -1 and 1"
    return f"your rho leaves a gap of {gap(abs(value)):.3f} nats, not 1: solve -1/2 log(1 - rho^2) = 1"


# ---- Chapter 4: gradient estimators ---------------------------------------------------------

def _gauss_hermite(g: Callable[[torch.Tensor], torch.Tensor], n: int = 40) -> float:
    """E[g(eps)] for eps ~ N(0, 1) by Gauss-Hermite quadrature (exact for polynomials of degree < 2n)."""
    import numpy as np

    x, w = np.polynomial.hermite_e.hermegauss(n)
    return float((torch.as_tensor(w) * g(torch.as_tensor(x))).sum() / math.sqrt(2 * math.pi))


def _reparam_std(answer: Any) -> str | None:
    """The std that z = mu + exp(logvar) * eps samples with when logvar = log 0.25."""
    value = _number(answer)
    if _close(value, math.exp(math.log(0.25))):
        return None
    if _close(value, 0.5):
        return "0.5 is the intended standard deviation; work out what exp(logvar) is for this logvar"
    if _close(value, 0.0625):
        return "that is a variance; the question asks for the standard deviation"
    return "the line multiplies eps by exp(logvar): that factor is the standard deviation it samples with"


def _pathwise_sigma_variance(answer: Any) -> str | None:
    """Var of the one-sample pathwise estimate of d/dsigma E[(z - k)^2] at mu = 1, sigma = 1, k = 0."""
    value = _number(answer)
    mu, sigma, k = 1.0, 1.0, 0.0
    estimate = lambda e: 2 * (mu + sigma * e - k) * e  # noqa: E731  (f'(z) * eps)
    mean = _gauss_hermite(estimate)
    truth = _gauss_hermite(lambda e: estimate(e) ** 2) - mean**2
    if _close(value, truth):
        return None
    if _close(value, 4 * sigma**2):
        return "4 sigma^2 is the variance of the d/dmu estimate; d/dsigma multiplies f'(z) by eps"
    if _close(value, truth + mean**2):
        return "that is the second moment: subtract the square of the mean (the exact gradient 2 sigma)"
    return "write the estimate as 2 a eps + 2 sigma eps^2 and use E[eps^2] = 1, E[eps^3] = 0, E[eps^4] = 3"


def _optimal_baseline(answer: Any) -> str | None:
    """The optimal constant baseline of the score-function d/dmu estimate for (z - k)^2 at mu = sigma = 1, k = 0."""
    value = _number(answer)
    mu, sigma, k = 1.0, 1.0, 0.0
    f = lambda e: (mu + sigma * e - k) ** 2  # noqa: E731
    truth = _gauss_hermite(lambda e: f(e) * e**2) / _gauss_hermite(lambda e: e**2)
    if _close(value, truth):
        return None
    if _close(value, _gauss_hermite(f)):
        return "that is E[f], the mean baseline; the optimal one weighs f by the squared score"
    if _close(value, 0.0):
        return "no baseline is unbiased too, but not the minimiser: differentiate the variance in b"
    return "minimise E[(f - b)^2 s^2] over b, with s = eps / sigma the score of mu"


# ---- Chapter 6: the VAE, evaluated --------------------------------------------------------------

_LOG_W3 = (-100.0, -102.0, -98.0)


def _l3_by_hand(answer: Any) -> str | None:
    """L_3 for the log weights -100, -102, -98, in nats."""
    value = _number(answer)
    log_w = torch.tensor(_LOG_W3, dtype=torch.float64)
    truth = (torch.logsumexp(log_w, 0) - math.log(3)).item()
    if _close(value, truth, rel=1e-6, abs_=1e-4):
        return None
    if _close(value, log_w.mean().item()):
        return "that is the mean of the log weights, the ELBO's estimate; L_k takes the log of the mean weight"
    if _close(value, truth + math.log(3)):
        return "subtract log k: L_k is the log of the mean weight, not of their sum"
    if _close(value, log_w.max().item()):
        return "close to the largest log weight, but the others add a little and the 1/k takes some away"
    if value > 0:
        return "log weights of -100 nats give a bound near -100, not a positive number: check the signs"
    return "L_3 = log((e^-100 + e^-102 + e^-98) / 3); factor e^-98 out before taking the log"


def _nll_from_weights(answer: Any) -> str | None:
    """A function log_w (k, N) -> the per-image estimate -L_k of the NLL, shape (N,)."""
    g = torch.Generator().manual_seed(5)
    log_w = -800 + 3 * torch.randn(50, 7, generator=g, dtype=torch.float64)  # exp underflows, as in float32
    truth = -(torch.logsumexp(log_w, 0) - math.log(log_w.shape[0]))
    got = _call(answer, log_w)
    if got.shape != truth.shape:
        if got.numel() == log_w.shape[0]:
            return "that reduces over the images: the k samples are dimension 0, the images dimension 1"
        return f"one estimate per image: for (k, N) log weights the answer has shape (N,); yours gave {tuple(got.shape)}"
    otherwise = ("exp of log weights this small underflows to 0: use torch.logsumexp, not log(mean(exp(...)))"
                 if not bool(torch.isfinite(got).all()) else
                 "L_k = logsumexp over the k samples of log_w, minus log k; the NLL estimate is -L_k")
    return _match(got, truth, [
        (-truth, "that is L_k itself; the NLL estimate is its negative"),
        (-log_w.mean(0), "that is the negative ELBO estimate: average the weights, not their logs (log-sum-exp)"),
        (truth - math.log(log_w.shape[0]), "subtract log k inside: L_k = logsumexp(log_w) - log k"),
    ], otherwise, rtol=1e-9, atol=1e-9)


# ---- Chapter 8: beyond the basic VAE ------------------------------------------------------------

def _active_units_inputs() -> list[tuple[torch.Tensor, int]]:
    """Encoder means (N, d) whose columns have exactly the variances below over the images, with the
    count of those above 0.01 known by construction (no variance is near the threshold)."""
    g = torch.Generator().manual_seed(8)
    # (variance over the images, mean): three columns above 0.01; a spread of 0.05 or 0.02 passes a
    # threshold on the standard deviation; a column far from 0 with no spread passes one on E[mu^2]
    columns = [(1.0, 0.0), (0.25, 0.3), (0.04, -0.2), (0.0025, 0.0), (0.0004, 0.0), (1e-6, 2.0),
               (1e-8, 0.0), (1e-8, 0.0), (1e-8, 0.0)]
    noise = torch.randn(400, len(columns), generator=g, dtype=torch.float64)
    noise = (noise - noise.mean(0)) / noise.std(0)  # sample mean 0, sample variance 1, exactly
    mu = torch.stack([m + math.sqrt(v) * noise[:, j] for j, (v, m) in enumerate(columns)], 1)
    some = [0, 3, 4, 5, 6]  # a second input, so a constant answer fails
    return [(mu, sum(v > 0.01 for v, _ in columns)), (mu[:, some], sum(columns[j][0] > 0.01 for j in some))]


def _active_units(answer: Any) -> str | None:
    """A function mu (N, d) -> the number of latent dimensions whose posterior mean varies over the
    N images with a variance above 0.01."""
    for i, (mu, truth) in enumerate(_active_units_inputs()):
        got = _call(answer, mu)
        if got.numel() != 1:
            if got.numel() == mu.shape[1]:
                return "one number: count the dimensions that pass (sum the mask), not a value per dimension"
            return f"one count for the whole (N, d) input; yours gave shape {tuple(got.shape)}"
        value = got.item()
        if _close(value, truth, rel=0.0, abs_=1e-9):
            continue
        n, d = mu.shape
        if i > 0:
            return "right on one input, wrong on another: count from mu itself, not a number read off the chapter"
        if value > d:
            return "that counts images: the variance is over the images (dimension 0), one per latent dimension"
        std = int((mu.std(0) > 0.01).sum())
        second = int((mu.pow(2).mean(0) > 0.01).sum())
        hints = {d - truth: "that counts the inactive dimensions: active ones vary by more than the threshold",
                 int((mu.var(0) > 0.1).sum()): "0.1 nats is the chapter's KL threshold; active units compare the "
                                               "variance of the mean with 0.01",
                 std: "the threshold 0.01 is on the variance of the mean over the data, not on its standard deviation",
                 second: "E[mu^2] is not a variance: subtract the mean over the images first (a dimension can sit far "
                         "from 0 without varying)"}
        return hints.get(round(value), "compute Var over the images of each column of mu (dimension 0) and "
                                       "count the columns above 0.01")
    return None


def _hidden_beta_means(answer: Any) -> str | None:
    """The beta of BCE averaged over the batch and the 784 pixels plus a (B, 16) KL averaged over the
    batch and the 16 latent dimensions, against the summed ELBO per image."""
    value = _number(answer)
    pixels, codes = 784, 16
    # the weight of the KL when the whole loss is rescaled so its reconstruction term is the summed one
    truth = (1 / codes) / (1 / pixels)
    if _close(value, truth):
        return None
    if _close(value, 1 / truth):
        return "upside down: scale the whole loss until the reconstruction term is the sum over pixels"
    if _close(value, pixels):
        return "the KL is averaged too, over the latent dimensions: that divides its weight"
    if _close(value, 1 / codes):
        return "the reconstruction term is a mean over the pixels as well: rescaling it multiplies the KL's weight"
    if _close(value, codes):
        return "the pixels' factor and the codes' factor act in opposite directions: one multiplies, one divides"
    if value > pixels:
        return "both terms are averaged over the same batch, so the batch size cancels"
    return ("write each mean as (1 / count) times a sum, then multiply the loss until the reconstruction term is "
            "the sum over pixels: what weighs the summed KL?")


def _free_bits_inputs(delta: float, seed: int) -> torch.Tensor:
    """Per-image, per-dimension KLs (B, d): dimensions well above delta, below it on average,
    and some that cross delta in some images only (so where the clamp acts matters)."""
    g = torch.Generator().manual_seed(seed)
    scale = torch.tensor([3.0, 1.5, 1.0, 0.6, 0.3, 0.1, 0.05, 0.01], dtype=torch.float64) * delta * 2
    return scale * torch.rand(32, len(scale), generator=g, dtype=torch.float64) * 2


def _free_bits(answer: Any) -> str | None:
    """A function (kl (B, d), delta) -> the free-bits KL term sum_j max(mean_b kl[b, j], delta)."""
    for delta, seed in [(0.5, 3), (0.25, 4)]:
        kl = _free_bits_inputs(delta, seed)
        truth = torch.tensor(sum(max(float(kl[:, j].mean()), delta) for j in range(kl.shape[1])),
                             dtype=torch.float64)
        got = _call(answer, kl, delta)
        if got.numel() == kl.shape[1]:
            return "one number for the batch: sum the clamped dimensions"
        if got.numel() != 1:
            return f"the term is one number for the batch; yours gave shape {tuple(got.shape)}"
        hint = _match(got.reshape(()), truth, [
            (kl.clamp(min=delta).sum(1).mean(), "that clamps each image's KL: free bits clamp each dimension's KL "
                                                 "averaged over the batch, then sum"),
            (kl.sum(1).mean(), "no clamp has acted: free bits replace each dimension's batch-averaged KL by "
                               "max(KL_j, delta)"),
            (kl.mean(0).clamp(max=delta).sum(), "that clamps from above: the KL is held at least delta, so a "
                                                 "dimension below delta costs delta whatever it does"),
            (kl.mean(0).clamp(min=delta).mean(), "average over the batch, but sum over the latent dimensions (the "
                                                  "KL of independent dimensions adds up)"),
            (kl.mean(0).sum() + delta * kl.shape[1], "free bits take a maximum, not a sum: max(KL_j, delta)"),
        ], "average each dimension's KL over the batch (dimension 0), clamp it from below at delta, "
           "sum over the dimensions", rtol=1e-9, atol=1e-9)
        if hint is not None:
            return hint
    return None


def _bce_floor(answer: Any) -> str | None:
    """A function x (N, 784) of grey levels in [0, 1] -> the smallest BCE any decoder can give each
    image, summed over the pixels, (N,) in nats."""
    import torch.nn.functional as F

    g = torch.Generator().manual_seed(9)
    x = torch.rand(6, 784, generator=g, dtype=torch.float64)
    x[x < 0.4] = 0.0  # exact 0s (half of Fashion-MNIST's pixels are) and 1s
    x[x > 0.9] = 1.0
    # the BCE at its minimiser lambda = x (PyTorch clamps log 0 at -100, so 0 log 0 counts as 0)
    truth = F.binary_cross_entropy(x, x, reduction="none").sum(1)
    got = _call(answer, x)
    if got.shape != truth.shape:
        if got.shape == x.shape:
            return "one number per image: sum over the 784 pixels"
        return f"one floor per image: for (N, 784) inputs the answer has shape (N,); yours gave {tuple(got.shape)}"
    if not bool(torch.isfinite(got).all()):
        return ("the exact 0 and 1 pixels give 0 log 0, which is 0 in the limit but nan in floating point: "
                "use torch.xlogy or torch.special.entr")
    return _match(got, truth, [
        (torch.zeros_like(truth), "a perfect reconstruction lambda = x does not make the BCE zero when x is grey"),
        (-truth, "a BCE is a negative log-probability, never below 0: check the sign"),
        (truth / math.log(2.0), "that is in bits; the course measures in nats"),
        (truth / x.shape[1], "that is a mean over pixels: the floor of the summed loss is the sum over pixels"),
    ], "minimise -(x log lambda + (1 - x) log(1 - lambda)) over lambda for each pixel, then sum the minima",
        rtol=1e-5, atol=1e-3)


EXERCISES: dict[str, Exercise] = {
    "log-odds": Exercise(1, "a function x -> log p(y=1 | x) / p(y=0 | x) with unequal stds, elementwise",
                         _log_odds),
    "grey-bce": Exercise(1, "the smallest BCE of a grey pixel x = 0.3 over the predicted mean, nats", _grey_bce),
    "bits-per-dim": Exercise(1, "80 nats per MNIST image in bits per pixel, a number", _bits_per_dim),
    "kl-by-hand": Exercise(2, "KL(N(1, 0.5^2) || N(0, 1)) in nats, a number", _kl_by_hand),
    "kl-unit-variance": Exercise(2, "a function (mu_q, mu_p) -> KL(N(mu_q, 1) || N(mu_p, 1))", _kl_unit_variance),
    "kl-from-logvar": Exercise(2, "a function (mu, logvar) -> KL(q || N(0, I)) per row, (N, d) -> (N,)",
                               _kl_from_logvar),
    "gaussian-entropy": Exercise(3, "a function logvar -> entropy of the diagonal Gaussian per row, (N, d) -> (N,)",
                                 _gaussian_entropy),
    "hidden-beta": Exercise(3, "the beta of mean-over-pixels BCE plus summed KL, a number", _hidden_beta),
    "reparam-std": Exercise(4, "the standard deviation that z = mu + exp(logvar) * eps samples with, a number",
                            _reparam_std),
    "pathwise-sigma-variance": Exercise(4, "Var of the pathwise d/dsigma estimate at mu = sigma = 1, k = 0, a number",
                                        _pathwise_sigma_variance),
    "optimal-baseline": Exercise(4, "the optimal constant baseline b* at mu = sigma = 1, k = 0, a number",
                                 _optimal_baseline),
    "l3-by-hand": Exercise(6, "L_3 for the log weights -100, -102, -98, a number", _l3_by_hand),
    "nll-from-weights": Exercise(6, "a function log_w (k, N) -> the NLL estimate -L_k per image, (N,)",
                                 _nll_from_weights),
    "gap-correlation": Exercise(3, "the posterior correlation (> 0) whose best diagonal q misses 1 nat, a number",
                                _gap_correlation),
    # Chapter 8
    "active-units": Exercise(8, "a function mu (N, d) -> the number of dimensions with Var over the images > 0.01",
                             _active_units),
    "hidden-beta-means": Exercise(8, "the beta of BCE averaged over batch and pixels plus KL averaged over batch and "
                                     "16 codes, a number", _hidden_beta_means),
    "free-bits": Exercise(8, "a function (kl (B, d), delta) -> sum_j max(batch-mean KL_j, delta), a number",
                          _free_bits),
    "bce-floor": Exercise(8, "a function x (N, 784) -> the smallest summed BCE of each grey image, (N,)", _bce_floor),
}


def check(name: str, answer: Any) -> bool:
    """Check ``answer`` to the exercise ``name`` (as the chapter shows it); print right or a hint.

    Returns True for a right answer. The hint names a likely mistake; the solution itself is
    only in the book, behind its "Solution" button.
    """
    if name not in EXERCISES:
        raise KeyError(f"no exercise {name!r} to check; the checkable ones are {sorted(EXERCISES)}")
    exercise = EXERCISES[name]
    try:
        hint = exercise.judge(answer)
    except TypeError as err:
        hint = str(err)
    except Exception as err:  # the reader's function failed: say so, as a hint
        hint = f"calling your answer failed: {type(err).__name__}: {err}"
    if hint is None:
        print(f"{name}: right.")
        return True
    print(f"{name}: not yet. Hint: {hint}.")
    return False
