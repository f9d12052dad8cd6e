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


# ---- Chapter 5: autoencoders ------------------------------------------------------------------

def _binary_images(n: int = 6, seed: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Decoder logits and binary images ``(n, 1, 28, 28)``, float64, for the reconstruction checks."""
    g = torch.Generator().manual_seed(seed)
    logits = 2 * torch.randn(n, 1, 28, 28, generator=g, dtype=torch.float64)
    x = (torch.rand(n, 1, 28, 28, generator=g, dtype=torch.float64) < 0.3).double()
    return logits, x


def _ae_recon_loss(answer: Any) -> str | None:
    """A function (logits, x) -> the autoencoder's loss, BCE summed over pixels, per image:
    (N, 1, 28, 28) -> (N,)."""
    logits, x = _binary_images()
    truth = -torch.distributions.Bernoulli(logits=logits).log_prob(x).flatten(1).sum(1)
    got = _call(answer, logits, x)
    if not bool(torch.isfinite(got).all()):
        return ("the decoder outputs logits, not probabilities: pass them through a sigmoid, or use "
                "binary_cross_entropy_with_logits")
    if got.numel() == 1:
        got = got.reshape(())
        return _match(got, truth.mean(), [
            (truth.mean() / 784, "reduction='mean' averages over the pixels as well as the images: a number "
                                 "784 times smaller than nats per image, and one number, not one per image"),
            (truth.sum(), "that sums over the images too: keep one loss per image, shape (N,)"),
        ], f"one loss per image: for (N, 1, 28, 28) inputs the answer has shape (N,); yours gave {tuple(got.shape)}")
    if got.shape != truth.shape:
        if got.shape == x.shape:
            return "that is the loss of each pixel: sum over the 784 pixels of each image"
        return f"for (N, 1, 28, 28) inputs the answer has shape (N,); yours gave {tuple(got.shape)}"
    probs = torch.sigmoid(logits)
    swapped = -(probs * x.clamp(1e-12).log() + (1 - probs) * (1 - x).clamp(1e-12).log()).flatten(1).sum(1)
    return _match(got, truth, [
        (truth / 784, "that is the mean over the pixels: a hidden factor of 1/784 on the loss, "
                      "so the numbers are not nats per image"),
        (-truth, "that is the log-likelihood; the loss is its negative"),
        (swapped, "the arguments are swapped: the image x weighs the logs of the predicted means"),
    ], "BCE = -sum_i [x_i log lambda_i + (1 - x_i) log(1 - lambda_i)], lambda = sigmoid(logits)",
        rtol=1e-5, atol=1e-6)


def _bce_floor(answer: Any) -> str | None:
    """A function x -> the smallest BCE any decoder can reach on grey images x, (N, 1, 28, 28) -> (N,)."""
    g = torch.Generator().manual_seed(4)
    x = torch.rand(5, 1, 28, 28, generator=g, dtype=torch.float64)
    x[:, :, :6] = 0.0  # black borders, as in MNIST: 0 log 0 counts as 0
    x[:, :, -3:] = 1.0
    truth = torch.distributions.Bernoulli(probs=x).entropy().flatten(1).sum(1)
    got = _call(answer, x)
    if got.shape != truth.shape:
        if got.shape == x.shape:
            return "that is the floor of each pixel: sum over the 784 pixels of each image"
        return f"one floor per image: for (N, 1, 28, 28) inputs the answer has shape (N,); yours gave {tuple(got.shape)}"
    if not bool(torch.isfinite(got).all()):
        return "black and white pixels give 0 log 0, which is 0 in the limit: use torch.xlogy or clamp"
    return _match(got, truth, [
        (torch.zeros_like(truth), "a perfect reconstruction lambda = x does not make the BCE of a grey pixel zero"),
        (truth / math.log(2.0), "that is in bits; the course measures in nats (natural logarithms)"),
        (truth / 784, "that is the mean over the pixels; the chapter's loss sums them"),
        (-truth, "the BCE is never negative: check the sign"),
    ], "minimise each pixel's -(x log lambda + (1 - x) log(1 - lambda)) over lambda and sum the minima",
        rtol=1e-6, atol=1e-6)


def _fitting_codes(n: int = 12, seed: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mix = torch.tensor([[2.0, 0.0], [1.2, 0.5]], dtype=torch.float64)
    codes = torch.randn(n, 2, generator=g, dtype=torch.float64) @ mix + torch.tensor([3.0, -1.0], dtype=torch.float64)
    z = 2 * torch.randn(9, 2, generator=g, dtype=torch.float64) + torch.tensor([3.0, -1.0], dtype=torch.float64)
    return codes, z


def _gauss_logpdf(z: torch.Tensor, m: torch.Tensor, cov: torch.Tensor) -> torch.Tensor:
    """log N(z; m, cov) by the formula: a linear solve and a log-determinant."""
    diff = z - m
    maha = (diff * torch.linalg.solve(cov, diff.T).T).sum(-1)
    return -0.5 * (maha + torch.logdet(cov) + z.shape[-1] * math.log(2 * math.pi))


def _fitted_gaussian_logpdf(answer: Any) -> str | None:
    """A function (codes (N, d), z (M, d)) -> log N(z; mean, torch.cov) of the codes' Gaussian, (M,)."""
    codes, z = _fitting_codes()
    n = len(codes)
    m = codes.mean(0)
    centred = codes - m
    cov = centred.T @ centred / (n - 1)
    truth = _gauss_logpdf(z, m, cov)
    got = _call(answer, codes, z)
    if got.shape != truth.shape:
        if got.numel() == 1:
            return "one log-density per point z: do not sum or average over the points"
        return f"for codes (N, d) and points (M, d) the answer has shape (M,); yours gave {tuple(got.shape)}"
    diag = torch.diag(cov.diagonal())
    return _match(got, truth, [
        (_gauss_logpdf(z, m, cov * (n - 1) / n), "that Gaussian divides by N; fit the covariance as torch.cov "
                                                  "does, dividing by N - 1"),
        (_gauss_logpdf(z, m, diag), "the codes are correlated: fit the full covariance, not only the variances"),
        (truth.exp(), "that is the density; the question asks for its logarithm"),
        (truth + math.log(2 * math.pi), "the normalising constant: in d = 2 dimensions it is -log(2 pi)"),
        (_gauss_logpdf(z, m, diag**2), "the variances were used as standard deviations: the scale of a "
                                       "Normal is the square root of the variance"),
    ], "log N(z; m, S) = -1/2 [(z - m)^T S^-1 (z - m) + log det S + d log(2 pi)]", rtol=1e-6, atol=1e-6)


_STRETCH = ((2.0, 1.0), (0.0, 3.0))


def _code_stretch(answer: Any) -> str | None:
    """How much the mean log-density of the fitted Gaussian changes when every code z becomes A z."""
    value = _number(answer)
    a = torch.tensor(_STRETCH, dtype=torch.float64)
    codes, _ = _fitting_codes(n=50, seed=7)
    before = _gauss_logpdf(codes, codes.mean(0), torch.cov(codes.T))
    moved = codes @ a.T
    after = _gauss_logpdf(moved, moved.mean(0), torch.cov(moved.T))
    truth = (after - before).mean().item()
    if _close(value, truth, rel=1e-6, abs_=1e-6):
        return None
    if _close(value, -truth):
        return "the sign: stretching the codes spreads the same probability over more area"
    if _close(value, 0.0):
        return "the autoencoder's loss does not change (the decoder can undo A), but a density does"
    if _close(value, 2 * truth):
        return "that is the change of log det of the covariance A S A^T; the log-density has half of it"
    if _close(value, -math.log(5.0)) or _close(value, math.log(5.0)):
        return "the area changes by the determinant of A, not its trace"
    return "a density changes by the Jacobian of z -> A z: work out |det A| and take its log"


def _linear_ae_error(answer: Any) -> str | None:
    """A function (x (N, D), d) -> the smallest mean over images of the summed squared error of a
    linear autoencoder (with biases) with a d-dimensional code."""
    g = torch.Generator().manual_seed(8)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64) @ torch.randn(6, 6, generator=g, dtype=torch.float64)
    x = x + 5 * torch.rand(6, generator=g, dtype=torch.float64)
    dims = (1, 2, 4)
    n = len(x)

    def tail(data: torch.Tensor, d: int) -> float:  # squared singular values beyond the d-th, summed
        return (torch.linalg.svdvals(data)[d:] ** 2).sum().item()

    def by_d(f: Callable[[int], float]) -> torch.Tensor:
        return torch.tensor([f(d) for d in dims], dtype=torch.float64)

    centred = x - x.mean(0)
    truth = by_d(lambda d: tail(centred, d) / n)
    got = torch.stack([_call(answer, x.clone(), d).reshape(()) for d in dims])
    return _match(got, truth, [
        (truth * n / (n - 1), "torch.cov divides by N - 1, but the error is a mean over the N images"),
        (by_d(lambda d: tail(x, d) / n), "the autoencoder has biases: centre the data first (PCA of the "
                                         "covariance, not of the raw second moments)"),
        (by_d(lambda d: (tail(centred, 0) - tail(centred, d)) / n), "that is the variance the code keeps; "
                                                                    "the error is what it loses"),
        (truth * n, "that is summed over the images; the question asks for the mean per image"),
        (truth / x.shape[1], "that is also averaged over the pixels; sum the squared error over each image's "
                             "pixels"),
    ], "the best linear code keeps the top d principal directions: the error is the variance in the others",
        rtol=1e-6, atol=1e-8)


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


