"""Run the papers' protocols to their end, and keep what they give for the Reproductions page.

    python -m benchmarks.reproduce list                       # the protocols and how far each has run
    python -m benchmarks.reproduce NAME [--max-minutes M]     # train (or continue) NAME, evaluate, record
    python -m benchmarks.reproduce page                       # execute book/reproductions.md into its .ipynb

(from the repository root; ``make reproduce NAME=...`` runs the second, ``make reproduce`` runs
``m2``, then ``burda-vae``, then the page.) The protocols (`PROTOCOLS`):

- ``burda-vae``, ``burda-iwae5``, ``burda-iwae50``: the one-stochastic-layer VAE of Burda et al.
  (2016), 784-200-200-50 with tanh, trained on the ELBO (k = 1) or on L_k, on dynamically
  binarised MNIST, batch 20, Adam (epsilon 1e-4) with their schedule of 3 280 epochs
  (`vaelib.recipes.burda_schedule`); scored by -L_5000 on the 10 000 test images.
- ``m2``: M2 of Kingma et al. (2014) with 100 labels, the paper's weighting, for three label
  draws, beside the same classifier trained on the 100 labels alone (`M2_RECIPE`), 50 epochs;
  ``m2-longer``: the same runs continued to 200 epochs.

Every run is a cached `vaelib` recipe: it writes a checkpoint after every epoch into the runs
folder (``--runs``, else ``$VAELIB_RUNS``, else ``runs/``), so the same command continues where
the last one stopped, in this session or a later one, and a finished run is only loaded.
``--max-minutes`` bounds one call (default: none); a run stopped by it, by Ctrl-C or by a
killed machine loses at most the epoch it was in. ``--keep`` copies a Burda-protocol run's
checkpoint to ``benchmarks/checkpoints/`` (committed: a run of hours outlives a session's
machine), and every call first copies a kept checkpoint back into the runs folder where that
folder has fewer epochs, so a fresh clone continues the run. Training runs on one CPU thread for the
batch-20 protocols (their steps are too small to split), and in float32.

What a call has measured goes to ``benchmarks/results/NAME.json`` (committed): epochs done,
training time, seconds per epoch, device, the test numbers with their standard errors, and,
for an unfinished run, how long the rest would take at the measured speed. The page
``book/reproductions.md`` reads only those files; ``make notebooks`` and nbval skip it.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

import vaelib
from benchmarks.t4_estimate import step_flops, t4_step_seconds
from vaelib.device import cpu_name
from vaelib.recipes import burda_schedule

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results"
KEPT = ROOT / "benchmarks" / "checkpoints"  # committed copies of unfinished long runs, to continue elsewhere

BURDA_EPOCHS = sum(e for e, _ in burda_schedule())  # 3 280
STAGE_ENDS = [sum(e for e, _ in burda_schedule()[: i + 1]) for i in range(8)]  # 1, 4, 13, ..., 3280
EVAL_K = 5000
PROGRESS_IMAGES = 1000  # the seeded random test subset scored at every stage's end


def burda_recipe(k: int) -> dict:
    """`vaelib.train_mnist_model` arguments of Burda et al.'s one-stochastic-layer model, trained on L_k."""
    return dict(kind="vae", latent_dim=50, hidden=(200, 200), activation="tanh", likelihood="bernoulli",
                iwae_k=k, binarize="dynamic", batch_size=20, lr_schedule=burda_schedule(), adam_eps=1e-4,
                seed=0, precision="fp32")


PROTOCOLS = {
    "burda-vae": {"k": 1, "paper": 86.76, "source": "Burda et al. (2016), Table 1: VAE, one stochastic layer, k = 1"},
    "burda-iwae5": {"k": 5, "paper": 85.54, "source": "Burda et al. (2016), Table 1: IWAE, one stochastic layer, k = 5"},
    "burda-iwae50": {"k": 50, "paper": 84.78, "source": "Burda et al. (2016), Table 1: IWAE, one stochastic layer, k = 50"},
}


