"""A λ = 0 study: where unregularised descent goes, decided and certified (MODEL.md §11).

At λ = 0 the cross-entropy of the linear CE UFM has no finite minimiser: a descent drives ‖θ‖ → ∞
and converges *in direction* (Lyu & Li 2020; Ji & Telgarsky 2020) to a KKT point of the
max-margin problem min ½‖θ‖² s.t. every margin z_{y_i} − z_c ≥ 1. Directions converge like
1/log t, so an end is *decided*, then polished and certified. A λ = 0 study
(``[model] lambda = 0``; :func:`run_lambda0_study`, which :func:`landscape.study.run.run_study`
hands every such study to) does, for every start:

1. **Descent.** The study's descent stages (gd, flow, lbfgs; a non-descent stage such as the
   Newton polish of a λ > 0 study is not run and the summary says so), batched as tensors, from
   the study's ``[init]``, for their ``max_iter``. Their ``tol``, stall and curvature rules are
   those of critical points and are off: a stage ends at ``max_iter``, or where ‖∇L‖ ≤
   :data:`DESCENT_GRAD_FLOOR` (margins ≈ 345, where float64 loses ∇L; no GD run reaches it), or
   ``diverged``. The CE gradient is computed without the cancellation of p_y − 1
   (:meth:`landscape.core.model.DeepUFM._data_term`), exact to round-off at any margin.
2. **Margin flow** (``[lambda0] continue_iter`` steps; 0: none). The descent's path, followed
   further: Dormand–Prince (the ``flow`` engine) on log L(θ). dθ/ds = −∇L/L is the gradient flow
   of L in the time s = ∫L dt, so it traces the *same curve* in θ-space, and log L and its
   gradient are computed with every exponent shifted by the smallest margin
   (:class:`MarginFlowUFM`), so the curve is followed to margins of thousands, where L itself
   underflows. Late in a GD run the loss is tiny and GD is a first-order discretisation of this
   flow far below its stability limit; ``[lambda0] check_starts`` measures whether the hand-off
   comes late enough (step 5).
3. **Decision** at the end θ_e. The *normalised point* is θ_b, the balanced factorisation of
   θ_e's logits Z_e (every factor the singular values σ_i(Z_e)^{1/(L+1)}, aligned;
   :func:`landscape.analysis.margins.balanced_factorisation`), scaled to unit minimum margin:
   the imbalance W_{l+1}ᵀW_{l+1} − W_lW_lᵀ is conserved by gradient flow and stays O(‖θ₀‖²)
   while ‖θ‖ → ∞, so the limit direction is balanced, and θ_b is GD's logits at it. The logits
   are centred first (Z_e − 11ᵀZ_e/K, the same margins): 1ᵀW_L is conserved too (the columns
   of ∂L/∂Z sum to zero), so 1ᵀZ_e grows only like ‖θ‖^L and vanishes in direction, as it
   does at every KKT point.
   γ_end = γ(θ_b) (≥ γ(θ_e), also stored as ``gamma_raw_end``); the end's *support* is the set of
   margins ≤ (1 + ``support_rtol``)·min margin; its *label* is the structure table's
   (:func:`landscape.analysis.structure.analyse_structure`) at θ_b with pattern and collapse
   tolerances ``label_rtol``.
4. **Polish and certificate.** :func:`landscape.analysis.margins.polish_direction` from θ_b
   (Newton on the support's KKT system, SLSQP then Newton where Newton stalls); where Newton
   lands on a saddle of the margin or below γ_end, SLSQP first (it climbs the margin). The
   polished θ̂ is certified iff: its KKT residual ≤ ``kkt_tol``; it is a local maximum of the
   margin (:func:`~landscape.analysis.margins.second_order`: no negative direction on the
   support's tangent space, else ``margin_saddle``); and the hand-off is faithful — its support
   and label (at the ``[analysis]`` tolerances) equal the end's, and
   0 ≤ (γ(θ̂) − γ_end)/γ(θ̂) ≤ ``gamma_rtol`` (−1e-9 allowed for round-off): the polish climbed,
   and only a little. Otherwise ``direction_unsettled`` with the reason, ``kkt_unconverged``,
   ``not_separated`` (a class not yet separated at the end) or ``diverged``.
5. **Check** (``[lambda0] check_starts``): the first starts again with every descent stage's
   ``max_iter`` × ``check_factor``, decided the same way; the summary gives how many certified
   ends agree (same label and γ) with their longer runs.

Directions are deduplicated modulo class relabelling, gauge and scale by (label, γ to 9
significant digits): both are invariant under all three. The results folder holds
``config.json``, ``lambda0.sqlite`` (the database the run commits to, below), ``summary.json``
(``"kind": "lambda0"``, :func:`summary_text` prints it), ``directions.json`` (every start's
record, :data:`START_KEYS`) and ``directions.npz`` (θ̂ of every distinct certified direction,
``direction-<id>``, unit minimum margin).

**Resuming.** The starts run in batches of ``batch_size``; each finished batch (its records and
the θ̂ of its certified starts that are the first of their direction) is committed to
``lambda0.sqlite`` in one transaction (:mod:`landscape.io.lambda0_store`), and the hand-off check
(step 5) once it is done. A run stopped at any moment loses at most the batch (or the check) in
flight: the same call on the same folder (``landscape run --resume DIR``, a sweep run again)
reads the committed batches back, checks every value (the file is untrusted input; a folder of
another configuration is refused), computes only the batches it lacks, and writes the same
files as a run never interrupted: the records read back are the ones a fresh run goes on from
(JSON, exactly), directions get their ids at the end in start order, and a batch's starts are a
pure function of the configuration and their indices. Only wall times differ (``timings`` adds
up the seconds of every batch, over every run that computed them). summary.json,
directions.json and directions.npz are written at the end, derived from the database.

**Reading back.** :meth:`Lambda0Result.load` (what :func:`landscape.load_results` returns for a
λ = 0 folder) reads a finished folder: the summary, every start's record and the directions with
their θ̂, every value checked (:mod:`landscape.io.lambda0_results`, torch-free).
"""
from __future__ import annotations

import io
import json
import math
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
import torch

from .. import __version__
from ..analysis import margins as mg
from ..analysis.labels import DNC, PAIRS
from ..analysis.structure import analyse_structure
from ..core.init import draw_starts, trajectory_seed
from ..core.model import DeepUFM
from ..core.validate import SpecError
from ..engines import TrajectoryResults, run_pipeline
from ..engines.outcomes import LAMBDA0_STOP_REASONS, Detail, Outcome
from ..engines.stage import StageConfig
from ..core.jsonsafe import json_default
# what reads a record, a summary or a finished folder back (torch-free), kept importable here
from ..io.lambda0_results import (GAMMA_DIGITS, KIND, START_KEYS, Lambda0Direction,  # noqa: F401
                                  check_check_record, check_lambda0_summary, check_start_record, direction_key,
                                  end_labels, is_lambda0_folder, model_parameters, read_lambda0_directions,
                                  read_lambda0_starts, read_lambda0_summary)