# ---- Chapter 7: the VAE against the autoencoder -------------------------------------------------

def _paired_pair(seed: int = 7, n: int = 40):
    """Two columns that vary together (the same images under two models), as in the chapter."""
    g = torch.Generator().manual_seed(seed)
    common = 4 * torch.randn(n, generator=g, dtype=torch.float64)  # how hard each image is
    a = 130 + common + torch.randn(n, generator=g, dtype=torch.float64)
    b = 127 + common + 0.5 * torch.randn(n, generator=g, dtype=torch.float64)
    return a, b


def _paired_difference_se(answer: Any) -> str | None:
    """A function (a, b) -> the standard error of mean(a - b) for paired columns a[i], b[i]: (N,), (N,) -> a number."""
    a, b = _paired_pair()
    n = len(a)
    # from the covariance matrix: Var(a - b) = Var a + Var b - 2 Cov(a, b), each with N - 1
    cov = torch.cov(torch.stack([a, b]))
    truth = ((cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]) / n).sqrt()
    got = _call(answer, a, b)
    if got.numel() != 1:
        return ("one number for the two columns: the standard error of the mean difference; "
                f"yours gave shape {tuple(got.shape)}")
    got = got.reshape(())
    var_a, var_b, var_d = cov[0, 0], cov[1, 1], cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]
    return _match(got, truth, [
        (((var_a + var_b) / n).sqrt(), "that treats a and b as independent samples; they are the same "
                                       "images, so take the differences a - b first and use their spread"),
        ((var_a / n).sqrt() + (var_b / n).sqrt(), "standard errors do not add, and these columns are not "
                                                   "independent: take the differences a - b first"),
        (var_d.sqrt(), "that is the spread of one difference; the mean of N differences varies less, "
                       "by a factor sqrt(N)"),
        ((var_d * (n - 1) / n / n).sqrt(), "torch.std divides by N - 1 (Bessel's correction), as the "
                                            "chapter's mean_se does; yours divides by N"),
        (var_d / n, "that is a variance: the standard error is its square root"),
    ], "take the differences d = a - b image by image; the standard error of their mean is std(d) / sqrt(N)",
        rtol=1e-6, atol=1e-9)