def machine() -> dict:
    """Where a number was measured: device, CPU, threads, torch."""
    device = vaelib.get_device()
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"device": device.type, "device_name": name, "threads": torch.get_num_threads(),
            "torch": torch.__version__.split("+")[0]}


def git_commit() -> str | None:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, check=True,
                              capture_output=True, text=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return None


def read_result(name: str) -> dict:
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def write_result(name: str, result: dict) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    result["updated"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n")
    os.replace(tmp, path)
    return path


def random_subset(total: int, n: int) -> torch.Tensor:
    """A seeded uniform random ``n`` of ``total`` indices, sorted: the same images in every call (MNIST's
    test set is not in random order, its first half the easier one, so a prefix would flatter a model)."""
    return torch.randperm(total, generator=torch.Generator().manual_seed(0))[:n].sort().values


def score(model, data, n: int | None, k: int = EVAL_K, seed: int = 1) -> dict:
    """-L_k and the ELBO on ``n`` random images of ``data`` (all of them for None), with standard errors and time."""
    if n is not None:
        data = data.subset(random_subset(len(data), n))
    vaelib.seed_everything(seed)
    start = time.perf_counter()
    r = vaelib.evaluate_bounds(model, data, k=k, batch_size=100, max_minutes=math.inf)
    return {**{key: r[key] for key in ("nll", "nll_se", "elbo", "elbo_se", "k", "n")},
            "seconds": round(time.perf_counter() - start, 1)}


def t4_hours(k: int) -> float:
    """The estimated hours of all 3 280 epochs on a T4 (`benchmarks.t4_estimate`: FLOPs of a batch-20 step
    at 4 TFLOP/s, or 1.5 ms per step, whichever is more)."""
    model = vaelib.VAE(latent_dim=50, hidden=(200, 200), activation="tanh")
    flops = step_flops(model, lambda m, b: vaelib.iwae_loss(m, b[0], k), batch=20)
    return BURDA_EPOCHS * 3000 * t4_step_seconds(flops) / 3600


def record_session(result: dict, first: int, history: dict) -> None:
    """Add this call's epochs, time and machine to ``result["sessions"]`` (a run may span machines)."""
    epochs = history.get("epoch", [])
    new = [i for i, e in enumerate(epochs) if e > first]
    if new:
        result.setdefault("sessions", []).append({
            "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "epochs": [epochs[new[0]], epochs[new[-1]]],
            "seconds": round(sum(history["seconds"][i] for i in new), 1),
            "device_name": machine()["device_name"], "threads": torch.get_num_threads()})


def _epochs_in(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])


def _run_file(recipe: dict, runs) -> Path | None:
    """The runs folder's checkpoint of the Burda-protocol run trained with ``recipe`` (its L_k), if any."""
    for path in sorted(vaelib.runs_dir(runs).glob("vae-*.pt")):
        config = torch.load(path, map_location="cpu", weights_only=True).get("config") or {}
        model, optimizer = config.get("model", {}), config.get("optimizer", {})
        if (model.get("activation") == recipe["activation"] and model.get("hidden") == list(recipe["hidden"])
                and model.get("latent_dim") == recipe["latent_dim"] and optimizer.get("lr_schedule")
                and optimizer.get("batch_size") == recipe["batch_size"]
                and config.get("loss", {}).get("iwae_k", 1) == recipe["iwae_k"]
                and config.get("data", {}).get("limit") == recipe.get("limit")):
            return path
    return None


def restore_kept(runs) -> None:
    """Copy each kept checkpoint into the runs folder where that folder lacks it or holds fewer epochs."""
    for kept in sorted(KEPT.glob("*.pt")):
        target = vaelib.runs_dir(runs) / kept.name
        if not target.exists() or _epochs_in(target) < _epochs_in(kept):
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(kept, target)
            print(f"continuing from the kept checkpoint {kept.name} ({_epochs_in(kept)} epochs)")


