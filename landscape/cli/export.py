"""Export a study: points as CSV, the basin graph as GraphML, tree and points as JSON, or a
PATHSAMPLE/pele database.

Reads DIR/study.sqlite read-only (so it works on an interrupted study, and on a read-only copy)
and writes to ``--output FILE`` or standard output. ``csv``: one row per distinct point (the
summary.json point fields; rank pattern joined by '-', per-layer DNC metrics and the theory match
left out). ``graphml``: the basin graph (nodes distinct points, edges saddle descents and
transition states). ``tree-graphml``: the disconnectivity tree (leaves minima, internal nodes
merges at a loss level). ``json``: ``{"study", "dynamics", "n_trajectories", "tree", "points",
"edges", "transition_states"}``. ``pathsample``: ``-o OUTDIR`` receives min.data, ts.data,
points.min and points.ts as PATHSAMPLE writes them (pele's ``OptimDBConverter`` loads them;
:mod:`landscape.io.pathsample`). An export never writes over a file of the study, and over any
other existing file only with ``--force``.
"""
from __future__ import annotations

FORMATS = ("csv", "graphml", "json", "tree-graphml", "pathsample")
#: Columns of the CSV export.
CSV_COLUMNS = ("id", "kind", "label", "loss", "grad_norm", "rank_pattern", "index", "nullity", "symmetry_zero_modes",
               "excess_zero_modes", "type", "verified", "smallest_nonzero_eigenvalue", "theory_pattern",
               "basin_count", "fraction", "ci_low", "ci_high")


def register(sub) -> None:
    p = sub.add_parser("export", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", metavar="DIR", help="results folder of a study (holding study.sqlite)")
    p.add_argument("--format", required=True, choices=FORMATS, help="what to write")
    p.add_argument("--output", "-o", metavar="FILE", help="output file (default: standard output); "
                                                         "for pathsample, the output folder")
    p.add_argument("--force", action="store_true", help="replace an existing output file (never a file of the study)")
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
    from pathlib import Path

    from ..io.results import DB_NAME, atomic_write_text, check_output_file
    from ..io.store import StudyStore
    from ..study.config import StudyConfig
    from ..study.graph import graphml_text, tree_to_json
    from ..study.summary import summarise

    if args.format == "pathsample":
        return _pathsample(args)
    if args.output:
        check_output_file(args.output, protected_dir=args.dir, force=args.force)
    with StudyStore.open(Path(args.dir) / DB_NAME, readonly=True) as store:
        cfg = StudyConfig.from_dict(store.config)
        s = summarise(cfg, store)
        edges = store.edges()
        ts = store.transition_states()
    if args.format == "csv":
        text = _csv_text(s.record["points"])
    elif args.format == "json":
        text = json.dumps({"study": cfg.name, "dynamics": cfg.describe_dynamics(),
                           "n_trajectories": s.record["n_trajectories"], "tree": tree_to_json(s.tree),
                           "points": s.record["points"], "edges": edges, "transition_states": ts}, indent=1)
    else:
        text = graphml_text(s.graph if args.format == "graphml" else s.tree)
    if args.output:
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    return 0


def _pathsample(args) -> int:
    from pathlib import Path

    from ..core.validate import SpecError
    from ..io.pathsample import export_pathsample
    from ..io.results import DB_NAME, OutputError, check_output_file, folder_kind, owned_by_results_folder
    from ..io.store import StudyStore
    from ..study.config import StudyConfig

    if not args.output:
        raise SpecError("--format pathsample needs -o OUTDIR (a folder for min.data, ts.data, points.min, points.ts)")
    out = Path(args.output)
    if out.exists() and not out.is_dir():
        raise OutputError(f"-o {out} is a file: pathsample writes a folder")
    if out.resolve() == Path(args.dir).resolve() or folder_kind(out):
        raise OutputError(f"-o {out} is a study or sweep folder: choose another folder for the PATHSAMPLE files")
    owner = owned_by_results_folder(out)
    if owner is not None:
        raise OutputError(f"-o {out} is a folder the results folder {owner} keeps: choose another folder for the "
                          "PATHSAMPLE files")
    if out.is_symlink():
        raise OutputError(f"-o {out} is a symbolic link: give the folder itself")
    out.mkdir(parents=True, exist_ok=True)
    for name in ("min.data", "ts.data", "points.min", "points.ts", "landscape.json"):
        if (out / name).exists() or (out / name).is_symlink():
            check_output_file(out / name, protected_dir=args.dir, force=args.force)
    with StudyStore.open(Path(args.dir) / DB_NAME, readonly=True) as store:
        cfg = StudyConfig.from_dict(store.config)
        info = export_pathsample(store, cfg.model, out)
    print(f"{len(info['minima'])} minima and {len(info['transition_states'])} transition states written to {out}")
    return 0
