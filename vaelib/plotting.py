"""Figures the chapters share: image grids and training curves."""

from __future__ import annotations

import math
from typing import Sequence

import matplotlib.pyplot as plt
import torch


def image_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """Tile images into one ``(H', W')`` tensor, ``nrow`` images per row, with ``pad`` pixels between.

    ``images``: ``(N, 1, H, W)``, ``(N, H, W)`` or flat ``(N, H*W)`` with square images.
    Padding is drawn at 0.5 (mid grey) so black and white digits stay distinct.
    """
    x = images.detach().to("cpu", torch.float32)
    if x.dim() == 2:
        side = math.isqrt(x.shape[1])
        if side * side != x.shape[1]:
            raise ValueError(f"flat images need a square number of pixels, got {x.shape[1]}")
        x = x.view(-1, side, side)
    elif x.dim() == 4:
        if x.shape[1] != 1:
            raise ValueError(f"image_grid shows one-channel images, got {x.shape[1]} channels")
        x = x[:, 0]
    elif x.dim() != 3:
        raise ValueError(f"images must be (N, 1, H, W), (N, H, W) or (N, H*W), got {tuple(images.shape)}")
    n, h, w = x.shape
    if n == 0:
        raise ValueError("image_grid got no images")
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    grid = torch.full((rows * (h + pad) + pad, nrow * (w + pad) + pad), 0.5)
    for i in range(n):
        r, c = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + c * (w + pad)
        grid[top : top + h, left : left + w] = x[i]
    return grid


def show_images(
    images: torch.Tensor,
    *,
    nrow: int | None = None,
    title: str,
    xlabel: str | None = None,
    ax: plt.Axes | None = None,
    figsize: tuple[float, float] | None = None,
) -> plt.Axes:
    """Draw images in [0, 1] as a grey-level grid with a title (and an optional caption line below).

    Returns the matplotlib ``Axes``.
    """
    grid = image_grid(images, nrow=nrow)
    if ax is None:
        _, ax = plt.subplots(figsize=figsize or (6, 6 * grid.shape[0] / grid.shape[1]))
    ax.imshow(grid.numpy(), cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(title)
    if xlabel:
        ax.set_xlabel(xlabel)
    return ax


def plot_history(
    history: dict,
    keys: Sequence[str] | None = None,
    *,
    title: str = "Training curves",
    ylabel: str = "loss",
    ax: plt.Axes | None = None,
    logy: bool = False,
) -> plt.Axes:
    """Plot per-epoch curves from a `fit` history (default: ``loss`` and, if present, ``val_loss``)."""
    if "epoch" not in history or not history["epoch"]:
        raise ValueError("history has no epochs to plot (was fit run with epochs >= 1?)")
    if keys is None:
        keys = [k for k in ("loss", "val_loss") if k in history]
    missing = [k for k in keys if k not in history]
    if missing:
        raise KeyError(f"history has no {missing}; it has {sorted(history)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for k in keys:
        ax.plot(history["epoch"], history[k], marker="o", ms=3, label=k)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.set_title(title)
    if logy:
        ax.set_yscale("log")
    ax.legend()
    ax.grid(alpha=0.3)
    return ax