def keep(name: str, runs) -> None:
    """Copy the run's checkpoint to benchmarks/checkpoints/, so that another machine or session
    (a fresh clone) continues it: `run_burda` copies it back into the runs folder."""
    path = _run_file(burda_recipe(PROTOCOLS[name]["k"]), runs)
    if path is None:
        raise SystemExit(f"{name}: no checkpoint of this run in {vaelib.runs_dir(runs)}")
    KEPT.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(path, KEPT / path.name)
    print(f"{name}: kept {path.name} ({_epochs_in(path)} epochs) in benchmarks/checkpoints/")


def run_burda(name: str, max_minutes: float, runs) -> dict:
    spec = PROTOCOLS[name]
    recipe = burda_recipe(spec["k"])
    restore_kept(runs)
    result = read_result(name)
    result.update(name=name, paper=spec["paper"], source=spec["source"], epochs_total=BURDA_EPOCHS,
                  recipe={key: (list(v) if isinstance(v, tuple) else v) for key, v in recipe.items()},
                  command=f"python -m benchmarks.reproduce {name}", t4_hours_estimate=round(t4_hours(spec["k"]), 1))
    first = result.get("epochs_done", 0)
    progress = {p["epoch"]: p for p in result.get("progress", [])}
    test = vaelib.load_mnist("test", binarize="static")
    deadline = time.monotonic() + 60 * max_minutes
    history: dict = {"epoch": [], "seconds": []}
    for end in STAGE_ENDS:
        done = result.get("epochs_done", 0)
        if end <= done and any(e >= end for e in progress):
            continue  # trained and scored in an earlier call
        left = (deadline - time.monotonic()) / 60
        if left <= 0 and history["epoch"]:
            break  # every call trains at least one epoch, as `fit` does
        model, history = vaelib.train_mnist_model(epochs=max(end, done), runs=runs, progress=True,
                                                  max_minutes=max(left, 1e-9), **recipe)
        done = history["epoch"][-1]
        result.update(epochs_done=done, train_seconds=round(sum(history["seconds"]), 1), **machine(),
                      vaelib_commit=git_commit())
        result["seconds_per_epoch"] = round(statistics.median(history["seconds"][-20:]), 2)
        result["seconds_left"] = round(result["seconds_per_epoch"] * (BURDA_EPOCHS - done))
        if done < end:
            break
        record_session(result, first, history)
        first = done
        # the learning curve: each stage's end (or the epoch reached), on the same 1 000 random test images
        print(f"{name}: epoch {done}, scoring -L_{EVAL_K} on {PROGRESS_IMAGES} random test images", flush=True)
        progress[done] = {"epoch": done, **score(model, test, PROGRESS_IMAGES)}
        result["progress"] = [progress[e] for e in sorted(progress)]
        write_result(name, result)
    if result.get("epochs_done") == BURDA_EPOCHS and "final" not in result:
        print(f"{name}: complete; scoring -L_{EVAL_K} on all 10 000 test images", flush=True)
        model, _ = vaelib.train_mnist_model(epochs=BURDA_EPOCHS, runs=runs, progress=False, **recipe)  # loads it
        result["final"] = score(model, test, None)
        train = vaelib.load_mnist("train", binarize="static")
        result["final_train"] = score(model, train, PROGRESS_IMAGES)
    record_session(result, first, history)
    result["complete"] = "final" in result
    print(f"{name}: recorded in {write_result(name, result).name}")
    return result


# --- M2 with 100 labels (Kingma et al., 2014) -------------------------------------------------------

LABEL_SEEDS = (0, 1, 2)
# the paper's weighting (alpha = 0.1 N over the data set), with the networks of Kingma et al. and of
# Pyro's example (one hidden layer of 500 softplus units, d = 50, small initial weights) and Pyro's
# optimiser settings, grey-level pixels as Pyro's example; a fixed budget of epochs (the authors' code
# runs 3 000 passes, far beyond one CPU session)
M2_RECIPE = dict(n_labels=100, weighting="paper", latent_dim=50, hidden=(500,), activation="softplus",
                 init="small", binarize=None, epochs=50, batch_size=100, lr=4.2e-4, seed=0)
