"""JSON-safe values, one copy: every record the package writes goes through these.

* :func:`json_float`: a number (or bool/None/str) as a plain Python value, with NaN and ±inf as
  None (JSON has no such numbers).
* :func:`json_default`: the ``default=`` of ``json.dumps``: numpy arrays become lists, numpy
  scalars Python numbers/bools.
* :func:`to_json`: deterministic JSON (sorted keys); Python floats round-trip exactly.
* :func:`optional_float`, :func:`optional_int`: a stored number read back, None kept None.
"""
from __future__ import annotations

import json
import math

import numpy as np


def json_float(v):
    """JSON-safe scalar: None for None/NaN/±inf, bool for bools, int for integers, float else;
    strings pass through."""
    if v is None or isinstance(v, str):
        return v
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, (int, np.integer)):
        return int(v)
    v = float(v)
    return v if math.isfinite(v) else None


def optional_float(x) -> float | None:
    """``float(x)``, or None where ``x`` is None (a stored value that may be absent)."""
    return None if x is None else float(x)


def optional_int(x) -> int | None:
    """``int(x)``, or None where ``x`` is None (a stored value that may be absent)."""
    return None if x is None else int(x)


def json_default(o):
    """``json.dumps`` default: numpy arrays become lists, numpy scalars Python numbers/bools."""
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, np.generic):
        return o.item()
    raise TypeError(f"object of type {type(o).__name__} is not JSON serialisable")


def to_json(obj) -> str:
    """Deterministic JSON (sorted keys; numpy scalars and arrays become numbers and lists)."""
    return json.dumps(obj, sort_keys=True, default=json_default)
