"""The command line, end to end in smoke mode: train a tiny model, evaluate it, fail clearly."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import vaelib
from vaelib.cli import main


@pytest.fixture
def smoke(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("VAELIB_BUDGET", raising=False)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_train_then_evaluate_a_vae(smoke, tmp_path, capsys):
    out = tmp_path / "vae.pt"
    code, stdout, stderr = run(capsys, "train", "--model", "vae", "--arch", "mlp", "--latent-dim", "4",
                               "--hidden", "64", "--limit", "512", "--out", str(out))
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert summary["epochs"] == 1 and summary["model"] == "vae" and out.is_file()
    assert "epoch 1/1" in stderr and "budget smoke" in stderr
    # the closing test evaluation: its own timed line, and in the summary
    (line,) = [s for s in stderr.splitlines() if s.startswith("test evaluation: ")]
    assert "ELBO" in line and "on 500 test images" in line and " s (--no-eval skips it)" in line
    assert summary["test_n"] == 500 and -800 < summary["test_elbo"] < 0 and summary["test_elbo_se"] > 0
    assert summary["eval_seconds"] >= 0 and 0 <= summary["epoch_seconds"] <= summary["seconds"] + 0.05
    code, stdout, stderr = run(capsys, "evaluate", str(out), "--k", "20", "--limit", "200")
    assert code == 0, stderr
    result = json.loads(stdout)
    assert stdout.count("\n") == 1  # one JSON line
    assert result["n"] == 200 and result["k"] == 20 and result["latent_dim"] == 4
    assert 0 < result["test_nll"] < -result["test_elbo"]  # the importance-sampled bound is tighter
    assert result["test_nll_se"] > 0


def test_train_and_evaluate_a_conv_autoencoder(smoke, tmp_path, capsys):
    out = tmp_path / "ae.pt"
    code, _, stderr = run(capsys, "train", "--model", "ae", "--arch", "conv", "--latent-dim", "2",
                          "--hidden", "4", "8", "--limit", "256", "--lr-decay", "--out", str(out))
    assert code == 0, stderr
    assert isinstance(vaelib.load_model(out), vaelib.Autoencoder)
    assert "test evaluation: reconstruction loss" in stderr
    (run_file,) = (tmp_path / "ae.pt.runs").glob("ae-*.pt")  # the recipe's run, with the decay in its configuration
    assert "linear to 0" in torch.load(run_file, weights_only=True)["config"]["optimizer"]["lr_decay"]
    code, stdout, _ = run(capsys, "evaluate", str(out), "--limit", "100")
    assert code == 0 and json.loads(stdout)["test_recon_loss"] > 0


def test_missing_and_incompatible_checkpoints_fail_clearly(smoke, tmp_path, capsys):
    code, stdout, stderr = run(capsys, "evaluate", str(tmp_path / "nothing.pt"))
    assert code == 2 and stdout == "" and "no model checkpoint at" in stderr and "Traceback" not in stderr
    torch.save({"something": torch.zeros(2)}, tmp_path / "other.pt")
    code, _, stderr = run(capsys, "evaluate", str(tmp_path / "other.pt"))
    assert code == 2 and "is not a vaelib model checkpoint" in stderr


def test_missing_data_fails_clearly(smoke, tmp_path, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    code, _, stderr = run(capsys, "train", "--data", str(tmp_path), "--out", str(tmp_path / "m.pt"))
    assert code == 2 and "VAELIB_DATA" in stderr and "Traceback" not in stderr


def test_the_console_script_is_installed_beside_python(smoke):
    import shutil
    from pathlib import Path
    script = shutil.which("vaelib", path=str(Path(sys.executable).parent))
    assert script, "pip install -e . (make install) puts a vaelib script beside python"
    result = subprocess.run([script, "train", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout.startswith("usage: vaelib train")
    assert "(default: 128)" in result.stdout


def test_python_dash_m_entry_point(smoke):
    result = subprocess.run([sys.executable, "-m", "vaelib", "--help"], capture_output=True, text=True)
    assert result.returncode == 0 and "train" in result.stdout and "evaluate" in result.stdout


def test_a_capped_run_says_so_and_the_same_command_continues(smoke, tmp_path, capsys):
    out = tmp_path / "vae.pt"
    args = ["train", "--latent-dim", "2", "--hidden", "16", "--limit", "256", "--epochs", "3",
            "--max-minutes", "1e-9", "--out", str(out)]
    code, stdout, _ = run(capsys, *args)
    summary = json.loads(stdout.splitlines()[-1])
    assert code == 0 and summary["epochs"] == 1 and summary["epochs_asked"] == 3 and not summary["complete"]
    assert "Stopped at the 1e-09-minute cap" in stdout and "run it again to continue" in stdout
    code, stdout, _ = run(capsys, *args)
    assert json.loads(stdout.splitlines()[-1])["epochs"] == 2


def test_ctrl_c_ends_with_one_line_naming_the_checkpoint(tmp_path):
    out = tmp_path / "vae.pt"
    env = {**os.environ, "CI": "true"}
    proc = subprocess.Popen([sys.executable, "-m", "vaelib", "train", "--latent-dim", "2", "--hidden", "16",
                             "--limit", "1024", "--epochs", "500", "--max-minutes", "5", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            # a shell without job control starts background jobs with SIGINT ignored, and
                            # Python then never raises KeyboardInterrupt: give the child the default handling
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    runs = tmp_path / "vae.pt.runs"
    try:
        deadline = time.monotonic() + 60
        while not list(runs.glob("*.pt")) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert list(runs.glob("*.pt")), "no epoch finished within a minute"
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, stderr[-3000:]
    assert "Traceback" not in stderr, stderr[-3000:]
    (checkpoint,) = runs.glob("*.pt")
    assert stderr.strip().splitlines()[-1] == f"interrupted: the same command continues from {checkpoint} (the last finished epoch)"
    assert not list(runs.glob("*.lock")) and not list(runs.glob("*.tmp"))


def _one_error_line(code, stdout, stderr):
    """Exit 2, nothing on stdout, and the error as the last line of stderr, the only one of its kind
    (train first says what it trains, and a download says it starts)."""
    lines = stderr.strip().splitlines()
    return (code == 2 and stdout == "" and lines[-1].startswith("error: ") and "Traceback" not in stderr
            and sum(line.startswith("error: ") for line in lines) == 1)


@pytest.mark.parametrize("argv, says", [
    (["--batch-size", "0"], "--batch-size must be a whole number >= 1, got 0"),
    (["--epochs", "0"], "--epochs must be a whole number >= 1, got 0"),
    (["--limit", "-5"], "--limit must be a whole number >= 1, got -5"),
    (["--lr", "0"], "--lr must be a finite number > 0, got 0.0"),
])
def test_impossible_settings_are_one_line_before_any_training(smoke, tmp_path, capsys, argv, says):
    code, stdout, stderr = run(capsys, "train", "--out", str(tmp_path / "m.pt"), *argv)
    assert _one_error_line(code, stdout, stderr) and says in stderr
    assert not (tmp_path / "m.pt.runs").exists()


def test_an_out_that_cannot_be_written_is_refused_before_training(smoke, tmp_path, capsys):
    (tmp_path / "a_file").write_text("")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    cases = [(str(tmp_path) + "/runs/", "is a folder"), (str(tmp_path), "is a folder"),
             (str(tmp_path / "a_file" / "m.pt"), "a_file is a file, not a folder")]
    if os.geteuid() != 0:  # root writes anywhere
        cases.append((str(locked / "m.pt"), "no permission to write in"))
    for out, says in cases:
        code, stdout, stderr = run(capsys, "train", "--out", out)
        assert _one_error_line(code, stdout, stderr) and says in stderr, (out, stderr)
    assert not list(tmp_path.glob("*.runs"))


def test_damaged_checkpoints_and_data_are_one_line(smoke, tmp_path, capsys, monkeypatch):
    model = vaelib.VAE(latent_dim=2, hidden=(8,))
    good = vaelib.save_model(model, tmp_path / "good.pt")
    payload = torch.load(good, weights_only=True)
    for name, edit in [("extra", lambda c: c.update(extra=1)), ("missing", lambda c: c.pop("latent_dim"))]:
        edited = {**payload, "config": dict(payload["config"])}
        edit(edited["config"])
        vaelib.checkpoint.atomic_save(edited, tmp_path / f"{name}.pt")  # a fresh checksum: the content is wrong
        code, stdout, stderr = run(capsys, "evaluate", str(tmp_path / f"{name}.pt"))
        assert _one_error_line(code, stdout, stderr) and "holds a model configuration with keys" in stderr

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo this should never run",))

    torch.save({"format": "vaelib-model-1", "x": Evil()}, tmp_path / "evil.pt")
    code, stdout, stderr = run(capsys, "evaluate", str(tmp_path / "evil.pt"))
    assert _one_error_line(code, stdout, stderr) and "names the Python object posix.system" in stderr
    assert "weights_only=False unless you made it yourself" in stderr and "\x1b" not in stderr
    (tmp_path / "cut.pt").write_bytes(good.read_bytes()[:500])
    code, stdout, stderr = run(capsys, "evaluate", str(tmp_path / "cut.pt"))
    assert _one_error_line(code, stdout, stderr) and "the file is damaged" in stderr

    raw = tmp_path / "data" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte", "train-images-idx3-ubyte"):
        (raw / name).symlink_to(vaelib.data_dir() / "MNIST" / "raw" / name)
    header = bytearray((vaelib.data_dir() / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").read_bytes())
    header[0:4] = b"\x00\x00\x09\x09"
    (raw / "t10k-labels-idx1-ubyte").unlink()
    (raw / "t10k-labels-idx1-ubyte").write_bytes(bytes(header))
    code, stdout, stderr = run(capsys, "evaluate", str(good), "--data", str(tmp_path / "data"))
    assert _one_error_line(code, stdout, stderr) and "t10k-labels-idx1-ubyte is damaged" in stderr


def test_missing_data_is_one_line_naming_the_setting_used(smoke, tmp_path, capsys, monkeypatch):
    import urllib.error
    import urllib.request

    def refuse(*args, **kwargs):
        raise urllib.error.URLError("network disabled by the test")

    monkeypatch.setattr(urllib.request, "urlopen", refuse)
    code, stdout, stderr = run(capsys, "train", "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "m.pt"))
    assert _one_error_line(code, stdout, stderr) and "given as root=, or as --data on the command line" in stderr
    assert not (tmp_path / "nowhere").exists()


def test_a_save_that_fails_is_one_line(smoke, tmp_path, capsys, monkeypatch):
    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(vaelib.cli, "save_model", full_disk)
    code, stdout, stderr = run(capsys, "train", "--out", str(tmp_path / "m.pt"), "--limit", "64")
    assert _one_error_line(code, stdout, stderr) and "No space left on device" in stderr


def test_evaluate_reads_the_training_runs_vaelib_keeps(smoke, tmp_path, capsys):
    model, _ = vaelib.train_mnist_model("vae", 2, hidden=(16,), epochs=1, limit=128, runs=tmp_path / "runs",
                                        device="cpu", progress=False)
    (run_file,) = (tmp_path / "runs").glob("vae-*.pt")  # what a chapter leaves in book/runs
    loaded = vaelib.load_model(run_file)
    assert loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    code, stdout, stderr = run(capsys, "evaluate", str(run_file), "--limit", "20", "--k", "2")
    assert code == 0 and json.loads(stdout)["latent_dim"] == 2
    vaelib.train_mnist_classifier(epochs=1, limit=128, runs=tmp_path / "runs", device="cpu", progress=False)
    (classifier,) = (tmp_path / "runs").glob("classifier-*.pt")
    code, stdout, stderr = run(capsys, "evaluate", str(classifier))
    assert _one_error_line(code, stdout, stderr) and "is a training checkpoint of a classifier" in stderr


# --- issue 32: the CLI under faults -------------------------------------------------------

def _torch_save_failing_for(prefix):
    """torch.save that fails as PyTorch does on a full disk (a RuntimeError, not an OSError) for files
    whose name starts with ``prefix``."""
    real = torch.save

    def save(obj, f, *args, **kwargs):
        if os.path.basename(str(f)).startswith(prefix):
            raise RuntimeError("[enforce fail at inline_container.cc:672] . PytorchStreamWriter failed writing "
                               "file data/0: file write failed: No space left on device")
        return real(obj, f, *args, **kwargs)
    return save


@pytest.mark.parametrize("failing, named", [("vae-", "m.pt.runs"), ("m.pt.", "m.pt")])
def test_a_write_that_torch_fails_with_a_runtime_error_is_one_line(smoke, tmp_path, capsys, monkeypatch,
                                                                   failing, named):
    """The run's checkpoint after an epoch, or the model saved at the end: PyTorch says RuntimeError."""
    monkeypatch.setattr(torch, "save", _torch_save_failing_for(failing))
    code, stdout, stderr = run(capsys, "train", "--latent-dim", "2", "--hidden", "8", "--limit", "64",
                               "--out", str(tmp_path / "m.pt"))
    assert _one_error_line(code, stdout, stderr) and "No space left on device" in stderr, stderr
    assert f"could not write {tmp_path / named}" in stderr
    assert not list(tmp_path.rglob("*.tmp")) and not list(tmp_path.rglob("*.lock"))


