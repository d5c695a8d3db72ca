"""Deduplication modulo symmetry: copies related by MODEL.md §5 merge, distinct structures do not."""
import math

import numpy as np
import pytest
import torch
from scipy.optimize import brentq, minimize_scalar
from scipy.stats import ortho_group

from landscape.analysis.dedup import DedupTolerances, Deduplicator, fingerprint, fingerprints, same_point, zbar_match
from landscape.core.model import DeepUFM, ModelSpec
from landscape.analysis.theory import balanced_point, dnc_loss, dnc_point, dnc_scale_roots

SPEC = ModelSpec(K=4, n=2, d=6, L=2, lam=1e-3)


# ----- symmetry maps on flat θ (P,) ---------------------------------------------------------------
def _factors(spec, theta):
    out, i = [], 0
    for r, c in spec.shapes:
        out.append(theta[i:i + r * c].reshape(r, c).copy())
        i += r * c
    return out


def _flat(F):
    return np.concatenate([f.reshape(-1) for f in F])


def gauge(spec, theta, Os):
    """Interface l = 1..L (between factor l−1 and factor l): F[l−1] → O F[l−1], F[l] → F[l] Oᵀ.
    ``Os[l-1]`` is a d×d orthogonal matrix or None (identity)."""
    F = _factors(spec, theta)
    for l, O in enumerate(Os, start=1):
        if O is not None:
            F[l - 1], F[l] = O @ F[l - 1], F[l] @ O.T
    return _flat(F)


def relabel(spec, theta, perm):
    """Class c becomes class perm[c]: the n-column block c of H₁ moves to block perm[c], row c of
    W_L moves to row perm[c]."""
    F = _factors(spec, theta)
    n = spec.n
    H = np.empty_like(F[0])
    W = np.empty_like(F[-1])
    for c, pc in enumerate(perm):
        H[:, pc * n:(pc + 1) * n] = F[0][:, c * n:(c + 1) * n]
        W[pc] = F[-1][c]
    F[0], F[-1] = H, W
    return _flat(F)


def loss(spec, theta):
    return float(DeepUFM(spec).loss(torch.as_tensor(theta).unsqueeze(0))[0])


def pairing_zbar(K, beta):
    Z = np.zeros((K, K))
    for c in range(K):
        Z[c, c], Z[c ^ 1, c] = beta, -beta
    return Z


