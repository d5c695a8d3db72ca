"""Closed-form structures of the linear CE model (MODEL.md §6), sorted by loss, and whether DNC is a
global-minimum candidate there (the paper's Theorem 1 and the catalogue)."""
from __future__ import annotations

import argparse


def register(sub) -> None:
    p = sub.add_parser("theory", help=__doc__.splitlines()[0], description=__doc__)
    p.add_argument("--config", metavar="FILE.toml", help="read K, n, d, L, lambda, activation, loss from its [model] table")
    p.add_argument("--K", type=int, help="number of classes")
    p.add_argument("--n", type=int, help="samples per class")
    p.add_argument("--d", type=int, help="width (default K)")
    p.add_argument("--L", type=int, help="number of weight matrices")
    p.add_argument("--lambda", dest="lam", type=float, help="weight decay λ (equal on every factor)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def _spec_from_args(args: argparse.Namespace):
    from ..config import MODEL_KEYS, check_fields, load_config_dict
    from ..model import ModelSpec, SpecError

    fields: dict = {}
    if args.config:
        model = load_config_dict(args.config).get("model")
        if model is None:
            raise SpecError(f"config {args.config!r} has no [model] table")
        check_fields("[model]", model, MODEL_KEYS)
        fields = {MODEL_KEYS[k]: v for k, v in model.items()}
    for k in ("K", "n", "d", "L", "lam"):
        v = getattr(args, k)
        if v is not None:
            fields[k] = v
    missing = [k for k in ("K", "n", "L") if k not in fields]
    if missing:
        raise SpecError(f"missing model fields {missing}: give --K --n --L (and --lambda) or --config")
    fields.setdefault("d", fields["K"])
    if isinstance(fields.get("lam_W"), list):
        fields["lam_W"] = tuple(fields["lam_W"])
    return ModelSpec(**fields)


def run(args: argparse.Namespace) -> int:
    import json

    from .. import theory
    from ..model import SpecError

    spec = _spec_from_args(args)
    if spec.activation != "linear" or spec.loss != "ce":
        raise SpecError(f"closed forms cover the linear CE model only (activation={spec.activation!r}, loss={spec.loss!r})")
    K, n, L = spec.K, spec.n, spec.L
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
        print(f"{s.name:<30} {s.pattern:<24} {s.root:<6} {s.rank:>4} {s.loss:>16.10f}  "
              + ", ".join(f"{a:.6g}" for a in s.scales) + note)
    if not verdict["dnc_exists"]:
        print("DNC: no critical scale at this λ (the origin is the only DNC-like point)")
    else:
        t1 = "excludes" if verdict["theorem1_excludes_dnc"] else "does not exclude"
        print(f"DNC global-minimum candidate: {'yes' if verdict['candidate'] else 'no'} — Theorem 1 {t1} it "
              f"(K≥4 and L≥3, or K≥6 and L=2); best catalogued structure {verdict['best']} "
              f"({verdict['best_loss']:.10f}) vs DNC {verdict['dnc_loss']:.10f}")
    return 0