def test_a_real_write_failure_is_one_line(tmp_path):
    """A file-size limit (ulimit -f) makes PyTorch's own writer fail: "unexpected pos ...", a RuntimeError."""
    import resource

    def limit_file_size():
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # then a write past the limit fails with EFBIG
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, 4096))

    result = subprocess.run([sys.executable, "-m", "vaelib", "train", "--latent-dim", "2", "--hidden", "8",
                             "--limit", "64", "--out", str(tmp_path / "m.pt")], capture_output=True, text=True,
                            env={**os.environ, "CI": "true", "PYTHONDONTWRITEBYTECODE": "1"},
                            preexec_fn=limit_file_size, timeout=120)
    assert _one_error_line(result.returncode, result.stdout, result.stderr), result.stderr[-3000:]
    assert f"could not write {tmp_path / 'm.pt.runs'}" in result.stderr


_INTERRUPT_WHILE_TORCH_LOADS = '''
import os, signal, sys

class InterruptTorch:
    """Send this process Ctrl-C (SIGINT) as `import torch` starts: as a user who presses it at once."""
    def find_spec(self, name, path=None, target=None):
        if name == "torch":
            sys.meta_path.remove(self)
            os.kill(os.getpid(), signal.SIGINT)
        return None

sys.meta_path.insert(0, InterruptTorch())
'''


