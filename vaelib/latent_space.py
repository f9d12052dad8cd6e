"""The code space of a trained model: walking it (straight lines, grids) and measuring what it
is used for (Chapters 5 to 8).

- `interpolate`: evenly spaced points on straight lines between codes;
- `latent_grid`: a square grid of 2-D codes, laid out as an image grid is read;
- `latent_statistics`: rate, distortion and per-dimension statistics of a VAE:
  rate is the average KL(q(z|x) || p(z)), an upper bound on the nats the code carries about x; distortion
  is the average -log p(x | z) for z ~ q(z|x), the nats the decoder still misses;
  rate + distortion = -ELBO (with beta = 1);
- `active_units`: latent dimensions whose posterior mean varies across the data
  (Burda et al., 2016: Var_x E_q[z_j | x] > 0.01). That is a low bar: with a posterior
  variance near 1, a dimension just above it carries about 0.005 nats, so
  `latent_statistics` also counts the dimensions whose average KL exceeds 0.1 nats.

Decode any of these codes with ``model.decode_mean(z)``, which takes leading dimensions.
"""

from __future__ import annotations

import torch

from .divergences import kl_normal_per_dim
from .loop import batches, evaluation


def interpolate(z_a: torch.Tensor, z_b: torch.Tensor, steps: int = 10) -> torch.Tensor:
    """``steps`` evenly spaced codes on the straight line from each ``z_a`` to its ``z_b``, ends included.

    ``z_a``, ``z_b``: ``(P, d)`` (or ``(d,)``); returns ``(P, steps, d)`` (or ``(steps, d)``):
    the point at weight t is (1 - t) z_a + t z_b.
    """
    if z_a.shape != z_b.shape or z_a.dim() not in (1, 2):
        raise ValueError(f"z_a and z_b must be (P, d) or (d,) of one shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    if steps < 2:
        raise ValueError(f"steps must be >= 2 (the two ends), got {steps}")
    t = torch.linspace(0, 1, steps, device=z_a.device, dtype=z_a.dtype)[:, None]  # (steps, 1)
    return (1 - t) * z_a.unsqueeze(-2) + t * z_b.unsqueeze(-2)


def latent_grid(values: torch.Tensor) -> torch.Tensor:
    """The 2-D codes (z_1, z_2) for every pair of ``values`` ``(m,)``, as ``(m * m, 2)``, in
    reading order: rows run from the largest z_2 (top) to the smallest, z_1 grows left to
    right. Decoded and drawn with ``show_images(..., nrow=m)``, the picture has the plane's
    orientation."""
    if values.dim() != 1 or len(values) < 1:
        raise ValueError(f"values must be a non-empty 1-D tensor, got shape {tuple(values.shape)}")
    z1, z2 = torch.meshgrid(values, values.flip(0), indexing="xy")
    return torch.stack([z1, z2], -1).reshape(-1, 2)


def latent_statistics(model, data, batch_size: int = 500, kl_threshold: float = 0.1) -> dict:
    """Rate, distortion and per-dimension statistics of a VAE over ``data`` (on the model's device).

    Returns a dict of plain numbers and CPU tensors: ``rate`` and ``distortion`` (nats per
    image, one posterior sample per image for the distortion), ``kl_per_dim`` ``(d,)``
    (nats), ``mean_variance`` ``(d,)`` (the variance over the data of each posterior mean),
    ``active_units`` (how many of those variances exceed 0.01) and ``kl_units`` (how many
    dimensions carry more than ``kl_threshold`` nats of KL on average).
    """
    mus, kls, distortion, n = [], [], 0.0, 0
    with evaluation(model) as device:
        for x, *_ in batches(data, batch_size, device):
            q = model.encode(x)
            z = q.sample((1,))
            distortion -= model.log_likelihood(x, model.decode(z)).sum().item()
            mus.append(q.mu.double().cpu())
            kls.append(kl_normal_per_dim(q.mu, q.logvar).double().cpu())
            n += len(x)
    if n < 2:
        raise ValueError(f"latent_statistics needs at least 2 images (it measures variances over the data), got {n}")
    mu, kl = torch.cat(mus), torch.cat(kls)
    variance = mu.var(0)
    kl_per_dim = kl.mean(0)
    return {"rate": kl.sum(1).mean().item(), "distortion": distortion / n, "kl_per_dim": kl_per_dim,
            "mean_variance": variance, "active_units": active_units(variance),
            "kl_units": int((kl_per_dim > kl_threshold).sum())}


def active_units(mean_variance: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions have Var_x E_q[z_j | x] above ``threshold`` (Burda et al., 2016)."""
    return int((mean_variance > threshold).sum())
