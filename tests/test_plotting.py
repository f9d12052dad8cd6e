import matplotlib.pyplot as plt
import pytest
import torch

import vaelib


def test_image_grid_places_each_image():
    images = torch.stack([torch.full((1, 4, 4), v) for v in (0.0, 0.25, 0.75, 1.0, 0.5)])
    grid = vaelib.image_grid(images, nrow=3, pad=1)
    assert grid.shape == (2 * 5 + 1, 3 * 5 + 1)
    assert grid[1, 1] == 0.0 and grid[1, 6] == 0.25 and grid[1, 11] == 0.75
    assert grid[6, 1] == 1.0 and grid[6, 6] == 0.5
    assert grid[0, 0] == 0.5 and grid[6, 11] == 0.5  # padding and the empty slot are grey


def test_image_grid_accepts_flat_and_3d_images():
    flat = torch.rand(6, 784)
    assert torch.equal(vaelib.image_grid(flat), vaelib.image_grid(flat.view(6, 1, 28, 28)))
    assert torch.equal(vaelib.image_grid(flat.view(6, 28, 28)), vaelib.image_grid(flat.view(6, 1, 28, 28)))


@pytest.mark.parametrize("shape, message", [((4, 10), "square number"), ((2, 3, 28, 28), "one-channel"),
                                            ((28,), "must be"), ((0, 28, 28), "no images")])
def test_image_grid_rejects_bad_shapes(shape, message):
    with pytest.raises(ValueError, match=message):
        vaelib.image_grid(torch.zeros(shape))


def test_show_images_titles_the_figure():
    ax = vaelib.show_images(torch.rand(4, 1, 28, 28), title="four digits", xlabel="random")
    assert ax.get_title() == "four digits" and ax.get_xlabel() == "random"
    plt.close("all")


def test_plot_history_labels_axes_and_curves():
    history = {"epoch": [1, 2, 3], "loss": [3.0, 2.0, 1.5], "val_loss": [3.1, 2.2, 1.9], "seconds": [1, 1, 1]}
    ax = vaelib.plot_history(history, title="curves")
    assert ax.get_xlabel() == "epoch" and ax.get_ylabel() == "loss" and ax.get_title() == "curves"
    assert [line.get_label() for line in ax.get_lines()] == ["loss", "val_loss"]
    assert list(ax.get_lines()[1].get_ydata()) == [3.1, 2.2, 1.9]
    with pytest.raises(KeyError, match="history has no"):
        vaelib.plot_history(history, keys=["kl"])
    with pytest.raises(ValueError, match="no epochs"):
        vaelib.plot_history({})
    plt.close("all")


def test_table_renders_as_a_markdown_table_with_its_cells():
    from markdown_it import MarkdownIt

    table = vaelib.Table(["model", "NLL (nats)", "note"], [["VAE", "92.70", "a|b"], ["AE", "-", ""]])
    html = MarkdownIt("commonmark").enable("table").render(table._repr_markdown_())
    assert html.count("<tr>") == 3 and html.count("<th ") == 3 and html.count("<td ") == 6
    assert '<td style="text-align:right">92.70</td>' in html and "<td style=\"text-align:right\">a|b</td>" in html
    assert '<th style="text-align:left">model</th>' in html


def test_table_as_text_aligns_columns():
    text = repr(vaelib.Table(["beta", "rate"], [["0.25", "21.6"], ["8", "3.4"]]))
    assert text.splitlines() == ["beta  rate", "----  ----", "0.25  21.6", "8      3.4"]


def test_table_rejects_ragged_rows_and_bad_alignment():
    with pytest.raises(ValueError, match="row 1 has 1 cells but the header has 2"):
        vaelib.Table(["a", "b"], [["1", "2"], ["3"]])
    with pytest.raises(ValueError, match="one 'l' or 'r' per column"):
        vaelib.Table(["a", "b"], [], align="lc")


def test_version_comes_from_the_package_metadata():
    import importlib.metadata
    import tomllib
    from pathlib import Path

    pyproject = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())
    assert vaelib.__version__ == importlib.metadata.version("vaelib") == pyproject["project"]["version"]


def test_plot_codes_draws_labelled_codes():
    codes, labels = torch.randn(50, 2), torch.arange(50) % 10
    fig, ax = plt.subplots()
    scatter = vaelib.plot_codes(codes, labels, ax=ax, title="codes", circles=(1, 2))
    assert torch.allclose(torch.as_tensor(scatter.get_offsets().data).float(), codes)
    assert ax.get_title() == "codes" and ax.get_xlabel() == "$z_1$" and ax.get_ylabel() == "$z_2$"
    assert len(ax.patches) == 2 and len(fig.axes) == 2  # two circles; the colour bar's axes
    assert [t.get_text() for t in ax.texts] == ["1σ", "2σ"]  # each circle says its radius
    assert all(p.get_zorder() > scatter.get_zorder() for p in ax.patches)  # drawn over the points
    plt.close(fig)
    with pytest.raises(ValueError, match=r"codes must be \(N, 2\)"):
        vaelib.plot_codes(torch.randn(5, 3), torch.zeros(5), title="x")


def _png_text(data: bytes) -> dict:
    import io

    from PIL import Image

    with Image.open(io.BytesIO(data)) as image:
        return dict(image.text), image.size


