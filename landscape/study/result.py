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
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.jsonsafe import optional_float, optional_int
from ..io.records import TransitionStateRecord

#: The fields of a transition-state row this version reads (a summary written by another version
#: may carry more; they are left out).
_TS_FIELDS = frozenset(f.name for f in fields(TransitionStateRecord))


@dataclass(frozen=True)
class Fraction:
    """A count of starts with its share and Wilson interval: in a study's summary.json the
    ``labels`` and ``uncertified`` rows (``count`` of ``n_trajectories`` main starts, ``fraction`` =
    count / n_trajectories, interval [``ci_low``, ``ci_high``] at the summary's confidence;
    ``n_points``: for a label, how many distinct points carry it, None for a stop reason); in a
    λ = 0 summary (:mod:`landscape.study.lambda0_summary`) the certified, NC, label and direction
    counts, of the population each field names."""

    count: int
    fraction: float
    ci_low: float
    ci_high: float
    n_points: int | None = None

    @classmethod
    def from_row(cls, row: Mapping) -> Fraction:
        return cls(int(row["count"]), optional_float(row.get("fraction")), optional_float(row.get("ci_low")),
                   optional_float(row.get("ci_high")), optional_int(row.get("n_points")))


@dataclass(frozen=True)
class BasinBarrier:
    """The lowest transition-state barrier out of one minimum that holds starts (a summary.json
    ``headline.basin_barriers`` row): the minimum (``point_id``, ``label``, ``loss``,
    ``basin_count``, ``fraction``), and ``barrier`` = saddle loss − its loss through transition
    state ``saddle`` to minimum ``to`` (``to_label``); ``barrier``, ``to``, ``saddle`` None where
    no transition state joins it."""

    point_id: int
    label: str | None
    loss: float
    basin_count: int
    fraction: float | None
    barrier: float | None
    to: int | None
    to_label: str | None
    saddle: int | None

    @classmethod
    def from_row(cls, row: Mapping) -> BasinBarrier:
        return cls(point_id=int(row["point_id"]), label=row.get("label"), loss=float(row["loss"]),
                   basin_count=int(row["basin_count"]), fraction=optional_float(row.get("fraction")),
                   barrier=optional_float(row.get("barrier")), to=optional_int(row.get("to")), to_label=row.get("to_label"),
                   saddle=optional_int(row.get("saddle")))


@dataclass(frozen=True)
class Unseen:
    """The Good–Turing estimate of the unseen mass (summary.json ``unseen``): ``n1`` minima reached
    by exactly one of ``n`` certified starts, ``estimate`` = n1/n (None without starts)."""

    n1: int | None
    n: int | None
    estimate: float | None

    @classmethod
    def from_row(cls, row: Mapping | None) -> Unseen | None:
        if not row:
            return None
        return cls(optional_int(row.get("n1")), optional_int(row.get("n")), optional_float(row.get("estimate")))


@dataclass(frozen=True)
class Accumulation:
    """The accumulation curve (summary.json ``accumulation``): distinct minima ``n_distinct[i]``
    seen among the first ``n_trajectories[i]`` starts, in index order."""

    n_trajectories: list[int]
    n_distinct: list[int]

    @classmethod
    def from_row(cls, row: Mapping | None) -> Accumulation | None:
        if not row:
            return None
        return cls([int(t) for t in row["n_trajectories"]], [int(k) for k in row["n_distinct"]])


@dataclass(frozen=True)
class TreeNode:
    """One node of the disconnectivity tree (a ``tree.json`` node, :func:`landscape.study.graph.tree_to_json`):
    ``id`` (``leaf:3``, ``merge:0``), ``type`` (``leaf`` or ``merge``), ``level`` (the minimum's
    loss, or the joining saddle's), ``children`` (node ids), ``members`` (point ids of the minima
    below), ``basin_count`` and ``fraction`` of those; a leaf's ``point_id`` and ``label``; a
    merge's ``saddles``, ``transition_states`` and ``barriers`` (point id → barrier from it)."""

    id: str
    type: str
    level: float
    children: list[str]
    members: list[int]
    basin_count: int
    fraction: float | None
    point_id: int | None = None
    label: str | None = None
    saddles: list | None = None
    transition_states: list | None = None
    barriers: dict | None = None

    @classmethod
    def from_row(cls, row: Mapping) -> TreeNode:
        return cls(id=str(row["id"]), type=str(row["type"]), level=float(row["level"]),
                   children=[str(c) for c in row.get("children") or []],
                   members=[int(m) for m in row.get("members") or []], basin_count=int(row.get("basin_count") or 0),
                   fraction=optional_float(row.get("fraction")), point_id=optional_int(row.get("point_id")), label=row.get("label"),
                   saddles=row.get("saddles"), transition_states=row.get("transition_states"),
                   barriers=row.get("barriers"))


