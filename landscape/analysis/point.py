"""What a critical point is: one entry point combining Hessian, structure and theory.

:func:`analyse_point` runs :func:`landscape.analysis.hessian.analyse_hessian` (index, nullity,
symmetry and excess zero modes, type), :func:`landscape.analysis.structure.analyse_structure`
(ranks, DNC metrics, Z̄, label) and, for the linear CE model, matches the point to the
closed-form structure of the same block pattern (:func:`landscape.analysis.theory.match_structure`,
with the effective λ of :func:`landscape.analysis.theory.effective_lambda`); a point whose logits
read as the SRG structure (``srg(r)``, :func:`landscape.analysis.structure.match_srg_block`) is
matched, for ReLU MSE, to :func:`landscape.analysis.srg.srg_solution` (:func:`srg_match`). Every threshold used
(:class:`~landscape.analysis.settings.AnalysisSettings`) is stored with the result, once.

A point's **kind** (:data:`POINT_KINDS`, what a study stores): ``minimum``, ``saddle``,
``degenerate`` (index 0 with excess zero modes) or ``unverified`` (the analysis could not verify
itself: a Lanczos run did not converge, or the symmetry tangents are not Hessian null vectors;
never counted as a minimum).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..core.jsonsafe import json_float
from ..core.model import DeepUFM, ModelSpec, as_theta64
from ..core.spec import require_regularised
from . import theory
from .hessian import HessianReport, analyse_hessian
from .kinks import KinkReport, active_set, analyse_kinks
from .labels import ZERO
from .settings import AnalysisSettings
from .srg import srg_rank_pattern, srg_refusal, srg_solution
from .structure import StructureReport, analyse_structure

#: Inputs a HessianReport echoes, stored once under the point's ``thresholds`` instead.
_SETTING_KEYS = ("tau_rel", "noise_mult", "symmetry_rtol", "lanczos_tol", "lanczos_seed", "dense_limit")
#: Kinds of analysed points (module docstring).
POINT_KINDS = ("minimum", "saddle", "degenerate", "unverified")
#: Kind of each :data:`landscape.analysis.hessian.TYPES` value (for verified points).
KIND_OF_TYPE = {"minimum": "minimum", "saddle": "saddle", "degenerate_minimum_or_saddle": "degenerate"}
#: Kind of each :class:`landscape.analysis.kinks.KinkReport` kind.
KIND_OF_KINK = {"minimum": "minimum", "degenerate": "degenerate", "undecided": "degenerate", "saddle": "saddle",
                "not stationary": "unverified"}
#: Kinds that are minima for the basin graph, the disconnectivity tree and the unseen mass:
#: minima, and index-0 points whose second order cannot decide.
LEAF_KINDS = ("minimum", "degenerate")


@dataclass
class PointAnalysis:
    """Analysis of one point θ (P,): ``loss``, ``grad_norm`` (Euclidean), the :class:`HessianReport`
    ``hessian``, the :class:`StructureReport` ``structure``, the theory ``match`` (dict, or None
    outside the linear CE model and the SRG structure, :func:`theory_match`) and the ``settings``
    used."""

    spec: ModelSpec
    loss: float
    grad_norm: float
    hessian: HessianReport
    structure: StructureReport
    match: dict | None
    settings: AnalysisSettings = AnalysisSettings()
    kinks: KinkReport | None = None

    @property
    def kind(self) -> str:
        """The point's kind (:data:`POINT_KINDS`). On ReLU kinks (``kinks`` set) it is decided on the
        kink manifold (:mod:`landscape.analysis.kinks`): a saddle there is a saddle; index 0 whose
        second order across the kinks is undecided is ``degenerate`` (never a minimum); a point that
        is not Clarke-stationary on its active set is ``unverified``."""
        if self.kinks is not None:
            return KIND_OF_KINK[self.kinks.kind]
        return KIND_OF_TYPE[self.hessian.type] if self.hessian.verified else "unverified"

    @property
    def spectrum(self) -> np.ndarray:
        """Hessian eigenvalues, ascending: all P (``spectrum_kind == 'full'``) or the union of the
        Lanczos subsets (``'lanczos_subsets'``, see ``hessian.parts``)."""
        return self.hessian.spectrum

    @property
    def spectrum_kind(self) -> str:
        return "full" if self.hessian.method == "dense" else "lanczos_subsets"

    @property
    def singular_values(self) -> dict:
        """{layer name: singular values, descending} for every entry of the rank pattern."""
        return self.structure.singular_values()

    @property
    def label(self) -> str:
        return self.structure.label

    def to_dict(self) -> dict:
        """JSON-safe summary: the headline fields at top level, full sub-reports below, and every
        threshold once under ``thresholds`` (the settings plus the τ actually used)."""
        h, s = self.hessian, self.structure
        m = None
        if self.match is not None:
            m = {k: (v.tolist() if isinstance(v, np.ndarray) else json_float(v) if isinstance(v, float) else v)
                 for k, v in self.match.items()}
        return {
            "label": s.label, "pattern": s.pattern, "rank_pattern": list(s.rank_pattern),
            "rank_names": list(s.rank_names), "kind": self.kind, "index": h.index, "nullity": h.nullity,
            "symmetry_zero_modes": h.symmetry_zero_modes, "excess_zero_modes": h.excess_zero_modes,
            "type": h.type, "strict": h.strict, "description": h.description,
            "verified": h.verified, "lanczos_converged": h.lanczos_converged,
            "symmetry_verified": h.symmetry_verified, "index_is_lower_bound": h.index_is_lower_bound,
            "smallest_nonzero_eigenvalue": json_float(h.smallest_nonzero_eigenvalue), "tau": h.tau,
            "loss": self.loss, "grad_norm": self.grad_norm, "spectrum_kind": self.spectrum_kind,
            "dnc": [lm.to_dict() for lm in s.layers], "Zbar": s.Zbar.tolist(), "theory": m,
            "hessian": {k: v for k, v in h.to_dict().items() if k not in _SETTING_KEYS},
            "structure": {k: v for k, v in s.to_dict().items() if k != "thresholds"},
            "thresholds": {**self.settings.kwargs(), "tau": h.tau, "tau_source": h.tau_source,
                           "lanczos_k_used": h.lanczos_k},
            "kinks": None if self.kinks is None else self.kinks.to_dict(),
            **({} if self.kinks is None else {   # on kinks, the second order is the manifold's
                "index": self.kinks.index, "nullity": self.kinks.nullity,
                "symmetry_zero_modes": self.kinks.gauge_zero_modes,
                "excess_zero_modes": self.kinks.excess_zero_modes, "description": self.kinks.reason}),
        }

    def format_text(self) -> str:
        """Human-readable multi-line description (used by ``landscape inspect``)."""
        return format_analysis(self.to_dict(), self.spec.P)


def fmt_or_dash(v, fmt: str = ".3g") -> str:
    """``format(v, fmt)``, or "-" for a missing value."""
    return "-" if v is None else format(v, fmt)


def format_analysis(a: dict, P: int) -> str:
    """Human-readable multi-line description of a point from its :meth:`PointAnalysis.to_dict`
    ``a`` (as stored in a study database) and its parameter count P."""
    h, s = a["hessian"], a["structure"]
    lines = [f"label: {a['label']}" + (f"   (block pattern {a['pattern']})"
                                       if a.get("pattern") and a["pattern"] != a["label"] else ""),
             f"loss {a['loss']:.10g}   |grad| {a['grad_norm']:.3e}"]
    ranks = s["ranks"]
    gaps = [r["gap"] for r in ranks.values() if r["rank"] and r["gap"] is not None]
    lines.append("rank pattern: " + " ".join(f"{k}={ranks[k]['rank']}" for k in a["rank_names"])
                 + f"   (rank_rtol {a['thresholds']['rank_rtol']:g}; smallest justifying gap "
                 + (f"{min(gaps):.3g})" if gaps else "-)"))
    lines.append(f"Hessian ({h['method']}, P={P}): index {h['index']}{'+' if h['index_is_lower_bound'] else ''}, "
                 f"nullity {h['nullity']}{'+' if h['nullity_is_lower_bound'] else ''} = {h['symmetry_zero_modes']} "
                 f"symmetry + {h['excess_zero_modes']} excess; τ = {h['tau']:.3g} ({h['tau_source']})")
    lines.append(f"  type: {h['type']} — {h['description']}")
    sn = h["smallest_nonzero_eigenvalue"]
    lines.append(f"  smallest non-zero eigenvalue {sn:.6g}" if sn is not None else
                 "  smallest non-zero eigenvalue: none found")
    lines.append(f"  symmetry modes: max‖Hq‖ = {h['symmetry_residual']:.3e} "
                 f"({'verified' if h['symmetry_verified'] else 'NOT below τ'})")
    if h["method"] == "lanczos":
        lines.append(f"  Lanczos: {'converged' if h['lanczos_converged'] else 'NOT converged'}"
                     + ("; index is a lower bound (k eigenvalues all negative)" if h["index_is_lower_bound"] else ""))
    if not h.get("verified", True):
        lines.append("  UNVERIFIED: the analysis could not verify this point; it never counts as a minimum")
    lines.append("collapse metrics (layer: DNC1, DNC1 trace ratio, DNC2 ETF, DNC2 OF, |μG| ratio, DNC3):")
    for m in a["dnc"]:
        e = [fmt_or_dash(m[k], ".2e") for k in ("dnc1", "dnc1_trace_ratio", "dnc2_etf", "dnc2_of", "global_mean_ratio")]
        lines.append(f"  {m['name']:>5}: {e[0]} (r={m['dnc1_rank']}) {e[1]} {e[2]} {e[3]} {e[4]} "
                     + (f"{m['weight']}: {fmt_or_dash(m['dnc3'], '.2e')}" if m["weight"] else ""))
    lines.append("class-mean logits Z̄ (column c = class c):")
    lines += ["  " + " ".join(f"{x:9.4f}" for x in row) for row in a["Zbar"]]
    t = a.get("theory")
    if t is None:
        lines.append("theory: no closed forms for this model (linear CE only, and the SRG structure)")
    elif not t.get("matched"):
        lines.append(f"theory: no match ({t.get('reason')})")
    if s.get("description"):
        d = s["description"]
        lines.append(f"unnamed structure: Z̄ rank {d['z_rank']}, {'one scale' if d['one_scale'] else 'several scales'} "
                     f"(relative singular values {', '.join(f'{x:.4g}' for x in d['z_singular_values'])}); blocks "
                     f"{d['block_sizes']}; classes sharing a direction {d['shared_directions'] or 'none'}; "
                     f"normalised Gram values {', '.join(f'{x:.4g}' for x in d['gram_values'])}"
                     f" ({'the same counts for every class' if d['regular'] else 'counts differ between classes'})")
    if t is not None and t.get("matched"):
        scales = (" at scales " + ", ".join(f"{x:.6g}" for x in t["scales"])) if t["scales"] else ""
        lines.append(f"theory: {t['kind']} match to {t['pattern']}{scales}; theory loss {t['loss']:.10g}, "
                     f"difference {t['loss_difference']:.3e}"
                     + ("" if t["rank_pattern_consistent"] else "; rank pattern differs from theory's"))
    lines.append("thresholds: " + ", ".join(f"{k}={v}" for k, v in sorted(a["thresholds"].items())))
    return "\n".join(lines)


def srg_match(spec: ModelSpec, structure: StructureReport, loss: float) -> dict:
    """The closed-form match of a point with an SRG block (``kind`` 'srg').

    For ReLU MSE with one SRG block holding all K classes: the SRG critical point of the spec
    (:func:`landscape.analysis.srg.srg_solution`): its ``loss``, ``loss_difference`` = loss − theory
    loss, ``scales`` (theory z₀, z₁, z₂) beside ``scales_observed`` (the block's), ``scale_rel_error``
    = max_i |z_obs/z_th − 1|, ``beta``, ``T``, ``Zbar`` (the theory's, in the point's class order via
    the block's class ↔ edge map) and ``Zbar_rel_error``; ``matched`` when |loss_difference| ≤
    :data:`landscape.analysis.theory.MATCH_LOSS_ATOL` and ``scale_rel_error`` ≤
    :data:`~landscape.analysis.theory.MATCH_SCALE_RTOL`. ``rank`` is K (Z's);
    ``rank_pattern_consistent`` compares the rank pattern with the SRG point's (r up to H_L, K from
    σH_L on: :func:`landscape.analysis.srg.srg_rank_pattern`). Otherwise (CE, linear, L < 3, an SRG
    block beside other blocks) the structure is named with ``matched`` False and a ``reason``: no
    closed form is derived there."""
    K = spec.K
    srg = [b for b in structure.blocks if b.kind == "srg"]
    b = srg[0]
    name = structure.pattern or b.block_type.name
    base = {"kind": "srg", "pattern": name, "rank": K, "scales_observed": list(b.scales),
            "tolerances": {"loss_atol": theory.MATCH_LOSS_ATOL, "scale_rtol": theory.MATCH_SCALE_RTOL}}
    if len(srg) != 1 or len(b.classes) != K:
        return dict(base, matched=False, rank_pattern_consistent=False,
                    reason=f"{name}: an SRG block on {len(b.classes)} of the K={K} classes; no closed form "
                           "derived (the SRG structure's closed form holds all K = C(r,2) classes)")
    why = srg_refusal(spec)
    if why is not None:
        return dict(base, matched=False, rank_pattern_consistent=False,
                    reason=f"{name}: no closed form derived for this member ({why})")
    sol = srg_solution(spec)
    if sol is None:
        return dict(base, matched=False, rank_pattern_consistent=False,
                    reason=f"{name}: the SRG structure has no stationary scale at this λ")
    z_obs = np.asarray(b.scales, dtype=np.float64)
    rel = float(np.max(np.abs(z_obs / sol.z - 1.0)))
    order = list(b.order)
    Zth = np.zeros((K, K))
    Zth[np.ix_(order, order)] = sol.Zbar
    want = srg_rank_pattern(spec)
    out = dict(base, scales=[float(x) for x in sol.z], loss=sol.loss, loss_difference=loss - sol.loss,
               scale_rel_error=rel, beta=sol.beta, T=sol.T, Zbar=Zth,
               Zbar_rel_error=float(np.linalg.norm(structure.Zbar - Zth) / np.linalg.norm(Zth)),
               rank_pattern_consistent=bool(all(want.get(k) == structure.ranks[k].rank for k in structure.rank_names)))
    out["matched"] = bool(abs(out["loss_difference"]) <= theory.MATCH_LOSS_ATOL and rel <= theory.MATCH_SCALE_RTOL)
    if not out["matched"]:
        out["reason"] = (f"the SRG closed form differs: loss difference {out['loss_difference']:.3e}, "
                         f"scale error {rel:.3e}")
    return out


def theory_match(spec: ModelSpec, structure: StructureReport, loss: float) -> dict | None:
    """Closed-form structure matching the point (linear CE model, and any member whose logits hold
    an SRG block: :func:`srg_match`; else None).

    ``kind``: 'pattern' (every block recognised: the structure with the same blocks, each scale at its
    nearest stationary root), 'zero' (the origin), 'one-scale' (unrecognised blocks but one scale:
    the stationary point of the family αM̂ with M̂ read off the point) or 'rank' (otherwise: the
    catalogued structure of the same rank with the nearest loss). ``matched`` is True only when the
    closed-form loss (and scales) agree with the point to :data:`landscape.analysis.theory.MATCH_LOSS_ATOL`
    (:data:`~landscape.analysis.theory.MATCH_SCALE_RTOL`); otherwise the record describes the
    nearest structure, with a ``reason``. ``rank_pattern_consistent``: the point's rank pattern
    equals the theory's (every factor and Z of rank r)."""
    if any(b.kind == "srg" for b in structure.blocks):
        return srg_match(spec, structure, loss)
    if spec.activation != "linear" or spec.loss != "ce":
        return None
    K, n, L = spec.K, spec.n, spec.L
    lam = theory.effective_lambda(spec)
    if structure.label == ZERO.name:
        out = {"matched": True, "kind": "zero", "pattern": ZERO.name, "scales": [], "loss": float(np.log(K)),
               "loss_difference": loss - float(np.log(K)), "scale_rel_error": 0.0, "rank": 0}
    elif structure.pattern is not None and "self" not in structure.pattern:
        blocks = [(b.cycle, b.scales, b.block_type) if b.kind in ("antiprism", "capped_antiprism")
                  else (b.classes, b.scale, b.block_type)
                  for b in structure.blocks if b.block_type is not None]
        out = dict(theory.match_structure(blocks, loss, K, n, L, lam), kind="pattern")
        if "Zbar" not in out:
            return out
        if any(b.kind == "subsets" for b in structure.blocks):  # classes in the type's order: compare invariants
            sv = lambda A: np.linalg.svd(A, compute_uv=False)  # noqa: E731
            out["Zbar_rel_error"] = float(np.linalg.norm(sv(structure.Zbar) - sv(out["Zbar"])) / np.linalg.norm(out["Zbar"]))
        else:
            out["Zbar_rel_error"] = float(np.linalg.norm(structure.Zbar - out["Zbar"]) / np.linalg.norm(out["Zbar"]))
    elif structure.description is not None and structure.description["one_scale"]:
        d = structure.description
        s1 = float(np.linalg.svd(structure.Zbar, compute_uv=False)[0])
        cf = theory.one_scale_closed_form(structure.Zbar / s1, d["z_rank"], s1, K, n, L, lam)
        if cf is None:
            return {"matched": False, "kind": "one-scale", "reason": "no stationary scale along αM̂ near the point"}
        a, th_loss = cf
        out = {"kind": "one-scale", "pattern": f"one-scale rank-{d['z_rank']} structure (Z̄ = αM̂, M̂ read off the point)",
               "scales": [a], "loss": th_loss, "loss_difference": loss - th_loss, "scale_rel_error": abs(s1 / a - 1),
               "rank": d["z_rank"]}
        out["matched"] = bool(abs(out["loss_difference"]) <= theory.MATCH_LOSS_ATOL
                              and out["scale_rel_error"] <= theory.MATCH_SCALE_RTOL)
        if not out["matched"]:
            out["reason"] = f"the one-scale family's stationary point differs: loss difference {out['loss_difference']:.3e}"
    else:
        r = structure.ranks["Z"].rank
        same = [c for c in theory.structure_catalogue(K, n, L, lam) if c.rank == r and c.critical]
        if not same:
            return {"matched": False, "kind": "rank", "reason": f"no catalogued structure of rank {r}"}
        best = min(same, key=lambda c: abs(c.loss - loss))
        out = {"kind": "rank", "pattern": best.pattern, "scales": list(best.scales),
               "loss": best.loss, "loss_difference": loss - best.loss, "rank": r}
        out["matched"] = bool(abs(out["loss_difference"]) <= theory.MATCH_LOSS_ATOL)
        if not out["matched"]:
            out["reason"] = (f"nearest catalogued structure of rank {r} is {best.pattern}, loss difference "
                             f"{out['loss_difference']:.3e}")
    out["rank_pattern_consistent"] = bool(all(x == out["rank"] for x in structure.rank_pattern))
    out["lambda_effective"] = lam
    return out


def analyse_point(spec: ModelSpec, theta, settings: AnalysisSettings | None = None, *, device="cpu",
                  **overrides) -> PointAnalysis:
    """Analyse one point θ, a float64 torch tensor or numpy array of shape (P,), in float64.

    ``settings`` (default :class:`AnalysisSettings`()) with any field overridden by keyword, e.g.
    ``analyse_point(spec, θ, dense_limit=10, lanczos_k=6)``. ``device``: where the Hessian-vector
    products and the Hessian are computed.
    """
    require_regularised(spec, "analyse_point", "it analyses a critical point: its Hessian threshold τ = "
                        "tau_rel·min λ and the closed forms it matches are those of λ > 0")
    settings = AnalysisSettings(**{**(settings or AnalysisSettings()).kwargs(), **overrides})
    th = as_theta64(spec, theta)
    spec64 = spec.as_float64()
    loss, grad = DeepUFM(spec64).loss_and_grad(th)
    h = analyse_hessian(spec64, th, device=device, **settings.hessian_kwargs())
    s = analyse_structure(spec64, th, **settings.structure_kwargs())
    gnorm, kinks = float(grad.norm()), None
    if spec.activation == "relu":
        aset = active_set(spec64, th)
        if aset.size:   # a point on ReLU kinks: first and second order on its kink manifold
            kinks = analyse_kinks(spec64, th, aset)
            gnorm = kinks.projected_gradient
    return PointAnalysis(spec, float(loss), gnorm, h, s, theory_match(spec64, s, float(loss)), settings, kinks)
