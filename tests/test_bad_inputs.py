"""Bad inputs and numerical edge cases (issue 17): each gets a clear error or the exact answer, never a silent NaN."""

import os
import re
import socket
import subprocess
import sys
import time

import pytest
import torch

import vaelib


def test_nan_pixels_fail_the_range_check():
    model = vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 2, 2))
    x = torch.rand(3, 1, 2, 2)
    x[1, 0, 0, 1] = float("nan")
    with pytest.raises(ValueError, match="1 are NaN"):
        model.check_input(x)
    with pytest.raises(ValueError, match="are NaN"):
        vaelib.elbo(model, x)
    with torch.no_grad(), pytest.raises(ValueError, match="are NaN"):
        vaelib.iwae_bound(model, x, k=3)
    with pytest.raises(ValueError, match="are NaN"):
        vaelib.evaluate_bounds(model, vaelib.InMemoryData(x), k=2)
    with pytest.raises(ValueError, match="images to binarise must be numbers in \\[0, 1\\]; 1 are NaN"):
        vaelib.InMemoryData(x, binarize="dynamic")  # one range check for every use: NaN fails it everywhere
    with pytest.raises(ValueError, match="mean images for pixel_entropy must be numbers"):
        vaelib.pixel_entropy(x)
    x[1, 0, 0, 1] = 1.5
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\], got \[.*, 1.5\]"):
        model.check_input(x)


@pytest.mark.parametrize("logvar", [100.0, -100.0, 0.0])
def test_kl_normal_is_exactly_zero_where_q_equals_p_even_at_extreme_log_variances(logvar):
    mu, lv = torch.tensor([[0.3, -2.0]]), torch.full((1, 2), logvar)
    kl = vaelib.kl_normal(mu, lv, mu.clone(), lv.clone())
    assert torch.equal(kl, torch.zeros(1))
    # and it still agrees with torch.distributions where both are finite
    lv_p = torch.full((1, 2), logvar + 0.5)
    ref = torch.distributions.kl_divergence(torch.distributions.Normal(mu, (0.5 * lv).exp()),
                                            torch.distributions.Normal(mu + 0.1, (0.5 * lv_p).exp())).sum(-1)
    assert torch.allclose(vaelib.kl_normal(mu, lv, mu + 0.1, lv_p), ref, rtol=1e-4)


def test_kl_categorical_gradient_is_finite_where_q_has_zeros():
    q = torch.tensor([0.0, 0.25, 0.75], requires_grad=True)
    p = torch.tensor([0.2, 0.3, 0.5], requires_grad=True)
    kl = vaelib.kl_categorical(q, p)
    kl.backward()
    assert torch.isfinite(q.grad).all() and torch.isfinite(p.grad).all()
    # d/dp_i of sum_j q_j log(q_j / p_j) is -q_i / p_i; d/dq_i is log(q_i / p_i) + 1 where q_i > 0
    assert torch.allclose(p.grad, -q.detach() / p.detach())
    assert torch.allclose(q.grad[1:], (q.detach()[1:] / p.detach()[1:]).log() + 1)
    assert kl.item() == pytest.approx(0.25 * torch.log(torch.tensor(0.25 / 0.3)).item()
                                      + 0.75 * torch.log(torch.tensor(0.75 / 0.5)).item())


def test_kl_categorical_refuses_distributions_that_do_not_sum_to_one():
    with pytest.raises(ValueError, match="q must sum to 1 .* sums to 0.9"):
        vaelib.kl_categorical(torch.tensor([0.5, 0.4]), torch.tensor([0.5, 0.5]))
    with pytest.raises(ValueError, match="p must sum to 1"):
        vaelib.kl_categorical(torch.tensor([[0.5, 0.5]]), torch.tensor([[2.0, 0.5]]))


def test_negative_beta_and_fractional_latent_dim_are_refused():
    model = vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="beta must be >= 0"):
        vaelib.elbo(model, torch.rand(2, 1, 2, 2), beta=-1.0)
    with pytest.raises(ValueError, match="latent_dim must be a whole number >= 1, got 2.5"):
        vaelib.VAE(latent_dim=2.5, hidden=(8,), image_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="latent_dim must be a whole number"):
        vaelib.VAE(latent_dim=True, hidden=(8,), image_shape=(1, 2, 2))
    assert vaelib.VAE(latent_dim=3.0, hidden=(8,), image_shape=(1, 2, 2)).latent_dim == 3


def test_arguments_that_torch_would_answer_with_its_internals_get_a_sentence():
    model = vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 2, 2))
    x = torch.rand(4, 1, 2, 2)
    with pytest.raises(ValueError, match="images are torch.uint8 .* divide by 255"):
        model.encode((x * 255).to(torch.uint8))
    with pytest.raises(ValueError, match="images are torch.float64 but the model's weights are torch.float32"):
        model.encode(x.double())
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1, got 0"):
        vaelib.fit(model, lambda m, b: vaelib.vae_loss(m, b[0]), vaelib.InMemoryData(x), epochs=1,
                   batch_size=0, progress=False)
    with pytest.raises(ValueError, match="batch_size must be a whole number >= 1"):
        vaelib.InMemoryData(x).num_batches(0)
    with pytest.raises(ValueError, match="needs at least 2 images .* got 0"):
        vaelib.evaluate_bounds(model, vaelib.InMemoryData(x[:0]), k=2)
    with pytest.raises(ValueError, match="n_samples must be a whole number >= 1, got 0"):
        vaelib.elbo_surrogate(model, x, "score", n_samples=0)
    with pytest.raises(ValueError, match="n_draws must be a whole number >= 1, got 0"):
        vaelib.encoder_gradients(model, x, n_draws=0)
    with pytest.raises(ValueError, match=r"seed must lie in \[0, 2\*\*63\)"):
        vaelib.seed_everything(2**70)
    with pytest.raises(ValueError, match="latent_statistics needs at least 2 images .* got 1"):
        vaelib.latent_statistics(model, vaelib.InMemoryData(x[:1]))


