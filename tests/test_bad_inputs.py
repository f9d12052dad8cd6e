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


def _tiny_vae():
    torch.manual_seed(0)
    return vaelib.VAE(latent_dim=2, hidden=(8,), image_shape=(1, 2, 2))


@pytest.mark.parametrize("beta", [float("nan"), float("inf"), -1.0])
def test_a_beta_or_free_bits_that_is_not_a_finite_number_at_least_0_is_named(beta):
    model, x = _tiny_vae(), torch.rand(3, 1, 2, 2)
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
    model, x, empty = _tiny_vae(), torch.rand(3, 1, 2, 2), torch.rand(0, 1, 2, 2)
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
    model = _tiny_vae()
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
    model, x = _tiny_vae(), torch.rand(3, 1, 2, 2)
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
        vaelib.inference_gaps(_tiny_vae(), torch.rand(3, 1, 2, 2).bernoulli(), **kwargs)


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
