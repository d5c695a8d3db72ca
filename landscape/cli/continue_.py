"""Follow a study's critical points as λ or the width changes: branches, folds, index changes.

``landscape continue DIR --param lambda --to X`` follows every stored distinct point (or
``--points ID,...``) from the study's λ towards X by pseudo-arclength continuation
(:mod:`landscape.continuation`): through folds, with every corrected point certified,
Hessian index and nullity net of the symmetry zero modes at every step, folds and index changes
located by bisection. ``--param`` may also be lambda_H, lambda_W or ratio (λ_H/λ_W). Writes
DIR/continuation.json and stores it in the database; the study report then draws the
bifurcation diagram.

``landscape continue DIR --param lambda --to 0`` (linear CE, λ > 0) follows every point (or
``--points``) down in λ to ``--floor`` (default 1e-12), leg by leg (λ halved per leg), records the
normalised margin γ = min margin/‖θ‖^{L+1} at every step, and polishes the last point's direction
as a λ = 0 study does (:func:`landscape.study.lambda0_limit.continue_to_limit`): it prints a few
points of the path and the limit's certificate (label, γ, KKT residual, support, local maximum or
saddle of the margin) beside the closed form, and stores the path as the run's branches with the
certificate under each branch's ``limit`` (and the run's ``limits``). ReLU, MSE and λ = 0 folders
are refused.

``landscape continue DIR --param d --to D`` embeds every point into each width up to D (zero rows
and columns keep it critical) and reports its index, nullity and symmetry zero modes per width:
DIR/continuation-d.json and the nullity-against-width figure.

Progress: every branch says where it starts, then (every few seconds, and at once for each event)
which parameter value it has reached and the events found so far, then how it ended;
``--no-progress`` keeps only the start and end lines.

Every run is kept: the record file holds the latest run at its top level (``param``, ``from``,
``to``, ``branches``, …, and ``run``: when it started and finished and its arguments) and the
runs before it, oldest first, in ``earlier_runs``; the database stores every run too (the report
draws each). A run interrupted before its first branch finished, or refused for its input, writes
nothing: the record file is left as it was.
"""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("continue", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", metavar="DIR", help="results folder of a study")
    p.add_argument("--param", required=True, choices=("lambda", "lambda_H", "lambda_W", "ratio", "d"))
    p.add_argument("--to", required=True, type=float, metavar="X", help="the parameter value to go to")
    p.add_argument("--points", metavar="ID,...", help="only these point ids (default: every distinct point)")
    p.add_argument("--steps", type=int, default=400, metavar="N", help="largest number of continuation steps per branch")
    p.add_argument("--budget", type=float, default=600.0, metavar="S",
                   help="largest predicted seconds of a width continuation (default 600; refused beyond, with the estimate)")
    p.add_argument("--floor", type=float, default=1e-12, metavar="X",
                   help="with --param lambda --to 0: the smallest λ the path is followed to (default 1e-12)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress lines while a branch is followed (its start and result are still printed)")
    p.set_defaults(func=main)


#: Seconds between two progress lines of one branch (an event is printed at once).
PROGRESS_EVERY_S = 2.0
#: Largest continuation record file read back to keep its earlier runs.
RECORD_MAX_BYTES = 512 * 2 ** 20


def main(args) -> int:
    import time
    from pathlib import Path

    from ..core.validate import SpecError, check_int, check_number
    from ..io.results import DB_NAME, check_writable_folder, write_json
    from ..io.store import StudyStore
    from ..study.config import StudyConfig
    from ..continuation import ContinuationSettings, continue_in_width, param_value

    out = Path(args.dir)
    wanted = parse_points(args.points)   # before anything is opened or written
    check_int("--steps", args.steps, 1)
    check_number("--budget", args.budget)
    limit = args.param == "lambda" and args.to == 0   # the λ → 0 limit (continue_to_limit)
    if limit:
        check_number("--floor", args.floor)
    elif args.param != "d":
        check_number("--to", args.to)   # a weight decay; a width is checked against the study's below
    if not (out / DB_NAME).is_file():
        from ..study.lambda0 import is_lambda0_folder

        if limit and is_lambda0_folder(out):
            raise SpecError(f"{out} is a λ = 0 run (model.lambda=0): it holds certified directions already; --to 0 "
                            "follows a λ > 0 study's critical points down to that limit")
        if is_lambda0_folder(out):
            raise SpecError(f"{out} is a λ = 0 run: it holds certified directions, not critical points, and "
                            "continuation in λ follows critical points of λ > 0 (toward λ → 0: continue a λ > 0 "
                            "study with --to a small λ)")
        raise SpecError(f"{out} holds no study ({DB_NAME} is missing)")
    check_writable_folder(out, "the continuation record")
    path = out / ("continuation-d.json" if args.param == "d" else "continuation.json")
    earlier = earlier_runs(path)   # an unreadable record is refused now, before any work, and never replaced
    progress = not getattr(args, "no_progress", False)
    run_info = {"started_at": _now(), "arguments": {"param": args.param, "to": args.to, "points": wanted,
                                                    "steps": args.steps, "budget": args.budget}}
    if limit:
        run_info["arguments"]["floor"] = args.floor
    with StudyStore.open(out / DB_NAME) as store:
        cfg = StudyConfig.from_dict(store.config)
        if limit:
            from ..study.lambda0_limit import check_limit_spec

            check_limit_spec(cfg.model)
            if not args.floor < param_value(cfg.model, "lambda"):
                raise SpecError(f"--floor={args.floor:g} is invalid: must lie below the study's λ = "
                                f"{param_value(cfg.model, 'lambda'):g}")
        pts = {p.id: p for p in store.points()}
        if wanted is not None:
            ids = wanted
            missing = [i for i in ids if i not in pts]
            if missing:
                raise SpecError(f"--points names {missing}, which the study does not hold (it has {sorted(pts)})")
        else:
            ids = sorted(pts)
        if not ids:
            print(f"{out} holds no distinct critical points: nothing to follow; nothing was written")
            return 0
        t0 = time.perf_counter()
        branches = []
        interrupted = False
        if args.param == "d":
            to = check_int("--to", args.to, cfg.model.d, " (a width, at least the study's)")
            # the time estimate sums over the widths, so it stops where it passes --budget and at the
            # first width over the memory budget (refused next): a huge --to is refused at once
            widest = widest_width(cfg.model, to)
            horizon = to if widest == to else (widest or cfg.model.d) + 1
            est = width_cost_estimate(cfg.model, horizon, len(ids), stop_above=args.budget)
            if est > args.budget:
                more = " or more"   # a partial sum: it stopped once past --budget (or at the memory bound)
                raise SpecError(f"--to={to} is refused: the analysis at every width {cfg.model.d}..{to} of {len(ids)} "
                                f"point(s) is estimated at {est:.3g} s{more} (the dense cost model of this machine, P "
                                f"up to {_P_at(cfg.model, to):,}), over --budget={args.budget:g} s; raise --budget or "
                                "choose a smaller --to")
            check_width_memory(cfg.model, to)
            record = {"param": "d", "from": cfg.model.d, "to": to, "branches": branches}
            print(f"embedding {len(ids)} point(s) into every width {cfg.model.d}..{to} (estimated {est:.3g} s); "
                  "Ctrl-C keeps the finished points", flush=True)
            try:
                for k, pid in enumerate(ids, 1):
                    p = store.point(pid)
                    print(f"point {pid} ({p.label}) [{k}/{len(ids)}]: widths {cfg.model.d}..{to}", flush=True)
                    branches.append(continue_in_width(cfg.model, p.params, to=to, point_id=pid, label=p.label,
                                                      progress=_width_progress(pid) if progress else None).to_dict())
            except KeyboardInterrupt:
                interrupted = True
        elif limit:
            settings = ContinuationSettings(max_steps=args.steps, certify_tol=cfg.certify_tol)
            p0 = param_value(cfg.model, args.param)
            limits: list = []
            record = {"param": "lambda", "from": p0, "to": 0.0, "floor": args.floor, "settings": settings.to_dict(),
                      "branches": branches, "limits": limits}
            print(f"following {len(ids)} point(s) in lambda from {p0:.6g} towards 0 (legs halving λ, down to "
                  f"{args.floor:g}), then polishing each limit's direction; Ctrl-C keeps the finished branches", flush=True)
            try:
                _follow_to_limit(store, cfg, ids, args, settings, branches, limits, progress=progress)
            except KeyboardInterrupt:
                interrupted = True
        else:
            settings = ContinuationSettings(max_steps=args.steps, certify_tol=cfg.certify_tol)
            p0 = param_value(cfg.model, args.param)
            record = {"param": args.param, "from": p0, "to": args.to, "settings": settings.to_dict(),
                      "branches": branches}
            print(f"following {len(ids)} point(s) in {args.param} from {p0:.6g} towards {args.to:g} (at most "
                  f"{args.steps} steps per branch); Ctrl-C keeps the finished branches", flush=True)
            try:
                _follow_all(store, cfg, ids, args, settings, branches, progress=progress)
            except KeyboardInterrupt:
                interrupted = True
        if interrupted:
            record["interrupted"] = True
        record["wall_time_s"] = time.perf_counter() - t0
        if not branches:   # nothing finished: the record file and the database stay as they were
            import sys

            from . import EXIT_INTERRUPTED
            kept = f"{path} is unchanged" if path.exists() else f"{path} was not written"
            print(f"\ninterrupted before the first branch finished: nothing was written ({kept})", file=sys.stderr)
            return EXIT_INTERRUPTED
        record["run"] = {**run_info, "finished_at": _now()}
        write_json(path, {**record, "earlier_runs": earlier})
        store.add_continuation(args.param, record)
    runs = f"run {len(earlier) + 1} in it; the {len(earlier)} earlier run(s) kept" if earlier else "its first run"
    if interrupted:
        import sys

        from . import EXIT_INTERRUPTED
        print(f"\ninterrupted: the {len(branches)} finished branch(es) are kept in {path} ({runs}) and the database",
              file=sys.stderr)
        return EXIT_INTERRUPTED
    if args.param == "d":
        for br in branches:
            s0, s1 = br["steps"][0], br["steps"][-1]
            print(f"point {br['point_id']} ({br['label']}): symmetry zero modes {s0['symmetry_zero_modes']} at d={s0['d']} "
                  f"→ {s1['symmetry_zero_modes']} at d={s1['d']}; index {s1['index']}, excess nullity {s1['nullity']}")
    print(f"written {path} ({runs}; {record['wall_time_s']:.1f} s)")
    return 0


def _width_progress(pid):
    """The progress line of each width of point ``pid`` (``continue_in_width``'s ``progress``)."""
    def line(s: dict) -> None:
        print(f"  point {pid}: d={s['d']} (P={s['P']:,}) index {s['index']}, "
              f"symmetry zero modes {s['symmetry_zero_modes']}", flush=True)
    return line


def _now() -> str:
    """The local time with its offset, to the second (ISO 8601)."""
    from datetime import datetime

    return datetime.now().astimezone().isoformat(timespec="seconds")


def earlier_runs(path) -> list:
    """The runs a continuation record file already holds, oldest first (its ``earlier_runs`` and
    then its top-level run), [] when there is none. Anything else there (not JSON, not a record,
    too large) is a SpecError naming the file: it is never replaced by a new run."""
    import json
    from pathlib import Path

    from ..core.validate import SpecError

    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return []
    keep = "move it away to keep it (this command would replace it), then run again"
    if path.is_symlink() or not path.is_file():
        raise SpecError(f"{path} is not a regular file (a link, a folder or a device): {keep}")
    try:
        size = path.stat().st_size
        if size > RECORD_MAX_BYTES:
            raise SpecError(f"{path} is larger than {RECORD_MAX_BYTES // 2 ** 20} MiB, too large to keep its runs in: "
                            f"{keep}")
        rec = json.loads(path.read_bytes().decode("utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{path} is not a readable continuation record ({type(exc).__name__}: {exc}): {keep}") from None
    if not isinstance(rec, dict) or not isinstance(rec.get("branches"), list) or "param" not in rec:
        raise SpecError(f"{path} is not a continuation record (no 'param' and 'branches'): {keep}")
    older = rec.pop("earlier_runs", [])
    if not isinstance(older, list) or not all(isinstance(r, dict) for r in older):
        raise SpecError(f"{path}: earlier_runs is not a list of records: {keep}")
    return older + [rec]


def parse_points(text: str | None) -> list[int] | None:
    """The point ids of ``--points ID,...`` (None: the option was not given); a SpecError for
    anything but one or more non-negative integers separated by commas (an empty list, ``,``,
    is an input error, not "no points")."""
    from ..core.validate import SpecError

    if text is None:
        return None
    parts = [x.strip() for x in text.split(",")]
    ids = [x for x in parts if x]
    if not ids or not all(x.isascii() and x.isdigit() for x in ids):
        raise SpecError(f"--points={text!r} is invalid: must be one or more point ids (integers >= 0) separated by "
                        "commas, e.g. --points 0,3")
    return list(dict.fromkeys(int(x) for x in ids))


def _width_memory(spec, d: int) -> int:
    """Bytes of the dense symmetry space of a critical point at width d
    (:func:`landscape.analysis.settings.gauge_rows_bound` rows × P)."""
    from ..analysis.settings import gauge_rows_bound, symmetry_matrix_bytes

    return symmetry_matrix_bytes(gauge_rows_bound(spec.K, spec.n, d, spec.L, spec.activation), _P_at(spec, d))


def widest_width(spec, to: int) -> int | None:
    """The widest width in [the study's, ``to``] whose analysis fits the memory budget, or None."""
    from ..core.validate import memory_budget
    from ..study.config import _largest

    budget = memory_budget()[0]
    return _largest(spec.d, to, lambda d: _width_memory(spec, d) <= budget)


def check_width_memory(spec, to: int) -> None:
    """Refuse before the first width a continuation whose analysis at width ``to`` (the dense
    symmetry space of a critical point) would exceed the memory budget, with the estimate and
    the widest width that fits."""
    from ..analysis.settings import gauge_rows_bound
    from ..core.validate import check_memory, memory_budget

    if _width_memory(spec, to) <= memory_budget()[0]:
        return
    widest = widest_width(spec, to)
    check_memory(f"--to={to}", _width_memory(spec, to),
                 f"the symmetry analysis at width {to} (a dense "
                 f"{gauge_rows_bound(spec.K, spec.n, to, spec.L, spec.activation):,} × {_P_at(spec, to):,} "
                 "gauge-tangent matrix and its SVD)",
                 f"within it --to must be <= {widest}" if widest else "")


def _P_at(spec, d: int) -> int:
    """Parameter count at width d: dN + (L−1)d² + Kd."""
    return d * spec.K * spec.n + (spec.L - 1) * d * d + spec.K * d


def width_cost_estimate(spec, to: int, n_points: int, stop_above: float | None = None) -> float:
    """Predicted seconds of a width continuation: per point, the analysis at every width from the
    study's to ``to``, each at the dense cost model of this machine (an upper bound where the
    analysis takes the Lanczos path). ``stop_above``: stop summing once the total passes it (the
    total so far, a lower bound, is returned)."""
    from ..analysis.hessian import dense_cost_s

    total = 0.0
    for d in range(spec.d, to + 1):
        total += n_points * dense_cost_s(_P_at(spec, d))
        if stop_above is not None and total > stop_above:
            break
    return total


def _follow_all(store, cfg, ids, args, settings, branches, progress: bool = True) -> None:
    """Follow every point in λ (or λ_H, λ_W, the ratio), printing where each branch starts, its
    progress (``progress``: every :data:`PROGRESS_EVERY_S` seconds and at each event) and how it
    ended; the finished branches are appended to ``branches`` as they come (kept when interrupted)."""
    from ..continuation import continue_in_lambda

    for k, pid in enumerate(ids, 1):
        p = store.point(pid)
        print(f"point {pid} ({p.label}) [{k}/{len(ids)}]: following {args.param} towards {args.to:g}", flush=True)
        br = continue_in_lambda(cfg.model, p.params, param=args.param, to=args.to, point_id=pid,
                                label=p.label, settings=settings,
                                progress=BranchProgress(pid, args.param) if progress else None)
        branches.append(br.to_dict())
        ev = "; ".join(f"{e['kind']} at {args.param}={e[args.param]:.10g} (index {e['index_before']}→{e['index_after']}"
                       + (f", dμ/d{args.param} {e['eigenvalue_slope']:.4g}" if e.get("eigenvalue_slope") is not None else "")
                       + ")" for e in br.events) or "no events"
        print(f"point {pid} ({p.label}): {len(br.steps)} steps, {ev}; {br.end}", flush=True)


def _follow_to_limit(store, cfg, ids, args, settings, branches, limits, progress: bool = True) -> None:
    """Follow every point down to the λ → 0 limit (:func:`landscape.study.lambda0_limit.continue_to_limit`),
    printing a few points of each path and the limit beside its closed form; the finished branches
    (with the margin columns and the certificate under ``limit``) go to ``branches`` and their
    certificates to ``limits`` as they come."""
    from ..study.lambda0_limit import continue_to_limit

    for k, pid in enumerate(ids, 1):
        p = store.point(pid)
        print(f"point {pid} ({p.label}) [{k}/{len(ids)}]: following lambda towards 0", flush=True)
        res = continue_to_limit(cfg.model, p.params, floor=args.floor, settings=settings, lambda0=cfg.lambda0,
                                analysis=cfg.analysis, point_id=pid, label=p.label,
                                progress=BranchProgress(pid, "lambda") if progress else None)
        branches.append(res.to_dict())
        limits.append(res.summary())
        print(f"point {pid} ({p.label}): {len(res.path)} steps, {res.end}", flush=True)
        for line in res.text():
            print(line, flush=True)


class BranchProgress:
    """The progress lines of one branch (``continue_in_lambda``'s ``progress``): the parameter value
    reached, the step, the index and the events so far, at most every :data:`PROGRESS_EVERY_S`
    seconds; each event at once."""

    def __init__(self, point_id, param: str, every_s: float | None = None, clock=None):
        import time

        self.point_id, self.param = point_id, param
        self.every_s = PROGRESS_EVERY_S if every_s is None else every_s
        self.clock = clock or time.monotonic
        self.last = self.clock()
        self.steps = 0
        self.events = 0

    def __call__(self, step: dict, events: list) -> None:
        self.steps += 1
        key = self.param
        for e in events:
            self.events += 1
            slope = (f", dμ/d{key} {e['eigenvalue_slope']:.4g}" if e.get("eigenvalue_slope") is not None else "")
            print(f"  point {self.point_id}: {e['kind']} at {key}={e[key]:.10g} "
                  f"(index {e['index_before']}→{e['index_after']}{slope})", flush=True)
        now = self.clock()
        if now - self.last >= self.every_s:
            self.last = now
            print(f"  point {self.point_id}: step {self.steps - 1}, {key}={step[key]:.6g}, loss {step['loss']:.8g}, "
                  f"index {step['index']}; {self.events} event(s) so far", flush=True)