from ..io.lambda0_store import DB_NAME as LAMBDA0_DB, Lambda0Batch, Lambda0Store, Lambda0StoreError, batch_environments
from ..io.results import FILES, LAMBDA0_FILES, atomic_write_bytes, has_study_database, read_json, write_json
from .config import StudyConfig, resolve_device
from .lambda0_summary import Lambda0Summary
from .stats import proportion
from .summary import environment

#: A descent stage at λ = 0 ends where ‖∇L‖ falls to this (margins ≈ 345: the norm of a gradient
#: whose entries are ~e^{−m} underflows in float64 below ~1e−154).
DESCENT_GRAD_FLOOR = 1e-150
#: Stop reasons of a λ = 0 start, in the order the summary lists them (:class:`Outcome` members).
STOP_REASONS = LAMBDA0_STOP_REASONS
#: Round-off allowed below zero in the polish's relative change of γ.
GAMMA_ROUNDOFF = 1e-9
#: What a polish may raise on a pathological start (a step out of the separable cone, a LAPACK
#: failure): the start is then ``kkt_unconverged`` (or its stable-rule check fails), not the run.
POLISH_ERRORS = (ValueError, ArithmeticError, np.linalg.LinAlgError)


# ----- the margin flow -----------------------------------------------------------------------------
class MarginFlowUFM(DeepUFM):
    """The linear CE UFM at λ = 0 with objective log L(θ) in place of L (module docstring, step 2):
    loss_and_grad returns (log L, ∇L/L). With u_ic = z_c − z_{y_i} (c ≠ y_i), s_i = Σ_c e^{u_ic}
    and ℓ_i = log(1 + s_i): log L = log Σ_i ℓ_i − log N, computed as log s_i + log(log1p(s_i)/s_i)
    (→ log s_i for s_i → 0) and a log-sum-exp over samples; ∂ log L/∂u_ic =
    e^{u_ic − log Σℓ}/(1 + s_i), the true class's entry minus the sum of the others. Every
    exponent is at most ~0: nothing over- or underflows at any margin (exponents below −600 are
    raised to −600, e^{−600} relative to the largest term). Torch only (no host numpy path)."""

    def __init__(self, spec, device="cpu"):
        if not (spec.unregularised and spec.loss == "ce" and spec.activation == "linear"):
            raise SpecError("the margin flow is of the linear CE model at λ = 0")
        super().__init__(spec, device=device, compile=False)
        self.host_gradient = False

    def _data_term(self, Z, ops=None, Y=None):
        Y = self.Y if Y is None else Y
        off = 1 - Y
        zy = (Z * Y).sum(dim=1, keepdim=True)
        U = (Z - zy) * off - 1e300 * Y              # u_ic, the true class far below every other
        top = U.amax(dim=1, keepdim=True)
        log_s = top + torch.log(torch.exp(U - top).sum(dim=1, keepdim=True))
        s = torch.exp(log_s.clamp(max=700.0))
        small = log_s < -20.0
        safe = torch.where(small, torch.ones_like(s), s)
        log_l = log_s + torch.where(small, -0.5 * s, torch.log(torch.log1p(safe) / safe))
        peak = log_l.amax(dim=2, keepdim=True)
        log_sum = peak + torch.log(torch.exp(log_l - peak).sum(dim=2, keepdim=True))
        g = log_sum.reshape(-1) - math.log(self.spec.N)
        W = torch.exp((U - log_sum).clamp(min=-600.0)) * off / (1 + s)
        return g, W - Y * W.sum(dim=1, keepdim=True)

    def data_loss(self, Z):
        return self._data_term(Z)[0]


def continuation_stage(settings) -> StageConfig:
    """The margin flow's stage: the flow engine for ``continue_iter`` steps (no tol, stall or
    curvature rule)."""
    n = settings.continue_iter
    return StageConfig(engine="flow", rtol=settings.continue_rtol, max_iter=n, tol=1e-300, stall_window=n + 1,
                       curvature_check=False, diverge_loss=1e300)


def descent_stages(cfg: StudyConfig, factor: int = 1) -> tuple[tuple[StageConfig, ...], list[str]]:
    """The study's descent stages as a λ = 0 study runs them (module docstring, step 1), with
    ``max_iter`` × ``factor``; and the descriptions of the stages not run (non-descent engines)."""
    kept, dropped = [], []
    for s in cfg.stages:
        if not s.descent:
            dropped.append(s.describe())
            continue
        d = s.settings()
        n = int(s.max_iter) * int(factor)
        d.update(max_iter=n, tol=DESCENT_GRAD_FLOOR, stall_window=n + 1, curvature_check=False, curvature_gauge=False)
        if kept:
            d["entry_grad_norm"] = 1e300   # every row the previous stage did not lose goes on
        kept.append(StageConfig.from_dict(d))
    if not kept:
        raise SpecError("stages is invalid for lambda=0: a λ = 0 study needs a descent stage (engine gd, flow or "
                        "lbfgs) to follow; its ends are then decided and polished (landscape.study.lambda0)")
    return tuple(kept), dropped


def describe_dynamics(cfg: StudyConfig, factor: int = 1) -> str:
    """Which engines, steps and init produced the numbers, e.g. ``gd(lr=0.5) 20000 steps → margin
    flow (dopri5 on log L, rtol=1e-06) 2000 steps → KKT polish; init gaussian``."""
    stages, _ = descent_stages(cfg, factor)
    parts = [f"{s.describe()} {s.max_iter} steps" for s in stages]
    st = cfg.lambda0
    if st.continue_iter:
        parts.append(f"margin flow (dopri5 on log L, rtol={st.continue_rtol:g}) {st.continue_iter} steps"
                     + (f" (an end left uncertified: up to {st.extend_rounds} more rounds of {st.continue_iter // 2})"
                        if st.extend_rounds else ""))
    parts.append("KKT polish")
    return " → ".join(parts) + "; init " + cfg.init.describe()


# ----- dynamics ------------------------------------------------------------------------------------
@dataclass
class Dynamics:
    """Where a unit of starts ended: ``theta`` (B, P) float64 numpy, the descent's results and
    the margin flow's (None without one; ``flowed``: the rows it ran), seconds of each."""

    theta: np.ndarray
    descent: TrajectoryResults
    flow: TrajectoryResults | None
    flowed: np.ndarray
    descent_s: float
    flow_s: float
    #: θ after half the margin flow's steps (rule "stable"), else None
    theta_mid: np.ndarray | None = None
    #: the margin flow's steps per flowed row (both halves)
    flow_iterations: np.ndarray | None = None


