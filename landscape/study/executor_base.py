"""The executor interface and the in-process executor: what :mod:`landscape.study.executors`
(the Dask executors, :func:`~landscape.study.executors.make_executor`, the interface's
description), :mod:`landscape.study.lambda_batch` and :mod:`landscape.study.run` share, in a module of
its own so that none of them imports another in a circle. Every name here is also importable
from :mod:`landscape.study.executors`."""
from __future__ import annotations

from abc import ABC, abstractmethod
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator


#: Executor names accepted by :func:`landscape.study.executors.make_executor` and ``landscape
#: sweep --executor`` (here, where the command line reads them without loading the executors).
EXECUTORS = ("lambda-batch", "inprocess", "dask", "dask-local")
#: Former names of executors, still accepted: ``joint`` is ``lambda-batch``.
FORMER_NAMES = {"joint": "lambda-batch"}


class ExecutorError(RuntimeError):
    """An executor cannot be created or used (missing extra, bad option, unreachable scheduler)."""


@dataclass(frozen=True)
class Unit:
    """One unit of work: ``fn(*args)`` for chunk ``chunk`` of study ``study``.

    ``study`` is a string that identifies the study within a run (a sweep cell name or a results
    folder); ``(study, chunk)`` identifies the unit. ``args`` are not part of its identity.
    """

    study: str
    chunk: int
    args: tuple = field(default=(), compare=False, repr=False)

    @property
    def id(self) -> tuple[str, int]:
        return (self.study, int(self.chunk))

    def __str__(self) -> str:
        return f"{self.study}#{self.chunk}"


def _check_unique(units: list[Unit]) -> None:
    seen: set[tuple[str, int]] = set()
    for u in units:
        if u.id in seen:
            raise ExecutorError(f"unit {u} appears twice: every (study, chunk) must be unique")
        seen.add(u.id)


class Executor(ABC):
    """Where units run. Use as a context manager (or call :meth:`close`)."""

    #: Name as given to :func:`make_executor`.
    name: str = ""

    @abstractmethod
    def submit(self, fn: Callable, *args) -> Any:
        """Run ``fn(*args)``; return a future whose ``result()`` gives its value (or raises)."""

    @abstractmethod
    def map_units(self, fn: Callable, units: Iterable[Unit]) -> Iterator[tuple[Unit, Any]]:
        """Compute ``fn(*unit.args)`` for every unit; yield ``(unit, result)`` in the order of
        ``units``. An exception raised by ``fn`` propagates from the iterator."""

    def prefetch(self, fn: Callable, units: Iterable[Unit]) -> None:
        """Start computing ``fn(*unit.args)`` for ``units`` ahead of a ``map_units`` call that
        will ask for them (a hint: executors that cannot compute ahead ignore it)."""

    def drop_prefetched(self) -> None:
        """Forget prefetched units that no ``map_units`` call asked for."""

    @property
    def parallelism(self) -> int:
        """How many units can run at the same time."""
        return 1

    def retried(self) -> dict[str, int]:
        """Units computed more than once (a lost worker's units are re-run elsewhere):
        ``{str(unit): number of attempts}``. Empty for executors that never retry."""
        return {}

    def describe(self) -> dict:
        """JSON-able description, stored with the results."""
        return {"executor": self.name, "parallelism": self.parallelism}

    def close(self) -> None:
        """Release the executor's resources (a no-op unless it owns a cluster)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class InProcessExecutor(Executor):
    """Computes every unit in the calling process, one after the other, when the caller asks for
    it (``map_units`` is lazy). Each unit is itself one batched tensor computation."""

    name = "inprocess"

    def submit(self, fn: Callable, *args) -> Future:
        fut: Future = Future()
        try:
            fut.set_result(fn(*args))
        except Exception as exc:  # delivered to the caller by fut.result(), not swallowed
            fut.set_exception(exc)
        return fut

    def map_units(self, fn: Callable, units: Iterable[Unit]) -> Iterator[tuple[Unit, Any]]:
        units = list(units)
        _check_unique(units)
        for u in units:
            yield u, fn(*u.args)