_TOY_AE_MEAN = 0.9  # the toy autoencoder's decoder: every pixel on with this probability for code 1


def _ae_likelihood_total(answer: Any) -> str | None:
    """The toy 3-pixel autoencoder's sum over all 8 images of p(x | f(x)), f the majority vote."""
    value = _number(answer)
    lam = _TOY_AE_MEAN
    # by counting: k pixels agree with the code's mean-0.9 side; majority images have k = 2 or 3,
    # and the two codes mirror each other
    half = sum(math.comb(3, k) * lam**k * (1 - lam) ** (3 - k) for k in (2, 3))
    truth = 2 * half
    if _close(value, truth, rel=1e-6, abs_=1e-6):
        return None
    if _close(value, 1.0):
        return ("a likelihood would sum to 1 over the eight images; the point of the exercise is "
                "that this one need not: add the eight numbers")
    if _close(value, half):
        return "that covers the images coded 1 only: the images coded 0 count too"
    if _close(value, truth / 8):
        return "that is the mean over the eight images; the question asks for their sum"
    losses = 2 * sum(-math.comb(3, k) * math.log(lam**k * (1 - lam) ** (3 - k)) for k in (2, 3))
    if _close(value, losses):
        return "that adds the losses -log p(x | f(x)); add the probabilities p(x | f(x)) = exp(-loss)"
    return ("for each of the eight images find its code (the majority vote), then p(x | code) is a "
            "product of three Bernoulli probabilities; add the eight products")


