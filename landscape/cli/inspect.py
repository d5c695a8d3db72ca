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


def _f(v, fmt: str = ".3g") -> str:
    return "-" if v is None else format(v, fmt)


def format_analysis(a: dict, P: int) -> str:
    """The text of :meth:`landscape.analysis.PointAnalysis.format_text`, from the stored
    :meth:`~landscape.analysis.PointAnalysis.to_dict` ``a`` of a point with P parameters."""
    h, s = a["hessian"], a["structure"]
    lines = [f"label: {a['label']}" + (f"   (block pattern {a['pattern']})"
                                       if a.get("pattern") and a["pattern"] != a["label"] else ""),
             f"loss {a['loss']:.10g}   |grad| {a['grad_norm']:.3e}"]
    ranks = s["ranks"]
    gaps = [r["gap"] for r in ranks.values() if r["rank"] and r["gap"] is not None]
    lines.append("rank pattern: " + " ".join(f"{k}={ranks[k]['rank']}" for k in a["rank_names"])
                 + f"   (rank_rtol {s['thresholds']['rank_rtol']:g}; smallest justifying gap "
                 + (f"{min(gaps):.3g})" if gaps else "-)"))
    lines.append(f"Hessian ({h['method']}, P={P}): index {h['index']}{'+' if h['index_is_lower_bound'] else ''}, "
                 f"nullity {h['nullity']}{'+' if h['nullity_is_lower_bound'] else ''} = {h['symmetry_zero_modes']} "
                 f"symmetry + {h['excess_zero_modes']} excess; τ = {h['tau']:.3g} ({h['tau_source']})")
    lines.append(f"  type: {h['type']} — {h['description']}")
    sn = h["smallest_nonzero_eigenvalue"]
    lines.append(f"  smallest non-zero eigenvalue {sn:.6g}" if sn is not None else
                 "  smallest non-zero eigenvalue: none found")
    lines.append(f"  symmetry modes: max‖Hq‖ = {h['symmetry_residual']:.3e} "
                 f"({'verified' if h['symmetry_verified'] else 'NOT below τ'})")
    lines.append("collapse metrics (layer: DNC1, DNC1 trace ratio, DNC2 ETF, DNC2 OF, |μG| ratio, DNC3):")
    for m in a["dnc"]:
        e = [_f(m[k], ".2e") for k in ("dnc1", "dnc1_trace_ratio", "dnc2_etf", "dnc2_of", "global_mean_ratio")]
        lines.append(f"  {m['name']:>5}: {e[0]} (r={m['dnc1_rank']}) {e[1]} {e[2]} {e[3]} {e[4]} "
                     + (f"{m['weight']}: {_f(m['dnc3'], '.2e')}" if m["weight"] else ""))
    lines.append("class-mean logits Z̄ (column c = class c):")
    lines += ["  " + " ".join(f"{x:9.4f}" for x in row) for row in a["Zbar"]]
    t = a.get("theory")
    if t is None:
        lines.append("theory: no closed forms for this model (linear CE only)")
    elif not t.get("matched"):
        lines.append(f"theory: no match ({t.get('reason')})")
    else:
        scales = (" at scales " + ", ".join(f"{x:.6g}" for x in t["scales"])) if t["scales"] else ""
        lines.append(f"theory: {t['kind']} match to {t['pattern']}{scales}; theory loss {t['loss']:.10g}, "
                     f"difference {t['loss_difference']:.3e}"
                     + ("" if t["rank_pattern_consistent"] else "; rank pattern differs from theory's"))
    lines.append("thresholds: " + ", ".join(f"{k}={v}" for k, v in sorted(a["thresholds"].items())))
    return "\n".join(lines)


