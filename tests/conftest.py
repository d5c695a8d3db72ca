"""Shared test helpers: float64 everywhere, seeded randomness, and an allclose that explains itself."""
import os

import numpy as np
import pytest
import torch

torch.set_default_dtype(torch.float64)
if os.environ.get("PYTEST_XDIST_WORKER"):
    # one pytest worker per core (pyproject's `-n`): each computes on one thread, and so do the
    # command lines it starts, or two workers' BLAS threads share two cores and thrash (measured:
    # a 4 s continuation test took 94 s)
    torch.set_num_threads(1)
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        os.environ[var] = "1"


def assert_close(actual, expected, *, atol=0.0, rtol=0.0, what=""):
    """np.allclose with a message giving the worst entry, its value and the tolerance."""
    a = np.asarray(actual, dtype=float)
    e = np.asarray(expected, dtype=float)
    err = np.abs(a - e)
    bound = atol + rtol * np.abs(e)
    if not np.all(err <= bound):
        i = np.unravel_index(np.argmax(err - bound), err.shape) if err.ndim else ()
        raise AssertionError(f"{what}: worst entry {i}: actual {a[i] if a.ndim else a!r}, expected "
                             f"{e[i] if e.ndim else e!r}, |diff| {err[i] if err.ndim else err:.3e} > "
                             f"atol {atol:g} + rtol {rtol:g}·|expected|")


def assert_same_end_points(spec, actual, expected, *, across=1e-12, along=1e-7, what=""):
    """Converged end points (B, P) that agree across the symmetry orbit to ``across`` and along
    it to ``along``: at a minimum the Hessian is singular along the orbit, so the last Newton step
    leaves that component undetermined to ~‖∇L‖/λ_min, and two runs that round differently may
    end at points of the orbit ~1e-9 apart (landscape.core.gauge)."""
    from landscape.core.gauge import GaugeProjector
    from landscape.core.model import DeepUFM

    a = torch.as_tensor(actual, dtype=torch.float64)
    e = torch.as_tensor(expected, dtype=torch.float64)
    cross = GaugeProjector(spec, DeepUFM(spec).factors(e))(a - e)
    assert_close(cross, torch.zeros_like(cross), atol=across, what=f"{what} (across the orbit)")
    assert_close(a, e, atol=along, what=what)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