@dataclass(frozen=True)
class DisconnectivityTree:
    """A study's disconnectivity tree (``tree.json``): ``roots`` (node ids, lowest first) and
    ``nodes`` (id → :class:`TreeNode`, by level)."""

    roots: list[str]
    nodes: dict[str, TreeNode]

    @classmethod
    def from_json(cls, tree: Mapping) -> DisconnectivityTree:
        nodes = [TreeNode.from_row(n) for n in tree.get("nodes") or []]
        return cls(roots=[str(r) for r in tree.get("roots") or []], nodes={n.id: n for n in nodes})


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
    dnc_barrier: float | None = None
    dnc_barrier_saddle: int | None = None
    dnc_barrier_to: int | None = None
    dnc_barrier_to_label: str | None = None
    basin_barriers: tuple[BasinBarrier, ...] = ()

    @classmethod
    def from_summary(cls, h: Mapping) -> Headline:
        c = h.get("certified")
        return cls(dnc_fraction=optional_float(h["dnc_fraction"]), dnc_ci_low=optional_float(h["dnc_ci_low"]),
                   dnc_ci_high=optional_float(h["dnc_ci_high"]),
                   certified=None if not isinstance(c, Mapping) else CertifiedDNC(**{k: c.get(k) for k in (
                       "n_certified", "dnc", "fraction", "ci_low", "ci_high")}),
                   lowest_loss=h.get("lowest_loss"), lowest_loss_label=h.get("lowest_loss_label"),
                   lowest_loss_point=h.get("lowest_loss_point"), dnc_barrier=optional_float(h.get("dnc_barrier")),
                   dnc_barrier_saddle=optional_int(h.get("dnc_barrier_saddle")), dnc_barrier_to=optional_int(h.get("dnc_barrier_to")),
                   dnc_barrier_to_label=h.get("dnc_barrier_to_label"),
                   basin_barriers=tuple(BasinBarrier.from_row(r) for r in h.get("basin_barriers") or []))


@dataclass(frozen=True)
class TheoryMatch:
    """How a point compares with the closed forms of its structure (a point's ``theory_match``):
    ``matched``, the ``pattern`` it matched, its closed-form ``loss`` and the point's
    ``loss_difference`` from it, or the ``reason`` it matched none."""

    matched: bool
    pattern: str | None = None
    loss_difference: float | None = None
    reason: str | None = None
    loss: float | None = None

    @classmethod
    def from_row(cls, row: Mapping | None) -> TheoryMatch | None:
        if not row:
            return None
        return cls(row.get("matched") is True, row.get("pattern"), optional_float(row.get("loss_difference")),
                   row.get("reason"), optional_float(row.get("loss")))


