"""vaelib.exercises.check: right answers pass, the usual wrong ones get their hint, and the
chapters' worked solutions pass the checks they are shown beside."""

import math
import re
from pathlib import Path

import pytest
import torch

import vaelib
from vaelib.exercises import EXERCISES, check

ROOT = Path(__file__).resolve().parent.parent

# Right answers, written here independently of the chapters' solutions.
RIGHT = {
    "l3-by-hand": -98 + math.log(1 + math.exp(-2) + math.exp(-4)) - math.log(3),
    "nll-from-weights": lambda log_w: -(torch.logsumexp(log_w, 0) - math.log(len(log_w))),
    "log-odds": lambda x: (math.log(0.7 / 0.3) + math.log(1 / 2) - (x - 2) ** 2 / 8 + (x + 1) ** 2 / 2),
    "grey-bce": -(0.3 * math.log(0.3) + 0.7 * math.log(0.7)),
    "bits-per-dim": 80 / 784 / math.log(2),
    "kl-by-hand": math.log(2) + (0.25 + 1) / 2 - 0.5,
    "kl-unit-variance": lambda mq, mp: 0.5 * (mq - mp) ** 2,
    "kl-from-logvar": lambda mu, lv: -0.5 * (1 + lv - mu**2 - lv.exp()).sum(-1),
    "gaussian-entropy": lambda lv: 0.5 * (math.log(2 * math.pi * math.e) + lv).sum(-1),
    "hidden-beta": 784,
    "gap-correlation": math.sqrt(1 - math.exp(-2)),
    "reparam-std": 0.25,
    "pathwise-sigma-variance": 12.0,  # 4 (a^2 + 2 sigma^2) with a = sigma = 1
    "optimal-baseline": 4.0,  # a^2 + 3 sigma^2 (vaelib.quadratic_cost_variances' b*)
    # Chapter 8
    "active-units": lambda mu: sum(float(c.var()) > 0.01 for c in mu.T),
    "hidden-beta-means": 784 / 16,
    "free-bits": lambda kl, delta: torch.maximum(kl.mean(0), torch.tensor(delta)).sum(),
    "bce-floor": lambda x: torch.distributions.Bernoulli(probs=x).entropy().sum(-1),
}
# Wrong answers and a piece of the hint each must get.
WRONG = [
    ("l3-by-hand", -100.0, "mean of the log weights"),
    ("l3-by-hand", -98 + math.log(1 + math.exp(-2) + math.exp(-4)), "subtract log k"),
    ("l3-by-hand", -98.0, "largest log weight"),
    ("l3-by-hand", 98.96, "signs"),
    ("l3-by-hand", -99.5, "factor e^-98 out"),
    ("nll-from-weights", lambda log_w: torch.logsumexp(log_w, 0) - math.log(len(log_w)), "its negative"),
    ("nll-from-weights", lambda log_w: -log_w.mean(0), "negative ELBO"),
    ("nll-from-weights", lambda log_w: -torch.logsumexp(log_w, 0), "subtract log k"),
    ("nll-from-weights", lambda log_w: -(log_w.exp().mean(0).log()), "underflows"),
    ("nll-from-weights", lambda log_w: -(torch.logsumexp(log_w, 1) - math.log(log_w.shape[1])), "dimension 0"),
    ("log-odds", lambda x: -(math.log(0.7 / 0.3) + math.log(1 / 2) - (x - 2) ** 2 / 8 + (x + 1) ** 2 / 2),
     "upside down"),
    ("log-odds", lambda x: math.log(0.7 / 0.3) - (x - 2) ** 2 / 8 + (x + 1) ** 2 / 2, "normalising constants"),
    ("log-odds", lambda x: math.log(2.0) - (x - 2) ** 2 / 8 + (x + 1) ** 2 / 2, "off by a constant"),
    ("log-odds", lambda x: x, "subtract"),
    ("grey-bce", 0.0, "does not make the loss zero"),
    ("grey-bce", -(0.3 * math.log2(0.3) + 0.7 * math.log2(0.7)), "in bits"),
    ("grey-bce", 0.5, "minimise"),
    ("bits-per-dim", 80 / 784, "nats per pixel"),
    ("bits-per-dim", 80 / math.log(2), "bits per image"),
    ("bits-per-dim", 80 * math.log(2) / 784, "divide by log 2"),
    ("bits-per-dim", 1.0, "784 pixels"),
    ("kl-by-hand", -0.818, "never negative"),
    ("kl-by-hand", 2.8069, "other direction"),
    ("kl-by-hand", 0.5966, "variance is 0.25"),
    ("kl-by-hand", 1.0, "put the numbers in"),
    ("kl-by-hand", "0.818", "one number"),
    ("kl-unit-variance", lambda mq, mp: (mq - mp).abs(), "square"),
    ("kl-unit-variance", lambda mq, mp: (mq - mp) ** 2, "constant"),
    ("kl-from-logvar", lambda mu, lv: 0.5 * (1 + lv - mu**2 - lv.exp()).sum(-1), "sign is flipped"),
    ("kl-from-logvar", lambda mu, lv: -0.5 * (1 + 2 * lv - mu**2 - (2 * lv).exp()).sum(-1), "log(sigma)"),
    ("kl-from-logvar", lambda mu, lv: -0.5 * (1 + lv - mu**2 - lv.exp()).mean(-1), "averaged"),
    ("kl-from-logvar", lambda mu, lv: -0.5 * (1 + lv - mu**2 - lv.exp()), "sum over the d dimensions"),
    ("kl-from-logvar", lambda mu, lv: 1 / 0, "ZeroDivisionError"),
    ("kl-from-logvar", 3.0, "a function"),
    ("gaussian-entropy", lambda lv: 0.5 * (math.log(2 * math.pi * math.e) + 2 * lv).sum(-1), "log(sigma)"),
    ("gaussian-entropy", lambda lv: lv.sum(-1), "per dimension"),
    ("hidden-beta", 1 / 784, "upside down"),
    ("hidden-beta", 1, "same scale"),
    ("hidden-beta", 28, "what weighs the KL"),
    ("gap-correlation", -math.sqrt(1 - math.exp(-2)), "either sign"),
    ("gap-correlation", 1 - math.exp(-2), "rho squared"),
    ("gap-correlation", 1.5, "strictly between"),
    ("gap-correlation", 0.5, "leaves a gap of 0.144 nats"),
    ("reparam-std", 0.5, "intended"),
    ("reparam-std", 0.0625, "variance"),
    ("reparam-std", 1.0, "exp(logvar)"),
    ("pathwise-sigma-variance", 4.0, "d/dmu"),
    ("pathwise-sigma-variance", 16.0, "second moment"),
    ("pathwise-sigma-variance", 7.0, "E[eps^4] = 3"),
    ("optimal-baseline", 2.0, "mean baseline"),
    ("optimal-baseline", 0.0, "minimiser"),
    ("optimal-baseline", 3.0, "minimise"),
    # Chapter 8
    ("active-units", lambda mu: int((mu.std(0) > 0.01).sum()), "not on its standard deviation"),
    ("active-units", lambda mu: int((mu.pow(2).mean(0) > 0.01).sum()), "E[mu^2] is not a variance"),
    ("active-units", lambda mu: int((mu.var(1) > 0.01).sum()), "counts images"),
    ("active-units", lambda mu: int((mu.var(0) > 0.1).sum()), "KL threshold"),
    ("active-units", lambda mu: mu.var(0) > 0.01, "sum the mask"),
    ("active-units", lambda mu: 3, "right on one input"),
    ("hidden-beta-means", 784, "averaged too"),
    ("hidden-beta-means", 1 / 16, "mean over the pixels as well"),
    ("hidden-beta-means", 16 / 784, "upside down"),
    ("hidden-beta-means", 784 * 128 / 16, "batch size cancels"),
    ("hidden-beta-means", 16, "opposite directions"),
    ("free-bits", lambda kl, delta: kl.clamp(min=delta).sum(1).mean(), "clamps each image's KL"),
    ("free-bits", lambda kl, delta: kl.sum(1).mean(), "no clamp has acted"),
    ("free-bits", lambda kl, delta: kl.mean(0).clamp(max=delta).sum(), "clamps from above"),
    ("free-bits", lambda kl, delta: kl.mean(0).clamp(min=delta).mean(), "sum over the latent dimensions"),
    ("free-bits", lambda kl, delta: kl.mean(0).clamp(min=delta), "one number for the batch"),
    ("bce-floor", lambda x: -(x * x.log() + (1 - x) * (1 - x).log()).sum(1), "0 log 0"),
    ("bce-floor", lambda x: torch.zeros(len(x)), "perfect reconstruction"),
    ("bce-floor", lambda x: (torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).sum(1), "sign"),
    ("bce-floor", lambda x: (torch.special.entr(x) + torch.special.entr(1 - x)).sum(1) / math.log(2),
     "in bits"),
    ("bce-floor", lambda x: (torch.special.entr(x) + torch.special.entr(1 - x)).mean(1), "mean over pixels"),
]


