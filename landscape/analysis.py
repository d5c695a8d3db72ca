"""What a critical point is: one entry point combining Hessian, structure and theory.

:func:`analyse_point` runs :func:`landscape.hessian.analyse_hessian` (index, nullity, symmetry and
excess zero modes, type), :func:`landscape.structure.analyse_structure` (ranks, DNC metrics, Z̄,
label) and, for the linear CE model, matches the point to the closed-form structure of the same
block pattern (:func:`landscape.theory.match_structure`, with the effective λ of
:func:`landscape.theory.effective_lambda`). Every threshold used is stored in the result.

Spectra go to a numpy ``.npz`` (:func:`save_spectra`), keyed ``"{id}/spectrum"``,
``"{id}/method"``, ``"{id}/parts/{most_negative|smallest_magnitude|largest}"`` (Lanczos only) and
``"{id}/sv/{layer}"``; :func:`load_spectra` returns them as nested dicts.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import theory
from .hessian import (DEFAULT_DENSE_LIMIT, DEFAULT_LANCZOS_K, DEFAULT_LANCZOS_SEED, DEFAULT_LANCZOS_TOL, DEFAULT_NOISE_MULT, DEFAULT_SYMMETRY_RTOL,
                      DEFAULT_TAU_REL, HessianReport, analyse_hessian)
from .model import DeepUFM, ModelSpec, as_theta64
from .structure import (DEFAULT_COLLAPSE_TOL, DEFAULT_PATTERN_RTOL, DEFAULT_RANK_RTOL, DEFAULT_ZERO_ATOL,
                        StructureReport, _jf, analyse_structure)


@dataclass
class PointAnalysis:
    """Analysis of one point θ (P,): ``loss``, ``grad_norm`` (Euclidean), the :class:`HessianReport`
    ``hessian``, the :class:`StructureReport` ``structure`` and the theory ``match`` (dict, or None
    outside the linear CE model)."""

    spec: ModelSpec
    loss: float
    grad_norm: float
    hessian: HessianReport
    structure: StructureReport
    match: dict | None

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
        """JSON-safe summary: the headline fields at top level, full sub-reports below."""
        h, s = self.hessian, self.structure
        m = None
        if self.match is not None:
            m = {k: (v.tolist() if isinstance(v, np.ndarray) else _jf(v) if isinstance(v, float) else v)
                 for k, v in self.match.items()}
        return {
            "label": s.label, "pattern": s.pattern, "rank_pattern": list(s.rank_pattern),
            "rank_names": list(s.rank_names), "index": h.index, "nullity": h.nullity,
            "symmetry_zero_modes": h.symmetry_zero_modes, "excess_zero_modes": h.excess_zero_modes,
            "type": h.type, "strict": h.strict, "description": h.description,
            "smallest_nonzero_eigenvalue": _jf(h.smallest_nonzero_eigenvalue), "tau": h.tau,
            "loss": self.loss, "grad_norm": self.grad_norm, "spectrum_kind": self.spectrum_kind,
            "dnc": [lm.to_dict() for lm in s.layers], "Zbar": s.Zbar.tolist(), "theory": m,
            "hessian": h.to_dict(), "structure": s.to_dict(),
            "thresholds": {"tau": h.tau, "tau_rel": h.tau_rel, "noise_mult": h.noise_mult,
                           "tau_source": h.tau_source, "symmetry_rtol": h.symmetry_rtol,
                           "dense_limit": h.dense_limit, "lanczos_k": h.lanczos_k, "lanczos_tol": h.lanczos_tol,
                           "lanczos_seed": h.lanczos_seed, **s.thresholds},
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
                 + f"   (rank_rtol {s['thresholds']['rank_rtol']:g}; smallest justifying gap "
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
    lines.append("collapse metrics (layer: DNC1, DNC1 trace ratio, DNC2 ETF, DNC2 OF, |μG| ratio, DNC3):")
    for m in a["dnc"]:
        e = [fmt_or_dash(m[k], ".2e") for k in ("dnc1", "dnc1_trace_ratio", "dnc2_etf", "dnc2_of", "global_mean_ratio")]
        lines.append(f"  {m['name']:>5}: {e[0]} (r={m['dnc1_rank']}) {e[1]} {e[2]} {e[3]} {e[4]} "
                     + (f"{m['weight']}: {fmt_or_dash(m['dnc3'], '.2e')}" if m["weight"] else ""))
    lines.append("class-mean logits Z̄ (column c = class c):")
    lines += ["  " + " ".join(f"{x:9.4f}" for x in row) for row in a["Zbar"]]
    t = a.get("theory")
    if t is None:
        lines.append("theory: no closed forms for this model (linear CE only)")
    elif not t.get("matched"):
        lines.append(f"theory: no match ({t.get('reason')})")
    else:
        scales = (" at scales " + ", ".join(f"{x:.6g}" for x in t["scales"])) if t["scales"] else ""
        lines.append(f"theory: {t['kind']} match to {t['pattern']}{scales}; theory loss {t['loss']:.10g}, "
                     f"difference {t['loss_difference']:.3e}"
                     + ("" if t["rank_pattern_consistent"] else "; rank pattern differs from theory's"))
    lines.append("thresholds: " + ", ".join(f"{k}={v}" for k, v in sorted(a["thresholds"].items())))
    return "\n".join(lines)


def theory_match(spec: ModelSpec, structure: StructureReport, loss: float) -> dict | None:
    """Closed-form structure matching the point (linear CE model only, else None).

    ``kind``: 'pattern' (every block recognised: the structure with the same blocks, each scale at its
    nearest stationary root), 'zero' (the origin) or 'rank' (unrecognised: the catalogued structure
    of the same rank with the nearest loss; None if there is none). ``rank_pattern_consistent``: the
    point's rank pattern equals the theory's (every factor and Z of rank r)."""
    if spec.activation != "linear" or spec.loss != "ce":
        return None
    K, n, L = spec.K, spec.n, spec.L
    lam = theory.effective_lambda(spec)
    if structure.label == "zero":
        out = {"matched": True, "kind": "zero", "pattern": "zero", "scales": [], "loss": float(np.log(K)),
               "loss_difference": loss - float(np.log(K)), "scale_rel_error": 0.0, "rank": 0}
    elif structure.pattern is not None and "self" not in structure.pattern:
        blocks = [(b.classes, b.scale) for b in structure.blocks if b.kind in ("simplex", "pair")]
        out = dict(theory.match_structure(blocks, loss, K, n, L, lam), kind="pattern")
        if not out["matched"]:
            return out
        out["Zbar_rel_error"] = float(np.linalg.norm(structure.Zbar - out["Zbar"]) / np.linalg.norm(out["Zbar"]))
    else:
        r = structure.ranks["Z"].rank
        same = [c for c in theory.structure_catalogue(K, n, L, lam) if c.rank == r and c.critical]
        if not same:
            return {"matched": False, "kind": "rank", "reason": f"no catalogued structure of rank {r}"}
        best = min(same, key=lambda c: abs(c.loss - loss))
        out = {"matched": True, "kind": "rank", "pattern": best.pattern, "scales": list(best.scales),
               "loss": best.loss, "loss_difference": loss - best.loss, "rank": r}
    out["rank_pattern_consistent"] = bool(all(x == out["rank"] for x in structure.rank_pattern))
    out["lambda_effective"] = lam
    return out


def analyse_point(spec: ModelSpec, theta, *, tau: float | None = None, tau_rel: float = DEFAULT_TAU_REL,
                  noise_mult: float = DEFAULT_NOISE_MULT, dense_limit: int = DEFAULT_DENSE_LIMIT,
                  lanczos_k: int = DEFAULT_LANCZOS_K, lanczos_tol: float = DEFAULT_LANCZOS_TOL,
                  lanczos_seed: int = DEFAULT_LANCZOS_SEED, symmetry_rtol: float = DEFAULT_SYMMETRY_RTOL,
                  rank_rtol: float = DEFAULT_RANK_RTOL, pattern_rtol: float = DEFAULT_PATTERN_RTOL,
                  collapse_tol: float = DEFAULT_COLLAPSE_TOL, zero_atol: float = DEFAULT_ZERO_ATOL) -> PointAnalysis:
    """Analyse one point θ, a float64 torch tensor or numpy array of shape (P,), in float64.

    Hessian thresholds (tau, tau_rel, noise_mult, dense_limit, lanczos_k, lanczos_tol,
    lanczos_seed, symmetry_rtol) are those of :func:`landscape.hessian.analyse_hessian`; structure thresholds (rank_rtol, pattern_rtol,
    collapse_tol, zero_atol) those of :func:`landscape.structure.analyse_structure`.
    """
    th = as_theta64(spec, theta)
    spec64 = spec.as_float64()
    loss, grad = DeepUFM(spec64).loss_and_grad(th)
    h = analyse_hessian(spec64, th, tau=tau, tau_rel=tau_rel, noise_mult=noise_mult, dense_limit=dense_limit,
                        lanczos_k=lanczos_k, lanczos_tol=lanczos_tol, lanczos_seed=lanczos_seed,
                        symmetry_rtol=symmetry_rtol)
    s = analyse_structure(spec64, th, rank_rtol=rank_rtol, pattern_rtol=pattern_rtol,
                          collapse_tol=collapse_tol, zero_atol=zero_atol)
    return PointAnalysis(spec, float(loss), float(grad.norm()), h, s, theory_match(spec64, s, float(loss)))


def analyse_points(spec: ModelSpec, thetas, **kwargs) -> list[PointAnalysis]:
    """:func:`analyse_point` for every row of ``thetas`` (M, P); keyword arguments passed through."""
    return [analyse_point(spec, thetas[i], **kwargs) for i in range(len(thetas))]


def save_spectra(path, analyses, ids) -> None:
    """Write spectra and per-layer singular values of ``analyses`` (PointAnalysis objects) to
    ``path`` (.npz), keyed by the string form of each id (module docstring for the key layout)."""
    write_spectra(path, [{"spectrum": a.spectrum, "method": a.hessian.method, "parts": a.hessian.parts,
                          "sv": a.singular_values} for a in analyses], ids)


def stored_spectra(analysis: dict, spectrum) -> dict:
    """The :func:`write_spectra` entry of a stored point: its :meth:`PointAnalysis.to_dict`
    ``analysis`` and its spectrum array (as a study database holds them), without re-analysis."""
    h, ranks = analysis["hessian"], analysis["structure"]["ranks"]
    return {"spectrum": np.asarray(spectrum, dtype=np.float64), "method": h["method"],
            "parts": {k: np.asarray(v, dtype=np.float64) for k, v in h["parts"].items()},
            "sv": {k: np.asarray(r["singular_values"], dtype=np.float64) for k, r in ranks.items()}}


def write_spectra(path, entries, ids) -> None:
    """Write one entry {'spectrum', 'method', 'parts': {...}, 'sv': {...}} per id to ``path`` (.npz)."""
    ids = [str(i) for i in ids]
    if len(ids) != len(entries) or len(set(ids)) != len(ids):
        raise ValueError("write_spectra needs one distinct id per entry")
    arrays = {}
    for i, e in zip(ids, entries):
        if "/" in i:
            raise ValueError(f"point id {i!r} must not contain '/'")
        arrays[f"{i}/spectrum"] = e["spectrum"]
        arrays[f"{i}/method"] = np.array(e["method"])
        for k, v in e["parts"].items():
            arrays[f"{i}/parts/{k}"] = v
        for k, v in e["sv"].items():
            arrays[f"{i}/sv/{k}"] = v
    np.savez(path, **arrays)


def load_spectra(path) -> dict:
    """Read :func:`save_spectra` output: {id: {'spectrum', 'method', 'parts': {...}, 'sv': {...}}}."""
    out: dict = {}
    with np.load(path) as z:
        for key in z.files:
            i, rest = key.split("/", 1)
            d = out.setdefault(i, {"parts": {}, "sv": {}})
            if rest == "method":
                d["method"] = str(z[key])
            elif rest == "spectrum":
                d["spectrum"] = z[key]
            else:
                group, name = rest.split("/", 1)
                d[group][name] = z[key]
    return out
