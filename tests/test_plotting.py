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
