"""What a followed branch is: :class:`Branch` (its step records, events and end) and the record
of one step (:func:`step_record`), as stored in ``continuation.json`` and the database."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ..analysis.structure import analyse_structure
from ..core.spec import ModelSpec


@dataclass
class Branch:
    """One followed branch: ``steps`` (records), ``events`` and the ``end`` reason."""

    point_id: int | None
    label: str | None
    steps: list = field(default_factory=list)
    events: list = field(default_factory=list)
    end: str = ""
    rank: int | None = None

    def to_dict(self) -> dict:
        out = {"point_id": self.point_id, "label": self.label, "steps": self.steps, "events": self.events, "end": self.end}
        if self.rank is not None:
            out["rank"] = self.rank
        return out


def param_key(param: str) -> str:
    """The key a step or event record gives the parameter value under."""
    return "lambda" if param == "lambda" else param


def step_record(spec: ModelSpec, param: str, th: np.ndarray, p: float, *, loss: float, grad_norm: float, index: int,
                nullity: int, symmetry_zero_modes: int) -> dict:
    """The record of one accepted step at θ (float64 ``spec``) and parameter value p: p, the loss,
    ‖∇L‖, index, nullity net of symmetry, symmetry zero modes, the logit scale (the mean of Z's
    non-zero singular values over √n), Z's singular values and the structure's label."""
    st = analyse_structure(spec, th)
    z = st.ranks["Z"].singular_values
    r = st.ranks["Z"].rank
    scale = float(z[:r].mean() / math.sqrt(spec.n)) if r else 0.0
    return {param_key(param): p, "loss": loss, "grad_norm": grad_norm, "index": index, "nullity": nullity,
            "symmetry_zero_modes": symmetry_zero_modes, "logit_scale": scale,
            "z_singular_values": [float(x) for x in z[:max(r, 1)]], "label": st.label}
