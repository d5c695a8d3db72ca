"""Devices: a clear error where CUDA is absent, device-agnostic paths on the CPU, and the same
float64 results on a GPU up to round-off (those tests skip, with their reason, without CUDA)."""
import numpy as np
import pytest
import torch

from landscape.analysis import theory as T
from landscape.analysis.point import analyse_point
from landscape.core.init import InitScheme, draw_starts
from landscape.core.model import DeepUFM, ModelSpec
from landscape.core.validate import SpecError
from landscape.engines import StageConfig, run_pipeline
from landscape.study.config import load_study, resolve_device

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="no CUDA device visible to torch here")
STAGES = [StageConfig(engine="gd", lr=0.5, max_iter=2000, tol=1e-7),
          StageConfig(engine="newton", max_iter=60, stall_window=8, tol=1e-10)]


@pytest.mark.skipif(CUDA, reason="this machine has CUDA: the error path cannot be exercised")
def test_asking_for_cuda_without_one_names_device(tmp_path, capsys):
    for value in ("cuda", "cuda:0"):
        with pytest.raises(SpecError, match=f"device='{value}' is invalid: torch sees no CUDA device"):
            resolve_device(value)
    from landscape.cli import main
    assert main(["run", "--out", str(tmp_path / "x"), "--no-progress", "--set", "device=\"cuda\""]) == 2
    err = capsys.readouterr().err
    assert "device='cuda' is invalid" in err and "Traceback" not in err


@pytest.mark.parametrize("value", ["gpu", "cuda:x", 3, "CPU"])
def test_a_device_outside_the_allowed_set_is_refused(value):
    with pytest.raises(SpecError, match="device=.* is invalid: must be \"auto\", \"cpu\", \"cuda\" or \"cuda:N\""):
        load_study(None, [f"device={value!r}" if isinstance(value, str) else f"device={value}"])


def test_auto_is_the_cpu_here_and_starts_are_drawn_on_the_host():
    assert resolve_device("auto") == torch.device("cuda" if CUDA else "cpu")
    spec = ModelSpec(K=3, n=2, d=4, L=2)
    a = draw_starts(spec, InitScheme(), 1, [5, 6], device="cpu")
    assert a.device.type == "cpu" and torch.equal(a, draw_starts(spec, InitScheme(), 1, [5, 6]))


def test_device_agnostic_paths_with_a_synchronisation_window_on_the_cpu():
    """The GPU driver path (rows frozen between synchronisations every 32 iterations) run on the
    CPU: the same stops, iterations and end points as synchronising every iteration."""
    spec = ModelSpec(K=3, n=2, d=5, L=2, lam=5e-3)
    m = DeepUFM(spec)
    th = draw_starts(spec, InitScheme(), 2, range(8))
    a = run_pipeline(m, th, STAGES, sync_every=1)
    b = run_pipeline(m, th, STAGES, sync_every=32)
    assert list(a.stop_reason) == list(b.stop_reason)
    np.testing.assert_array_equal(a.iterations, b.iterations)
    np.testing.assert_allclose(b.theta.numpy(), a.theta.numpy(), atol=1e-12)


@needs_cuda
def test_the_same_trajectories_on_cpu_and_gpu():
    spec = ModelSpec(K=3, n=2, d=5, L=2, lam=5e-3)
    th = draw_starts(spec, InitScheme(), 2, range(16))
    cpu = run_pipeline(DeepUFM(spec), th, STAGES)
    gpu = run_pipeline(DeepUFM(spec, device="cuda"), th.cuda(), STAGES)
    assert list(cpu.stop_reason) == list(gpu.stop_reason)
    ok = cpu.converged
    np.testing.assert_allclose(gpu.loss[ok], cpu.loss[ok], atol=1e-10)
    Zc = DeepUFM(spec).logits(cpu.theta[torch.from_numpy(ok)])
    Zg = DeepUFM(spec).logits(gpu.theta[torch.from_numpy(ok)])
    np.testing.assert_allclose(Zg.numpy(), Zc.numpy(), atol=1e-6)


@needs_cuda
def test_the_same_analysis_on_cpu_and_gpu():
    spec = ModelSpec(K=4, n=2, d=6, L=3, lam=1e-3)
    th = T.dnc_point(spec, T.dnc_scale_roots(4, 2, 3, 1e-3)[-1])
    for dense_limit in (None, 10):   # dense and block-Lanczos paths
        c = analyse_point(spec, th, dense_limit=dense_limit).hessian
        g = analyse_point(spec, th, dense_limit=dense_limit, device="cuda").hessian
        assert (c.index, c.nullity, c.symmetry_zero_modes, c.type) == (g.index, g.nullity, g.symmetry_zero_modes, g.type)
        np.testing.assert_allclose(g.spectrum, c.spectrum, atol=1e-10)


@needs_cuda
def test_a_study_runs_on_the_gpu(tmp_path):
    from landscape.study.run import run_study
    cfg = load_study(None, ["K=3", "n=2", "d=4", "L=2", "trajectories=16", "batch_size=16", "device=\"cuda\"",
                            "saddles.starts=0", "transition_states.max_pairs=0"])
    ref = load_study(None, ["K=3", "n=2", "d=4", "L=2", "trajectories=16", "batch_size=16", "device=\"cpu\"",
                            "saddles.starts=0", "transition_states.max_pairs=0"])
    a = run_study(cfg, tmp_path / "gpu", progress=False)
    b = run_study(ref, tmp_path / "cpu", progress=False)
    assert a["environment"]["device"].startswith("cuda")
    assert [(p["label"], p["basin_count"]) for p in a["points"]] == [(p["label"], p["basin_count"]) for p in b["points"]]


def test_host_allocator_tuning_is_applied_once_and_can_be_declined():
    """core.allocator: on glibc the mallopt tuning takes effect (once per process); with
    LANDSCAPE_KEEP_HOST_MEMORY=0 it is left alone."""
    import ctypes.util
    import os
    import subprocess
    import sys

    code = "from landscape.core.allocator import retain_freed_host_memory as r; print(r(), r())"
    env = dict(os.environ)
    glibc = sys.platform.startswith("linux") and ctypes.util.find_library("c") is not None
    env["LANDSCAPE_KEEP_HOST_MEMORY"] = "1"
    on = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    env["LANDSCAPE_KEEP_HOST_MEMORY"] = "0"
    off = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    assert off.split() == ["False", "False"]
    if glibc:
        assert on.split() == ["True", "True"]
