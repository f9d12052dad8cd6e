"""Figures and tables the chapters share: image grids, training curves, result tables.

matplotlib is imported inside the functions that draw, so `import vaelib` (and the `vaelib`
command, which draws nothing) does not pay its half-second import.
"""

from __future__ import annotations

import base64
import io
import math
from typing import Iterable, Sequence

import torch

# The book's figures: the sizes of text, in points, at which every figure of the course is drawn.
# A figure at most FIGURE_MAX_WIDTH inches wide then shows its smallest text (10 pt) at 9 px or
# more in the book's 672-px column at a 1280-px window, and at 6 px or more on a 390-px phone.
BOOK_STYLE = {
    "font.size": 11,
    "axes.titlesize": 12,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "legend.title_fontsize": 10,
    "figure.titlesize": 12,
    "figure.figsize": (6.4, 3.8),
}
FIGURE_MAX_WIDTH = 7.8  # inches
TEXT_SIZE_KEY = "vaelib-smallest-text-px"  # the PNG text field that carries smallest_text_px


def smallest_text_px(fig: Figure, dpi: float | None = None) -> float | None:
    """The font size of the smallest text drawn in ``fig``, in pixels at ``dpi`` (default: the
    figure's own), or None when the figure draws no text.

    Sizes are em sizes (points * dpi / 72): what "10 px text" means in a web page. Only text
    that a draw of the figure renders counts: not hidden, empty or switched-off (``ax.axis("off")``)
    labels, nor tick labels outside the axes' limits.
    """
    from matplotlib.text import Text

    sizes: list[float] = []
    draw = Text.draw

    def record(text: Text, renderer) -> None:
        if text.get_visible() and text.get_text().strip():
            sizes.append(text.get_fontsize())
        draw(text, renderer)

    Text.draw = record  # every text is drawn through Text.draw (labels, legends, annotations)
    try:
        fig.draw_without_rendering()
    finally:
        Text.draw = draw
    dpi = fig.dpi if dpi is None else dpi
    return min(sizes) * dpi / 72 if sizes else None


