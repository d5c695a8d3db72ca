"""Dask plugins of :mod:`landscape.executors` (imported only when a Dask executor is created, since
it needs the optional ``dask[distributed]``). Workers and the scheduler import this module by name,
so they need ``landscape`` installed."""
from __future__ import annotations

import os

from distributed.diagnostics.plugin import SchedulerPlugin, WorkerPlugin

#: Prefix of every Dask task key :mod:`landscape.executors` submits (the attempt counter watches
#: only these).
KEY_PREFIX = "landscape-unit"


def default_torch_threads(cpu_count: int | None, concurrent_tasks: int) -> int:
    """Torch threads per task so that ``concurrent_tasks`` tasks on a host with ``cpu_count``
    cores do not oversubscribe it: ``max(1, cpu_count // concurrent_tasks)``."""
    return max(1, (cpu_count or 1) // max(1, int(concurrent_tasks)))


class TorchThreads(WorkerPlugin):
    """Sets ``torch.set_num_threads`` on every worker, including workers that join or restart
    later. ``threads=None`` means the worker host's cores divided by this worker's threads."""

    name = "landscape-torch-threads"

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def setup(self, worker) -> None:
        import torch   # on the workers only: the scheduler imports this module too

        torch.set_num_threads(self.threads or default_torch_threads(os.cpu_count(), worker.state.nthreads))


class NoHttpServer(WorkerPlugin):
    """Stops the worker's HTTP server (metrics, health; Dask starts one on every worker, on a
    random port, even without a dashboard), including on workers that join or restart later.
    The ``dask-local`` executor registers it unless a dashboard was asked for."""

    name = "landscape-no-http-server"

    def setup(self, worker) -> None:
        server = getattr(worker, "http_server", None)
        if server is not None:
            server.stop()
        worker.services.pop("dashboard", None)


class AttemptCounter(SchedulerPlugin):
    """Counts, per task key starting with :data:`KEY_PREFIX`, how many times the task was sent to
    a worker (transitions into ``processing``). More than one means it was re-run, e.g. because
    the worker that held it died."""

    name = "landscape-attempts"

    def __init__(self):
        self.attempts: dict[str, int] = {}

    def transition(self, key, start, finish, *args, **kwargs) -> None:
        if finish == "processing" and isinstance(key, str) and key.startswith(KEY_PREFIX):
            self.attempts[key] = self.attempts.get(key, 0) + 1


def scheduler_attempts(dask_scheduler=None) -> dict[str, int]:
    """Run on the scheduler: the attempt counts of :class:`AttemptCounter`."""
    return dict(dask_scheduler.plugins[AttemptCounter.name].attempts)


def torch_threads() -> int:
    """Run on a worker: its ``torch.get_num_threads()``."""
    import torch   # on the workers only (see TorchThreads.setup)

    return torch.get_num_threads()
