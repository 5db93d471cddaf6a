"""What a tree of Python sources imports, read from the source (imports inside functions included):
for the tests that keep the dependencies pointing one way."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

_DYNAMIC = {"import_module", "__import__"}  # importlib.import_module("x"), __import__("x")


def imports_in(root: Path) -> Iterator[tuple[Path, int, str]]:
    """(file, line, module) for every import statement and every literal dynamic import under `root`."""
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield path, node.lineno, alias.name
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                yield path, node.lineno, node.module
            elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
                  and isinstance(node.args[0].value, str)
                  and getattr(node.func, "attr", getattr(node.func, "id", None)) in _DYNAMIC):
                yield path, node.lineno, node.args[0].value


def offending(root: Path, forbidden: tuple[str, ...]) -> list[str]:
    """`file:line module` for each import under `root` of a module in (or under) `forbidden`."""
    return [f"{path.relative_to(root.parent)}:{line} {module}" for path, line, module in imports_in(root)
            if any(module == f or module.startswith(f + ".") for f in forbidden)]
