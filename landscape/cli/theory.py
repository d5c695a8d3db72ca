"""Closed-form structures of the model (MODEL.md §6, §9), sorted by loss, and whether DNC is a
global-minimum candidate there (the paper's Theorem 1 and the catalogue).

Linear CE: the whole block catalogue. ReLU and MSE: the member's DNC (ReLU CE: orthogonal-frame
hidden means and ETF logits; MSE: Z = γY, Dang et al.'s γ equation) along its one scale
(:mod:`landscape.analysis.family`); the block catalogue is derived for linear CE only.

With no arguments: the model of the embedded default study. ``--config FILE`` or ``--preset NAME``
reads a study's [model] (layered on the default); ``--K --n --d --L --lambda`` override it.

``landscape theory DIR`` reads the model of a study's results folder (its config.json, else the
configuration in its summary.json; a folder is untrusted input: its files are size-bounded and
type-checked, and a bad one is named in a one-line error). When the folder has a summary.json,
the study's lowest minima are listed beside the closed forms: each with the structure it matched
(pattern, root, loss difference), and each catalogued structure the study found is marked with
its point. (With --K, --lambda, … changing the model, the study's points are not compared.)
"""
from __future__ import annotations

import argparse

from ..study.result import StudyPoint, TheoryMatch

#: Most block patterns (integer partitions of K) the catalogue enumerates: K ≤ 41.
MAX_PATTERNS = 50_000
#: Largest K whose catalogue has at most MAX_PATTERNS patterns (checked before any counting, so
#: a huge K is refused at once instead of hanging in the count or running out of memory).
MAX_K = 41
#: Largest K whose pattern count a refusal prints (beyond: "more than" that count).
COUNT_K = 500
#: Lowest minima of a study listed beside the closed forms (``landscape theory DIR``).
MINIMA_SHOWN = 5
#: Largest summary.json read for the comparison (bigger: the theory alone, with a note).
SUMMARY_MAX_BYTES = 256 * 2 ** 20
#: Relative loss agreement of a study point and a catalogued structure of the same pattern.
MATCH_LOSS_RTOL = 1e-8