def test_a_resume_under_another_thread_count_warns(tmp_path, monkeypatch):
    import warnings
    x = torch.rand(32, 3)
    data = vaelib.InMemoryData(x)
    path = tmp_path / "run.pt"

    def loss(m, b):
        return m(b[0]).pow(2).mean()

    vaelib.fit(torch.nn.Linear(3, 1), loss, data, epochs=1, checkpoint=path, device="cpu", progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same thread count: silent
        vaelib.fit(torch.nn.Linear(3, 1), loss, data, epochs=2, checkpoint=path, device="cpu", progress=False)
    threads = torch.get_num_threads()
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads + 1)
    with pytest.warns(UserWarning, match=f"written with {threads} CPU threads, with {threads + 1}: .* not be bit-identical"):
        vaelib.fit(torch.nn.Linear(3, 1), loss, data, epochs=3, checkpoint=path, device="cpu", progress=False)


# --- fit does what it was asked, or says what it did instead (items 3 and 5) ----------------

def _line_fit(**kwargs):
    data = vaelib.InMemoryData(torch.linspace(0, 1, 32).unsqueeze(1))
    model = kwargs.pop("model", None) or torch.nn.Linear(1, 1)
    loss = kwargs.pop("loss", lambda m, b: (m(b[0]) - 2 * b[0]).pow(2).mean())
    return model, vaelib.fit(model, loss, data, device="cpu", progress=False, batch_size=8, **kwargs)


def test_a_checkpoint_with_more_epochs_than_asked_is_returned_with_a_warning(tmp_path):
    path = tmp_path / "run.pt"
    _line_fit(epochs=3, checkpoint=path)
    with pytest.warns(UserWarning, match="holds 3 epochs, more than the 1 asked for: .* those of epoch 3"):
        _, history = _line_fit(epochs=1, checkpoint=path)
    assert history["epoch"] == [1, 2, 3]  # the history says what the model is


def test_a_loss_without_gradient_is_refused_not_trained_on():
    def detached(m, b):
        with torch.no_grad():
            return (m(b[0]) - 2 * b[0]).pow(2).mean()

    with pytest.raises(ValueError, match="loss with no gradient"):
        _line_fit(epochs=1, loss=detached)
    other = torch.nn.Linear(1, 1)
    with pytest.raises(ValueError, match="does not depend on any parameter the optimizer updates"):
        _line_fit(epochs=1, loss=lambda m, b: (other(b[0]) - b[0]).pow(2).mean())


def test_a_resume_runs_at_the_learning_rate_passed_in(tmp_path):
    path = tmp_path / "run.pt"
    _line_fit(epochs=1, checkpoint=path)  # the default Adam, lr 1e-3
    model = torch.nn.Linear(1, 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.05)
    seen = []
    _line_fit(epochs=2, checkpoint=path, model=model, optimizer=optimizer,
              on_step=lambda step: seen.append(optimizer.param_groups[0]["lr"]))
    assert seen == [0.05] * 4
    assert optimizer.state[model.weight]["step"] == 8  # the moments did come from the checkpoint


class _Overflowing(torch.optim.SGD):
    """SGD whose ``poison_at``-th update leaves a weight infinite although its loss and gradient were finite."""

    def __init__(self, params, poison_at):
        super().__init__(params, lr=0.1)
        self.calls, self.poison_at = 0, poison_at

    @torch.no_grad()
    def step(self, closure=None):
        super().step(closure)
        self.calls += 1
        if self.calls == self.poison_at:
            self.param_groups[0]["params"][0].fill_(float("inf"))


def test_non_finite_weights_are_named_and_restored_from_the_checkpoint(tmp_path):
    model = torch.nn.Linear(1, 1)
    with pytest.raises(vaelib.NonFiniteLossError, match="no longer finite .* no checkpoint of this run exists"):
        _line_fit(epochs=1, model=model, optimizer=_Overflowing(model.parameters(), poison_at=2))
    path = tmp_path / "run.pt"
    model = torch.nn.Linear(1, 1)
    with pytest.raises(vaelib.NonFiniteLossError, match=f"restored from {path}, the last completed epoch"):
        _line_fit(epochs=2, model=model, optimizer=_Overflowing(model.parameters(), poison_at=6), checkpoint=path)
    saved = torch.load(path, weights_only=True)["model"]
    assert torch.isfinite(model.weight).all() and torch.equal(model.weight, saved["weight"])


