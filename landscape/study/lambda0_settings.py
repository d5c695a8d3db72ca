"""The ``[lambda0]`` table of a study: how a λ = 0 study decides where its trajectories go.

Validation only (no torch), so a study file is checked without importing it; the study itself
is :mod:`landscape.study.lambda0`. The table is read for every study and used only where the
model has λ = 0 (:attr:`landscape.core.spec.ModelSpec.unregularised`); it is written to a
study's configuration only when the model has λ = 0 or the file sets it, so configurations of
λ > 0 studies read back unchanged.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..core.validate import SpecError, check_choice, check_fields, check_int, check_number

#: The decision rules of ``[lambda0] rule``.
RULES = ("strict", "stable")
#: Most rounds ``[lambda0] extend_rounds`` allows (each one a further continue_iter/2 flow steps).
MAX_EXTEND_ROUNDS = 100


@dataclass(frozen=True)
class Lambda0Settings:
    """The ``[lambda0]`` table (MODEL.md §11; :mod:`landscape.study.lambda0` for the procedure).

    * ``continue_iter``: steps of the *margin flow* after the study's descent: the adaptive
      Dormand–Prince integrator on log L(θ) (the gradient flow of L, time reparametrised, so the
      same path: dθ/ds = −∇L/L), which follows the descent's path to margins of thousands, where
      float64 cannot represent the loss any more; 0: the descent's end is decided as it is.
      ``continue_rtol``: its relative error tolerance per step.
    * ``support_rtol``: at the end, a margin constraint is in the support when its margin is at
      most (1 + support_rtol)·(smallest margin).
    * ``label_rtol``: the structure table's pattern and collapse tolerances when the end is
      labelled (the polished direction is labelled at the study's ``[analysis]`` tolerances).
    * ``kkt_tol``: a polished direction is a KKT point when its relative stationarity residual
      (:func:`landscape.analysis.margins.kkt_certificate`) is at most this.
    * ``gamma_rtol``: the faithfulness bound on the polish: 0 ≤ (γ_polished − γ_end)/γ_polished
      ≤ gamma_rtol, γ_end the normalised margin of the end's logits at their balanced
      factorisation (up to 1e-9 below 0 for round-off).
    * ``curvature_tol``: second order: an eigenvalue of the Lagrangian's Hessian on the tangent
      space of the support below −curvature_tol is a negative direction (a saddle of the margin;
      the Hessian is I − Σμ∇²m at unit margin, of order one).
    * ``rule``: ``strict`` (certified only as above) or ``stable``: an end that the strict rule
      leaves ``direction_unsettled`` is certified when the polish from the margin flow's midpoint
      (after ``continue_iter``/2 steps) reaches the same direction (label, γ, support) as the
      polish from the end, that direction is a certified KKT point and a local maximum of the
      margin, and the polish climbed from both (γ ≥ γ_end): the direction the path is headed to
      stopped changing over the last half of the flow, though the path itself is still far from
      it (from an O(1) start the logits' direction converges like ‖θ‖⁻¹ ∝ m^{−1/(L+1)}, m the
      smallest margin, because 1ᵀW_L and the imbalance are conserved). Needs continue_iter ≥ 2.
    * ``extend_rounds``: an end the rule leaves uncertified while the flow may still settle it
      (``direction_unsettled``, ``margin_saddle`` or ``kkt_unconverged``) flows ``continue_iter``/2
      more steps and is decided again, the end it flowed from now its midpoint (the same window
      as the first decision); up to ``extend_rounds`` times. The first decision that certifies
      stands; an end still uncertified after the last round keeps that round's reason. A start's
      ``continue_iterations`` count every step it flowed. 0: no extension. Needs
      continue_iter ≥ 2.
    * ``check_starts``, ``check_factor``: the first ``check_starts`` starts are run again with
      every descent stage's ``max_iter`` × ``check_factor`` and decided the same way; the summary
      reports how often both decisions agree (the hand-off's faithfulness). 0: no check.
    """

    continue_iter: int = 2000
    continue_rtol: float = 1e-6
    support_rtol: float = 1e-3
    label_rtol: float = 1e-2
    kkt_tol: float = 1e-10
    gamma_rtol: float = 0.05
    curvature_tol: float = 1e-6
    rule: str = "strict"
    extend_rounds: int = 0
    check_starts: int = 0
    check_factor: int = 10

    @classmethod
    def from_dict(cls, d: dict, trajectories: int | None = None) -> "Lambda0Settings":
        check_fields("[lambda0]", d, [f.name for f in fields(cls)])
        dflt = cls()
        out = cls(
            continue_iter=check_int("lambda0.continue_iter", d.get("continue_iter", dflt.continue_iter), 0),
            continue_rtol=check_number("lambda0.continue_rtol", d.get("continue_rtol", dflt.continue_rtol), maximum=0.1),
            support_rtol=check_number("lambda0.support_rtol", d.get("support_rtol", dflt.support_rtol), maximum=0.5),
            label_rtol=check_number("lambda0.label_rtol", d.get("label_rtol", dflt.label_rtol), maximum=0.5),
            kkt_tol=check_number("lambda0.kkt_tol", d.get("kkt_tol", dflt.kkt_tol), maximum=1e-4),
            gamma_rtol=check_number("lambda0.gamma_rtol", d.get("gamma_rtol", dflt.gamma_rtol), maximum=1.0),
            curvature_tol=check_number("lambda0.curvature_tol", d.get("curvature_tol", dflt.curvature_tol)),
            rule=check_choice("lambda0.rule", d.get("rule", dflt.rule), RULES),
            extend_rounds=check_int("lambda0.extend_rounds", d.get("extend_rounds", dflt.extend_rounds), 0,
                                    maximum=MAX_EXTEND_ROUNDS),
            check_starts=check_int("lambda0.check_starts", d.get("check_starts", dflt.check_starts), 0),
            check_factor=check_int("lambda0.check_factor", d.get("check_factor", dflt.check_factor), 2))
        if out.rule == "stable" and out.continue_iter < 2:
            raise SpecError(f"lambda0.rule=\"stable\" is invalid with lambda0.continue_iter={out.continue_iter}: the "
                            "stable rule polishes from the margin flow's midpoint too, so it needs continue_iter >= 2")
        if out.extend_rounds and out.continue_iter < 2:
            raise SpecError(f"lambda0.extend_rounds={out.extend_rounds} is invalid with lambda0.continue_iter="
                            f"{out.continue_iter}: a round flows continue_iter/2 more steps, so it needs "
                            "continue_iter >= 2")
        if trajectories is not None and out.check_starts > trajectories:
            raise SpecError(f"lambda0.check_starts={out.check_starts} is invalid: must be at most "
                            f"trajectories={trajectories} (the check reruns main starts)")
        return out

    def to_dict(self) -> dict:
        return asdict(self)
