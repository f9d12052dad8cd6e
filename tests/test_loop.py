import copy
import math
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
from torch import nn

import vaelib
from vaelib import InMemoryData, LinearAnnealing, NonFiniteLossError
from vaelib.checkpoint import CheckpointInUseError


def regression_data(n=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=g)
    w = torch.tensor([[1.5], [-2.0], [0.5]])
    y = x @ w + 0.1 * torch.randn(n, 1, generator=g)
    return InMemoryData(x, y), w


def mse(model, batch):
    x, y = batch
    return ((model(x) - y) ** 2).mean()


def test_fit_learns_and_records_history():
    vaelib.seed_everything(0)
    train, w = regression_data()
    val, _ = regression_data(64, seed=1)
    model = nn.Linear(3, 1)
    history = vaelib.fit(
        model, mse, train, val=val, epochs=30, batch_size=32, device="cpu", progress=False,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.05),
    )
    assert history["epoch"] == list(range(1, 31))
    assert set(history) == {"epoch", "loss", "val_loss", "seconds"}
    assert all(len(v) == 30 for v in history.values())
    assert history["loss"][-1] < 0.02 < history["loss"][0]  # noise variance is 0.01
    assert history["val_loss"][-1] < 0.02
    assert torch.allclose(model.weight.detach().T, w, atol=0.05)


def test_fit_logs_extra_metrics_and_accepts_a_dataloader():
    train, _ = regression_data(100)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(train.x, train.y), batch_size=25)

    def loss_fn(model, batch):
        x, y = batch
        err = model(x) - y
        return {"loss": (err**2).mean(), "mae": err.abs().mean()}

    history = vaelib.fit(nn.Linear(3, 1), loss_fn, loader, epochs=2, device="cpu", progress=False)
    assert len(history["mae"]) == 2 and history["mae"][0] > 0


def test_evaluate_weights_batches_by_size():
    data = InMemoryData(torch.arange(10.0).view(10, 1))
    model = nn.Linear(1, 1)
    out = vaelib.evaluate(model, lambda m, b: b[0].mean(), data, batch_size=3)
    assert out == {"loss": pytest.approx(4.5)}  # batches 3, 3, 3, 1: a plain mean of means would be 5.25
    assert model.training, "evaluate restores train mode"


def test_fit_uses_get_device_by_default(monkeypatch):
    calls = []
    monkeypatch.setattr(vaelib.loop, "get_device", lambda: calls.append(1) or torch.device("cpu"))
    train, _ = regression_data(32)
    vaelib.fit(nn.Linear(3, 1), mse, train, epochs=1, progress=False)
    assert calls == [1]


