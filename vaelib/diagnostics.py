"""What a trained VAE uses its latent space for (Chapter 8): rate, distortion and active units.

- rate: the average KL(q(z|x) || p(z)), the nats the code carries about x;
- distortion: the average -log p(x | z) for z ~ q(z|x), the nats the decoder still misses;
  rate + distortion = -ELBO (with beta = 1);
- active units: latent dimensions whose posterior mean varies across the data
  (Burda et al., 2016: Var_x E_q[z_j | x] > 0.01).
"""

from __future__ import annotations

import torch

from .bounds import _decode_samples, kl_per_dimension


@torch.no_grad()
def latent_statistics(model, data, batch_size: int = 500) -> dict:
    """Rate, distortion and per-dimension statistics of a VAE over ``data``.

    Returns a dict of plain numbers and CPU tensors: ``rate`` and ``distortion`` (nats per
    image, one posterior sample per image for the distortion), ``kl_per_dim`` ``(d,)``
    (nats), ``mean_variance`` ``(d,)`` (the variance over the data of each posterior mean),
    and ``active_units`` (how many of those variances exceed 0.01).
    """
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    mus, kls, distortion, n = [], [], 0.0, 0
    try:
        data = data.to(device)
        for batch in data.batches(batch_size):
            x = batch[0]
            q = model.encode(x)
            z = q.sample((1,))
            distortion -= model.log_likelihood(x, _decode_samples(model, z)).sum().item()
            mus.append(q.mu.double().cpu())
            kls.append(kl_per_dimension(q).double().cpu())
            n += len(x)
    finally:
        model.train(was_training)
    mu, kl = torch.cat(mus), torch.cat(kls)
    variance = mu.var(0)
    return {"rate": kl.sum(1).mean().item(), "distortion": distortion / n, "kl_per_dim": kl.mean(0),
            "mean_variance": variance, "active_units": active_units(variance)}


def active_units(mean_variance: torch.Tensor, threshold: float = 0.01) -> int:
    """How many latent dimensions have Var_x E_q[z_j | x] above ``threshold`` (Burda et al., 2016)."""
    return int((mean_variance > threshold).sum())
