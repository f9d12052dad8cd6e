import random

import numpy as np
import pytest
import torch

import vaelib
from vaelib.device import PRECISION_ENV, RunBudget, training_dtype


@pytest.fixture
def no_budget_env(monkeypatch):
    for name in ("CI", "VAELIB_SMOKE", "VAELIB_BUDGET"):
        monkeypatch.delenv(name, raising=False)


def _patch_devices(monkeypatch, cuda: bool, mps: bool) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize(
    "cuda, mps, expected",
    [(True, True, "cuda"), (True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")],
)
def test_get_device_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    _patch_devices(monkeypatch, cuda, mps)
    assert vaelib.get_device() == torch.device(expected)


def test_seed_everything_repeats_every_generator():
    def draw():
        return random.random(), np.random.rand(), torch.randn(3)

    vaelib.seed_everything(123)
    a = draw()
    vaelib.seed_everything(123)
    b = draw()
    vaelib.seed_everything(124)
    c = draw()
    assert a[0] == b[0] and a[1] == b[1] and torch.equal(a[2], b[2])
    assert a[0] != c[0] and a[1] != c[1] and not torch.equal(a[2], c[2])


def test_seed_everything_rejects_non_int():
    with pytest.raises(TypeError, match="seed must be an int"):
        vaelib.seed_everything(1.5)


@pytest.mark.parametrize("value", ["true", "1", "yes"])
def test_budget_is_smoke_under_ci(monkeypatch, no_budget_env, value):
    monkeypatch.setenv("CI", value)
    budget = vaelib.run_budget("cuda")
    assert budget.mode == "smoke" and budget.smoke
    assert "CI" in budget.reason


def test_budget_is_smoke_with_vaelib_smoke(monkeypatch, no_budget_env):
    monkeypatch.setenv("VAELIB_SMOKE", "1")
    assert vaelib.run_budget("cpu").mode == "smoke"


@pytest.mark.parametrize("value", ["", "0", "false"])
def test_budget_ignores_ci_set_to_false(monkeypatch, no_budget_env, value):
    monkeypatch.setenv("CI", value)
    assert vaelib.run_budget("cpu").mode == "default"


@pytest.mark.parametrize("device, mode", [("cuda", "full"), ("cpu", "default"), ("mps", "default")])
def test_budget_follows_device(no_budget_env, device, mode):
    assert vaelib.run_budget(device).mode == mode


def test_budget_defaults_to_the_detected_device(monkeypatch, no_budget_env):
    _patch_devices(monkeypatch, cuda=True, mps=False)
    assert vaelib.run_budget().mode == "full"
    _patch_devices(monkeypatch, cuda=False, mps=False)
    assert vaelib.run_budget().mode == "default"


def test_vaelib_budget_overrides_everything(monkeypatch, no_budget_env):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("VAELIB_BUDGET", "full")
    assert vaelib.run_budget("cpu").mode == "full"


def test_bad_vaelib_budget_is_named(monkeypatch, no_budget_env):
    monkeypatch.setenv("VAELIB_BUDGET", "huge")
    with pytest.raises(ValueError, match="VAELIB_BUDGET='huge'"):
        vaelib.run_budget("cpu")


def test_pick_returns_the_value_for_the_mode():
    values = dict(smoke=1, default=10, full=100)
    assert [RunBudget(m, "test").pick(**values) for m in ("smoke", "default", "full")] == [1, 10, 100]
    with pytest.raises(ValueError, match="budget mode"):
        RunBudget("tiny", "test")


def test_each_budget_has_a_wall_clock_cap_and_one_setting_overrides_it(monkeypatch):
    monkeypatch.delenv("VAELIB_MAX_MINUTES", raising=False)
    caps = {mode: RunBudget(mode, "test").max_minutes for mode in ("smoke", "default", "full")}
    assert caps == {"smoke": 0.5, "default": 6.0, "full": 10.0}
    monkeypatch.setenv("VAELIB_MAX_MINUTES", "45")
    assert RunBudget("default", "test").max_minutes == RunBudget("full", "test").max_minutes == 45.0
    monkeypatch.setenv("VAELIB_MAX_MINUTES", "inf")
    assert RunBudget("smoke", "test").max_minutes == float("inf")
    for bad in ("0", "-3", "soon", "nan"):
        monkeypatch.setenv("VAELIB_MAX_MINUTES", bad)
        with pytest.raises(ValueError, match="VAELIB_MAX_MINUTES=.* is not a positive number of minutes"):
            RunBudget("default", "test").max_minutes


def test_a_cell_with_several_runs_shares_one_cap(monkeypatch):
    monkeypatch.setenv("VAELIB_MAX_MINUTES", "0.5")
    budget = RunBudget("full", "test")
    assert budget.run_cap() == 0.5 and budget.run_cap(2) == 0.25 and budget.run_cap(6) * 6 == pytest.approx(0.5)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="runs must be a positive int"):
            budget.run_cap(bad)


@pytest.mark.parametrize("native, device, expected", [
    (True, "cpu", torch.bfloat16), (False, "cpu", torch.float32), (True, "cuda", torch.float32),
    (True, "mps", torch.float32)])
def test_auto_precision_is_bf16_only_on_a_cpu_with_native_bf16(monkeypatch, native, device, expected):
    monkeypatch.delenv(PRECISION_ENV, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: native, raising=False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)
    assert training_dtype(device) == expected


def test_precision_setting_and_argument_override_auto(monkeypatch):
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    monkeypatch.setenv(PRECISION_ENV, "fp32")
    assert training_dtype("cpu") == torch.float32
    assert training_dtype("cpu", "bf16") == torch.bfloat16  # the argument wins over the setting
    monkeypatch.setenv(PRECISION_ENV, "half")
    with pytest.raises(ValueError, match="VAELIB_PRECISION='half' is not one of"):
        training_dtype("cpu")
    with pytest.raises(ValueError, match="precision='fp16' is not one of"):
        training_dtype("cpu", "fp16")


class _FakeLibc:
    def __init__(self, result: int = 1):
        self.calls, self.result = [], result

    def mallopt(self, param, value):
        self.calls.append((param, value))
        return self.result


def _fake_libc(monkeypatch, libc) -> None:
    import vaelib.device as device
    monkeypatch.setattr(device, "_allocator_tuned", False)
    monkeypatch.setattr(device.sys, "platform", "linux")
    monkeypatch.setattr(device.ctypes, "CDLL", lambda name: libc)


def test_keep_freed_memory_sets_both_glibc_thresholds_once(monkeypatch):
    from vaelib.device import KEEP_FREED_BYTES, M_MMAP_THRESHOLD, M_TRIM_THRESHOLD, keep_freed_memory
    libc = _FakeLibc()
    _fake_libc(monkeypatch, libc)
    assert keep_freed_memory() and keep_freed_memory()
    assert libc.calls == [(M_TRIM_THRESHOLD, 256 << 20), (M_MMAP_THRESHOLD, 64 << 20)]  # once, not twice
    assert dict(libc.calls) == KEEP_FREED_BYTES


def test_keep_freed_memory_does_nothing_without_glibc(monkeypatch):
    from vaelib.device import keep_freed_memory
    _fake_libc(monkeypatch, object())  # a C library with no mallopt (musl)
    assert not keep_freed_memory()
    refused = _FakeLibc(result=0)  # mallopt said no
    _fake_libc(monkeypatch, refused)
    assert not keep_freed_memory()
    libc = _FakeLibc()
    _fake_libc(monkeypatch, libc)
    monkeypatch.setattr(vaelib.device.sys, "platform", "darwin")
    assert not keep_freed_memory() and libc.calls == []


def test_fit_keeps_freed_memory_when_it_trains_on_the_cpu(monkeypatch):
    calls = []
    monkeypatch.setattr(vaelib.loop, "keep_freed_memory", lambda: calls.append(1))
    model = torch.nn.Linear(3, 1)
    data = vaelib.InMemoryData(torch.rand(8, 3))
    vaelib.fit(model, lambda m, b: m(b[0]).pow(2).mean(), data, epochs=1, device="cpu", progress=False)
    assert calls == [1]


_STEPS = """
import resource, sys, torch, vaelib
if sys.argv[1] == "keep":
    assert vaelib.device.keep_freed_memory()
torch.manual_seed(0)
model, x = vaelib.VAE(latent_dim=20, hidden=(400,)), torch.rand(128, 1, 28, 28).bernoulli()
optimizer = torch.optim.Adam(model.parameters())
def step():
    optimizer.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = -vaelib.elbo(model, x).elbo.mean()
    loss.backward()
    optimizer.step()
for _ in range(5):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="glibc's allocator")
def test_keep_freed_memory_removes_the_page_faults_of_a_training_step():
    import subprocess
    import sys
    if not vaelib.device.keep_freed_memory():
        pytest.skip("no glibc mallopt here")

    def faults_per_step(mode: str) -> float:  # in a fresh process, so the default allocator is untouched
        out = subprocess.run([sys.executable, "-c", _STEPS, mode], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        return float(out.stdout)

    default, kept = faults_per_step("default"), faults_per_step("keep")
    assert default > 100 and kept < default / 10, (default, kept)  # measured: about 890 and 0 to 16


def test_describe_device_names_the_gpu_or_the_cpu_and_its_threads(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    assert vaelib.describe_device("cuda") == "cuda (Tesla T4)"
    assert vaelib.describe_device(torch.device("mps")) == "mps"
    cpu = vaelib.describe_device("cpu")
    threads = torch.get_num_threads()
    assert cpu.startswith("cpu (") and cpu.endswith(f", {threads} thread{'' if threads == 1 else 's'})")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert vaelib.describe_device("cpu").endswith(", 1 thread)")
