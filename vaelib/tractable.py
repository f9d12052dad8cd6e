"""Small latent-variable models where every quantity has an exact (or quadrature) answer.

Chapter 1 uses `GaussianMixture1D` and `ScalarLatentModel` to name the pieces
of a latent-variable model, prior p(z), likelihood p(x|z), joint p(x, z),
marginal p(x) and posterior p(z|x), and to show what becomes hard when the
latent space grows. Chapter 3 uses `LinearGaussianModel`, where the ELBO, the
marginal and the posterior are all exact. All computations are in float64 and
in log space (Apple's MPS has no float64, so these models stay on the CPU or CUDA).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .divergences import kl_normal

LOG_2PI = math.log(2 * math.pi)


def _as_float64(x, name: str) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=torch.float64)
    if not torch.isfinite(t).all():
        raise ValueError(f"{name} must be finite, got {t}")
    return t


def log_normal(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    """Elementwise log N(x; mean, std^2) in nats (broadcasting)."""
    return -0.5 * (((x - mean) / std) ** 2 + LOG_2PI) - torch.log(std)


class GaussianMixture1D(nn.Module):
    """A discrete latent class and a 1-D observation.

    z ~ Categorical(weights) over C classes, x | z = c ~ N(means[c], stds[c]^2).
    The parameters are learnable (as class logits, means and log-stds), so the
    model can be fitted by maximum likelihood.

    Args:
        weights: ``(C,)`` positive class probabilities (normalised here).
        means: ``(C,)``.
        stds: ``(C,)`` positive standard deviations.
    """

    def __init__(self, weights, means, stds) -> None:
        super().__init__()
        weights, means, stds = (_as_float64(v, n) for v, n in ((weights, "weights"), (means, "means"), (stds, "stds")))
        if not (weights.dim() == means.dim() == stds.dim() == 1) or not (
            len(weights) == len(means) == len(stds)
        ):
            raise ValueError(
                f"weights, means and stds must be 1-D of one length C, got shapes "
                f"{tuple(weights.shape)}, {tuple(means.shape)}, {tuple(stds.shape)}"
            )
        if (weights <= 0).any() or (stds <= 0).any():
            raise ValueError(f"weights and stds must be positive, got weights={weights}, stds={stds}")
        self.logits = nn.Parameter(torch.log(weights / weights.sum()))
        self.means = nn.Parameter(means.clone())
        self.log_stds = nn.Parameter(torch.log(stds))

    @property
    def weights(self) -> torch.Tensor:
        """``(C,)`` class probabilities p(z = c)."""
        return torch.softmax(self.logits, dim=0)

    @property
    def stds(self) -> torch.Tensor:
        return self.log_stds.exp()

    def _check_x(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64, device=self.means.device)
        if x.dim() != 1:
            raise ValueError(f"x must be a 1-D tensor of N scalar observations, got shape {tuple(x.shape)}")
        return x

    def log_prior(self) -> torch.Tensor:
        """``(C,)`` log p(z = c)."""
        return torch.log_softmax(self.logits, dim=0)

    def log_likelihood(self, x) -> torch.Tensor:
        """``(N, C)`` log p(x_n | z = c)."""
        x = self._check_x(x)
        return log_normal(x[:, None], self.means, self.stds)

    def log_joint(self, x) -> torch.Tensor:
        """``(N, C)`` log p(x_n, z = c) = log p(z = c) + log p(x_n | z = c)."""
        return self.log_prior() + self.log_likelihood(x)

    def log_marginal(self, x) -> torch.Tensor:
        """``(N,)`` log p(x_n) = log sum_c p(x_n, z = c), in nats."""
        return torch.logsumexp(self.log_joint(x), dim=1)

    def posterior(self, x) -> torch.Tensor:
        """``(N, C)`` p(z = c | x_n) by Bayes' rule; rows sum to 1."""
        log_joint = self.log_joint(x)
        return torch.exp(log_joint - torch.logsumexp(log_joint, dim=1, keepdim=True))

    @torch.no_grad()
    def em_step(self, x) -> "GaussianMixture1D":
        """One step of expectation-maximisation: a new mixture, fitted to ``x (N,)``.

        E-step: q(z_n) = p(z_n | x_n) under this model (the ELBO's maximiser in q, where the
        bound touches log p(x)). M-step: the parameters that maximise the ELBO for that q,
        in closed form: weights = mean responsibility, means and variances = responsibility-
        weighted moments. The log-likelihood of ``x`` never decreases from one step to the next.
        """
        x = self._check_x(x)
        r = self.posterior(x)  # (N, C) responsibilities
        n_c = r.sum(0)
        means = (r * x[:, None]).sum(0) / n_c
        stds = ((r * (x[:, None] - means) ** 2).sum(0) / n_c).sqrt()
        return GaussianMixture1D(n_c / len(x), means, stds)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: z ~ p(z), then x ~ p(x | z). Returns ``(z (n,), x (n,))``."""
        z = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        eps = torch.randn(n, dtype=torch.float64, generator=generator, device=self.means.device)
        return z, self.means[z] + self.stds[z] * eps


class ScalarLatentModel:
    """One continuous latent and a D-dimensional observation with a nonlinear decoder.

    z ~ N(0, 1), x | z ~ N(decoder(z), noise_std^2 I_D). With one latent
    dimension the marginal p(x) = ∫ p(x|z) p(z) dz and the posterior p(z|x) can
    be computed on a grid of z values, which is what a d-dimensional latent
    space (a grid of G^d points) rules out.

    Args:
        decoder: maps ``(M,)`` latent values to ``(M, D)`` means (float64).
        noise_std: observation noise standard deviation sigma > 0.
    """

    def __init__(self, decoder: Callable[[torch.Tensor], torch.Tensor], noise_std: float) -> None:
        if not noise_std > 0:
            raise ValueError(f"noise_std must be positive, got {noise_std}")
        self.decoder = decoder
        self.noise_std = float(noise_std)

    def mean(self, z) -> torch.Tensor:
        """``(M, D)`` decoder means for ``(M,)`` latent values."""
        z = _as_float64(z, "z")
        if z.dim() != 1:
            raise ValueError(f"z must be 1-D (M latent values), got shape {tuple(z.shape)}")
        out = self.decoder(z)
        if out.dim() != 2 or out.shape[0] != len(z):
            raise ValueError(f"decoder must map (M,) to (M, D), got {tuple(out.shape)} for M={len(z)}")
        return out

    def log_likelihood(self, x, z) -> torch.Tensor:
        """``(N, M)`` log p(x_n | z_m) for ``x (N, D)`` and ``z (M,)``."""
        mean = self.mean(z)
        x = _as_float64(x, "x")
        if x.dim() != 2 or x.shape[1] != mean.shape[1]:
            raise ValueError(f"x must be (N, {mean.shape[1]}), got shape {tuple(x.shape)}")
        sq = torch.cdist(x, mean) ** 2
        d = x.shape[1]
        return -0.5 * sq / self.noise_std**2 - d * (math.log(self.noise_std) + 0.5 * LOG_2PI)

    @staticmethod
    def grid(n_grid: int = 2001, z_max: float = 8.0) -> torch.Tensor:
        """``(G,)`` evenly spaced latent values on [-z_max, z_max]."""
        return torch.linspace(-z_max, z_max, n_grid, dtype=torch.float64)

    def log_joint(self, x, z) -> torch.Tensor:
        """``(N, M)`` log p(x_n, z_m) = log N(z_m; 0, 1) + log p(x_n | z_m)."""
        z = _as_float64(z, "z")
        return log_normal(z, z.new_zeros(()), z.new_ones(())) + self.log_likelihood(x, z)

    def log_marginal(self, x, n_grid: int = 2001, z_max: float = 8.0) -> torch.Tensor:
        """``(N,)`` log p(x_n) by the trapezoidal rule over a grid of z (nats)."""
        z = self.grid(n_grid, z_max)
        log_w = torch.full_like(z, math.log(z[1] - z[0]))
        log_w[[0, -1]] -= math.log(2)
        return torch.logsumexp(self.log_joint(x, z) + log_w, dim=1)

    def posterior_density(self, x, n_grid: int = 2001, z_max: float = 8.0) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior density p(z | x_n) on a grid: returns ``(z (G,), density (N, G))``."""
        z = self.grid(n_grid, z_max)
        log_post = self.log_joint(x, z) - self.log_marginal(x, n_grid, z_max)[:, None]
        return z, log_post.exp()

    def log_marginal_mc(self, x, n_samples: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """``(N,)`` the naive Monte Carlo estimate log (1/S) sum_s p(x_n | z_s), z_s ~ p(z).

        Unbiased for p(x) (not for log p(x)); its spread shows why sampling the
        prior is a poor way to find the few z that explain x.
        """
        z = torch.randn(n_samples, dtype=torch.float64, generator=generator)
        return torch.logsumexp(self.log_likelihood(x, z), dim=1) - math.log(n_samples)

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: ``z (n,) ~ N(0, 1)``, then ``x (n, D) ~ N(decoder(z), sigma^2 I)``."""
        z = torch.randn(n, dtype=torch.float64, generator=generator)
        mean = self.mean(z)
        return z, mean + self.noise_std * torch.randn(mean.shape, dtype=torch.float64, generator=generator)


class LinearGaussianModel:
    """The linear-Gaussian latent-variable model, where everything is exact.

    z ~ N(0, I_d), x | z ~ N(W z + b, sigma^2 I_D). Then

    - the marginal is p(x) = N(x; b, W W^T + sigma^2 I);
    - the posterior is p(z | x) = N(m(x), S) with S = (I + W^T W / sigma^2)^{-1}
      and m(x) = S W^T (x - b) / sigma^2;
    - for a diagonal Gaussian q(z) = N(mu, diag exp(logvar)) the ELBO is a closed form.

    Chapter 3 uses it to show the bound, the gap and its closing.

    Args:
        W: ``(D, d)`` loading matrix; b: ``(D,)`` offset; noise_std: sigma > 0.
    """

    def __init__(self, W, b, noise_std: float) -> None:
        self.W = torch.as_tensor(W, dtype=torch.float64)
        self.b = torch.as_tensor(b, dtype=torch.float64, device=self.W.device)
        if self.W.dim() != 2 or self.b.shape != (self.W.shape[0],):
            raise ValueError(f"W must be (D, d) and b (D,), got {tuple(self.W.shape)} and {tuple(self.b.shape)}")
        if not noise_std > 0:
            raise ValueError(f"noise_std must be positive, got {noise_std}")
        self.noise_std = float(noise_std)
        self.D, self.d = self.W.shape

    def _check_x(self, x) -> torch.Tensor:
        x = torch.as_tensor(x, dtype=torch.float64, device=self.W.device)
        if x.dim() != 2 or x.shape[1] != self.D:
            raise ValueError(f"x must be (N, {self.D}), got shape {tuple(x.shape)}")
        return x

    def _check_q(self, x: torch.Tensor, mu_q: torch.Tensor, logvar_q: torch.Tensor) -> None:
        want = (x.shape[0], self.d)
        if tuple(mu_q.shape) != want or tuple(logvar_q.shape) != want:
            raise ValueError(
                f"mu_q and logvar_q must be {want} for x of shape {tuple(x.shape)}, "
                f"got {tuple(mu_q.shape)} and {tuple(logvar_q.shape)}"
            )

    def marginal_scale_tril(self) -> torch.Tensor:
        """``(D, D)`` Cholesky factor of the marginal covariance W W^T + sigma^2 I."""
        cov = self.W @ self.W.T + self.noise_std**2 * torch.eye(self.D, dtype=torch.float64, device=self.W.device)
        return torch.linalg.cholesky(cov)

    def log_marginal(self, x) -> torch.Tensor:
        """``(N,)`` exact log p(x_n) in nats, through a Cholesky factor of the marginal covariance."""
        x = self._check_x(x)
        L = self.marginal_scale_tril()
        y = torch.linalg.solve_triangular(L, (x - self.b).T, upper=False)  # (D, N)
        log_det = 2 * torch.diagonal(L).log().sum()
        return -0.5 * (y.pow(2).sum(0) + log_det + self.D * LOG_2PI)

    def posterior(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """The exact posterior p(z | x_n) = N(mean_n, S): returns ``mean (N, d)`` and ``scale_tril (d, d)`` of S."""
        x = self._check_x(x)
        eye = torch.eye(self.d, dtype=torch.float64, device=self.W.device)
        precision = eye + self.W.T @ self.W / self.noise_std**2
        cov = torch.cholesky_inverse(torch.linalg.cholesky(precision))
        mean = (x - self.b) @ self.W @ cov / self.noise_std**2  # cov is symmetric
        return mean, torch.linalg.cholesky(cov)

    def log_likelihood(self, x, z: torch.Tensor) -> torch.Tensor:
        """log p(x_n | z) for ``x (N, D)`` and ``z (..., N, d)``; returns ``(..., N)``."""
        x = self._check_x(x)
        mean = z @ self.W.T + self.b
        return (
            -0.5 * (x - mean).pow(2).sum(-1) / self.noise_std**2
            - self.D * (math.log(self.noise_std) + 0.5 * LOG_2PI)
        )

    def expected_log_likelihood(self, x, mu_q: torch.Tensor, logvar_q: torch.Tensor) -> torch.Tensor:
        """``(N,)`` E_q[log p(x_n | z)] for q = N(mu_q, diag exp(logvar_q)), in closed form.

        E||x - W z - b||^2 = ||x - W mu - b||^2 + sum_j var_j ||W_{:, j}||^2.
        """
        x = self._check_x(x)
        self._check_q(x, mu_q, logvar_q)
        residual = (x - mu_q @ self.W.T - self.b).pow(2).sum(-1)
        spread = logvar_q.exp() @ self.W.pow(2).sum(0)
        return (
            -0.5 * (residual + spread) / self.noise_std**2
            - self.D * (math.log(self.noise_std) + 0.5 * LOG_2PI)
        )

    def elbo(self, x, mu_q: torch.Tensor, logvar_q: torch.Tensor) -> torch.Tensor:
        """``(N,)`` the ELBO E_q[log p(x|z)] - KL(q || p(z)) for diagonal Gaussian q's, in closed form (nats)."""
        return self.expected_log_likelihood(x, mu_q, logvar_q) - kl_normal(mu_q, logvar_q)

    def log_importance_estimate(self, x, q: torch.distributions.Distribution, n_samples: int,
                                repeats: int = 1) -> torch.Tensor:
        """Draws of log p_hat_S(x_n), p_hat_S = (1/S) sum_s p(x_n, z_s) / q(z_s), z_s ~ q: ``(repeats, N)``.

        ``q`` is any distribution over z with batch shape ``(N,)`` and event shape ``(d,)``
        (a proposal per observation; sampled with PyTorch's global generator). p_hat_S is an
        unbiased estimate of p(x_n); the mean of its log is at most log p(x_n), equals the
        ELBO of q at S = 1 and rises towards log p(x_n) as S grows (Burda et al. 2016).
        """
        x = self._check_x(x)
        if n_samples < 1 or repeats < 1:
            raise ValueError(f"n_samples and repeats must be >= 1, got {n_samples} and {repeats}")
        if tuple(q.batch_shape) != (x.shape[0],) or tuple(q.event_shape) != (self.d,):
            raise ValueError(f"q must have batch shape ({x.shape[0]},) and event shape ({self.d},), "
                             f"got {tuple(q.batch_shape)} and {tuple(q.event_shape)}")
        z = q.sample((repeats, n_samples)).to(torch.float64)  # (R, S, N, d)
        log_prior = log_normal(z, torch.zeros_like(z), torch.ones_like(z)).sum(-1)
        log_w = self.log_likelihood(x, z) + log_prior - q.log_prob(z)
        return torch.logsumexp(log_w, dim=1) - math.log(n_samples)

    def sample(self, n: int, generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Ancestral sampling: ``z (n, d) ~ N(0, I)``, then ``x (n, D) ~ N(W z + b, sigma^2 I)``."""
        z = torch.randn(n, self.d, dtype=torch.float64, generator=generator).to(self.W.device)
        noise = torch.randn(n, self.D, dtype=torch.float64, generator=generator).to(self.W.device)
        return z, z @ self.W.T + self.b + self.noise_std * noise