BASELINE_KEYS = ("n_labels", "hidden", "activation", "init", "binarize", "batch_size", "lr", "seed")


def test_errors(classify, test) -> torch.Tensor:
    """1.0 where ``classify`` (images -> logits) gets a test digit wrong, 0.0 where right: ``(10 000,)``."""
    with torch.no_grad():
        return torch.cat([classify(x).argmax(1) != y for x, y in test.batches(1000)]).double().cpu()


def mean_se(v: torch.Tensor) -> list[float]:
    return [v.mean().item(), (v.std() / math.sqrt(len(v))).item()]


# the same runs for longer: `m2-longer` continues `m2`'s checkpoints (the epochs are not part of a run's name)
M2_PROTOCOLS = {"m2": M2_RECIPE["epochs"], "m2-longer": 200}


def run_m2(max_minutes: float, runs, seeds=LABEL_SEEDS, name: str = "m2") -> dict:
    """Train M2 for each label draw epoch by epoch (each call resumes the cached run), scoring the
    test error after every epoch, then the baseline with as many steps; record each draw when done."""
    epochs = M2_PROTOCOLS[name]
    test = vaelib.load_mnist("test", binarize="static" if M2_RECIPE["binarize"] else None)
    deadline = time.monotonic() + 60 * max_minutes
    for label_seed in seeds:
        result = read_result(name)
        draws = {d["label_seed"]: d for d in result.get("draws", [])}
        if draws.get(label_seed, {}).get("complete"):
            continue
        shorter = {d["label_seed"]: d for d in read_result("m2").get("draws", [])} if name != "m2" else {}
        start = {"label_seed": label_seed, "curve": list(shorter.get(label_seed, {}).get("curve", []))}
        draw = draws.get(label_seed, start)
        for epoch in range(len(draw["curve"]) + 1, epochs + 1):
            if time.monotonic() > deadline:
                break
            m2, history, _ = vaelib.train_m2(label_seed=label_seed, runs=runs, progress=False, max_minutes=math.inf,
                                             **{**M2_RECIPE, "epochs": epoch})
            draw["curve"].append([epoch, test_errors(m2.classify, test).mean().item()])
            print(f"{name}, label draw {label_seed}: epoch {epoch}, test error {draw['curve'][-1][1]:.2%}", flush=True)
            draw.update(epochs=epoch, train_seconds=round(sum(history["seconds"]), 1), **machine())
            record_draw(draw, name)
        if len(draw["curve"]) == epochs:
            m2, history, _ = vaelib.train_m2(label_seed=label_seed, runs=runs, progress=False,
                                             **{**M2_RECIPE, "epochs": epochs})  # loads it
            baseline, base_history = vaelib.train_label_classifier(
                label_seed=label_seed, epochs=epochs, runs=runs, progress=False, max_minutes=math.inf,
                **{key: M2_RECIPE[key] for key in BASELINE_KEYS})
            wrong, base_wrong = test_errors(m2.classify, test), test_errors(baseline, test)
            draw.update(error=mean_se(wrong), baseline_error=mean_se(base_wrong),
                        difference=mean_se(wrong - base_wrong),  # paired: the same 10 000 test digits
                        baseline_seconds=round(sum(base_history["seconds"]), 1), complete=True,
                        last_epoch={key: history[key][-1] for key in
                                    ("unlabelled_bound", "labelled_bound", "classification")})
            record_draw(draw, name)
    result = read_result(name)
    print(f"{name}: recorded in {name}.json; complete draws: {result.get('summary')}")
    return result


