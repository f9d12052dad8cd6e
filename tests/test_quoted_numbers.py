"""Numbers in the prose come from the outputs beside them (`_ext/quoted.py`).

Every ``{out}`...``` text of a page must appear verbatim in the outputs stored in its notebook,
and every other decimal number in its prose must be listed below with where it comes from.
"""

from pathlib import Path

import nbformat
import pytest

from _ext.colab import book_index, to_commonmark
from _ext.quoted import missing_quotes, output_text, quoted, unmarked_decimals
from tools.notebooks import chapters

ROOT = Path(__file__).resolve().parent.parent
PAGES = chapters()  # the ten chapters and the Reproductions page

# Decimal numbers in the prose that are not outputs of the page's own cells: papers' results,
# constants the text sets, numbers of another page. A result copied from an output is marked
# {out}`...` instead, and is then checked against the outputs.
BURDA = "Burda et al. (2016), Table 1"
NOT_FROM_OUTPUTS: dict[str, dict[str, str]] = {
    "01_generative_models": {"0.1": "the outlier rule's quantile (0.1 %), a constant of the text",
                             "0.01": "the accuracy exercise 3 asks for, in nats"},
    "02_kl_divergence": {"5.3": "1/(1 - rho^2) for the text's rho = 0.9", "2.3": "its square root"},
    "06_vae": {
        "86.76": BURDA, "84.78": BURDA, "105.6": "pytorch/examples vae/main.py's printed test loss",
        "6.5": "the quoted 93.27 less Burda et al.'s 86.76",
        "91.00": "benchmarks/quality.py (benchmarks/README.md)", "0.24": "benchmarks/quality.py, beside 91.00",
        "105.53": "benchmarks/examples_recipe.py", "96.5": "benchmarks/examples_recipe.py",
    },
    "07_vae_vs_autoencoder": {"0.9": "the classifier's confidence threshold"},
    "08_beyond_the_vae": {
        "0.01": "the active-unit variance threshold", "0.1": "the threshold of a dimension's KL, in nats",
        "0.25": "the made-up KL value of mistake 5", "105.6": "pytorch/examples vae/main.py's printed test loss",
    },
    "09_conditional_and_semi_supervised": {
        "18.9": "the difference of the two quoted bounds, -130.1 - (-149.0)",
        "0.17": "the paper's weighting: 100 labelled of 60 000 images", "11.97": "Kingma et al. (2014), Table 1",
        "3.33": "Kingma et al. (2014), Table 1 (M1+M2)",
    },
    "10_tighter_bounds": {"86.76": BURDA, "84.78": BURDA, "0.1": "the threshold of a dimension's KL, in nats"},
    "reproductions": {
        "11.97": "Kingma et al. (2014), Table 1", "1.71": "Kingma et al. (2014), Table 1",
        "25.81": "Kingma et al. (2014), Table 1 (NN baseline)", "6.81": "Pyro's SS-VAE tutorial",
        "86.76": BURDA, "85.54": BURDA, "84.78": BURDA, "1.5": "the kernel-launch floor assumed by t4_estimate.py",
        "7.5": "the run's own log (runs/burda-vae-*.log) on 2026-12-03, with the other core idle",
    },
}


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.name)
def test_every_quoted_number_is_in_the_stored_outputs(md):
    nb = nbformat.read(md.with_suffix(".ipynb"), as_version=4)
    missing = missing_quotes(md.read_text(), nb)
    assert not missing, (f"{md.name} quotes {missing} as outputs ({{out}}), but its stored outputs do not "
                         "contain them: execute the chapter (make notebooks) and copy the numbers it printed")


@pytest.mark.parametrize("md", PAGES, ids=lambda p: p.name)
def test_every_other_decimal_in_the_prose_is_accounted_for(md):
    listed = NOT_FROM_OUTPUTS.get(md.stem, {})
    unaccounted = sorted({n for n in unmarked_decimals(md.read_text()) if n not in listed})
    assert not unaccounted, (
        f"{md.name}: the prose has {unaccounted}, neither marked {{out}}`...` (copied from an output, "
        "then checked) nor listed in NOT_FROM_OUTPUTS with its source")


def test_the_book_quotes_outputs():
    assert sum(len(quoted(md.read_text())) for md in PAGES) >= 50


# ---- the checks themselves must fail on a planted mismatch -----------------------------------

def _notebook(*printed):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("...", outputs=[nbformat.v4.new_output("stream", text=t)])
                for t in printed]
    return nb


def test_a_quoted_number_that_no_output_printed_is_caught():
    nb = _notebook("test NLL 91.00 ± 0.24 nats\n")
    assert missing_quotes("it reaches {out}`91.00 ± 0.24` nats", nb) == []
    assert missing_quotes("it reaches {out}`91.01 ± 0.24` nats", nb) == ["91.01 ± 0.24"]
    assert missing_quotes("it reaches {out}`91.0` nats", nb) == []  # a prefix is in the text...
    assert missing_quotes("it reaches {out}`91.0 ± 0.2` nats", nb) == ["91.0 ± 0.2"]  # ...a rounding is not


def test_quotes_are_matched_across_line_breaks_and_in_html_tables():
    nb = nbformat.v4.new_notebook()
    table = nbformat.v4.new_output("display_data", data={"text/html": "<td>65.10&nbsp;%</td><td>5.73</td>"})
    nb.cells = [nbformat.v4.new_code_cell("...", outputs=[table])]
    assert "65.10 % 5.73" in output_text(nb).replace("\xa0", " ")
    assert missing_quotes("an error of {out}`65.10`\nand a spread of {out}`5.73`", nb) == []
    assert unmarked_decimals("a role broken over lines {out}`65.10\n± 5.73` is not one") == ["65.10", "5.73"]


def test_prose_decimals_outside_the_role_math_and_code_are_found():
    text = """A result 3.11 ± 0.25 and one quoted {out}`2.43`.

$$ x = 0.5 $$ and $y = 1.5$ and `lr=1e-3 0.9` in code, a link [v0.2](https://a.b/0.3).

```{code-cell} ipython3
print(4.5)
```
"""
    assert unmarked_decimals(text) == ["3.11", "0.25"]


def test_the_role_renders_as_its_text_in_the_colab_notebooks():
    index = book_index(ROOT)
    doc = chapters()[0].relative_to(ROOT).with_suffix("").as_posix()
    assert to_commonmark("ends at {out}`91.00 ± 0.24` nats", doc, index).startswith("ends at 91.00 ± 0.24")
