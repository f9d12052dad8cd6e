"""The course's commands that are not tests, run from the repository root as modules:
``python -m tools.notebooks`` and ``python -m tools.check_book`` (the Makefile does)."""
