"""benchmarks/reproduce.py and the Reproductions page: long runs that resume, results that are recorded
as measured, and a page that shows exactly the committed results."""

import json
import math
import re
from pathlib import Path

import jupytext
import nbformat
import pytest

from benchmarks import reproduce
from tools import notebooks

ROOT = Path(__file__).resolve().parent.parent
PAGE = ROOT / "book" / "reproductions.md"


@pytest.fixture
def tiny_protocols(tmp_path, monkeypatch):
    """The protocols' code on toy sizes: results and runs in tmp_path, a few small epochs."""
    monkeypatch.setattr(reproduce, "RESULTS", tmp_path / "results")
    monkeypatch.setattr(reproduce, "KEPT", tmp_path / "kept")
    tiny_burda = dict(kind="vae", latent_dim=2, hidden=(8,), activation="tanh", iwae_k=1, binarize="dynamic",
                      batch_size=50, lr_schedule=[(1, 1e-3), (2, 5e-4)], adam_eps=1e-4, seed=0, precision="fp32",
                      limit=200)
    monkeypatch.setattr(reproduce, "burda_recipe", lambda k: {**tiny_burda, "iwae_k": k})
    monkeypatch.setattr(reproduce, "STAGE_ENDS", [1, 3])
    monkeypatch.setattr(reproduce, "BURDA_EPOCHS", 3)
    monkeypatch.setattr(reproduce, "PROGRESS_IMAGES", 50)
    monkeypatch.setattr(reproduce, "EVAL_K", 5)
    monkeypatch.setattr(reproduce, "t4_hours", lambda k: 0.0)
    monkeypatch.setattr(reproduce, "score", lambda model, data, n, k=5, seed=1: _score(model, data, n or 100))
    monkeypatch.setattr(reproduce, "M2_RECIPE", dict(n_labels=20, weighting="paper", latent_dim=2, hidden=(8,),
                                                     activation="softplus", init="small", binarize=None, epochs=2,
                                                     batch_size=128, lr=1e-3, seed=0, limit=300))
    monkeypatch.setattr(reproduce, "M2_PROTOCOLS", {"m2": 2, "m2-longer": 3})
    monkeypatch.setattr(reproduce, "BASELINE_KEYS", ("n_labels", "hidden", "activation", "init", "binarize",
                                                     "batch_size", "lr", "seed", "limit"))
    return tmp_path / "runs"


def _score(model, data, n):
    import vaelib
    r = vaelib.evaluate_bounds(model, data.subset(slice(0, n)), k=5, max_minutes=math.inf)
    return {key: r[key] for key in ("nll", "nll_se", "elbo", "elbo_se", "k", "n")} | {"seconds": 0.0}


def test_a_capped_burda_run_records_how_far_it_got_and_the_next_call_finishes_it(tiny_protocols, capsys):
    first = reproduce.run_burda("burda-vae", max_minutes=1e-9, runs=tiny_protocols)  # one epoch, then the cap
    assert first["epochs_done"] == 1 and not first["complete"] and "final" not in first
    assert [p["epoch"] for p in first["progress"]] == [1]  # the end of the first stage, scored
    assert first["seconds_left"] == pytest.approx(first["seconds_per_epoch"] * 2, abs=1)
    assert first["sessions"][0]["epochs"] == [1, 1]
    second = reproduce.run_burda("burda-vae", max_minutes=math.inf, runs=tiny_protocols)
    assert second["epochs_done"] == 3 and second["complete"]
    assert [p["epoch"] for p in second["progress"]] == [1, 3] and second["progress"][0] == first["progress"][0]
    assert second["final"]["n"] == 100 and [s["epochs"] for s in second["sessions"]] == [[1, 1], [2, 3]]
    on_disk = json.loads((reproduce.RESULTS / "burda-vae.json").read_text())
    assert on_disk["final"] == second["final"]
    third = reproduce.run_burda("burda-vae", max_minutes=math.inf, runs=tiny_protocols)  # nothing left to do
    assert third["sessions"] == second["sessions"] and third["final"] == second["final"]


