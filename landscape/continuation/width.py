"""Following a critical point in the width: :func:`embed_width`, :func:`continue_in_width`.

A critical point at width d stays critical at any d' > d when H₁ gets d'−d zero rows and every
W_l zero rows and columns (W_L zero columns). Proof: the new hidden units have zero incoming
weights, so their pre-activations are 0 and (σ(0) = 0, for ReLU too) their outputs are 0; every
gradient entry of a new coordinate is then a product with a zero block — the gradient of a new row
of W_l is δ_l·h_{l−1}ᵀ restricted to a new unit, δ_l there being W_{l+1}ᵀδ_{l+1} through the zero
new column of W_{l+1}; the gradient of a new column of W_{l+1} is δ_{l+1}·(new outputs)ᵀ = 0; the
weight decay of a zero entry is 0 — and the old coordinates see exactly the old network. So the
loss and ‖∇L‖ are unchanged, while the symmetry orbit grows: L·(r·d' − r(r+1)/2) in the linear
model, the quantity behind Theorem 5.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import torch

from ..analysis.hessian import analyse_hessian
from ..analysis.structure import analyse_structure
from ..core.model import DeepUFM, ModelSpec
from ..core.validate import check_int
from .branch import Branch


def embed_width(spec: ModelSpec, theta, d_new: int) -> tuple[ModelSpec, np.ndarray]:
    """θ at width d embedded into width ``d_new`` ≥ d (an integer; 5.0 reads as 5) by zero rows and
    columns (module docstring)."""
    d_new = check_int("d", d_new, spec.d, " (the point's width)")
    big = replace(spec, d=d_new)
    F = spec.split(theta)
    G = []
    for (r, c), (R, C), f in zip(spec.shapes, big.shapes, F):
        g = np.zeros((R, C))
        g[:r, :c] = f
        G.append(g)
    return big, big.join(G)


def continue_in_width(spec: ModelSpec, theta, *, to: int, point_id: int | None = None, label: str | None = None,
                      dense_limit: int | None = None, progress=None) -> Branch:
    """Embed θ into every width d+1..``to`` (an integer ≥ d) and re-analyse it: per width its
    loss, ‖∇L‖, index, nullity net of symmetry, and symmetry zero modes (the dimension of its
    critical manifold's gauge orbit). ``progress(step record)`` hears every width as it is done."""
    to = check_int("--to", to, spec.d, " (a width, at least the point's)")
    br = Branch(point_id, label)
    br.rank = analyse_structure(spec.as_float64(), theta).ranks["Z"].rank
    for d in range(spec.d, to + 1):
        s2, th = embed_width(spec, theta, d)
        m = DeepUFM(s2.as_float64())
        loss, g = m.loss_and_grad(torch.from_numpy(th))
        h = analyse_hessian(s2.as_float64(), th, dense_limit=dense_limit)
        br.steps.append({"d": d, "P": s2.P, "loss": float(loss), "grad_norm": float(g.norm()), "index": h.index,
                         "nullity": h.excess_zero_modes, "symmetry_zero_modes": h.symmetry_zero_modes,
                         "method": h.method})
        if progress is not None:
            progress(br.steps[-1])
    br.end = "reached"
    return br