def test_a_first_epoch_failure_names_no_checkpoint_that_does_not_exist(tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(vaelib.NonFiniteLossError) as err:
        _line_fit(epochs=1, checkpoint=path, loss=lambda m, b: m(b[0]).mean() * float("nan"))
    assert str(path) not in str(err.value) and "keeps the weights from the last good step." in str(err.value)
    _line_fit(epochs=1, checkpoint=path, config={"run": 1})  # a config of its own: the loss may change
    with pytest.raises(vaelib.NonFiniteLossError, match=f"and {path} holds the last completed epoch"):
        _line_fit(epochs=2, checkpoint=path, config={"run": 1}, loss=lambda m, b: m(b[0]).mean() * float("nan"))


# --- damaged or missing data (items 8 and 9) ---------------------------------------------

def _copy_of_mnist_test(tmp_path):
    import shutil
    raw = vaelib.data_dir() / "MNIST" / "raw"
    (tmp_path / "MNIST" / "raw").mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # copies, to be damaged
        shutil.copy(raw / name, tmp_path / "MNIST" / "raw" / name)
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"):  # torchvision wants all four
        (tmp_path / "MNIST" / "raw" / name).symlink_to(raw / name)
    return tmp_path / "MNIST" / "raw"


def _damage(path, how):
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[:1000]
    elif how == "empty":
        data = b""
    elif how == "header":
        data[0:4] = b"\x00\x00\x09\x09"
    elif how == "overwritten":
        data[5000:6000] = b"\xff" * 1000
    elif how == "label 200":
        data[100] = 200
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("name, how, what", [
    ("t10k-images-idx3-ubyte", "truncated", "it has 1,000 bytes where the original has 7,840,016"),
    ("t10k-labels-idx1-ubyte", "empty", "it has 0 bytes where the original has 10,008"),
    ("t10k-images-idx3-ubyte", "header", "its bytes differ from the original's"),
    ("t10k-images-idx3-ubyte", "overwritten", "its bytes differ from the original's"),
    ("t10k-labels-idx1-ubyte", "label 200", "its bytes differ from the original's"),
])
def test_a_damaged_data_file_is_named_with_what_to_do(tmp_path, name, how, what):
    raw = _copy_of_mnist_test(tmp_path)
    _damage(raw / name, how)
    with pytest.raises(vaelib.data.DamagedDataError) as err:
        vaelib.load_mnist("test", root=tmp_path, download=False)
    message = str(err.value)
    assert f"{raw / name} is damaged: {what}" in message and "Delete it" in message


def test_labels_outside_the_classes_are_refused_even_past_the_checksum(tmp_path, monkeypatch):
    raw = _copy_of_mnist_test(tmp_path)
    _damage(raw / "t10k-labels-idx1-ubyte", "label 200")
    monkeypatch.setattr(vaelib.data, "_check_raw_files", lambda *args: None)
    with pytest.raises(vaelib.data.DamagedDataError, match="labels from 0 to 200, outside 0..9"):
        vaelib.load_mnist("test", root=tmp_path, download=False)


def test_a_mistyped_data_folder_is_not_created_and_the_setting_used_is_named(tmp_path, monkeypatch):
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    monkeypatch.setenv("VAELIB_DATA", str(tmp_path / "elsewhere"))
    wrong = tmp_path / "does" / "not" / "exist"
    with pytest.raises(vaelib.DatasetNotFoundError, match="given as root=, or as --data on the command line"):
        vaelib.load_mnist("test", root=wrong)
    assert not (tmp_path / "does").exists()
    with pytest.raises(vaelib.DatasetNotFoundError, match="VAELIB_DATA is set to"):
        vaelib.load_mnist("test")
    assert not (tmp_path / "elsewhere").exists()


def test_a_save_model_that_dies_half_way_leaves_the_good_model_readable(tmp_path, monkeypatch):
    path = vaelib.save_model(vaelib.VAE(latent_dim=2, hidden=(8,)), tmp_path / "m.pt")
    good = path.read_bytes()

    def dying_save(obj, f, *args, **kwargs):  # a kill or a full disk in the middle of the write
        with open(f, "wb") as half:
            half.write(good[: len(good) // 2])
        raise OSError("No space left on device")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="No space left"):
        vaelib.save_model(vaelib.VAE(latent_dim=3, hidden=(8,)), path)
    monkeypatch.undo()
    assert path.read_bytes() == good and vaelib.load_model(path).latent_dim == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt"]  # no temporary file left behind


def test_a_checkpoint_is_never_resumed_with_another_loss_function(tmp_path):
    path = tmp_path / "run.pt"
    _line_fit(epochs=1, checkpoint=path)  # the squared error of _line_fit
    with pytest.raises(ValueError, match="another configuration .*loss_fn: .*<lambda> \\(code [0-9a-f]+\\)' there"):
        _line_fit(epochs=2, checkpoint=path, loss=lambda m, b: (m(b[0]) - 2 * b[0]).abs().mean())
    _line_fit(epochs=2, checkpoint=path)  # the same loss resumes


def test_describe_loss_is_the_same_in_every_process():
    import subprocess
    import sys
    code = ("import vaelib.loop as l\n"
            "def loss(m, b):\n    inner = lambda t: t * 2\n    return inner(m(b)).sum()\n"
            "print(l.describe_loss(loss))")
    runs = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
            for _ in range(2)}
    assert len(runs) == 1 and "loss (code " in runs.pop()


def _race_for_the_lock(path, log, barrier):
    """One contender: wait for the others, then try to hold the lock for 20 ms, logging in and out."""
    from vaelib.checkpoint import CheckpointInUseError, exclusive

    barrier.wait()
    try:
        with exclusive(path):
            with open(log, "a") as f:
                f.write(f"in {os.getpid()}\n")
            time.sleep(0.02)
            with open(log, "a") as f:
                f.write(f"out {os.getpid()}\n")
    except CheckpointInUseError:
        pass


def test_many_processes_racing_for_one_stale_lock_never_both_hold_it(tmp_path):
    """A lock left by a dead process (of another host here, as on a recycled Colab runtime, or an
    empty file) is taken over by exactly one of the runs that find it at the same moment."""
    import multiprocessing

    fork = multiprocessing.get_context("fork")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a process id of this host that no longer runs
    trials, contenders, most = 200, 4, 0
    for trial in range(trials):
        path, log = tmp_path / f"c{trial}.pt", tmp_path / f"log{trial}"
        stale = ["", "4242 some-other-host 2026-01-01 00:00:00", f"{gone.pid} {socket.gethostname()} 2026-01-01 00:00:00"]
        (tmp_path / f"c{trial}.pt.lock").write_text(stale[trial % 3])
        barrier = fork.Barrier(contenders)
        procs = [fork.Process(target=_race_for_the_lock, args=(path, log, barrier)) for _ in range(contenders)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(30)
        inside = 0
        for line in log.read_text().splitlines():
            inside += 1 if line.startswith("in ") else -1
            most = max(most, inside)
            assert inside <= 1, f"trial {trial}: two runs held the lock at once"
        assert log.read_text().count("in ") >= 1, f"trial {trial}: no run took the stale lock over"
        assert not (tmp_path / f"c{trial}.pt.lock").exists(), "the last holder leaves no lock behind"
    assert most == 1


@pytest.mark.parametrize("minutes", [0, -1, float("nan"), True, "5"])
def test_fit_refuses_a_cap_that_is_not_a_positive_number_of_minutes(minutes):
    """The environment variable and the CLI refuse these; fit(max_minutes=) did not (0 trained an epoch)."""
    with pytest.raises(ValueError, match="max_minutes must be a positive number of minutes"):
        _line_fit(epochs=2, max_minutes=minutes)
    assert _line_fit(epochs=1, max_minutes=float("inf"))[1]["epoch"] == [1]


@pytest.mark.parametrize("kwargs, message", [
    (dict(k=2.5), "k must be a whole number >= 1, got 2.5"),
    (dict(k=True), "k must be a whole number >= 1, got True"),
    (dict(k=0), "k must be a whole number >= 1, got 0"),
    (dict(k=4, chunk_size=-1), "chunk_size must be a whole number >= 1"),
    (dict(k=4, chunk_size=0), "chunk_size must be a whole number >= 1"),
])
def test_iwae_bound_checks_its_sample_counts_as_iwae_loss_does(kwargs, message):
    model = vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 2, 2))
    with pytest.raises(ValueError, match=message):
        vaelib.iwae_bound(model, torch.rand(3, 1, 2, 2), **kwargs)


