"""Cells that differ only in weight decay, advanced as one batch.

The cells of a λ sweep share their parameter layout P, their initialisation and their dynamics;
only λ differs. Run one after another, each cell's unit spends its last stretch with a few slow
rows in a shrinking batch (the tail), and the next cell waits for it. Here the units of such
cells that cover the same trajectory indices run as **one** batched computation: the model
carries λ per row (:meth:`landscape.core.model.DeepUFM.with_row_lambdas`), the driver keeps the
working batch full by refilling from every cell's pending rows, and each cell gets back exactly
the rows of its own starts (each row's trajectory is the one it has alone, up to the round-off of
batched kernels: ``tests/test_flows.py``). Every cell draws its own starts from its own seed, so
cells with the same seed start from the same points (common random numbers).

:class:`LambdaBatchExecutor` is the in-process executor of a sweep that does this: the sweep announces
every cell's pending units (``prefetch``); when a cell asks for a unit, the executor computes
that unit together with the same-index units of every other announced cell of its group
(:func:`lambda_batch_key`) and keeps their results until those cells ask. The cells still commit one
after another, each in its own database; an interrupted sweep recomputes the units it had
computed for later cells but not yet stored. The saddle search is not pooled (it is a
critical-point finder per cell, not counted in fractions).
"""
from __future__ import annotations

import json
from typing import Any, Callable, Iterable, Iterator

import torch

from ..core.init import draw_starts
from ..engines import TrajectoryResults, run_pipeline
from .config import StudyConfig
from .executor_base import Executor, InProcessExecutor, Unit, _check_unique
from .work import run_trajectories, study_model, study_working_batch

#: Model fields that may differ between the cells of one λ batch.
LAMBDA_FIELDS = ("lambda", "lambda_H", "lambda_W")


def lambda_batch_key(cfg: StudyConfig) -> str:
    """What cells must share to advance as one batch: the model without its weight decay, the
    initialisation, the stages and where they run (JSON text)."""
    d = cfg.to_dict()
    model = {k: v for k, v in d["model"].items() if k not in LAMBDA_FIELDS}
    return json.dumps({"model": model, "init": d["init"], "stages": d["stages"], "device": d["device"],
                       "compile": d["compile"], "working_batch": d["working_batch"]}, sort_keys=True)


def run_trajectories_lambda_batch(cfgs: list[StudyConfig], indices) -> list[TrajectoryResults]:
    """Main trajectories ``indices`` of every study in ``cfgs`` (one :func:`lambda_batch_key`) as one
    batch; returns one :class:`TrajectoryResults` per study, as
    :func:`landscape.study.work.run_trajectories` would for that study alone (up to round-off)."""
    if not cfgs:
        return []
    keys = {lambda_batch_key(c) for c in cfgs}
    if len(keys) != 1:
        raise ValueError("run_trajectories_lambda_batch: the studies differ in more than their weight decay")
    idx = list(indices)
    model = study_model(cfgs[0])
    theta0 = torch.cat([draw_starts(c.model, c.init, c.seed, idx, device=model.device) for c in cfgs])
    lams = torch.tensor([c.model.lambdas for c in cfgs], dtype=torch.float64).repeat_interleave(len(idx), dim=0)
    res = run_pipeline(model.with_row_lambdas(lams), theta0, list(cfgs[0].stages),
                       working_batch=study_working_batch(cfgs[0], model, len(theta0)))
    n = len(idx)
    return [res.take(range(i * n, (i + 1) * n)) for i in range(len(cfgs))]


def _cfg_text(cfg: StudyConfig) -> str:
    return json.dumps(cfg.to_dict(), sort_keys=True)


class LambdaBatchExecutor(Executor):
    """In-process executor that runs announced same-index units of cells of one
    :func:`lambda_batch_key` as one batch (module docstring); every other unit runs as
    :class:`~landscape.study.executors.InProcessExecutor` runs it."""

    name = "lambda-batch"

    def __init__(self):
        self._plain = InProcessExecutor()
        #: (λ-batch key, indices) → {cfg text: cfg} of announced main-trajectory units not yet computed
        self._pending: dict[tuple[str, tuple[int, ...]], dict[str, StudyConfig]] = {}
        #: (cfg text, indices) → results computed with another cell's unit, kept until asked for
        self._ready: dict[tuple[str, tuple[int, ...]], TrajectoryResults] = {}
        #: λ batches computed so far
        self.lambda_batches = 0

    def submit(self, fn: Callable, *args) -> Any:
        return self._plain.submit(fn, *args)

    def prefetch(self, fn: Callable, units: Iterable[Unit]) -> None:
        if fn is not run_trajectories:
            return
        for u in units:
            cfg, idx = u.args
            if cfg.model.unregularised:   # a λ = 0 cell runs its own study (landscape.study.lambda0)
                continue
            self._pending.setdefault((lambda_batch_key(cfg), _indices(idx)), {})[_cfg_text(cfg)] = cfg

    def drop_prefetched(self) -> None:
        self._pending.clear()
        self._ready.clear()

    def pools(self, cfg: StudyConfig) -> bool:
        """Whether a unit of ``cfg`` is announced together with another cell's, or was computed
        with one: the study must then take its units from this executor."""
        me = _cfg_text(cfg)
        return (any(c == me for c, _ in self._ready)
                or any(me in group and len(group) > 1 for group in self._pending.values()))

    def _compute(self, cfg: StudyConfig, idx) -> TrajectoryResults:
        idx = _indices(idx)
        group = self._pending.pop((lambda_batch_key(cfg), idx), {})
        group.pop(_cfg_text(cfg), None)
        if not group:
            return run_trajectories(cfg, list(idx))
        results = run_trajectories_lambda_batch([cfg, *group.values()], idx)
        self.lambda_batches += 1
        for text, res in zip(group, results[1:]):
            self._ready[(text, idx)] = res
        return results[0]

    def map_units(self, fn: Callable, units: Iterable[Unit]) -> Iterator[tuple[Unit, Any]]:
        units = list(units)
        _check_unique(units)
        for u in units:
            if fn is not run_trajectories:
                yield u, fn(*u.args)
                continue
            cfg, idx = u.args
            ready = self._ready.pop((_cfg_text(cfg), _indices(idx)), None)
            yield u, ready if ready is not None else self._compute(cfg, idx)

    def describe(self) -> dict:
        return {**super().describe(), "lambda-batch": "cells that differ only in λ advance as one batch (per-row λ)"}


def _indices(idx) -> tuple[int, ...]:
    return tuple(int(i) for i in idx)
