"""Run a study: random starts, batched trajectories, certified critical points, results folder.

With no arguments, runs the embedded default study (deep linear CE UFM, K=4, n=2, d=8, L=3,
λ=1e-3; gradient descent lr 0.5 then Newton polish; a few Newton-MR saddle-search starts) and
writes ``runs/<name>-<time>/`` (with ``--set`` and no ``--set name=…`` the name lists the overrides,
``default+d=70``): config.json, study.sqlite, spectra.npz, tree.json,
graph.graphml, summary.json and report.html. ``--preset NAME`` runs another embedded study
(``landscape presets`` lists them). Work is committed to study.sqlite one unit at a time (a λ = 0
study: to lambda0.sqlite, one batch of starts at a time): a run stopped at any moment (Ctrl-C, a
killed process) continues with ``landscape run --resume DIR`` from what was committed. From Python, ``landscape.run_study(cfg, DIR)`` writes the same folder.
"""
from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("run", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("--config", metavar="FILE", help="study file (.toml), layered on the embedded default study")
    p.add_argument("--preset", metavar="NAME", help="an embedded study (see `landscape presets`)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field, e.g. --set d=70 --set lambda=0.0009765625 --set trajectories=2000")
    p.add_argument("--out", metavar="DIR",
                   help="results folder (default: runs/<name>-<YYYYmmdd-HHMMSS>; a study run with --set and no "
                        "--set name=… is named after its overrides, e.g. default+d=70+trajectories=2000)")
    p.add_argument("--resume", metavar="DIR",
                   help="continue the study in DIR (its stored configuration; no --config, --preset, --set or --out)")
    p.add_argument("--force", action="store_true",
                   help="write into a non-empty --out folder that holds no study (its files of the same names are replaced)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--timings", action="store_true",
                   help="print the seconds of each phase (trajectories, saddle search, saddle descents, transition "
                        "states, summary, featured spectra, report); summary.json's timings hold them up to the "
                        "summary either way, the result of landscape.run_study all of them")
    p.set_defaults(func=main)


def main(args) -> int:
    import time
    from pathlib import Path

    from ..core.validate import SpecError
    from ..io.results import (DB_NAME, LAMBDA0_FILES, check_results_folder, folder_kind, has_lambda0_database,
                              is_net_folder)
    from ..study.config import load_study
    from . import EXIT_INTERRUPTED, check_new_folder

    if args.resume:
        from ..study.run import load_config

        if args.config or args.overrides or args.out or args.preset:
            raise SpecError("--resume DIR continues the study stored in DIR with its own configuration: "
                            "it takes no --config, --set or --out, and no --preset")
        out = Path(args.resume)
        if folder_kind(out) == "sweep":
            raise SpecError(f"--resume {out} is a sweep folder (it holds sweep.json): resume it with "
                            f"`landscape sweep {out / 'sweep.json'} --out {out}` (the same command as before)")
        if folder_kind(out) is None and not has_lambda0_database(out):
            from ..io.lambda0_results import is_lambda0_folder

            if is_lambda0_folder(out):
                raise SpecError(f"--resume {out} is a finished λ = 0 run written before λ = 0 runs were resumable "
                                f"(it has no {LAMBDA0_FILES['database']}): there is nothing to resume; `landscape "
                                f"inspect {out}` prints it")
        if folder_kind(out) is None and is_net_folder(out):
            raise SpecError(f"--resume {out} is a `landscape net` run: resume it with `landscape net --resume {out}`")
        cfg = load_config(out)
        cfg.check_resources()
    else:
        cfg = load_study(args.config, args.overrides, preset=args.preset)
        out = Path(args.out) if args.out else Path("runs") / f"{cfg.name}-{time.strftime('%Y%m%d-%H%M%S')}"
        check_results_folder(out, force=args.force)
        check_new_folder(out)
        if (out / DB_NAME).exists():
            from ..io.store import StudyStore

            if not StudyStore.is_uninitialised(out / DB_NAME):
                raise SpecError(f"{out} already holds a study: continue it with `landscape run --resume {out}` "
                                "or choose another --out")
        if has_lambda0_database(out):
            raise SpecError(f"{out} already holds a λ = 0 study: continue it with `landscape run --resume {out}` "
                            "or choose another --out")
    # torch: only once the configuration and the folder are good
    from ..viz.pipeline import ReportInterrupted, run_study

    if cfg.model.unregularised:   # λ = 0: decided directions (landscape.study.lambda0), printed as such
        try:
            result = run_study(cfg, out, progress=not args.no_progress)
        except KeyboardInterrupt:
            print(f"\ninterrupted: every committed batch of starts is kept in {out / LAMBDA0_FILES['database']}; "
                  f"continue with `landscape run --resume {out}`", file=sys.stderr)
            return EXIT_INTERRUPTED
        print(result.text())
        if args.timings:
            print("timings: " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f} s" for k, v in result.timings.items()))
        print(f"wall time {result.wall_time_s:.1f} s; results: {out}")
        return 0
    try:
        result = run_study(cfg, out, progress=not args.no_progress)
    except ReportInterrupted as exc:
        _print_result(exc.result)
        print(f"\ninterrupted while writing the report: the study is complete in {out}; "
              f"write the report with `landscape report {out}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    except KeyboardInterrupt:
        print(f"\ninterrupted: every committed unit is kept in {out / DB_NAME}; "
              f"continue with `landscape run --resume {out}`", file=sys.stderr)
        return EXIT_INTERRUPTED
    _print_result(result)
    if args.timings:
        print("timings: " + ", ".join(f"{k[:-2].replace('_', ' ')} {v:.1f} s" for k, v in result.timings.items()))
    print(f"wall time {result.wall_time_s:.1f} s; results: {out}")
    return 0


def _print_result(r) -> None:
    """The lines ``landscape run`` prints about a finished study (a StudyResult): the diagnosis,
    the stop reasons, the headline and the saddles passed."""
    h, n = r.headline, r.n_trajectories
    for d in r.diagnosis:   # a study that mostly failed says so first, with what to change
        print(f"warning: {d.count} of {n} starts {d.reason} ({_pct(d.share)}): {d.advice}")
    print(f"{n} trajectories ({r.dynamics}): " + ", ".join(f"{k} {v}" for k, v in r.stop_reasons.items()))
    cert = h.certified
    if r.diagnosis and cert is not None and cert.n_certified is not None:
        dnc = (f"DNC {cert.dnc} of {cert.n_certified} certified ({_pct(cert.fraction)} "
               f"[{_pct(cert.ci_low)}, {_pct(cert.ci_high)}] of the certified; "
               f"{n - cert.n_certified} of {n} starts uncertified)")
    else:
        dnc = f"DNC fraction {_pct(h.dnc_fraction)} [{_pct(h.dnc_ci_low)}, {_pct(h.dnc_ci_high)}]"
    print(f"{len(r.points)} distinct critical points, {r.n_saddle_connections} saddle connections, "
          f"{len(r.transition_states)} transition states; {dnc}; "
          f"lowest loss {h.lowest_loss:.10g} ({h.lowest_loss_label}, point {h.lowest_loss_point})"
          if h.lowest_loss is not None else f"{len(r.points)} distinct critical points; {dnc}")
    visits = r.saddle_visits
    if visits:
        k = sum(v.n_trajectories for v in visits)
        print(f"saddles passed: {len(visits)} saddles finished {k} trajectories' polish and were "
              "continued past (no saddle holds a basin count)")


def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"
