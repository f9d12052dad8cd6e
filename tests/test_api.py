"""The public API is listed once (vaelib.__all__), documented, and mirrored in vaelib/README.md."""

import ast
import inspect
import re
from pathlib import Path

import vaelib

ROOT = Path(__file__).resolve().parent.parent
API_README = (ROOT / "vaelib" / "README.md").read_text()


def test_every_public_name_exists_and_is_documented():
    for name in vaelib.__all__:
        obj = getattr(vaelib, name)
        if inspect.isfunction(obj) or inspect.isclass(obj):
            assert inspect.getdoc(obj), f"vaelib.{name} has no docstring"


def test_readme_lists_exactly_the_public_api():
    assert "## The vaelib API" in API_README, "vaelib/README.md has no '## The vaelib API' section"
    section = API_README.split("## The vaelib API", 1)[1].split("\n## ", 1)[0]
    listed = set(re.findall(r"^\| `([A-Za-z_0-9]+)", section, flags=re.M))
    assert listed == set(vaelib.__all__), (
        f"vaelib/README.md API table and vaelib.__all__ differ: only in the table {listed - set(vaelib.__all__)}, "
        f"only in __all__ {set(vaelib.__all__) - listed}"
    )


def _vaelib_imports() -> dict[str, set[str]]:
    """module -> the vaelib modules it imports (relative imports), from the source."""
    graph = {}
    for path in sorted((ROOT / "vaelib").glob("*.py")):
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level == 1:
                names = [a.name for a in node.names]
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                assert not private, f"vaelib/{path.name} imports private names {private} from .{node.module or ''}"
                deps.update([node.module.split(".")[0]] if node.module else names)
        graph[path.stem] = deps
    return graph


def test_vaelib_modules_form_no_import_cycle():
    graph = {m: deps for m, deps in _vaelib_imports().items() if m not in ("__init__", "__main__")}
    done, path = set(), []

    def visit(module):
        if module in path:
            raise AssertionError("import cycle: " + " -> ".join(path[path.index(module):] + [module]))
        if module in done:
            return
        path.append(module)
        for dep in graph.get(module, ()):
            visit(dep)
        path.pop()
        done.add(module)

    for module in graph:
        visit(module)
    assert graph["recipes"] >= {"loop", "models", "objectives"}  # the parser sees the imports