def test_a_kept_checkpoint_lets_a_fresh_runs_folder_continue_the_run(tiny_protocols, tmp_path):
    reproduce.run_burda("burda-vae", max_minutes=1e-9, runs=tiny_protocols)
    reproduce.keep("burda-vae", tiny_protocols)
    (kept,) = (tmp_path / "kept").glob("vae-*.pt")
    fresh = tmp_path / "fresh-runs"  # another machine: the results file and the kept checkpoint, no runs folder
    second = reproduce.run_burda("burda-vae", max_minutes=math.inf, runs=fresh)
    assert (fresh / kept.name).exists() and second["complete"]
    assert [s["epochs"] for s in second["sessions"]] == [[1, 1], [2, 3]]  # it continued from epoch 1
    with pytest.raises(SystemExit, match="no checkpoint of this run"):
        reproduce.keep("burda-iwae5", fresh)


def test_m2_records_each_draw_its_curve_and_a_paired_baseline(tiny_protocols, monkeypatch):
    monkeypatch.setattr(reproduce, "LABEL_SEEDS", (0, 1))
    reproduce.run_m2(max_minutes=math.inf, runs=tiny_protocols, seeds=(0,))
    partial = json.loads((reproduce.RESULTS / "m2.json").read_text())
    (draw,) = partial["draws"]
    assert draw["complete"] and [e for e, _ in draw["curve"]] == [1, 2] and draw["curve"][-1][1] == draw["error"][0]
    assert draw["difference"][0] == pytest.approx(draw["error"][0] - draw["baseline_error"][0])
    assert not partial["complete"] and partial["summary"]["draws"] == 1 and partial["summary"]["error_sd"] is None
    reproduce.run_m2(max_minutes=math.inf, runs=tiny_protocols, seeds=(1,))
    both = json.loads((reproduce.RESULTS / "m2.json").read_text())
    assert both["complete"] and [d["label_seed"] for d in both["draws"]] == [0, 1]
    errors = [d["error"][0] for d in both["draws"]]
    assert both["summary"]["error_mean"] == pytest.approx(sum(errors) / 2)
    assert both["summary"]["error_sd"] == pytest.approx(abs(errors[0] - errors[1]) / math.sqrt(2))
    # m2-longer continues the same runs: the first two epochs are m2's, one more is trained
    reproduce.run_m2(max_minutes=math.inf, runs=tiny_protocols, seeds=(0,), name="m2-longer")
    (longer,) = json.loads((reproduce.RESULTS / "m2-longer.json").read_text())["draws"]
    assert longer["curve"][:2] == both["draws"][0]["curve"] and [e for e, _ in longer["curve"]] == [1, 2, 3]
    assert longer["complete"] and longer["curve"][-1][1] == longer["error"][0]


def test_the_page_shows_the_committed_results():
    """The stored page was executed from the results files as they are now (re-run
    `python -m benchmarks.reproduce page` after a run updates them)."""
    nb = nbformat.read(PAGE.with_suffix(".ipynb"), as_version=4)
    first = next(c for c in nb.cells if c.cell_type == "code" and "RESULTS" in c.source)
    printed = "".join(o.get("text", "") for o in first.outputs)
    files = sorted((ROOT / "benchmarks" / "results").glob("*.json"))
    assert files, "no results in benchmarks/results"
    for path in files:
        updated = json.loads(path.read_text())["updated"]
        assert f"{path.stem} (updated {updated})" in printed, f"{PAGE.name} predates {path.name}: execute it again"


def test_the_page_trains_nothing_and_make_notebooks_and_nbval_leave_it_alone(monkeypatch):
    code = "\n".join(c.source for c in jupytext.read(PAGE).cells if c.cell_type == "code")
    assert not re.search(r"vaelib\.(train_\w+|fit|evaluate|evaluate_bounds|iwae_bound)\(", code), "the page must only read results"
    assert PAGE.name in notebooks.NOT_EXECUTED
    monkeypatch.setattr(notebooks, "execute", lambda *a, **k: pytest.fail("make notebooks executed the page"))
    assert notebooks.sync([PAGE], force=True) == 0  # regenerated around its stored outputs, not executed
    assert "--ignore=book/reproductions.ipynb" in (ROOT / "Makefile").read_text()
