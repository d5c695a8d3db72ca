"""The saddle phase computed beside the trajectories, by a forked executor; results keyed by content.

A study's phases run one after the other (:func:`landscape.study.run.run_study`), but the saddle
search does not depend on the trajectories, and the first descents from the saddles it finds
depend only on those saddles. On a machine with two or more cores :class:`SaddlePrefetch`
submits, when a run starts, one pure unit of work, :func:`compute_saddle_phase`, to an executor
that computes beside this process (:class:`landscape.study.forked.ForkedExecutor`: a forked
child on one thread, this process giving up one of its threads meanwhile), while this process
runs the trajectories. The unit computes:

1. the saddle-search units (:func:`landscape.study.work.run_saddle_search`, a pure function of the
   configuration and the indices);
2. the analysis of every distinct certified end point of those units, in the order the run
   deduplicates them, through a registry of points of its own
   (:class:`landscape.study.points.PointRegistry`, empty at the start: the unit cannot know
   what the trajectories find);
3. for those that are saddles, the first batch of ±ε descents exactly as
   :meth:`landscape.study.run.StudyRun.descend_from_many` builds it (the same directions, seeds
   and batch), and the analysis of the distinct points those descents certify at.

Everything comes back keyed by its content: a unit by its indices, an analysis by the bytes of
θ, the descents by the bytes of their starts. The run takes a result only where its own key
matches exactly (:meth:`unit`, :meth:`analysis`, :meth:`descents`) and computes whatever does
not match itself (a saddle found by the trajectories, a resumed run): a wrong guess costs only
the executor's time, never a different answer from the functions the run would call. Results
differ from a run without it at most by the round-off of the thread count, as between runs at
1 and 2 threads.

The executor never touches the database: this process alone writes it, in the same order as
without it. It is used only where forking gains (:func:`prefetch_possible`: Linux, the CPU, two
threads and two cores), with no executor of the run's own and saddle-search units still to run;
its child is killed whenever the run ends, by an error or an interruption included.
"""
from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import torch

from ..engines import run_pipeline
from .config import resolve_device
from .executor_base import Executor
from .forked import ForkedExecutor, ForkedWorkerError, fork_possible
from .points import PointRegistry
from .work import certified_mask, run_saddle_search, saddle_descent_starts, study_model


def content_key(x) -> str:
    """A key of an array's exact content: dtype, shape and the SHA-1 of its bytes."""
    a = np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
    return f"{a.dtype}{a.shape}" + hashlib.sha1(a.tobytes()).hexdigest()


def prefetch_possible(cfg) -> bool:
    """Whether this machine can compute the saddle phase beside a run of ``cfg`` and gain (module
    docstring: :func:`~landscape.study.forked.fork_possible` and the CPU); the run itself checks
    that it has no executor and saddle-search units still to run."""
    return fork_possible() and resolve_device(cfg.device).type == "cpu"


class SaddlePrefetch:
    """The saddle phase of one run computed ahead (module docstring): :meth:`start`, then
    :meth:`collect` where the saddle phase begins, then the lookups; :meth:`close` in every case.
    ``error``: why nothing came back (the run then computes everything itself)."""

    def __init__(self, executor: Executor):
        self._executor = executor
        self._future = None
        self._units: dict = {}
        self._analyses: dict = {}
        self._descents: dict = {}
        self.error: str | None = None
        self.hits = {"units": 0, "analyses": 0, "descents": 0}

    @classmethod
    def start(cls, cfg, chunks: list[list[int]], executor: Executor | None = None) -> "SaddlePrefetch":
        """Submit :func:`compute_saddle_phase` of the saddle-search units ``chunks`` of ``cfg`` to
        ``executor`` (default: a :class:`~landscape.study.forked.ForkedExecutor`)."""
        self = cls(executor if executor is not None else ForkedExecutor())
        self._future = self._executor.submit(compute_saddle_phase, cfg, [list(c) for c in chunks])
        return self

    def collect(self) -> None:
        """Wait for the results (the unit computes only what the run would compute next) and
        release the executor. A unit that failed leaves nothing, and ``error`` says why."""
        if self._future is None:
            return
        try:
            self._units, self._analyses, self._descents = self._future.result()
        except ForkedWorkerError as exc:
            self.error = str(exc)
        except Exception as exc:  # noqa: BLE001  (an in-process executor's own error: the run computes it)
            self.error = f"{type(exc).__name__}: {exc}"
        finally:
            self.close()

    def close(self) -> None:
        """Stop what still runs and release the executor (its threads restored)."""
        self._future = None
        self._executor.close()

    def unit(self, indices) -> Any:
        """The saddle-search unit ``indices``' results, or None."""
        res = self._units.pop(tuple(int(i) for i in indices), None)
        self.hits["units"] += res is not None
        return res

    def analysis(self, theta) -> Any:
        """The analysis of exactly this θ, or None."""
        a = self._analyses.pop(content_key(theta), None) if self._analyses else None
        self.hits["analyses"] += a is not None
        return a

    def descents(self, starts) -> Any:
        """The descent pipeline's results from exactly these (B, P) starts, or None."""
        res = self._descents.pop(content_key(starts), None) if self._descents else None
        self.hits["descents"] += res is not None
        return res


def compute_saddle_phase(cfg, chunks: list[list[int]]) -> tuple[dict, dict, dict]:
    """The unit of work (module docstring, 1–3): (saddle-search results by their indices,
    analyses by θ's :func:`content_key`, the first descents' results by their starts' key). A
    pure function of ``cfg`` and ``chunks``."""
    model = study_model(cfg)
    units, analyses, descents = {}, {}, {}
    points = PointRegistry(cfg.model, cfg.dedup, cfg.analysis, device=model.device)

    def analyse_new(thetas) -> list:
        """(point id, θ, analysis) of the new distinct points among ``thetas``, each analysis also
        kept under θ's content key."""
        out = []
        for th, (pid, is_new, _) in zip(thetas, points.identify(thetas)):
            if is_new:
                a = analyses[content_key(th)] = points.analyse(pid, th)
                out.append((pid, th, a))
        return out

    def certified(res) -> np.ndarray:
        return np.nonzero(certified_mask(cfg, res))[0]

    saddles = []
    for idx in chunks:
        res = run_saddle_search(cfg, idx)
        units[tuple(int(i) for i in idx)] = res
        for pid, th, a in analyse_new(res.theta[torch.from_numpy(certified(res))]):
            if a.kind == "saddle" and pid in points.unstable:
                saddles.append((th.detach().cpu().numpy(), a.loss, *points.unstable[pid]))
    if saddles:
        starts = torch.cat([saddle_descent_starts(cfg, model, *s)[0].starts for s in saddles])
        res = run_pipeline(model, starts, list(cfg.saddles.descend))
        descents[content_key(starts)] = res
        analyse_new(res.theta[torch.from_numpy(certified(res))])
    return units, analyses, descents