class NoisyNet(nn.Module):
    """Dropout draws random numbers every step, so an inexact resume would show."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Dropout(0.3), nn.ReLU(), nn.Linear(16, 4))

    def forward(self, x):
        return self.net(x)


def noisy_loss(model, batch):
    (x,) = batch
    return nn.functional.binary_cross_entropy_with_logits(model(x), x)


def test_resume_equals_an_uninterrupted_run(tmp_path):
    # dynamic binarisation and dropout both use the random generator
    def run(epochs, checkpoint):
        vaelib.seed_everything(7)
        model = NoisyNet()
        data = InMemoryData(torch.rand(50, 4, generator=torch.Generator().manual_seed(3)), binarize="dynamic")
        history = vaelib.fit(model, noisy_loss, data, val=data, epochs=epochs, batch_size=8,
                             device="cpu", checkpoint=checkpoint, progress=False)
        return model, history

    straight, h_straight = run(4, None)
    run(2, tmp_path / "ckpt.pt")
    resumed, h_resumed = run(4, tmp_path / "ckpt.pt")
    for a, b in zip(straight.parameters(), resumed.parameters()):
        assert torch.equal(a, b)
    assert h_resumed["epoch"] == [1, 2, 3, 4]
    assert h_resumed["loss"] == h_straight["loss"] and h_resumed["val_loss"] == h_straight["val_loss"]
    # asking for fewer epochs than the checkpoint holds trains nothing, and says so
    with pytest.warns(UserWarning, match="holds 4 epochs, more than the 3 asked for"):
        again, h_again = run(3, tmp_path / "ckpt.pt")
    assert h_again["epoch"] == [1, 2, 3, 4]
    assert all(torch.equal(a, b) for a, b in zip(again.parameters(), straight.parameters()))


def test_resume_false_starts_afresh(tmp_path):
    train, _ = regression_data(32)
    path = tmp_path / "c.pt"
    vaelib.fit(nn.Linear(3, 1), mse, train, epochs=2, device="cpu", checkpoint=path, progress=False)
    h = vaelib.fit(nn.Linear(3, 1), mse, train, epochs=1, device="cpu", checkpoint=path, resume=False, progress=False)
    assert h["epoch"] == [1]


def test_checkpoint_for_another_model_is_refused(tmp_path):
    train, _ = regression_data(32)
    path = tmp_path / "c.pt"
    vaelib.fit(nn.Linear(3, 1), mse, train, epochs=1, device="cpu", checkpoint=path, progress=False)
    other = nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))
    with pytest.raises(ValueError, match="does not match this model"):
        vaelib.fit(other, mse, train, epochs=2, device="cpu", checkpoint=path, progress=False)
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(1)}, junk)
    with pytest.raises(ValueError, match="not a vaelib.fit checkpoint"):
        vaelib.fit(nn.Linear(3, 1), mse, train, epochs=1, device="cpu", checkpoint=junk, progress=False)


def test_a_checkpoint_of_another_configuration_is_refused(tmp_path):
    train, _ = regression_data(32)
    path = tmp_path / "c.pt"
    run = dict(epochs=1, device="cpu", checkpoint=path, progress=False)
    vaelib.fit(nn.Linear(3, 1), mse, train, config={"loss": "mse", "lr": 0.1}, **run)
    h = vaelib.fit(nn.Linear(3, 1), mse, train, config={"loss": "mse", "lr": 0.1}, **{**run, "epochs": 2})
    assert h["epoch"] == [1, 2]  # the same configuration resumes
    with pytest.raises(ValueError, match=r"another configuration \(lr: 0\.1 there, 0\.2 here\)"):
        vaelib.fit(nn.Linear(3, 1), mse, train, config={"loss": "mse", "lr": 0.2}, **{**run, "epochs": 3})


def test_checkpoints_are_written_atomically(tmp_path, monkeypatch):
    # a save that dies half-way leaves the previous checkpoint whole and no temporary file behind
    train, _ = regression_data(32)
    path = tmp_path / "c.pt"
    vaelib.fit(nn.Linear(3, 1), mse, train, epochs=1, device="cpu", checkpoint=path, progress=False)
    good = path.read_bytes()
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        with open(f, "wb") as half:
            half.write(b"half a checkpoint")
        raise RuntimeError("disk full")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(RuntimeError, match="disk full"):
        vaelib.fit(nn.Linear(3, 1), mse, train, epochs=2, device="cpu", checkpoint=path, progress=False)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]


def test_ctrl_c_during_a_save_takes_effect_once_the_checkpoint_is_whole(tmp_path, monkeypatch):
    # Ctrl-C in the middle of torch.save once tore the zip writer (a C++ abort); now it waits for the save
    train, _ = regression_data(32)
    path = tmp_path / "c.pt"
    real_save = torch.save

    def interrupted_save(obj, f, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # arrives mid-save
        time.sleep(0.01)
        real_save(obj, f, *args, **kwargs)

    monkeypatch.setattr(torch, "save", interrupted_save)
    # Ctrl-C as in an interactive session, whatever started pytest (a background job starts with SIGINT ignored)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            vaelib.fit(nn.Linear(3, 1), mse, train, epochs=3, device="cpu", checkpoint=path, progress=False)
        monkeypatch.setattr(torch, "save", real_save)
        assert sorted(p.name for p in tmp_path.iterdir()) == ["c.pt"]  # no lock, no temporary file
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        h = vaelib.fit(nn.Linear(3, 1), mse, train, epochs=3, device="cpu", checkpoint=path, progress=False)
        assert h["epoch"] == [1, 2, 3]  # epoch 1 was saved whole before the interrupt took effect
    finally:
        signal.signal(signal.SIGINT, previous)


def test_batches_move_any_data_to_the_device_in_order():
    x = torch.arange(10.0).view(10, 1)
    memory = list(vaelib.loop.batches(InMemoryData(x, torch.arange(10)), 4, "cpu"))
    loader = list(vaelib.loop.batches(torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x), batch_size=4),
                                      4, "cpu"))
    assert [len(b[0]) for b in memory] == [len(b[0]) for b in loader] == [4, 4, 2]
    assert torch.equal(torch.cat([b[0] for b in memory]), x) and torch.equal(torch.cat([b[0] for b in loader]), x)
    assert all(b[0].device.type == "cpu" for b in memory)


@pytest.mark.parametrize("make_optimizer", [vaelib.loop.adam, lambda p: torch.optim.SGD(p, lr=0.1)],
                         ids=["fused-adam-deferred-check", "sgd-checked-every-step"])
def test_non_finite_loss_stops_and_keeps_last_good_weights(tmp_path, make_optimizer, monkeypatch):
    monkeypatch.setattr(vaelib.loop, "_DEFER_ON_CPU", True)  # fused Adam: the accelerator's deferred check
    train, _ = regression_data(64)  # 4 batches of 16 per epoch
    model = nn.Linear(3, 1)
    optimizer = make_optimizer(model.parameters())
    calls = {"n": 0}
    snapshot = {}

    def loss_fn(model, batch):
        calls["n"] += 1
        if calls["n"] == 7:  # epoch 2, step 3
            snapshot["state"] = copy.deepcopy(model.state_dict())
            return mse(model, batch) * float("nan")
        return mse(model, batch)

    with pytest.raises(NonFiniteLossError) as info:
        vaelib.fit(model, loss_fn, train, epochs=3, batch_size=16, device="cpu", optimizer=optimizer,
                   checkpoint=tmp_path / "c.pt", progress=False)
    err = info.value
    assert not hasattr(optimizer, "found_inf")  # the skip flag is not left on the caller's optimizer
    if isinstance(optimizer, torch.optim.Adam):  # steps 3 and 4 of epoch 2 were skipped, not counted
        assert all(int(st["step"]) == 6 for st in optimizer.state.values())
    assert (err.epoch, err.step) == (2, 3)
    assert "epoch 2, step 3" in str(err) and "nan" in str(err) and "last good" in str(err)
    assert err.history["epoch"] == [1]
    for k, v in model.state_dict().items():
        assert torch.equal(v, snapshot["state"][k]) and torch.isfinite(v).all()
    assert torch.load(tmp_path / "c.pt", weights_only=True)["epoch"] == 1


def test_fused_optimizer_reads_back_once_per_epoch_not_per_step(monkeypatch):
    """No host synchronisation per step on an accelerator: with the default (fused) Adam and no
    progress line, the loss and the guard's values are read back once per epoch."""
    train, _ = regression_data(64)  # 4 steps per epoch
    reads = {"n": 0}
    tolist = torch.Tensor.tolist

    def counting_tolist(self):
        reads["n"] += 1
        return tolist(self)

    monkeypatch.setattr(torch.Tensor, "tolist", counting_tolist)
    monkeypatch.setattr(vaelib.loop, "_DEFER_ON_CPU", True)  # the accelerator's path, run on the CPU
    history = vaelib.fit(nn.Linear(3, 1), mse, train, epochs=3, batch_size=16, device="cpu", progress=False)
    assert reads["n"] == 3 and len(history["loss"]) == 3
    reads["n"] = 0
    model = nn.Linear(3, 1)
    vaelib.fit(model, mse, train, epochs=3, batch_size=16, device="cpu", progress=False,
               optimizer=torch.optim.SGD(model.parameters(), lr=0.1))
    assert reads["n"] == 12  # an optimizer without found_inf is checked before every step


