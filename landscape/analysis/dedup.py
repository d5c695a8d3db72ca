"""Deduplication of critical points modulo the symmetries of MODEL.md §5.

Two certified critical points are the same point of the landscape when they differ only by

* a gauge rotation at an interface (W_{l+1} → W_{l+1}Oᵀ, W_l → O W_l, O ∈ O(d); H₁ counts as W₀),
* a permutation of hidden units (a special gauge rotation; the only one left at ReLU layers),
* a class relabelling (classes permuted together with their sample blocks: the rows of W_L and
  the n-column blocks of H₁), or a permutation of samples within a class.

The **fingerprint** of a point collects quantities unchanged by all of these:

* ``loss``: the objective value;
* ``factor_sv``: singular values of each factor H₁, W₁, …, W_L (descending; orthogonal maps and
  permutations on either side leave them unchanged); for a ReLU model, those of σ(H₂) in place of
  H₁ and W₁ (the data see them only through it, and ReLU critical points come in flat families
  that move the switched-off part of H₂);
* ``z_sv``: singular values of the logits Z (K, N), descending;
* ``z_within``: ‖Z − Z̄ ⊗ 1_nᵀ‖_F, the within-class spread of the logits;
* ``zbar``: the class-mean logit matrix Z̄ (K, K), Z̄[k, c] = mean over the samples i of class c of
  Z[k, i]. A class relabelling π maps Z̄ to P Z̄ Pᵀ (rows and columns together). It is stored in a
  representative class order (``class_order``: classes sorted by descending diagonal entry, then
  descending row sum, ties by index; keys rounded to ORDER_DIGITS significant digits). Ties make that order non-unique, so two fingerprints are
  never compared entrywise: :func:`zbar_match` searches for the class permutation;
* ``zbar_diag``, ``zbar_offdiag``: the sorted diagonal and off-diagonal entries of Z̄ (invariant).

Two fingerprints are the same point (:func:`same_point`) when, with the named tolerances of
:class:`DedupTolerances`, the losses agree, every factor's singular values agree, the within-class
spreads agree, and some class permutation maps one Z̄ onto the other entrywise.
:class:`Deduplicator` assigns each new point to the first stored representative it matches.
"""
from __future__ import annotations

import bisect
import math
from typing import Iterable, Mapping, Sequence

import numpy as np
import torch

from ..core.model import DeepUFM, ModelSpec
from .symmetry import has_class_rotations


from .settings import DedupTolerances  # noqa: E402  (declared with the other thresholds, torch-free)


# ----- fingerprints ------------------------------------------------------------------------------
#: Significant digits kept in the sort keys of the representative class order, so that
#: round-off does not reorder classes whose keys agree.
ORDER_DIGITS = 9


def _class_order(zbar: np.ndarray) -> np.ndarray:
    """Classes sorted by descending diagonal, then descending row sum, then index (stable); the
    keys are rounded to :data:`ORDER_DIGITS` significant digits of max|Z̄|."""
    scale = float(np.max(np.abs(zbar))) or 1.0
    key = lambda v: np.round(v / scale, ORDER_DIGITS)  # noqa: E731
    return np.lexsort((-key(zbar.sum(axis=1)), -key(np.diag(zbar))))


