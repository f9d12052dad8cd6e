"""The book's build code: the Sphinx extensions (``stored_outputs``, ``dedupe_scripts``, ``quiet_config``) and the
MyST → CommonMark converter they share with tools/ (``colab``).

One package, imported from the repository root under one name (``_ext.colab``): by Sphinx
(``local_extensions`` in _config.yml puts the root on its path), by ``python -m tools.<tool>``
and by pytest (``pythonpath = ["."]`` in pyproject.toml).
"""
