"""Shared test helpers: float64 everywhere, seeded randomness, and an allclose that explains itself."""
import numpy as np
import pytest
import torch

torch.set_default_dtype(torch.float64)


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


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
