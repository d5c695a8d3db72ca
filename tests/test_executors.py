"""Executors: the in-process executor, the executor factory's errors, and (when dask.distributed is
installed, as in CI's test extra) a 2-process LocalCluster: torch threads per worker, identical
results to the in-process executor, and a sweep that survives a killed worker."""
import json
import os
import signal
import sys
import threading
import time

import numpy as np
import pytest

from landscape.study.config import StudyConfig, default_config_dict
from landscape.study.executors import DASK_INSTALL_HINT, ExecutorError, InProcessExecutor, Unit, make_executor
from landscape.study.run import chunks, run_trajectories

#: Seconds the fault test waits for a unit to be running on a worker before it gives up.
KILL_WAIT_S = 60.0


def tiny_study(**top) -> StudyConfig:
    """K=3, n=2, d=4, L=2 linear CE study, L-BFGS then Newton-MR: a chunk takes well under a second."""
    d = default_config_dict()
    d.update(name="tiny", trajectories=8, batch_size=4, **top)
    d["model"].update(K=3, n=2, d=4, L=2, **{"lambda": 1e-2})
    d["stages"] = [{"engine": "lbfgs", "max_iter": 2000, "tol": 1e-6, "stall_window": 200},
                   {"engine": "newton", "max_iter": 50, "stall_window": 10}]
    return StudyConfig.from_dict(d)


def _square(x):
    return x * x


def _fail(x):
    raise ValueError(f"unit {x} failed")


# ----- in-process and factory ------------------------------------------------------------------
def test_inprocess_yields_in_unit_order_and_is_lazy():
    calls = []

    def fn(x):
        calls.append(x)
        return x * x

    units = [Unit("s", c, (x,)) for c, x in enumerate([3, 1, 2])]
    it = InProcessExecutor().map_units(fn, units)
    assert calls == []  # nothing runs before the caller asks
    assert [(str(u), r) for u, r in it] == [("s#0", 9), ("s#1", 1), ("s#2", 4)]
    assert calls == [3, 1, 2]


def test_units_must_be_unique_and_errors_propagate():
    ex = InProcessExecutor()
    with pytest.raises(ExecutorError, match=r"unit s#0 appears twice"):
        list(ex.map_units(_square, [Unit("s", 0, (1,)), Unit("s", 0, (2,))]))
    with pytest.raises(ValueError, match="unit 5 failed"):
        ex.submit(_fail, 5).result()
    assert ex.submit(_square, 4).result() == 16
    assert ex.retried() == {}


@pytest.mark.parametrize("kwargs, message", [
    ({"name": "slurm"}, r"executor='slurm' is invalid: must be one of \('lambda-batch', 'inprocess', 'dask', 'dask-local'\)"),
    ({"name": "inprocess", "scheduler": "tcp://h:8786"}, r"--scheduler is only for --executor dask"),
    ({"name": "inprocess", "workers": 2}, r"--workers is only for --executor dask-local"),
    ({"name": "inprocess", "torch_threads": 2}, r"--torch-threads is only for the Dask executors"),
])
def test_make_executor_rejects_bad_options(kwargs, message):
    with pytest.raises(ExecutorError, match=message):
        make_executor(**kwargs)


def test_the_lambda_batch_executor_answers_to_its_former_name_too():
    """``joint`` (the name before 2026-12-07, in committed sweep records and old scripts) makes
    the same executor as ``lambda-batch``, from the API and from the command line."""
    from landscape.cli import build_parser
    from landscape.study.lambda_batch import LambdaBatchExecutor

    assert type(make_executor("joint")) is type(make_executor("lambda-batch")) is LambdaBatchExecutor
    assert build_parser().parse_args(["sweep", "--executor", "joint"]).executor == "lambda-batch"
    assert build_parser().parse_args(["sweep"]).executor == "lambda-batch"


def test_missing_dask_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # makes `import distributed` fail
    for name, kw in (("dask", {"scheduler": "tcp://127.0.0.1:1"}), ("dask-local", {"workers": 1})):
        with pytest.raises(ExecutorError, match=r'not installed.*pip install "landscape\[dask\]"'):
            make_executor(name, **kw)
    assert 'pip install "landscape[dask]"' in DASK_INSTALL_HINT