def record_draw(draw: dict, name: str = "m2") -> None:
    """Write one label draw into NAME.json, under a lock: draws may run in parallel processes."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    with open(RESULTS / f".{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        result = read_result(name)
        draws = {d["label_seed"]: d for d in result.get("draws", [])}
        draws[draw["label_seed"]] = draw
        result.update(name=name, paper=11.97, paper_spread=1.71, baseline_paper=25.81,
                      source="Kingma et al. (2014), Table 1: M2, MNIST with 100 labels (% test error)",
                      recipe={k: (list(v) if isinstance(v, tuple) else v) for k, v in
                              {**M2_RECIPE, "epochs": M2_PROTOCOLS[name]}.items()},
                      label_seeds=list(LABEL_SEEDS), command=f"python -m benchmarks.reproduce {name}",
                      draws=[draws[s] for s in sorted(draws)], vaelib_commit=git_commit())
        summarise_m2(result)
        write_result(name, result)


def summarise_m2(result: dict) -> None:
    """The mean and the spread (standard deviation over draws) of the complete draws' errors."""
    done = [d for d in result["draws"] if d.get("complete")]
    result["complete"] = len(done) == len(LABEL_SEEDS)
    if not done:
        result["summary"] = None
        return
    errors = torch.tensor([d["error"][0] for d in done], dtype=torch.float64)
    base = torch.tensor([d["baseline_error"][0] for d in done], dtype=torch.float64)
    result["summary"] = {"draws": len(done), "error_mean": errors.mean().item(),
                         "error_sd": errors.std().item() if len(done) > 1 else None,
                         "baseline_mean": base.mean().item(),
                         "baseline_sd": base.std().item() if len(done) > 1 else None,
                         "train_seconds": round(sum(d["train_seconds"] + d["baseline_seconds"] for d in done), 1)}


def show_list() -> None:
    for m2_name, epochs in M2_PROTOCOLS.items():
        m2 = read_result(m2_name)
        for d in m2.get("draws", []):
            print(f"{m2_name}, label draw {d['label_seed']}: {d['epochs']} of {epochs} epochs, test error "
                  f"{100 * d['curve'][-1][1]:.2f} % (paper 11.97 %)")
        if not m2:
            print(f"{m2_name}: not started")
    for name in PROTOCOLS:
        r = read_result(name)
        if not r:
            print(f"{name}: not started")
        elif r.get("complete"):
            f = r["final"]
            print(f"{name}: complete, -L_{f['k']} = {f['nll']:.2f} ± {f['nll_se']:.2f} nats (paper {r['paper']})")
        else:
            print(f"{name}: {r.get('epochs_done', 0)} of {r.get('epochs_total')} epochs, about "
                  f"{r.get('seconds_left', 0) / 3600:.1f} h left at {r.get('seconds_per_epoch')} s per epoch")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("name", choices=["list", "all", "page", *M2_PROTOCOLS, *PROTOCOLS])
    parser.add_argument("--max-minutes", type=float, default=math.inf, help="bound this call (default: none)")
    parser.add_argument("--runs", default=None, help="the runs folder (default: $VAELIB_RUNS, else runs/)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads (default 1)")
    parser.add_argument("--label-seed", type=int, choices=LABEL_SEEDS, default=None,
                        help="m2: only this label draw (default: each in turn)")
    parser.add_argument("--keep", action="store_true",
                        help="after the call, copy the run's checkpoint to benchmarks/checkpoints/ (committed, so that "
                             "a fresh clone continues it)")
    args = parser.parse_args(argv)
    if args.name == "list":
        show_list()
        return 0
    if not args.max_minutes > 0:
        parser.error("--max-minutes must be a positive number of minutes")
    if args.name == "page":
        return execute_page()
    torch.set_num_threads(args.threads)
    if args.name in (*M2_PROTOCOLS, "all"):
        run_m2(args.max_minutes, args.runs, LABEL_SEEDS if args.label_seed is None else (args.label_seed,),
               name="m2" if args.name == "all" else args.name)
    if args.name in PROTOCOLS or args.name == "all":
        name = args.name if args.name in PROTOCOLS else "burda-vae"
        run_burda(name, args.max_minutes, args.runs)
        if args.keep:
            keep(name, args.runs)
    if args.name == "all":
        return execute_page()
    return 0


def execute_page() -> int:
    """Execute book/reproductions.md into its notebook (the one page `make notebooks` leaves alone)."""
    from tools.notebooks import sync

    return sync([ROOT / "book" / "reproductions.md"], force=True, pages=True)


if __name__ == "__main__":
    sys.exit(main())