def test_every_exercise_has_a_right_answer_here():
    assert set(RIGHT) == set(EXERCISES)


@pytest.mark.parametrize("name", sorted(EXERCISES))
def test_a_right_answer_is_right(name, capsys):
    assert check(name, RIGHT[name]) is True
    assert capsys.readouterr().out == f"{name}: right.\n"


@pytest.mark.parametrize("name, answer, hint", WRONG, ids=[f"{n}-{i}" for i, (n, _, _) in enumerate(WRONG)])
def test_a_wrong_answer_gets_its_hint_and_never_the_solution(name, answer, hint, capsys):
    assert check(name, answer) is False
    out = capsys.readouterr().out
    assert out.startswith(f"{name}: not yet. Hint: ") and hint in out
    answer_text = {"l3-by-hand": ["98.9"], "grey-bce": ["0.611"], "bits-per-dim": ["0.147"], "kl-by-hand": ["0.818"], "gap-correlation": ["0.93"], "reparam-std": ["0.25"],
                   "pathwise-sigma-variance": ["12"], "optimal-baseline": ["= 4", "is 4"],
                   "hidden-beta": ["784 "],
                   "hidden-beta-means": ["49"]}  # what would give the answer away
    for secret in answer_text.get(name, []):
        assert secret not in out.replace("784 pixels", ""), f"the hint gives away {secret!r}"


def test_the_checks_accept_tensors_and_refuse_unknown_names():
    assert check("kl-by-hand", torch.tensor(RIGHT["kl-by-hand"]))
    with pytest.raises(KeyError, match="checkable ones are"):
        check("no-such-exercise", 1.0)


def test_every_checkable_exercise_is_in_its_chapter_with_a_solution_that_calls_its_check():
    """Each name appears in its chapter inside an exercise, and the worked solution calls check
    on it (so the executed chapter shows the solution passing its own check)."""
    for name, exercise in EXERCISES.items():
        (md,) = ROOT.glob(f"book/{exercise.chapter:02d}_*.md")
        text = md.read_text()
        assert f'check("{name}"' in text, f"{md.name} never shows check({name!r}, ...)"
        solutions = re.findall(r"```\{solution-start\}(.*?)```\{solution-end\}", text, re.S)
        assert any(f'vaelib.exercises.check("{name}"' in s for s in solutions), \
            f"{md.name}: no worked solution calls vaelib.exercises.check({name!r}, ...)"


def test_vaelib_exposes_the_check():
    assert vaelib.exercises.check is check
