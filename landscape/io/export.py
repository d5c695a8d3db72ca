"""One registry of export formats: a format is one writer function and one entry of :data:`EXPORTS`.

Light to import (networkx and numpy load inside the writers), so the command line lists the
formats without loading them.

Every writer reads an :class:`ExportData` (what a study holds, assembled once from its store by
the caller) and either returns text (``target = "file"``: written atomically to ``--output`` or to
standard output) or writes files into a folder (``target = "folder"``). :func:`export` gives
every format the same safety (:mod:`landscape.io.results`): never over a file of the study or a
results folder, over any other existing file only with ``force``, nothing half-written, and a
file that cannot be written (a full disk, a read-only folder) named in one line.

Formats: ``csv`` (one row per distinct point, :data:`CSV_COLUMNS`), ``json`` (study, dynamics,
trajectory count, tree, points, edges, transition states), ``graphml`` (the basin graph),
``tree-graphml`` (the disconnectivity tree), ``pathsample`` (min.data, ts.data, points.min,
points.ts as PATHSAMPLE writes them, :mod:`landscape.io.pathsample`).
"""
from __future__ import annotations

import csv
import io
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .results import OutputError, check_output_file, folder_kind, owned_by_results_folder
from .writes import write_named

#: Columns of the CSV export.
CSV_COLUMNS = ("id", "kind", "label", "loss", "grad_norm", "rank_pattern", "index", "nullity", "symmetry_zero_modes",
               "excess_zero_modes", "type", "verified", "smallest_nonzero_eigenvalue", "theory_pattern",
               "basin_count", "fraction", "ci_low", "ci_high")


@dataclass(frozen=True)
class ExportData:
    """What the writers read: the study's ``name``, ``dynamics`` (str), ``n_trajectories``, the
    summary ``points`` (dicts, as in summary.json), stored ``edges`` and ``transition_states``, the
    basin ``graph`` and disconnectivity ``tree`` (networkx) with its flat ``tree_json``, and the
    open read-only ``store`` and model ``spec`` (for writers that read the parameters)."""

    name: str
    dynamics: str
    n_trajectories: int
    points: list
    edges: list            # EdgeRecord, …
    transition_states: list  # TransitionStateRecord, …
    graph: Any
    tree: Any
    tree_json: dict
    store: Any
    spec: Any


@dataclass(frozen=True)
class ExportFormat:
    """``name``; ``target`` ``"file"`` (``write(data) -> text``) or ``"folder"``
    (``write(data, folder) -> message``, with the file names it writes in ``files``); ``description``."""

    name: str
    target: str
    write: Callable
    description: str
    files: tuple[str, ...] = ()


EXPORTS: dict[str, ExportFormat] = {}


def export_format(name: str, target: str, description: str, files: tuple[str, ...] = ()):
    """Decorator: register ``fn`` as the writer of format ``name``."""
    def deco(fn):
        EXPORTS[name] = ExportFormat(name, target, fn, description, files)
        return fn
    return deco


# ----- GraphML (also used for graph.graphml of every study folder) -------------------------------------------
def node_name(n) -> str:
    """A tree node (kind, number) as the string figures and GraphML use: ``"leaf:3"``, ``"merge:0"``."""
    return f"{n[0]}:{n[1]}"


def _graphml_value(v):
    import numpy as np

    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, (bool, int, float, str)):
        return v
    return json.dumps(v)


def graphml_text(G) -> str:
    """A basin graph (or tree, a networkx graph) as GraphML text. GraphML holds scalars only: None
    attributes are left out, lists, tuples and dicts are written as JSON strings; tuple node names
    (the tree's) become their string form."""
    import networkx as nx

    H = G.copy()
    if any(isinstance(n, tuple) for n in H):
        H = nx.relabel_nodes(H, {n: node_name(n) for n in H if isinstance(n, tuple)})
    for attrs in [H.graph, *(a for _, a in H.nodes(data=True)), *(a for *_, a in H.edges(data=True))]:
        for k in list(attrs):
            if attrs[k] is None:
                del attrs[k]
            else:
                attrs[k] = _graphml_value(attrs[k])
    return "\n".join(nx.generate_graphml(H)) + "\n"