def register(sub) -> None:
    p = sub.add_parser("theory", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("dir", nargs="?", metavar="DIR",
                   help="a study's results folder (or its config.json): the theory of its model, and its lowest "
                        "minima beside the closed forms")
    p.add_argument("--config", metavar="FILE.toml", help="read the model from a study file's [model] table")
    p.add_argument("--preset", metavar="NAME", help="read the model of an embedded study")
    p.add_argument("--K", type=int, help="number of classes")
    p.add_argument("--n", type=int, help="samples per class")
    p.add_argument("--d", type=int, help="width (default: the study's, at least K)")
    p.add_argument("--L", type=int, help="number of weight matrices")
    p.add_argument("--lambda", dest="lam", type=float, help="weight decay λ (equal on every factor)")
    p.add_argument("--activation", choices=["linear", "relu"], help="nonlinearity (default: the study's)")
    p.add_argument("--loss", choices=["ce", "mse"], help="loss (default: the study's)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def partitions_count(K: int) -> int:
    """Number of integer partitions of K (block patterns of K classes)."""
    p = [1] + [0] * K
    for part in range(1, K + 1):
        for total in range(part, K + 1):
            p[total] += p[total - part]
    return p[K]


def _spec_from_args(args: argparse.Namespace, study: dict | None = None):
    """The model of the arguments; ``study`` (a dict, filled in for ``DIR``): the folder's
    ``dir``, ``spec`` (its own model), ``summary`` (None without one) and ``note``."""
    from ..study.config import default_config_dict, layered, load_config_dict, model_spec, preset_path
    import tomllib

    base = default_config_dict()
    given = [o for o, v in (("DIR", getattr(args, "dir", None)), ("--config", args.config), ("--preset", args.preset))
             if v]
    if len(given) > 1:
        from ..core.validate import SpecError
        raise SpecError(f"give one of DIR, --config or --preset, not {' and '.join(given)}")
    if getattr(args, "dir", None):
        base, found = read_study_folder(args.dir)
        if study is not None:
            study.update(found)
    elif args.config:
        base = layered(base, load_config_dict(args.config))
    elif args.preset:
        base = layered(base, tomllib.loads(preset_path(args.preset).read_text(encoding="utf-8")))
    from ..core.validate import check_table

    check_table("model", base.get("model", {}))   # `model = 3` or `model = [[1, 2]]`: one line naming it
    m = dict(base.get("model") or {})
    for k, key in (("K", "K"), ("n", "n"), ("d", "d"), ("L", "L"), ("lam", "lambda"),
                   ("activation", "activation"), ("loss", "loss")):
        v = getattr(args, k)
        if v is not None:
            m[key] = v
    if args.K is not None and args.d is None:
        m["d"] = max(int(m.get("d", args.K)), args.K)
    return model_spec(m)


def _short(text: str, limit: int = 300) -> str:
    """One line of at most ``limit`` characters (a value from an untrusted file can be huge)."""
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _plain(x, limit: int = 60) -> str:
    """A value read from a results folder, safe to print on a terminal: control characters (escape
    sequences) shown escaped, at most ``limit`` characters."""
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(x))
    return text if len(text) <= limit else text[:limit - 1] + "…"


def read_study_folder(path) -> tuple[dict, dict]:
    """(the study's configuration table, {"dir", "spec", "summary", "note"}) of a results folder
    (or a study file) named on the command line: config.json, else summary.json's ``config``; the
    summary when there is one, type-checked (:data:`landscape.viz.safe.STUDY_SUMMARY_FIELDS`). A
    SpecError in one line naming the file for anything that is not a study's."""
    from pathlib import Path

    from ..core.validate import SpecError
    from ..io.results import FILES, SWEEP_FILES
    from ..study.config import default_config_dict, layered, load_config_dict, model_spec

    folder = Path(path)
    summary = None
    if not folder.exists():
        raise SpecError(f"DIR={str(folder)!r} is invalid: no such folder")
    if not folder.is_dir():   # a study file (a results folder's config.json, a .toml) named directly
        cfg, folder, source = load_config_dict(folder, "DIR"), folder.parent, folder
        summary_path = folder / FILES["summary"] if source.name == FILES["config"] else None
        if summary_path is None:   # a study file: layered on the default study, as --config reads it
            cfg = layered(default_config_dict(), cfg)
    else:
        if (folder / SWEEP_FILES["sweep"]).exists():
            raise SpecError(f"{folder} is a sweep folder: give one of its cells, e.g. `landscape theory "
                            f"{folder / SWEEP_FILES['cells']}/<cell>`")
        source, summary_path = folder / FILES["config"], folder / FILES["summary"]
        if source.is_file():
            cfg = load_config_dict(source, "config")
        elif summary_path.is_file():
            source, summary = summary_path, _read_summary(summary_path)
            cfg = summary.get("config")
        else:
            raise SpecError(f"{folder} holds neither {FILES['config']} nor {FILES['summary']}: not a results folder of "
                            "`landscape run`")
    if isinstance(cfg, dict) and "net" in cfg:
        raise SpecError(f"{source}: a `landscape net` run; its summary.json holds the theory of its UFM ('theory'), "
                        "and `landscape theory --K … --n … --L … --lambda …` prints the catalogue")
    if not isinstance(cfg, dict) or not isinstance(cfg.get("model"), dict):
        raise SpecError(f"{source}: no [model] table (config.model must be an object): not a study's configuration")
    try:
        spec = model_spec(cfg["model"])
    except SpecError as exc:
        raise SpecError(f"{source}: {_short(exc)}") from None
    study = {"dir": folder, "spec": spec, "summary": None, "note": None, "results": summary_path is not None,
             "name": cfg.get("name") if isinstance(cfg.get("name"), str) else None}
    if summary is not None:
        study["summary"] = summary
    elif summary_path is not None and summary_path.is_file():
        try:
            study["summary"] = _read_summary(summary_path)
        except SpecError as exc:   # the theory still prints; the comparison says why it is missing
            study["note"] = str(exc)
    return cfg, study


def _read_summary(path) -> dict:
    """A study's summary.json, bounded (:data:`SUMMARY_MAX_BYTES`) and type-checked; a SpecError
    naming the file otherwise."""
    from ..core.validate import SpecError
    from ..io.results import read_json
    from ..viz.safe import STUDY_SUMMARY_FIELDS, ReportInputError, check_fields

    try:
        if path.stat().st_size > SUMMARY_MAX_BYTES:
            raise SpecError(f"{path} is larger than {SUMMARY_MAX_BYTES // 2 ** 20} MiB: not read")
        summary = read_json(path)
        check_fields(summary, STUDY_SUMMARY_FIELDS, path)
    except ReportInputError as exc:
        raise SpecError(_short(exc)) from None
    except (OSError, ValueError) as exc:
        if isinstance(exc, SpecError):
            raise
        raise SpecError(f"{path} is not readable: {_short(exc)}") from None
    if not isinstance(summary.get("points"), list) or not all(isinstance(p, dict) for p in summary["points"]):
        raise SpecError(f"{path}: points must be a list of objects (a run that stopped before its analysis has none)")
    try:
        summary["points"] = [StudyPoint.from_row(p) for p in summary["points"]]
    except (KeyError, TypeError, ValueError) as exc:
        raise SpecError(f"{path}: a point this version cannot read ({type(exc).__name__}: {_short(exc)})") from None
    return summary


def _match_of(p: StudyPoint) -> TheoryMatch | None:
    """A point's theory match when it matched a closed form (pattern a string)."""
    t = p.theory_match
    if t is None or not t.matched or not isinstance(t.pattern, str):
        return None
    return t


def _same_loss(a, b) -> bool:
    return (isinstance(a, (int, float)) and isinstance(b, (int, float))
            and abs(a - b) <= MATCH_LOSS_RTOL * max(1.0, abs(b)))


def _lowest_minima(summary: dict) -> list[StudyPoint]:
    pts = [p for p in summary["points"] if p.kind == "minimum"]
    return sorted(pts, key=lambda p: p.loss)[:MINIMA_SHOWN]


def _basin_count(p: StudyPoint) -> int | None:
    """The point's basin count as its summary row states it (None where the row has none; the
    typed view reads a missing count as 0)."""
    return None if p.record.get("basin_count") is None else p.basin_count


def _starts_text(p: StudyPoint, n) -> str:
    c = _basin_count(p)
    if c is None:
        return "no basin count"
    frac = p.fraction
    return f"{c} of {n} starts" + (f" ({100 * frac:.1f}%)" if frac is not None else "")


def _study_points_for(study: dict | None, cat) -> dict:
    """{index in ``cat``: [study points matching that catalogued structure]} (same pattern, loss
    within :data:`MATCH_LOSS_RTOL`)."""
    if not study or study.get("summary") is None or not study.get("same_model"):
        return {}
    out: dict = {}
    for p in study["summary"]["points"]:
        t = _match_of(p)
        if t is None:
            continue
        for i, s in enumerate(cat):
            if t.pattern == s.pattern and (_same_loss(t.loss, s.loss) or _same_loss(p.loss, s.loss)):
                out.setdefault(i, []).append(p)
                break
    return out


def _print_study(study: dict | None, closed_form) -> None:
    """The study's lowest minima beside the closed forms: ``closed_form(point)`` → text or None."""
    if not study:
        return
    name = _plain(study.get("name") or study["dir"])
    if study.get("note"):
        print(f"study {name}: its minima are not compared ({_plain(study['note'], 300)})")
        return
    s = study.get("summary")
    if s is None and not study.get("results"):   # a study file, not a results folder: nothing to compare
        return
    if s is None:
        print(f"study {name}: no summary.json in {_plain(study['dir'], 200)} (a run not finished): nothing to compare")
        return
    if not study.get("same_model"):
        print(f"study {name}: its minima are not compared (the options above change its model)")
        return
    n = s.get("n_trajectories")
    mins = _lowest_minima(s)
    if not mins:
        print(f"study {name}: {n} starts, no certified minimum")
        return
    print(f"study {name}: {n} starts; its {len(mins)} lowest minim{'um' if len(mins) == 1 else 'a'}:")
    for p in mins:
        cf = closed_form(p)
        print(f"  point #{p.id:<4} {_plain(p.label):<22} loss {_loss_text(p.loss):>16}  "
              f"{_starts_text(p, n)}  " + (f"= {cf}" if cf else "no closed form matched"))


def _study_json(study: dict | None, closed_form) -> dict | None:
    if not study:
        return None
    out = {"dir": str(study["dir"]), "name": study.get("name"), "compared": False, "note": study.get("note")}
    s = study.get("summary")
    if s is None or not study.get("same_model") or study.get("note"):
        return out
    out["compared"] = True
    out["n_trajectories"] = s.get("n_trajectories")
    out["minima"] = [{"id": p.id, "label": p.label, "loss": p.loss, "basin_count": _basin_count(p),
                      "fraction": p.fraction, "closed_form": closed_form(p)} for p in _lowest_minima(s)]
    return out


def run(args: argparse.Namespace) -> int:
    import json

    from ..core.validate import SpecError

    study: dict = {}
    spec = _spec_from_args(args, study)
    if study:
        study["same_model"] = study["spec"] == spec
    from ..analysis import theory   # numpy and scipy: only once the model is valid

    if spec.unregularised:
        return _lambda0(spec, args.json)
    if spec.activation != "linear" or spec.loss != "ce":
        return _member_dnc(spec, args.json, study or None)
    K, n, L = spec.K, spec.n, spec.L
    if K > MAX_K:   # counted only up to COUNT_K (the count is O(K²)): a huge K is refused at once
        count = f"{partitions_count(K):,}" if K <= COUNT_K else f"more than {partitions_count(COUNT_K):.3g}"
        raise SpecError(f"K={K} is invalid here: its catalogue has {count} block patterns (one per integer "
                        f"partition of K); `landscape theory` enumerates at most {MAX_PATTERNS:,}: K must be in "
                        f"[2, {MAX_K}]")
    lam = theory.effective_lambda(spec)
    cat = theory.structure_catalogue(K, n, L, lam)
    verdict = theory.dnc_global_minimum_candidate(K, n, L, lam)
    found = _study_points_for(study, cat)

    def closed_form(p):
        i = next((i for i, pts in found.items() if any(p is q for q in pts)), None)
        if i is None:
            return None
        s = cat[i]
        t = _match_of(p)
        diff = t.loss_difference if t else None
        return (f"{s.name} ({s.pattern}" + (f", {s.root} root)" if s.root != "-" else ")")
                + (f", Δloss {diff:.2e}" if isinstance(diff, (int, float)) else ""))

    if args.json:
        print(json.dumps({"spec": spec.to_dict(), "lambda_effective": lam,
                          "structures": [s.to_dict() for s in cat], "dnc": verdict,
                          **({"study": _study_json(study, closed_form)} if study else {})}, indent=1))
        return 0
    print(f"K={K} n={n} d={spec.d} L={L} λ={lam:g} ({spec.lambda_convention} convention; effective λ "
          f"= geometric mean of the per-factor values)")
    print(f"{'structure':<30} {'pattern':<24} {'root':<6} {'rank':>4} {'loss':>16}  scales α (pair: α = 2β)")
    for i, s in enumerate(cat):
        note = "" if s.critical else "   (not a critical point)"
        if i in found:
            note += "   ← study: " + ", ".join(f"point #{p.id} ({_plain(p.kind, 20)})" for p in found[i])
        print(f"{s.name:<30} {s.pattern:<24} {s.root:<6} {s.rank:>4} {_loss_text(s.loss):>16}  "
              + ", ".join(f"{a:.6g}" for a in s.scales) + note)
    if not verdict["dnc_exists"]:
        print("DNC: no critical scale at this λ (the origin is the only DNC-like point)")
    else:
        t1 = "excludes" if verdict["theorem1_excludes_dnc"] else "does not exclude"
        print(f"DNC global-minimum candidate: {'yes' if verdict['candidate'] else 'no'} — Theorem 1 {t1} it "
              f"(K≥4 and L≥3, or K≥6 and L=2); best catalogued structure {verdict['best']} "
              f"({_loss_text(verdict['best_loss'])}) vs DNC {_loss_text(verdict['dnc_loss'])}")
    _print_study(study, closed_form)
    return 0


def _lambda0(spec, as_json: bool) -> int:
    """λ = 0 (MODEL.md §11): the closed-form normalised margins γ = min margin / ‖θ‖^{L+1} of the NC
    simplex code, the pairs code and the centred codes of p pairs and s = K − 2p classes alone
    between them, and the subsets(m, j) codes of K = C(m, j) classes, at their balanced
    factorisations (:func:`landscape.analysis.margins.nc_code_margin`,
    :func:`~landscape.analysis.margins.pairs_code_margin`,
    :func:`~landscape.analysis.margins.pairs_self_code_margin`,
    :func:`~landscape.analysis.margins.subsets_code_margin`), largest γ first after NC and pairs."""
    import json

    from ..analysis import margins as mg
    from ..analysis.theory import block_types, pattern_name

    K, n, L = spec.K, spec.n, spec.L
    nc = mg.nc_code_margin(K, n, L)
    rows = [("NC simplex", "DNC", K - 1, nc, "((L+1)(K-1))^(-(L+1)/2) / sqrt(n)")]
    if K % 2 == 0:
        rows.append(("pairs", "pairs", K // 2, mg.pairs_code_margin(K, n, L), "((L+1)K/2)^(-(L+1)/2) / (2 sqrt(n))"))
    mixed = []
    for p in range(1, K // 2 + 1):
        s_ = K - 2 * p
        if s_ == 0:
            continue
        label = "pairs" if s_ == 1 else pattern_name([2] * p, self_singletons=s_)
        mixed.append((f"{p} pair{'s' if p > 1 else ''} + {s_} alone", label, p + s_ - 1 + (s_ < K), mg.pairs_self_code_margin(K, n, L, p),
                      "((L+1)[p(2√n)^(2/(L+1)) + (s−1)n^(1/(L+1)) + (n(1−s/K))^(1/(L+1))])^(−(L+1)/2)"))
    for bt in block_types(K):   # one subsets(m, j) block of all K = C(m, j) classes
        if bt.j >= 2:
            mixed.append((f"{K} classes at the {bt.j}-subsets of {bt.m}", bt.name, bt.m - 1,
                          mg.subsets_code_margin(bt.m, bt.j, n, L), "((L+1)(m−1)(σ√n)^(2/(L+1)))^(−(L+1)/2)"))
    rows += sorted(mixed, key=lambda r: -r[3])
    best = max(rows, key=lambda r: r[3])
    if as_json:
        print(json.dumps({"spec": spec.to_dict(), "lambda": 0.0,
                          "codes": [{"code": c, "label": lab, "gamma": g, "rank": r, "formula": f}
                                    for c, lab, r, g, f in rows],
                          "larger": "NC" if best[1] == "DNC" else best[1]}, indent=1))
        return 0
    print(f"K={K} n={n} d={spec.d} L={L} λ=0: no finite minimiser; gradient descent converges in direction to a KKT "
          "point of min ‖θ‖² s.t. every margin ≥ 1 (MODEL.md §11)")
    print("normalised margin γ = min margin / ‖θ‖^{L+1} at the code's balanced factorisation (the centred codes: p "
          "classes pairs, s = K − 2p classes alone, landscape.analysis.margins.pairs_self_code):")
    print(f"{'code':<34} {'label':<16} {'rank':>4} {'γ':>22} {'γ/γ_NC':>8}")
    for c, lab, r, g, f in rows:
        print(f"{c:<34} {lab:<16} {r:>4} {g:>22.15g} {g / nc:>8.4f}" + (f"   {f}" if lab in ("DNC", "pairs") else ""))
    print(f"the largest margin among these: {best[0]} (γ/γ_NC = {best[3] / nc:.6g}) at L={L} (the global "
          "max-margin direction is not necessarily one of them)")
    return 0


def _member_dnc(spec, as_json: bool, study: dict | None = None) -> int:
    """The DNC points of a ReLU or MSE member along their one scale, with loss and geometry."""
    import json

    from ..analysis.family import member_dnc

    try:
        pts = member_dnc(spec)
    except (ValueError, OverflowError, ZeroDivisionError) as exc:   # e.g. Π λ_l N_l underflows at large L
        from ..core.validate import SpecError

        raise SpecError(f"L={spec.L} is invalid here: the closed forms of the {spec.activation} {spec.loss.upper()} "
                        f"member leave floating-point range at this depth ({exc}); choose a smaller L") from None
    name = "α (logits αS)" if spec.loss == "ce" else "γ (Z = γY)"

    def closed_form(p):   # a study point labelled DNC at a closed-form DNC loss
        if not (isinstance(p.label, str) and p.label.startswith("DNC")):
            return None
        q = next((q for q in pts if _same_loss(p.loss, q.loss)), None)
        return None if q is None else f"DNC ({q.geometry} hidden means), Δloss {p.loss - q.loss:.2e}"

    srg = _srg_row(spec, pts)
    if as_json:
        print(json.dumps({"spec": spec.to_dict(), "dnc": [p.to_dict() for p in pts], "scale": name,
                          "catalogue": "block catalogue: linear CE only",
                          **({"srg": srg} if srg is not None else {}),
                          **({"splits": _split_rows(spec, pts[-1].loss)}
                             if spec.loss == "mse" and spec.activation == "relu" and pts else {}),
                          **({"study": _study_json(study, closed_form)} if study else {})}, indent=1))
        return 0
    print(f"K={spec.K} n={spec.n} d={spec.d} L={spec.L} {spec.activation} {spec.loss.upper()}, "
          + (f"λ={spec.lambdas[0]:g} on every factor" if len(set(spec.lambdas)) == 1
             else f"λ per factor {', '.join(f'{x:g}' for x in spec.lambdas)}"))
    if not pts:
        print("DNC: no stationary scale at these λ (the origin is the only DNC-like point)")
    for i, p in enumerate(pts):
        kind = "minimum along the scale" if i == len(pts) - 1 else "stationary (small root)"
        print(f"DNC ({p.geometry} hidden means)  {name} = {p.scale:.12g}  loss {_loss_text(p.loss)}  {kind}")
    if srg is not None:
        print(_srg_text(srg))
    if spec.loss == "mse" and pts:
        from ..analysis.family import mse_rank_structures

        print("rank-r structures (r classes on an orthogonal frame, the rest null; any class rotation):")
        for st in mse_rank_structures(spec):
            print(f"  {st['label']:<8} rank {st['rank']}  γ = {st['gamma']:.12g}  loss {_loss_text(st['loss'])}")
    if spec.loss == "mse" and spec.activation == "relu" and pts:
        print(_split_text(spec, pts[-1].loss))
    print("(the block catalogue and Theorem 1's comparison are derived for the linear CE model only)")
    _print_study(study, closed_form)
    return 0


def _srg_row(spec, pts) -> dict | None:
    """The SRG structure of a ReLU member with K = r(r−1)/2 (:mod:`landscape.analysis.srg`) beside
    its DNC: {"r", "loss", "beta", "z", "dnc_loss", "difference"}, or {"r", "note"} where it is not
    derived (CE, L < 3); None when the member is not ReLU or K is not triangular (r ≥ 4)."""
    from ..analysis import srg

    if spec.activation != "relu" or not srg.is_srg_K(spec.K):
        return None
    r = srg.triangular_r(spec.K)
    why = srg.srg_refusal(spec)
    if why is not None:
        return {"r": r, "note": why}
    try:
        sol = srg.srg_solution(spec)
    except (ValueError, OverflowError, ZeroDivisionError) as exc:   # floating-point range at extreme L or λ
        return {"r": r, "note": f"its closed form leaves floating-point range here ({_short(exc, 120)})"}
    if sol is None:
        return {"r": r, "note": "no stationary scale at this λ"}
    dl = pts[-1].loss if pts else None
    return {"r": r, "loss": sol.loss, "beta": sol.beta, "z": [float(x) for x in sol.z], "dnc_loss": dl,
            "difference": None if dl is None else sol.loss - dl}


def _srg_text(row: dict) -> str:
    r = row["r"]
    head = f"SRG (K = C({r},2), pre-activation rank {r}, post-ReLU rank {r * (r - 1) // 2})"
    if "note" in row:
        return f"{head}: not derived here ({row['note']})"
    cmp = "" if row["dnc_loss"] is None else (f"  {'below' if row['difference'] < 0 else 'above'} DNC by "
                                              f"{abs(row['difference']):.3e}")
    return (f"{head}  β = {row['beta']:.12g}  z = " + ", ".join(f"{x:.6g}" for x in row["z"])
            + f"  loss {_loss_text(row['loss'])}{cmp}")


def _split_rows(spec, dnc_loss: float) -> list[dict]:
    """The ReLU MSE classes split through s = 1 … L−1 ReLU layers
    (:func:`landscape.analysis.family.relu_mse_split_loss`): {"s", "delta" (the excess over DNC's
    loss, additive over classes), "saddle" (s ≥ 2: a kink under a negative signal)}."""
    from ..analysis.family import relu_mse_split_loss

    return [{"s": s, "delta": relu_mse_split_loss(spec, (s,) + (0,) * (spec.K - 1)) - dnc_loss, "saddle": s >= 2}
            for s in range(1, spec.L)]


def _split_text(spec, dnc_loss: float) -> str:
    rows = [f"  split {r['s']}: Δ_{r['s']} = {r['delta']:.10e}" + ("  (a saddle: a kink under a negative signal)"
                                                                  if r["saddle"] else "")
            for r in _split_rows(spec, dnc_loss)]
    return ("classes whose n samples run through separate units in the first s ReLU layers (each class adds "
            "Δ_s to DNC's loss; the `4×self` points are DNC + Σ Δ, minima only with every s ≤ 1):\n" + "\n".join(rows))


def _loss_text(x: float) -> str:
    """A loss with 10 decimals, or in exponent form when that would print 0 (λ → 0)."""
    return f"{x:.10f}" if x == 0 or abs(x) >= 1e-6 else f"{x:.10e}"
