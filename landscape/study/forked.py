"""An executor that computes beside this process: each submitted function in a forked child.

:class:`ForkedExecutor` is the :class:`~landscape.study.executor_base.Executor` a study uses to
compute part of its work while it computes the rest itself (the saddle phase beside the
trajectories, :mod:`landscape.study.prefetch`). Each :meth:`~ForkedExecutor.submit` forks one
child process (Linux's ``fork``: nothing is re-imported, the configuration and the model are
shared copy-on-write), which runs ``fn(*args)`` on one torch thread and one BLAS thread and sends
its value back pickled (plain pickle, in bytes: a connection's own pickler would share tensors
through file descriptors that die with the child). While any child runs, this process gives up
one torch thread and one BLAS thread (restored when the last child is collected or the executor
closes), so the two never oversubscribe the cores: OpenBLAS threads spin while they wait, and one
more of them than there are cores made a dense solve 10–100× slower (measured 2026-12-07: a
300×300 lstsq 0.33 s against 0.03 s, the kink polish's step).

A child dies with this process, however it ends (a SIGKILL included: ``prctl(PR_SET_PDEATHSIG)``;
Linux sends it when the *thread* that forked ends, so submit from a thread that lives as long as
the work), and :meth:`~ForkedExecutor.close` kills the children still running. An exception in ``fn``, or a
child that dies without a value, reaches the caller from :meth:`ForkedFuture.result` as a
:class:`ForkedWorkerError` carrying the child's traceback. Only on Linux, on the CPU (CUDA does
not survive a fork): :func:`fork_possible`.
"""
from __future__ import annotations

import ctypes
import multiprocessing
import os
import pickle
import signal
import sys
import traceback
from typing import Any, Callable, Iterable, Iterator

import torch
from threadpoolctl import threadpool_limits

from .executor_base import Executor, ExecutorError, Unit, _check_unique

#: Seconds :meth:`ForkedFuture.result` waits between checks that the child is still alive.
POLL_S = 0.05


class ForkedWorkerError(ExecutorError):
    """A forked child raised (the message holds its traceback) or ended without a value."""


def usable_cores() -> int:
    """Cores this process may run on (its affinity where the platform says, else the count)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def fork_possible() -> bool:
    """Whether this machine can fork a child beside this process and gain: Linux's fork, two
    torch threads and two usable cores (the caller checks that its work runs on the CPU)."""
    return (sys.platform.startswith("linux") and "fork" in multiprocessing.get_all_start_methods()
            and torch.get_num_threads() >= 2 and usable_cores() >= 2)


class ForkedFuture:
    """The value of one child's ``fn(*args)``: :meth:`result` waits for it (module docstring)."""

    def __init__(self, owner: "ForkedExecutor", proc, conn):
        self._owner, self._proc, self._conn = owner, proc, conn
        self._value: Any = None
        self._error: ForkedWorkerError | None = None
        self._received = False
        self._finished = False

    def result(self) -> Any:
        """The child's value, once it has sent it; a :class:`ForkedWorkerError` where it raised or
        died without one. The child is gone when this returns."""
        if not self._finished:
            try:
                while not self._conn.poll(POLL_S):
                    if not self._proc.is_alive():
                        break
                if self._conn.poll(0):
                    kind, payload = pickle.loads(self._conn.recv_bytes())
                    self._received = True
                    if kind == "ok":
                        self._value = payload
                    else:
                        self._error = ForkedWorkerError(payload)
                else:
                    self._error = ForkedWorkerError(f"the worker ended (exit code {self._proc.exitcode}) without "
                                                    "results")
            except (EOFError, OSError) as exc:
                self._error = ForkedWorkerError(f"the worker's results could not be read ({type(exc).__name__}: {exc})")
            finally:
                self.cancel()
        if self._error is not None:
            raise self._error
        return self._value

    def cancel(self) -> None:
        """Kill the child if it still runs (nothing is computed after this) and release it."""
        if self._finished:
            return
        self._finished = True
        if self._proc.is_alive():
            self._proc.kill()
        self._proc.join()
        self._conn.close()
        if self._error is None and not self._received:
            self._error = ForkedWorkerError("the worker was stopped before it sent its results")
        self._owner._released(self)


class ForkedExecutor(Executor):
    """Each submitted function in a forked child beside this process (module docstring)."""

    name = "forked"

    def __init__(self):
        self._running: list[ForkedFuture] = []
        self._threads: int | None = None
        self._blas = None

    def submit(self, fn: Callable, *args) -> ForkedFuture:
        """Fork a child that computes ``fn(*args)``; this process gives up a thread while it runs."""
        ctx = multiprocessing.get_context("fork")
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(target=_child, args=(fn, args, send, os.getpid()), daemon=True,
                           name=f"landscape-forked-{getattr(fn, '__name__', 'work')}")
        try:
            proc.start()
        except BaseException:
            recv.close()
            raise
        finally:
            send.close()
        fut = ForkedFuture(self, proc, recv)
        if not self._running:
            self._threads = torch.get_num_threads()
            torch.set_num_threads(max(1, self._threads - 1))
            self._blas = threadpool_limits(limits=max(1, self._threads - 1), user_api="blas")
        self._running.append(fut)
        return fut

    def map_units(self, fn: Callable, units: Iterable[Unit]) -> Iterator[tuple[Unit, Any]]:
        """Each unit in a child of its own, one after the other."""
        units = list(units)
        _check_unique(units)
        for u in units:
            yield u, self.submit(fn, *u.args).result()

    def _released(self, fut: ForkedFuture) -> None:
        """A child is gone: the last one gives this process its threads back."""
        if fut in self._running:
            self._running.remove(fut)
        if not self._running:
            # BLAS first: restoring an OpenMP-built OpenBLAS resets OpenMP's count, which is
            # torch's (measured: torch at 2 threads, then the restore, reads 1)
            if self._blas is not None:
                self._blas.restore_original_limits()
                self._blas = None
            if self._threads is not None:
                torch.set_num_threads(self._threads)
                self._threads = None

    def close(self) -> None:
        """Kill the children still running and restore this process's threads."""
        for fut in list(self._running):
            fut.cancel()


def _child(fn: Callable, args: tuple, conn, parent: int) -> None:
    """The forked child: one thread, ``fn(*args)`` sent back as ``("ok", value)``, or
    ``("error", traceback)``. A parent gone before the child asked to die with it (pid
    ``parent`` no longer its parent) ends the child at once."""
    try:
        _die_with_parent()
        if os.getppid() != parent:
            os._exit(1)
        torch.set_num_threads(1)
        threadpool_limits(limits=1, user_api="blas")
        conn.send_bytes(pickle.dumps(("ok", fn(*args)), protocol=pickle.HIGHEST_PROTOCOL))
    except BaseException:  # noqa: BLE001  (whatever happens here reaches the caller as its error)
        try:
            conn.send_bytes(pickle.dumps(("error", traceback.format_exc(limit=8))))
        except Exception:  # noqa: BLE001
            pass
    finally:
        conn.close()


def _die_with_parent() -> None:
    """Ask Linux to kill this child when the parent process ends, however it ends (a SIGKILL
    included, where no ``finally`` runs): prctl(PR_SET_PDEATHSIG, SIGKILL)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(1, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
