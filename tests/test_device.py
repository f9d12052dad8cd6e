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
