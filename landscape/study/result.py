"""What :func:`landscape.run_study` returns: :class:`StudyResult`, a typed view of a finished study.

In the spirit of scipy's ``OptimizeResult``: the answers a script or a notebook asks for first are
typed attributes (the headline, the distinct points, the fractions per label, the stop reasons,
the transition states, the diagnosis, the timings), and ``summary`` is the whole ``summary.json``
for everything else. Every attribute is read from that summary, so the result and the folder's
``summary.json`` never disagree::

    r = landscape.run_study(cfg, "runs/tiny", progress=False)
    r.headline.dnc_fraction, r.fractions["DNC"].ci_low, r.points[0].label, r.folder / "report.html"

For code written when ``run_study`` returned the summary dict, a result also reads like that dict
(``r["headline"]["dnc_fraction"]``, ``r.get("check")``, ``"points" in r``, ``tuple(r)``): it is a
read-only :class:`~collections.abc.Mapping` over ``summary``. New code should use the attributes;
``dict(r)`` or ``r.summary`` is the plain dict (``json.dumps`` takes that, not the result).
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..io.records import TransitionStateRecord


def _float(x) -> float | None:
    return None if x is None else float(x)


@dataclass(frozen=True)
class Fraction:
    """A share of the main starts with its Wilson interval (summary.json ``labels`` and
    ``uncertified`` rows): ``count`` of ``n_trajectories`` starts, ``fraction`` =
    count / n_trajectories, interval [``ci_low``, ``ci_high``] at the summary's confidence."""

    count: int
    fraction: float
    ci_low: float
    ci_high: float

    @classmethod
    def from_row(cls, row: Mapping) -> Fraction:
        return cls(int(row["count"]), _float(row["fraction"]), _float(row["ci_low"]), _float(row["ci_high"]))


@dataclass(frozen=True)
class CertifiedDNC:
    """The DNC share of the *certified* main starts (summary.json ``headline.certified``): ``dnc``
    of ``n_certified``; ``fraction``, ``ci_low``, ``ci_high`` are None when no start certified."""

    n_certified: int
    dnc: int
    fraction: float | None
    ci_low: float | None
    ci_high: float | None


@dataclass(frozen=True)
class Headline:
    """The study's answer (summary.json ``headline``): the DNC fraction of all main starts with its
    interval, the DNC share of the certified starts (None in a summary written before it existed),
    and the lowest-loss distinct point (its loss, label and id; None when no point was found)."""

    dnc_fraction: float
    dnc_ci_low: float
    dnc_ci_high: float
    certified: CertifiedDNC | None
    lowest_loss: float | None
    lowest_loss_label: str | None
    lowest_loss_point: int | None

    @classmethod
    def from_summary(cls, h: Mapping) -> Headline:
        c = h.get("certified")
        return cls(dnc_fraction=_float(h["dnc_fraction"]), dnc_ci_low=_float(h["dnc_ci_low"]),
                   dnc_ci_high=_float(h["dnc_ci_high"]),
                   certified=None if c is None else CertifiedDNC(**{k: c[k] for k in (
                       "n_certified", "dnc", "fraction", "ci_low", "ci_high")}),
                   lowest_loss=h.get("lowest_loss"), lowest_loss_label=h.get("lowest_loss_label"),
                   lowest_loss_point=h.get("lowest_loss_point"))


@dataclass(frozen=True)
class StudyPoint:
    """One distinct critical point (a summary.json ``points`` row): what it is (``kind``:
    minimum, saddle, degenerate, …; ``label``: DNC, pairs, zero, other), its loss and ‖∇L‖, its
    Hessian ``index`` and ``nullity``, and how many main starts reached it (``basin_count``,
    ``fraction`` with its interval). ``record`` is the whole row (rank pattern, collapse metrics,
    theory match, verification flags)."""

    id: int
    kind: str
    label: str
    loss: float
    grad_norm: float
    index: int | None
    nullity: int | None
    basin_count: int
    fraction: float
    ci_low: float
    ci_high: float
    record: Mapping[str, Any]

    @classmethod
    def from_row(cls, row: Mapping) -> StudyPoint:
        return cls(id=int(row["id"]), kind=row["kind"], label=row["label"], loss=row["loss"],
                   grad_norm=row["grad_norm"], index=row.get("index"), nullity=row.get("nullity"),
                   basin_count=int(row["basin_count"]), fraction=row["fraction"], ci_low=row["ci_low"],
                   ci_high=row["ci_high"], record=row)


