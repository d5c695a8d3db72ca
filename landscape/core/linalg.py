"""Batched Krylov methods on B independent symmetric operators at once: MINRES and Lanczos.

Used by the Newton-MR engines: each row solves H_b p_b = −g_b with only Hessian-vector products.
MINRES minimises ‖H p − b‖ over the Krylov space, so it copes with the singular (symmetry) and
indefinite (saddle) Hessians of the deep UFM; from p₀ = 0 on a consistent system it returns the
minimum-norm solution, which has no component along the symmetry null space.
"""
from __future__ import annotations

from typing import Callable

import numpy as np
import scipy.linalg
import torch

from .arrayops import NUMPY


def minres_batched(matvec: Callable[[torch.Tensor], torch.Tensor], b: torch.Tensor, *,
                   maxiter: int = 200, rtol: float | torch.Tensor = 1e-10, atol: float = 0.0,
                   host: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Solve A_b x_b = b_b for every row b of ``b`` (B, P); ``matvec`` maps (B, P) → (B, P).
    ``rtol``: one tolerance, or one per row (B,). ``atol``: an absolute floor: a row also stops
    once ‖r‖ ≤ atol. A right-hand side known only to its round-off (a gradient of norm 1e-10
    computed to 1e-15) makes the system inconsistent at that level; iterating below it drives x
    along the operator's near-null directions (a 1e-10 gradient at a minimum of the default model
    gave a step of norm 2e-3 against the true 1e-8 after 32 iterations, where 1 was enough).

    Follows Paige & Saunders' MINRES (the recurrences of ``scipy.sparse.linalg.minres``), with
    per-row scalars. A row stops updating once its residual estimate ‖r‖ ≤ rtol·‖b‖, its Krylov
    space is exhausted, or ‖A r‖ ≤ rtol·‖A‖·‖r‖ (least-squares solution of an inconsistent system).
    ``host``: run the recurrences in numpy on views of the same CPU memory (about 40 operations an
    iteration, whose cost in torch at small P is dispatch: the default study's saddle search, B = 4,
    P = 224; ``matvec`` still takes and returns torch tensors). The same numbers up to the
    round-off of the row sums.

    Returns (x, residual_norm_estimate, iterations), shapes (B, P), (B,), (B,).
    """
    if host:
        rt = rtol.detach().cpu().numpy() if torch.is_tensor(rtol) else rtol
        with np.errstate(all="ignore"):   # finished rows' recurrences may overflow, ignored as in torch
            x, phibar, iters = _minres(np, lambda v: matvec(torch.from_numpy(v)).detach().numpy(),
                                       b.detach().cpu().numpy(), maxiter, rt, atol)
        return torch.from_numpy(x), torch.from_numpy(phibar), torch.from_numpy(iters)
    return _minres(torch, matvec, b, maxiter, rtol, atol)


def _row_norm(xp, X):
    """‖X_b‖ per row of a (B, P) array of namespace ``xp`` (numpy or torch)."""
    return np.sqrt(NUMPY.sqnorm(X)) if xp is np else torch.linalg.vector_norm(X, dim=1)


def _minres(xp, matvec, b, maxiter: int, rtol, atol: float = 0.0):
    """The MINRES recurrences of :func:`minres_batched` on arrays of ``xp`` (numpy or torch)."""
    B, P = b.shape
    eps = float(xp.finfo(b.dtype).eps)
    x = xp.zeros_like(b)
    beta1 = _row_norm(xp, b)
    active = beta1 > 0
    r1 = b + 0
    r2 = b + 0
    y = b + 0
    zeros = xp.zeros_like(beta1)
    ones = xp.ones_like(beta1)
    oldb = zeros
    beta = beta1 + 0
    dbar = zeros
    epsln = zeros
    phibar = beta1 + 0
    cs = -ones
    sn = zeros
    w = xp.zeros_like(b)
    w2 = xp.zeros_like(b)
    tnorm2 = zeros
    iters = xp.zeros_like(beta1, dtype=xp.int64)
    for itn in range(1, maxiter + 1):
        if itn % 8 == 1 and not bool(active.any()):  # one host synchronisation every 8 iterations
            break
        safe_beta = xp.where(active & (beta > 0), beta, ones)
        v = y / safe_beta[:, None]
        y = matvec(v)
        if itn >= 2:
            y = y - (beta / xp.where(oldb > 0, oldb, ones))[:, None] * r1
        alfa = (v * y).sum(1)
        y = y - (alfa / safe_beta)[:, None] * r2
        r1, r2 = r2, y
        oldb = beta
        beta = _row_norm(xp, y)
        tnorm2 = tnorm2 + alfa ** 2 + oldb ** 2 + beta ** 2
        oldeps = epsln
        delta = cs * dbar + sn * alfa
        gbar = sn * dbar - cs * alfa
        epsln = sn * beta
        dbar = -cs * beta
        root = xp.hypot(gbar, dbar)
        gamma = xp.maximum(xp.hypot(gbar, beta), xp.full_like(beta, eps))
        cs = gbar / gamma
        sn = beta / gamma
        phi = cs * phibar
        phibar_new = sn * phibar
        w1, w2_new = w2, w
        w_new = (v - oldeps[:, None] * w1 - delta[:, None] * w2_new) / gamma[:, None]
        m = active[:, None]
        x = xp.where(m, x + phi[:, None] * w_new, x)
        w2 = xp.where(m, w2_new, w2)
        w = xp.where(m, w_new, w)
        arnorm = phibar * root
        phibar = xp.where(active, phibar_new, phibar)
        iters = iters + active
        anorm = xp.sqrt(tnorm2)
        done = (phibar <= rtol * beta1) | (phibar <= atol) | (beta <= eps * anorm) | (arnorm <= rtol * anorm * phibar)
        active = active & ~done
    return x, phibar, iters


def lanczos_ritz_values(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor,
                        steps: int) -> torch.Tensor:
    """Ritz values (B, steps) of B independent symmetric operators after ``steps`` Lanczos steps
    from the start vectors v0 (B, P), ascending per row. ``matvec`` maps (B, P) → (B, P).

    Plain three-term Lanczos without reorthogonalisation: enough for *extreme-value witnesses*.
    Every Ritz value lies in the convex hull of the spectrum up to O(ε‖A‖) even after loss of
    orthogonality (Paige), so a Ritz value below −t proves an eigenvalue below −t + O(ε‖A‖);
    ghost copies of converged values do no harm there. A row whose Krylov space is exhausted
    (β ≈ 0) pads with zeros, which witness nothing. No host synchronisation.
    """
    B, P = v0.shape
    dt, dev = v0.dtype, v0.device
    eps = torch.finfo(dt).eps
    v = v0 / v0.norm(dim=1, keepdim=True).clamp(min=torch.finfo(dt).tiny)
    v_prev = torch.zeros_like(v)
    beta = torch.zeros(B, dtype=dt, device=dev)
    alphas, betas = [], []
    for j in range(steps):
        w = matvec(v)
        a = (w * v).sum(dim=1)
        w = w - a[:, None] * v - beta[:, None] * v_prev
        b = w.norm(dim=1)
        alive = b > eps * (a.abs() + beta + 1.0) * 1e2
        alphas.append(a)
        betas.append(torch.where(alive, b, torch.zeros_like(b)))
        v_prev, v = v, torch.where(alive[:, None], w / b.clamp(min=torch.finfo(dt).tiny)[:, None], torch.zeros_like(w))
        beta = betas[-1]
    T = torch.diag_embed(torch.stack(alphas, dim=1))
    if steps > 1:
        off = torch.stack(betas[:-1], dim=1)
        T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
    bad = ~torch.isfinite(T).all(dim=2).all(dim=1)  # a row whose products blew up witnesses nothing
    T = torch.where(bad[:, None, None], torch.zeros_like(T), T)
    return torch.linalg.eigvalsh(T)


def lanczos_lowest(matvec: Callable[[torch.Tensor], torch.Tensor], v0: torch.Tensor,
                   steps: int, vectors: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    """Ritz values (B, k) ascending and the ``vectors`` lowest Ritz vectors (B, m, P) (unit norm,
    m = min(vectors, k)) of B independent symmetric operators after k = min(steps, P) Lanczos
    steps from v0 (B, P), with full reorthogonalisation against the stored basis (B, k, P), so the
    lowest pairs are accurate, not only witnesses. A row whose Krylov space is exhausted (β ≈ 0)
    stops growing: its remaining Ritz values are +inf (they never count as lowest). One (B, P)
    product per step; no host synchronisation."""
    B, P = v0.shape
    k = max(1, min(int(steps), P))
    dt, dev = v0.dtype, v0.device
    tiny = torch.finfo(dt).tiny
    eps = torch.finfo(dt).eps
    Q = torch.zeros(B, k, P, dtype=dt, device=dev)
    q = v0 / v0.norm(dim=1, keepdim=True).clamp(min=tiny)
    alive = torch.ones(B, dtype=torch.bool, device=dev)
    alphas = torch.zeros(B, k, dtype=dt, device=dev)
    betas = torch.zeros(B, k, dtype=dt, device=dev)
    for j in range(k):
        Q[:, j] = q
        w = matvec(q)
        a = (w * q).sum(dim=1)
        alphas[:, j] = torch.where(alive, a, torch.full_like(a, float("inf")))
        # full reorthogonalisation (twice is enough: Kahan's "twice is enough")
        for _ in range(2):
            w = w - torch.einsum("bj,bjp->bp", torch.einsum("bjp,bp->bj", Q[:, :j + 1], w), Q[:, :j + 1])
        b = w.norm(dim=1)
        scale = alphas[:, :j + 1].abs().where(torch.isfinite(alphas[:, :j + 1]), torch.zeros_like(alphas[:, :j + 1]))
        ok = b > 1e3 * eps * (scale.max(dim=1).values + 1.0)
        betas[:, j] = torch.where(alive & ok, b, torch.zeros_like(b))
        alive = alive & ok
        q = torch.where(alive[:, None], w / b.clamp(min=tiny)[:, None], torch.zeros_like(w))
    # the tridiagonal matrix; dead steps carry +inf on the diagonal and are decoupled (β = 0)
    big = torch.finfo(dt).max ** 0.25
    diag = torch.where(torch.isfinite(alphas), alphas, torch.full_like(alphas, big))
    T = torch.diag_embed(diag)
    if k > 1:
        off = betas[:, :-1]
        T = T + torch.diag_embed(off, offset=1) + torch.diag_embed(off, offset=-1)
    vals, vecs = torch.linalg.eigh(T)
    vals = torch.where(vals >= big * (1 - 1e-6), torch.full_like(vals, float("inf")), vals)
    m = max(1, min(int(vectors), k))
    V = torch.einsum("bjm,bjp->bmp", vecs[:, :, :m], Q)
    return vals, V / V.norm(dim=2, keepdim=True).clamp(min=tiny)


def _orthonormalise(W: torch.Tensor, basis: torch.Tensor | None, drop_tol: float,
                    proj: Callable[[torch.Tensor], torch.Tensor] | None = None) -> torch.Tensor:
    """Columns of W (P, b) made orthonormal, orthogonal to ``basis`` (P, m) and inside the range
    of the projector ``proj``: two passes of (project, block Gram–Schmidt), a QR that drops the
    columns that were (numerically) in the span, and a final projection and QR. Projecting after
    every renormalisation keeps round-off from growing a component outside the subspace."""
    for _ in range(2):
        if proj is not None:
            W = proj(W)
        if basis is not None and basis.shape[1]:
            W = W - basis @ (basis.T @ W)
    scale = float(W.norm(dim=0).max()) if W.numel() else 0.0
    Q, R = torch.linalg.qr(W)
    d = R.diagonal().abs()
    Q = Q[:, d > drop_tol * max(scale, torch.finfo(W.dtype).tiny)]
    if Q.shape[1] and (proj is not None or (basis is not None and basis.shape[1])):
        if proj is not None:
            Q = proj(Q)
        if basis is not None and basis.shape[1]:
            Q = Q - basis @ (basis.T @ Q)
        Q, R = torch.linalg.qr(Q)
        Q = Q[:, R.diagonal().abs() > 0.5]
    return Q


def block_lanczos(matmat: Callable[[torch.Tensor], torch.Tensor], P: int, k: int, *, which: str = "SA",
                  block: int | None = None, tol: float = 1e-10, max_basis: int | None = None,
                  max_restarts: int = 30, seed: int = 0, project: Callable[[torch.Tensor], torch.Tensor] | None = None,
                  dtype=torch.float64, device="cpu") -> tuple[torch.Tensor, torch.Tensor, bool, dict]:
    """The k algebraically smallest (``which='SA'``) or largest (``'LA'``) eigenpairs of a
    symmetric operator, by block Lanczos with full reorthogonalisation and explicit restarts.

    ``matmat`` maps (P, b) → (P, b). The block size (default k + 4) bounds the multiplicity of
    an eigenvalue the method resolves: a single-vector Lanczos (ARPACK) sees one copy of an exact
    multiple eigenvalue, a block of b vectors up to b copies. ``project`` (optional, (P, b) →
    (P, b), an orthogonal projector) restricts the search to a subspace, e.g. the complement of
    the symmetry tangents: every basis block is projected, so the Krylov space never leaves it.
    A Ritz pair (μ, y) has converged when ‖Hy − μy‖ ≤ tol·‖H‖ (‖H‖ estimated by the largest
    |Ritz value|). The start block is drawn with ``seed`` (reproducible on every device).

    Returns (eigenvalues (k,) ascending, eigenvectors (P, k), converged, info) with info
    ``{"restarts", "matvecs", "residuals"}``.
    """
    if which not in ("SA", "LA"):
        raise ValueError(f"which={which!r} is invalid: must be 'SA' or 'LA'")
    sign = 1.0 if which == "SA" else -1.0
    k = int(min(k, P))
    b = int(min(block or (k + 4), P))
    max_basis = int(min(P, max_basis or max(6 * (k + b), 120)))
    gen = torch.Generator().manual_seed(int(seed))
    X = torch.randn(P, b, generator=gen, dtype=torch.float64).to(device=device, dtype=dtype)
    matvecs = 0
    eps = torch.finfo(dtype).eps
    vals = vecs = None
    resid = None
    converged = False
    restarts = 0
    for restarts in range(max_restarts + 1):
        V = _orthonormalise(X, None, eps * 100, project)
        basis, AB = V, sign * matmat(V)
        matvecs += V.shape[1]
        last, A_last = V, AB
        while True:
            T = basis.T @ AB
            T = 0.5 * (T + T.T)
            mu, Y = torch.linalg.eigh(T)
            kk = min(k, mu.numel())
            Yk = Y[:, :kk]
            R = AB @ Yk - basis @ Yk * mu[:kk]
            resid = R.norm(dim=0)
            hnorm = float(mu.abs().max()) if mu.numel() else 1.0
            vals, vecs = sign * mu[:kk], basis @ Yk
            if kk == k and bool((resid <= tol * max(hnorm, eps)).all()):
                converged = True
                break
            if basis.shape[1] + b > max_basis or basis.shape[1] >= P:
                break
            Vn = _orthonormalise(A_last - last @ (last.T @ A_last), basis, eps * 100, project)
            if Vn.shape[1] == 0:  # invariant subspace: the Ritz values are exact
                converged = kk == k
                break
            An = sign * matmat(Vn)
            matvecs += Vn.shape[1]
            basis, AB = torch.cat([basis, Vn], dim=1), torch.cat([AB, An], dim=1)
            last, A_last = Vn, An
        if converged:
            break
        # explicit restart from the best k + b Ritz vectors (the wanted ones first)
        X = basis @ Y[:, :min(b + k, Y.shape[1])]
        if X.shape[1] < b:
            X = torch.cat([X, torch.randn(P, b - X.shape[1], generator=gen, dtype=torch.float64).to(X)], dim=1)
    order = torch.argsort(vals)
    info = {"restarts": restarts, "matvecs": matvecs,
            "residuals": resid[:len(order)][order.cpu() if resid.device.type == "cpu" else order].tolist()}
    return vals[order], vecs[:, order], converged, info


#: from this order on, eigenvalues alone come from torch (:func:`symmetric_eigh`); below it
#: scipy's ``syevd`` was as fast or faster (1200: 0.09 s against torch's 0.2 s once warm).
TORCH_EIGVALSH_FROM = 2000


def symmetric_eigh(H, *, vectors: bool = True, subset: tuple[int, int] | None = None):
    """Eigenvalues (ascending), and with ``vectors`` the eigenvectors as columns, of a dense
    symmetric float64 matrix H (P, P) on the host, by LAPACK.

    Divide and conquer (``syevd``) for the whole spectrum: faster than the MRRR driver
    (``syevr``, scipy's default) on Hessians with large clusters of equal eigenvalues (the gauge
    zero modes, the bulk at λ), where ``syevr`` with vectors was measured 3.5× slower at P = 2700
    and failed with "Internal Error" at P = 9100. ``subset=(lo, hi)`` (inclusive indices) asks
    ``syevr`` for those eigenpairs only, falling back to the whole decomposition where it fails.
    A failure of ``syevd`` falls back to the QR driver (``syev``). Eigenvalues alone of a matrix
    of at least ``TORCH_EIGVALSH_FROM`` rows come from ``torch.linalg.eigvalsh`` (the LAPACK torch
    is built with, MKL's on the CPU wheels): measured 2.7× faster than scipy's ``syevd`` at
    P = 9100 (14 s against 38 s on 2 cores) and 1.9× at P = 5500, agreeing to 2e-14 relative.
    """
    H = np.asarray(H)
    if subset is not None:
        try:
            return scipy.linalg.eigh(H, eigvals_only=not vectors, subset_by_index=list(subset), check_finite=False)
        except np.linalg.LinAlgError:
            out = symmetric_eigh(H, vectors=vectors)
            lo, hi = subset
            return (out[0][lo:hi + 1], out[1][:, lo:hi + 1]) if vectors else out[lo:hi + 1]
    if not vectors and H.shape[0] >= TORCH_EIGVALSH_FROM:
        try:
            return torch.linalg.eigvalsh(torch.from_numpy(np.ascontiguousarray(H))).numpy()
        except RuntimeError:  # torch.linalg.LinAlgError is one; LAPACK's own drivers below
            pass
    try:
        return scipy.linalg.eigh(H, eigvals_only=not vectors, driver="evd", check_finite=False)
    except np.linalg.LinAlgError:
        return scipy.linalg.eigh(H, eigvals_only=not vectors, driver="ev", check_finite=False)
