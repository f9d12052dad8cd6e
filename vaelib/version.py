"""The installed vaelib's version, read from its distribution metadata (pyproject.toml), so the two cannot disagree."""

from importlib import metadata

try:
    __version__ = metadata.version("vaelib")
except metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"
