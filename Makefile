# The course's task runner. Two commands do all the set-up on a fresh machine:
#   make book   build the HTML book into _build/html from the notebooks' stored outputs
#               (executes nothing; warnings are errors), then check it against the notebooks
#   make test   run every test: vaelib (pytest), every chapter notebook re-executed in smoke mode
#               (nbval), then the book built and every page checked in headless Chromium
# Both create .venv (or reuse the active virtual environment) and install what they need.
# `make notebooks` is the one command that executes the chapters (default budget) into book/*.ipynb.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.vaelib-installed
BOOK_STAMP := $(VENV)/.book-installed
# CONSTRAINTS=constraints.txt installs the exact versions the tests last passed with (.ci/run does).
CONSTRAINTS ?=

# Chapters run from book/, so a relative data folder would point elsewhere: make it absolute.
# (override: also when it is given on the command line, make book VAELIB_DATA=../shared/data)
# The value is taken as written, never as make syntax: $(value ...) does not expand it, so a
# '$' stays a '$' and a '$(shell ...)' in it is text, not a command; no make function splits
# it at spaces. Paths starting with / or ~ are kept as they are.
ifdef VAELIB_DATA
override VAELIB_DATA := $(value VAELIB_DATA)
override VAELIB_DATA := $(if $(filter /% ~%,$(firstword $(VAELIB_DATA))),$(VAELIB_DATA),$(CURDIR)/$(VAELIB_DATA))
export VAELIB_DATA
endif

.PHONY: help install book lab test pytest nbval check-html notebooks check-notebooks reproduce lock clean

help:
	@echo "make book        build the book into _build/html from the stored outputs (executes nothing;"
	@echo "                 installs only what building needs, no torch)"
	@echo "make lab         open the chapters in JupyterLab (installs the full environment)"
	@echo "make test        pytest on tests/, nbval on book/*.ipynb (smoke budget), make book, make check-html"
	@echo "make check-html  open every page of _build/html in headless Chromium and check it (pytest-playwright;"
	@echo "                 a failing page's screenshot goes to _build/check-html). Without Chromium it installs"
	@echo "                 Debian's (asking before sudo); SKIP_BROWSER=1 skips the check, saying so"
	@echo "make notebooks   execute each chapter whose code changed (FORCE=1: every chapter) into"
	@echo "                 book/*.ipynb under the default budget; regenerate the others around their outputs"
	@echo "make check-notebooks  fail if a book/*.ipynb is not what make notebooks would write"
	@echo "make reproduce   run the papers' protocols to their end (hours; resumable), then execute the"
	@echo "                 Reproductions page; NAME=m2|burda-vae|burda-iwae5|burda-iwae50|page: only that one"
	@echo "make install     only create the environment ($(VENV)); CPU=1 (with any target that installs):"
	@echo "                 torch from PyTorch's CPU-only index, without the CUDA libraries"
	@echo "make lock        write constraints.txt from the environment (after the tests pass)"
	@echo "make clean       remove _build and the chapters' training runs"

install: $(STAMP)

# CPU=1 takes torch and torchvision from PyTorch's CPU-only index first (a machine without an
# NVIDIA GPU then skips the CUDA libraries, about 4 GB); the rest comes from PyPI as usual.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu

$(STAMP): requirements.txt requirements-book.txt pyproject.toml $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(if $(CPU),$(PY) -m pip install --quiet torch torchvision --index-url $(TORCH_CPU_INDEX))
	$(PY) -m pip install --quiet -r requirements.txt -e . $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	@touch $@ $(BOOK_STAMP)

# The book alone: Jupyter Book and what it imports, no torch and no vaelib (the pages come
# from the stored outputs; nothing is executed).
$(BOOK_STAMP): requirements-book.txt $(CONSTRAINTS)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements-book.txt $(if $(CONSTRAINTS),-c $(CONSTRAINTS))
	@touch $@

book: $(BOOK_STAMP)
	$(VENV)/bin/jupyter-book build -W -n --keep-going .
	$(PY) -m tools.check_book _build/html

test: pytest nbval
	@$(MAKE) --no-print-directory book
	@$(MAKE) --no-print-directory check-html

pytest: $(STAMP)
	$(PY) -m pytest tests

# Re-executes every chapter notebook in smoke mode (whatever the machine) and compares each
# output not tagged nbval-ignore-output with the stored default-budget one. The Reproductions page
# is skipped: its outputs are the results of runs that take hours (make reproduce).
nbval: $(STAMP)
	VAELIB_BUDGET=smoke $(PY) -m pytest --nbval --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider book \
	    --ignore=book/reproductions.ipynb

# Needs a built book (make book). pytest-playwright drives the system Chromium (browser_tests/conftest.py);
# screenshots of every chapter go to _build/screenshots, of each failing test's page to _build/check-html.
# SKIP_BROWSER=1 skips it, loudly: a laptop without Chromium can still run the rest of make test.
check-html: $(STAMP)
ifdef SKIP_BROWSER
	@echo "" >&2
	@echo "******** SKIPPED: the browser check (make check-html) did not run, because SKIP_BROWSER is set. ********" >&2
	@echo "******** The built pages were NOT opened in Chromium; this run does not show that they render.  ********" >&2
else
	@test -f _build/html/index.html || { echo "check-html: no _build/html; run make book first" >&2; exit 1; }
	@tools/install_chromium.sh
	$(PY) -m pytest -p no:cacheprovider browser_tests \
	    --screenshot only-on-failure --output _build/check-html
endif

# The chapters' notebooks (book/*.ipynb, with their stored outputs) in JupyterLab, run from book/
# with the installed vaelib; their training runs are cached in book/runs.
lab: $(STAMP)
	cd book && $(VENV)/bin/jupyter lab

notebooks: $(STAMP)
	$(PY) -m tools.notebooks sync $(if $(FORCE),--force)

check-notebooks: $(STAMP)
	$(PY) -m tools.notebooks check

# The long runs behind book/reproductions.md (benchmarks/reproduce.py): each continues from its
# checkpoints in the runs folder ($$VAELIB_RUNS, else runs/), writes benchmarks/results/NAME.json,
# and `page` executes the page from those files. MINUTES=M bounds each run's call.
reproduce: $(STAMP)
	$(PY) -m benchmarks.reproduce $(or $(NAME),all) $(if $(MINUTES),--max-minutes $(MINUTES))

lock: $(STAMP)
	@{ echo "# The versions every test last passed with (make lock). .ci/run installs with -c constraints.txt;"; \
	   echo "# requirements.txt keeps ranges, so Colab keeps its preinstalled torch."; \
	   $(PY) -m pip freeze --exclude-editable | grep -v "^vaelib"; } > constraints.txt

clean:
	rm -rf _build book/runs