def run_dynamics(cfg: StudyConfig, indices, factor: int = 1, *, on_status=None) -> Dynamics:
    """Steps 1–2 of the module docstring for the main starts ``indices`` (descent stages'
    ``max_iter`` × ``factor``)."""
    idx = list(indices)
    device = resolve_device(cfg.device)
    model = DeepUFM(cfg.model, device=device, compile={"on": True, "off": False}.get(cfg.compile, "auto"))
    theta0 = draw_starts(cfg.model, cfg.init, cfg.seed, idx, device=device)
    stages, _ = descent_stages(cfg, factor)
    wb = cfg.working_batch or len(idx)
    t = time.perf_counter()
    res = run_pipeline(model, theta0, list(stages), working_batch=wb, on_status=on_status)
    descent_s = time.perf_counter() - t
    theta = res.theta.detach().to("cpu", torch.float64).clone()
    ok = (res.stop_reason != Outcome.DIVERGED) & torch.isfinite(theta).all(dim=1).numpy()
    flowed = np.nonzero(ok)[0]
    flow, flow_s, mid, iters = None, 0.0, None, None
    st = cfg.lambda0
    if st.continue_iter and flowed.size:
        t = time.perf_counter()
        fm = MarginFlowUFM(cfg.model.as_float64(), device=device)
        rows = torch.from_numpy(flowed)
        start = theta[rows].to(device)
        if st.rule == "stable":   # in two halves, keeping the midpoint (the second half restarts h)
            half = st.continue_iter // 2
            first = run_pipeline(fm, start, [continuation_stage(replace(st, continue_iter=half))], working_batch=wb,
                                 on_status=on_status)
            mid = theta.clone()
            mid[rows] = first.theta.detach().to("cpu", torch.float64)
            flow = run_pipeline(fm, first.theta, [continuation_stage(replace(st, continue_iter=st.continue_iter - half))],
                                working_batch=wb, on_status=on_status)
            iters = first.iterations + flow.iterations
            flow.n_grad = flow.n_grad + first.n_grad
            flow.wall_time = flow.wall_time + first.wall_time
            mid = mid.numpy()
        else:
            flow = run_pipeline(fm, start, [continuation_stage(st)], working_batch=wb, on_status=on_status)
            iters = flow.iterations
        theta[rows] = flow.theta.detach().to("cpu", torch.float64)
        flow_s = time.perf_counter() - t
    return Dynamics(theta.numpy(), res, flow, flowed, descent_s, flow_s, mid, iters)


# ----- the decision --------------------------------------------------------------------------------
def _label(spec, theta, **tolerances) -> str:
    return analyse_structure(spec, theta, **tolerances).label


@dataclass
class Polished:
    """An end read (step 3) and polished (step 4): the normalised point ``tb``, ``gamma_end``, the
    end's support and label, the polished θ̂ with its certificate, second order and label."""

    tb: np.ndarray
    gamma_end: float
    support_end: np.ndarray
    label_end: str
    theta: np.ndarray
    cert: object
    second: dict
    label: str
    how: str

    @property
    def key(self) -> tuple[str, str]:
        return direction_key(self.label, self.cert.gamma)

    @property
    def climbed(self) -> bool:
        return self.cert.gamma >= self.gamma_end * (1 - GAMMA_ROUNDOFF)


def read_and_polish(spec, st, analysis, theta: np.ndarray) -> Polished:
    """Steps 3–4 of the module docstring for one separated end θ (P,) of the model ``spec``, with
    the ``[lambda0]`` settings ``st`` and the ``[analysis]`` settings ``analysis`` of a study: the
    normalised point, its support and label, and the polished direction (Newton; SLSQP first where
    Newton reaches a saddle of the margin, a lower γ, or no KKT point)."""
    m = mg.margins(spec, theta).reshape(-1)
    Z = mg.logits(spec, theta)
    Z = Z - Z.mean(axis=0, keepdims=True)   # the margins are those of Z; 1ᵀZ → 0 in direction (docstring)
    tb = mg.rescale_to_unit_margin(spec, mg.balanced_factorisation(spec, Z))
    gamma_end = mg.normalised_margin(spec, tb)
    s_end = np.flatnonzero(m / m.min() <= 1.0 + st.support_rtol)
    label_end = _label(spec, tb, pattern_rtol=st.label_rtol, collapse_tol=st.label_rtol,
                       rank_rtol=analysis.rank_rtol, zero_atol=analysis.zero_atol)
    newton_tol = st.kkt_tol / 10
    th, cert = mg.polish_direction(spec, tb, tol=newton_tol, support_rtol=st.support_rtol)
    so = mg.second_order(spec, th, cert.support, cert.multipliers, st.curvature_tol)
    how = cert.polish["stage"]
    if so["negative"] or cert.gamma < gamma_end * (1 - GAMMA_ROUNDOFF) or cert.residual > st.kkt_tol:
        # Newton goes to the nearest KKT point of either kind: from an end that is leaving a
        # saddle of the margin, climb instead (SLSQP lowers ‖θ‖ at fixed margins)
        try:
            th2, cert2 = mg.polish_direction(spec, tb, tol=newton_tol, support_rtol=st.support_rtol, first="slsqp")
            so2 = mg.second_order(spec, th2, cert2.support, cert2.multipliers, st.curvature_tol)
        except POLISH_ERRORS:   # SLSQP left the separable cone, or LAPACK failed: Newton's answer stands
            cert2 = None
        if cert2 is None:
            pass
        elif cert2.residual <= st.kkt_tol and (so2["negative"], -cert2.gamma) < (so["negative"], -cert.gamma) \
                or cert.residual > st.kkt_tol >= cert2.residual:
            th, cert, so = th2, cert2, so2
            how = f"{cert2.polish['stage']} (Newton alone reached a lower or saddle KKT point)"
    label = _label(spec, th, **analysis.structure_kwargs())
    return Polished(tb, gamma_end, s_end, label_end, th, cert, so, label, how)


