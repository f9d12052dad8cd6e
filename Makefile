# The course's task runner. Two commands do all the set-up on a fresh machine:
#   make book   build the HTML book into _build/html (executes every chapter, warnings are errors)
#   make test   run every test: vaelib (pytest), every chapter notebook (nbval), and the built
#               book's pages in headless Chromium (builds the book first; execution is cached)
# Both create .venv (or reuse the active virtual environment) and install what they need.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.vaelib-installed

# Chapters run from book/, so a relative data folder would point elsewhere: make it absolute.
# (override: also when it is given on the command line, make book VAELIB_DATA=../shared/data)
ifdef VAELIB_DATA
override VAELIB_DATA := $(abspath $(VAELIB_DATA))
export VAELIB_DATA
endif

.PHONY: help install book test pytest nbval check-html notebooks check-notebooks clean

help:
	@echo "make book        build the book into _build/html (warnings are errors)"
	@echo "make test        pytest on tests/, nbval on book/*.ipynb, then make book and make check-html"
	@echo "make check-html  open every page of _build/html in headless Chromium and check it"
	@echo "make notebooks   re-execute each book/*.md into its paired book/*.ipynb"
	@echo "make install     only create the environment ($(VENV))"
	@echo "make clean       remove _build (including the execution cache)"

install: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -r requirements.txt -e .
	@touch $@

book: $(STAMP)
	$(VENV)/bin/jupyter-book build -W -n --keep-going .
	$(PY) tools/check_book.py _build/html

test: pytest nbval
	@$(MAKE) --no-print-directory book
	@$(MAKE) --no-print-directory check-html

pytest: $(STAMP)
	$(PY) -m pytest tests

nbval: $(STAMP)
	$(PY) -m pytest --nbval --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider book

# Needs a built book (make book). Screenshots of every chapter go to _build/screenshots.
check-html: $(STAMP)
	@test -f _build/html/index.html || { echo "check-html: no _build/html; run make book first" >&2; exit 1; }
	@tools/install_chromium.sh
	$(PY) -m pytest -p no:cacheprovider browser_tests

notebooks: $(STAMP)
	rm -rf book/runs  # stored outputs come from fresh training runs
	$(PY) tools/notebooks.py sync

check-notebooks: $(STAMP)
	$(PY) tools/notebooks.py check

clean:
	rm -rf _build book/runs