def _kl_noisy_code(answer: Any) -> str | None:
    """A function (mu, sigma) -> KL(N(mu, diag sigma^2) || N(0, I)) per row, (N, d), (N, d) -> (N,)."""
    g = torch.Generator().manual_seed(8)
    mu = 3 * torch.randn(60, 3, generator=g, dtype=torch.float64)
    sigma = 0.05 + torch.rand(60, 3, generator=g, dtype=torch.float64)  # standard deviations, not all < 1
    truth = kl_divergence(Normal(mu, sigma), Normal(0.0, 1.0)).sum(-1)
    got = _call(answer, mu, sigma)
    if got.shape != truth.shape:
        if got.shape == mu.shape:
            return "one KL per row: sum over the d dimensions (the KL of independent dimensions adds up)"
        return f"for (N, d) inputs the answer has shape (N,) = {tuple(truth.shape)}; yours gave {tuple(got.shape)}"
    half_log = -0.5 * (1 + sigma.log() - mu**2 - sigma**2).sum(-1)  # log sigma where log sigma^2 belongs
    return _match(got, truth, [
        (-truth, "the sign is flipped: a KL is never negative, KL = 1/2 sum(mu^2 + sigma^2 - 1 - log sigma^2)"),
        (half_log, "log sigma^2 is 2 log sigma: you put log sigma where the log-variance belongs"),
        (kl_divergence(Normal(mu, sigma.sqrt()), Normal(0.0, 1.0)).sum(-1),
         "sigma is a standard deviation here, not a variance: the variance is sigma^2"),
        (truth / mu.shape[1], "you averaged over the dimensions: the KL of a diagonal Gaussian is their sum"),
        (kl_divergence(Normal(0.0, 1.0), Normal(mu, sigma)).sum(-1),
         "that is KL(N(0, I) || q), the other direction: the expectation is under q = N(mu, sigma^2)"),
    ], "write the KL of one dimension, log(1 / sigma) + (sigma^2 + mu^2) / 2 - 1/2, and sum over the dimensions")


def _mixture_case(seed: int = 9):
    g = torch.Generator().manual_seed(seed)
    c, d, n = 4, 2, 30
    weights = torch.tensor([0.1, 0.2, 0.3, 0.4], dtype=torch.float64)
    means = 2 * torch.randn(c, d, generator=g, dtype=torch.float64)
    factors = torch.randn(c, d, d, generator=g, dtype=torch.float64)
    covs = factors @ factors.transpose(-1, -2) + 0.5 * torch.eye(d, dtype=torch.float64)
    z = 2 * torch.randn(n, d, generator=g, dtype=torch.float64)
    return z, weights, means, covs


def _mixture_log_density(answer: Any) -> str | None:
    """A function (z, weights, means, covs) -> log of the Gaussian mixture's density at each row of z,
    (N, d), (C,), (C, d), (C, d, d) -> (N,)."""
    z, weights, means, covs = _mixture_case()
    d = z.shape[1]
    # each component's density by its formula (inverse and determinant), then the weighted sum, then the log
    diff = z[:, None, :] - means  # (N, C, d)
    maha = torch.einsum("ncj,cjk,nck->nc", diff, torch.linalg.inv(covs), diff)
    dens = (-0.5 * maha).exp() / ((2 * math.pi) ** d * torch.linalg.det(covs)).sqrt()  # (N, C)
    truth = (dens * weights).sum(-1).log()
    got = _call(answer, z, weights, means, covs)
    if got.shape != truth.shape:
        if got.shape == dens.shape:
            return "one log-density per point: combine the C components (a weighted sum of densities)"
        return f"for (N, d) points the answer has shape (N,) = {tuple(truth.shape)}; yours gave {tuple(got.shape)}"
    return _match(got, truth, [
        (dens.sum(-1).log(), "the components have unequal weights: multiply each density by its weight"),
        (dens.mean(-1).log(), "that gives every component the weight 1/C; use the weights given"),
        ((dens.log() * weights).sum(-1), "that is the weighted mean of the log-densities, a lower bound "
                                         "(Jensen): take the log of the weighted sum of densities"),
        ((dens * weights).max(-1).values.log(), "that keeps only the largest weighted component; "
                                                 "the others add to the density too"),
    ], "log p(z) = logsumexp over c of (log weight_c + log N(z; mean_c, cov_c))")


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