def decide(cfg: StudyConfig, theta_end: np.ndarray, theta_mid: np.ndarray | None = None) -> tuple[dict, np.ndarray | None]:
    """Steps 3–4 of the module docstring for one end θ_e (P,): the start's record (the keys of
    :data:`START_KEYS` that the decision fills) and the polished θ̂ (None where nothing was
    polished). ``theta_mid``: where the margin flow was after half its steps (``rule =
    "stable"``: an end the strict rule leaves unsettled is certified when both polish to the
    same direction, :class:`~landscape.study.lambda0_settings.Lambda0Settings`)."""
    spec, st = cfg.model, cfg.lambda0
    t0 = time.perf_counter()
    rec: dict = {"detail": ""}

    def done(reason: Outcome, detail: str = "", th=None):
        rec.update(stop_reason=reason.value, detail=detail or rec.get("detail", ""), decide_s=time.perf_counter() - t0)
        return rec, th

    if not np.all(np.isfinite(theta_end)):
        return done(Outcome.DIVERGED, "non-finite parameters at the end")
    m = mg.margins(spec, theta_end).reshape(-1)
    mmin = float(m.min())
    rec["min_margin_end"] = mmin
    if not mmin > 0:
        return done(Outcome.NOT_SEPARATED, f"smallest margin {mmin:.3g} ≤ 0 at the end")
    rec["gamma_raw_end"] = mg.normalised_margin(spec, theta_end)
    try:
        p = read_and_polish(spec, st, cfg.analysis, theta_end)
    except POLISH_ERRORS as exc:
        return done(Outcome.KKT_UNCONVERGED, f"the polish failed: {type(exc).__name__}: {exc}")
    cert, so, label = p.cert, p.second, p.label
    ratio = m / mmin
    outside = np.delete(ratio, p.support_end)
    z = np.linalg.svd(mg.logits(spec, p.theta), compute_uv=False)
    rel = (cert.gamma - p.gamma_end) / cert.gamma
    rec.update(gamma_end=p.gamma_end, support_size_end=int(p.support_end.size),
               support_spread_end=float(ratio[p.support_end].max() - 1.0),
               support_gap_end=float(outside.min() - 1.0) if outside.size else None, label_end=p.label_end,
               label=label, support_size=cert.support_size, gamma=cert.gamma, gamma_rel_change=rel,
               kkt_residual=cert.residual, polish=p.how, margin_negative=so["negative"],
               excess_zero_modes=so["excess_zero_modes"], z_rank=int(np.sum(z > z[0] * 1e-8)))
    if cert.residual > st.kkt_tol:
        return done(Outcome.KKT_UNCONVERGED, f"KKT residual {cert.residual:.2e} > kkt_tol {st.kkt_tol:g}", p.theta)
    if so["negative"]:
        return done(Outcome.MARGIN_SADDLE, f"the polished direction ({label}, γ={cert.gamma:.6g}) has {so['negative']} "
                                     "negative direction(s) of the margin: the end lingers near a saddle", p.theta)
    if set(p.support_end.tolist()) != set(cert.support.tolist()):
        why = f"support of {p.support_end.size} constraints at the end, {cert.support_size} polished"
    elif p.label_end != label:
        why = f"label {p.label_end} at the end, {label} polished"
    elif not -GAMMA_ROUNDOFF <= rel <= st.gamma_rtol:
        why = f"γ changed by {rel:+.2%} in the polish (bound: 0 … {st.gamma_rtol:g})"
    else:
        return done(Outcome.CERTIFIED, Detail.STRICT.value, p.theta)
    if st.rule != "stable" or theta_mid is None or not p.climbed or not np.all(np.isfinite(theta_mid)) \
            or not mg.margins(spec, theta_mid).min() > 0:
        return done(Outcome.DIRECTION_UNSETTLED, why, p.theta)
    try:
        q = read_and_polish(spec, st, cfg.analysis, theta_mid)
    except POLISH_ERRORS as exc:
        return done(Outcome.DIRECTION_UNSETTLED, f"{why}; the polish from the flow's midpoint failed ({type(exc).__name__})",
                    p.theta)
    same = (q.key == p.key and set(q.cert.support.tolist()) == set(cert.support.tolist())
            and q.cert.residual <= st.kkt_tol and not q.second["negative"] and q.climbed)
    if not same:
        return done(Outcome.DIRECTION_UNSETTLED, f"{why}; the polish from the flow's midpoint reached "
                                           f"{q.label} (γ={q.cert.gamma:.6g}, support {q.cert.support_size})", p.theta)
    return done(Outcome.CERTIFIED, Detail.STABLE.explained(
        f"{why}, and the polish from the flow's midpoint reaches the same direction"), p.theta)


# ----- the study -----------------------------------------------------------------------------------
#: The label of a centred code of p pairs and s classes alone (landscape.analysis.theory.pattern_name).
_PAIRS_SELF = re.compile(r"^(?:(\d+)×)?pair\+(?:(\d+)×)?self$")
#: The label of one subsets(m, j) block holding every class (landscape.analysis.theory.BlockType).
_SUBSETS = re.compile(r"^subsets\((\d+),(\d+)\)$")


def pairs_self_counts(K: int, label: str) -> tuple[int, int] | None:
    """(p, s) of a label that is a code of p pairs and s = K − 2p classes alone (DNC: p = 0; pairs:
    p = K // 2; "4×pair+2×self"), or None."""
    if label == DNC.name:
        return 0, K
    if label == PAIRS.name:
        return K // 2, K % 2
    m = _PAIRS_SELF.match(str(label))
    if m is None:
        return None
    p, s = int(m.group(1) or 1), int(m.group(2) or 1)
    return (p, s) if 2 * p + s == K else None


def closed_form(spec, label: str) -> tuple[str, float] | None:
    """(name, γ) of the closed form a label has, or None: NC for DNC, the pairs code for pairs
    (even K), the centred code of p pairs and s classes alone for "p×pair+s×self" and odd-K
    pairs (:func:`landscape.analysis.margins.pairs_self_code_margin`), and one subsets(m, j) block
    of all K = C(m, j) classes (:func:`landscape.analysis.margins.subsets_code_margin`)."""
    K, n, L = spec.K, spec.n, spec.L
    if label == DNC.name:
        return "nc_code_margin", mg.nc_code_margin(K, n, L)
    if label == PAIRS.name and K % 2 == 0:
        return "pairs_code_margin", mg.pairs_code_margin(K, n, L)
    ps = pairs_self_counts(K, label)
    if ps is not None:
        return f"pairs_self_code_margin(p={ps[0]})", mg.pairs_self_code_margin(K, n, L, ps[0])
    sub = _SUBSETS.match(str(label))
    if sub is not None and math.comb(int(sub.group(1)), int(sub.group(2))) == K:
        m, j = int(sub.group(1)), int(sub.group(2))
        return f"subsets_code_margin(m={m}, j={j})", mg.subsets_code_margin(m, j, n, L)
    return None


def _quantiles(v) -> dict | None:
    v = np.asarray([x for x in v if x is not None and np.isfinite(x)], dtype=np.float64)
    if not v.size:
        return None
    q = np.quantile(v, [0.0, 0.25, 0.5, 0.75, 1.0])
    return {"n": int(v.size), "min": float(q[0]), "q25": float(q[1]), "median": float(q[2]), "q75": float(q[3]),
            "max": float(q[4]), "mean": float(v.mean())}


