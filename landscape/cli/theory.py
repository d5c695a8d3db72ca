"""Closed-form structures of the model (MODEL.md §6, §9), sorted by loss, and whether DNC is a
global-minimum candidate there (the paper's Theorem 1 and the catalogue).

Linear CE: the whole block catalogue. ReLU and MSE: the member's DNC (ReLU CE: orthogonal-frame
hidden means and ETF logits; MSE: Z = γY, Dang et al.'s γ equation) along its one scale
(:mod:`landscape.analysis.family`); the block catalogue is derived for linear CE only.

With no arguments: the model of the embedded default study. ``--config FILE`` or ``--preset NAME``
reads a study's [model] (layered on the default); ``--K --n --d --L --lambda`` override it.
"""
from __future__ import annotations

import argparse

#: Most block patterns (integer partitions of K) the catalogue enumerates: K ≤ 41.
MAX_PATTERNS = 50_000
#: Largest K whose catalogue has at most MAX_PATTERNS patterns (checked before any counting, so
#: a huge K is refused at once instead of hanging in the count or running out of memory).
MAX_K = 41
#: Largest K whose pattern count a refusal prints (beyond: "more than" that count).
COUNT_K = 500


def register(sub) -> None:
    p = sub.add_parser("theory", help=__doc__.splitlines()[0], description=__doc__)
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


def _spec_from_args(args: argparse.Namespace):
    from ..study.config import default_config_dict, layered, load_config_dict, model_spec, preset_path
    import tomllib

    base = default_config_dict()
    if args.config and args.preset:
        from ..core.validate import SpecError
        raise SpecError("give --config or --preset, not both")
    if args.config:
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


def run(args: argparse.Namespace) -> int:
    import json

    from ..core.validate import SpecError

    spec = _spec_from_args(args)
    from ..analysis import theory   # numpy and scipy: only once the model is valid

    if spec.activation != "linear" or spec.loss != "ce":
        return _member_dnc(spec, args.json)
    K, n, L = spec.K, spec.n, spec.L
    if K > MAX_K:   # counted only up to COUNT_K (the count is O(K²)): a huge K is refused at once
        count = f"{partitions_count(K):,}" if K <= COUNT_K else f"more than {partitions_count(COUNT_K):.3g}"
        raise SpecError(f"K={K} is invalid here: its catalogue has {count} block patterns (one per integer "
                        f"partition of K); `landscape theory` enumerates at most {MAX_PATTERNS:,}: K must be in "
                        f"[2, {MAX_K}]")
    lam = theory.effective_lambda(spec)
    cat = theory.structure_catalogue(K, n, L, lam)
    verdict = theory.dnc_global_minimum_candidate(K, n, L, lam)
    if args.json:
        print(json.dumps({"spec": spec.to_dict(), "lambda_effective": lam,
                          "structures": [s.to_dict() for s in cat], "dnc": verdict}, indent=1))
        return 0
    print(f"K={K} n={n} d={spec.d} L={L} λ={lam:g} ({spec.lambda_convention} convention; effective λ "
          f"= geometric mean of the per-factor values)")
    print(f"{'structure':<30} {'pattern':<24} {'root':<6} {'rank':>4} {'loss':>16}  scales α (pair: α = 2β)")
    for s in cat:
        note = "" if s.critical else "   (not a critical point)"
        print(f"{s.name:<30} {s.pattern:<24} {s.root:<6} {s.rank:>4} {_loss_text(s.loss):>16}  "
              + ", ".join(f"{a:.6g}" for a in s.scales) + note)
    if not verdict["dnc_exists"]:
        print("DNC: no critical scale at this λ (the origin is the only DNC-like point)")
    else:
        t1 = "excludes" if verdict["theorem1_excludes_dnc"] else "does not exclude"
        print(f"DNC global-minimum candidate: {'yes' if verdict['candidate'] else 'no'} — Theorem 1 {t1} it "
              f"(K≥4 and L≥3, or K≥6 and L=2); best catalogued structure {verdict['best']} "
              f"({_loss_text(verdict['best_loss'])}) vs DNC {_loss_text(verdict['dnc_loss'])}")
    return 0


def _member_dnc(spec, as_json: bool) -> int:
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
    if as_json:
        print(json.dumps({"spec": spec.to_dict(), "dnc": [p.to_dict() for p in pts], "scale": name,
                          "catalogue": "block catalogue: linear CE only"}, indent=1))
        return 0
    print(f"K={spec.K} n={spec.n} d={spec.d} L={spec.L} {spec.activation} {spec.loss.upper()}, "
          + (f"λ={spec.lambdas[0]:g} on every factor" if len(set(spec.lambdas)) == 1
             else f"λ per factor {', '.join(f'{x:g}' for x in spec.lambdas)}"))
    if not pts:
        print("DNC: no stationary scale at these λ (the origin is the only DNC-like point)")
    for i, p in enumerate(pts):
        kind = "minimum along the scale" if i == len(pts) - 1 else "stationary (small root)"
        print(f"DNC ({p.geometry} hidden means)  {name} = {p.scale:.12g}  loss {_loss_text(p.loss)}  {kind}")
    print("(the block catalogue and Theorem 1's comparison are derived for the linear CE model only)")
    return 0


def _loss_text(x: float) -> str:
    """A loss with 10 decimals, or in exponent form when that would print 0 (λ → 0)."""
    return f"{x:.10f}" if x == 0 or abs(x) >= 1e-6 else f"{x:.10e}"
