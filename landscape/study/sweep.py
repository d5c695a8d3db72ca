"""Sweeps: a grid of studies, one per cell, and the prevalence table.

A **sweep file** is a study file (same tables as ``landscape/configs/default.toml``) plus a
``[sweep]`` table mapping override keys to lists of values::

    [sweep]
    d = [8, 16, 32]
    lambda = [0.0009765625, 0.001953125]
    "init.scale_H" = [0.5, 1.0]

Keys use the syntax of ``--set`` (:func:`landscape.config.apply_overrides`): model fields as in
MODEL.md (``K``, ``n``, ``d``, ``L``, ``lambda``, ``activation``, ``loss``), top-level fields
(``trajectories``, ``seed``, …), ``init.FIELD``, ``stages.I.FIELD``, and ``lr``/``engine`` for
the first stage. The grid is the Cartesian product of the lists (first key slowest). Every cell
uses the base ``seed``, so cells of the same shape start from the same points (common random
numbers make differences between cells sharper).

Command-line overrides (``--set KEY=VALUE``) apply to the base study, i.e. to every cell;
``--set sweep.KEY=[v1, v2]`` replaces (or adds) an axis. Overriding a key that is an axis without
the ``sweep.`` prefix is an error, because the grid would silently undo it.

Results (``OUT``): ``cells/<cell name>/`` is each cell's study folder (written by
:func:`landscape.study.run_study`); ``sweep.json`` the effective sweep (base study, axes), the
executor and one record per cell; ``prevalence.csv`` one row per cell (:data:`PREVALENCE_FIELDS`).
A cell's name is its overrides, ``key=value`` joined by ``,`` (e.g. ``d=16,lambda=0.001``), with
characters outside ``[A-Za-z0-9._=+,-]`` replaced by ``-``. Running a sweep again into the same
``OUT`` skips finished cells and resumes unfinished ones; ``OUT`` holding a different sweep is an
error.

Executors (:mod:`landscape.executors`): in-process, each cell is one call of ``run_study``; by
default (:class:`landscape.study.lambda_batch.LambdaBatchExecutor`) the same-index units of cells that differ
only in λ (a λ axis) run as one batch with λ per row, the first of those cells to ask computing
them for all, so no cell runs its tail alone. With a cluster executor every unfinished cell's chunks of trajectories are handed
to the cluster at once (``prefetch``), then this process runs ``run_study`` cell after cell with
the executor: each picks up its chunks' results as they arrive and writes its own database (this
process is the only writer). Cells are written one at a time because the point analysis uses
torch's forward-mode autodiff, whose state is global to the process.
"""
from __future__ import annotations

import csv
import io
import json
import time
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ..core.init import draw_starts
from ..core.validate import SpecError
from ..io.results import FILES, SWEEP_FILES, atomic_write_text, own_subfolder, read_json, write_json
from ..io.store import StudyStore, resolve_path
from ..analysis.labels import DNC
from .config import StudyConfig
from .sweep_config import SWEEP_TABLE, Cell, SweepConfig, cell_name, load_sweep  # noqa: F401  (re-exported)
from .executors import Executor, InProcessExecutor, Unit
from .lambda_batch import LambdaBatchExecutor
from .lambda0 import end_labels, is_lambda0_folder, prevalence_row as lambda0_row
from .result import CrossCheck, StudyResult
from .run import run_study
from .stats import paired_counts, paired_difference, proportion
from .summary import environment, main_trajectories
from .work import chunks, run_saddle_search, run_trajectories, saddle_chunks

#: Label of deep-neural-collapse points (:data:`landscape.analysis.labels.DNC`).
DNC_LABEL = DNC.name
#: Confidence level of the intervals in the prevalence table.
CONFIDENCE = 0.95
#: Fixed columns of ``prevalence.csv``; then one column per axis (after ``cell``), and for every
#: label seen anywhere in the sweep (sorted) ``count_<label>`` and ``frac_<label>``.
PREVALENCE_FIELDS = ("cell", "n_trajectories", "dnc_count", "dnc_fraction", "dnc_ci_low", "dnc_ci_high",
                     "uncertified_count", "uncertified_fraction", "uncertified_ci_low", "uncertified_ci_high",
                     "mean_logit_rank", "n_distinct_points", "dynamics")
