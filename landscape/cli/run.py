"""Run a study: random starts, batched trajectories, certified critical points, results folder.

With no arguments, runs the embedded default study (deep linear CE UFM, K=4, n=2, d=8, L=3,
λ=1e-3; gradient descent lr 0.5 then Newton polish) and writes ``runs/<name>-<time>/``.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("run", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("--config", metavar="FILE", help="study file (.toml); default: the embedded default study")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set d=70 --set lambda=0.0009765625 --set trajectories=2000")
    p.add_argument("--out", metavar="DIR", help="results folder (default: runs/<name>-<YYYYmmdd-HHMMSS>)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=main)


def main(args) -> int:
    import time
    from pathlib import Path

    from ..config import load_study
    from ..study import run_study

    cfg = load_study(args.config, args.overrides)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
    summary = run_study(cfg, out, progress=not args.no_progress)
    c = summary["stop_reasons"]
    print(f"{summary['n_trajectories']} trajectories in {summary['wall_time_s']:.1f} s "
          f"({cfg.describe_dynamics()}): " + ", ".join(f"{k} {v}" for k, v in c.items()))
    print(f"results: {out}")
    return 0
