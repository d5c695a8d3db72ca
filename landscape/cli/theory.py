"""Closed-form structures of the linear CE model (MODEL.md §6), sorted by loss, and whether DNC is a
global-minimum candidate there (the paper's Theorem 1 and the catalogue).

With no arguments: the model of the embedded default study. ``--config FILE`` or ``--preset NAME``
reads a study's [model] (layered on the default); ``--K --n --d --L --lambda`` override it.
"""
from __future__ import annotations

import argparse

#: Most block patterns (integer partitions of K) the catalogue enumerates: K ≤ 41.
MAX_PATTERNS = 50_000


def register(sub) -> None:
    p = sub.add_parser("theory", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("--config", metavar="FILE.toml", help="read the model from a study file's [model] table")
    p.add_argument("--preset", metavar="NAME", help="read the model of an embedded study")
    p.add_argument("--K", type=int, help="number of classes")
    p.add_argument("--n", type=int, help="samples per class")
    p.add_argument("--d", type=int, help="width (default: the study's, at least K)")
    p.add_argument("--L", type=int, help="number of weight matrices")
    p.add_argument("--lambda", dest="lam", type=float, help="weight decay λ (equal on every factor)")
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
    for k, key in (("K", "K"), ("n", "n"), ("d", "d"), ("L", "L"), ("lam", "lambda")):
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
        raise SpecError(f"closed forms cover the linear CE model only (activation={spec.activation!r}, loss={spec.loss!r})")
    K, n, L = spec.K, spec.n, spec.L
    if partitions_count(K) > MAX_PATTERNS:
        raise SpecError(f"K={K} is invalid here: its catalogue has {partitions_count(K):,} block patterns "
                        f"(one per integer partition of K); `landscape theory` enumerates at most {MAX_PATTERNS:,} (K ≤ 41)")
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


def _loss_text(x: float) -> str:
    """A loss with 10 decimals, or in exponent form when that would print 0 (λ → 0)."""
    return f"{x:.10f}" if x == 0 or abs(x) >= 1e-6 else f"{x:.10e}"
