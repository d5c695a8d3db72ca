"""The step control and tolerances of continuation in λ: :class:`ContinuationSettings`.

Validation only (no torch), in the style of every settings table (:mod:`landscape.core.validate`):
each field is checked when the settings are built, and a bad value is a SpecError naming the field
(``continuation.FIELD``) and its allowed range. The settings are stored with every branch
(``settings`` of a ``continuation.json`` record); :meth:`ContinuationSettings.from_dict` reads
them back.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import Mapping

from ..analysis.settings import DEFAULT_NOISE_MULT, DEFAULT_TAU_REL
from ..core.validate import SpecError, check_fields, check_int, check_number

#: How errors name the fields: ``continuation.h0``.
TABLE = "continuation"
#: Integer fields (≥ 1); every other field is a number.
INTEGER_FIELDS = ("max_steps", "newton_iter")
#: Number fields that may be 0 (the stop they control is then off) and their largest value.
FRACTIONS = ("origin_rtol", "p_floor_rtol")
#: Largest value of the bounded number fields (all others: any finite number > 0).
MAXIMUM = {"h0": 1.0, "h_min": 1.0, "h_max": 1.0, "event_rtol": 1.0, "max_turn": math.pi, "origin_rtol": 1.0,
           "p_floor_rtol": 1.0}


@dataclass(frozen=True)
class ContinuationSettings:
    """Step control and tolerances of :func:`landscape.continuation.continue_in_lambda`.

    * ``h0``, ``h_min``, ``h_max``: first, smallest and largest step, as a relative change of the
      normalised coordinates (θ/‖θ_k‖, p/|p_k|); each in (0, 1], with h_min ≤ h0 ≤ h_max.
    * ``max_steps``: accepted steps per branch (integer ≥ 1); ``newton_iter``: corrector
      iterations per step (integer ≥ 1).
    * ``certify_tol``: every corrected point has ‖∇L‖ ≤ certify_tol (> 0).
    * ``event_rtol``: folds and index changes located to this relative precision in p, in (0, 1].
    * ``tau_rel``: eigenvalues below −tau_rel·min λ count towards the index (> 0; the analysis'
      default); ``noise_mult``: the index is unresolvable once τ falls under
      noise_mult·ε·ρ(H) (> 0).
    * ``max_drift``: a corrected point continues the branch when it moved at most max_drift·h
      from the predictor and its loss changed as the tangent predicts to max_drift·h (> 0);
      ``max_turn``: and its tangent turned by at most this many radians, in (0, π].
    * ``origin_rtol``: the branch ends at the origin once its logit scale falls below this
      fraction of the start's; ``p_floor_rtol``: once p falls below this fraction of its start
      (each in [0, 1]; 0: that stop is off).
    """

    h0: float = 0.05
    h_min: float = 1e-9
    h_max: float = 0.25
    max_steps: int = 400
    newton_iter: int = 20
    certify_tol: float = 1e-10
    event_rtol: float = 1e-10
    tau_rel: float = DEFAULT_TAU_REL
    noise_mult: float = DEFAULT_NOISE_MULT
    max_drift: float = 0.5
    max_turn: float = 0.35
    origin_rtol: float = 1e-6
    p_floor_rtol: float = 1e-9

    def __post_init__(self):
        for f in fields(self):
            name, v = f"{TABLE}.{f.name}", getattr(self, f.name)
            if f.name in INTEGER_FIELDS:
                v = check_int(name, v, 1)
            else:
                v = check_number(name, v, allow_zero=f.name in FRACTIONS, maximum=MAXIMUM.get(f.name))
            object.__setattr__(self, f.name, v)
        if not self.h_min <= self.h0 <= self.h_max:
            raise SpecError(f"{TABLE}.h0={self.h0!r} is invalid: must lie in [h_min, h_max] = "
                            f"[{self.h_min:g}, {self.h_max:g}] (continuation.h_min <= h0 <= h_max)")

    @classmethod
    def from_dict(cls, d: Mapping) -> "ContinuationSettings":
        """Settings from their stored table (a record's ``settings``); unknown keys are refused."""
        check_fields(f"[{TABLE}]", d, [f.name for f in fields(cls)])
        return cls(**dict(d))

    def to_dict(self) -> dict:
        return asdict(self)
