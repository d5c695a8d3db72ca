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

from ..io.export import CSV_COLUMNS, EXPORTS  # noqa: F401  (CSV_COLUMNS re-exported)

FORMATS = tuple(EXPORTS)


def register(sub) -> None:
    p = sub.add_parser("export", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", metavar="DIR", help="results folder of a study (holding study.sqlite)")
    p.add_argument("--format", required=True, choices=FORMATS,
                   help="what to write: " + "; ".join(f"{f.name}: {f.description}" for f in EXPORTS.values()))
    p.add_argument("--output", "-o", metavar="FILE", help="output file (default: standard output); "
                                                         "for a folder format (pathsample), the output folder")
    p.add_argument("--force", action="store_true", help="replace an existing output file (never a file of the study)")
    p.set_defaults(func=main)


def main(args) -> int:
    from pathlib import Path

    from ..io.export import ExportData, check_export_target, export
    from ..io.results import DB_NAME
    from ..io.store import StudyStore
    from ..study.config import StudyConfig
    from ..study.graph import tree_to_json
    from ..study.summary import summarise

    check_export_target(args.format, args.output, args.dir, args.force)   # before anything is read
    with StudyStore.open(Path(args.dir) / DB_NAME, readonly=True) as store:
        cfg = StudyConfig.from_dict(store.config)
        s = summarise(cfg, store)
        data = ExportData(name=cfg.name, dynamics=cfg.describe_dynamics(), n_trajectories=s.record["n_trajectories"],
                          points=s.record["points"], edges=store.edges(), transition_states=store.transition_states(),
                          graph=s.graph, tree=s.tree, tree_json=tree_to_json(s.tree), store=store, spec=cfg.model)
        message = export(args.format, data, args.output, protected_dir=args.dir, force=args.force)
    if message:
        print(message)
    return 0
