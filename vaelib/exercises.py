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


# ---- Chapter 9: conditional generation and few labels ------------------------------------------

_COND_ELBO = -95.0  # L(x | y) of one labelled image, nats


def _m2_labelled_bound(answer: Any) -> str | None:
    """M2's labelled bound L(x, y) of an image whose conditional ELBO L(x | y) is -95 nats, C = 10."""
    value = _number(answer)
    log_prior = torch.distributions.Categorical(logits=torch.zeros(10, dtype=torch.float64)).log_prob(
        torch.tensor(3)).item()
    truth = _COND_ELBO + log_prior
    near = lambda v: _close(value, v, rel=0.0, abs_=0.005)  # noqa: E731  (two decimals; mistakes differ by 0.1)
    if near(truth):
        return None
    if near(_COND_ELBO):
        return "that is the conditional ELBO alone: the joint p(x, y) has one more factor, the label's prior"
    if near(_COND_ELBO - log_prior):
        return "the sign of log p(y): a probability below 1 has a negative log, so the bound goes down"
    if near(_COND_ELBO - 1.0):
        return "that is a base-10 logarithm: the course's logs are natural (nats)"
    if near(_COND_ELBO - math.log2(10)):
        return "that is a base-2 logarithm (bits): the course's logs are natural (nats)"
    if near(_COND_ELBO - 0.1):
        return "add log p(y), not p(y) itself"
    if near(_COND_ELBO - 10):
        return "add log p(y) with p(y) = 1 / C, not C itself"
    return "L(x, y) = L(x | y) + log p(y), with p(y) uniform over the ten digits"


def _m2_unlabelled_bound(answer: Any) -> str | None:
    """A function (bounds, logits) -> U(x) = sum_y q(y|x) L(x, y) + H(q(y|x)), (N, C), (N, C) -> (N,)."""
    g = torch.Generator().manual_seed(9)
    bounds = -100 + 5 * torch.randn(40, 10, generator=g, dtype=torch.float64)  # L(x, y) per image and class
    logits = 1.0 + 2 * torch.randn(40, 10, generator=g, dtype=torch.float64)  # not normalised
    # by another route: U = logsumexp_y L(x, y) - KL(q(y | x) || softmax_y L(x, y))  (eq-m2-gap)
    q = torch.distributions.Categorical(logits=logits)
    truth = torch.logsumexp(bounds, -1) - kl_divergence(q, torch.distributions.Categorical(logits=bounds))
    got = _call(answer, bounds, logits)
    if got.shape != truth.shape:
        if got.shape == bounds.shape:
            return "one bound per image: sum over the C classes (dimension -1)"
        return f"for (N, C) inputs the answer has shape (N,) = {tuple(truth.shape)}; yours gave {tuple(got.shape)}"
    probs, entropy = q.probs, q.entropy()
    expected = (probs * bounds).sum(-1)
    q_dim0 = torch.softmax(logits, 0)
    return _match(got, truth, [
        (expected, "the entropy term is missing: q(y | x) is part of q, so -E_q[log q(y | x)] belongs in the bound"),
        (expected - entropy, "the entropy's sign: U adds H(q) = -sum_y q log q, which is >= 0"),
        (expected - (probs * logits).sum(-1), "log q(y | x) is log_softmax(logits), not the logits themselves"),
        ((logits * bounds).sum(-1) + entropy, "weigh the bounds by the probabilities q = softmax(logits), not the logits"),
        ((q.logits * bounds).sum(-1) + entropy,
         "those weights are log-probabilities: weigh the bounds by q = exp(log_softmax(logits))"),
        (expected + entropy / bounds.shape[1], "the entropy is a sum over the classes, not a mean"),
        ((q_dim0 * bounds).sum(-1) - (q_dim0 * q_dim0.log()).sum(-1),
         "the softmax runs over the classes (dimension -1), not over the images"),
        (torch.logsumexp(bounds, -1), "that is the bound's ceiling log sum_y exp L(x, y), reached only when q = "
                                      "softmax_y L(x, y); U uses the classifier's q"),
        (bounds.mean(-1) + math.log(10), "that weighs every class by 1/C: U uses the classifier's q(y | x)"),
    ], "U(x) = sum_y q(y|x) (L(x, y) - log q(y|x)) with log q = log_softmax(logits) over the classes")


def _m2_hidden_label_weight(answer: Any) -> str | None:
    """With 1 000 labels of N = 60 000: the batch weighting's weight on one labelled image over the paper's."""
    value = _number(answer)
    n, n_l = 60_000, 1_000
    n_u = n - n_l
    # one labelled image's share of each loss: d loss / d L(x, y) for that image
    paper = (n_l / n_u) / n_l  # the paper's J^alpha / N_u: its bound is one term of the sum
    batch = 1.0 / n_l  # each step's labelled mean, as heavy as the unlabelled batch's mean
    truth = batch / paper
    if _close(value, truth):
        return None
    if _close(value, 1 / truth):
        return "upside down: the batch weighting is the heavier one"
    if _close(value, 599.0):
        return "that is the ratio for 100 labels, the chapter's; count the unlabelled images for 1 000"
    if _close(value, n / n_l):
        return "close: the paper's objective is divided by the unlabelled images N_u, not by all N"
    if _close(value, 1.0):
        return ("both take a mean over the labelled batch, but the paper's then multiplies it by N_l / N_u: "
                "a mean over a batch can hide a weight, as a mean over pixels hides a beta")
    return ("write each loss's weight on one labelled image's -L(x, y): 1/N_l times the labelled mean's factor "
            "(vaelib.recipes.m2_weights), and divide")


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
    # Chapter 9
    "m2-labelled-bound": Exercise(9, "M2's labelled bound L(x, y) when L(x | y) = -95 nats and C = 10, a number",
                                  _m2_labelled_bound),
    "m2-unlabelled-bound": Exercise(9, "a function (bounds, logits) -> U(x) per row, (N, C), (N, C) -> (N,)",
                                    _m2_unlabelled_bound),
    "m2-hidden-label-weight": Exercise(9, "how many times the batch weighting weighs a labelled image over the "
                                          "paper's, 1 000 labels, a number", _m2_hidden_label_weight),
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