@pytest.mark.parametrize("command", ["python -m vaelib", "vaelib"])
def test_ctrl_c_while_torch_loads_is_one_line_and_exit_130(tmp_path, command):
    import shutil
    from pathlib import Path
    (tmp_path / "sitecustomize.py").write_text(_INTERRUPT_WHILE_TORCH_LOADS)
    argv = ([sys.executable, "-m", "vaelib"] if command == "python -m vaelib"
            else [shutil.which("vaelib", path=str(Path(sys.executable).parent))])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")])}
    start = time.monotonic()
    result = subprocess.run(argv + ["evaluate", str(tmp_path / "m.pt")], capture_output=True, text=True, env=env,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), timeout=60)
    assert result.returncode == 130, result.stderr[-3000:]
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert result.stderr.strip().splitlines() == ["interrupted while starting: nothing was done"]
    assert time.monotonic() - start < 10



@pytest.mark.parametrize("argv, says", [
    (["--latent-dim", str(10**7)], "--latent-dim must be at most 4096, got 10000000"),
    (["--hidden", str(10**7)], "--hidden sizes must be whole numbers from 1 to 100000, got 10000000"),
    (["--hidden", "0"], "--hidden sizes must be whole numbers from 1 to 100000, got 0"),
    (["--hidden", "100000", "100000"], "(mlp) makes a model of 20,163,200,824 weights, 80.7 GB as float32"),
    (["--arch", "conv", "--hidden", "5000", "5000"], "the command trains at most 200,000,000 weights"),
    (["--lr", "inf"], "--lr must be a finite number > 0, got inf"),
    (["--lr", "nan"], "--lr must be a finite number > 0, got nan"),
    (["--lr", "-1"], "--lr must be a finite number > 0, got -1.0"),
])
def test_sizes_that_cannot_fit_and_rates_that_cannot_train_are_refused_up_front(smoke, tmp_path, capsys,
                                                                                monkeypatch, argv, says):
    monkeypatch.setattr(vaelib.cli, "train_mnist_model", lambda *args, **kwargs: pytest.fail("it trained"))
    code, stdout, stderr = run(capsys, "train", "--out", str(tmp_path / "m.pt"), *argv)
    assert _one_error_line(code, stdout, stderr) and says in stderr, stderr
    assert not (tmp_path / "m.pt.runs").exists()


