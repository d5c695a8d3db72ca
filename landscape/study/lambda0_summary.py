"""A typed view of a λ = 0 study's summary.json (``"kind": "lambda0"``): :class:`Lambda0Summary`.

What :attr:`landscape.study.lambda0.Lambda0Result.result` returns, as
:attr:`landscape.viz.report.Results.result` is the typed view of a study at λ > 0. Every attribute is
read from the summary (checked first by
:func:`landscape.io.lambda0_results.check_lambda0_summary`), so the view and the file never
disagree::

    r = landscape.load_results("runs/lambda0").result
    r.nc.fraction, r.nc.ci_low, r.directions[0].gamma, r.directions[0].closed_form_gamma

Fractions count starts: ``certified`` over all starts, ``nc`` and ``labels`` over the certified
ones; intervals are Wilson intervals at 95%. γ is the normalised margin (min margin / ‖θ‖^{L+1},
MODEL.md §11).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from ..core.jsonsafe import optional_float
from .result import Fraction, Share


@dataclass(frozen=True)
class Quantiles:
    """Quantiles of a per-start quantity over ``n`` starts (summary.json ``gamma.*``, ``steps.*``)."""

    n: int
    min: float
    q25: float
    median: float
    q75: float
    max: float
    mean: float

    @classmethod
    def from_row(cls, row: Mapping | None) -> Quantiles | None:
        if not row:
            return None
        return cls(int(row["n"]), *(float(row[k]) for k in ("min", "q25", "median", "q75", "max", "mean")))


@dataclass(frozen=True)
class DirectionRow:
    """A distinct certified direction as summary.json lists it (``directions``, most starts
    first): its normalised margin ``gamma``, the support's size, the rank of the logits, the
    ``starts`` that reached it (a :class:`~landscape.study.result.Fraction` of the certified starts) and, for a code with a closed
    form (``closed_form``: its name), the closed-form γ and the relative error against it. Its θ̂
    is :class:`~landscape.io.lambda0_results.Lambda0Direction` (``Lambda0Result.directions``)."""

    id: int
    label: str
    gamma: float
    support_size: int
    z_rank: int
    starts: Fraction
    closed_form: str | None
    closed_form_gamma: float | None
    closed_form_rel_error: float | None

    @classmethod
    def from_row(cls, row: Mapping) -> DirectionRow:
        return cls(int(row["id"]), str(row["label"]), float(row["gamma"]), int(row["support_size"]), int(row["z_rank"]),
                   Fraction.from_row(row), row.get("closed_form"), optional_float(row.get("closed_form_gamma")),
                   optional_float(row.get("closed_form_rel_error")))


@dataclass(frozen=True)
class HandoffCheck:
    """The hand-off check (summary.json ``check``): the first ``starts`` starts run again
    ``dynamics`` (longer); of the ``certified_main`` whose main run certified, ``agree`` reached
    the same direction and ``same_label`` the same label."""

    dynamics: str
    starts: int
    certified_main: int
    agree: int
    agreement: Share
    same_label: int
    longer_stop_reasons: dict[str, int]

    @classmethod
    def from_row(cls, row: Mapping | None) -> HandoffCheck | None:
        if not row:
            return None
        return cls(str(row["dynamics"]), int(row["starts"]), int(row["certified_main"]), int(row["agree"]),
                   Share.from_row(row["agreement"]), int(row["same_label"]),
                   {str(k): int(v) for k, v in row["longer_stop_reasons"].items()})


@dataclass(frozen=True, eq=False)
class Lambda0Summary:
    """A finished λ = 0 study, typed (module docstring). ``stop_reasons``: starts per outcome;
    ``certified_by_rule``: certified starts per decision rule (``strict``, ``stable``);
    ``certified_after_extension``: of those, the ones decided in a later round of margin flow
    (``[lambda0] extend_rounds``; 0 in a summary written before that setting);
    ``nc_label``: the label counted as NC; ``gamma``: quantiles of γ over the certified starts
    (``polished``, ``end``, ``raw_end``, ``rel_change``, ``rel_change_stable``; None where no
    start contributes); ``nc_code_margin``/``pairs_code_margin``: the closed-form γ of the NC
    simplex and the pairs code (None for odd K); ``gamma_rtol`` and ``check_factor``: the decision's
    bound on the polish's rise and the hand-off check's length factor; ``summary``: the whole
    summary.json for everything else."""

    study: str
    dynamics: str
    n_trajectories: int
    stop_reasons: dict[str, int]
    certified: Fraction
    certified_by_rule: dict[str, int]
    certified_after_extension: int
    nc: Fraction
    nc_label: str
    labels: dict[str, Fraction]
    directions: tuple[DirectionRow, ...]
    gamma: dict[str, Quantiles | None]
    nc_code_margin: float
    pairs_code_margin: float | None
    gamma_rtol: float
    check_factor: int
    check: HandoffCheck | None
    not_run: tuple[str, ...]
    wall_time_s: float | None
    summary: dict

    @classmethod
    def from_summary(cls, s: Mapping) -> Lambda0Summary:
        """The view of a checked λ = 0 summary dict (KeyError, TypeError or ValueError where it
        lacks a value this version reads)."""
        cf, dec = s["closed_forms"], s["decision"]
        return cls(
            study=str(s["study"]), dynamics=str(s["dynamics"]), n_trajectories=int(s["n_trajectories"]),
            stop_reasons={str(k): int(v) for k, v in s["stop_reasons"].items()},
            certified=Fraction.from_row(s["certified"]),
            certified_by_rule={str(k): int(v) for k, v in (s["certified"].get("by_rule") or {}).items()},
            certified_after_extension=int(s["certified"].get("after_extension", 0)),
            nc=Fraction.from_row(s["nc"]), nc_label=str(s["nc"]["label"]),
            labels={str(k): Fraction.from_row(v) for k, v in s["labels"].items()},
            directions=tuple(DirectionRow.from_row(d) for d in s["directions"]),
            gamma={k: Quantiles.from_row(v) for k, v in s["gamma"].items() if k != "per_label"},
            nc_code_margin=float(cf["nc_code_margin"]), pairs_code_margin=optional_float(cf.get("pairs_code_margin")),
            gamma_rtol=float(dec["gamma_rtol"]), check_factor=int(dec["check_factor"]),
            check=HandoffCheck.from_row(s.get("check")), not_run=tuple(str(x) for x in s.get("not_run", ())),
            wall_time_s=optional_float(s.get("wall_time_s")), summary=dict(s))

    def label_counts(self) -> dict[str, int]:
        """Certified starts per label."""
        return {k: v.count for k, v in self.labels.items()}

    def logit_rank_counts(self) -> dict[int, int]:
        """Certified starts per rank of the logits (from the distinct directions), by rank."""
        out: dict[int, int] = {}
        for d in sorted(self.directions, key=lambda d: d.z_rank):
            out[d.z_rank] = out.get(d.z_rank, 0) + d.starts.count
        return out
