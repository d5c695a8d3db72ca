"""Engine options: one frozen dataclass per engine, validated field by field.

A field declared with :func:`number` (a finite number > 0) or :func:`integer` (an integral
number ≥ 1, given as 5, 5.0 or 1e2) is checked when the options are built; the error names the
field. Every option that decides a result (step sizes, tolerances, line-search halvings,
curvature tests) is a field, so it is stored with the study.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from ..core.validate import check_integral, check_number


def number(default: float, doc: str = ""):
    return field(default=default, metadata={"kind": "number", "doc": doc})


def integer(default: int, doc: str = ""):
    return field(default=default, metadata={"kind": "integer", "doc": doc})


@dataclass(frozen=True)
class EngineOptions:
    """Base class: validates its fields by their declared kind."""

    def __post_init__(self):
        for f in fields(self):
            v = getattr(self, f.name)
            kind = f.metadata.get("kind")
            if kind == "number":
                object.__setattr__(self, f.name, check_number(f.name, v))
            elif kind == "integer":
                object.__setattr__(self, f.name, check_integral(f.name, v))

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))