#: Further columns (after the fixed ones; JSON objects where a cell holds several values), not
#: required of a table written by 0.2: the logit-rank distribution over certified starts
#: {rank: count}, the uncertified starts by stop reason {reason: count}, the Good–Turing unseen
#: mass (the chance the next start reaches a point none of these did), the cell's wall time (of
#: the run that finished it) and the time its stored trajectories took (over every run that wrote
#: them: :func:`landscape.study.summary.trajectory_time`), and where the cell has a ``[cross_check]``
#: (another dynamics on a subsample of its starts) its agreement record: the check's dynamics,
#: starts, agreement fraction, both DNC fractions with intervals and whether they disagree
#: (:func:`landscape.study.summary.cross_check_record`; empty without a check).
PREVALENCE_EXTRA_FIELDS = ("logit_rank_counts", "uncertified_by_reason", "unseen_mass", "wall_time_s",
                           "trajectory_time_s", "check")
# ----------------------------------------------------------------------------------------------
# Prevalence table
# ----------------------------------------------------------------------------------------------
def prevalence_row(cell: Cell, summary: Mapping, confidence: float = CONFIDENCE) -> dict:
    """One row of the prevalence table from a cell's study summary.

    ``summary`` is a study's ``summary.json``: ``n_trajectories``, ``labels`` (rows with ``label``
    and ``count``), ``uncertified`` (rows with ``count``) and ``points`` (rows with
    ``basin_count`` and ``rank_pattern``). Every fraction has all the cell's starts as
    denominator (:func:`landscape.study.stats.proportion`). ``dnc_*``: starts that certified at a
    point labelled ``DNC``; ``uncertified_*``: starts that did not certify (any stop reason);
    ``mean_logit_rank``: mean of the numerical rank of the logits Z (last entry of the point's rank
    pattern) over the certified starts (NaN when none certified); ``n_distinct_points``: distinct
    points reached by at least one start; ``count_<label>``, ``frac_<label>`` per label.
    """
    if summary.get("kind") == "lambda0":   # a λ = 0 cell: certified directions, not points
        return lambda0_row(cell, summary, confidence)
    r = StudyResult.from_summary(".", summary)
    n = r.n_trajectories
    by_label = {lab: f.count for lab, f in r.fractions.items()}
    dnc = proportion(by_label.get(DNC_LABEL, 0), n, confidence)
    unc = proportion(sum(u.count for u in r.uncertified.values()), n, confidence)
    reached = [p for p in r.points if p.basin_count > 0]
    ranked = [(p.basin_count, p.rank_pattern[-1]) for p in reached]
    n_ranked = sum(c for c, _ in ranked)
    rank_counts: dict[str, int] = {}
    for c, k in sorted(ranked, key=lambda x: x[1]):
        rank_counts[str(k)] = rank_counts.get(str(k), 0) + c
    by_reason = {reason: u.count for reason, u in r.uncertified.items()}
    ci = {lab: proportion(c, n, confidence) for lab, c in by_label.items()}
    return {"cell": cell.name, **cell.overrides, "n_trajectories": n,
            "logit_rank_counts": rank_counts, "uncertified_by_reason": by_reason,
            "unseen_mass": None if r.unseen is None else r.unseen.estimate, "wall_time_s": summary.get("wall_time_s"),
            "trajectory_time_s": r.trajectory_time_s, "check": _cross_check_cell(r.cross_check),
            **{f"ci_low_{lab}": v["ci_low"] for lab, v in ci.items()},
            **{f"ci_high_{lab}": v["ci_high"] for lab, v in ci.items()},
            **{f"dnc_{k}": v for k, v in dnc.items()}, **{f"uncertified_{k}": v for k, v in unc.items()},
            "mean_logit_rank": sum(c * k for c, k in ranked) / n_ranked if n_ranked else float("nan"),
            "n_distinct_points": len(reached), "dynamics": cell.config.describe_dynamics(),
            **{f"count_{lab}": c for lab, c in by_label.items()},
            **{f"frac_{lab}": c / n for lab, c in by_label.items()}}


