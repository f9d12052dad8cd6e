"""The run cache of vaelib.recipes: one file per complete configuration, never a wrong model."""

import shutil

import pytest
import torch

import vaelib
from vaelib import recipes

BASE = dict(kind="vae", latent_dim=2, hidden=(16,), epochs=1, limit=256, device="cpu", progress=False)

# one change of each field of the configuration, all else as in BASE
VARIANTS = {
    "kind": dict(kind="ae"),
    "latent_dim": dict(latent_dim=3),
    "arch": dict(arch="conv", hidden=(4, 8)),
    "hidden": dict(hidden=(24,)),
    "activation": dict(activation="tanh"),
    "likelihood": dict(likelihood="continuous_bernoulli"),
    "beta": dict(beta=2.0),
    "free_bits": dict(free_bits=0.25),
    "kl_warmup_steps": dict(kl_warmup_steps=2),
    "analytic_kl": dict(analytic_kl=False),
    "val_limit": dict(val_limit=100),  # validation draws random numbers, so later epochs differ
    "dataset": dict(dataset="fashion_mnist"),
    "binarize": dict(binarize="static"),
    "limit": dict(limit=128),
    "batch_size": dict(batch_size=64),
    "lr": dict(lr=1.0001e-3),
    "lr_decay": dict(lr_decay=True),  # prints as 0.001 with :g; the cache must still tell them apart
    "lr_schedule": dict(lr_schedule=[(1, 2e-3)]),
    "adam_eps": dict(adam_eps=1e-4),
    "seed": dict(seed=1),
}


def weights(model):
    return torch.cat([p.detach().flatten() for p in model.parameters()])