def book_png(fig: Figure) -> tuple[str, dict] | None:
    """``fig`` as the book shows it: a pixel-doubled PNG (sharp on HiDPI screens), trimmed to its
    content, base64-encoded, with its display size ``{"width", "height"}`` in CSS pixels.

    The PNG carries the size of its smallest text in image pixels (the text field
    ``TEXT_SIZE_KEY``, ``"none"`` without text), which the book's browser check scales to the
    width the image is shown at. Returns None for a figure with nothing drawn (as IPython does).
    """
    if not fig.axes and not fig.get_children()[1:]:
        return None
    dpi = 2 * fig.dpi
    px = smallest_text_px(fig, dpi)
    buffer = io.BytesIO()
    fig.canvas.print_figure(buffer, format="png", dpi=dpi, bbox_inches="tight",
                            facecolor=fig.get_facecolor(), edgecolor=fig.get_edgecolor(),
                            metadata={TEXT_SIZE_KEY: "none" if px is None else f"{px:.2f}"})
    data = buffer.getvalue()
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    return base64.b64encode(data).decode("ascii"), {"width": width // 2, "height": height // 2}


def use_book_style() -> None:
    """Draw figures as the book does: its font sizes (``BOOK_STYLE``) and, in Jupyter or Colab,
    every figure shown through ``book_png``. Every chapter's set-up cell calls it once."""
    import matplotlib.pyplot as plt
    from matplotlib.figure import Figure

    plt.rcParams.update(BOOK_STYLE)
    try:
        from IPython import get_ipython
    except ImportError:  # a plain Python script: the sizes are all there is
        return
    shell = get_ipython()
    if shell is None or not hasattr(shell, "display_formatter"):
        return
    # Load the inline backend now: on loading (matplotlib resolves it at the first figure) it
    # installs its own figure formatters, which would replace ours.
    plt.switch_backend(plt.get_backend())
    formatters = shell.display_formatter.formatters
    for kind in ("image/svg+xml", "image/jpeg", "application/pdf"):
        formatters[kind].pop(Figure, None)  # one image per figure: ours
    formatters["image/png"].for_type(Figure, book_png)


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
    import matplotlib.pyplot as plt

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


def plot_codes(
    codes: torch.Tensor,
    labels: torch.Tensor,
    *,
    title: str,
    ax: plt.Axes | None = None,
    circles: Sequence[float] = (),
    colorbar: bool = True,
    size: float = 3,
):
    """Scatter 2-D codes ``(N, 2)`` coloured by their digit ``labels`` ``(N,)``, on equal axes z_1, z_2.

    ``circles``: radii of dashed black circles about the origin (the prior's standard-deviation
    contours), each labelled with its radius in σ. With ``colorbar``, a digit colour bar is drawn beside ``ax``. Returns the
    scatter (a matplotlib ``PathCollection``), for a colour bar shared by several axes.
    """
    import matplotlib.pyplot as plt

    codes, labels = torch.as_tensor(codes).detach().cpu(), torch.as_tensor(labels).detach().cpu()
    if codes.dim() != 2 or codes.shape[1] != 2 or labels.shape != codes.shape[:1]:
        raise ValueError(f"codes must be (N, 2) and labels (N,), got {tuple(codes.shape)} and {tuple(labels.shape)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 5.4))
    scatter = ax.scatter(codes[:, 0], codes[:, 1], c=labels, cmap="tab10", s=size, vmin=-0.5, vmax=9.5)
    for r in circles:  # drawn over the points, labelled, so a small circle on wide axes still shows
        ax.add_patch(plt.Circle((0, 0), r, fill=False, ls="--", lw=1.5, color="black", zorder=3))
        ax.annotate(f"{r:g}σ", (r * 0.7071, r * 0.7071), xytext=(3, 3), textcoords="offset points",
                    fontsize=10, zorder=3, bbox={"boxstyle": "round,pad=0.1", "fc": "white", "ec": "none", "alpha": 0.8})
    if colorbar:
        ax.figure.colorbar(scatter, ax=ax, ticks=range(10), label="digit")
    ax.set(title=title, xlabel="$z_1$", ylabel="$z_2$", aspect="equal")
    return scatter


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
    import matplotlib.pyplot as plt

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


class Table:
    """A table of results that shows as a table wherever a chapter is read.

    Jupyter, Colab and the HTML book render it from Markdown (``_repr_markdown_``);
    a terminal or a doctest gets aligned plain text (``repr``). Cells are shown as
    given: format numbers before passing them, so the printed digits are the ones
    a test compares.

    Args:
        header: the column names.
        rows: one sequence of cells per row, each as long as ``header``.
        align: one letter per column, ``"l"`` or ``"r"``; default: the first column
            left, the others right (labels, then numbers).
    """

    def __init__(self, header: Sequence[str], rows: Iterable[Sequence], *, align: str | None = None):
        self.header = [str(h) for h in header]
        self.rows = [[str(c) for c in row] for row in rows]
        width = len(self.header)
        if width == 0:
            raise ValueError("a Table needs at least one column")
        for i, row in enumerate(self.rows):
            if len(row) != width:
                raise ValueError(f"row {i} has {len(row)} cells but the header has {width}: {row}")
        self.align = align if align is not None else "l" + "r" * (width - 1)
        if len(self.align) != width or set(self.align) - {"l", "r"}:
            raise ValueError(f"align must be one 'l' or 'r' per column ({width}), got {self.align!r}")

    def _repr_markdown_(self) -> str:
        def cells(row):
            return "| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"

        rule = "|" + "|".join("---:" if a == "r" else ":---" for a in self.align) + "|"
        return "\n".join([cells(self.header), rule] + [cells(r) for r in self.rows]) + "\n"

    def __repr__(self) -> str:
        columns = list(zip(self.header, *self.rows))
        widths = [max(len(c) for c in col) for col in columns]

        def line(row):
            return "  ".join(c.rjust(w) if a == "r" else c.ljust(w)
                             for c, w, a in zip(row, widths, self.align)).rstrip()

        rule = "  ".join("-" * w for w in widths)
        return "\n".join([line(self.header), rule] + [line(r) for r in self.rows])