def points_table(rows: list[dict]) -> str:
    """Fixed-width table of summary point records (:func:`landscape.study.summarise`)."""
    head = f"{'id':>4} {'kind':<10} {'label':<22} {'loss':>16} {'|grad|':>9} {'index':>5} {'sym0':>5} " \
           f"{'exc0':>5} {'rank pattern':<22} {'starts':>6} {'fraction [95% CI]':<26}"
    out = [head, "-" * len(head)]
    for r in rows:
        rp = "-".join(str(x) for x in r["rank_pattern"]) if r["rank_pattern"] is not None else "-"
        frac = "-" if r["fraction"] is None else f"{r['fraction']:.4f} [{r['ci_low']:.4f}, {r['ci_high']:.4f}]"
        out.append(f"{r['id']:>4} {r['kind']:<10} {str(r['label']):<22} {r['loss']:>16.10g} {r['grad_norm']:>9.2e} "
                   f"{_f(r['index'], 'd'):>5} {_f(r['symmetry_zero_modes'], 'd'):>5} "
                   f"{_f(r['excess_zero_modes'], 'd'):>5} {rp:<22} {r['basin_count']:>6} {frac:<26}")
    return "\n".join(out)


def main(args) -> int:
    from pathlib import Path

    import numpy as np

    from ..config import StudyConfig
    from ..model import SpecError
    from ..store import DB_NAME, StudyStore
    from ..study import MAIN, summarise

    with StudyStore.open(Path(args.dir) / DB_NAME) as store:
        cfg = StudyConfig.from_dict(store.config)
        s = summarise(cfg, store)
        if args.point is None:
            trajs = store.trajectories()
            n_other = sum(1 for t in trajs if (t["engine"] or {}).get("kind") != MAIN)
            print(f"study {cfg.name!r}: {s['n_trajectories']} of {cfg.trajectories} trajectories "
                  f"({cfg.describe_dynamics()}): " + ", ".join(f"{k} {v}" for k, v in s["stop_reasons"].items()))
            print(f"saddle search: {n_other} of {cfg.saddles.starts} starts ({cfg.saddles.describe()}); "
                  f"{s['G'].number_of_edges()} saddle connections ({cfg.saddles.describe_descent()})")
            print(points_table(s["points"]))
            if s["uncertified"]:
                print("uncertified: " + ", ".join(f"{u['stop_reason']} {u['count']}" for u in s["uncertified"]))
            return 0
        row = next((r for r in s["points"] if r["id"] == args.point), None)
        if row is None:
            raise SpecError(f"POINT={args.point} is invalid: the study has points "
                            f"{sorted(r['id'] for r in s['points'])}")
        p = store.point(args.point)
        edges = store.edges()
    print(f"point {row['id']} ({row['kind']}) of study {cfg.name!r}")
    if p["analysis"] is None:
        print("not analysed")
    else:
        print(format_analysis(p["analysis"], cfg.model.P))
    if p["spectrum"] is not None:
        ev = np.sort(p["spectrum"])
        print(f"Hessian spectrum ({ev.size} eigenvalues): lowest " + ", ".join(f"{x:.4g}" for x in ev[:8])
              + "; highest " + ", ".join(f"{x:.4g}" for x in ev[-3:]))
    print(f"basin: {row['basin_count']} of {s['n_trajectories']} starts"
          + ("" if row["fraction"] is None else
             f", fraction {row['fraction']:.4f} [{row['ci_low']:.4f}, {row['ci_high']:.4f}] (95% Wilson)")
          + f" under {cfg.describe_dynamics()}")
    down = [e for e in edges if e["saddle_id"] == args.point]
    up = [e for e in edges if e["target_id"] == args.point]
    for e in down:
        to = ("no certified point" if e["target_id"] is None
              else f"point {e['target_id']}, barrier {e['barrier']:.6g}")
        print(f"descent direction {e['direction']}{'+' if e['sign'] > 0 else '-'} (eigenvalue {e['eigenvalue']:.4g}): "
              f"{to} [{e['stop_reason']}]")
    for e in up:
        print(f"reached from saddle {e['saddle_id']} along direction {e['direction']}{'+' if e['sign'] > 0 else '-'}, "
              f"barrier {e['barrier']:.6g}")
    return 0