def _cross_check_cell(check: CrossCheck | None) -> dict:
    """The prevalence table's ``check`` entry from a summary's cross-check record ({} without one)."""
    if check is None:
        return {}
    return {"dynamics": check.dynamics, "n": check.n, "agree": check.agree,
            "agreement": check.agreement.fraction,
            "main_dnc": [check.main_dnc.fraction, check.main_dnc.ci_low, check.main_dnc.ci_high],
            "check_dnc": [check.check_dnc.fraction, check.check_dnc.ci_low, check.check_dnc.ci_high],
            "disagree": check.disagree}


def write_prevalence_csv(path: str | Path, rows: list[dict], axes: Iterable[str]) -> None:
    """Write ``rows`` (from :func:`prevalence_row`) as CSV: ``cell``, the axes, the fixed fields,
    the extra fields, then ``count_<label>``, ``frac_<label>`` and its 95% Wilson interval
    ``ci_low_<label>``, ``ci_high_<label>`` for every label of any row (0 where a cell never
    reached it)."""
    labels = sorted({k[len("frac_"):] for r in rows for k in r if k.startswith("frac_")})
    cols = ["cell", *axes, *PREVALENCE_FIELDS[1:], *PREVALENCE_EXTRA_FIELDS, *(f"count_{lab}" for lab in labels),
            *(f"frac_{lab}" for lab in labels), *(f"ci_low_{lab}" for lab in labels), *(f"ci_high_{lab}" for lab in labels)]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        full = dict(r)
        for lab in labels:   # a label this cell never reached: 0 of n, and its Wilson interval
            if f"frac_{lab}" not in full:
                p0 = proportion(0, int(r["n_trajectories"]))
                full.update({f"ci_low_{lab}": p0["ci_low"], f"ci_high_{lab}": p0["ci_high"]})
        w.writerow({c: (json.dumps(full[c]) if isinstance(full.get(c), (list, dict)) else full.get(c, 0)) for c in cols})
    atomic_write_text(path, buf.getvalue())