def fingerprints(spec: ModelSpec, thetas) -> list[dict]:
    """Invariant fingerprints (module docstring) of a batch of points θ, (B, P) or (P,).

    Computed in float64 whatever the spec's dtype; every entry is a plain Python float or list,
    ready for JSON.
    """
    th = thetas if torch.is_tensor(thetas) else torch.as_tensor(np.asarray(thetas, dtype=np.float64))
    th = th.detach().to(dtype=torch.float64, device="cpu")
    if th.dim() == 1:
        th = th.unsqueeze(0)
    model = DeepUFM(spec.as_float64())
    with torch.no_grad():
        loss = model.loss(th).numpy()
        Z = model.logits(th).numpy()  # (B, K, N)
        fsv = [torch.linalg.svdvals(f).numpy() for f in model.factors(th)]  # each (B, min(r, c))
        if spec.activation == "relu" and spec.L >= 2:
            # ReLU: H₁ and W₁ are seen through σ(H₂) = σ(W₁H₁) only; ReLU critical points come in
            # flat families that move the negative (switched-off) part of H₂ and with it the
            # singular values of H₁ and W₁ at one loss (measured: six ends of the default ReLU
            # study at ℓ_DNC to 1e-13, equal W₂, W₃ and Z, H₁ singular values 0.9 … 2.3)
            post1 = model.forward(th)[1][1]
            fsv = [torch.linalg.svdvals(post1).numpy()] + fsv[2:]
    K, n = spec.K, spec.n
    rotations = has_class_rotations(spec)
    zbar = Z.reshape(Z.shape[0], K, K, n).mean(axis=3)  # zbar[b, k, c]
    within = np.linalg.norm((Z.reshape(Z.shape[0], K, K, n) - zbar[..., None]).reshape(Z.shape[0], -1), axis=1)
    zsv = np.linalg.svd(Z, compute_uv=False)
    out = []
    off = ~np.eye(K, dtype=bool)
    for b in range(th.shape[0]):
        zb = zbar[b]
        order = _class_order(zb)
        out.append({
            "loss": float(loss[b]),
            "factor_sv": [f[b].tolist() for f in fsv],
            "z_sv": zsv[b].tolist(),
            "z_within": float(within[b]),
            "zbar": zb[np.ix_(order, order)].tolist(),
            "class_order": order.tolist(),
            "zbar_diag": np.sort(np.diag(zb)).tolist(),
            "zbar_offdiag": np.sort(zb[off]).tolist(),
            **({"zbar_rotation_invariants": zbar_rotation_invariants(zb)} if rotations else {}),
        })
    return out


def fingerprint(spec: ModelSpec, theta) -> dict:
    """Fingerprint of one point θ (P,); see :func:`fingerprints`."""
    return fingerprints(spec, theta)[0]


def zbar_rotation_invariants(zbar: np.ndarray) -> list[float]:
    """Invariants of Z̄ under the class rotations Z̄ → QZ̄Qᵀ (Q ∈ O(K); linear MSE,
    :func:`landscape.analysis.symmetry.has_class_rotations`): the singular values of Z̄, the
    eigenvalues of its symmetric part and the singular values of its antisymmetric part, each
    sorted, concatenated (3K numbers)."""
    Z = np.asarray(zbar, dtype=np.float64)
    S, A = 0.5 * (Z + Z.T), 0.5 * (Z - Z.T)
    return (np.sort(np.linalg.svd(Z, compute_uv=False)).tolist() + np.sort(np.linalg.eigvalsh(S)).tolist()
            + np.sort(np.linalg.svd(A, compute_uv=False)).tolist())


# ----- comparison --------------------------------------------------------------------------------
def zbar_match(A, B, tol: float) -> list[int] | None:
    """A class permutation π with |A[i, j] − B[π(i), π(j)]| ≤ tol for all i, j, or None.

    Exhaustive backtracking, so it finds such a π whenever one exists. Class i of A may only map
    to class j of B when the diagonals, the sorted off-diagonal rows and the sorted off-diagonal
    columns agree within ``tol`` (necessary conditions: sorting is 1-Lipschitz in the max norm);
    classes with the fewest candidates are assigned first.
    """
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    K = A.shape[0]
    if A.shape != (K, K) or B.shape != (K, K):
        return None
    off = ~np.eye(K, dtype=bool)

    def rows(M):
        return np.sort(M[off].reshape(K, K - 1), axis=1), np.sort(M.T[off].reshape(K, K - 1), axis=1)

    ra, ca = rows(A)
    rb, cb = rows(B)
    ok = ((np.abs(np.diag(A)[:, None] - np.diag(B)[None, :]) <= tol)
          & (np.abs(ra[:, None, :] - rb[None, :, :]) <= tol).all(axis=2)
          & (np.abs(ca[:, None, :] - cb[None, :, :]) <= tol).all(axis=2))
    order = sorted(range(K), key=lambda i: int(ok[i].sum()))
    perm = [-1] * K
    used = [False] * K

    def extend(depth: int) -> bool:
        if depth == K:
            return True
        i = order[depth]
        done = order[:depth]
        for j in np.flatnonzero(ok[i]):
            if used[j]:
                continue
            if all(abs(A[i, a] - B[j, perm[a]]) <= tol and abs(A[a, i] - B[perm[a], j]) <= tol for a in done):
                perm[i], used[j] = int(j), True
                if extend(depth + 1):
                    return True
                perm[i], used[j] = -1, False
        return False

    return perm if extend(0) else None


