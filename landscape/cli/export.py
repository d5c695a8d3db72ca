"""Export a study: the distinct points as CSV, the basin graph as GraphML, or tree and points as JSON.

Reads DIR/study.sqlite (so it works on an interrupted study too) and writes to ``--output FILE``
or standard output. ``csv``: one row per distinct point (the summary.json point fields; rank
pattern joined by '-', per-layer DNC metrics and the theory match left out). ``graphml``: the
basin graph (nodes distinct points, edges saddle descents). ``tree-graphml``: the
disconnectivity tree (leaves minima, internal nodes merges at a loss level). ``json``: ``{"study", "dynamics",
"n_trajectories", "tree", "points", "edges"}`` with the disconnectivity tree of
:func:`landscape.graph.tree_to_json` and the summary point records.
"""
from __future__ import annotations

FORMATS = ("csv", "graphml", "json", "tree-graphml")
#: Columns of the CSV export.
CSV_COLUMNS = ("id", "kind", "label", "loss", "grad_norm", "rank_pattern", "index", "nullity", "symmetry_zero_modes",
               "excess_zero_modes", "type", "smallest_nonzero_eigenvalue", "theory_pattern", "basin_count",
               "fraction", "ci_low", "ci_high")


def register(sub) -> None:
    p = sub.add_parser("export", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", metavar="DIR", help="results folder of a study (holding study.sqlite)")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--output", "-o", metavar="FILE", help="output file (default: standard output)")
    p.set_defaults(func=main)


def _csv_text(points: list[dict]) -> str:
    import csv
    import io

    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, lineterminator="\n")
    w.writeheader()
    for p in points:
        row = {k: p.get(k) for k in CSV_COLUMNS}
        row["rank_pattern"] = "-".join(map(str, p["rank_pattern"])) if p["rank_pattern"] is not None else None
        row["theory_pattern"] = (p["theory_match"] or {}).get("pattern")
        for k in ("loss", "grad_norm", "smallest_nonzero_eigenvalue", "fraction", "ci_low", "ci_high"):
            if row[k] is not None:
                row[k] = repr(float(row[k]))  # shortest exact round-trip form
        w.writerow(row)
    return buf.getvalue()


def main(args) -> int:
    import json
    import sys
    import tempfile
    from pathlib import Path

    from ..config import StudyConfig
    from ..graph import tree_to_json, write_graphml
    from ..store import DB_NAME, StudyStore
    from ..study import summarise

    with StudyStore.open(Path(args.dir) / DB_NAME) as store:
        cfg = StudyConfig.from_dict(store.config)
        s = summarise(cfg, store)
        edges = store.edges()
    if args.format == "csv":
        text = _csv_text(s["points"])
    elif args.format == "json":
        text = json.dumps({"study": cfg.name, "dynamics": cfg.describe_dynamics(),
                           "n_trajectories": s["n_trajectories"], "tree": tree_to_json(s["T"]),
                           "points": s["points"], "edges": edges}, indent=1)
    else:
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "graph.graphml"
            write_graphml(s["G"] if args.format == "graphml" else s["T"], path)
            text = path.read_text()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0