def test_non_finite_gradient_is_caught_too():
    train, _ = regression_data(16)
    model = nn.Linear(3, 1)
    before = copy.deepcopy(model.state_dict())

    def loss_fn(model, batch):
        # sqrt at 0: the value is finite (0) but its gradient is infinite
        return torch.sqrt((model.weight - model.weight.detach()).sum() ** 2 * 0)

    with pytest.raises(NonFiniteLossError, match="gradient norm became"):
        vaelib.fit(model, loss_fn, train, epochs=1, device="cpu", progress=False)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_bad_loss_and_arguments_are_explained():
    train, _ = regression_data(16)
    with pytest.raises(ValueError, match="scalar tensors"):
        vaelib.fit(nn.Linear(3, 1), lambda m, b: m(b[0]) - b[1], train, epochs=1, device="cpu", progress=False)
    with pytest.raises(KeyError, match="without a 'loss' entry"):
        vaelib.fit(nn.Linear(3, 1), lambda m, b: {"mse": mse(m, b)}, train, epochs=1, device="cpu", progress=False)
    with pytest.raises(ValueError, match="epochs must be a non-negative int"):
        vaelib.fit(nn.Linear(3, 1), mse, train, epochs=-1, device="cpu")
    with pytest.raises(ValueError, match="training data is empty"):
        vaelib.fit(nn.Linear(3, 1), mse, InMemoryData(torch.zeros(0, 3), torch.zeros(0, 1)), epochs=1,
                   device="cpu", progress=False)