#: What the detail of a start decided in an extension round says (after the number of rounds).
EXTENDED_MARK = "more margin-flow round(s)"
#: Stop reasons of a decided end that more margin flow may still certify (``[lambda0] extend_rounds``).
EXTENDABLE = frozenset({Outcome.DIRECTION_UNSETTLED.value, Outcome.MARGIN_SADDLE.value, Outcome.KKT_UNCONVERGED.value})


def _decide_rows(cfg: StudyConfig, ends: np.ndarray, mids: np.ndarray | None,
                 tick: Callable[[int], None] = lambda k: None) -> list[tuple[dict, np.ndarray | None]]:
    """:func:`decide` for every row of ``ends`` (B, P) with its midpoint row of ``mids``; ``tick(1)``
    after each."""
    from threadpoolctl import threadpool_limits

    out = []
    for b in range(ends.shape[0]):
        # dense 200×200 solves: one BLAS thread (measured on 2 busy cores: 8 ms per lstsq, 290 ms with two)
        with threadpool_limits(limits=1, user_api="blas"):
            out.append(decide(cfg, ends[b], None if mids is None else mids[b]))
        tick(1)
    return out


def margin_flow(cfg: StudyConfig, theta: np.ndarray, steps: int) -> TrajectoryResults:
    """The study's margin flow (step 2 of the module docstring) from the points ``theta`` (B, P)
    for ``steps`` more steps, the rows batched as one tensor: an extension round
    (``[lambda0] extend_rounds``, continue_iter // 2 steps) or a probe's chunk."""
    device = resolve_device(cfg.device)
    fm = MarginFlowUFM(cfg.model.as_float64(), device=device)
    return run_pipeline(fm, torch.from_numpy(np.ascontiguousarray(theta)).to(device),
                        [continuation_stage(replace(cfg.lambda0, continue_iter=steps))],
                        working_batch=cfg.working_batch or theta.shape[0])


