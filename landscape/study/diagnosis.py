"""Why a study's starts did not certify, and what to change: the advice a run prints first.

:func:`diagnose` reads a summary record (``summary.json``'s fields) and the study's configuration.
When more than :data:`UNCERTIFIED_SHARE` of the main starts end uncertified, it returns one entry
per stop reason: how many, and the change that addresses it (the advice is the reason's own,
:attr:`Outcome.advice <landscape.engines.outcomes.Outcome>`, filled in for the study):

* ``diverged``: the largest stable gradient-descent step at the study's starts, 2/λ_max with λ_max
  the top Hessian eigenvalue (Lanczos, :func:`largest_curvature`) at up to :data:`PROBE_STARTS`
  of them, and the ``--set stages.I.lr=…`` that stays below it (GD on a quadratic diverges
  exactly above 2/λ_max; the curvature can grow along the way, hence a margin of one half);
* ``max_iter``: the iteration budget to raise, or, for a ReLU model, the known limitation that
  ReLU minima with weight decay sit on kinks which GD approaches sub-linearly (MODEL.md §10);
* ``stalled``: the stall detail (plateau / gradient-flat) and the option that governs it.

The headline's DNC fraction always has every main start as its denominator; the fraction among the
certified starts (:func:`certified_headline`) is what a mostly failing study can honestly report,
and the run says "of N certified" then.
"""
from __future__ import annotations

import math

import torch

from ..core.init import draw_starts
from ..core.linalg import lanczos_ritz_values
from ..core.model import DeepUFM
from ..engines.outcomes import Detail, Outcome
from .stats import proportion

#: Share of uncertified main starts above which the run leads with a diagnosis.
UNCERTIFIED_SHARE = 0.05
#: Starts at which the top Hessian eigenvalue is measured for a diverged study.
PROBE_STARTS = 16
#: Lanczos steps for the top eigenvalue (the extreme Ritz value converges first).
LANCZOS_STEPS = 30


def largest_curvature(cfg, indices=None) -> list[float]:
    """λ_max of the Hessian at the study's main starts ``indices`` (default: the first
    :data:`PROBE_STARTS`), by :data:`LANCZOS_STEPS` Lanczos steps from a fixed vector, in float64
    on the CPU. Returns one value per start."""
    spec = cfg.model.as_float64()
    idx = list(range(min(PROBE_STARTS, cfg.trajectories))) if indices is None else list(indices)
    theta = draw_starts(spec, cfg.init, cfg.seed, idx).to(torch.float64)
    model = DeepUFM(spec)
    op = model.hvp_operator(theta)
    v0 = torch.ones_like(theta) + 0.01 * torch.arange(theta.shape[1], dtype=theta.dtype)[None]
    ritz = lanczos_ritz_values(op, v0, min(LANCZOS_STEPS, spec.P))
    return [float(x) for x in ritz.max(dim=1).values]


def _nice_step_below(x: float) -> float:
    """The largest of 1, 2, 5 × 10^k that is ≤ x."""
    k = math.floor(math.log10(x))
    for m in (5, 2, 1):
        if m * 10 ** k <= x:
            return float(m * 10 ** k)
    return float(10 ** k)


def _gd_stage(cfg) -> int | None:
    return next((i for i, s in enumerate(cfg.stages) if s.engine == "gd"), None)


def diagnose(cfg, record: dict, measure: bool = True) -> list[dict]:
    """Advice for a study whose main starts mostly fail to certify (module docstring): a list of
    {"reason", "count", "share", "advice"} in order of count, empty when at most
    :data:`UNCERTIFIED_SHARE` of the starts are uncertified. ``measure``: compute the stable step of
    a diverged study (a few Hessian-vector products at :data:`PROBE_STARTS` starts)."""
    n = int(record.get("n_trajectories") or 0)
    stops = {k: int(v) for k, v in (record.get("stop_reasons") or {}).items()}
    bad = {k: v for k, v in stops.items() if k != Outcome.CONVERGED and v > 0}
    uncertified = n - certified_headline(record)["n_certified"]
    if n == 0 or uncertified <= UNCERTIFIED_SHARE * n:
        return []
    gd = _gd_stage(cfg)
    out = []
    for reason, count in sorted(bad.items(), key=lambda kv: -kv[1]):
        if reason == Outcome.DIVERGED:
            advice = _diverged_advice(cfg, gd, measure)
        elif reason == Outcome.MAX_ITER and cfg.model.activation == "relu":
            advice = Detail.KINK.advice     # ReLU ends that never settled on their kinks
        elif reason == Outcome.MAX_ITER:
            budget = ", ".join(f"stages.{i}.max_iter={s.max_iter}" for i, s in enumerate(cfg.stages))
            advice = Outcome.MAX_ITER.advice.format(budget=budget)
        elif getattr(Outcome.lookup(reason), "advice", ""):
            advice = Outcome.lookup(reason).advice
        else:
            advice = "see the stop reasons in summary.json"
        out.append({"reason": reason, "count": count, "share": count / n, "advice": advice})
    return out


def _diverged_advice(cfg, gd: int | None, measure: bool) -> str:
    if gd is None:
        return Outcome.DIVERGED.advice
    lr = cfg.stages[gd].lr
    if not measure:
        return f"the step stages.{gd}.lr={lr:g} is unstable at these starts: reduce it"
    lam = largest_curvature(cfg)
    top = max(lam)
    stable = 2.0 / top
    pick = _nice_step_below(0.5 * stable)
    return (f"the step stages.{gd}.lr={lr:g} is above the largest stable gradient-descent step at these starts: "
            f"2/λ_max = {stable:.3g} (λ_max, the top Hessian eigenvalue, {min(lam):.3g} … {top:.3g} at "
            f"{len(lam)} starts); use --set stages.{gd}.lr={pick:g} (half of it: the curvature grows along the way)")


def certified_headline(record: dict, confidence: float = 0.95) -> dict:
    """The DNC fraction among the certified main starts: {"n_certified", "dnc", "fraction",
    "ci_low", "ci_high"} (Wilson interval; the denominator is the certified starts only, the sum of
    the labels' basin counts)."""
    labels = record.get("labels") or []
    certified = sum(int(r["count"]) for r in labels)   # basin counts: certified ends only
    dnc = next((int(r["count"]) for r in labels if r.get("label") == "DNC"), 0)
    p = proportion(dnc, certified, confidence) if certified > 0 else {"fraction": None, "ci_low": None, "ci_high": None}
    return {"n_certified": certified, "dnc": dnc, "fraction": p["fraction"], "ci_low": p["ci_low"],
            "ci_high": p["ci_high"]}