def test_linear_annealing_values():
    a = LinearAnnealing(steps=10, start=0.0, end=1.0)
    assert [a.at(s) for s in (0, 5, 10, 50)] == [0.0, 0.5, 1.0, 1.0]
    a(3)
    assert a.value == pytest.approx(0.3)
    assert LinearAnnealing(4, start=2.0, end=0.0).at(1) == 1.5
    with pytest.raises(ValueError, match="steps must be >= 1"):
        LinearAnnealing(0)


def test_fit_counts_steps_across_epochs_and_resumes(tmp_path):
    data = InMemoryData(torch.randn(20, 2), torch.randn(20, 1))  # 5 batches of 4

    def run(epochs, checkpoint, seen):
        torch.manual_seed(0)
        model = torch.nn.Linear(2, 1)
        vaelib.fit(model, lambda m, b: ((m(b[0]) - b[1]) ** 2).mean(), data, epochs=epochs, batch_size=4,
                   device="cpu", checkpoint=checkpoint, on_step=seen.append, progress=False)

    straight, first, second = [], [], []
    run(3, None, straight)
    run(2, tmp_path / "c.pt", first)
    run(3, tmp_path / "c.pt", second)
    assert straight == list(range(15)) and first + second == straight


def test_a_run_stops_at_the_cap_and_a_rerun_continues(tmp_path, capsys):
    train, _ = regression_data(64)
    path = tmp_path / "c.pt"

    def run(epochs, checkpoint, minutes):
        vaelib.seed_everything(0)
        model = nn.Linear(3, 1)
        h = vaelib.fit(model, mse, train, epochs=epochs, batch_size=16, device="cpu", checkpoint=checkpoint,
                       progress=False, max_minutes=minutes)
        return model, h

    _, first = run(4, path, 1e-9)  # a cap every epoch passes: one epoch per call
    out = capsys.readouterr().out
    assert first["epoch"] == [1]
    assert "Stopped at the 1e-09-minute cap (VAELIB_MAX_MINUTES changes it) after 1 of the 4 epochs" in out
    assert f"run it again to continue from {path}" in out
    _, second = run(4, path, 1e-9)
    assert second["epoch"] == [1, 2] and "after 1 of the 3 epochs" in capsys.readouterr().out
    resumed, rest = run(4, path, math.inf)
    assert rest["epoch"] == [1, 2, 3, 4] and "Stopped" not in capsys.readouterr().out
    straight, _ = run(4, None, math.inf)
    assert all(torch.equal(a, b) for a, b in zip(resumed.parameters(), straight.parameters()))


def test_the_cap_defaults_to_the_budget_and_its_setting(monkeypatch, capsys):
    monkeypatch.setenv("VAELIB_MAX_MINUTES", "1e-9")
    train, _ = regression_data(32)
    h = vaelib.fit(nn.Linear(3, 1), mse, train, epochs=3, device="cpu", progress=False)
    assert h["epoch"] == [1]
    assert "no checkpoint, so running it again starts afresh" in capsys.readouterr().out


def test_a_checkpoint_in_use_is_refused_and_a_dead_writers_lock_taken_over(tmp_path):
    train, _ = regression_data(32)
    path = tmp_path / "c.pt"
    lock = tmp_path / "c.pt.lock"
    lock.write_text(f"{os.getppid()} {socket.gethostname()} 2026-11-23 12:00:00")  # a live process
    with pytest.raises(CheckpointInUseError, match=rf"c\.pt is being written by another run \(process {os.getppid()}"):
        vaelib.fit(nn.Linear(3, 1), mse, train, epochs=1, device="cpu", checkpoint=path, progress=False)
    assert not path.exists()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    lock.write_text(f"{gone.pid} {socket.gethostname()} 2026-11-23 12:00:00")  # its writer is gone
    h = vaelib.fit(nn.Linear(3, 1), mse, train, epochs=1, device="cpu", checkpoint=path, progress=False)
    assert h["epoch"] == [1] and path.exists() and not lock.exists()


