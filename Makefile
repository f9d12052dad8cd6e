# The course's task runner. Two commands do all the set-up on a fresh machine:
#   make book   build the HTML book into _build/html (executes every chapter, warnings are errors)
#   make test   run the vaelib tests (pytest) and re-check every chapter notebook (nbval)
# Both create .venv (or reuse the active virtual environment) and install what they need.

SHELL  := /bin/bash
PYTHON ?= python3
VENV   ?= $(if $(VIRTUAL_ENV),$(VIRTUAL_ENV),.venv)
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.vaelib-installed

# Chapters run from book/, so a relative data folder would point elsewhere: make it absolute.
ifdef VAELIB_DATA
export VAELIB_DATA := $(abspath $(VAELIB_DATA))
endif

.PHONY: help install book test pytest nbval notebooks check-notebooks clean

help:
	@echo "make book        build the book into _build/html (warnings are errors)"
	@echo "make test        pytest on tests/ and nbval on book/*.ipynb"
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

pytest: $(STAMP)
	$(PY) -m pytest tests

nbval: $(STAMP)
	$(PY) -m pytest --nbval --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider book

notebooks: $(STAMP)
	rm -rf book/runs  # stored outputs come from fresh training runs
	$(PY) tools/notebooks.py sync

check-notebooks: $(STAMP)
	$(PY) tools/notebooks.py check

clean:
	rm -rf _build book/runs
