"""The saddle phase computed beside the trajectories: a forked worker, results keyed by content.

A study's phases run one after the other (:func:`landscape.study.run.run_study`), but the saddle
search does not depend on the trajectories, and the first descents from the saddles it finds
depend only on those saddles. On a machine with two or more cores :class:`SaddlePrefetch` forks
one worker process when a run starts, which computes, while this process runs the trajectories:

1. the saddle-search units (:func:`landscape.study.work.run_saddle_search`, a pure function of the
   configuration and the indices);
2. the analysis of every distinct certified end point of those units, in the order the run
   deduplicates them, through a registry of points of its own
   (:class:`landscape.study.points.PointRegistry`, empty at the start: the worker cannot know
   what the trajectories find);
3. for those that are saddles, the first batch of ±ε descents exactly as
   :meth:`landscape.study.run.StudyRun.descend_from_many` builds it (the same directions, seeds and
   batch), and the analysis of the distinct points those descents certify at.

Everything comes back keyed by its content: a unit by its indices, an analysis by the bytes of
θ, the descents by the bytes of their starts. The run takes a result only where its own key
matches exactly (:meth:`unit`, :meth:`analysis`, :meth:`descents`) and computes whatever does
not match itself (a saddle found by the trajectories, a resumed run): a wrong guess costs only
the worker's time, never a different answer from the functions the run would call. The worker
runs one thread and this process gives up one of its threads while it runs (both restored at
:meth:`collect`), so the two never oversubscribe the cores; results differ from a run without the
worker at most by the round-off of the thread count, as between runs at 1 and 2 threads.

The worker never touches the database: this process alone writes it, in the same order as
without the worker. It is started only on Linux (``fork``: no re-import), on the CPU (CUDA does
not survive a fork), with no executor, at least two torch threads and two usable cores, and
when saddle-search units are still to run; it is killed whenever the run ends, by an error or
an interruption included.
"""
from __future__ import annotations

import ctypes
import hashlib
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits

from ..engines import run_pipeline
from .config import resolve_device
from .points import PointRegistry
from .work import certified_mask, run_saddle_search, saddle_descent_starts, study_model

#: Seconds :meth:`SaddlePrefetch.collect` waits between checks that the worker is still alive.
POLL_S = 0.05


def content_key(x) -> str:
    """A key of an array's exact content: dtype, shape and the SHA-1 of its bytes."""
    a = np.ascontiguousarray(x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x))
    return f"{a.dtype}{a.shape}" + hashlib.sha1(a.tobytes()).hexdigest()


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the platform says, else the count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def prefetch_possible(cfg) -> bool:
    """Whether this machine can run the worker beside a run of ``cfg`` and gain (module
    docstring: Linux's fork, the CPU, two threads and two cores); the run itself checks that it
    has no executor and saddle-search units still to run."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and resolve_device(cfg.device).type == "cpu" and torch.get_num_threads() >= 2 and usable_cores() >= 2)


class SaddlePrefetch:
    """The worker of one run (module docstring): :meth:`start`, then :meth:`collect` where the
    saddle phase begins, then the lookups; :meth:`close` in every case."""

    def __init__(self):
        self._proc = None
        self._conn = None
        self._threads = None
        self._blas = None
        self._units: dict = {}
        self._analyses: dict = {}
        self._descents: dict = {}
        self.error: str | None = None
        self.hits = {"units": 0, "analyses": 0, "descents": 0}

    @classmethod
    def start(cls, cfg, chunks: list[list[int]]) -> "SaddlePrefetch":
        """Fork the worker for the saddle-search units ``chunks`` of ``cfg``."""
        self = cls()
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        self._threads = torch.get_num_threads()
        self._proc = ctx.Process(target=_worker, args=(cfg, [list(c) for c in chunks], send), daemon=True,
                                 name="landscape-saddle-prefetch")
        self._proc.start()
        send.close()
        self._conn = recv
        torch.set_num_threads(max(1, self._threads - 1))
        # numpy/scipy's BLAS gives up its thread too: OpenBLAS threads spin while they wait, and
        # one more of them than there are cores makes a dense solve 10–100× slower (measured
        # 2026-12-07: a 300×300 lstsq 0.33 s against 0.03 s, the kink polish's step)
        self._blas = threadpool_limits(limits=max(1, self._threads - 1), user_api="blas")
        return self

    def collect(self) -> None:
        """Wait for the worker's results (it computes only what the run would compute next) and
        give this process its threads back. A worker that died leaves nothing: the run computes
        everything itself, and ``error`` says why."""
        if self._proc is None:
            return
        try:
            while not self._conn.poll(POLL_S):
                if not self._proc.is_alive():
                    break
            if self._conn.poll(0):
                kind, payload = pickle.loads(self._conn.recv_bytes())
                if kind == "ok":
                    self._units, self._analyses, self._descents = payload
                else:
                    self.error = payload
            else:
                self.error = f"the worker ended (exit code {self._proc.exitcode}) without results"
        except (EOFError, OSError) as exc:
            self.error = f"the worker's results could not be read ({type(exc).__name__}: {exc})"
        finally:
            self.close()

    def close(self) -> None:
        """Stop the worker (if it still runs) and restore this process's threads."""
        if self._proc is not None:
            if self._proc.is_alive():
                self._proc.kill()
            self._proc.join()
            self._conn.close()
            self._proc = None
        if self._threads is not None:
            torch.set_num_threads(self._threads)
            self._threads = None
        if self._blas is not None:
            self._blas.restore_original_limits()
            self._blas = None

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


def _worker(cfg, chunks: list[list[int]], conn) -> None:
    """The forked worker: compute (module docstring) and send ``("ok", (units, analyses,
    descents))``, or ``("error", traceback)``."""
    try:
        _die_with_parent()
        torch.set_num_threads(1)
        threadpool_limits(limits=1, user_api="blas")
        # plain pickle, in the bytes: the connection's own pickler would share tensors through
        # file descriptors that die with this process
        conn.send_bytes(pickle.dumps(("ok", _compute(cfg, chunks)), protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException:  # noqa: BLE001  (whatever happens here, the run computes it itself)
        try:
            conn.send_bytes(pickle.dumps(("error", traceback.format_exc(limit=8))))
        except Exception:  # noqa: BLE001
            pass
    finally:
        conn.close()


def _die_with_parent() -> None:
    """Ask Linux to kill this worker when the run's process ends, however it ends (a SIGKILL
    included, where no ``finally`` runs): prctl(PR_SET_PDEATHSIG, SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _compute(cfg, chunks: list[list[int]]) -> tuple[dict, dict, dict]:
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