@dataclass(frozen=True)
class StudyPoint:
    """One distinct critical point (a summary.json ``points`` row): what it is (``kind``:
    minimum, saddle, degenerate, …; ``label``: DNC, pairs, zero, other; ``type``), its loss and
    ‖∇L‖, its ``rank_pattern`` (numerical rank of each layer's features, the logits last), its
    Hessian ``index`` and ``nullity`` (``symmetry_zero_modes`` + ``excess_zero_modes``) and
    ``smallest_nonzero_eigenvalue``, how it was checked (``verified``, ``index_is_lower_bound``,
    ``lanczos_converged``, ``symmetry_verified``), its :class:`TheoryMatch`, and how many main
    starts reached it (``basin_count``, ``fraction`` with its interval; None where no start was
    counted). ``record`` is the whole row (collapse metrics and the rest)."""

    id: int
    kind: str
    label: str
    loss: float
    grad_norm: float | None
    index: int | None
    nullity: int | None
    basin_count: int
    fraction: float | None
    ci_low: float | None
    ci_high: float | None
    record: Mapping[str, Any]
    rank_pattern: list[int] | None = None
    symmetry_zero_modes: int | None = None
    excess_zero_modes: int | None = None
    type: str | None = None
    verified: bool = True
    index_is_lower_bound: bool = False
    lanczos_converged: bool | None = None
    symmetry_verified: bool | None = None
    smallest_nonzero_eigenvalue: float | None = None
    theory_match: TheoryMatch | None = None

    @classmethod
    def from_row(cls, row: Mapping) -> StudyPoint:
        rp = row.get("rank_pattern")
        return cls(id=int(row["id"]), kind=row.get("kind"), label=row.get("label"), loss=float(row["loss"]),
                   grad_norm=optional_float(row.get("grad_norm")), index=optional_int(row.get("index")),
                   nullity=optional_int(row.get("nullity")), basin_count=int(row.get("basin_count") or 0),
                   fraction=optional_float(row.get("fraction")), ci_low=optional_float(row.get("ci_low")),
                   ci_high=optional_float(row.get("ci_high")), record=row,
                   rank_pattern=None if rp is None else [int(r) for r in rp],
                   symmetry_zero_modes=optional_int(row.get("symmetry_zero_modes")),
                   excess_zero_modes=optional_int(row.get("excess_zero_modes")), type=row.get("type"),
                   verified=bool(row.get("verified", True)), index_is_lower_bound=bool(row.get("index_is_lower_bound")),
                   lanczos_converged=row.get("lanczos_converged"), symmetry_verified=row.get("symmetry_verified"),
                   smallest_nonzero_eigenvalue=optional_float(row.get("smallest_nonzero_eigenvalue")),
                   theory_match=TheoryMatch.from_row(row.get("theory_match")))


@dataclass(frozen=True)
class SaddleVisit:
    """A saddle the main dynamics passed near (a summary.json ``saddle_visits`` row): a finisher
    stopped there and the trajectory was continued past it. ``point_id``, its ``label``, ``index``
    and ``loss``; ``n_trajectories`` that stopped there, ``n_visits`` in all, and the iterations they
    ``mean_lingered`` there."""

    point_id: int
    label: str | None
    index: int | None
    loss: float | None
    n_trajectories: int
    n_visits: int | None
    mean_lingered: float

    @classmethod
    def from_row(cls, row: Mapping) -> SaddleVisit:
        return cls(point_id=int(row["point_id"]), label=row.get("label"), index=optional_int(row.get("index")),
                   loss=optional_float(row.get("loss")), n_trajectories=int(row["n_trajectories"]),
                   n_visits=optional_int(row.get("n_visits")), mean_lingered=float(row["mean_lingered"]))


@dataclass(frozen=True)
class ModelShape:
    """The model's size as the summary records it (``config.model``): classes ``K``, samples per
    class ``n``, width ``d`` and depth ``L`` (None where not recorded); ``P`` its parameter count
    (the factor shapes of :attr:`landscape.core.spec.ModelSpec.shapes`: d×Kn, (L−1)·d×d, K×d)."""

    K: int | None
    n: int | None
    d: int | None
    L: int | None

    @classmethod
    def from_row(cls, model: Mapping | None) -> ModelShape:
        model = model or {}
        return cls(*(model.get(k) if isinstance(model.get(k), int) else None for k in ("K", "n", "d", "L")))

    @property
    def P(self) -> int | None:
        if None in (self.K, self.n, self.d, self.L):
            return None
        return self.d * self.K * self.n + (self.L - 1) * self.d * self.d + self.K * self.d


@dataclass(frozen=True)
class Share:
    """``fraction`` of the starts with its Wilson interval [``ci_low``, ``ci_high``] (None where
    there were no starts)."""

    fraction: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def from_row(cls, row: Mapping | None) -> Share:
        row = row or {}
        return cls(optional_float(row.get("fraction")), optional_float(row.get("ci_low")), optional_float(row.get("ci_high")))


