"""Descents from a saddle: which unstable directions, and the ±ε starts along them.

A saddle of index m has an m-dimensional unstable eigenspace. When its negative eigenvalues are
distinct, the eigenvectors are unique up to sign and the descents start at θ_s ± ε·v_j. When
some of them are (near) degenerate — the small-root DNC point of the default study has six equal
ones — the eigenvectors LAPACK returns are an arbitrary basis of that eigenspace, which changes
with the BLAS thread count; descending along them makes the basin graph depend on it. Instead,
for every cluster of eigenvalues equal within ``degeneracy_rtol`` (relative to the most negative
one) the directions are ``directions`` unit vectors drawn uniformly from the cluster's
eigenspace: seeded Gaussian vectors of the whole parameter space, projected onto the eigenspace
(V Vᵀ r does not depend on the basis V) and normalised. The seed is fixed by the study seed and
the saddle's loss, so the same saddle gets the same directions in every run. At most
``max_descents`` descents per saddle (most negative directions first), so an index-45 saddle at
the paper's size costs a bounded time.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ..core.model import DeepUFM
from ..io.records import EdgeRecord


def saddle_seed(study_seed: int, loss: float) -> int:
    """Seed of a saddle's descent directions: from the study seed and its loss to 10 significant
    digits (a saddle found twice, or in another run, gets the same seed)."""
    key = int(round(float(loss) * 10 ** (9 - math.floor(math.log10(abs(loss)))))) if loss else 0
    return int(np.random.SeedSequence([int(study_seed), abs(key) % 2 ** 63]).generate_state(1)[0])


def eigen_clusters(values: np.ndarray, rtol: float) -> list[np.ndarray]:
    """Indices of ``values`` (ascending) grouped into clusters whose neighbours differ by at most
    rtol·max|values| (single linkage), most negative first."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return []
    order = np.argsort(values)
    scale = float(np.abs(values).max()) or 1.0
    clusters, cur = [], [order[0]]
    for a, b in zip(order[:-1], order[1:]):
        if values[b] - values[a] <= rtol * scale:
            cur.append(b)
        else:
            clusters.append(np.array(cur))
            cur = [b]
    clusters.append(np.array(cur))
    return clusters


def unstable_directions(values: np.ndarray, vectors: np.ndarray, *, directions: int, max_descents: int,
                        degeneracy_rtol: float, seed: int) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Unit directions (P, q) into the unstable eigenspace (module docstring), their eigenvalue
    (q,) and a note per direction (``"eigenvector j"`` or ``"cluster c sample s"``). Each direction
    gives two descents (±), so q ≤ max_descents // 2."""
    values = np.asarray(values, dtype=np.float64)
    V = np.asarray(vectors, dtype=np.float64).reshape(-1, values.size)
    rng = np.random.default_rng(seed)
    dirs, evs, notes = [], [], []
    for c, idx in enumerate(eigen_clusters(values, degeneracy_rtol)):
        if idx.size == 1:
            v = V[:, idx[0]]
            dirs.append(v / np.linalg.norm(v))
            evs.append(values[idx[0]])
            notes.append(f"eigenvector {int(idx[0])}")
            continue
        Q, _ = np.linalg.qr(V[:, idx])
        for s in range(directions):
            u = Q @ (Q.T @ rng.standard_normal(V.shape[0]))
            dirs.append(u / np.linalg.norm(u))
            evs.append(float(values[idx].mean()))
            notes.append(f"cluster {c} (multiplicity {idx.size}) sample {s}")
    q = min(len(dirs), max(1, max_descents // 2))
    return np.stack(dirs[:q], axis=1), np.array(evs[:q]), notes[:q]


@dataclass
class SaddleConnection:
    """The ±ε descents from one saddle.

    ``starts`` (2q, P): row 2j is θ_s + ε u_j, row 2j+1 is θ_s − ε u_j, u_j the unit direction j;
    ``directions`` (2q, 2) int64 rows (j, sign); ``start_loss`` (2q,) the loss at each start
    (below ``saddle_loss`` to second order in ε for a strict saddle); ``results``: whatever
    ``descend(starts)`` returned.
    """

    starts: torch.Tensor
    directions: np.ndarray
    start_loss: np.ndarray
    saddle_loss: float
    eps: float
    results: Any

    def edges(self, saddle_id: int, targets: Sequence[tuple[int | None, float | None, str]],
              eigenvalues: Sequence[float] | None = None, first_direction: int = 0) -> list[EdgeRecord]:
        """Edge records for :meth:`landscape.io.store.StudyStore.commit_unit`, directions numbered
        from ``first_direction``.

        ``targets[r]`` = (point id or None, its loss or None, stop reason) of the descent from
        ``starts[r]``; ``eigenvalues[j]`` the eigenvalue of direction j (optional).
        """
        if len(targets) != len(self.directions):
            raise ValueError(f"{len(targets)} targets for {len(self.directions)} descents")
        out = []
        for (j, sign), (tid, tloss, reason) in zip(self.directions.tolist(), targets):
            out.append(EdgeRecord(saddle_id=int(saddle_id), direction=first_direction + j, sign=sign,
                                  target_id=None if tid is None else int(tid),
                                  eigenvalue=None if eigenvalues is None else float(eigenvalues[j]), eps=self.eps,
                                  barrier=None if tid is None else self.saddle_loss - float(tloss),
                                  stop_reason=reason))
        return out


def descend_from_saddle(model: DeepUFM, theta_saddle, neg_eigvecs, descend: Callable[[torch.Tensor], Any],
                   eps: float = 1e-3) -> SaddleConnection:
    """Start a descent at θ_s ± ε u_j for every direction u_j (columns of ``neg_eigvecs``, (P, q),
    normalised here to unit Euclidean norm); ``eps`` is the Euclidean step. ``descend`` receives
    the (2q, P) starts in the model's dtype and device and may return anything; it is stored as
    ``results``."""
    if not (math.isfinite(eps) and eps > 0):
        raise ValueError(f"eps={eps!r} is invalid: must be a finite number > 0")
    th = torch.as_tensor(theta_saddle, dtype=model.dtype, device=model.device).reshape(-1)
    V = torch.as_tensor(np.asarray(neg_eigvecs), dtype=model.dtype, device=model.device)
    if V.dim() == 1:
        V = V.unsqueeze(1)
    if V.shape[0] != th.shape[0]:
        raise ValueError(f"neg_eigvecs has {V.shape[0]} rows: must be (P={th.shape[0]}, m)")
    norms = torch.linalg.vector_norm(V, dim=0)
    if bool((norms == 0).any()):
        raise ValueError("neg_eigvecs has a zero column")
    V = V / norms
    m = V.shape[1]
    steps = torch.stack([V.T, -V.T], dim=1).reshape(2 * m, th.shape[0])  # rows: +v0, −v0, +v1, −v1, …
    starts = th.unsqueeze(0) + eps * steps
    directions = np.stack([np.repeat(np.arange(m), 2), np.tile([1, -1], m)], axis=1).astype(np.int64)
    with torch.no_grad():
        start_loss = model.loss(starts).cpu().numpy()
        saddle_loss = float(model.loss(th.unsqueeze(0))[0])
    return SaddleConnection(starts=starts, directions=directions, start_loss=start_loss,
                            saddle_loss=saddle_loss, eps=float(eps), results=descend(starts))