def pairing_loss(beta, spec):
    K, n, L, lam = spec.K, spec.n, spec.L, spec.lam
    return (math.log1p(math.exp(-2 * beta) + (K - 2) * math.exp(-beta))
            + 0.5 * lam * (L + 1) * (K // 2) * (2 * beta * math.sqrt(n)) ** (2 / (L + 1)))


@pytest.fixture(scope="module")
def points():
    """DNC at the large root, and the class-pairing critical point (β minimising ℓ_LR)."""
    alpha = dnc_scale_roots(SPEC.K, SPEC.n, SPEC.L, SPEC.lam)[1]
    beta = minimize_scalar(pairing_loss, bounds=(0.5, 20.0), args=(SPEC,), method="bounded",
                           options={"xatol": 1e-12}).x
    dnc, pairs = dnc_point(SPEC, alpha), balanced_point(SPEC, pairing_zbar(SPEC.K, beta))
    model = DeepUFM(SPEC)
    g = model.grad(torch.as_tensor(np.stack([dnc, pairs])))
    assert float(g.norm(dim=1).max()) < 1e-8  # both are critical points
    return {"dnc": dnc, "pairs": pairs}


def _random_copy(spec, theta, rng, relu=False):
    """A copy of θ under a random symmetry: gauge rotations (permutations only at ReLU layers),
    hidden-unit permutations and a class relabelling."""
    d = spec.d
    Os = []
    for l in range(1, spec.L + 1):
        if relu and l > 1:
            Os.append(np.eye(d)[rng.permutation(d)])
        else:
            Os.append(ortho_group.rvs(d, random_state=rng) @ np.eye(d)[rng.permutation(d)])
    return relabel(spec, gauge(spec, theta, Os), rng.permutation(spec.K))


@pytest.mark.parametrize("spec", [SPEC, ModelSpec(K=3, n=3, d=5, L=3, lam=2e-3, activation="relu"),
                                  ModelSpec(K=3, n=2, d=4, L=1, lam=1e-2, loss="mse")],
                         ids=["linear-ce", "relu-ce", "L1-mse"])
def test_symmetric_copies_merge(spec):
    """Holds for any θ, critical or not, so random θ test it without special structure."""
    rng = np.random.default_rng(10)
    theta = rng.standard_normal(spec.P)
    copies = [_random_copy(spec, theta, rng, relu=spec.activation == "relu") for _ in range(4)]
    for c in copies:
        assert np.abs(c - theta).max() > 0.1  # a genuinely different parameter vector
        assert loss(spec, c) == pytest.approx(loss(spec, theta), rel=1e-13)
    fps = fingerprints(spec, np.stack([theta, *copies]))
    dd = Deduplicator()
    assert [dd.assign(f) for f in fps] == [(0, True)] + [(0, False)] * 4
    # a change that is not a symmetry gives a new point
    other = theta.copy()
    other[-spec.K * spec.d:] *= 1.01  # scale W_L
    assert dd.assign(fingerprint(spec, other)) == (1, True)


def test_dnc_and_pairing_never_merge(points):
    rng = np.random.default_rng(11)
    dd = Deduplicator()
    ids = {}
    for name in ("dnc", "pairs"):
        ids[name], new = dd.assign(fingerprint(SPEC, points[name]))
        assert new
    for _ in range(3):
        for name in ("dnc", "pairs"):
            assert dd.assign(fingerprint(SPEC, _random_copy(SPEC, points[name], rng))) == (ids[name], False)
    assert len(dd) == 2 and ids["dnc"] != ids["pairs"]
    # Even when the losses agree exactly, the structure keeps them apart: pick the DNC scale α
    # whose loss equals the pairing loss (that DNC point is not critical; the comparison is the test).
    alpha = dnc_scale_roots(SPEC.K, SPEC.n, SPEC.L, SPEC.lam)[1]
    fp_pairs = fingerprint(SPEC, points["pairs"])
    a_eq = brentq(lambda a: dnc_loss(a, SPEC.K, SPEC.n, SPEC.L, SPEC.lam) - fp_pairs["loss"], alpha, 1e3, xtol=1e-14)
    fp_dnc = fingerprint(SPEC, dnc_point(SPEC, a_eq))
    assert fp_pairs["loss"] == pytest.approx(fp_dnc["loss"], rel=1e-12)
    assert not same_point(fp_pairs, fp_dnc) and not same_point(fp_dnc, fp_pairs)
    # and the two DNC scales (both roots are critical) are different points
    small = fingerprint(SPEC, dnc_point(SPEC, dnc_scale_roots(SPEC.K, SPEC.n, SPEC.L, SPEC.lam)[0]))
    assert dd.assign(small) == (2, True)


def test_stable_under_certification_noise(points):
    rng = np.random.default_rng(12)
    dd = Deduplicator()
    ids = {name: dd.assign(fingerprint(SPEC, th))[0] for name, th in points.items()}
    for _ in range(10):
        for name, th in points.items():
            noisy = _random_copy(SPEC, th, rng) + 1e-10 * rng.standard_normal(SPEC.P)
            assert dd.assign(fingerprint(SPEC, noisy)) == (ids[name], False)
    assert len(dd) == 2


def test_zbar_match_finds_the_permutation():
    rng = np.random.default_rng(13)
    A = rng.standard_normal((6, 6))
    perm = rng.permutation(6)
    B = np.empty_like(A)
    B[np.ix_(perm, perm)] = A  # B[π i, π j] = A[i, j]
    assert zbar_match(A, B, 0.0) == perm.tolist()
    B[perm[2], perm[4]] += 1e-3
    assert zbar_match(A, B, 1e-4) is None
    assert zbar_match(A, B, 2e-3) == perm.tolist()
    # fully symmetric matrices (DNC): every permutation works, the search returns at once
    S = np.eye(8) - 1 / 8
    assert sorted(zbar_match(S, S, 1e-12)) == list(range(8))


def test_tolerances_are_named_and_round_trip():
    tol = DedupTolerances(sv_rtol=1e-3)
    assert DedupTolerances.from_dict(tol.to_dict()) == tol
    assert set(tol.to_dict()) == {"loss_atol", "loss_rtol", "sv_atol", "sv_rtol", "zbar_atol", "zbar_rtol"}
    with pytest.raises(ValueError, match="zbar_atol"):
        DedupTolerances(zbar_atol=-1.0)


def test_rebuild_from_stored_fingerprints(points):
    """A resumed study rebuilds its deduplicator from stored (id, fingerprint) pairs."""
    fps = {7: fingerprint(SPEC, points["dnc"]), 3: fingerprint(SPEC, points["pairs"])}
    dd = Deduplicator(DedupTolerances(), fps.items())
    assert dd.next_id == 8
    assert dd.match(fingerprint(SPEC, points["pairs"])) == 3