@dataclass(frozen=True)
class Diagnosis:
    """Why a share of the main starts did not certify, and what to change (a summary.json
    ``diagnosis`` row; present only when more than 5% of the starts failed)."""

    reason: str
    count: int
    share: float
    advice: str


@dataclass(frozen=True, eq=False)
class StudyResult(Mapping):
    """A finished study (module docstring).

    ``folder``: the results folder. ``n_trajectories``: main starts; ``dynamics``: their dynamics,
    in words. ``headline``: :class:`Headline`. ``points``: the distinct critical points,
    :class:`StudyPoint`, in order of loss. ``fractions``: label → :class:`Fraction` of the main
    starts that ended at a point of that label; ``uncertified``: stop reason → :class:`Fraction` of
    those that certified nowhere (together they add up to one). ``stop_reasons``: stop reason →
    count. ``transition_states``: :class:`~landscape.io.records.TransitionStateRecord` (saddle,
    the two minima, both barriers). ``diagnosis``: :class:`Diagnosis` rows, empty for a study whose
    starts mostly certified. ``timings``: seconds per phase of this run (summary.json ``timings``,
    and ``featured_spectra_s``, ``report_s`` where this run wrote them); ``wall_time_s``: the
    seconds of all of them. ``report``: the folder's ``report.html``, or None where it was not
    written. ``summary``: the whole summary.json.
    """

    folder: Path
    n_trajectories: int
    dynamics: str
    headline: Headline
    points: list[StudyPoint]
    fractions: dict[str, Fraction]
    uncertified: dict[str, Fraction]
    stop_reasons: dict[str, int]
    transition_states: list[TransitionStateRecord]
    diagnosis: list[Diagnosis]
    timings: dict[str, float]
    wall_time_s: float
    report: Path | None
    summary: dict[str, Any]

    @classmethod
    def from_summary(cls, folder: str | Path, summary: dict, *, timings: Mapping[str, float] | None = None,
                     report: str | Path | None = None) -> StudyResult:
        """The result of the study in ``folder`` whose summary.json content is ``summary``.
        ``timings``: seconds of phases run after the summary was written (featured spectra, the
        report), added to its ``timings`` and ``wall_time_s``; ``report``: the report written."""
        extra = dict(timings or {})
        wall = summary.get("wall_time_s") or 0.0
        for v in extra.values():
            wall += v
        return cls(
            folder=Path(folder), n_trajectories=int(summary["n_trajectories"]), dynamics=summary.get("dynamics"),
            headline=Headline.from_summary(summary["headline"]),
            points=[StudyPoint.from_row(p) for p in summary["points"]],
            fractions={r["label"]: Fraction.from_row(r) for r in summary["labels"]},
            uncertified={r["stop_reason"]: Fraction.from_row(r) for r in summary.get("uncertified") or []},
            stop_reasons={k: int(v) for k, v in summary["stop_reasons"].items()},
            transition_states=[TransitionStateRecord.from_mapping(t) for t in summary.get("transition_states") or []],
            diagnosis=[Diagnosis(reason=d["reason"], count=int(d["count"]), share=float(d["share"]),
                                 advice=d["advice"]) for d in summary.get("diagnosis") or []],
            timings={**(summary.get("timings") or {}), **extra}, wall_time_s=wall,
            report=None if report is None else Path(report), summary=summary)

    def point(self, point_id: int) -> StudyPoint:
        """The distinct point with id ``point_id``."""
        for p in self.points:
            if p.id == int(point_id):
                return p
        raise KeyError(f"no point with id {point_id} in {self.folder}")

    # ----- compatibility: the summary dict run_study used to return ----------------------------------
    def __getitem__(self, key: str) -> Any:
        """``r[key]`` is ``r.summary[key]``: for code written when run_study returned the summary
        dict (new code reads the attributes)."""
        return self.summary[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.summary)

    def __len__(self) -> int:
        return len(self.summary)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, StudyResult):
            return self.folder == other.folder and self.summary == other.summary and self.timings == other.timings
        if isinstance(other, Mapping):   # as the summary dict compared
            return self.summary == dict(other)
        return NotImplemented

    __hash__ = None   # a view of a mutable dict

    def __repr__(self) -> str:
        h = self.headline
        lowest = ("" if h.lowest_loss is None
                  else f", lowest loss {h.lowest_loss:.10g} ({h.lowest_loss_label}, point {h.lowest_loss_point})")
        return (f"StudyResult(folder={str(self.folder)!r}, {self.n_trajectories} trajectories, "
                f"{len(self.points)} distinct points, DNC {h.dnc_fraction:.1%} "
                f"[{h.dnc_ci_low:.1%}, {h.dnc_ci_high:.1%}]{lowest})")