def _close_sv(a: Sequence[float], b: Sequence[float], tol: DedupTolerances) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return False
    scale = max(float(np.max(a, initial=0.0)), float(np.max(b, initial=0.0)))
    return bool(np.all(np.abs(a - b) <= tol.sv_atol + tol.sv_rtol * scale))


def loss_close(la: float, lb: float, tol: DedupTolerances) -> bool:
    return abs(la - lb) <= tol.loss_atol + tol.loss_rtol * max(abs(la), abs(lb))


def same_point(fa: Mapping, fb: Mapping, tol: DedupTolerances = DedupTolerances()) -> bool:
    """Whether two fingerprints describe one point modulo symmetry (rules in the module docstring)."""
    if not loss_close(fa["loss"], fb["loss"], tol):
        return False
    if len(fa["factor_sv"]) != len(fb["factor_sv"]):
        return False
    if not all(_close_sv(a, b, tol) for a, b in zip(fa["factor_sv"], fb["factor_sv"])):
        return False
    if not _close_sv(fa["z_sv"], fb["z_sv"], tol):
        return False
    scale_z = max(fa["z_sv"][0], fb["z_sv"][0])
    if abs(fa["z_within"] - fb["z_within"]) > tol.sv_atol + tol.sv_rtol * scale_z:
        return False
    A, B = np.asarray(fa["zbar"]), np.asarray(fb["zbar"])
    ztol = tol.zbar_atol + tol.zbar_rtol * max(float(np.max(np.abs(A))), float(np.max(np.abs(B))))
    if "zbar_rotation_invariants" in fa and "zbar_rotation_invariants" in fb:
        # linear MSE: a continuous class rotation joins the points, not only a relabelling
        ia, ib = np.asarray(fa["zbar_rotation_invariants"]), np.asarray(fb["zbar_rotation_invariants"])
        return ia.shape == ib.shape and bool(np.all(np.abs(ia - ib) <= ztol))
    return zbar_match(A, B, ztol) is not None


class Deduplicator:
    """Assigns points to distinct points of the landscape, modulo symmetry.

    Holds one representative fingerprint per distinct point, sorted by loss so that only the
    representatives inside the loss window are compared. A new point joins the first matching
    representative (smallest loss difference first); representatives never move, so the result
    does not drift when many noisy copies arrive. Rebuild it from a store with
    ``Deduplicator(tol, [(p.id, p.fingerprint) for p in store.points()])``.
    """

    def __init__(self, tolerances: DedupTolerances = DedupTolerances(),
                 points: Iterable[tuple[int, Mapping]] = (), next_id: int | None = None):
        self.tolerances = tolerances
        self._loss: list[float] = []
        self._ids: list[int] = []
        self._fps: list[Mapping] = []
        for pid, fp in points:
            self.add(pid, fp)
        self.next_id = (max(self._ids) + 1 if self._ids else 0) if next_id is None else int(next_id)

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, point_id: int, fp: Mapping) -> None:
        """Register a new distinct point (no matching is done)."""
        i = bisect.bisect(self._loss, fp["loss"])
        self._loss.insert(i, float(fp["loss"]))
        self._ids.insert(i, int(point_id))
        self._fps.insert(i, fp)

    def match(self, fp: Mapping) -> int | None:
        """Id of the representative ``fp`` matches, or None."""
        t = self.tolerances
        loss = float(fp["loss"])
        w = (t.loss_atol + t.loss_rtol * abs(loss)) / (1.0 - t.loss_rtol) if t.loss_rtol < 1 else math.inf
        lo, hi = bisect.bisect_left(self._loss, loss - w), bisect.bisect_right(self._loss, loss + w)
        for i in sorted(range(lo, hi), key=lambda i: abs(self._loss[i] - loss)):
            if same_point(fp, self._fps[i], t):
                return self._ids[i]
        return None

    def assign(self, fp: Mapping) -> tuple[int, bool]:
        """(point id, is_new): the matching representative, or a new id (``next_id``) registered."""
        pid = self.match(fp)
        if pid is not None:
            return pid, False
        pid = self.next_id
        self.add(pid, fp)
        self.next_id += 1
        return pid, True
