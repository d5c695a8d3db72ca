"""What ``landscape net`` measures on a trained network's head, per seed.

All in float64 from the UFM point θ = [H₁, W₁, …, W_L] of the seed (:mod:`landscape.net.handoff`):

* ``singular_values``: per head factor W_l, per layer's class-mean features (the d × K matrix M_l
  of the pre-activation features H_l, l = 1..L, MODEL.md §1) and of the class-mean logits Z̄
  (K × K), descending;
* ``counts``: how many of each exceed the paper's absolute threshold ``sv_atol`` (10⁻⁶) and the
  relative one ``sv_rtol``·σ_max;
* the structure analysis of ``landscape run`` (:func:`landscape.analysis.structure.analyse_structure`):
  DNC1–DNC3 per layer, the rank pattern, the logit rank and the structure label of the point.

And, for the linear head, the closed-form losses of the UFM's structures at the same K, n, L and
effective λ (:func:`landscape.analysis.theory.effective_lambda`: the geometric mean of the L+1
factor decays, which is what the loss at a balanced critical point depends on, MODEL.md §4), to
set the trained loss against DNC's.
"""
from __future__ import annotations

import numpy as np
import torch

from ..analysis.labels import DNC
from ..analysis.structure import analyse_structure, class_means
from ..analysis.settings import AnalysisSettings
from ..analysis.theory import effective_lambda, structure_catalogue
from ..core.model import DeepUFM, ModelSpec
from ..core.jsonsafe import json_float


def head_singular_values(spec: ModelSpec, theta: np.ndarray) -> dict[str, np.ndarray]:
    """{name: singular values, descending} of W₁…W_L, of the class-mean features M_1…M_L and of Z̄."""
    model = DeepUFM(spec.as_float64())
    th = torch.as_tensor(np.asarray(theta, dtype=np.float64)).reshape(1, -1)
    with torch.no_grad():
        F = [f[0].numpy() for f in model.factors(th)]
        pre, _, Z = model.forward(th)
    out = {}
    for l, W in enumerate(F[1:], start=1):
        out[f"W{l}"] = np.linalg.svd(W, compute_uv=False)
    for l, H in enumerate(pre, start=1):
        out[f"M{l}"] = np.linalg.svd(class_means(H[0].numpy(), spec.K, spec.n), compute_uv=False)
    out["Zbar"] = np.linalg.svd(class_means(Z[0].numpy(), spec.K, spec.n), compute_uv=False)
    return out


def sv_counts(sv: np.ndarray, atol: float, rtol: float) -> dict:
    """{"above_atol": #σ > atol, "above_rtol": #σ > rtol·σ_max}."""
    top = float(sv[0]) if sv.size else 0.0
    return {"above_atol": int(np.sum(sv > atol)), "above_rtol": int(np.sum(sv > rtol * top)) if top > 0 else 0}


def measure_head(spec: ModelSpec, theta: np.ndarray, *, sv_atol: float, sv_rtol: float,
                 settings: AnalysisSettings = AnalysisSettings(), structure=None) -> dict:
    """The per-seed record of a head θ (P,): ``layers`` [{name, singular_values, above_atol,
    above_rtol}], ``logit_rank`` (numerical rank of Z under the analysis' ``rank_rtol``),
    ``rank_pattern``, ``label``, ``dnc_metrics`` (per layer, :class:`LayerMetrics`).
    ``structure``: θ's :class:`StructureReport` where the caller has it (from
    :func:`analyse_point`), else computed here with ``settings``."""
    svs = head_singular_values(spec, theta)
    s = structure if structure is not None else analyse_structure(spec, theta, **settings.structure_kwargs())
    layers = [{"name": k, "singular_values": [float(x) for x in v], **sv_counts(v, sv_atol, sv_rtol)}
              for k, v in svs.items()]
    zbar_rank = s.ranks["Z"].rank
    out = {"layers": layers, "logit_rank": int(zbar_rank), "rank_pattern": list(s.rank_pattern),
           "rank_names": list(s.rank_names), "label": s.label, "dnc_metrics": [m.to_dict() for m in s.layers]}
    if spec.activation == "relu":
        out["relu_kinks"] = relu_kinks(spec, theta)
    return out


KINK_RTOLS = (1e-6, 1e-3)


def relu_kinks(spec: ModelSpec, theta: np.ndarray) -> list[dict]:
    """Per ReLU input H_l (l = 2..L, MODEL.md §1): how many of its d·N pre-activations lie within
    rtol·max|H_l| of 0, for each rtol in :data:`KINK_RTOLS`, beside the count a smooth density would
    put there (d·N·rtol, uniform on ±max|H_l|) — the ReLU objective is not differentiable on
    those kinks, so a gradient norm cannot certify a point that sits on (or converges to) them."""
    model = DeepUFM(spec.as_float64())
    th = torch.as_tensor(np.asarray(theta, dtype=np.float64)).reshape(1, -1)
    with torch.no_grad():
        pre = model.forward(th)[0]
    out = []
    for l, H in enumerate(pre[1:], start=2):
        a = H[0].abs().numpy()
        top = float(a.max()) if a.size else 0.0
        out.append({"layer": f"H{l}", "size": int(a.size),
                    "within": {f"{r:g}": int(np.sum(a <= r * top)) for r in KINK_RTOLS},
                    "smooth_expectation": {f"{r:g}": float(a.size * r) for r in KINK_RTOLS}})
    return out


def closed_form_losses(spec: ModelSpec) -> dict | None:
    """For a linear CE head: {"lambda_eff", "dnc_loss" (DNC at its large root; None if no root),
    "best": the lowest closed-form structure {name, loss, rank}, "structures": the catalogue's
    lowest few}; None for a ReLU head (the closed forms are the linear model's)."""
    if spec.activation != "linear" or spec.loss != "ce":
        return None
    lam = effective_lambda(spec)
    cat = structure_catalogue(spec.K, spec.n, spec.L, lam)
    dnc = [c for c in cat if c.name == DNC.name and c.root == "large"]
    crit = [c for c in cat if c.critical]
    return {"lambda_eff": lam, "dnc_loss": json_float(dnc[0].loss) if dnc else None,
            "best": {"name": crit[0].name, "pattern": crit[0].pattern, "loss": crit[0].loss, "rank": crit[0].rank},
            "structures": [{"name": c.name, "pattern": c.pattern, "loss": c.loss, "rank": c.rank} for c in crit[:8]]}
