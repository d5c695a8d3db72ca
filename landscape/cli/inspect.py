"""Inspect a study: a table of its distinct critical points, or the full analysis of one point.

``landscape inspect DIR`` lists every distinct point of the study in DIR (read from its
study.sqlite, so an unfinished or interrupted study can be inspected too) with its kind, label,
loss, Hessian index and zero modes, rank pattern and basin fraction. ``landscape inspect DIR
POINT`` prints the stored analysis of point POINT, its basin and its saddle connections.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("inspect", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", metavar="DIR", help="results folder of a study (holding study.sqlite)")
    p.add_argument("point", metavar="POINT", nargs="?", type=int, help="id of a distinct point")
    p.set_defaults(func=main)


def points_table(points) -> str:
    """Fixed-width table of a study's distinct points (:class:`~landscape.study.result.StudyPoint`)."""
    from ..analysis.point import fmt_or_dash

    head = f"{'id':>4} {'kind':<10} {'label':<22} {'loss':>16} {'|grad|':>9} {'index':>5} {'sym0':>5} " \
           f"{'exc0':>5} {'rank pattern':<22} {'starts':>6} {'fraction [95% CI]':<26}"
    out = [head, "-" * len(head)]
    for p in points:
        rp = "-".join(str(x) for x in p.rank_pattern) if p.rank_pattern is not None else "-"
        frac = "-" if p.fraction is None else f"{p.fraction:.4f} [{p.ci_low:.4f}, {p.ci_high:.4f}]"
        out.append(f"{p.id:>4} {p.kind:<10} {str(p.label):<22} {p.loss:>16.10g} {p.grad_norm:>9.2e} "
                   f"{fmt_or_dash(p.index, 'd'):>5} {fmt_or_dash(p.symmetry_zero_modes, 'd'):>5} "
                   f"{fmt_or_dash(p.excess_zero_modes, 'd'):>5} {rp:<22} {p.basin_count:>6} {frac:<26}")
    return "\n".join(out)


def main(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..analysis.point import format_analysis
    from ..core.validate import SpecError
    from ..io.results import DB_NAME
    from ..io.store import StudyStore
    from ..study.config import StudyConfig
    from ..study.result import StudyResult
    from ..study.summary import MAIN, summarise

    if not (Path(args.dir) / DB_NAME).exists():
        from ..study.lambda0 import is_lambda0_folder, summary_text

        if is_lambda0_folder(args.dir):   # a λ = 0 study: its summary, read back and checked (no database)
            from ..io.lambda0_results import read_lambda0_summary
            from ..io.results import FILES

            try:
                print(summary_text(read_lambda0_summary(args.dir)))
            except (KeyError, TypeError, ValueError, AttributeError, OverflowError) as exc:
                raise SpecError(f"{Path(args.dir) / FILES['summary']} is not a λ = 0 summary this version reads "
                                f"({type(exc).__name__}: {exc})") from None
            return 0
        from ..io.results import LAMBDA0_FILES, has_lambda0_database

        if has_lambda0_database(args.dir):
            raise SpecError(f"{args.dir} is a λ = 0 run that has not finished (its batches so far are in "
                            f"{LAMBDA0_FILES['database']}): continue it with `landscape run --resume {args.dir}`")
    with StudyStore.open(Path(args.dir) / DB_NAME, readonly=True) as store:
        cfg = StudyConfig.from_dict(store.config)
        summ = summarise(cfg, store)
        r, G = StudyResult.from_summary(args.dir, summ.record), summ.graph
        ts = store.transition_states()
        if args.point is None:
            trajs = store.trajectories()
            n_other = sum(1 for t in trajs if (t.engine or {}).get("kind") != MAIN)
            print(f"study {cfg.name!r}: {r.n_trajectories} of {cfg.trajectories} trajectories "
                  f"({cfg.describe_dynamics()}): " + ", ".join(f"{k} {v}" for k, v in r.stop_reasons.items()))
            print(f"saddle search: {n_other} of {cfg.saddles.starts} starts ({cfg.saddles.describe()}); "
                  f"{G.number_of_edges()} saddle connections ({cfg.saddles.describe_descent()})")
            print(points_table(r.points))
            if r.uncertified:
                print("uncertified: " + ", ".join(f"{k} {u.count}" for k, u in r.uncertified.items()))
            return 0
        row = next((q for q in r.points if q.id == args.point), None)
        if row is None:
            raise SpecError(f"POINT={args.point} is invalid: the study has points "
                            f"{sorted(q.id for q in r.points)}")
        p = store.point(args.point)
        edges = store.edges()
    print(f"point {row.id} ({row.kind}) of study {cfg.name!r}")
    if p.analysis is None:
        print("not analysed")
    else:
        print(format_analysis(p.analysis, cfg.model.P))
    if p.spectrum is not None:
        ev = np.sort(p.spectrum)
        print(f"Hessian spectrum ({ev.size} eigenvalues): lowest " + ", ".join(f"{x:.4g}" for x in ev[:8])
              + "; highest " + ", ".join(f"{x:.4g}" for x in ev[-3:]))
    print(f"basin: {row.basin_count} of {r.n_trajectories} starts"
          + ("" if row.fraction is None else
             f", fraction {row.fraction:.4f} [{row.ci_low:.4f}, {row.ci_high:.4f}] (95% Wilson)")
          + f" under {cfg.describe_dynamics()}")
    down = [e for e in edges if e.saddle_id == args.point]
    up = [e for e in edges if e.target_id == args.point]
    for e in down:
        to = ("no certified point" if e.target_id is None
              else f"point {e.target_id}, barrier {e.barrier:.6g}")
        print(f"descent direction {e.direction}{'+' if e.sign > 0 else '-'} (eigenvalue {e.eigenvalue:.4g}): "
              f"{to} [{e.stop_reason}]")
    for e in up:
        print(f"reached from saddle {e.saddle_id} along direction {e.direction}{'+' if e.sign > 0 else '-'}, "
              f"barrier {e.barrier:.6g}")
    for t in ts:
        if args.point in (t.min1_id, t.min2_id):
            mine, other = ((t.barrier1, t.min2_id) if t.min1_id == args.point else (t.barrier2, t.min1_id))
            print(f"transition state {t.saddle_id} to minimum {other}: barrier {mine:.6g} from here")
        elif t.saddle_id == args.point:
            print(f"transition state between minima {t.min1_id} (barrier {t.barrier1:.6g}) and "
                  f"{t.min2_id} (barrier {t.barrier2:.6g})")
    return 0