def test_smallest_text_px_is_the_smallest_drawn_font_in_pixels():
    fig, (left, right) = plt.subplots(1, 2, dpi=100)
    left.plot([0, 1], [0, 1], label="a line")
    left.set_title("title", fontsize=14)
    left.legend(fontsize=9)
    left.tick_params(labelsize=12)
    right.tick_params(labelsize=12)
    right.text(0.5, 0.5, "", fontsize=2)  # empty: not text a reader sees
    right.text(0.5, 0.5, "hidden", fontsize=3, visible=False)
    assert vaelib.smallest_text_px(fig) == pytest.approx(9 * 100 / 72)
    assert vaelib.smallest_text_px(fig, dpi=200) == pytest.approx(9 * 200 / 72)
    left.get_legend().remove()
    right.tick_params(labelsize=6)
    right.axis("off")  # its tick labels are no longer drawn
    assert vaelib.smallest_text_px(fig) == pytest.approx(12 * 100 / 72)
    plt.close(fig)
    blank, ax = plt.subplots()
    ax.axis("off")
    assert vaelib.smallest_text_px(blank) is None
    plt.close(blank)


def test_book_png_is_a_retina_png_that_carries_its_smallest_text():
    import base64

    from vaelib.plotting import TEXT_SIZE_KEY, book_png

    fig, ax = plt.subplots(figsize=(4, 3), dpi=100)
    ax.plot([0, 1], [0, 1])
    ax.set_title("t", fontsize=15)
    ax.tick_params(labelsize=7)
    data, shown = book_png(fig)
    text, (width, height) = _png_text(base64.b64decode(data))
    assert float(text[TEXT_SIZE_KEY]) == pytest.approx(7 * 200 / 72, abs=0.01)  # in the PNG's pixels
    assert shown == {"width": width // 2, "height": height // 2}
    assert 300 < width <= 2 * 400 + 40  # pixel-doubled, trimmed to its content
    plt.close(fig)


def test_use_book_style_sets_the_sizes_and_the_png_of_every_figure_in_ipython():
    import base64

    import matplotlib
    from IPython.core.interactiveshell import InteractiveShell

    from vaelib.plotting import BOOK_STYLE, TEXT_SIZE_KEY

    shell = InteractiveShell.instance()
    try:
        with matplotlib.rc_context():
            vaelib.use_book_style()
            assert plt.rcParams["legend.fontsize"] == BOOK_STYLE["legend.fontsize"] == 10
            fig, ax = plt.subplots()
            ax.set_title("a figure")
            data, metadata = shell.display_formatter.format(fig)
            plt.close(fig)
    finally:
        InteractiveShell.clear_instance()
    assert set(data) == {"text/plain", "image/png"}
    text, _ = _png_text(base64.b64decode(data["image/png"]))
    assert float(text[TEXT_SIZE_KEY]) == pytest.approx(10 * 2 * fig.dpi / 72, abs=0.01)
    assert set(metadata["image/png"]) == {"width", "height"}


def test_the_book_style_keeps_text_readable_at_the_widest_allowed_figure():
    from vaelib.plotting import BOOK_STYLE, FIGURE_MAX_WIDTH

    smallest = min(v for k, v in BOOK_STYLE.items() if k != "figure.figsize")  # points
    for column, least in ((672, 9), (342, 6)):  # a 1280-px window's text column, a phone's
        # a figure FIGURE_MAX_WIDTH inches wide at 100 dpi, narrowed to the column if wider
        shown = smallest * 100 / 72 * min(1, column / (FIGURE_MAX_WIDTH * 100))
        assert shown >= least, (column, shown)


def test_a_notebook_after_the_set_up_shows_figures_through_book_png(tmp_path, monkeypatch):
    """In a real kernel the inline backend installs its own formatters when matplotlib loads it,
    at the first figure; use_book_style must still decide how figures are shown."""
    import base64

    import nbformat
    from nbclient import NotebookClient

    from vaelib.plotting import TEXT_SIZE_KEY

    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("import vaelib\nvaelib.use_book_style()"),
        nbformat.v4.new_code_cell("import matplotlib.pyplot as plt\nfig, ax = plt.subplots()\n"
                                  "ax.legend(handles=ax.plot([0, 1], label='a'), fontsize=8)\nplt.show()"),
    ])
    monkeypatch.delenv("MPLBACKEND", raising=False)  # the kernel's own backend, as in Jupyter
    NotebookClient(nb, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    (output,) = [o for o in nb.cells[1].outputs if "image/png" in o.get("data", {})]
    text, (width, _) = _png_text(base64.b64decode(output["data"]["image/png"]))
    assert float(text[TEXT_SIZE_KEY]) == pytest.approx(8 * 200 / 72, abs=0.01)  # the legend, retina
    assert output["metadata"]["image/png"]["width"] == width // 2


def test_importing_vaelib_loads_neither_matplotlib_nor_torchvision():
    """The `vaelib` command's start-up: torch is all it must import (benchmarks/throughput.py
    --whole-process measures the rest)."""
    import subprocess
    import sys

    code = "import sys, vaelib; print(sorted(m for m in ('matplotlib', 'torchvision') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
