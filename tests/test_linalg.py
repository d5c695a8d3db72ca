"""MINRES (core.linalg.minres_batched) against dense linear algebra."""
import numpy as np
import torch

from landscape.core.linalg import minres_batched


def _singular_system(seed: int, P: int = 40, null: int = 12):
    """A = Q diag(λ) Qᵀ with ``null`` zero eigenvalues and the rest in [1e-3, 1], a consistent
    right-hand side b = A x* of norm 1e-10, and b plus a null-space component of norm 1e-15 (the
    round-off of a gradient computed to 1e-15 at a point of norm-1e-10 gradient). Returns
    (A, b, noisy b, the null-space basis)."""
    rng = np.random.default_rng(seed)
    Q, _ = np.linalg.qr(rng.standard_normal((P, P)))
    lam = np.concatenate([np.zeros(null), np.geomspace(1e-3, 1.0, P - null)])
    A = (Q * lam) @ Q.T
    A = 0.5 * (A + A.T)
    b = A @ (Q[:, null:] @ rng.standard_normal(P - null))
    b *= 1e-10 / np.linalg.norm(b)
    noise = Q[:, :null] @ rng.standard_normal(null)
    return A, b, b + 1e-15 * noise / np.linalg.norm(noise), Q[:, :null]


def test_minres_with_an_absolute_floor_returns_the_minimum_norm_solution_of_a_noisy_singular_system():
    """With the floor at 1e-14 every row stops with a true residual ‖Ax − b‖ ≤ 2e-14, so its
    range part is within ‖Ax − b‖/λ_min⁺ (λ_min⁺ = 1e-3) of A⁺b, and its null-space part (what
    chasing the rhs's round-off grows: without the floor, 10¹⁰ × ‖A⁺b‖ on these systems) stays
    below 2% of ‖A⁺b‖."""
    systems = [_singular_system(s) for s in range(4)]
    A = torch.tensor(np.stack([s[0] for s in systems]))
    b = torch.tensor(np.stack([s[2] for s in systems]))
    for host in (False, True):
        x, est, it = minres_batched(lambda v: (A @ v[:, :, None])[:, :, 0], b, maxiter=400, rtol=1e-10,
                                    atol=1e-14, host=host)
        for (Ad, bd, _, N), xb in zip(systems, x.numpy()):
            ref = np.linalg.pinv(Ad, rcond=1e-12) @ bd
            res = np.linalg.norm(Ad @ xb - bd)
            null_part = N @ (N.T @ xb)
            assert res <= 2e-14
            assert np.linalg.norm(xb - null_part - ref) <= 1.01 * res / 1e-3
            assert np.linalg.norm(null_part) <= 0.02 * np.linalg.norm(ref)


def test_minres_solves_a_well_posed_system_to_its_relative_tolerance():
    """A positive-definite system, no floor: x = A⁻¹b to the requested relative residual."""
    rng = np.random.default_rng(7)
    Q, _ = np.linalg.qr(rng.standard_normal((30, 30)))
    A = (Q * np.geomspace(1e-2, 1.0, 30)) @ Q.T
    A = 0.5 * (A + A.T)
    b = rng.standard_normal((2, 30))
    x, _, _ = minres_batched(lambda v: v @ torch.tensor(A), torch.tensor(b), maxiter=300, rtol=1e-12)
    np.testing.assert_allclose(x.numpy(), np.linalg.solve(A, b.T).T, rtol=1e-8, atol=1e-10)
