"""Typed records of a study database: what :class:`~landscape.io.store.StudyStore` accepts and returns.

Frozen dataclasses, one per stored table, so code above ``io`` reads ``point.label``, never
``point["label"]``. JSON stays the on-disk form (the store's columns and JSON texts); the records are
what code passes. Each record has ``from_mapping`` (a dict with the same keys, as older code and the
tests build them; unknown keys refuse) and ``to_dict`` (the JSON-able form exports write), and
:func:`dataclasses.replace` makes a changed copy.

* :class:`TrajectoryRecord`: one trajectory (study index, seed, stop reason, certification, costs,
  final loss and ‖∇L‖, the engine description, the distinct point it reached).
* :class:`PointRecord`: one distinct critical point (modulo symmetry), with θ (P,) float64, its
  spectrum and a saddle's unstable eigenvectors (m, P) when read with parameters, the invariant
  fingerprint and the analysis JSON (:meth:`landscape.analysis.point.PointAnalysis.to_dict`).
* :class:`EdgeRecord`: one saddle-descent edge (saddle, unstable direction j, sign ±1, the point the
  descent certified at, barrier = saddle loss − target loss).
* :class:`TransitionStateRecord`: an index-1 saddle joining two minima (both barriers, the path's
  highest loss and length, the pair asked for, a JSON ``details``).
* :class:`SpectrumRecord`: the structured Hessian spectrum of one point (``landscape spectrum``).
* :class:`ContinuationRecord`: one continuation run (all its branches) in λ or width.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field, fields
from typing import Any, Mapping

import numpy as np

from ..core.jsonsafe import json_float


class RecordError(ValueError):
    """A mapping that is not a record of the named kind (a missing or unknown field)."""


def _plain(v):
    if isinstance(v, np.ndarray):
        return v.tolist()
    if isinstance(v, float):
        return json_float(v)
    return v


class _Record:
    """Shared ``from_mapping`` / ``to_dict`` of the records below."""

    @classmethod
    def from_mapping(cls, m: Mapping, **fixed):
        """The record with the fields of ``m`` (a dict with the record's field names), or ``m``
        itself if it already is one; ``fixed`` fields override."""
        if isinstance(m, cls):
            return m
        fs = fields(cls)
        names = [f.name for f in fs]
        unknown = sorted(set(m) - set(names))
        if unknown:
            raise RecordError(f"{cls.__name__}: unknown field(s) {unknown}; fields are {names}")
        missing = [f.name for f in fs if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
                   and f.name not in m and f.name not in fixed]
        if missing:
            raise RecordError(f"{cls.__name__}: missing field(s) {missing}")
        return cls(**{**{k: m[k] for k in names if k in m}, **fixed})

    def to_dict(self, *, arrays: bool = True) -> dict:
        """A JSON-able dict of the fields (arrays as lists; ``arrays=False`` leaves them out)."""
        out = {}
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, np.ndarray) and not arrays:
                continue
            out[f.name] = _plain(v)
        return out


@dataclass(frozen=True)
class TrajectoryRecord(_Record):
    """One trajectory: ``idx`` (study index), ``seed`` (of its initialisation), ``stop_reason``,
    ``certified`` (‖∇L‖ ≤ the study's tolerance at a converged end), ``iterations``, ``n_grad``,
    ``n_hvp`` (costs, or None), ``wall_time`` (s), ``loss``, ``grad_norm`` (final, None where
    NaN), ``engine`` (the dynamics' JSON description, or None), ``point_id`` (the distinct point it
    reached; required when certified), ``unit`` (the committed unit; None before storing)."""

    idx: int
    seed: int
    stop_reason: str
    certified: bool
    iterations: int | None = None
    n_grad: int | None = None
    n_hvp: int | None = None
    wall_time: float | None = None
    loss: float | None = None
    grad_norm: float | None = None
    engine: Any = None
    point_id: int | None = None
    unit: int | None = None


@dataclass(frozen=True)
class PointRecord(_Record):
    """One distinct point: ``id``, ``kind`` (:data:`landscape.io.store.POINT_KINDS`), ``label``
    (structure name or None), ``loss``, ``grad_norm``, ``hessian_index`` (or None), ``fingerprint``
    (:mod:`landscape.analysis.dedup`), ``analysis`` (the analysis JSON, or None), ``unit``; and,
    when read with parameters, ``params`` θ (P,) float64, ``spectrum`` (Hessian eigenvalues or
    None), ``unstable`` (m, P) unit eigenvectors of a saddle's negative eigenvalues with their
    ``unstable_values`` (m,) (or None)."""

    id: int
    kind: str
    loss: float
    grad_norm: float
    fingerprint: dict
    label: str | None = None
    hessian_index: int | None = None
    analysis: dict | None = None
    unit: int | None = None
    params: np.ndarray | None = None
    spectrum: np.ndarray | None = None
    unstable: np.ndarray | None = None
    unstable_values: np.ndarray | None = None

    @property
    def theory(self) -> dict | None:
        """The closed-form match of the analysis (``analysis["theory"]``), or None."""
        return (self.analysis or {}).get("theory")

    @property
    def rank_pattern(self) -> list | None:
        """The per-factor rank pattern of the analysis, or None."""
        return (self.analysis or {}).get("rank_pattern")


@dataclass(frozen=True)
class EdgeRecord(_Record):
    """One saddle descent: ``saddle_id``, ``direction`` (index j of the negative eigenvector),
    ``sign`` (±1), ``target_id`` (the point it certified at, or None), ``eigenvalue`` (of j),
    ``eps`` (step length along it), ``barrier`` (saddle loss − target loss, or None), ``stop_reason``."""

    saddle_id: int
    direction: int
    sign: int
    target_id: int | None = None
    eigenvalue: float | None = None
    eps: float | None = None
    barrier: float | None = None
    stop_reason: str | None = None


@dataclass(frozen=True)
class TransitionStateRecord(_Record):
    """An index-1 saddle ``saddle_id`` joining minima ``min1_id`` and ``min2_id``: ``barrier1`` =
    L(saddle) − L(min1), ``barrier2`` = L(saddle) − L(min2), the refined path's ``path_max_loss``
    and ``path_length`` (or None), the pair the search was asked to join (``pair_a``, ``pair_b``),
    and ``details`` (JSON: method, refinement, descents)."""

    saddle_id: int
    min1_id: int
    min2_id: int
    barrier1: float
    barrier2: float
    path_max_loss: float | None = None
    path_length: float | None = None
    pair_a: int | None = None
    pair_b: int | None = None
    details: dict = field(default_factory=dict)


@dataclass(frozen=True)
class SpectrumRecord(_Record):
    """The structured spectrum of point ``point_id``: ``data`` is the JSON record
    :func:`landscape.analysis.spectrum.inspect_spectrum` wrote (its own keys documented there)."""

    point_id: int
    data: dict


@dataclass(frozen=True)
class ContinuationRecord(_Record):
    """One continuation run: ``id``, ``param`` ("lambda" or "width") and ``record`` (its JSON:
    branches, events, settings; :mod:`landscape.continuation`)."""

    id: int
    param: str
    record: dict


__all__ = ["RecordError", "TrajectoryRecord", "PointRecord", "EdgeRecord", "TransitionStateRecord",
           "SpectrumRecord", "ContinuationRecord"]
