"""The layer order the README and ``landscape/__init__`` state is the one the imports follow."""
from __future__ import annotations

import ast
from pathlib import Path

import landscape

ORDER = ("core", "engines", "analysis", "io", "study", "viz", "net", "cli")
#: Layers that may not import each other although neither comes first in spirit.
SIBLINGS = {frozenset({"engines", "analysis"})}


def _imports(pkg: str) -> set[tuple[str, str]]:
    root = Path(landscape.__file__).parent / pkg
    out = set()
    for f in root.rglob("*.py"):
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ImportFrom) and node.level == 2 and node.module:
                out.add((node.module.split(".")[0], f.name))
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("landscape."):
                out.add((node.module.split(".")[1], f.name))
    return {(m, f) for m, f in out if m in ORDER and m != pkg}


def test_every_layer_imports_only_earlier_layers():
    wrong = []
    for i, pkg in enumerate(ORDER):
        for dep, f in _imports(pkg):
            if ORDER.index(dep) > i or frozenset({pkg, dep}) in SIBLINGS:
                wrong.append(f"{pkg}/{f} imports {dep}")
    assert not wrong, wrong


def test_the_stated_order_is_the_tested_one():
    doc = landscape.__doc__
    positions = [doc.index(f":mod:`landscape.{p}`") for p in ORDER]
    assert positions == sorted(positions)