def test_the_size_bounds_are_in_the_help(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "at most 4096" in text and "at most 100000 each" in text and "200 million weights" in text




def test_an_out_whose_runs_folder_is_a_file_is_refused_before_the_data_loads(smoke, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(vaelib.cli, "train_mnist_model", lambda *args, **kwargs: pytest.fail("it loaded data"))
    (tmp_path / "m.pt.runs").write_text("")
    code, stdout, stderr = run(capsys, "train", "--out", str(tmp_path / "m.pt"))
    assert _one_error_line(code, stdout, stderr), stderr
    assert f"{tmp_path / 'm.pt.runs'}, where the run is kept between calls, is a file" in stderr


def test_evaluate_says_what_a_path_that_is_not_a_checkpoint_file_is(smoke, tmp_path, capsys):
    (tmp_path / "loop_a").symlink_to(tmp_path / "loop_b")
    (tmp_path / "loop_b").symlink_to(tmp_path / "loop_a")
    (tmp_path / "dangling").symlink_to(tmp_path / "gone.pt")
    os.mkfifo(tmp_path / "pipe")  # opening it would wait for a writer forever
    for path, says in [(tmp_path, "is a folder, not a model checkpoint"),
                       (tmp_path / "loop_a", "is a symlink loop"),
                       (tmp_path / "dangling", f"is a symlink to {tmp_path / 'gone.pt'}, which does not exist"),
                       (tmp_path / "pipe", "is not a regular file (a named pipe)")]:
        code, stdout, stderr = run(capsys, "evaluate", str(path))
        assert _one_error_line(code, stdout, stderr) and f"{path} {says}" in stderr, stderr
        assert "train one" not in stderr


def test_train_no_eval_skips_the_closing_evaluation(smoke, tmp_path, capsys, monkeypatch):
    import vaelib.cli

    def no_bounds(*args, **kwargs):
        raise AssertionError("--no-eval evaluated the model")

    monkeypatch.setattr(vaelib.cli, "evaluate_bounds", no_bounds)
    code, stdout, stderr = run(capsys, "train", "--model", "vae", "--latent-dim", "2", "--hidden", "16",
                               "--limit", "256", "--no-eval", "--out", str(tmp_path / "v.pt"))
    assert code == 0, stderr
    summary = json.loads(stdout)
    assert "test evaluation" not in stderr and "test_elbo" not in summary and "eval_seconds" not in summary
