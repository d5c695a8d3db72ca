"""Executors: where units of work run.

A **unit** is one pure function call identified by ``(study, chunk)``: for a study, ``fn`` is
:func:`landscape.study.work.run_trajectories` and ``args`` are ``(cfg, indices)``, so the unit's
result (a :class:`landscape.flows.TrajectoryResults`) depends only on its arguments and a unit
computed twice (a retry after a lost worker) gives the same answer. Executors only *compute*:
results come back to the calling process, which alone writes the study databases, so no database
file is ever written by two processes or hosts; and because the store refuses a unit it has
already committed (:meth:`landscape.store.StudyStore.commit_unit`), a unit is stored at most once.

The interface (:class:`Executor`) has two calls:

* ``map_units(fn, units)``: hand every unit to the backend at once and yield ``(unit, result)``
  **in the order of** ``units`` (so writers that consume the results commit in a deterministic
  order, whatever order the workers finish in);
* ``submit(fn, *args)``: one call, returning a :class:`concurrent.futures.Future`-like object
  with ``result()``;

and an optional hint, ``prefetch(fn, units)``: start computing units that a later ``map_units``
call will ask for (a no-op in-process). A cluster executor identifies a computation by its content
(``fn`` and ``args``), so the later call picks up the prefetched results whatever it numbers its
units, and a wrong guess costs only the wasted work. A sweep uses it to keep every worker busy
while this process writes one cell after another.

Implementations: :class:`InProcessExecutor` (computes in the calling process, each unit one
batched tensor computation), :class:`landscape.study.lambda_batch.LambdaBatchExecutor` (the sweep default:
in-process, the same-index units of cells that differ only in λ as one batch), :class:`DaskExecutor` (an existing Dask cluster, given by
its scheduler address) and :class:`LocalDaskExecutor` (starts a ``LocalCluster`` of N worker
processes). A cluster executor for another backend only has to implement the same two calls.

Dask needs the optional extra: ``pip install "landscape[dask]"`` (``dask[distributed]`` and
``cryptography``, for TLS). Every Dask worker and the scheduler must be able to import
``landscape`` (same version as the client).

Security
--------
A Dask scheduler runs whatever code a connected client sends it, on itself and on every worker,
with the rights of the user who started them. An unauthenticated scheduler, even one that listens
on 127.0.0.1 only, therefore lets *any* local process (another user's, or a compromised
one) run code inside the sweep, and its HTTP server (dashboard, JSON and info pages, on 8787 by
default) shows the tasks to anyone who can reach it. So:

* ``dask-local`` (:class:`LocalDaskExecutor`) never runs unauthenticated. Its scheduler, nannies
  and workers listen on 127.0.0.1 with ``protocol="tls"`` and mutual TLS with credentials created
  for this cluster alone (``distributed.security.Security.temporary()``: a fresh self-signed key
  and certificate that exist only in this process's memory and in the worker processes it
  starts): a process without them, plain ``tcp://`` or TLS with other certificates, cannot
  connect. It starts no HTTP server: no dashboard, no JSON/info/metrics pages, nothing on 8787
  (``dashboard_address=None`` alone does not do that: Dask's scheduler still serves its
  non-Bokeh pages on 8787, and every worker serves metrics on a random port), unless
  ``dashboard_address`` is given (then the dashboard is plain, unauthenticated HTTP on that
  address: give it a loopback one). This needs ``cryptography``; without it the executor refuses
  to start rather than fall back to an open cluster. What TLS cannot stop: processes of the same
  user can read this process's memory (and so the key); use a separate user account to isolate
  a sweep from them.

* ``dask`` (:class:`DaskExecutor`, ``--scheduler ADDRESS``) connects to a cluster that someone
  else started, so its security is theirs to set up: start the scheduler and workers with TLS
  (``dask scheduler --protocol tls --tls-ca-file ca.pem --tls-cert sched.pem --tls-key
  sched.key``, workers likewise with ``--tls-*``), never expose a ``tcp://`` scheduler beyond a
  network you trust, and keep its HTTP port private (``--no-dashboard`` still serves Dask's
  info and JSON pages there: bind it to loopback with ``--dashboard-address 127.0.0.1:8787``, or
  firewall it).
  The client's credentials come from Dask's configuration, with no landscape option needed:
  ``distributed.comm.tls.ca-file``, ``distributed.comm.tls.client.cert`` and
  ``distributed.comm.tls.client.key`` (and ``distributed.comm.require-encryption: true``), set in
  a Dask YAML file (``~/.config/dask/``) or as environment variables
  (``DASK_DISTRIBUTED__COMM__TLS__CA_FILE=...`` and so on); then pass the ``tls://HOST:PORT``
  address. Alternatively, pass a ``distributed.Client`` built with a ``Security`` to
  :class:`DaskExecutor` as ``client``. A ``tcp://`` address is accepted (for clusters on a
  trusted private network) with a logged warning.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterable, Iterator

# the interface and the in-process executor live in .executor_base (which .lambda_batch builds on), and
# are importable from here too
from ..core.validate import SpecError, check_int
from .executor_base import (EXECUTORS, FORMER_NAMES, Executor, ExecutorError, InProcessExecutor,  # noqa: F401
                            Unit, _check_unique)
from .lambda_batch import LambdaBatchExecutor

#: What to install for the Dask executors.
DASK_INSTALL_HINT = 'pip install "landscape[dask]"  (or: pip install "dask[distributed]" cryptography)'
#: Interface of the ``dask-local`` cluster: loopback only.
LOCAL_HOST = "127.0.0.1"

logger = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------
# Dask
# ----------------------------------------------------------------------------------------------
def _count(name: str, value) -> int:
    """``value`` as an integer ≥ 1 (an integral float such as 2.0 reads as 2, as in every settings
    table: :func:`landscape.core.validate.check_int`), else an ExecutorError naming ``name``."""
    try:
        return check_int(name, value, 1)
    except SpecError as exc:
        raise ExecutorError(str(exc)) from None


def _import_dask():
    """(distributed, landscape.study._dask_plugins), or an ExecutorError saying what to install."""
    try:
        import distributed

        from . import _dask_plugins
    except ImportError as exc:
        raise ExecutorError(f"the Dask executors need dask.distributed, which is not installed ({exc}); "
                            f"install it with: {DASK_INSTALL_HINT}") from None
    return distributed, _dask_plugins


class DaskExecutor(Executor):
    """Units run as tasks on a Dask cluster; results come back to this (the client) process.

    ``address``: the scheduler, e.g. ``"tls://10.0.0.1:8786"`` (TLS credentials come from Dask's
    configuration; see the module's 'Security'); or pass an existing ``distributed.Client``
    (e.g. one built with a ``distributed.security.Security``) as ``client``. ``torch_threads``:
    torch threads per worker (default: the worker host's cores divided by the worker's threads;
    with several worker processes per host, give it explicitly, e.g. cores / processes). Lost
    workers: Dask re-runs their units on other workers (up to
    ``distributed.scheduler.allowed-failures`` times); :meth:`retried` names them. Each task key is ``landscape-unit-<token of fn and args>``
    (content-addressed), so asking again for a computation that is still held (prefetched, or
    in flight) returns the same task instead of running it twice.
    """

    name = "dask"

    def __init__(self, address: str | None = None, *, client=None, torch_threads: int | None = None,
                 timeout_s: float = 30.0):
        distributed, plugins = _import_dask()
        if (address is None) == (client is None):
            raise ExecutorError("DaskExecutor needs exactly one of address (the scheduler, e.g. "
                                "tls://HOST:8786) or client")
        if torch_threads is not None:
            torch_threads = _count("torch_threads", torch_threads)
        self._owns_client = client is None
        if client is None:
            if not str(address).startswith("tls://"):
                logger.warning("Dask scheduler %s is not a tls:// address: the connection is neither "
                               "encrypted nor authenticated, and anyone who can reach the scheduler can run "
                               "code on its workers (see landscape.study.executors, 'Security')", address)
            try:
                client = distributed.Client(address, timeout=timeout_s)
            except OSError as exc:
                raise ExecutorError(f"cannot reach the Dask scheduler at {address!r} within {timeout_s:g} s: {exc}") from None
        self.client = client
        self.address = client.scheduler.address
        self.torch_threads = torch_threads
        self._plugins = plugins
        client.register_plugin(plugins.TorchThreads(torch_threads))
        client.register_plugin(plugins.AttemptCounter())
        self._units: dict[str, Unit] = {}
        self._prefetched: dict[str, Any] = {}

    @property
    def parallelism(self) -> int:
        return max(1, sum(self.client.nthreads().values()))

    def worker_torch_threads(self) -> dict[str, int]:
        """``{worker address: torch.get_num_threads()}`` as set on every current worker."""
        return self.client.run(self._plugins.torch_threads)

    def _key(self, fn: Callable, unit: Unit) -> str:
        from dask.base import tokenize

        return f"{self._plugins.KEY_PREFIX}-{tokenize(fn, *unit.args)}"

    def submit(self, fn: Callable, *args):
        return self.client.submit(fn, *args, pure=False)

    def map_units(self, fn: Callable, units: Iterable[Unit]) -> Iterator[tuple[Unit, Any]]:
        units = list(units)
        _check_unique(units)
        keys = [self._key(fn, u) for u in units]
        self._units.update(zip(keys, units))
        # a key already held (prefetched) gives back its existing task
        futures = [self.client.submit(fn, *u.args, key=k, pure=False) for u, k in zip(units, keys)]
        for k in keys:
            self._prefetched.pop(k, None)
        try:
            for u, f in zip(units, futures):
                yield u, f.result()
                f.release()
        finally:
            for f in futures:  # a consumer that stops early must not leave work queued
                if not f.done():
                    f.cancel()

    def prefetch(self, fn: Callable, units: Iterable[Unit]) -> None:
        units = list(units)
        _check_unique(units)
        for u in units:
            k = self._key(fn, u)
            if k not in self._prefetched:
                self._units[k] = u
                self._prefetched[k] = self.client.submit(fn, *u.args, key=k, pure=False)

    def drop_prefetched(self) -> None:
        for f in self._prefetched.values():
            f.cancel()
        self._prefetched.clear()

    def retried(self) -> dict[str, int]:
        attempts = self.client.run_on_scheduler(self._plugins.scheduler_attempts)
        return {str(self._units[k]): n for k, n in sorted(attempts.items()) if n > 1 and k in self._units}

    def describe(self) -> dict:
        return {"executor": self.name, "scheduler": self.address, "parallelism": self.parallelism,
                "workers": len(self.client.nthreads()), "torch_threads": self.torch_threads}

    def close(self) -> None:
        self.drop_prefetched()
        if self._owns_client:
            self.client.close()


class LocalDaskExecutor(DaskExecutor):
    """A Dask ``LocalCluster`` of ``workers`` processes (one task at a time each) on this
    machine, with ``cpu_count // workers`` torch threads per worker unless ``torch_threads`` is
    given. The cluster is shut down by :meth:`close`.

    Every connection is mutual TLS on 127.0.0.1 with credentials made for this cluster
    (``Security.temporary()``), and no HTTP server runs (see the module's 'Security') unless
    ``dashboard_address`` (e.g. ``"127.0.0.1:8787"``) asks for the dashboard."""

    name = "dask-local"

    def __init__(self, workers: int = 2, *, torch_threads: int | None = None,
                 dashboard_address: str | None = None):
        distributed, plugins = _import_dask()
        workers = _count("workers", workers)
        try:
            self.security = distributed.security.Security.temporary()
        except ImportError as exc:
            raise ExecutorError(f"the dask-local executor secures its cluster with TLS, which needs the "
                                f"`cryptography` package ({exc}); install it with: {DASK_INSTALL_HINT}") from None
        threads = torch_threads or plugins.default_torch_threads(os.cpu_count(), workers)
        self.dashboard = dashboard_address is not None
        if self.dashboard:
            http = {}
            scheduler_http = {"dashboard": True, "dashboard_address": dashboard_address}
        else:
            # Dask starts an HTTP server on the scheduler (8787) and on every worker whatever
            # dashboard_address says: serve nothing from them (the config reaches the worker
            # processes through their nannies), bind the scheduler's to a free loopback port,
            # and stop them all once the cluster is up.
            http = {"distributed.scheduler.http.routes": [], "distributed.worker.http.routes": []}
            scheduler_http = {"dashboard": False, "dashboard_address": f"{LOCAL_HOST}:0"}
        import dask   # the optional extra, as in _import_dask

        with dask.config.set(http):
            self.cluster = distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host=LOCAL_HOST, protocol="tls",
                security=self.security, dashboard_address=None, scheduler_kwargs=scheduler_http,
                silence_logs=logging.ERROR)
        try:
            if not self.dashboard:
                _stop_http_server(self.cluster)
            client = distributed.Client(self.cluster, security=self.security)
            if not self.dashboard:  # also on workers that a nanny restarts later
                client.register_plugin(plugins.NoHttpServer())
            super().__init__(client=client, torch_threads=threads)
        except BaseException:
            self.cluster.close()
            raise
        self._owns_client = True
        self.workers = workers

    def describe(self) -> dict:
        return {**super().describe(), "scheduler": "LocalCluster", "workers": self.workers}

    def close(self) -> None:
        super().close()
        self.cluster.close()


def _stop_http_server(cluster) -> None:
    """Stop the HTTP server of a ``LocalCluster``'s (in-process) scheduler: it stops listening at
    once, and is no longer advertised as the ``dashboard`` service (nor ``cluster.dashboard_link``).
    Workers: ``_dask_plugins.NoHttpServer``."""
    cluster.scheduler.http_server.stop()
    cluster.scheduler.services.pop("dashboard", None)
    cluster.scheduler_info.get("services", {}).pop("dashboard", None)


def make_executor(name: str = "inprocess", *, scheduler: str | None = None, workers: int | None = None,
                  torch_threads: int | None = None) -> Executor:
    """The executor called ``name`` (one of :data:`EXECUTORS`; ``joint``, its former name, is
    ``lambda-batch``): ``lambda-batch`` (in-process, cells that
    differ only in λ advance as one batch: :class:`landscape.study.lambda_batch.LambdaBatchExecutor`);
    ``inprocess`` (cell after cell); ``dask`` (needs ``scheduler``, e.g. ``tls://HOST:8786``,
    credentials from Dask's configuration: see the module's 'Security'); ``dask-local``
    (``workers`` processes, default 2, TLS on 127.0.0.1, no dashboard)."""
    name = FORMER_NAMES.get(name, name)
    if name not in EXECUTORS:
        raise ExecutorError(f"executor={name!r} is invalid: must be one of {EXECUTORS}")
    if name != "dask" and scheduler is not None:
        raise ExecutorError(f"--scheduler is only for --executor dask (got executor={name!r})")
    if name != "dask-local" and workers is not None:
        raise ExecutorError(f"--workers is only for --executor dask-local (got executor={name!r})")
    if name in ("inprocess", "lambda-batch"):
        if torch_threads is not None:
            raise ExecutorError("--torch-threads is only for the Dask executors")
        if name == "lambda-batch":
            return LambdaBatchExecutor()
        return InProcessExecutor()
    if name == "dask":
        if not scheduler:
            raise ExecutorError("--executor dask needs --scheduler tls://HOST:PORT (the address a "
                                "`dask scheduler` prints; tcp:// is unauthenticated)")
        return DaskExecutor(scheduler, torch_threads=torch_threads)
    return LocalDaskExecutor(2 if workers is None else workers, torch_threads=torch_threads)
