"""The layer order the README and ``landscape/__init__`` state is the one the imports follow, and
no module imports itself through others (no import cycle, deferred imports included)."""
from __future__ import annotations

import ast
import importlib
import importlib.util
from pathlib import Path

import networkx as nx

import landscape

ORDER = ("core", "engines", "analysis", "continuation", "io", "study", "viz", "net", "cli")
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


# ----- no import cycles ---------------------------------------------------------------------------
def _module_name(f: Path) -> str:
    parts = list(f.relative_to(Path(landscape.__file__).parent.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_only(tree: ast.AST) -> set[int]:
    """ids of the import statements under ``if TYPE_CHECKING:`` (never executed)."""
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            out |= {id(n) for stmt in node.body for n in ast.walk(stmt) if isinstance(n, (ast.Import, ast.ImportFrom))}
    return out


def _lazy_home(package: str, name: str) -> str | None:
    """The module a package loads ``name`` from on first use (its ``_HOME``/``_EXPORTS`` table,
    :mod:`landscape._lazy`), or None."""
    ns = vars(importlib.import_module(package))
    home = (ns.get("_HOME") or ns.get("_EXPORTS") or {}).get(name)
    if home is None:
        return None
    return importlib.util.resolve_name(home, package) if home.startswith(".") else home


def import_graph() -> nx.DiGraph:
    """Every module of ``landscape`` → the ``landscape`` modules it imports, from the source: module
    level and inside functions alike (a deferred import only postpones a cycle), relative imports
    resolved, ``from . import x`` to module ``x`` where ``x`` is one, and a name a package loads on
    first use to the module that defines it. Edges carry ``line`` and ``deferred``."""
    files = {_module_name(f): f for f in Path(landscape.__file__).parent.rglob("*.py")}
    g = nx.DiGraph()
    g.add_nodes_from(files)
    for mod, f in files.items():
        tree = ast.parse(f.read_text(encoding="utf-8"))
        skip = _type_checking_only(tree)
        deferred = {id(n) for fn in ast.walk(tree) if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef))
                    for n in ast.walk(fn) if isinstance(n, (ast.Import, ast.ImportFrom))}
        here = mod if f.name == "__init__.py" else mod.rpartition(".")[0]
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = here
                    for _ in range(node.level - 1):
                        pkg = pkg.rpartition(".")[0]
                    base = f"{pkg}.{base}" if base else pkg
                targets = []
                for a in node.names:
                    if f"{base}.{a.name}" in files:   # `from pkg import module`
                        targets.append(f"{base}.{a.name}")
                        continue
                    targets.append(base)
                    if base in files and files[base].name == "__init__.py":
                        targets.append(_lazy_home(base, a.name))
            else:
                continue
            for t in targets:
                while t and t not in files and "." in t:   # `import landscape.x.y.attr`: the module
                    t = t.rpartition(".")[0]
                if t in files and t != mod:
                    g.add_edge(mod, t, line=node.lineno, deferred=id(node) in deferred)
    return g


def test_the_import_graph_sees_deferred_and_lazily_loaded_imports():
    g = import_graph()
    assert g.edges["landscape.io.export", "landscape.io.pathsample"]["deferred"]   # inside the writer
    assert g.has_edge("landscape.study.transition_states", "landscape.engines.driver")   # `from ..engines import run_pipeline`
    assert g.has_edge("landscape.viz.report", "landscape.viz.figures")   # `from . import figures`
    assert not g.has_edge("landscape.core.theta", "landscape.core.spec")   # under TYPE_CHECKING only


def test_no_import_cycles():
    """No module imports itself through others, not even through an import inside a function:
    a deferred import hides a cycle from the interpreter, not from the design."""
    g = import_graph()
    sccs = [sorted(c) for c in nx.strongly_connected_components(g) if len(c) > 1]
    lines = []
    for cycle in list(nx.simple_cycles(g.subgraph(set().union(*sccs))))[:20] if sccs else []:
        steps = []
        for a, b in zip(cycle, cycle[1:] + cycle[:1]):
            e = g.edges[a, b]
            steps.append(f"{a} (line {e['line']}{', in a function' if e['deferred'] else ''}) → {b}")
        lines.append("; ".join(steps))
    assert not sccs, "import cycles among " + " | ".join(", ".join(c) for c in sccs) + ":\n" + "\n".join(lines)