def test_a_negative_warm_up_is_named_as_the_warm_up():
    with pytest.raises(ValueError, match=r"kl_warmup_steps must be a whole number of steps >= 0 .*got -5"):
        vaelib.train_mnist_model("vae", kl_warmup_steps=-5, epochs=1, progress=False)


@pytest.mark.parametrize("seed", [2**70, -1, 1.5, True])
def test_labelled_subset_says_what_a_seed_must_be(seed):
    y = torch.arange(10).repeat(3)
    with pytest.raises(ValueError, match=r"seed must be a whole number in \[0, 2\*\*63\)"):
        vaelib.labelled_subset(y, 10, seed=seed)
    assert len(vaelib.labelled_subset(y, 10, seed=2**63 - 1)) == 10


def test_one_hot_labels_are_told_to_use_argmax_not_long():
    one_hot = torch.nn.functional.one_hot(torch.tensor([1, 2, 3]), 10).float()
    with pytest.raises(ValueError, match=r"one-hot rows \(3, 10\).*y\.argmax\(1\)"):
        vaelib.labelled_subset(one_hot, 10)


def test_fractional_hidden_sizes_of_a_conditional_vae_are_refused_not_truncated():
    with pytest.raises(ValueError, match="hidden must be whole numbers of units >= 1, got \\(16.7,\\)"):
        vaelib.ConditionalVAE(latent_dim=2, hidden=(16.7,))
    assert vaelib.ConditionalVAE(latent_dim=2, hidden=(16.0,)).hidden == (16,)


def test_decode_checks_the_codes_dtype_as_encode_checks_the_images():
    model = vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 2, 2))
    with pytest.raises(ValueError, match="codes are torch.float64 but the model's weights are torch.float32"):
        model.decode(torch.zeros(3, 2, dtype=torch.float64))
    assert model.decode(torch.zeros(3, 2)).shape == (3, 1, 2, 2)


# --- run files and model files under faults (issue 32, run files and data) ----------------

def _tiny_vae(hidden=(8,)):
    return vaelib.VAE(latent_dim=2, hidden=hidden, image_shape=(1, 2, 2))


def _tiny_run(path, epochs=1, hidden=(8,)):
    """A run as the recipes cache it (the model in the stored config), of a small VAE on 16 tiny images."""
    torch.manual_seed(0)
    model = _tiny_vae(hidden)
    data = vaelib.InMemoryData(torch.randint(0, 256, (16, 1, 2, 2)).float() / 255, binarize="dynamic")
    history = vaelib.fit(model, lambda m, b: vaelib.vae_loss(m, b[0]), data, epochs=epochs, batch_size=8,
                         device="cpu", checkpoint=path, config={"model": {"kind": "vae", **model.config}},
                         progress=False)
    return model, history