def read_prevalence_csv(path: str | Path) -> list[dict]:
    """The rows of a ``prevalence.csv`` as dicts of strings; a damaged file (not UTF-8, missing the
    fixed columns, ragged rows) is a ValueError naming it."""
    try:
        with Path(path).open(newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as exc:
        raise ValueError(f"{path} is not a readable prevalence table ({exc}); re-run the sweep command to rewrite it") from None
    missing = [c for c in PREVALENCE_FIELDS if c not in header]
    if missing or any(None in r or any(v is None for v in r.values()) for r in rows):
        what = f"missing column(s) {missing}" if missing else "rows of the wrong length"
        raise ValueError(f"{path} is damaged ({what}); re-run the sweep command to rewrite it")
    return rows


# ----------------------------------------------------------------------------------------------
# Paired differences between cells that share their starts
# ----------------------------------------------------------------------------------------------
def shares_starts(a: Cell, b: Cell) -> bool:
    """Whether cells ``a`` and ``b`` start trajectory i from the same θ for every i (common random
    numbers: same seed, initialisation and parameter layout, e.g. cells that differ only in λ).
    Decided by drawing: the first and last start of both cells must be equal bit for bit."""
    ca, cb = a.config, b.config
    if ca.model.P != cb.model.P or ca.trajectories != cb.trajectories:
        return False
    idx = sorted({0, ca.trajectories - 1})
    sa = draw_starts(ca.model, ca.init, ca.seed, idx)
    sb = draw_starts(cb.model, cb.init, cb.seed, idx)
    return bool((sa == sb).all())


def cell_end_labels(cell_dir: str | Path) -> dict[int, str | None]:
    """{trajectory index: label of the point it certified at (None: uncertified or unlabelled)}
    over the main trajectories of the study in ``cell_dir`` (a λ = 0 cell: its certified directions)."""
    if is_lambda0_folder(cell_dir):
        return end_labels(cell_dir)
    with StudyStore.open(resolve_path(cell_dir), readonly=True) as store:
        labels = {p.id: p.label for p in store.points()}
        return {t.idx: (labels.get(t.point_id) if t.certified else None) for t in main_trajectories(store)}


def paired_rows(sweep: SweepConfig, out_dir: str | Path, finished: Iterable[str], label: str = DNC_LABEL,
                confidence: float = CONFIDENCE) -> list[dict]:
    """Paired differences of the fraction of starts ending at ``label`` between neighbouring cells
    of each axis (the other axes fixed) that share their starts (:func:`shares_starts`): the same
    start i is counted in both cells, so the difference is of paired outcomes, with Newcombe's
    paired interval (:func:`landscape.study.stats.paired_difference`). One row per neighbouring
    pair of finished cells: ``axis``, ``first``, ``second`` (cell names, in axis order), the 2×2
    counts ``both``, ``first_only``, ``second_only``, ``neither``, and ``difference`` (first −
    second), ``ci_low``, ``ci_high``, ``n``, ``label``."""
    done = set(finished)
    out, cache = [], {}

    def labels_of(c: Cell) -> dict:
        if c.name not in cache:
            cache[c.name] = cell_end_labels(Path(out_dir) / SWEEP_FILES["cells"] / c.name)
        return cache[c.name]

    for ax, values in sweep.axes.items():
        others = [o for o in sweep.axes if o != ax]
        groups: dict[str, list[Cell]] = {}
        for c in sweep.cells:
            groups.setdefault(json.dumps([c.overrides[o] for o in others]), []).append(c)
        for cells in groups.values():
            cells = sorted(cells, key=lambda c: list(values).index(c.overrides[ax]))
            for a, b in zip(cells, cells[1:]):
                if a.name not in done or b.name not in done or not shares_starts(a, b):
                    continue
                la, lb = labels_of(a), labels_of(b)
                common = sorted(set(la) & set(lb))
                tab = paired_counts((la[i] == label for i in common), (lb[i] == label for i in common))
                out.append({"axis": ax, "first": a.name, "second": b.name, "label": label, **tab,
                            **paired_difference(**tab, confidence=confidence)})
    return out


# ----------------------------------------------------------------------------------------------
# Running
# ----------------------------------------------------------------------------------------------
def _normalised(study: dict) -> dict:
    """A stored study configuration as this version reads it (fields added since with their
    defaults, which keep the old behaviour), so a folder written by an earlier version resumes;
    the raw dict where it does not parse."""
    try:
        return json.loads(json.dumps(StudyConfig.from_dict(study).to_dict()))
    except (SpecError, TypeError, ValueError, KeyError):
        return study


def _finished_summary(cell: Cell, cell_dir: Path) -> dict | None:
    """The cell's summary if its study finished with this exact configuration, else None."""
    summary_path, config_path = cell_dir / FILES["summary"], cell_dir / FILES["config"]
    if not (summary_path.is_file() and config_path.is_file()):
        return None
    if _normalised(read_json(config_path)) != json.loads(json.dumps(cell.config.to_dict())):
        raise SpecError(f"{cell_dir} holds a study with a different configuration than cell {cell.name}; "
                        "use another --out")
    summary = read_json(summary_path)
    return summary if summary.get("n_trajectories") == cell.config.trajectories else None


def prefetch_cell(cell: Cell, cell_dir: Path, executor: Executor) -> None:
    """Hand the cell's pending trajectory chunks (main and saddle search, as
    :func:`landscape.study.run_study` will split them) to ``executor`` ahead of time."""
    cfg, db = cell.config, resolve_path(cell_dir)
    done: set[int] = set()
    if db.is_file():
        with StudyStore.open(db, check=False, readonly=True) as store:
            done = set(store.completed_indices().tolist())
    for fn, todo in ((run_trajectories, chunks(cfg, done)), (run_saddle_search, saddle_chunks(cfg, done))):
        executor.prefetch(fn, [Unit(str(cell_dir), c, (cfg, idx)) for c, idx in enumerate(todo)])


def run_cell(cell: Cell, cell_dir: Path, executor: Executor, progress: bool) -> dict:
    """Run (or resume) one cell's study into ``cell_dir``; return its summary. In-process: one
    call of :func:`landscape.study.run_study`; otherwise run_study takes its chunks from
    ``executor``."""
    if isinstance(executor, InProcessExecutor) or (isinstance(executor, LambdaBatchExecutor)
                                                   and not executor.pools(cell.config)):
        return run_study(cell.config, cell_dir, progress=progress)
    return run_study(cell.config, cell_dir, progress=progress, executor=executor)


def run_sweep(sweep: SweepConfig, out_dir: str | Path, *, executor: Executor | None = None,
              progress: bool = True, on_cell: Callable[[Cell, dict, str], None] | None = None) -> dict:
    """Run every cell of ``sweep`` into ``out_dir`` (see the module docstring for the layout).

    ``executor``: where trajectory chunks run (default :class:`landscape.study.lambda_batch.LambdaBatchExecutor`:
    in-process, cells that differ only in λ as one batch).
    ``on_cell(cell, summary, status)`` hears each cell as it finishes (``status`` ``"ran"`` or
    ``"skipped"`` for a cell finished by an earlier run). Returns the content of ``sweep.json``:
    ``{"sweep_config", "executor", "cells": [{name, overrides, dir, status, n_trajectories,
    wall_time_s}], "prevalence": [rows], "retried_units": {unit: attempts}, "wall_time_s"}``.
    """
    executor = executor or LambdaBatchExecutor()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cells_dir = own_subfolder(out, SWEEP_FILES["cells"])
    for cell in sweep.cells:   # no cell study is written through a planted link
        if (cells_dir / cell.name).is_symlink():
            own_subfolder(cells_dir, cell.name)
    sweep_json = out / SWEEP_FILES["sweep"]
    effective = json.loads(json.dumps(sweep.to_dict()))
    if sweep_json.is_file():
        try:
            previous = read_json(sweep_json)
            if not isinstance(previous, dict):
                raise ValueError(f"{sweep_json} is not a sweep record (a JSON object)")
        except ValueError as exc:
            raise SpecError(f"{exc}; the finished cells are kept: move {sweep_json} away and run the same command "
                            "to rebuild it") from None
        previous = previous.get("sweep_config")
        if isinstance(previous, dict) and previous != effective:
            try:
                previous = json.loads(json.dumps(SweepConfig.from_dict(previous).to_dict()))
            except (SpecError, TypeError, ValueError, KeyError):
                pass
        if previous != effective:
            raise SpecError(f"{out} already holds a different sweep (its sweep.json differs); "
                            "use another --out, or the same file and --set options to resume it")
    t0 = time.perf_counter()
    summaries: dict[str, dict] = {}
    status: dict[str, str] = {}
    todo = []
    for cell in sweep.cells:
        done = _finished_summary(cell, out / SWEEP_FILES["cells"] / cell.name)
        if done is None:
            todo.append(cell)
        else:
            summaries[cell.name], status[cell.name] = done, "skipped"
            if on_cell:
                on_cell(cell, done, "skipped")

    def record() -> dict:
        cells = [{"name": c.name, "overrides": c.overrides, "dir": f"{SWEEP_FILES['cells']}/{c.name}",
                  "status": status.get(c.name, "pending"),
                  "n_trajectories": summaries[c.name]["n_trajectories"] if c.name in summaries else None,
                  "wall_time_s": summaries[c.name].get("wall_time_s") if c.name in summaries else None}
                 for c in sweep.cells]
        rows = [prevalence_row(c, summaries[c.name]) for c in sweep.cells if c.name in summaries]
        return {"sweep_config": effective, "executor": executor.describe(), "environment": environment(),
                "confidence": CONFIDENCE, "cells": cells, "prevalence": rows,
                "paired": paired_rows(sweep, out, summaries),
                "retried_units": executor.retried(), "wall_time_s": time.perf_counter() - t0}

    def write_tables() -> dict:
        """sweep.json and, once a cell has finished, prevalence.csv: rewritten after every cell, so
        a sweep stopped at any moment leaves the tables of every cell it finished."""
        rec = record()
        write_json(sweep_json, rec)
        if rec["prevalence"]:
            write_prevalence_csv(out / SWEEP_FILES["prevalence"], rec["prevalence"], sweep.axes)
        return rec

    write_tables()

    def finish(cell: Cell, summary: dict) -> None:
        summaries[cell.name], status[cell.name] = summary, "ran"
        write_tables()
        if on_cell:
            on_cell(cell, summary, "ran")

    try:
        for cell in todo:
            prefetch_cell(cell, out / SWEEP_FILES["cells"] / cell.name, executor)
        for cell in todo:
            finish(cell, run_cell(cell, out / SWEEP_FILES["cells"] / cell.name, executor, progress))
    finally:
        executor.drop_prefetched()
    return write_tables()