@dataclass(frozen=True)
class CrossCheck:
    """How the ``[cross_check]`` dynamics ended from the same starts as the main one (summary.json
    ``check``, :func:`landscape.study.summary.cross_check_record`): over the ``n`` starts both ran,
    ``agree`` certified at the same point (``agreement`` its share), both dynamics' DNC shares
    (``main_dnc``, ``check_dnc``) and whether their paired difference excludes 0 (``disagree``);
    ``dynamics``: the second dynamics in words."""

    dynamics: str
    n: int
    agree: int
    agreement: Share
    main_dnc: Share
    check_dnc: Share
    disagree: bool

    @classmethod
    def from_row(cls, row: Mapping | None) -> CrossCheck | None:
        if not row:
            return None
        return cls(dynamics=str(row["dynamics"]), n=int(row["n"]), agree=int(row["agree"]),
                   agreement=Share.from_row(row.get("agreement")), main_dnc=Share.from_row(row.get("main_dnc")),
                   check_dnc=Share.from_row(row.get("check_dnc")), disagree=bool(row.get("disagree")))


@dataclass(frozen=True)
class Diagnosis:
    """Why a share of the main starts did not certify, and what to change (a summary.json
    ``diagnosis`` row; present only when more than 5% of the starts failed)."""

    reason: str
    count: int
    share: float | None
    advice: str | None


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
    written. ``summary``: the whole summary.json. ``confidence``: the level of every interval;
    ``accumulation`` (:class:`Accumulation`) and ``unseen`` (:class:`Unseen`): how far the starts
    saturate the minima (None in a summary without them); ``n_saddle_connections``: the basin
    graph's edges (descents from saddles); ``config``: the configuration as stored (the file
    layout of :meth:`landscape.study.config.StudyConfig.to_dict`), ``model`` its
    :class:`ModelShape`; ``saddle_visits``: :class:`SaddleVisit` rows; ``trajectory_time_s``: the
    seconds the main trajectories took; ``cross_check``: the :class:`CrossCheck` (None without one).
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
    confidence: float = 0.95
    accumulation: Accumulation | None = None
    unseen: Unseen | None = None
    n_saddle_connections: int | None = None
    config: Mapping[str, Any] | None = None
    model: ModelShape | None = None
    saddle_visits: list[SaddleVisit] = field(default_factory=list)
    trajectory_time_s: float | None = None
    cross_check: CrossCheck | None = None

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
            fractions={str(r.get("label")): Fraction.from_row(r) for r in summary.get("labels") or []},
            uncertified={r["stop_reason"]: Fraction.from_row(r) for r in summary.get("uncertified") or []},
            stop_reasons={k: int(v) for k, v in (summary.get("stop_reasons") or {}).items() if v is not None},
            transition_states=[TransitionStateRecord.from_mapping({k: v for k, v in t.items() if k in _TS_FIELDS})
                               for t in summary.get("transition_states") or []],
            diagnosis=[Diagnosis(reason=d["reason"], count=int(d["count"]), share=optional_float(d.get("share")),
                                 advice=d.get("advice")) for d in summary.get("diagnosis") or []],
            timings={**(summary.get("timings") if isinstance(summary.get("timings"), Mapping) else {}), **extra},
            wall_time_s=wall,
            report=None if report is None else Path(report), summary=summary,
            confidence=float((summary.get("tolerances") or {}).get("confidence", 0.95)),
            accumulation=Accumulation.from_row(summary.get("accumulation")), unseen=Unseen.from_row(summary.get("unseen")),
            n_saddle_connections=optional_int((summary.get("graph") or {}).get("n_edges")), config=summary.get("config"),
            model=ModelShape.from_row((summary.get("config") or {}).get("model")),
            saddle_visits=[SaddleVisit.from_row(r) for r in summary.get("saddle_visits") or []],
            trajectory_time_s=optional_float(summary.get("trajectory_time_s")), cross_check=CrossCheck.from_row(summary.get("check")))

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
