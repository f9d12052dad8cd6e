"""Training progress is one line per run: in place in a notebook (never stderr), redrawn in a
terminal, one line per epoch in a log."""

import nbformat
import pytest
import torch
from torch import nn

import vaelib
from vaelib import InMemoryData, progress


def tiny_fit(epochs=3, **kwargs):
    x = torch.randn(40, 3)
    data = InMemoryData(x, x.sum(1, keepdim=True))
    return vaelib.fit(nn.Linear(3, 1), lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), data,
                      epochs=epochs, batch_size=8, device="cpu", **kwargs)


class FakeTerminal:
    def __init__(self):
        self.written = []

    def isatty(self):
        return True

    def write(self, s):
        self.written.append(s)

    def flush(self):
        pass


def test_in_a_log_one_line_per_epoch_on_stderr(capsys):
    tiny_fit(epochs=3)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert all("5/5 batches" in line and "loss=" in line for line in lines)
    assert "3 epochs in" in lines[-1]
    tiny_fit(epochs=1, progress=False)
    assert capsys.readouterr() == ("", "")


def test_in_a_log_a_long_task_shows_a_line_every_log_interval(capsys, monkeypatch):
    clock = [1000.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    line = progress.ProgressLine(log_interval=30)
    for step in range(1, 101):  # an evaluation of 100 batches, 1 s each
        clock[0] += 1
        line.show(f"bounds: {step}/100 batches")
    line.close()
    assert capsys.readouterr().err.splitlines() == [f"bounds: {s}/100 batches" for s in (30, 60, 90)]


def test_in_a_terminal_one_line_redrawn_in_place(monkeypatch):
    term = FakeTerminal()
    monkeypatch.setattr("sys.stderr", term)
    line = progress.ProgressLine(min_interval=0.0)
    assert line.mode == "terminal"
    for i in range(5):
        line.show(f"step {i}")
    line.epoch_done("epoch 1/1 done")
    line.close()
    line.close()  # a second close adds nothing
    text = "".join(term.written)
    assert text.count("\n") == 1 and text.endswith("epoch 1/1 done\x1b[K\n")
    assert text.count("\r") == 6


def test_in_a_notebook_one_display_updated_in_place(monkeypatch):
    shown = []

    class Handle:
        def update(self, obj):
            shown.append(("update", obj.data))

    def display(obj, display_id=False):
        assert display_id is True
        shown.append(("display", obj.data))
        return Handle()

    import IPython.display

    monkeypatch.setattr(progress, "in_kernel", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    tiny_fit(epochs=3)
    assert [kind for kind, _ in shown].count("display") == 1
    assert shown[0][0] == "display"
    assert shown[-1][1].startswith("epoch 3/3: 5/5 batches") and "3 epochs in" in shown[-1][1]


def test_a_failed_run_still_ends_its_line(monkeypatch):
    term = FakeTerminal()
    monkeypatch.setattr("sys.stderr", term)
    x = torch.randn(8, 3)
    with pytest.raises(vaelib.NonFiniteLossError):
        vaelib.fit(nn.Linear(3, 1), lambda m, b: m(b[0]).sum() * float("nan"), InMemoryData(x),
                   epochs=1, device="cpu")
    assert "".join(term.written).count("\n") <= 1


def test_a_real_kernel_stores_one_plain_output_and_no_stderr():
    """Executed by a Jupyter kernel as the chapters are: the cell keeps one text/plain display
    (its final state), nothing on stderr, so neither the notebook nor the HTML book shows a box
    per epoch."""
    from nbclient import NotebookClient

    code = (
        "import torch, vaelib\n"
        "x = torch.randn(40, 3)\n"
        "data = vaelib.InMemoryData(x, x.sum(1, keepdim=True))\n"
        "h = vaelib.fit(torch.nn.Linear(3, 1), lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), data,\n"
        "               epochs=4, batch_size=8, device='cpu')"
    )
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(code)])
    NotebookClient(nb, timeout=120, kernel_name="python3").execute()
    outputs = nb.cells[0].outputs
    assert [o.output_type for o in outputs] == ["display_data"], outputs
    text = outputs[0].data["text/plain"]
    assert text.startswith("epoch 4/4: 5/5 batches") and "4 epochs in" in text and "\n" not in text