# ---- Chapter 10: tighter bounds -----------------------------------------------------------------

def _decoder_work_ratio(answer: Any) -> str | None:
    """The IWAE with k = 50 for 4 epochs: its decoder evaluations over the VAE's for 32 epochs."""
    value = _number(answer)
    images = 15_000
    # decoder evaluations: images x samples per image x epochs, run by run
    work = {k: images * k * epochs for k, epochs in ((1, 32), (5, 20), (50, 4))}
    truth = work[50] / work[1]
    if _close(value, truth):
        return None
    if _close(value, 50.0):
        return "50 is the ratio at equal epochs; these runs had 32 and 4 epochs"
    if _close(value, 4 / 32):
        return "that counts epochs only: each of the IWAE's images is decoded k times per epoch"
    if _close(value, 1 / truth):
        return "upside down: the IWAE's decoder work over the VAE's"
    if _close(value, work[5] / work[1]):
        return "that is the IWAE with k = 5; the question asks about k = 50"
    return "count decoder evaluations as images x samples per image x epochs for each run, then divide"


def _ess_log_weights(answer: Any) -> str | None:
    """A function log_w (k, N) -> the effective sample size 1 / sum_s w~_s^2 per image, (N,)."""
    g = torch.Generator().manual_seed(10)
    log_w = -800 + 4 * torch.randn(40, 6, generator=g, dtype=torch.float64)  # exp underflows even in float64
    log_w[:, 0] = -750.0  # equal weights: the effective sample size is k
    log_w[3, 1] += 40.0  # one weight dominates: close to 1
    # (sum w)^2 / sum w^2, by log-sum-exp: the same number without normalising first
    truth = (2 * torch.logsumexp(log_w, 0) - torch.logsumexp(2 * log_w, 0)).exp()
    got = _call(answer, log_w)
    if got.shape != truth.shape:
        if got.numel() == log_w.shape[0]:
            return "that reduces over the images: the k samples are dimension 0, the images dimension 1"
        return (f"one effective sample size per image: for (k, N) log weights the answer has shape (N,); "
                f"yours gave {tuple(got.shape)}")
    w_tilde = torch.softmax(log_w, 0)
    otherwise = ("exp of log weights this small underflows to 0: normalise with torch.softmax over the samples "
                 "(or log-sum-exp) before squaring" if not bool(torch.isfinite(got).all()) else
                 "normalise the weights over the k samples (they sum to 1), then take 1 / sum of their squares")
    return _match(got, truth, [
        ((w_tilde**2).sum(0), "that is the sum of the squared weights; the effective sample size is its reciprocal"),
        (truth / log_w.shape[0], "that is the effective sample size as a fraction of k; give the number of samples"),
        (torch.ones_like(truth), "1 / sum of the weights is always 1: square each normalised weight first"),
        (1 / (torch.softmax(log_w, 1) ** 2).sum(0), "normalise over the k samples (dimension 0), not over the images"),
    ], otherwise, rtol=1e-9, atol=1e-9)


def _paired_nll_se(answer: Any) -> str | None:
    """A function (nll_a, nll_b), both (N,) on the same images -> the standard error of mean(nll_b) - mean(nll_a)."""
    g = torch.Generator().manual_seed(11)
    nll_a = 90 + 12 * torch.randn(12, generator=g, dtype=torch.float64)  # images differ a lot...
    nll_b = nll_a + 2 + torch.randn(12, generator=g, dtype=torch.float64)  # ...and the models little
    n = len(nll_a)
    # by the covariance matrix of the two columns: Var(b - a) = Var a + Var b - 2 Cov(a, b)
    cov = torch.cov(torch.stack([nll_a, nll_b]))
    truth = math.sqrt((cov[0, 0] + cov[1, 1] - 2 * cov[0, 1]).item() / n)
    got = _number(_call(answer, nll_a, nll_b))
    if _close(got, truth, rel=1e-6, abs_=1e-9):
        return None
    unpaired = math.sqrt((cov[0, 0] + cov[1, 1]).item() / n)
    if _close(got, unpaired, rel=1e-6):
        return ("that treats the two sets of images as independent; the same images make the NLLs correlated: "
                "take the standard error of the per-image differences")
    if _close(got, truth * math.sqrt(n), rel=1e-6):
        return "that is the standard deviation of the differences, not of their mean: divide by sqrt(N)"
    if _close(got, truth**2, rel=1e-6):
        return "that is a variance: take its square root"
    if _close(got, truth * math.sqrt((n - 1) / n), rel=1e-6):
        return "that divides by N inside the standard deviation; the sample variance divides by N - 1"
    return "take the per-image differences nll_b - nll_a, then their standard deviation (N - 1) over sqrt(N)"


