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


def _log_w_with(model, x, eps, detach_params=False, detach_log_q=False, detach_z=False):
    """Chapter 10: the log weights of codes z = mu + sigma * eps, with one part or another detached."""
    q = model.encode(x)
    z = q.mu + (0.5 * q.logvar).exp() * eps
    if detach_z:
        z = z.detach()
    q_eval = vaelib.models.DiagonalNormal(q.mu.detach(), q.logvar.detach()) if detach_params else q
    log_q = q_eval.log_prob(z)
    if detach_log_q:
        log_q = log_q.detach()
    return model.log_likelihood(x, model.decode(z)) + model.prior().log_prob(z) - log_q


def _neg_lk(log_w):
    return -(torch.logsumexp(log_w, 0) - math.log(len(log_w))).mean()


def _stl_by_detaching(model, x, eps):
    return _neg_lk(_log_w_with(model, x, eps, detach_params=True))


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
    # Chapter 5
    "ae-recon-loss": lambda logits, x: torch.nn.functional.binary_cross_entropy_with_logits(
        logits, x, reduction="none").sum((1, 2, 3)),
    "bce-floor": lambda x: -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).sum((1, 2, 3)),
    "fitted-gaussian-logpdf": lambda c, z: torch.distributions.MultivariateNormal(
        c.mean(0), torch.cov(c.T)).log_prob(z),
    "code-stretch": -math.log(6),
    "linear-ae-error": lambda x, d: torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)[d:].sum()
    * (len(x) - 1) / len(x),
    # Chapter 10
    "decoder-work-ratio": (50 * 4) / (1 * 32),  # k samples x epochs, the images cancel
    "ess-from-log-weights": lambda log_w: 1 / torch.softmax(log_w, 0).pow(2).sum(0),
    "paired-nll-se": lambda a, b: (b - a).std() / math.sqrt(len(a)),
    "stl-iwae-loss": lambda model, x, eps: _stl_by_detaching(model, x, eps),
    # Chapter 7
    "paired-difference-se": lambda a, b: torch.std(a - b) / math.sqrt(len(a)),
    "ae-likelihood-total": 2 * (0.9**3 + 3 * 0.9**2 * 0.1),  # codes 1 and 0 mirror each other
    "kl-noisy-code": lambda mu, s: (0.5 * (mu**2 + s**2) - 0.5 - torch.log(s)).sum(1),
    "mixture-log-density": lambda z, w, m, c: torch.distributions.MixtureSameFamily(
        torch.distributions.Categorical(probs=w), torch.distributions.MultivariateNormal(m, c)).log_prob(z),
    # Chapter 9
    "m2-labelled-bound": -95 - math.log(10),
    "m2-unlabelled-bound": lambda L, a: ((a - a.logsumexp(-1, keepdim=True)).exp()
                                         * (L - (a - a.logsumexp(-1, keepdim=True)))).sum(-1),
    "m2-hidden-label-weight": 59000 / 1000,
    # Chapter 8
    "active-units": lambda mu: sum(float(c.var()) > 0.01 for c in mu.T),
    "hidden-beta-means": 784 / 16,
    "free-bits": lambda kl, delta: torch.maximum(kl.mean(0), torch.tensor(delta)).sum(),
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
    # Chapter 5
    ("ae-recon-loss", lambda lg, x: torch.nn.functional.binary_cross_entropy_with_logits(lg, x), "reduction='mean'"),
    ("ae-recon-loss", lambda lg, x: torch.nn.functional.binary_cross_entropy_with_logits(
        lg, x, reduction="none").mean((1, 2, 3)), "hidden factor of 1/784"),
    ("ae-recon-loss", lambda lg, x: torch.nn.functional.binary_cross_entropy_with_logits(
        lg, x, reduction="sum"), "sums over the images too"),
    ("ae-recon-loss", lambda lg, x: -(x * lg.log() + (1 - x) * (1 - lg).log()).sum((1, 2, 3)), "sigmoid"),
    ("ae-recon-loss", lambda lg, x: torch.distributions.Bernoulli(logits=lg).log_prob(x).sum((1, 2, 3)),
     "its negative"),
    ("ae-recon-loss", lambda lg, x: torch.nn.functional.binary_cross_entropy_with_logits(
        lg, x, reduction="none"), "sum over the 784 pixels"),
    ("bce-floor", lambda x: torch.zeros(len(x)), "does not make the BCE of a grey pixel zero"),
    ("bce-floor", lambda x: -(x * x.log() + (1 - x) * (1 - x).log()).sum((1, 2, 3)), "0 log 0"),
    ("bce-floor", lambda x: -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).sum((1, 2, 3)) / math.log(2),
     "in bits"),
    ("bce-floor", lambda x: -(torch.xlogy(x, x) + torch.xlogy(1 - x, 1 - x)).mean((1, 2, 3)), "mean over the pixels"),
    ("fitted-gaussian-logpdf", lambda c, z: torch.distributions.MultivariateNormal(
        c.mean(0), torch.cov(c.T, correction=0)).log_prob(z), "N - 1"),
    ("fitted-gaussian-logpdf", lambda c, z: torch.distributions.Normal(
        c.mean(0), c.std(0)).log_prob(z).sum(-1), "full covariance"),
    ("fitted-gaussian-logpdf", lambda c, z: torch.distributions.Normal(
        c.mean(0), c.var(0)).log_prob(z).sum(-1), "variances were used as standard deviations"),
    ("fitted-gaussian-logpdf", lambda c, z: torch.distributions.MultivariateNormal(
        c.mean(0), torch.cov(c.T)).log_prob(z).exp(), "logarithm"),
    ("fitted-gaussian-logpdf", lambda c, z: torch.distributions.MultivariateNormal(
        c.mean(0), torch.cov(c.T)).log_prob(z).mean(), "one log-density per point"),
    ("code-stretch", math.log(6), "the sign"),
    ("code-stretch", 0.0, "a density does"),
    ("code-stretch", -math.log(36), "half of it"),
    ("code-stretch", -math.log(5), "not its trace"),
    ("code-stretch", -1.0, "Jacobian"),
    ("linear-ae-error", lambda x, d: torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)[d:].sum(), "N - 1"),
    ("linear-ae-error", lambda x, d: (torch.linalg.svdvals(x)[d:] ** 2).sum() / len(x), "centre the data"),
    ("linear-ae-error", lambda x, d: torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)[:d].sum()
     * (len(x) - 1) / len(x), "the variance the code keeps"),
    ("linear-ae-error", lambda x, d: torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)[d:].sum()
     * (len(x) - 1), "summed over the images"),
    ("linear-ae-error", lambda x, d: torch.linalg.eigvalsh(torch.cov(x.T)).flip(0)[d:].sum()
     * (len(x) - 1) / len(x) / x.shape[1], "averaged over the pixels"),
    # Chapter 10
    ("decoder-work-ratio", 50.0, "equal epochs"),
    ("decoder-work-ratio", 4 / 32, "counts epochs only"),
    ("decoder-work-ratio", 32 / 200, "upside down"),
    ("decoder-work-ratio", 5 * 20 / 32, "k = 5"),
    ("decoder-work-ratio", 2.0, "images x samples per image x epochs"),
    ("ess-from-log-weights", lambda log_w: torch.softmax(log_w, 0).pow(2).sum(0), "reciprocal"),
    ("ess-from-log-weights", lambda log_w: 1 / torch.softmax(log_w, 0).pow(2).sum(0) / len(log_w),
     "fraction of k"),
    ("ess-from-log-weights", lambda log_w: log_w.exp().sum(0) ** 2 / log_w.exp().pow(2).sum(0), "underflows"),
    ("ess-from-log-weights", lambda log_w: 1 / torch.softmax(log_w, 1).pow(2).sum(0), "dimension 0"),
    ("ess-from-log-weights", lambda log_w: 1 / torch.softmax(log_w, 0).sum(0), "always 1"),
    ("paired-nll-se", lambda a, b: math.sqrt(a.var() / len(a) + b.var() / len(b)), "independent"),
    ("paired-nll-se", lambda a, b: (b - a).std(), "divide by sqrt(N)"),
    ("paired-nll-se", lambda a, b: (b - a).var() / len(a), "square root"),
    ("paired-nll-se", lambda a, b: (b - a).std(unbiased=False) / math.sqrt(len(a)), "N - 1"),
    ("paired-nll-se", lambda a, b: (b.mean() - a.mean()).abs(), "per-image differences"),
    ("stl-iwae-loss", lambda model, x, eps: _neg_lk(_log_w_with(model, x, eps)), "ordinary IWAE gradient"),
    ("stl-iwae-loss", lambda model, x, eps: _neg_lk(_log_w_with(model, x, eps, detach_log_q=True)),
     "detached as a whole"),
    ("stl-iwae-loss", lambda model, x, eps: _neg_lk(_log_w_with(model, x, eps, detach_z=True)),
     "the encoder's is not"),
    ("stl-iwae-loss", lambda model, x, eps: -_log_w_with(model, x, eps, detach_params=True).mean(),
     "negative ELBO"),
    ("stl-iwae-loss", lambda model, x, eps: -_stl_by_detaching(model, x, eps), "+L_k"),
    ("stl-iwae-loss", lambda model, x, eps: _stl_by_detaching(model, x, eps).item(), "graph"),
    # Chapter 7
    ("paired-difference-se", lambda a, b: ((a.var() + b.var()) / len(a)).sqrt(), "independent samples"),
    ("paired-difference-se", lambda a, b: (a.std() + b.std()) / math.sqrt(len(a)), "do not add"),
    ("paired-difference-se", lambda a, b: (a - b).std(), "sqrt(N)"),
    ("paired-difference-se", lambda a, b: (a - b).std(unbiased=False) / math.sqrt(len(a)), "N - 1"),
    ("paired-difference-se", lambda a, b: (a - b).var() / len(a), "square root"),
    ("paired-difference-se", lambda a, b: (a - b) / math.sqrt(len(a)), "one number"),
    ("ae-likelihood-total", 1.0, "need not"),
    ("ae-likelihood-total", 0.9**3 + 3 * 0.9**2 * 0.1, "coded 0 count too"),
    ("ae-likelihood-total", (0.9**3 + 3 * 0.9**2 * 0.1) / 4, "mean over the eight"),
    ("ae-likelihood-total", -2 * (math.log(0.9**3) + 3 * math.log(0.9**2 * 0.1)), "adds the losses"),
    ("ae-likelihood-total", 8 * 0.9**3, "majority vote"),
    ("kl-noisy-code", lambda mu, s: -(0.5 * (mu**2 + s**2) - 0.5 - torch.log(s)).sum(1), "sign is flipped"),
    ("kl-noisy-code", lambda mu, s: (0.5 * (mu**2 + s**2) - 0.5 - 0.5 * torch.log(s)).sum(1), "2 log sigma"),
    ("kl-noisy-code", lambda mu, s: (0.5 * (mu**2 + s) - 0.5 - 0.5 * torch.log(s)).sum(1), "not a variance"),
    ("kl-noisy-code", lambda mu, s: (0.5 * (mu**2 + s**2) - 0.5 - torch.log(s)).mean(1), "averaged"),
    ("kl-noisy-code", lambda mu, s: 0.5 * (mu**2 + s**2) - 0.5 - torch.log(s), "sum over the d dimensions"),
    ("kl-noisy-code", lambda mu, s: (torch.log(s) + (1 + mu**2) / (2 * s**2) - 0.5).sum(1), "other direction"),
    ("mixture-log-density", lambda z, w, m, c: torch.logsumexp(
        torch.distributions.MultivariateNormal(m, c).log_prob(z[:, None]), 1), "unequal weights"),
    ("mixture-log-density", lambda z, w, m, c: torch.logsumexp(
        torch.distributions.MultivariateNormal(m, c).log_prob(z[:, None]), 1) - math.log(len(w)), "1/C"),
    ("mixture-log-density", lambda z, w, m, c: (
        w * torch.distributions.MultivariateNormal(m, c).log_prob(z[:, None])).sum(1), "Jensen"),
    ("mixture-log-density", lambda z, w, m, c: (
        w.log() + torch.distributions.MultivariateNormal(m, c).log_prob(z[:, None])).max(1).values, "largest"),
    ("mixture-log-density", lambda z, w, m, c: w.log()
     + torch.distributions.MultivariateNormal(m, c).log_prob(z[:, None]), "combine the C components"),
    # Chapter 9
    ("m2-labelled-bound", -95.0, "one more factor"),
    ("m2-labelled-bound", -95 + math.log(10), "sign of log p(y)"),
    ("m2-labelled-bound", -96.0, "base-10"),
    ("m2-labelled-bound", -95 - math.log2(10), "base-2"),
    ("m2-labelled-bound", -95.1, "not p(y) itself"),
    ("m2-labelled-bound", -97.0, "L(x | y) + log p(y)"),
    ("m2-unlabelled-bound", lambda L, a: (a.softmax(-1) * L).sum(-1), "entropy term is missing"),
    ("m2-unlabelled-bound", lambda L, a: (a.softmax(-1) * (L + a.log_softmax(-1))).sum(-1), "entropy's sign"),
    ("m2-unlabelled-bound", lambda L, a: (a.softmax(-1) * (L - a)).sum(-1), "not the logits themselves"),
    ("m2-unlabelled-bound", lambda L, a: (a.log_softmax(-1) * L).sum(-1)
     - (a.softmax(-1) * a.log_softmax(-1)).sum(-1), "log-probabilities"),
    ("m2-unlabelled-bound", lambda L, a: (a.softmax(0) * (L - a.log_softmax(0))).sum(-1), "dimension -1"),
    ("m2-unlabelled-bound", lambda L, a: L.logsumexp(-1), "ceiling"),
    ("m2-unlabelled-bound", lambda L, a: a.softmax(-1) * (L - a.log_softmax(-1)), "sum over the C classes"),
    ("m2-hidden-label-weight", 1 / 59, "upside down"),
    ("m2-hidden-label-weight", 599, "100 labels"),
    ("m2-hidden-label-weight", 60, "not by all N"),
    ("m2-hidden-label-weight", 1, "hides a beta"),
    ("m2-hidden-label-weight", 6, "m2_weights"),
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
                   "hidden-beta": ["784 "], "m2-labelled-bound": ["97.3", "2.30"],
                   "m2-hidden-label-weight": ["59 ", "59."], "hidden-beta-means": ["49"]}
    right = RIGHT[name]
    if isinstance(right, (int, float)) and not isinstance(right, bool) and abs(right) >= 0.01:
        # any number answer, to the digits a reader would type, is never printed
        answer_text.setdefault(name, []).extend({f"{right:.3g}", f"{right:.2f}"} - {"784"})
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


# Chapter 7
def test_chapter_7_hints_never_give_the_toy_likelihood_total_away(capsys):
    for answer in (1.0, 0.5, 1.9, 2.0, 0.972):
        check("ae-likelihood-total", answer)
    out = capsys.readouterr().out
    for secret in ("1.94", "0.97", "0.243", "0.729"):
        assert secret not in out, f"a hint gives away {secret!r}"


def test_exercise_labels_are_unique_across_the_book():
    """Sphinx warns (an error in this book) when two chapters use one label."""
    seen = {}
    for md in sorted(ROOT.glob("book/*.md")):
        for label in re.findall(r"^:label: (ex-[\w-]+)$", md.read_text(), re.M):
            assert label not in seen, f"{label} is in both {seen[label]} and {md.name}"
            seen[label] = md.name
    assert len(seen) >= 30