def _start_records(cfg: StudyConfig, indices, dyn: Dynamics, progress) -> tuple[list[dict], list]:
    """Every start's record (:data:`START_KEYS`) and polished θ̂ (None where nothing was polished)
    from where the unit of starts ``indices`` ended (``dyn``), after the extension rounds of
    ``[lambda0] extend_rounds`` (their flow's seconds are added to ``dyn.flow_s``)."""
    recs, thetas = [], []
    flowed = {int(r): k for k, r in enumerate(dyn.flowed)}
    decided = _decide_rows(cfg, dyn.theta, dyn.theta_mid, progress)
    extra = {"iterations": np.zeros(len(indices), dtype=np.int64), "n_grad": np.zeros(len(indices), dtype=np.int64),
             "seconds": np.zeros(len(indices)), "rounds": np.zeros(len(indices), dtype=np.int64)}
    st = cfg.lambda0
    ends = dyn.theta.copy()
    for _ in range(st.extend_rounds if dyn.flow is not None else 0):
        rows = [b for b, (rec, _th) in enumerate(decided)
                if rec["stop_reason"] in EXTENDABLE and b in flowed and dyn.descent.stop_reason[b] != Outcome.DIVERGED]
        if not rows:
            break
        t = time.perf_counter()
        more = margin_flow(cfg, ends[rows], st.continue_iter // 2)
        dyn.flow_s += time.perf_counter() - t
        new = more.theta.detach().to("cpu", torch.float64).numpy()
        again = _decide_rows(cfg, new, ends[rows])
        for k, b in enumerate(rows):
            ends[b] = new[k]
            extra["iterations"][b] += int(more.iterations[k])
            extra["n_grad"][b] += int(more.n_grad[k])
            extra["seconds"][b] += float(more.wall_time[k])
            extra["rounds"][b] += 1
            rec, th = again[k]
            rec["decide_s"] += decided[b][0]["decide_s"]
            decided[b] = rec, th
    half = st.continue_iter // 2
    for b, i in enumerate(indices):
        rec, th = decided[b]
        if extra["rounds"][b]:
            more = f"after {extra['rounds'][b]} {EXTENDED_MARK} of {half} steps"
            rec["detail"] = (Detail.STRICT.explained(more) if rec["detail"] == Detail.STRICT
                             else f"{rec['detail']} ({more})" if rec["detail"] else more)
        k = flowed.get(b)
        ran = dyn.flow is not None and k is not None
        rec.update(index=int(i), seed=trajectory_seed(cfg.seed, i), descent_stop=str(dyn.descent.stop_reason[b]),
                   descent_iterations=int(dyn.descent.iterations[b]),
                   continue_iterations=(int(dyn.flow_iterations[k]) if ran else 0) + int(extra["iterations"][b]),
                   n_grad=int(dyn.descent.n_grad[b]) + (int(dyn.flow.n_grad[k]) if ran else 0) + int(extra["n_grad"][b]),
                   descent_s=float(dyn.descent.wall_time[b]),
                   continue_s=(float(dyn.flow.wall_time[k]) if ran else 0.0) + float(extra["seconds"][b]))
        if dyn.descent.stop_reason[b] == Outcome.DIVERGED:
            rec.update(stop_reason=Outcome.DIVERGED.value, detail=f"the descent diverged ({dyn.descent.stop_detail[b] or 'loss'})")
        recs.append({key: rec.get(key) for key in START_KEYS})
        thetas.append(th)
    return recs, thetas


def _assign_directions(recs: list[dict], thetas: list) -> list[dict]:
    """Give every certified start the id of its distinct direction; return the directions."""
    dirs: dict[tuple, dict] = {}
    for r, th in zip(recs, thetas):
        if r["stop_reason"] != Outcome.CERTIFIED:
            continue
        key = direction_key(r["label"], r["gamma"])
        d = dirs.get(key)
        if d is None:
            d = dirs[key] = {"id": len(dirs), "label": r["label"], "gamma": r["gamma"], "support_size": r["support_size"],
                             "z_rank": r["z_rank"], "count": 0, "theta": th, "first": r["index"]}
        d["count"] += 1
        r["direction_id"] = d["id"]
    return list(dirs.values())


def _strict(rec: dict) -> bool:
    """Whether a certified start was certified by the strict rule (after extension rounds or not)."""
    return Detail.STRICT.heads(rec["detail"])


def summarise(cfg: StudyConfig, recs: list[dict], directions: list[dict], check: dict | None = None) -> dict:
    """The λ = 0 fields of summary.json (without wall time, environment and files)."""
    spec = cfg.model
    n = len(recs)
    cert = [r for r in recs if r["stop_reason"] == Outcome.CERTIFIED]
    nc = sum(r["label"] == DNC.name for r in cert)
    labels: dict[str, int] = {}
    for r in cert:
        labels[r["label"]] = labels.get(r["label"], 0) + 1
    dir_rows = []
    for d in sorted(directions, key=lambda d: (-d["count"], d["id"])):
        cf = closed_form(spec, d["label"])
        row = {k: d[k] for k in ("id", "label", "gamma", "support_size", "z_rank", "count")}
        row.update(proportion(d["count"], len(cert)))
        if cf is not None:
            row.update(closed_form=cf[0], closed_form_gamma=cf[1], closed_form_rel_error=abs(d["gamma"] - cf[1]) / cf[1])
        dir_rows.append(row)
    st = cfg.lambda0
    pairs = mg.pairs_code_margin(spec.K, spec.n, spec.L) if spec.K % 2 == 0 else None
    stages, dropped = descent_stages(cfg)
    return {
        "kind": KIND, "study": cfg.name, "config": cfg.to_dict(), "dynamics": describe_dynamics(cfg),
        "n_trajectories": n,
        "stop_reasons": {k.value: sum(r["stop_reason"] == k for r in recs) for k in STOP_REASONS},
        "certified": {**proportion(len(cert), n),
                      "by_rule": {Detail.STRICT.value: sum(_strict(r) for r in cert),
                                  Detail.STABLE.value: sum(Detail.STABLE.heads(r["detail"]) for r in cert)},
                      "after_extension": sum(EXTENDED_MARK in r["detail"] for r in cert)},
        "nc": {"label": DNC.name, "of": "certified starts", **proportion(nc, len(cert))},
        "labels": {k: proportion(v, len(cert)) for k, v in sorted(labels.items(), key=lambda kv: -kv[1])},
        "directions": dir_rows,
        "gamma": {"polished": _quantiles(r["gamma"] for r in cert), "end": _quantiles(r["gamma_end"] for r in cert),
                  "raw_end": _quantiles(r["gamma_raw_end"] for r in cert),
                  "rel_change": _quantiles(r["gamma_rel_change"] for r in cert if _strict(r)),
                  "rel_change_stable": _quantiles(r["gamma_rel_change"] for r in cert if not _strict(r)),
                  "per_label": {k: _quantiles(r["gamma"] for r in cert if r["label"] == k) for k in labels}},
        "closed_forms": {"nc_code_margin": mg.nc_code_margin(spec.K, spec.n, spec.L), "pairs_code_margin": pairs},
        "steps": {"descent": _quantiles(r["descent_iterations"] for r in recs),
                  "continue": _quantiles(r["continue_iterations"] for r in recs),
                  "min_margin_end": _quantiles(r["min_margin_end"] for r in recs),
                  "seconds_per_start": _quantiles((r["descent_s"] or 0) + (r["continue_s"] or 0) + (r["decide_s"] or 0)
                                                  for r in recs)},
        "decision": {**st.to_dict(), "descent_grad_floor": DESCENT_GRAD_FLOOR, "gamma_roundoff": GAMMA_ROUNDOFF,
                     "rule": "certified iff KKT residual ≤ kkt_tol, no negative direction of the margin, support and "
                             "label of the polished direction equal the end's, and 0 ≤ (γ − γ_end)/γ ≤ gamma_rtol "
                             "(γ_end: the end's logits at their balanced factorisation)",
                     "label_tolerances_polished": cfg.analysis.structure_kwargs()},
        "not_run": dropped + ["saddle search", "saddle connections", "transition states"]
                   + (["[cross_check] (the λ > 0 check; see lambda0.check_starts)"] if cfg.cross_check.starts else []),
        "check": check,
    }


def _check(cfg: StudyConfig, recs: list[dict], progress) -> dict | None:
    st = cfg.lambda0
    if not st.check_starts:
        return None
    idx = list(range(st.check_starts))
    dyn = run_dynamics(cfg, idx, factor=st.check_factor)
    longer, _ = _start_records(cfg, idx, dyn, progress)
    by = {r["index"]: r for r in recs}
    both = [(by[r["index"]], r) for r in longer if by[r["index"]]["stop_reason"] == Outcome.CERTIFIED]
    agree = sum(a["label"] == b["label"] and b["stop_reason"] == Outcome.CERTIFIED
                and direction_key(a["label"], a["gamma"]) == direction_key(b["label"], b["gamma"]) for a, b in both)
    same_label = sum(a["label"] == b["label"] for a, b in both)
    return {"dynamics": describe_dynamics(cfg, st.check_factor), "starts": len(idx),
            "certified_main": len(both), "agree": agree, "agreement": proportion(agree, len(both)),
            "same_label": same_label,
            "longer_stop_reasons": {k.value: sum(r["stop_reason"] == k for r in longer) for k in STOP_REASONS},
            "pairs": [{"index": a["index"], "main": a["label"], "main_gamma": a["gamma"], "longer": b["label"],
                       "longer_gamma": b["gamma"], "longer_stop_reason": b["stop_reason"]} for a, b in both]}


def _first_of_direction(recs: dict[int, dict]) -> dict[tuple, int]:
    """{direction key: the lowest index of a certified start in ``recs`` with that key}."""
    lowest: dict[tuple, int] = {}
    for i, r in recs.items():
        if r["stop_reason"] == Outcome.CERTIFIED:
            k = direction_key(r["label"], r["gamma"])
            lowest[k] = min(i, lowest.get(k, i))
    return lowest


def _same_direction_first(recs: dict[int, dict], batch: list[dict], thetas: list) -> dict[int, np.ndarray]:
    """θ̂ of the certified starts of ``batch`` that are the first, in start order, of their
    direction among the committed starts ``recs`` and the batch: the θ̂ a direction keeps
    (:func:`_assign_directions` takes each direction's from its first start)."""
    lowest = _first_of_direction(recs)
    keep = {}
    for r, th in zip(batch, thetas):
        if r["stop_reason"] != Outcome.CERTIFIED:
            continue
        k, i = direction_key(r["label"], r["gamma"]), int(r["index"])
        if k not in lowest or i < lowest[k]:
            if th is None:
                raise ValueError(f"start {i} is certified without a polished θ̂")
            lowest[k] = i
            keep[i] = np.asarray(th, dtype=np.float64)
    return keep


def open_store(cfg: StudyConfig, out: Path) -> Lambda0Store:
    """The λ = 0 database of the folder ``out`` (:mod:`landscape.io.lambda0_store`): created for
    ``cfg`` if absent, else opened and checked to hold exactly ``cfg`` (a folder of a λ > 0 study,
    or of an earlier λ = 0 study of another configuration, is refused)."""
    if has_study_database(out):
        raise SpecError(f"{out} holds a λ > 0 study ({FILES['database']}): a λ = 0 study goes into a folder of its own")

    def normalised(stored):   # a configuration stored by an earlier version, as this one reads it
        try:
            return StudyConfig.from_dict(stored).to_dict()
        except (SpecError, TypeError, ValueError, KeyError, AttributeError):
            return stored

    db = out / LAMBDA0_DB
    if not db.exists() and is_lambda0_folder(out):   # a folder written before λ = 0 runs were resumable
        stored = normalised(read_json(out / FILES["summary"]).get("config"))
        if json.loads(json.dumps(stored)) != json.loads(json.dumps(cfg.to_dict())):
            raise SpecError(f"{out} holds a finished λ = 0 study of another configuration: write to another folder")
    return Lambda0Store.open(db, cfg.to_dict(), cfg.model.P, cfg.trajectories, cfg.batch_size, cfg.seed,
                             normalise=normalised, environment=run_environment(cfg))


def run_environment(cfg: StudyConfig) -> dict:
    """The environment a run of ``cfg`` computes in, recorded with every batch it commits: the
    resolved device (``auto`` made concrete), the torch and the landscape versions (the dtype is
    the configuration's own)."""
    return {"device": str(resolve_device(cfg.device)), "torch": torch.__version__, "landscape": __version__}


def run_lambda0_study(cfg: StudyConfig, out_dir: str | Path, *, progress: bool | Callable[[dict], None] = True) -> dict:
    """Run (or resume) the λ = 0 study ``cfg`` into ``out_dir`` (module docstring); return its
    summary (the content of summary.json, ``"kind": "lambda0"``).

    Every batch of starts is committed to ``lambda0.sqlite`` as it finishes
    (:mod:`landscape.io.lambda0_store`), and the hand-off check once it is done: the same call on
    a folder that holds a run of the same configuration computes only what it lacks (a folder of
    another configuration is refused), and its files are those of a run never interrupted (wall
    times apart). ``progress``: True (a bar over the decisions), False, or a callable that
    receives ``{"phase", "done", "total"}`` after each committed batch (an exception it raises,
    e.g. KeyboardInterrupt, stops the run after that commit)."""
    if not cfg.model.unregularised:
        raise SpecError("run_lambda0_study is for λ = 0 (model.lambda = 0)")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    store = open_store(cfg, out)
    bar = None
    try:
        write_json(out / FILES["config"], cfg.to_dict())
        batches, recs, thetas, check = store.read()   # every value checked, the hand-off check too
        st = cfg.lambda0
        if len(batches) < store.n_batches() or (check is None and st.check_starts):
            store.check_environment(batches)   # something left to compute: only where the rest was
        for k, i in _first_of_direction(recs).items():   # before anything is computed
            if i not in thetas:
                raise Lambda0StoreError(f"{store.path}: θ̂ of start {i}, the first of direction {k}, is not stored; "
                                        "refused (move the file away to recompute)")
        if progress is True:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.trajectories + st.check_starts, initial=len(recs) + (st.check_starts if check else 0),
                       desc=f"{cfg.name} λ=0 decisions", unit="start")
        report = progress if callable(progress) else (lambda e: None)
        tick = (lambda k: bar.update(k)) if bar is not None else (lambda k: None)
        for b in range(store.n_batches()):
            if b in batches:
                continue
            idx = list(range(*store.batch_range(b)))
            dyn = run_dynamics(cfg, idx)
            t, flow_before = time.perf_counter(), dyn.flow_s
            r, th = _start_records(cfg, idx, dyn, tick)
            seconds = {"descent_s": dyn.descent_s, "margin_flow_s": dyn.flow_s,
                       "decide_s": time.perf_counter() - t - (dyn.flow_s - flow_before)}
            keep = _same_direction_first(recs, r, th)
            for text in store.commit_batch(b, r, keep, seconds):
                rec = json.loads(text)   # what a resumed run reads back: both go on from the same values
                recs[rec["index"]] = rec
            thetas.update(keep)
            batches[b] = Lambda0Batch(b, idx[0], idx[-1] + 1, *seconds.values(), **store.environment)
            report({"phase": "trajectories", "done": len(recs), "total": cfg.trajectories})
        ordered = [recs[i] for i in range(cfg.trajectories)]
        directions = _assign_directions(ordered, [thetas.get(i) for i in range(cfg.trajectories)])
        for d in directions:
            if d["theta"] is None:
                raise Lambda0StoreError(f"{store.path}: θ̂ of start {d['first']}, the first of direction {d['id']} "
                                        f"({d['label']}), is not stored; refused (move the file away to recompute)")
        if check is None and st.check_starts:
            t = time.perf_counter()
            check = json.loads(json.dumps(_check(cfg, ordered, tick), default=json_default, allow_nan=True))
            store.commit_check(check, time.perf_counter() - t)
        timings = {k: sum(getattr(b, k) for b in batches.values()) for k in ("descent_s", "margin_flow_s", "decide_s")}
        environments = batch_environments(batches)
        if check is not None:
            timings["check_s"] = store.check_seconds() or 0.0
    finally:
        if bar is not None:
            bar.close()
        store.close()
    summary = summarise(cfg, ordered, directions, check)
    arrays = {f"direction-{d['id']}": np.asarray(d["theta"], dtype=np.float64) for d in directions}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(out / LAMBDA0_FILES["directions"], buf.getvalue())
    write_json(out / LAMBDA0_FILES["starts"], {"kind": KIND, "keys": list(START_KEYS), "starts": ordered})
    summary.update(environment=environment(str(resolve_device(cfg.device))), batch_environments=environments,
                   timings=timings,
                   wall_time_s=time.perf_counter() - t_start,
                   files={"config": FILES["config"], "summary": FILES["summary"], **LAMBDA0_FILES})
    write_json(out / FILES["summary"], summary)
    return summary