SLOW_RUN = """
import sys, time, torch, vaelib
x = torch.randn(40, 3)
data = vaelib.InMemoryData(x, x.sum(1, keepdim=True))
def loss(m, b):
    time.sleep(0.2)
    return ((m(b[0]) - b[1]) ** 2).mean()
vaelib.fit(torch.nn.Linear(3, 1), loss, data, epochs=int(sys.argv[2]), batch_size=8, device="cpu",
           checkpoint=sys.argv[1], progress=False)
print("done")
"""


def test_two_processes_never_write_one_checkpoint_at_once(tmp_path):
    path = tmp_path / "shared.pt"
    # the first run takes about 8 s of training (5 batches of 0.2 s per epoch); the second starts meanwhile
    first = subprocess.Popen([sys.executable, "-c", SLOW_RUN, str(path), "8"], stdout=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "shared.pt.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        second = subprocess.run([sys.executable, "-c", SLOW_RUN, str(path), "3"], capture_output=True, text=True,
                                timeout=60)
        assert second.returncode != 0 and "is being written by another run" in second.stderr
        assert f"process {first.pid}" in second.stderr
    finally:
        out, _ = first.communicate(timeout=60)
    assert first.returncode == 0 and out.strip() == "done"
    assert not (tmp_path / "shared.pt.lock").exists()


def test_bf16_training_step_matches_fp32_and_keeps_fp32_state():
    """precision="bf16" runs only the matrix products in bf16: the loss and the gradient agree with
    fp32 to bf16's precision (8 significant bits, so within a few per cent), and weights, optimizer
    state and the returned losses stay fp32."""
    vaelib.seed_everything(0)
    x = (torch.rand(64, 1, 28, 28) > 0.5).float()
    model = vaelib.VAE(latent_dim=4, hidden=(32,))
    grads = {}
    for dtype in (torch.float32, torch.bfloat16):
        model.zero_grad()
        torch.manual_seed(1)  # the same noise eps for both
        with torch.autocast("cpu", dtype=dtype, enabled=dtype != torch.float32):
            loss = vaelib.vae_loss(model, x)
        assert loss.dtype == torch.float32
        loss.backward()
        grads[dtype] = (loss.item(), torch.cat([p.grad.flatten() for p in model.parameters()]))
    (l32, g32), (l16, g16) = grads[torch.float32], grads[torch.bfloat16]
    assert not torch.equal(g16, g32)  # the products did run in bf16
    assert abs(l16 - l32) < 0.01 * abs(l32)
    assert (g16 - g32).norm() < 0.03 * g32.norm()
    assert torch.nn.functional.cosine_similarity(g16, g32, dim=0) > 0.999
    optimizer = vaelib.loop.adam(model.parameters())
    history = vaelib.fit(model, lambda m, b: vaelib.vae_loss(m, b[0]), InMemoryData(x, torch.zeros(64)),
                         epochs=3, batch_size=16, device="cpu", optimizer=optimizer, precision="bf16", progress=False)
    assert history["loss"][-1] < history["loss"][0]
    assert all(p.dtype == torch.float32 for p in model.parameters())
    assert all(v.dtype == torch.float32 for st in optimizer.state.values() for k, v in st.items() if k != "step")


def test_the_guards_gradient_norm_is_the_total_norm():
    """fit's guard computes the gradients' total 2-norm by dot products; it must be the norm
    torch computes, for contiguous and non-contiguous gradients, and inf/nan when one is."""
    from vaelib.loop import _grad_norm

    g = torch.Generator().manual_seed(0)
    params = [torch.nn.Parameter(torch.zeros(5, 7)), torch.nn.Parameter(torch.zeros(3)),
              torch.nn.Parameter(torch.zeros(4, 6))]
    for p in params:
        p.grad = torch.randn(p.shape, generator=g)
    params[2].grad = torch.randn(6, 4, generator=g).t()  # a transposed view: not contiguous
    like = torch.zeros(())
    truth = torch.sqrt(sum((p.grad.double() ** 2).sum() for p in params))
    assert torch.allclose(_grad_norm(params, math.inf, like).double(), truth, rtol=1e-6)
    assert torch.allclose(_grad_norm(params, 1e9, like).double(), truth, rtol=1e-6)  # clipping route
    params[1].grad[0] = float("inf")
    assert _grad_norm(params, math.inf, like) == math.inf
    params[1].grad[0] = float("nan")
    assert _grad_norm(params, math.inf, like).isnan()