@pytest.fixture(scope="module")
def base_run(tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    model, history = vaelib.train_mnist_model(**BASE, runs=runs)
    return runs, model, history


def test_the_same_call_loads_the_run_without_training(base_run):
    runs, model, history = base_run
    (path,) = runs.iterdir()
    again, history_again = vaelib.train_mnist_model(**BASE, runs=runs)
    assert list(runs.iterdir()) == [path]
    assert torch.equal(weights(again), weights(model)) and history_again == history


@pytest.mark.parametrize("field", sorted(VARIANTS))
def test_changing_any_one_field_trains_a_new_run(base_run, tmp_path, field):
    runs, model, _ = base_run
    local = tmp_path / "runs"
    shutil.copytree(runs, local)
    before = set(local.iterdir())
    variant, _ = vaelib.train_mnist_model(**{**BASE, **VARIANTS[field]}, runs=local)
    new = set(local.iterdir()) - before
    assert len(new) == 1, f"changing {field} did not give a run of its own"
    same_shape = sum(p.numel() for p in variant.parameters()) == sum(p.numel() for p in model.parameters())
    if same_shape and field != "val_limit":  # one epoch ends before the first validation
        assert not torch.equal(weights(variant), weights(model)), f"changing {field} returned the stored model"


def test_a_new_vaelib_version_is_a_new_run(base_run, tmp_path, monkeypatch):
    runs, _, _ = base_run
    local = tmp_path / "runs"
    shutil.copytree(runs, local)
    monkeypatch.setattr(recipes, "__version__", "999.0")
    vaelib.train_mnist_model(**BASE, runs=local)
    assert len(list(local.iterdir())) == 2


def test_a_stored_run_of_another_configuration_is_never_returned(base_run, tmp_path):
    # put the base run's file where the beta = 2 run lives: the recipe must refuse it, not load it
    runs, _, _ = base_run
    probe = tmp_path / "probe"
    vaelib.train_mnist_model(**{**BASE, "beta": 2.0}, runs=probe)
    (target,) = probe.iterdir()
    shutil.copy(next(runs.iterdir()), target)
    with pytest.raises(ValueError, match=r"another configuration \(loss: .*'beta': 1\.0.*'beta': 2\.0"):
        vaelib.train_mnist_model(**{**BASE, "beta": 2.0}, runs=probe)


def test_more_epochs_resume_the_stored_run(base_run, tmp_path):
    runs, model, history = base_run
    local = tmp_path / "runs"
    shutil.copytree(runs, local)
    _, longer = vaelib.train_mnist_model(**{**BASE, "epochs": 2}, runs=local)
    assert longer["epoch"] == [1, 2] and longer["loss"][0] == history["loss"][0]
    assert len(list(local.iterdir())) == 1


def test_the_runs_folder_is_one_setting(tmp_path, monkeypatch):
    monkeypatch.delenv(vaelib.RUNS_ENV, raising=False)
    assert vaelib.runs_dir() == vaelib.runs_dir("runs")
    monkeypatch.setenv(vaelib.RUNS_ENV, str(tmp_path / "drive"))
    assert vaelib.runs_dir() == tmp_path / "drive"
    assert vaelib.runs_dir(tmp_path / "arg") == tmp_path / "arg"
    vaelib.train_mnist_model(**BASE)
    assert len(list((tmp_path / "drive").iterdir())) == 1


def test_bad_recipe_settings_are_named():
    with pytest.raises(ValueError, match="limit must be a positive number"):
        vaelib.train_mnist_model(**{**BASE, "limit": 0})
    with pytest.raises(ValueError, match="dataset must be one of"):
        vaelib.train_mnist_model(**{**BASE, "dataset": "cifar"})
    with pytest.raises(ValueError, match="the autoencoder has no KL term"):
        vaelib.train_mnist_model(**{**BASE, "kind": "ae", "beta": 4.0})
    with pytest.raises(ValueError, match="kind must be"):
        vaelib.train_mnist_model(**{**BASE, "kind": "gan"})


def test_the_classifier_is_cached_and_learns(tmp_path):
    a = vaelib.train_mnist_classifier(epochs=1, limit=512, device="cpu", runs=tmp_path, progress=False)
    b = vaelib.train_mnist_classifier(epochs=1, limit=512, device="cpu", runs=tmp_path, progress=False)
    assert len(list(tmp_path.iterdir())) == 1 and torch.equal(weights(a), weights(b))
    test = vaelib.load_mnist("test").subset(slice(0, 1000))
    with torch.no_grad():
        accuracy = (a(test.x).argmax(1) == test.y).float().mean().item()
    assert accuracy > 0.5  # 10 % by chance


def test_validation_is_recorded_per_epoch(tmp_path):
    _, history = vaelib.train_mnist_model(**{**BASE, "epochs": 2, "val_limit": 200}, runs=tmp_path)
    assert len(history["val_loss"]) == 2 and all(100 < v < 600 for v in history["val_loss"])
    with pytest.raises(ValueError, match="val_limit must be a positive number"):
        vaelib.train_mnist_model(**{**BASE, "val_limit": 0}, runs=tmp_path)


def test_lr_decay_falls_linearly_to_zero_and_resumes_with_the_run(tmp_path):
    """lr_decay: lr (1 - step / total steps); a run stopped by the cap continues the schedule."""
    settings = {**BASE, "epochs": 2, "lr_decay": True, "lr": 2e-3, "runs": tmp_path}
    _, history = vaelib.train_mnist_model(**settings, max_minutes=1e-9)  # the cap stops it after epoch 1
    (path,) = tmp_path.glob("vae-*.pt")
    lr_of = lambda: torch.load(path, weights_only=True)["optimizer"]["param_groups"][0]["lr"]  # noqa: E731
    assert history["epoch"] == [1]
    steps = 256 // 128  # per epoch; the stored lr is the one set before the epoch's last step
    assert lr_of() == pytest.approx(2e-3 * (1 - (steps - 1) / (2 * steps)))
    _, history = vaelib.train_mnist_model(**settings)
    assert history["epoch"] == [1, 2]
    assert lr_of() == pytest.approx(2e-3 * (1 - (2 * steps - 1) / (2 * steps)))


def test_burdas_schedule_is_3280_epochs_falling_tenfold():
    schedule = recipes.burda_schedule()
    assert [e for e, _ in schedule] == [1, 3, 9, 27, 81, 243, 729, 2187] and sum(e for e, _ in schedule) == 3280
    assert schedule[0][1] == 1e-3 and schedule[-1][1] == pytest.approx(1e-4, rel=1e-12)
    ratios = [b / a for (_, a), (_, b) in zip(schedule, schedule[1:])]
    assert ratios == pytest.approx([10 ** (-1 / 7)] * 7)
    assert recipes.burda_schedule(2) == schedule[:2]
    # the rate of each 0-based epoch: stage i covers epochs [(3^i - 1) / 2, (3^(i+1) - 1) / 2)
    assert [recipes.stage_lr(schedule, e) for e in (0, 1, 3, 4, 12, 13, 1092, 1093, 3279)] == [
        schedule[i][1] for i in (0, 1, 1, 2, 2, 3, 6, 7, 7)]


def test_an_lr_schedule_sets_each_epochs_rate_and_resumes(tmp_path):
    settings = {**BASE, "epochs": 3, "lr_schedule": [(1, 2e-3), (2, 5e-4)], "adam_eps": 1e-4, "runs": tmp_path}
    vaelib.train_mnist_model(**settings, max_minutes=1e-9)  # the cap stops it after epoch 1
    (path,) = tmp_path.glob("vae-*.pt")
    state = lambda: torch.load(path, weights_only=True)  # noqa: E731
    assert state()["epoch"] == 1 and state()["optimizer"]["param_groups"][0]["lr"] == 2e-3
    assert state()["optimizer"]["param_groups"][0]["eps"] == 1e-4
    _, history = vaelib.train_mnist_model(**settings)
    assert history["epoch"] == [1, 2, 3] and state()["optimizer"]["param_groups"][0]["lr"] == 5e-4
    assert state()["config"]["optimizer"]["lr_schedule"] == [[1, 2e-3], [2, 5e-4]]


@pytest.mark.parametrize("change, match", [
    (dict(lr_schedule=[(1, 1e-3)], epochs=2), "more than the 1 epochs lr_schedule covers"),
    (dict(lr_schedule=[(1, 1e-3)], lr_decay=True), "not both"),
    (dict(lr_schedule=[(0, 1e-3)]), "at least one stage"),
    (dict(lr_schedule=[(1.5, 1e-3)]), "at least one stage"),
    (dict(lr_schedule=[(1, -1e-3)]), "at least one stage"),
    (dict(lr_schedule=[]), "at least one stage"),
    (dict(lr_schedule=[1e-3]), "list of .epochs, lr. pairs"),
    (dict(adam_eps=0.0), "adam_eps must be a positive number"),
    (dict(activation="gelu"), "activation must be one of"),
])
def test_bad_schedules_and_optimizer_settings_are_named(tmp_path, change, match):
    with pytest.raises(ValueError, match=match):
        vaelib.train_mnist_model(**{**BASE, **change}, runs=tmp_path)