def prevalence_row(cell, summary: Mapping | Lambda0Summary, confidence: float = 0.95) -> dict:
    """A sweep's prevalence row (:func:`landscape.study.sweep.prevalence_row`, the same keys) from a
    λ = 0 cell's summary: fractions over all the cell's starts, a certified direction counting as
    its label, every other end as uncertified by its stop reason; the logits' rank and the
    distinct points from the certified directions."""
    r = summary if isinstance(summary, Lambda0Summary) else Lambda0Summary.from_summary(summary)
    n = r.n_trajectories
    by_label = r.label_counts()
    reasons = {k: v for k, v in r.stop_reasons.items() if k != Outcome.CERTIFIED and v}
    ranks = {str(k): v for k, v in r.logit_rank_counts().items()}
    n_ranked = sum(ranks.values())
    dnc = proportion(by_label.get(DNC.name, 0), n, confidence)
    unc = proportion(sum(reasons.values()), n, confidence)
    ci = {lab: proportion(c, n, confidence) for lab, c in by_label.items()}
    return {"cell": cell.name, **cell.overrides, "n_trajectories": n, "logit_rank_counts": ranks,
            "uncertified_by_reason": reasons, "unseen_mass": None, "wall_time_s": r.wall_time_s,
            "trajectory_time_s": None, "check": {},
            **{f"ci_low_{lab}": v["ci_low"] for lab, v in ci.items()},
            **{f"ci_high_{lab}": v["ci_high"] for lab, v in ci.items()},
            **{f"dnc_{k}": v for k, v in dnc.items()}, **{f"uncertified_{k}": v for k, v in unc.items()},
            "mean_logit_rank": sum(int(k) * c for k, c in ranks.items()) / n_ranked if n_ranked else float("nan"),
            "n_distinct_points": len(r.directions), "dynamics": r.dynamics,
            **{f"count_{lab}": c for lab, c in by_label.items()},
            **{f"frac_{lab}": c / n for lab, c in by_label.items()}}