def _stl_problem():
    """A small VAE in float64 (4 x 4 binary images, d = 2), five images, and the noise of k = 6 codes each."""
    from .models import VAE

    with torch.random.fork_rng(devices=[]):  # the reader's random state is left alone
        torch.manual_seed(10)
        model = VAE(latent_dim=2, hidden=(8,), image_shape=(1, 4, 4)).double()
    g = torch.Generator().manual_seed(12)
    x = (torch.rand(5, 1, 4, 4, generator=g, dtype=torch.float64) < 0.4).double()
    eps = torch.randn(6, 5, 2, generator=g, dtype=torch.float64)
    return model, x, eps


def _stl_iwae_loss(answer: Any) -> str | None:
    """A function (model, x, eps) -> the sticking-the-landing surrogate of -mean_n L_k, eps (k, N, d)."""
    if not callable(answer):
        raise TypeError(f"the answer is a function; got {type(answer).__name__}")
    model, x, eps = _stl_problem()
    params = list(model.parameters())
    n_dec = sum(p.numel() for p in model.decoder.parameters())

    def grad_of(loss: torch.Tensor) -> torch.Tensor:
        grads = torch.autograd.grad(loss, params, allow_unused=True, retain_graph=True)
        return torch.cat([(torch.zeros_like(p) if g is None else g).flatten() for p, g in zip(params, grads)])

    q = model.encode(x)
    z = q.mu + (0.5 * q.logvar).exp() * eps
    log_w = model.log_likelihood(x, model.decode(z)) + model.prior().log_prob(z) - q.log_prob(z)
    k = eps.shape[0]
    iwae = -(torch.logsumexp(log_w, 0) - math.log(k)).mean()
    g_iwae = grad_of(iwae)
    # another route than detaching: take the score term sum_s w~_s grad log q(z_s), with the codes held
    # fixed, out of the full gradient (the loss is -L_k, so the dropped term is subtracted)
    score = (torch.softmax(log_w.detach(), 0) * q.log_prob(z.detach())).sum(0).mean()
    truth = g_iwae - grad_of(score)
    got_loss = answer(model, x, eps)
    if not isinstance(got_loss, torch.Tensor) or got_loss.numel() != 1:
        return "return the loss as a one-element tensor with its graph, so that autograd can differentiate it"
    if not got_loss.requires_grad:
        return "the loss has no graph: compute it from the model's outputs without torch.no_grad() or .item()"
    value, want = got_loss.item(), iwae.item()
    if not _close(value, want, rel=1e-9, abs_=1e-9):
        if _close(value, -want, rel=1e-9, abs_=1e-9):
            return "that is +L_k; the loss to minimise is its negative"
        if _close(value, -log_w.mean().item(), rel=1e-9, abs_=1e-9):
            return ("that is the negative ELBO estimate, the mean of the log weights; "
                    "L_k takes log-sum-exp over the k samples")
        if _close(value, want - math.log(k), rel=1e-9, abs_=1e-9):
            return "subtract log k: L_k is the log of the mean weight"
        return ("the value should equal -L_k with these codes: z_s = mu + sigma * eps_s with the given eps "
                "(sigma = exp(logvar / 2)), and only the parameters of log q are detached, not its value")
    got = grad_of(got_loss)
    same = lambda a, b: torch.allclose(a, b, rtol=1e-7, atol=1e-10)  # noqa: E731
    if same(got, truth):
        return None
    if same(got, g_iwae):
        return ("that is the ordinary IWAE gradient: evaluate log q(z_s) with mu and logvar detached, "
                "keeping the path through z_s")
    if same(got[-n_dec:], truth[-n_dec:]):
        frozen = -(torch.logsumexp(log_w + q.log_prob(z) - q.log_prob(z).detach(), 0) - math.log(k)).mean()
        if same(got, grad_of(frozen)):
            return ("log q(z_s) is detached as a whole, so the path through z_s is lost there too: "
                    "detach only mu and logvar, then evaluate log q at the undetached z_s")
        return "the decoder's gradient is right, the encoder's is not: only log q's mu and logvar are detached"
    return "the decoder's gradient should be that of -L_k; detach nothing but the parameters inside log q"


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
    "gap-correlation": Exercise(3, "the posterior correlation (> 0) whose best diagonal q misses 1 nat, a number",
                                _gap_correlation),
    "reparam-std": Exercise(4, "the standard deviation that z = mu + exp(logvar) * eps samples with, a number",
                            _reparam_std),
    "pathwise-sigma-variance": Exercise(4, "Var of the pathwise d/dsigma estimate at mu = sigma = 1, k = 0, a number",
                                        _pathwise_sigma_variance),
    "optimal-baseline": Exercise(4, "the optimal constant baseline b* at mu = sigma = 1, k = 0, a number",
                                 _optimal_baseline),
    "ae-recon-loss": Exercise(5, "a function (logits, x) -> the autoencoder's loss per image, (N, 1, 28, 28) -> (N,)",
                              _ae_recon_loss),
    "bce-floor": Exercise(5, "a function x -> the smallest BCE of grey images x per image, (N, 1, 28, 28) -> (N,)",
                          _bce_floor),
    "fitted-gaussian-logpdf": Exercise(5, "a function (codes (N, d), z (M, d)) -> log N(z; mean, cov of the codes), (M,)",
                                       _fitted_gaussian_logpdf),
    "code-stretch": Exercise(5, "the change of the fitted Gaussian's mean log-density when codes become A z, a number",
                             _code_stretch),
    "linear-ae-error": Exercise(5, "a function (x (N, D), d) -> the best linear autoencoder's mean squared error",
                                _linear_ae_error),
    "l3-by-hand": Exercise(6, "L_3 for the log weights -100, -102, -98, a number", _l3_by_hand),
    "nll-from-weights": Exercise(6, "a function log_w (k, N) -> the NLL estimate -L_k per image, (N,)",
                                 _nll_from_weights),
    "paired-difference-se": Exercise(7, "a function (a, b) -> the standard error of mean(a - b) for paired "
                                        "columns, one number", _paired_difference_se),
    "ae-likelihood-total": Exercise(7, "the toy autoencoder's sum of p(x | f(x)) over its 8 images, a number",
                                    _ae_likelihood_total),
    "kl-noisy-code": Exercise(7, "a function (mu, sigma) -> KL(N(mu, diag sigma^2) || N(0, I)) per row, "
                                 "(N, d) -> (N,)", _kl_noisy_code),
    "mixture-log-density": Exercise(7, "a function (z, weights, means, covs) -> a Gaussian mixture's log-density "
                                       "per row, (N,)", _mixture_log_density),
    "active-units": Exercise(8, "a function mu (N, d) -> the number of dimensions with Var over the images > 0.01",
                             _active_units),
    "hidden-beta-means": Exercise(8, "the beta of BCE averaged over batch and pixels plus KL averaged over batch and "
                                     "16 codes, a number", _hidden_beta_means),
    "free-bits": Exercise(8, "a function (kl (B, d), delta) -> sum_j max(batch-mean KL_j, delta), a number",
                          _free_bits),
    "m2-labelled-bound": Exercise(9, "M2's labelled bound L(x, y) when L(x | y) = -95 nats and C = 10, a number",
                                  _m2_labelled_bound),
    "m2-unlabelled-bound": Exercise(9, "a function (bounds, logits) -> U(x) per row, (N, C), (N, C) -> (N,)",
                                    _m2_unlabelled_bound),
    "m2-hidden-label-weight": Exercise(9, "how many times the batch weighting weighs a labelled image over the "
                                          "paper's, 1 000 labels, a number", _m2_hidden_label_weight),
    "decoder-work-ratio": Exercise(10, "the k = 50 run's decoder evaluations over the VAE's (4 vs 32 epochs), a number",
                                   _decoder_work_ratio),
    "ess-from-log-weights": Exercise(10, "a function log_w (k, N) -> the effective sample size per image, (N,)",
                                     _ess_log_weights),
    "paired-nll-se": Exercise(10, "a function (nll_a, nll_b) -> the standard error of their paired mean difference",
                              _paired_nll_se),
    "stl-iwae-loss": Exercise(10, "a function (model, x, eps) -> the sticking-the-landing surrogate of -L_k",
                              _stl_iwae_loss),
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
