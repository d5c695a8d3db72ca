"""The λ → 0 limit of a regularised critical point, as a cross-check of the λ = 0 machinery:
:func:`continue_to_limit`.

Rosset, Zhu & Hastie (2004) (and, for deep homogeneous models, Lyu & Li 2020): as the weight decay
λ → 0, the direction θ_λ/‖θ_λ‖ of a regularised minimiser of a separable cross-entropy approaches a
max-margin direction, a KKT point of min ½‖θ‖² s.t. every margin ≥ 1 (MODEL.md §11). This module
follows a certified λ > 0 critical point of the linear CE model down in λ with the pseudo-arclength
follower (:func:`landscape.continuation.continue_in_lambda`, leg by leg), records the normalised margin along the
way, and polishes the last point's direction with the λ = 0 study's own decision
(:func:`landscape.study.lambda0.read_and_polish`), so that the two routes to a max-margin direction
— λ → 0 along the regularised branch, and unregularised descent decided and polished — can be
compared number for number.

**Normalisations.** θ is the flat (P,) parameter vector of :class:`~landscape.core.spec.ModelSpec`
(factors [H₁ (d×N), W₁.. W_{L−1} (d×d), W_L (K×d)], row-major), N = K·n class-ordered samples. The
normalised margin is γ(θ) = min_{i, c≠y_i} (z_{y_i} − z_c) / ‖θ‖^{L+1}
(:func:`landscape.analysis.margins.normalised_margin`): invariant under scale, gauge and class
relabelling. The continuation parameter is ``lambda``: every factor's weight decay scaled together
(their ratios kept, :mod:`landscape.continuation.parameters`).

**What γ does along a branch (derivation).** At a critical point with equal λ on every factor the
factors are balanced (MODEL.md §4): W_{l+1}ᵀW_{l+1} = W_lW_lᵀ, W₁ᵀW₁ = H₁H₁ᵀ, so every factor has
the singular values σ_i(Z)^{1/(L+1)} and ‖θ‖² = (L+1)Σ_i σ_i(Z)^{2/(L+1)}, which is the least ‖θ‖²
of any factorisation of Z (Hölder + AM–GM, :func:`landscape.analysis.margins.code_margin`). Hence

    γ(θ_λ) = code_margin(Z̄_λ)   exactly, at every λ,

the normalised margin of the logit code Z̄_λ (class means; at DNC-type points Z = Z̄ ⊗ 1ₙᵀ) at its
best factorisation: γ along a branch moves only as far as the *shape* of the logit code moves.

* **DNC.** Z_λ = α(λ)·S ⊗ 1ₙᵀ (S = I − 11ᵀ/K) for every λ on the branch, only the scale α moves
  (MODEL.md §6). S has K−1 singular values 1 and all margins 1, so min margin α,
  ‖θ‖² = (L+1)(K−1)(α√n)^{2/(L+1)} and γ(θ_λ) = α/((L+1)(K−1))^{(L+1)/2}/(α√n)
  = 1/(√n((L+1)(K−1))^{(L+1)/2}) = γ_NC, **independent of λ**: an exact oracle at every step.
* **Pairs (K = 2m).** The finite-λ pairs point has logits β(λ)·(pairs code) exactly: a column
  +β on its class, −β on its partner, 0 elsewhere (MODEL.md §6). This is forced, not assumed: the
  class-mean matrices invariant under the pair-preserving permutations with zero column sums are
  M = [[x, y, z, z], [y, x, z, z], …] with x + y + 2z = 0 (K = 4), eigenvalues x − y (twice),
  2(x + y) and 0, so rank m = K/2 forces z = 0 and the shape is the max-margin pairs code itself.
  So γ(θ_λ) = γ_pairs for every λ too: the CE-optimal shape at finite scale does *not* differ
  from the max-margin code. Measured on the committed λ = 2⁻¹⁰ cells (L = 2, 3, 4) and in the
  tests: |γ(θ_λ) − γ_pairs|/γ_pairs ≤ 1e-9 along the whole path (the start's own tolerance), no
  trend in λ.
* **Codes with more than one free scale** (block codes whose blocks have different sizes; e.g.
  K = 5, a simplex(3) block and a pair, :func:`landscape.analysis.theory.block_Zbar`, an index-2
  saddle at L = 2): each block's scale solves its own equation, their ratio depends on λ, and it
  reaches the max-margin ratio (4/3 there; γ* = max over the ratio of the code's γ = 0.0222937162)
  only as λ → 0. There the gap (γ* − γ(θ_λ))/γ* closes like 1/log(1/λ), Rosset et al.'s rate (the
  scales grow like log(1/λ), the ratio's correction is O(1) in the exponent): measured,
  gap·log(1/λ) = 0.176, 0.186, 0.188, 0.1877, 0.1875, 0.1874 at λ = 1e-3, 1e-4, 1e-6, 1e-10,
  1e-12, 1e-16 (the theory's block scales), and the follower's path reproduces those γ, rising
  monotonically. The λ = 0 polish of the last point reaches either that code at its best ratio
  (γ*, the Rosset limit) or, since the direction is not a local maximum of the margin, climbs
  away from it (SLSQP) to another KKT point (which one depends on where the path stopped): the
  limit then does not *agree*, and says why (``disagreement``).

**Legs.** :func:`landscape.continuation.continue_in_lambda` is run from λ₀ to λ₀/r, from there to λ₀/r², …
(r = ``ratio``), down to ``floor``; every leg certifies its points to ‖∇L‖ ≤
min(certify_tol, ``certify_rtol``·λ_target·‖θ‖) — a relative tolerance, since ∇L = O(λ‖θ‖) at
small λ and a fixed absolute one would be met by any point there — but not below the gradient's
round-off floor (:data:`GRAD_FLOOR`, absolute: about 1e-15 measured); the path stops where that
floor exceeds ``max_rel_grad``·λ‖θ‖ (default 1e-6: λ ≈ 1.5e-9 at ‖θ‖ ≈ 7; the recorded γ then
holds to about 1e-8 relative — the round-off in θ_λ moves γ to first order), since below it
"critical" would no longer mean anything. The path stops earlier where a
leg does not reach its target (its ``end`` is reported: the index not resolvable, no step
continues the branch, …). At the last point θ_end, the λ = 0 decision runs unchanged: the
balanced factorisation of its centred logits, rescaled to unit margin, the support and label
there, :func:`~landscape.analysis.margins.polish_direction`, and
:func:`~landscape.analysis.margins.second_order`.

**Agree.** The limit *agrees* when it is certified — KKT residual ≤ ``kkt_tol`` of the λ = 0
settings and no negative direction of the margin (a local maximum) — its label equals the label
of the path's last point, and, where its label has a closed form (NC for DNC, the pairs code for
pairs; :func:`landscape.study.lambda0.closed_form`), |γ_limit − γ_cf|/γ_cf ≤ ``agree_rtol``. The
path's relative gap (γ_ref − γ(θ_λ))/γ_ref is recorded at every accepted λ, against the closed form
(``gap_closed_form``) and against the polished limit (``gap_limit``); ``monotone`` says whether
the latter never grows by more than round-off (max(``MONOTONE_SLACK``, 100·rel_grad): the
gradient's round-off moves γ to first order).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np

from ..analysis import margins as mg
from ..analysis.settings import AnalysisSettings
from ..continuation.arclength import continue_in_lambda
from ..continuation.branch import Branch
from ..continuation.follower import GradientSystem
from ..continuation.parameters import param_value, spec_at
from ..continuation.settings import ContinuationSettings
from ..core.spec import ModelSpec
from ..core.validate import SpecError, check_number
from . import lambda0 as l0
from .lambda0_settings import Lambda0Settings

#: Round-off floor of ‖∇L‖ in float64 (measured ≈ 1e-15 on K = 4, d = 8 points near λ = 1e-6: the
#: data gradient's softmax differences lose digits absolutely, not relative to λ).
GRAD_FLOOR = 1e-14
#: Growth of the relative gap to the limit allowed from one step to the next (round-off).
MONOTONE_SLACK = 1e-9


def check_limit_spec(spec: ModelSpec) -> None:
    """A SpecError, naming the field, unless ``spec`` is the linear CE model with λ > 0 (the λ → 0
    limit is a max-margin direction only there)."""
    if spec.activation != "linear":
        raise SpecError(f"model.activation={spec.activation!r}: the λ → 0 limit (--to 0) is of the linear CE model "
                        "(the max-margin machinery, MODEL.md §11, is of linear logits); continue a ReLU model to a "
                        "small λ > 0 instead")
    if spec.loss != "ce":
        raise SpecError(f"model.loss={spec.loss!r}: the λ → 0 limit (--to 0) is of cross-entropy, where λ → 0 gives a "
                        "max-margin direction; unregularised MSE has a non-compact set of minimisers (MODEL.md §9)")
    if getattr(spec, "unregularised", False):
        raise SpecError("model.lambda=0: this is already λ = 0 (directions, not critical points); the λ → 0 limit "
                        "starts from a λ > 0 critical point")


@dataclass
class LambdaLimit:
    """The result of :func:`continue_to_limit`.

    * ``path``: one record per accepted point, λ descending: the step record of the follower
      (λ, loss, ‖∇L‖, index, nullity, symmetry zero modes, logit scale, Z's singular values,
      label) with ``theta_norm`` ‖θ‖, ``gamma`` γ(θ), ``min_margin``, ``support_size`` (margins
      ≤ (1 + support_rtol)·min margin, the λ = 0 settings' ``support_rtol``), ``gap_closed_form``
      and ``gap_limit`` (relative gaps, module docstring; None without a closed form), ``rel_grad``
      ‖∇L‖/(λ‖θ‖).
    * ``events``: folds and index changes on the way; ``legs``: (target, end, steps) per leg;
      ``end``: why the path stopped (``reached the floor`` or the last leg's end).
    * ``limit``: the polished direction's certificate: ``label``, ``gamma``, ``kkt_residual``,
      ``support_size``, ``margin_negative`` (negative directions of the margin), ``local_max``,
      ``certified``, ``label_end``, ``gamma_end`` (the last point's logits at their balanced
      factorisation), ``polish`` (how), ``excess_zero_modes``.
    * ``closed_form``: (name, γ) for the limit's label, or None; ``agree`` (module docstring)
      and, where it does not, ``disagreement`` (why); ``monotone``; ``theta_limit`` (P,) the polished direction at unit min margin;
      ``theta_end`` (P,) the last followed point."""

    point_id: int | None
    label: str | None
    lambda_start: float
    floor: float
    path: list = field(default_factory=list)
    events: list = field(default_factory=list)
    legs: list = field(default_factory=list)
    end: str = ""
    limit: dict | None = None
    closed_form: tuple | None = None
    agree: bool = False
    agree_rtol: float = 1e-8
    disagreement: str = ""
    monotone: bool | None = None
    theta_limit: np.ndarray | None = None
    theta_end: np.ndarray | None = None

    def summary(self) -> dict:
        """The limit's certificate beside the closed form, and the path's ends (JSON-ready)."""
        p0, p1 = (self.path[0], self.path[-1]) if self.path else ({}, {})
        cf = self.closed_form
        return {"point_id": self.point_id, "label_start": self.label, "lambda_start": self.lambda_start,
                "floor": self.floor, "lambda_end": p1.get("lambda"), "end": self.end, "steps": len(self.path),
                "label_end": p1.get("label"), "gamma_start": p0.get("gamma"), "gamma_end": p1.get("gamma"),
                "gap_limit_start": p0.get("gap_limit"), "gap_limit_end": p1.get("gap_limit"),
                "limit": self.limit, "closed_form": cf[0] if cf else None, "closed_form_gamma": cf[1] if cf else None,
                "limit_rel_error": (abs(self.limit["gamma"] - cf[1]) / cf[1] if cf and self.limit else None),
                "agree": self.agree, "agree_rtol": self.agree_rtol, "disagreement": self.disagreement,
                "monotone": self.monotone}

    def branch(self) -> Branch:
        """The path as a continuation :class:`~landscape.continuation.branch.Branch`: the steps
        with the margin columns, the events and the end (:meth:`to_dict` adds the limit's summary
        under ``limit``, and the legs, for continuation.json)."""
        return Branch(self.point_id, self.label, steps=list(self.path), events=list(self.events), end=self.end)

    def to_dict(self) -> dict:
        d = self.branch().to_dict()
        d.update(limit=self.summary(), legs=self.legs)
        return d

    def text(self, rows: int = 6) -> list[str]:
        """A few lines: the path (about ``rows`` of its points) and the limit beside the closed form."""
        out = []
        n = len(self.path)
        pick = sorted(set(np.linspace(0, n - 1, min(rows, n)).round().astype(int).tolist())) if n else []
        for k in pick:
            s = self.path[k]
            gap = s.get("gap_closed_form") if s.get("gap_closed_form") is not None else s.get("gap_limit")
            out.append(f"  λ={s['lambda']:.3e}  loss {s['loss']:.6e}  ‖θ‖ {s['theta_norm']:.5g}  γ {s['gamma']:.12g}  "
                       f"{s['label']}  support {s['support_size']}  index {s['index']}"
                       + (f"  gap {gap:+.2e}" if gap is not None else ""))
        lim = self.limit
        if lim is None:
            out.append(f"  no limit: {self.end}")
            return out
        cf = self.closed_form
        kind = "local max of the margin" if lim["local_max"] else f"saddle of the margin ({lim['margin_negative']} negative)"
        out.append(f"  limit: {lim['label']}, γ = {lim['gamma']:.12g}, KKT residual {lim['kkt_residual']:.1e}, "
                   f"support {lim['support_size']}, {kind}"
                   + (f"; closed form {cf[0]} γ = {cf[1]:.12g} (rel. error "
                      f"{abs(lim['gamma'] - cf[1]) / cf[1]:.1e})" if cf else "; no closed form for this label")
                   + f"; agree: {'yes' if self.agree else 'no'}")
        return out


def _targets(lam0: float, floor: float, ratio: float) -> list[float]:
    out, lam = [], lam0
    while True:
        lam = lam / ratio
        if lam <= floor * (1 + 1e-12):
            out.append(floor)
            return out
        out.append(lam)


def continue_to_limit(spec: ModelSpec, theta, *, floor: float = 1e-12, ratio: float = 2.0,
                      certify_rtol: float = 1e-9, grad_floor: float = GRAD_FLOOR, max_rel_grad: float = 1e-6,
                      settings: ContinuationSettings = ContinuationSettings(),
                      lambda0=None, analysis=None, agree_rtol: float = 1e-8, point_id: int | None = None,
                      label: str | None = None, progress=None) -> LambdaLimit:
    """Follow the λ > 0 critical point θ (P,) of the linear CE ``spec`` down in λ towards 0 and
    certify the direction it approaches (module docstring).

    ``floor`` (> 0, below the spec's λ): the last target; ``ratio`` (> 1): λ falls by this factor per
    leg; ``certify_rtol``: each leg certifies to ‖∇L‖ ≤ min(settings.certify_tol,
    certify_rtol·λ_target·‖θ‖); ``settings``: the follower's step control (its ``certify_tol`` is
    the cap); ``lambda0`` (:class:`~landscape.study.lambda0_settings.Lambda0Settings`) and
    ``analysis`` (:class:`~landscape.analysis.settings.AnalysisSettings`): the λ = 0 decision's
    tolerances (defaults: the defaults of a study); ``progress(record, events)``: every accepted
    point, as :func:`landscape.continuation.continue_in_lambda`'s. Returns a :class:`LambdaLimit`."""

    check_limit_spec(spec)
    spec64 = spec.as_float64()
    lam_start = param_value(spec64, "lambda")
    floor = check_number("floor", floor)
    if not floor < lam_start:
        raise SpecError(f"floor={floor:g} is invalid: must lie below the start's λ = {lam_start:g}")
    ratio = check_number("ratio", ratio)
    if not ratio > 1:
        raise SpecError(f"ratio={ratio:g} is invalid: must be > 1 (λ falls by this factor per leg)")
    certify_rtol = check_number("certify_rtol", certify_rtol)
    st = lambda0 if lambda0 is not None else Lambda0Settings()
    an = analysis if analysis is not None else AnalysisSettings()
    res = LambdaLimit(point_id, label, lam_start, floor, agree_rtol=agree_rtol)

    last = {"theta": None}
    system = GradientSystem(spec64, "lambda")
    grad_of = system.grad

    def observe(th: np.ndarray, p: float) -> dict:
        last["theta"] = th.copy()
        m = mg.margins(spec64, th).reshape(-1)
        mmin = float(m.min())
        nrm = float(np.linalg.norm(th))
        sup = int(np.sum(m <= mmin + abs(mmin) * st.support_rtol)) if mmin > 0 else 0
        g = float(np.linalg.norm(grad_of(th, p)))
        return {"theta_norm": nrm, "rel_grad": g / (p * nrm) if nrm > 0 else float("nan"), "min_margin": mmin,
                "gamma": mmin / nrm ** (spec64.L + 1) if nrm > 0 else float("nan"), "support_size": sup}

    th = np.asarray(theta.detach().cpu().numpy() if hasattr(theta, "detach") else theta, dtype=np.float64).reshape(-1)
    p = lam_start
    for k, target in enumerate(_targets(lam_start, floor, ratio)):
        scale = target * float(np.linalg.norm(th))   # ∇L = O(λ‖θ‖) near the branch
        if grad_floor > max_rel_grad * scale:
            res.end = (f"stopped at λ={p:.4g}: below it the gradient's round-off ({grad_floor:g}) exceeds "
                       f"max_rel_grad={max_rel_grad:g} of λ‖θ‖, so criticality is not resolvable")
            break
        tol = max(min(settings.certify_tol, certify_rtol * scale), grad_floor)
        leg_settings = replace(settings, certify_tol=tol)
        leg_spec = spec_at(spec64, "lambda", p) if k else spec64
        seen = len(res.path)

        skip = [k > 0]   # a leg's start is the previous leg's end: recorded and heard once

        def hear(rec, events):
            if skip[0]:
                skip[0] = False
                return
            if progress is not None:
                progress(rec, events)

        br = continue_in_lambda(leg_spec, th, param="lambda", to=target, point_id=point_id, label=label,
                                settings=leg_settings, progress=hear, observe=observe)
        steps = br.steps if k == 0 else br.steps[1:]
        res.path += steps
        res.events += br.events
        res.legs.append({"to": target, "end": br.end, "steps": len(steps), "certify_tol": tol})
        if br.end != "reached" or last["theta"] is None:
            res.end = f"stopped at λ={res.path[-1]['lambda']:.4g} on the way to {target:.4g}: {br.end}" if res.path \
                else f"the start was not followed: {br.end}"
            break
        th, p = last["theta"], target
        if len(res.path) == seen:
            res.end = f"no step towards {target:.4g}"
            break
    else:
        res.end = "reached the floor"
    if not res.path:
        return res
    th_end = last["theta"]
    res.theta_end = th_end
    if not res.path[-1]["min_margin"] > 0:
        res.end += f"; the last point does not separate the classes (min margin {res.path[-1]['min_margin']:.3g})"
        return res
    try:
        pol = l0.read_and_polish(spec64, st, an, th_end)
    except l0.POLISH_ERRORS as exc:
        res.end += f"; the λ = 0 polish of the last point failed ({type(exc).__name__}: {exc})"
        res.disagreement = "no limit: the polish failed"
        return res
    cert, so = pol.cert, pol.second
    certified = bool(cert.residual <= st.kkt_tol and not so["negative"])
    res.limit = {"label": pol.label, "gamma": float(cert.gamma), "kkt_residual": float(cert.residual),
                 "support_size": cert.support_size, "margin_negative": int(so["negative"]),
                 "local_max": not so["negative"], "certified": certified, "excess_zero_modes": so["excess_zero_modes"],
                 "label_end": pol.label_end, "gamma_end": float(pol.gamma_end), "support_size_end": int(pol.support_end.size),
                 "polish": pol.how, "kkt_tol": st.kkt_tol}
    res.theta_limit = np.asarray(pol.theta, dtype=np.float64)
    res.closed_form = l0.closed_form(spec64, pol.label)
    g_lim = float(cert.gamma)
    for s in res.path:
        s["gap_limit"] = (g_lim - s["gamma"]) / g_lim
        s["gap_closed_form"] = (res.closed_form[1] - s["gamma"]) / res.closed_form[1] if res.closed_form else None
    res.monotone = bool(all(b["gap_limit"] <= a["gap_limit"] + max(MONOTONE_SLACK, 100 * b["rel_grad"])
                            for a, b in zip(res.path, res.path[1:])))
    why = []
    if not certified:
        why.append(f"not certified (KKT residual {cert.residual:.1e}, {so['negative']} negative direction(s) of the margin)")
    if pol.label != res.path[-1]["label"]:
        why.append(f"the polish reached {pol.label}, the path ends at {res.path[-1]['label']}")
    if res.closed_form is not None and abs(g_lim - res.closed_form[1]) / res.closed_form[1] > agree_rtol:
        why.append(f"γ {g_lim:.10g} is {abs(g_lim - res.closed_form[1]) / res.closed_form[1]:.1e} from the closed form")
    res.disagreement = "; ".join(why)
    res.agree = not why
    return res
