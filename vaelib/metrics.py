"""Numbers for comparing generative models of images (Chapter 7).

- `classifier_confidence`: how often a classifier is confident about generated images,
  and how evenly the confident ones spread over the classes.
- `nearest_code_distance`: how far points land from the codes of real data, in units of
  the typical spacing between those codes (so the measure does not depend on scale).
- `interpolation_smoothness`: how evenly a decoded straight-line path changes.
- `pixel_entropy`: how blurred mean images are (the Bernoulli entropy of their pixels).
- `bits_per_dim`: a log-density of dequantised images as bits per pixel of the 8-bit images
  (Chapter 8).
"""

from __future__ import annotations

import math
from typing import Callable

import torch
from torch import nn

from .data import check_unit_range
from .latent_space import interpolate


@torch.no_grad()
def classifier_confidence(classifier: nn.Module, images: torch.Tensor, threshold: float = 0.9) -> dict:
    """Share of ``images`` whose top class probability exceeds ``threshold``, and the spread of classes.

    Returns ``confident`` (a fraction), ``class_share`` (``(C,)`` share of the confident images
    in each class) and ``class_entropy`` (nats; log C when all classes are equally common,
    0 when one class takes everything).
    """
    if not 0 < threshold < 1:
        raise ValueError(f"threshold must lie in (0, 1), got {threshold}")
    probs = torch.softmax(classifier(images), dim=-1)
    top, label = probs.max(-1)
    sure = top > threshold
    counts = torch.bincount(label[sure], minlength=probs.shape[-1]).double()
    share = counts / counts.sum().clamp(min=1)
    entropy = -(share[share > 0] * share[share > 0].log()).sum().item()
    return {"confident": sure.double().mean().item(), "class_share": share.cpu(), "class_entropy": entropy}


def nearest_code_distance(points: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Distance from each point ``(M, d)`` to its nearest code ``(N, d)``, divided by the median
    distance between a code and its nearest other code. ``(M,)``, unit-free.
    """
    if points.dim() != 2 or codes.dim() != 2 or points.shape[1] != codes.shape[1]:
        raise ValueError(f"points and codes must be (M, d) and (N, d), got {tuple(points.shape)} and {tuple(codes.shape)}")
    if len(codes) < 2:
        raise ValueError("need at least 2 codes to measure their spacing")
    spacing = torch.cdist(codes, codes).fill_diagonal_(math.inf).min(1).values.median()
    return torch.cdist(points, codes).min(1).values / spacing


@torch.no_grad()
def interpolation_smoothness(decode: Callable[[torch.Tensor], torch.Tensor], z_a: torch.Tensor,
                             z_b: torch.Tensor, steps: int = 20) -> torch.Tensor:
    """Largest step over mean step along decoded straight lines from ``z_a`` to ``z_b``.

    ``z_a``, ``z_b``: ``(P, d)`` pairs of codes; ``decode`` maps codes ``(..., d)`` to images
    ``(..., *image_shape)`` (a model's ``decode_mean``). Each path is decoded at ``steps + 1``
    evenly spaced points (`interpolate`); a step is the Euclidean distance between consecutive
    images. Returns ``(P,)``: 1 for a path that changes evenly, large for one that jumps.
    """
    if z_a.shape != z_b.shape or z_a.dim() != 2:
        raise ValueError(f"z_a and z_b must be (P, d) of one shape, got {tuple(z_a.shape)} and {tuple(z_b.shape)}")
    path = interpolate(z_a, z_b, steps + 1)  # (P, T, d)
    images = decode(path).flatten(2)  # (P, T, pixels)
    step = (images[:, 1:] - images[:, :-1]).norm(dim=-1)  # (P, T - 1)
    return step.max(1).values / step.mean(1).clamp(min=1e-12)


def pixel_entropy(images: torch.Tensor) -> torch.Tensor:
    """Mean Bernoulli entropy per pixel of mean images ``(N, ...)`` in [0, 1], in nats: ``(N,)``.

    -[l log l + (1 - l) log(1 - l)] averaged over an image's pixels: 0 for a sharp image of
    0s and 1s, log 2 = 0.693 where every pixel is 0.5. A blurrier mean image scores higher.
    """
    if images.dim() < 2:
        raise ValueError(f"images must be (N, ...), got shape {tuple(images.shape)}")
    check_unit_range(images, "mean images for pixel_entropy")
    lam = images.flatten(1).double()
    h = -(torch.xlogy(lam, lam) + torch.xlogy(1 - lam, 1 - lam))
    return h.mean(1).to(images.dtype)


def bits_per_dim(log_density: torch.Tensor | float, n_dims: int = 784, levels: int = 256) -> torch.Tensor | float:
    """Bits per pixel of quantised images from a log-density (nats) of their dequantised versions.

    For images of ``n_dims`` pixels with ``levels`` grey levels, dequantised to [0, 1]^D
    (`vaelib.dequantize`: each level's bin has width 1 / levels), a model density p gives the
    discrete image the probability of its bin, P >= exp(log p - D log levels) on average over
    the noise (Jensen), so ``(D log(levels) - log_density) / (D log 2)`` bounds -log2 P / D
    from above. A uniform density (log_density = 0) gives log2(levels) = 8 bits. Pass an ELBO
    for ``log_density`` and the result is still an upper bound.
    """
    if n_dims < 1 or levels < 2:
        raise ValueError(f"n_dims must be >= 1 and levels >= 2, got {n_dims} and {levels}")
    return (n_dims * math.log(levels) - log_density) / (n_dims * math.log(2))
