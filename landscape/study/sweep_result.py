"""The typed view of a sweep folder's ``sweep.json`` (what :func:`landscape.study.sweep.run_sweep`
writes and returns as a dict): :class:`SweepRecord`, its :class:`SweepCell` rows and the
:class:`PairedDifference` rows of neighbouring cells that share their starts. Torch-free, so the
sweep report reads a folder without loading the run. Read from a folder it is untrusted input:
the report type-checks it first (:data:`landscape.viz.safe.SWEEP_FIELDS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..core.jsonsafe import optional_float, optional_int




@dataclass(frozen=True)
class SweepCell:
    """One cell of a sweep: its ``name``, its folder ``dir`` (relative to the sweep folder),
    ``status`` (``ran``, ``skipped``, ``pending``, …) and ``n_trajectories`` (None until it ran)."""

    name: str
    dir: str | None
    status: str | None
    n_trajectories: int | None

    @classmethod
    def from_row(cls, row: Mapping) -> SweepCell:
        return cls(str(row["name"]), row.get("dir"), row.get("status"), optional_int(row.get("n_trajectories")))


@dataclass(frozen=True)
class PairedDifference:
    """Two neighbouring cells along ``axis`` (``first``, ``second``) that start from the same
    points: the paired table of whether each start reached ``label`` (``both``, ``first_only``,
    ``second_only``, ``neither``), the ``difference`` first − second of the label's fraction and
    Newcombe's interval [``ci_low``, ``ci_high``] (None where not computable)."""

    axis: str | None
    first: str | None
    second: str | None
    label: str | None
    both: int
    first_only: int
    second_only: int
    neither: int
    difference: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def from_row(cls, row: Mapping) -> PairedDifference:
        return cls(axis=row.get("axis"), first=row.get("first"), second=row.get("second"), label=row.get("label"),
                   both=int(row["both"]), first_only=int(row["first_only"]), second_only=int(row["second_only"]),
                   neither=int(row["neither"]), difference=optional_float(row.get("difference")),
                   ci_low=optional_float(row.get("ci_low")), ci_high=optional_float(row.get("ci_high")))


@dataclass(frozen=True)
class SweepRecord:
    """A sweep (``sweep.json``): its ``name``, its ``axes`` (axis → values, in the file's order),
    the interval ``confidence``, its ``cells`` (:class:`SweepCell`) and ``paired`` differences
    (:class:`PairedDifference`); ``record``: the whole sweep.json."""

    name: str
    axes: dict[str, list]
    confidence: float
    cells: list[SweepCell]
    paired: list[PairedDifference]
    record: Mapping[str, Any]

    @classmethod
    def from_json(cls, record: Mapping) -> SweepRecord:
        cfg = record.get("sweep_config") or {}
        return cls(name=str(cfg.get("name", "sweep")), axes=dict(cfg.get("sweep") or {}),
                   confidence=float(record.get("confidence", 0.95)),
                   cells=[SweepCell.from_row(c) for c in record.get("cells") or []],
                   paired=[PairedDifference.from_row(p) for p in record.get("paired") or [] if isinstance(p, Mapping)],
                   record=record)