def _edited(path, edit):
    """Change a saved payload and write it back through vaelib's own writer (so any checksum is fresh:
    what is wrong is the content, not the bytes)."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    vaelib.checkpoint.atomic_save(payload, path)


def _is_damaged(err, path):
    message = str(err.value)
    assert type(err.value).__name__ == "DamagedFileError", f"{type(err.value).__name__}: {message}"
    assert str(path) in message and "is damaged" in message and "Delete it" in message, message


@pytest.mark.parametrize("kind", ["model file", "cached run"])
def test_overwritten_bytes_in_a_saved_file_are_caught_by_its_checksum(tmp_path, kind):
    path = tmp_path / "f.pt"
    if kind == "model file":
        vaelib.save_model(_tiny_vae(hidden=(512, 256)), path)  # weights are most of the file
    else:
        _tiny_run(path, hidden=(512, 256))
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle:middle + 64] = bytes(range(1, 65))  # finite floats: no NaN check can see them
    path.write_bytes(bytes(data))
    state = torch.load(path, weights_only=True)["state" if kind == "model file" else "model"]
    assert all(torch.isfinite(v).all() for v in state.values())  # it reads back as a plausible model
    with pytest.raises(ValueError) as err:
        vaelib.load_model(path)
    _is_damaged(err, path)
    assert "checksum" in str(err.value)
    if kind == "cached run":
        with pytest.raises(ValueError) as err:
            _tiny_run(path, epochs=2, hidden=(512, 256))
        _is_damaged(err, path)


def test_files_written_before_checksums_still_load(tmp_path):
    model = _tiny_vae()
    path = vaelib.save_model(model, tmp_path / "m.pt")
    payload = torch.load(path, weights_only=True)
    payload.pop("checksum", None)
    torch.save(payload, path)  # as an older vaelib wrote it
    loaded = vaelib.load_model(path)
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    run = tmp_path / "run.pt"
    _tiny_run(run)
    _edited(run, lambda p: None)
    payload = torch.load(run, weights_only=True)
    payload.pop("checksum", None)
    torch.save(payload, run)
    assert _tiny_run(run, epochs=2)[1]["epoch"] == [1, 2]


def _nan_weight(state):
    next(v for v in state.values() if v.is_floating_point())[0] = float("nan")


def _inf_weight(state):
    next(v for v in state.values() if v.is_floating_point())[0] = float("inf")


@pytest.mark.parametrize("name, edit, says", [
    ("no rng", lambda p: p.pop("rng"), "'rng'"),
    ("no history", lambda p: p.pop("history"), "'history'"),
    ("no model", lambda p: p.pop("model"), "'model'"),
    ("no config", lambda p: p.pop("config"), "'config'"),
    ("no epoch", lambda p: p.pop("epoch"), "'epoch'"),
    ("rng a string", lambda p: p.update(rng="garbage"), "random-number state"),
    ("torch rng cut short", lambda p: p["rng"].update(torch=p["rng"]["torch"][:10]), "random-number state"),
    ("numpy rng malformed", lambda p: p["rng"].update(numpy=("MT19937",)), "random-number state"),
    ("NaN weight", lambda p: _nan_weight(p["model"]), "NaN or infinite"),
    ("inf weight", lambda p: _inf_weight(p["model"]), "NaN or infinite"),
])
def test_a_cached_run_with_a_missing_or_malformed_part_is_damaged_not_a_traceback(tmp_path, name, edit, says):
    path = tmp_path / "run.pt"
    _tiny_run(path)
    _edited(path, edit)
    with pytest.raises(ValueError) as err:
        _tiny_run(path, epochs=2)
    _is_damaged(err, path)
    assert says in str(err.value)
    if name in ("no model", "no config", "NaN weight", "inf weight"):  # what load_model reads of a run
        with pytest.raises(ValueError) as err:
            vaelib.load_model(path)
        _is_damaged(err, path)


def test_a_malformed_random_number_state_changes_no_generator():
    import random

    state = vaelib.checkpoint.rng_state()
    torch.manual_seed(1)
    random.seed(1)
    before = torch.get_rng_state(), random.getstate()
    with pytest.raises(ValueError, match="not enough values to unpack"):
        vaelib.checkpoint.set_rng_state({**state, "numpy": ("MT19937",)})  # torch's part is valid and differs
    assert torch.equal(torch.get_rng_state(), before[0]) and random.getstate() == before[1]


@pytest.mark.parametrize("edit, says", [
    (lambda p: p.pop("state"), "'state'"),
    (lambda p: p.pop("config"), "'config'"),
    (lambda p: p.pop("kind"), "'kind'"),
    (lambda p: _nan_weight(p["state"]), "NaN or infinite"),
    (lambda p: _inf_weight(p["state"]), "NaN or infinite"),
    (lambda p: p.update(state="garbage"), "weights"),
])
def test_a_model_file_with_a_missing_or_malformed_part_is_damaged_not_a_traceback(tmp_path, edit, says):
    path = vaelib.save_model(_tiny_vae(), tmp_path / "m.pt")
    _edited(path, edit)
    with pytest.raises(ValueError) as err:
        vaelib.load_model(path)
    _is_damaged(err, path)
    assert says in str(err.value)


def test_an_intact_file_that_cannot_be_read_is_not_called_damaged(tmp_path, monkeypatch):
    folder = tmp_path / "folder.pt"
    folder.mkdir()
    for load in (lambda: vaelib.checkpoint.load(folder, "vaelib-model-1", "a vaelib model"),
                 lambda: _tiny_run(folder)):
        with pytest.raises(IsADirectoryError) as err:
            load()
        message = str(err.value)
        assert f"cannot read {folder}" in message and "a folder" in message
        assert "damaged" not in message and "delete" not in message.lower()
    path = vaelib.save_model(_tiny_vae(), tmp_path / "m.pt")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):  # root reads anything: fail the read as it would fail for a user
            def refused(f, *args, **kwargs):
                raise PermissionError(13, "Permission denied", str(f))
            monkeypatch.setattr(torch, "load", refused)
        with pytest.raises(PermissionError) as err:
            vaelib.load_model(path)
        message = str(err.value)
        assert f"cannot read {path}" in message and "Permission denied" in message
        assert "damaged" not in message and "delete" not in message.lower()
    finally:
        path.chmod(0o644)
        monkeypatch.undo()
    assert vaelib.load_model(path).latent_dim == 2  # it was intact all along


@pytest.mark.parametrize("edit, says", [
    (lambda c: c.update(hidden=[2e9]), r"hidden size 2000000000\.0; .* at most 100,000"),
    (lambda c: c.update(latent_dim=10**9), r"latent_dim 1000000000; .* at most 100,000"),
    (lambda c: c.update(image_shape=[1, 10**6, 10**6]), r"image_shape size 1000000; .* at most 100,000"),
    (lambda c: c.update(hidden=[100_000, 100_000]), r"20,0\d\d,\d\d\d,\d\d\d parameters, more than the 50,000,000"),
    (lambda c: c.update(hidden=[8] * 1000), r"1000 hidden layers, more than 100"),
])
def test_a_model_files_configuration_cannot_make_vaelib_allocate_before_a_check(tmp_path, monkeypatch, edit, says):
    path = vaelib.save_model(_tiny_vae(), tmp_path / "m.pt")
    _edited(path, lambda p: edit(p["config"]))

    def no_build(*args, **kwargs):
        raise AssertionError("a network was built from the file's sizes before they were checked")

    monkeypatch.setattr(vaelib.models, "make_encoder", no_build)
    with pytest.raises(ValueError, match=says):
        vaelib.load_model(path)


@pytest.mark.parametrize("model", [
    vaelib.VAE(latent_dim=3, hidden=(16, 8)), vaelib.Autoencoder(latent_dim=2, hidden=(12,)),
    vaelib.VAE(latent_dim=4, arch="conv", hidden=(4, 8)), vaelib.Autoencoder(latent_dim=2, arch="conv", hidden=(3, 5)),
    vaelib.VAE(latent_dim=2, hidden=(8,), likelihood="gaussian", image_shape=(3, 8, 4)),
])
def test_the_size_check_counts_the_parameters_the_model_has(model):
    assert vaelib.models.parameter_count(model.kind, model.config) == sum(p.numel() for p in model.parameters())


def _unwritable(folder, monkeypatch, errno_=13):
    """Make ``folder`` read-only: by its mode, or where that does not bind (root), by making the lock's
    creation fail as it would there (EACCES: no permission; EROFS: a read-only file system)."""
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):
        real_open = os.open

        def refused(path, flags, *args, **kwargs):
            if str(path).endswith(".lock") and flags & os.O_CREAT:
                raise OSError(errno_, os.strerror(errno_), str(path))
            return real_open(path, flags, *args, **kwargs)

        monkeypatch.setattr(os, "open", refused)


@pytest.mark.parametrize("errno_", [13, 30])
def test_a_finished_run_in_a_read_only_runs_folder_is_loaded(tmp_path, monkeypatch, errno_):
    runs = tmp_path / "runs"
    kwargs = dict(latent_dim=2, hidden=(8,), epochs=1, limit=64, runs=runs, device="cpu", progress=False)
    model, history = vaelib.train_mnist_model("vae", **kwargs)
    before = sorted(p.name for p in runs.iterdir())
    _unwritable(runs, monkeypatch, errno_)
    try:
        loaded, again = vaelib.train_mnist_model("vae", **kwargs)
        assert again == history
        assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
        assert sorted(p.name for p in runs.iterdir()) == before  # no lock, nothing written
        with pytest.raises(PermissionError, match=r"holds 1 of the 2 epochs asked for, but its folder cannot be "
                                                  r"written .* copy it to a folder you can write"):
            vaelib.train_mnist_model("vae", **{**kwargs, "epochs": 2})
        with pytest.raises(PermissionError, match="cannot write the checkpoint .* choose a folder you can write"):
            vaelib.train_mnist_model("vae", **{**kwargs, "seed": 1})  # a run not in the folder
    finally:
        runs.chmod(0o755)


def test_a_nan_in_fit_config_is_refused_before_training(tmp_path):
    path = tmp_path / "run.pt"
    with pytest.raises(ValueError, match=r"config\['loss'\]\['beta'\] is NaN, .* could never be resumed"):
        _line_fit(epochs=1, checkpoint=path, config={"loss": {"beta": float("nan")}})
    assert not path.exists()


def test_numpy_values_in_fit_config_are_stored_as_plain_python(tmp_path):
    import numpy as np

    path = tmp_path / "run.pt"
    config = {"beta": np.float32(0.5), "k": np.int64(3), "sizes": np.array([1, 2]), "deep": [{"lr": np.float64(1e-3)}]}
    _line_fit(epochs=1, checkpoint=path, config=config)
    _, history = _line_fit(epochs=2, checkpoint=path, config=config)
    assert history["epoch"] == [1, 2]
    stored = torch.load(path, weights_only=True)["config"]
    assert stored == {"beta": 0.5, "k": 3, "sizes": [1, 2], "deep": [{"lr": 1e-3}]}
    assert type(stored["k"]) is int and type(stored["deep"][0]["lr"]) is float


@pytest.mark.parametrize("value, says", [
    (torch.nn.ReLU, r"config\['act'\] is the class torch.nn.modules.activation.ReLU, .* store its name"),
    (len, r"config\['act'\] is the function len, .* store its name"),
    (torch.tensor([1.0]), r"config\['act'\] is a torch.Tensor, .* \.item\(\) or \.tolist\(\)"),
])
def test_objects_in_fit_config_are_refused_before_saving(tmp_path, value, says):
    path = tmp_path / "run.pt"
    with pytest.raises(ValueError, match=says):
        _line_fit(epochs=1, checkpoint=path, config={"act": value})
    assert not path.exists()


def test_a_checkpoint_without_config_is_not_resumed_on_other_data_or_batch_size(tmp_path):
    path = tmp_path / "run.pt"
    x = torch.linspace(0, 1, 32).unsqueeze(1)

    def run(data, epochs, batch_size=8):
        model = torch.nn.Linear(1, 1)
        return vaelib.fit(model, _squared_error, data, epochs=epochs, batch_size=batch_size, device="cpu",
                          checkpoint=path, progress=False)

    run(vaelib.InMemoryData(x), 1)
    with pytest.raises(ValueError, match=r"another configuration \(data: '[0-9a-f]+' there, '[0-9a-f]+' here\).*"
                                         r"fingerprint of the training data"):
        run(vaelib.InMemoryData(x * 0.5), 2)
    with pytest.raises(ValueError, match=r"another configuration \(batch_size: 8 there, 16 here\)"):
        run(vaelib.InMemoryData(x), 2, batch_size=16)
    assert run(vaelib.InMemoryData(x), 2)["epoch"] == [1, 2]
    _edited(path, lambda p: p.update(config={"loss_fn": p["config"]["loss_fn"]}))  # as an older vaelib stored it
    assert run(vaelib.InMemoryData(x), 3)["epoch"] == [1, 2, 3]


def _squared_error(m, b):
    return (m(b[0]) - 2 * b[0]).pow(2).mean()


def test_a_stale_processed_folder_never_replaces_the_raw_files(tmp_path):
    raw = _copy_of_mnist_test(tmp_path)
    original = vaelib.load_mnist("test")
    processed = tmp_path / "MNIST" / "processed"  # torchvision's old cache, here holding other images
    processed.mkdir()
    for name in ("training.pt", "test.pt"):
        torch.save((torch.zeros(10000, 28, 28, dtype=torch.uint8), torch.zeros(10000, dtype=torch.long)),
                   processed / name)
    data = vaelib.load_mnist("test", root=tmp_path, download=False)
    assert torch.equal(data.x, original.x) and torch.equal(data.y, original.y)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):  # without the raw files ...
        (raw / name).unlink()
    vaelib.data._load_raw.cache_clear()
    with pytest.raises(vaelib.data.DamagedDataError, match=r"processed/test.pt is damaged: it holds other images "
                                                           r"than the original .*Delete it"):
        vaelib.load_mnist("test", root=tmp_path, download=False)
    images = (original.x * 255).round().to(torch.uint8).squeeze(1)
    torch.save((images, original.y), processed / "test.pt")  # ... the originals in it are still read
    vaelib.data._load_raw.cache_clear()
    data = vaelib.load_mnist("test", root=tmp_path, download=False)
    assert torch.equal(data.x, original.x) and torch.equal(data.y, original.y)


class _NotData:
    """An object of this module: the safe loader refuses to build it (it would have to import it)."""


def test_a_data_cache_the_safe_loader_refuses_gets_no_weights_only_advice(tmp_path):
    processed = tmp_path / "MNIST" / "processed"
    processed.mkdir(parents=True)
    for name in ("training.pt", "test.pt"):
        torch.save(_NotData(), processed / name)
    with pytest.raises(vaelib.data.DamagedDataError) as err:
        vaelib.load_mnist("test", root=tmp_path, download=False)
    message = str(err.value)
    assert str(processed / "test.pt") in message and "Delete it" in message
    assert "weights_only" not in message


def test_dequantize_refuses_values_off_the_8_bit_grid():
    on_grid = torch.randint(0, 256, (4, 1, 3, 3)).float() / 255
    assert vaelib.dequantize(on_grid).shape == on_grid.shape
    off = on_grid.clone()
    off[1, 0, 2, 2] = 0.5  # 127.5 / 255
    for call in (lambda: vaelib.dequantize(off), lambda: vaelib.InMemoryData(off, dequantize=True),
                 lambda: vaelib.dequantize(vaelib.dequantize(on_grid))):  # dequantised twice
        with pytest.raises(ValueError, match=r"images to dequantize must be 8-bit grey levels k/255 \(k = 0..255\)"
                                             r", as vaelib.load_mnist gives; \d+ values? (is|are) not"):
            call()
    with pytest.raises(ValueError, match=r"3-bit grey levels k/7"):
        vaelib.dequantize(on_grid, levels=8)
    assert vaelib.dequantize(torch.randint(0, 8, (5,)).double() / 7, levels=8).shape == (5,)
# --- issue 32: settings, objectives and gaps under bad inputs ------------------------------

def test_a_runs_setting_that_cannot_hold_runs_is_named(tmp_path, monkeypatch):
    """VAELIB_RUNS naming a file, a path under a file or a folder without write permission: the
    setting is named, not a raw FileExistsError or PermissionError from a lock file."""
    (tmp_path / "a_file").write_text("")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.geteuid() == 0:  # root writes anywhere: let os.access answer as for anyone else
        access = os.access
        monkeypatch.setattr(os, "access", lambda p, mode, **kw: False if str(p).startswith(str(locked))
                            else access(p, mode, **kw))

    def train():
        vaelib.train_mnist_model("vae", 2, hidden=(8,), epochs=1, limit=64, device="cpu", progress=False)

    for value, says in [(tmp_path / "a_file", f"{tmp_path / 'a_file'} is a file, not a folder"),
                        (tmp_path / "a_file" / "runs", f"{tmp_path / 'a_file'} is a file, not a folder"),
                        (locked, f"no permission to write in {locked}")]:
        monkeypatch.setenv(vaelib.RUNS_ENV, str(value))
        with pytest.raises(ValueError) as err:
            train()
        assert f"VAELIB_RUNS={value}" in str(err.value) and says in str(err.value), str(err.value)
    with pytest.raises(ValueError, match=f"runs={tmp_path / 'a_file'}: .* is a file, not a folder"):
        vaelib.runs_dir(tmp_path / "a_file")
    monkeypatch.setenv(vaelib.RUNS_ENV, str(tmp_path / "fresh"))  # a folder yet to be made is fine
    assert vaelib.runs_dir() == tmp_path / "fresh"


def _seeded_tiny_vae():
    torch.manual_seed(0)
    return vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 2, 2))


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), -1.0])
def test_a_beta_or_free_bits_that_is_not_a_finite_number_at_least_0_is_named(beta):
    model, x = _seeded_tiny_vae(), torch.rand(3, 1, 2, 2)
    with pytest.raises(ValueError, match=f"beta must be >= 0 and finite .*got {beta}"):
        vaelib.vae_loss(model, x, beta=beta)
    with pytest.raises(ValueError, match=f"beta must be >= 0 and finite .*got {beta}"):
        vaelib.elbo(model, x, beta=beta)
    with pytest.raises(ValueError, match=f"free_bits must be >= 0 and finite .*got {beta}"):
        vaelib.vae_loss(model, x, free_bits=beta)


def test_the_recipe_names_a_nan_beta_instead_of_blaming_the_learning_rate(tmp_path):
    with pytest.raises(ValueError, match="beta must be >= 0 and finite .*got nan"):
        vaelib.train_mnist_model("vae", 2, hidden=(8,), beta=float("nan"), epochs=1, limit=64, runs=tmp_path,
                                 device="cpu", progress=False)
    assert not list(tmp_path.glob("*.pt"))


def test_iwae_loss_with_more_samples_than_fit_in_one_chunk_points_to_iwae_bound():
    """k * N * D decoded pixel values are held at once, with their graph: 2e6 * 16 * 784 would be 100 GB."""
    model = vaelib.VAE(latent_dim=2, hidden=(8,))
    x = torch.rand(16, 1, 28, 28).bernoulli()
    for call in (vaelib.iwae_loss, vaelib.importance_weights):
        with pytest.raises(ValueError, match=r"k = 2000000 importance samples of 16 images .* iwae_bound\(model, x, k, "
                                             r"chunk_size=\.\.\.\)"):
            call(model, x, 2_000_000)
    assert torch.isfinite(vaelib.iwae_loss(model, x, 50))  # the course's sizes are far below the budget
    with pytest.raises(ValueError, match="k must be a whole number >= 1"):
        vaelib.iwae_loss(model, x, 2e6)


def _empty_batch_calls():
    model, x, empty = _seeded_tiny_vae(), torch.rand(3, 1, 2, 2), torch.rand(0, 1, 2, 2)
    m2 = vaelib.M2(latent_dim=2, hidden=(8,), image_shape=(1, 2, 2))
    y, no_labels = torch.tensor([0, 1, 2]), torch.zeros(0, dtype=torch.long)
    q = vaelib.DiagonalNormal(torch.zeros(0, 2), torch.zeros(0, 2))
    return {
        "elbo": lambda: vaelib.elbo(model, empty),
        "vae_loss": lambda: vaelib.vae_loss(model, empty),
        "vae_loss with free bits": lambda: vaelib.vae_loss(model, empty, free_bits=0.5),
        "iwae_bound": lambda: vaelib.iwae_bound(model, empty, k=3),
        "importance_weights": lambda: vaelib.importance_weights(model, empty, k=3),
        "iwae_loss": lambda: vaelib.iwae_loss(model, empty, k=3),
        "conditional_elbo": lambda: vaelib.conditional_elbo(m2.cvae, empty, no_labels),
        "m2_loss, labelled": lambda: vaelib.m2_loss(m2, empty, no_labels, x, alpha=0.1),
        "m2_loss, unlabelled": lambda: vaelib.m2_loss(m2, x, y, empty, alpha=0.1),
        "elbo_of": lambda: vaelib.elbo_of(model, empty, q),
        "optimise_local_posterior": lambda: vaelib.optimise_local_posterior(model, empty, steps=2),
        "inference_gaps": lambda: vaelib.inference_gaps(model, empty, k=2, steps=2, n_elbo=2),
    }


@pytest.mark.parametrize("name", list(_empty_batch_calls()))
def test_every_objective_refuses_an_empty_batch(name):
    """One rule (vaelib/README.md): a batch of zero images is refused, per-image bounds and mean losses alike."""
    with pytest.raises(ValueError, match="got an empty batch"):
        _empty_batch_calls()[name]()


def _with_a_nan_weight(where):
    model = _seeded_tiny_vae()
    with torch.no_grad():
        dict(model.named_parameters())[where][0, 0] = float("nan")
    return model


@pytest.mark.parametrize("where", ["encoder.1.0.weight", "decoder.0.2.weight"])
def test_non_finite_weights_are_named_before_any_sampling(where):
    model, x = _with_a_nan_weight(where), torch.rand(3, 1, 2, 2).bernoulli()
    calls = [lambda: vaelib.iwae_bound(model, x, k=4), lambda: vaelib.optimise_local_posterior(model, x, steps=2),
             lambda: vaelib.inference_gaps(model, x, k=4, steps=2, n_elbo=2)]
    for call in calls:
        with pytest.raises(ValueError, match=f"the model has 1 NaN or infinite weight .*first in {where}"):
            call()


def test_nan_pixels_are_refused_where_the_encoder_is_not_asked():
    model, x = _seeded_tiny_vae(), torch.rand(3, 1, 2, 2)
    x[0, 0, 0, 0] = float("nan")
    q = vaelib.DiagonalNormal(torch.zeros(3, 2), torch.zeros(3, 2))
    with torch.no_grad(), pytest.raises(ValueError, match="1 are NaN"):
        vaelib.iwae_bound(model, x, k=4, proposal=q)
    with pytest.raises(ValueError, match="1 are NaN"):
        vaelib.optimise_local_posterior(model, x, steps=2, init=q)
    with pytest.raises(ValueError, match="1 are NaN"):
        vaelib.elbo_of(model, x, q, n_samples=2)
    bad_init = vaelib.DiagonalNormal(torch.full((3, 2), float("nan")), torch.zeros(3, 2))
    with pytest.raises(ValueError, match="init must hold finite means and log-variances"):
        vaelib.optimise_local_posterior(model, torch.rand(3, 1, 2, 2), steps=2, init=bad_init)


@pytest.mark.parametrize("kwargs, says", [
    (dict(n_elbo=0), "n_elbo must be a whole number >= 1, got 0"),
    (dict(n_elbo=2.5), "n_elbo must be a whole number >= 1, got 2.5"),
    (dict(steps=0), "steps must be a whole number >= 1, got 0"),
    (dict(n_samples=-1), "n_samples must be a whole number >= 1, got -1"),
    (dict(k=0), "k must be a whole number >= 1, got 0"),
    (dict(lr=0.0), "lr must be positive and finite, got 0.0"),
    (dict(lr=float("nan")), "lr must be positive and finite, got nan"),
])
def test_inference_gaps_names_a_bad_count_before_any_work(monkeypatch, kwargs, says):
    monkeypatch.setattr(vaelib.gaps, "optimise_local_posterior", lambda *args, **kw: pytest.fail("it optimised first"))
    with pytest.raises(ValueError, match="^" + re.escape(says)):
        vaelib.inference_gaps(_seeded_tiny_vae(), torch.rand(3, 1, 2, 2).bernoulli(), **kwargs)


def test_make_passes_vaelib_data_on_as_written(tmp_path):
    """make read $VAELIB_DATA as make syntax: 'my$data' became 'myata' and '$(shell ...)' ran. A rule
    added with --eval prints what the chapters would get; nothing is built."""
    import shutil
    from pathlib import Path
    if shutil.which("make") is None:
        pytest.skip("no make")
    root = Path(__file__).resolve().parent.parent
    marker = tmp_path / "make-ran-a-command"
    show = "show-vaelib-data: ; @printf '%s\\n' \"$$VAELIB_DATA\""
    for value, expected in [("my$data", f"{root}/my$data"), ("/data/$HOME/x", "/data/$HOME/x"),
                            (f"$(shell touch {marker})", f"{root}/$(shell touch {marker})"),
                            ("with space/d", f"{root}/with space/d"), ("/abs/a b", "/abs/a b"), ("~/d", "~/d")]:
        result = subprocess.run(["make", "-s", "--no-print-directory", "-C", str(root), "--eval", show,
                                 "show-vaelib-data"], env={**os.environ, "VAELIB_DATA": value},
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        assert result.stdout == expected + "\n", (value, result.stdout)
    assert not marker.exists(), "make ran a command written in VAELIB_DATA"