# ----- the writers -----------------------------------------------------------------------------------------
@export_format("csv", "file", "one row per distinct point (rank pattern joined by '-', per-layer metrics left out)")
def csv_text(data: ExportData) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for p in data.points:
        row = {k: p.get(k) for k in CSV_COLUMNS}
        row["rank_pattern"] = "-".join(map(str, p["rank_pattern"])) if p["rank_pattern"] is not None else None
        row["theory_pattern"] = (p["theory_match"] or {}).get("pattern")
        for k in ("loss", "grad_norm", "smallest_nonzero_eigenvalue", "fraction", "ci_low", "ci_high"):
            if row[k] is not None:
                row[k] = repr(float(row[k]))  # shortest exact round-trip form
        w.writerow(row)
    return buf.getvalue()


@export_format("json", "file", "study, dynamics, trajectory count, tree, points, edges and transition states")
def json_text(data: ExportData) -> str:
    return json.dumps({"study": data.name, "dynamics": data.dynamics, "n_trajectories": data.n_trajectories,
                       "tree": data.tree_json, "points": data.points, "edges": [e.to_dict() for e in data.edges],
                       "transition_states": [t.to_dict() for t in data.transition_states]}, indent=1)


@export_format("graphml", "file", "the basin graph (nodes distinct points, edges saddle descents and transition states)")
def graph_graphml(data: ExportData) -> str:
    return graphml_text(data.graph)


@export_format("tree-graphml", "file", "the disconnectivity tree (leaves minima, internal nodes merges at a loss level)")
def tree_graphml(data: ExportData) -> str:
    return graphml_text(data.tree)


@export_format("pathsample", "folder", "a PATHSAMPLE/pele database (pele's OptimDBConverter reads it)",
               files=("min.data", "ts.data", "points.min", "points.ts", "landscape.json"))
def pathsample_folder(data: ExportData, folder: Path) -> str:
    from .pathsample import export_pathsample   # numpy and torch (its analysis): only for this format

    info = export_pathsample(data.store, data.spec, folder)
    return f"{len(info['minima'])} minima and {len(info['transition_states'])} transition states written to {folder}"


# ----- one safe way out ----------------------------------------------------------------------------------------
def check_output_folder(out: Path, protected_dir: str | Path, files: tuple[str, ...], force: bool) -> Path:
    """A folder a folder format may write ``files`` into: not a file, not a study/sweep folder or
    a folder one keeps, not a link; existing files of those names only with ``force``."""
    if out.exists() and not out.is_dir():
        raise OutputError(f"-o {out} is a file: this format writes a folder")
    if out.resolve() == Path(protected_dir).resolve() or folder_kind(out):
        raise OutputError(f"-o {out} is a study or sweep folder: choose another folder for the exported files")
    owner = owned_by_results_folder(out)
    if owner is not None:
        raise OutputError(f"-o {out} is a folder the results folder {owner} keeps: choose another folder for the "
                          "exported files")
    if out.is_symlink():
        raise OutputError(f"-o {out} is a symbolic link: give the folder itself")
    for name in files:
        if (out / name).exists() or (out / name).is_symlink():
            check_output_file(out / name, protected_dir=protected_dir, force=force)
    return out


def check_export_target(fmt: str, output: str | None, protected_dir: str | Path, force: bool) -> None:
    """Refuse a bad ``--output`` before anything is read (a SpecError-like :class:`OutputError`)."""
    f = EXPORTS[fmt]
    if f.target == "folder":
        if not output:
            raise OutputError(f"--format {fmt} needs -o OUTDIR (a folder for {', '.join(f.files[:4])})")
        check_output_folder(Path(output), protected_dir, f.files, force)
    elif output:
        check_output_file(output, protected_dir=protected_dir, force=force)


def export(fmt: str, data: ExportData, output: str | None, *, protected_dir: str | Path, force: bool = False) -> str | None:
    """Write format ``fmt`` of ``data`` to ``output`` (a file, standard output when None, or a
    folder for folder formats) with the checks of :func:`check_export_target`; returns the
    folder writer's message (None for a file format)."""
    check_export_target(fmt, output, protected_dir, force)
    f = EXPORTS[fmt]
    if f.target == "folder":
        out = Path(output)
        out.mkdir(parents=True, exist_ok=True)
        return f.write(data, out)
    text = f.write(data)
    if output:
        write_named(output, text.encode("utf-8"))
    else:
        sys.stdout.write(text)
    return None
