"""The public API is listed once (vaelib.__all__), documented, and mirrored in the README."""

import inspect
import re
from pathlib import Path

import vaelib

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_every_public_name_exists_and_is_documented():
    for name in vaelib.__all__:
        obj = getattr(vaelib, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"vaelib.{name} has no docstring"


def test_readme_lists_exactly_the_public_api():
    section = README.split("## The vaelib API", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([A-Za-z_0-9]+)", section, flags=re.M))
    assert listed == set(vaelib.__all__), (
        f"README API table and vaelib.__all__ differ: only in README {listed - set(vaelib.__all__)}, "
        f"only in __all__ {set(vaelib.__all__) - listed}"
    )
