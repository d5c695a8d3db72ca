"""The paper's configuration (K=10, n=5, d=70, L=2, λ=2⁻¹⁰; P = 9100) through the matrix-free path.

Slow (a minute or two on 2 cores): run by ``.ci/run`` in its second pass, ``pytest -m slow``.
"""
import numpy as np
import pytest

from landscape import theory
from landscape.analysis import analyse_point
from landscape.core.model import ModelSpec


@pytest.mark.slow
def test_large_root_dnc_at_paper_scale_is_psd_with_exactly_the_gauge_zero_modes():
    spec = ModelSpec(K=10, n=5, d=70, L=2, lam=2.0 ** -10)
    assert spec.P == 9100
    small, large = theory.dnc_scale_roots(10, 5, 2, 2.0 ** -10)
    a = analyse_point(spec, theory.dnc_point(spec, large), lanczos_k=12, dense_limit=3000)  # the Lanczos path
    h = a.hessian
    assert h.method == "lanczos"
    assert h.symmetry_zero_modes == theory.gauge_orbit_dimension(2, 9, 70) == 1170
    assert h.index == 0 and h.excess_zero_modes == 0 and h.type == "minimum"   # Theorem 4 at paper scale
    assert h.symmetry_verified
    assert a.label == "DNC" and abs(a.loss - theory.dnc_loss(large, 10, 5, 2, 2.0 ** -10)) < 1e-12
    assert np.isfinite(h.smallest_nonzero_eigenvalue) and h.smallest_nonzero_eigenvalue > h.tau