# ----- printing ------------------------------------------------------------------------------------
def _pct(x) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def summary_text(summary: Mapping | Lambda0Summary) -> str:
    """The lines ``landscape run`` (and ``landscape inspect``) print about a λ = 0 study (its
    summary dict or :class:`~landscape.study.lambda0_summary.Lambda0Summary`)."""
    s = summary if isinstance(summary, Lambda0Summary) else Lambda0Summary.from_summary(summary)
    n, c, nc = s.n_trajectories, s.certified, s.nc
    lines = [f"λ = 0 study {s.study}: {n} starts ({s.dynamics})",
             "ends: " + ", ".join(f"{k} {v}" for k, v in s.stop_reasons.items() if v),
             f"certified {c.count} of {n} ({_pct(c.fraction)} [{_pct(c.ci_low)}, {_pct(c.ci_high)}]); "
             f"NC (label {s.nc_label}) {nc.count} of {c.count} certified: {_pct(nc.fraction)} "
             f"[{_pct(nc.ci_low)}, {_pct(nc.ci_high)}] (95% Wilson)"]
    if s.certified_after_extension:
        lines.append(f"certified after more margin-flow rounds ([lambda0] extend_rounds): {s.certified_after_extension}")
    lines.append(f"closed forms: γ_NC = {s.nc_code_margin:.10g}"
                 + (f", γ_pairs = {s.pairs_code_margin:.10g}" if s.pairs_code_margin else ""))
    for d in s.directions:
        ref = (f"; closed form {d.closed_form_gamma:.10g}, rel. error {d.closed_form_rel_error:.1e}"
               if d.closed_form else "")
        sh = d.starts
        lines.append(f"  direction {d.id}: {d.label}, γ = {d.gamma:.10g}, support {d.support_size}, "
                     f"rank {d.z_rank}: {d.starts.count} starts ({_pct(sh.fraction)} [{_pct(sh.ci_low)}, "
                     f"{_pct(sh.ci_high)}]){ref}")
    g, g2 = s.gamma.get("rel_change"), s.gamma.get("rel_change_stable")
    by = s.certified_by_rule
    if g:
        lines.append(f"polish (strict rule, {by.get('strict', g.n)} starts): γ rose by {g.min:.2g} … {g.max:.2g} "
                     f"(median {g.median:.2g}) relative to the end's balanced logits (bound {s.gamma_rtol:g})")
    if g2:
        lines.append(f"polish (stable rule, {by.get('stable', g2.n)} starts whose end had not settled; the polish "
                     f"from the flow's midpoint reaches the same direction): γ rose by {g2.min:.2g} … {g2.max:.2g}")
    if s.check:
        lines.append(f"hand-off check ({s.check.dynamics}): {s.check.agree} of {s.check.certified_main} certified ends "
                     f"agree with the {s.check_factor}× longer runs (same label {s.check.same_label})")
    if s.not_run:
        lines.append("not run at λ = 0: " + ", ".join(s.not_run))
    return "\n".join(lines)


# ----- a finished folder ------------------------------------------------------------------------------
@dataclass
class Lambda0Result:
    """A λ = 0 study's results folder: what :func:`landscape.run_study` returns for a λ = 0 study
    and what :func:`landscape.load_results` returns for a λ = 0 folder. ``summary`` (summary.json,
    ``"kind": "lambda0"``; :meth:`text` prints it); :attr:`starts`, every start's record
    (directions.json, the keys of :data:`START_KEYS`, in start order); :attr:`directions`, the
    distinct certified directions with their θ̂
    (:class:`~landscape.io.lambda0_results.Lambda0Direction`). ``starts`` and ``directions`` are
    read from the folder when first used, each value checked (a folder is untrusted input;
    :mod:`landscape.io.lambda0_results` reads it; :meth:`load` reads and checks everything at
    once)."""

    folder: Path
    summary: dict
    _starts: list | None = field(default=None, repr=False, compare=False)
    _directions: list | None = field(default=None, repr=False, compare=False)

    @classmethod
    def load(cls, folder: str | Path) -> "Lambda0Result":
        """The finished λ = 0 folder ``folder``, read and checked: summary.json (the types of
        every number and id), directions.json (every record's keys and types, the starts 0 … n−1
        in order, each certified start's direction one of the summary's, the counts the
        summary's) and directions.npz (exactly one θ̂ of P finite float64 values per direction,
        no pickles, bounded sizes). A refused file is a ValueError naming it."""
        res = cls(Path(folder), read_lambda0_summary(folder))
        res.directions   # noqa: B018  (reads and checks starts and directions)
        return res

    @property
    def n_trajectories(self) -> int:
        return int(self.summary["n_trajectories"])

    @property
    def P(self) -> int:
        return model_parameters(self.summary["config"]["model"])

    @property
    def config(self) -> StudyConfig:
        """The study's configuration (summary.json ``config``)."""
        return StudyConfig.from_dict(self.summary["config"])

    @property
    def starts(self) -> list[dict]:
        if self._starts is None:
            self._starts = read_lambda0_starts(self.folder, self.summary)
        return self._starts

    @property
    def directions(self) -> list[Lambda0Direction]:
        if self._directions is None:
            self._directions = read_lambda0_directions(self.folder, self.summary, self.starts)
        return self._directions

    def direction(self, direction_id: int) -> Lambda0Direction:
        for d in self.directions:
            if d.id == int(direction_id):
                return d
        raise KeyError(f"no direction with id {direction_id} in {self.folder / FILES['summary']}")

    @property
    def wall_time_s(self) -> float:
        return float(self.summary.get("wall_time_s", 0.0))

    @property
    def timings(self) -> dict:
        return dict(self.summary.get("timings", {}))

    @property
    def result(self) -> Lambda0Summary:
        """The typed view of summary.json (:class:`~landscape.study.lambda0_summary.Lambda0Summary`:
        certified and NC shares with intervals, the directions with their closed forms, γ's
        quantiles, the hand-off check), as ``load_results(folder).result`` is for a study at λ > 0."""
        return Lambda0Summary.from_summary(self.summary)

    def text(self) -> str:
        return summary_text(self.result)