# ----- Dask ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def local_dask():
    pytest.importorskip("distributed")
    from landscape.study.executors import LocalDaskExecutor

    with LocalDaskExecutor(2) as ex:
        yield ex


def test_dask_workers_do_not_oversubscribe(local_dask):
    from landscape.study._dask_plugins import default_torch_threads

    expected = max(1, (os.cpu_count() or 1) // 2)
    assert default_torch_threads(os.cpu_count(), 2) == expected
    threads = local_dask.worker_torch_threads()
    assert len(threads) == 2 and set(threads.values()) == {expected}
    assert local_dask.parallelism == 2
    assert local_dask.describe()["executor"] == "dask-local"


#: Seconds a stranger's client may try to connect to the dask-local scheduler before giving up.
STRANGER_TIMEOUT_S = 2.0


def _listening_ports(pid: int) -> set[int]:
    import psutil

    return {c.laddr.port for c in psutil.Process(pid).net_connections(kind="inet") if c.status == psutil.CONN_LISTEN}


def test_dask_local_is_tls_only_and_serves_no_dashboard(local_dask):
    """dask-local listens on 127.0.0.1 over mutual TLS with its own credentials: a client without
    them (plain tcp://, or TLS with other certificates) cannot connect; and no HTTP server
    (dashboard, info/metrics pages) listens, on 8787 or anywhere else."""
    import distributed
    from distributed.security import Security

    addr = local_dask.client.scheduler.address
    assert addr.startswith("tls://127.0.0.1:"), addr
    host_port = addr[len("tls://"):]
    strangers = [("tcp://" + host_port, None), (addr, Security.temporary())]  # no credentials; other ones
    for url, security in strangers:
        # TimeoutError / CommClosedError: never a working client (the client's own timeout bounds the
        # wait; no wall-clock assertion here, which a loaded machine would fail)
        with pytest.raises(OSError):
            client = distributed.Client(url, security=security, timeout=STRANGER_TIMEOUT_S)
            client.close()
    assert local_dask.submit(_square, 3).result() == 9   # the executor's own client still works

    # no dashboard: not advertised, and no process of the cluster listens except for Dask comms
    cluster = local_dask.cluster
    assert cluster.dashboard_link == ""
    assert "dashboard" not in cluster.scheduler.services
    port = lambda address: int(address.rsplit(":", 1)[1])  # noqa: E731
    for waddr, pid in local_dask.client.run(os.getpid).items():   # a worker's only port: its TLS one
        assert _listening_ports(pid) == {port(waddr)}, f"worker {waddr} listens elsewhere"
    mine = _listening_ports(os.getpid())     # the scheduler and the nannies live in this process
    assert {port(addr), *(port(n.address) for n in cluster.workers.values())} <= mine
    assert 8787 not in mine and cluster.scheduler.http_server.port not in mine, sorted(mine)


def test_dask_warns_about_a_plain_tcp_scheduler(caplog):
    pytest.importorskip("distributed")
    from landscape.study.executors import DaskExecutor

    with caplog.at_level("WARNING", logger="landscape.study.executors"):
        with pytest.raises(ExecutorError, match=r"cannot reach the Dask scheduler"):
            DaskExecutor("tcp://127.0.0.1:1", timeout_s=0.5)
    assert "not a tls:// address" in caplog.text


def test_dask_local_without_cryptography_refuses_to_start(monkeypatch):
    """No TLS credentials without `cryptography`: dask-local must not fall back to an open cluster."""
    pytest.importorskip("distributed")
    monkeypatch.setitem(sys.modules, "cryptography", None)   # makes `import cryptography` fail
    with pytest.raises(ExecutorError, match=r"needs the `cryptography` package.*pip install"):
        make_executor("dask-local", workers=1)


def test_dask_bad_options():
    pytest.importorskip("distributed")
    from landscape.study.executors import DaskExecutor, LocalDaskExecutor

    with pytest.raises(ExecutorError, match=r"workers=0 is invalid: must be an integer >= 1"):
        LocalDaskExecutor(0)
    with pytest.raises(ExecutorError, match=r"exactly one of address"):
        DaskExecutor()
    with pytest.raises(ExecutorError, match=r"--executor dask needs --scheduler"):
        make_executor("dask")


def test_dask_units_equal_inprocess_units_bitwise(local_dask):
    cfg = tiny_study()
    units = [Unit("tiny", c, (cfg, idx)) for c, idx in enumerate(chunks(cfg))]
    ref = list(InProcessExecutor().map_units(run_trajectories, units))
    got = list(local_dask.map_units(run_trajectories, units))
    assert [u for u, _ in got] == units
    for (u, a), (_, b) in zip(ref, got):
        assert np.array_equal(a.theta.numpy(), b.theta.numpy()), f"unit {u}: final θ differ"
        assert list(a.stop_reason) == list(b.stop_reason)
        assert np.array_equal(a.loss, b.loss) and np.array_equal(a.iterations, b.iterations)
    assert local_dask.submit(_square, 7).result() == 7 * 7


# ----- sweeps on Dask: same answers, and a killed worker ----------------------------------------
#: Relative tolerance on the loss of the same stored point computed by two executors (the same
#: batched float64 computation; only the number of torch threads may differ).
LOSS_RTOL = 1e-12
#: A small sweep: K=4, n=1, L=3, λ=3e-2, GD (lr 0.5, at most 3000 steps) then Newton-MR, two
#: widths, 8 trajectories per cell in 2 units of 4 (each unit about a second): DNC and pairs occur.
DASK_SWEEP = ["K=4", "n=1", "L=3", "trajectories=8", "batch_size=4", "engine=gd", "lr=0.5",
              "stages.0.max_iter=3000", "stages.0.stall_window=500", "sweep.d=[4, 5]", "sweep.lambda=[0.03]"]


def _answers(out) -> dict:
    """Per cell: the distinct points (id → kind, label, loss) and each trajectory's (index, point,
    stop reason), read from the cell databases, plus the prevalence rows."""
    from landscape.io.store import StudyStore
    from landscape.study.sweep import read_prevalence_csv

    cells = {}
    for cdir in sorted((out / "cells").iterdir()):
        with StudyStore.open(cdir) as store:
            cells[cdir.name] = {"points": {p.id: (p.kind, p.label, p.loss) for p in store.points()},
                                "trajectories": [(t.idx, t.point_id, t.stop_reason) for t in store.trajectories()],
                                "units": store.committed_units()}
    return {"cells": cells, "prevalence": read_prevalence_csv(out / "prevalence.csv")}


def _assert_same_answers(got: dict, ref: dict) -> None:
    assert got["cells"].keys() == ref["cells"].keys()
    for name, g in got["cells"].items():
        r = ref["cells"][name]
        assert g["trajectories"] == r["trajectories"], f"cell {name}: trajectories differ"
        assert g["units"] == r["units"] == [0, 1], f"cell {name}: units {g['units']}"
        assert g["points"].keys() == r["points"].keys(), f"cell {name}: distinct points differ"
        for pid, (kind, label, loss) in g["points"].items():
            assert (kind, label) == r["points"][pid][:2], f"cell {name}, point {pid}"
            assert abs(loss - r["points"][pid][2]) <= LOSS_RTOL * abs(loss), f"cell {name}, point {pid}: loss"
    skip = {"dynamics", "wall_time_s", "trajectory_time_s"}   # how it ran and how long it took, not what it found
    assert [{k: v for k, v in row.items() if k not in skip} for row in got["prevalence"]] == \
        [{k: v for k, v in row.items() if k not in skip} for row in ref["prevalence"]]


@pytest.fixture(scope="module")
def dask_sweep_reference(tmp_path_factory):
    """The in-process answers of DASK_SWEEP (the reference both Dask runs must reproduce)."""
    pytest.importorskip("distributed")
    from landscape.study.sweep import load_sweep, run_sweep

    out = tmp_path_factory.mktemp("inprocess")
    run_sweep(load_sweep(SWEEP_FILE, DASK_SWEEP), out, progress=False)
    ref = _answers(out)
    labels = {lab for c in ref["cells"].values() for (_, lab, _) in c["points"].values()}
    assert len(labels) >= 2, f"the test sweep should reach several structures, got {labels}"
    return ref


SWEEP_FILE = os.path.join(os.path.dirname(__file__), os.pardir, "data", "sweeps", "width_lambda_small.toml")


def test_dask_sweep_gives_the_same_answers(local_dask, dask_sweep_reference, tmp_path):
    from landscape.study.sweep import load_sweep, run_sweep

    result = run_sweep(load_sweep(SWEEP_FILE, DASK_SWEEP), tmp_path, executor=local_dask, progress=False)
    _assert_same_answers(_answers(tmp_path), dask_sweep_reference)
    assert result["executor"]["executor"] == "dask-local" and result["retried_units"] == {}


def _kill_a_busy_worker(client, killed: list, stop: threading.Event) -> None:
    """Wait until a worker is running a landscape unit, then SIGKILL its process (once)."""
    pids = client.run(os.getpid)  # looked up first, so the kill follows the observation at once
    deadline = time.monotonic() + KILL_WAIT_S
    while not stop.is_set() and time.monotonic() < deadline:
        for addr, keys in client.processing().items():
            keys = [k for k in keys if str(k).startswith("landscape-unit-")]
            if keys:
                os.kill(pids[addr], signal.SIGKILL)
                killed.append((addr, keys))
                return
        time.sleep(0.005)


def test_sweep_survives_a_killed_worker(local_dask, dask_sweep_reference, tmp_path):
    """A worker process is killed while it runs a unit: the sweep completes, every unit is stored
    exactly once with the same answers, and the units that were re-run are named."""
    from landscape.study.sweep import load_sweep, run_sweep

    killed: list = []
    stop = threading.Event()
    killer = threading.Thread(target=_kill_a_busy_worker, args=(local_dask.client, killed, stop), daemon=True)
    killer.start()
    try:
        result = run_sweep(load_sweep(SWEEP_FILE, DASK_SWEEP), tmp_path, executor=local_dask, progress=False)
    finally:
        stop.set()
        killer.join()
    assert killed, "no unit was seen running on a worker: the test did not kill anything"
    retried = result["retried_units"]  # every unit the killed worker held ran again elsewhere
    assert len(retried) >= len(killed[0][1]) >= 1, (killed, retried)
    units = {f"{tmp_path / 'cells' / c}#{u}" for c in ("d=4,lambda=0.03", "d=5,lambda=0.03") for u in (0, 1)}
    assert set(retried) <= units and all(n >= 2 for n in retried.values()), retried
    assert json.loads((tmp_path / "sweep.json").read_text())["retried_units"] == result["retried_units"]
    _assert_same_answers(_answers(tmp_path), dask_sweep_reference)  # nothing lost, nothing twice


# ----- the forked executor (the saddle phase beside the trajectories) ------------------------------
def _slow_square(x, seconds):
    import time

    time.sleep(seconds)
    return x * x


def _raise(message):
    raise ValueError(message)


def _threads_here():
    import torch

    return torch.get_num_threads()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the forked executor needs Linux's fork")
def test_the_forked_executor_computes_beside_this_process_and_gives_its_thread_back():
    """A child computes the value; its error reaches the caller with the child's traceback; the
    child runs one thread while this process runs one fewer (both restored once the child is
    collected); close kills a child still running and restores the threads too."""
    import multiprocessing

    import torch

    from landscape.study.forked import ForkedExecutor, ForkedWorkerError

    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        ex = ForkedExecutor()
        fut = ex.submit(_slow_square, 7, 0.2)
        assert torch.get_num_threads() == 1                      # given up while the child runs
        assert fut.result() == 49 and torch.get_num_threads() == 2
        assert ex.submit(_threads_here).result() == 1            # the child's own: one thread
        with pytest.raises(ForkedWorkerError, match=r"ValueError: not here"):
            ex.submit(_raise, "not here").result()
        assert [r for _, r in ex.map_units(_slow_square, [Unit("s", 0, (2, 0.0)), Unit("s", 1, (3, 0.0))])] == [4, 9]
        running = ex.submit(_slow_square, 5, 60.0)
        ex.close()
        forked = [p for p in multiprocessing.active_children() if p.name.startswith("landscape-forked")]
        assert forked == [] and torch.get_num_threads() == 2
        with pytest.raises(ForkedWorkerError, match="stopped before it sent its results"):
            running.result()
    finally:
        torch.set_num_threads(threads)
