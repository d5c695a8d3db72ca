"""Critical points on ReLU kinks: active set, polish on the kink manifold, Clarke multipliers and
second order (MODEL.md §10).

With weight decay, a ReLU minimum puts pre-activation entries exactly at 0: an entry whose unit
is off for a sample feels only the decay. There ‖∇L‖ → 0 is the wrong test (the gradient jumps
across the kink) and gradient descent arrives sub-linearly. Conventions: the ReLU layers are the
pre-activations H_l = W_{l−1}σ(H_{l−1}), l = 2..L (``pre[1:]`` of
:meth:`landscape.core.model.DeepUFM.forward`), each (d, N); θ is flat (P,), float64.

* **Active set** A (:func:`active_set`): entries with |H_l[j, i]| ≤ max(rtol·max|H_l|, atol). The
  others keep their sign: ``on`` (positive) and off (negative).
* **Kink manifold** M = {θ : H_a(θ) = 0, a ∈ A}. On a neighbourhood of θ in M the objective is the
  smooth f₀ (:func:`masked_loss`: every active entry switched off, the others by their sign), and
  c(θ) = (H_a)_{a∈A} computed with the same masks; on M, L = f₀.
* **Polish** (:func:`polish_on_kinks`): Newton's method on the KKT system ∇f₀ − Jᵀμ = 0, c = 0
  (J = ∂c/∂θ, (|A|, P)), each step the minimum-norm least-squares solution of the dense KKT
  matrix (the gauge makes it singular), to ‖∇f₀ − Jᵀμ‖ ≤ tol and ‖c‖ ≤ tol, with the signs of
  every non-active entry kept (else the active set has changed: not converged).
* **First order** (:func:`clarke_multipliers`): with δ_a = ∂f₀/∂σ(H_a) (the signal arriving at the
  entry's output), the gradient of the piece where a set of active entries is on is
  ∇f₀ + Σ_a s_a δ_a ∇H_a with s_a ∈ {0, 1}; θ is Clarke-stationary iff
  min_{s∈[0,1]^A} ‖∇f₀ + Jᵀ diag(δ) s‖ = 0, one bounded least-squares solve
  (:func:`scipy.optimize.lsq_linear`). Multipliers strictly inside (0, 1) are *strongly* active:
  with δ_a > 0, moving the entry either way raises the loss at first order. With δ_a < 0 the kink
  is concave: the loss falls on its on side (rate δ_a(1 − s_a)) or its off side (s_a·δ_a), on
  both when s_a is strictly inside (0, 1) — wherever the entry can move alone, a descent
  direction (:func:`descent_kinks`: a saddle, never a minimum). Where held entries feed one
  another, the chain rule's slopes multiply and the affine model misses them:
  :func:`clarke_test` then solves the multilinear model (:func:`chained_clarke_multipliers`).
  At 0 or 1, or with δ_a = 0
  (*degenerate*), the first order leaves one or both sides to the second order.
* **Dead units**: a hidden unit whose whole row of H_l is active has, at a critical point, zero
  incoming row and outgoing column (their gradients are λ times themselves). Switching it on along
  (a, b) (incoming row, outgoing column) changes the loss by
  λ_in‖a‖²/2 + λ_out‖b‖²/2 + Σ_i (u_iᵀb)·max(aᵀx_i, 0) + o(‖(a, b)‖²), x_i = σ(H_{l−1})[:, i],
  u_i the gradient at the next layer's input; the cross term is at most ‖a‖‖b‖·κ with
  κ = Σ_i ‖u_i‖‖x_i‖ (Cauchy–Schwarz), so √(λ_in λ_out) > κ decides every dead unit of the layer as
  stable at second order (AM–GM), whichever side of the kink.
* **Second order** (:func:`analyse_kinks`): the Hessian of the Lagrangian f₀ − μᵀc on the tangent
  space ker J, net of the gauge of the H₁|W₁ interface (the only continuous symmetry with ReLU,
  MODEL.md §5), gives index and nullity. A negative eigenvalue is a descent direction inside M,
  where L = f₀: a saddle — once the loss is seen to fall along it on M (:func:`follows_descent`:
  where held entries are dependent at first order, ker J can be larger than M's tangent space
  and the multipliers are not unique, and a negative eigenvalue there need not be a descent;
  such a point is ``undecided``). Index 0 with every non-dead active entry strongly active and every dead
  layer decided by the bound is a ``minimum`` (``degenerate`` with excess zero modes); any entry
  left to the second order otherwise makes the point ``undecided`` (stored with that reason,
  never counted as a minimum, never a failure).
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from scipy.linalg import lstsq
from scipy.optimize import least_squares, lsq_linear
from threadpoolctl import threadpool_limits

from ..core.gauge import gauge_tangents
from ..core.model import DeepUFM, ModelSpec, as_theta64

#: Below this many parameters the dense solves run on one BLAS thread (:func:`_dense_threads`).
ONE_THREAD_P = 4096


@contextmanager
def _dense_threads(P: int):
    """One thread (BLAS and torch) for the small dense solves and autograd of a model with fewer
    than :data:`ONE_THREAD_P` parameters, where a second thread gains nothing and threads that
    spin beside another busy process (the saddle prefetch, a neighbour) made a 300 × 300
    least-squares solve 10–100× slower and a row's polish 13.7 s instead of 0.33 s (measured
    2026-12-07, 2-core EPYC); the process's settings above it, and restored on exit."""
    if P >= ONE_THREAD_P:
        yield
        return
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        with threadpool_limits(limits=1, user_api="blas"):
            yield
    finally:
        torch.set_num_threads(threads)


#: Relative threshold of the active set (× max|H_l| of the layer).
ACTIVE_RTOL = 1e-6
#: Singular values of J below this × the largest are redundant constraints. (Measured 2026-12-07:
#: at 1e-10 a relu-ce point kept a combination of held entries with singular value 2.5e-10, whose
#: multipliers of order 100 absorbed a gradient of 2.7e-8 — stationary on its manifold, not
#: Clarke-stationary, and 15 of 256 descents spent their budget there; read as redundant, the polish
#: moves 2.7e-5 along it to a Clarke-stationary point 3.8e-13 lower.)
RANK_RTOL = 1e-8
#: An active entry whose signal δ_a is below this × the largest is silent (:func:`_free_silent`).
SILENT_RTOL = 1e-9
#: Multipliers within this of 0 or 1 are weakly active; |δ_a| below it (relative) degenerate.
MULTIPLIER_TOL = 1e-6
#: |δ_a| at or below this is no signal whatever the largest (:func:`signal_floor`): signals that
#: matter are gradients of the data term, 1e-4 … 1e-2 at the default size; round-off is 1e-14.
SIGNAL_ATOL = 1e-9


def _forward(model: DeepUFM, theta: torch.Tensor, on: list | None, extra: list | None = None):
    """Loss f (scalar) and pre-activations [H_2 … H_L] of one θ (P,), ReLU replaced by the fixed
    masks ``on`` (None: the true ReLU); ``extra`` added to each post-activation (for δ)."""
    F = [f[0] for f in model.factors(theta[None])]
    post, pres = F[0], []
    for l, W in enumerate(F[1:-1]):
        h = W @ post
        pres.append(h)
        post = torch.relu(h) if on is None else h * on[l]
        if extra is not None:
            post = post + extra[l]
    Z = F[-1] @ post
    data = model.data_loss(Z[None])[0]
    reg = 0.5 * sum(lam * (f * f).sum() for lam, f in zip(model.spec.lambdas, F))
    return data + reg, pres


@dataclass
class ActiveSet:
    """The kink pattern of a point: per ReLU layer (d, N) bool masks ``active`` (|h| ≤ threshold)
    and ``on`` (h > threshold), and the ``thresholds`` used."""

    active: list
    on: list
    thresholds: list
    free: list | None = None   # entries masked off but not held at 0 (the polish's dead units)

    @property
    def size(self) -> int:
        return int(sum(int(a.sum()) for a in self.active))

    def index(self) -> list[tuple[int, int, int]]:
        """(layer, unit, sample) of every active entry, in the order of the constraint vector."""
        return [(l, int(j), int(i)) for l, a in enumerate(self.active) for j, i in zip(*np.nonzero(a))]


def active_set(spec: ModelSpec, theta, rtol: float = ACTIVE_RTOL, atol: float = 0.0) -> ActiveSet:
    """The active set of θ (module docstring): |H_l[j, i]| ≤ max(rtol·max|H_l|, atol)."""
    model = DeepUFM(spec.as_float64())
    _, pres = _forward(model, as_theta64(spec, theta), None)
    act, on, thr = [], [], []
    for h in pres:
        h = h.detach().numpy()
        t = max(rtol * float(np.abs(h).max(initial=0.0)), atol)
        act.append(np.abs(h) <= t)
        on.append(h > t)
        thr.append(t)
    return ActiveSet(act, on, thr)


def _masks(aset: ActiveSet) -> list[torch.Tensor]:
    return [torch.from_numpy(o.astype(np.float64)) for o in aset.on]


def masked_loss(spec: ModelSpec, theta, aset: ActiveSet) -> float:
    """f₀(θ): the loss with every active entry switched off and the others by their sign."""
    model = DeepUFM(spec.as_float64())
    return float(_forward(model, as_theta64(spec, theta), _masks(aset))[0])


def _pre_flat(model, theta, masks):
    """Every pre-activation entry [H_2 … H_L] flattened (layer, unit, sample), with the masks."""
    return torch.cat([h.reshape(-1) for h in _forward(model, theta, masks)[1]])


def _active_flat(aset: ActiveSet) -> np.ndarray:
    return np.concatenate([a.reshape(-1) for a in aset.active])


def kkt_parts(spec: ModelSpec, theta, aset: ActiveSet):
    """(g = ∇f₀ (P,), J = ∂c/∂θ (|A|, P), c (|A|,)) at θ, float64 numpy. (Differentiated as dense
    functions of every pre-activation entry, then the active rows taken: no data-dependent
    shapes inside the transforms.)"""
    model = DeepUFM(spec.as_float64())
    th = as_theta64(spec, theta).detach().clone()
    masks = _masks(aset)
    sel = _active_flat(aset)
    g = torch.func.grad(lambda t: _forward(model, t, masks)[0])(th).numpy()
    if not sel.any():
        return g, np.zeros((0, th.numel())), np.zeros(0)
    c, J = _held_entries(model, th, masks, sel)
    return g, J, c


def _held_entries(model: DeepUFM, th: torch.Tensor, masks, sel: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(c (|A|,), J = ∂c/∂θ (|A|, P)): the held entries ``sel`` (flat mask) of the
    pre-activations at θ (P,) under ``masks``, and their Jacobian."""
    c = _pre_flat(model, th, masks).detach().numpy()[sel]
    J = torch.func.jacrev(lambda t: _pre_flat(model, t, masks))(th).numpy()[sel]
    return c, J


def _true_loss(model: DeepUFM, theta: np.ndarray) -> float:
    """The model's loss (the true ReLU) at θ (P,), float."""
    return float(model.loss(torch.from_numpy(theta)[None])[0])


def _lagrangian_hessian(spec, theta, aset, mu) -> np.ndarray:
    """∇²(f₀ − μᵀc) (P, P), symmetrised."""
    model = DeepUFM(spec.as_float64())
    masks = _masks(aset)
    sel = _active_flat(aset)
    m_full = np.zeros(sel.size)
    m_full[sel] = mu
    m = torch.from_numpy(m_full)

    def lag(t):
        return _forward(model, t, masks)[0] - (m * _pre_flat(model, t, masks)).sum()

    # reverse over reverse: forward-mode AD (torch.func.hessian's jacfwd) loads torch's jit
    # decompositions, which warn (DeprecationWarning in torch 2.13, FutureWarning from 2.14)
    H = torch.func.jacrev(torch.func.jacrev(lag))(as_theta64(spec, theta).detach().clone()).numpy()
    return 0.5 * (H + H.T)


def _multipliers(g, J):
    if J.shape[0] == 0:
        return np.zeros(0)
    # redundant constraints (a dead unit's entries of one class are one constraint n times) make J
    # rank-deficient: the minimum-norm multipliers of its well-conditioned part
    return lstsq(J.T, g, cond=RANK_RTOL, lapack_driver="gelsd")[0]


@dataclass
class KinkPolish:
    """Result of :func:`polish_on_kinks`: the polished ``theta`` (P,), whether it ``converged``,
    Newton ``iterations``, the final projected-gradient norm ‖∇f₀ − Jᵀμ‖ (``residual``) and
    constraint norm ‖c‖ (``constraint``), the ``active`` set it held, ``signs_kept`` (every
    non-active entry kept its sign) and the distance moved (``moved``, Euclidean)."""

    theta: np.ndarray
    converged: bool
    iterations: int
    residual: float
    constraint: float
    active: ActiveSet
    signs_kept: bool
    moved: float


def _signs_kept(spec, theta, aset: ActiveSet) -> bool:
    model = DeepUFM(spec.as_float64())
    _, pres = _forward(model, as_theta64(spec, theta), None)
    free = aset.free or [np.zeros_like(a) for a in aset.active]
    for h, a, o, f in zip(pres, aset.active, aset.on, free):
        h = h.detach().numpy()
        top = float(np.abs(h).max(initial=0.0))
        # a free entry is masked off: it may sit at 0 or below, never above the active set's own
        # threshold (a silent entry's pull is its decay, which the tolerance leaves at 4e-9 …
        # 2e-8: relu-mse descents, 2026-12-07, whose GD ends were stationary to 1e-11 as they were)
        if np.any(h[o] <= 0) or np.any(h[~a & ~o & ~f] >= 0) or np.any(h[f] > ACTIVE_RTOL * top):
            return False
    return True


def _free_silent(spec, th, aset: ActiveSet) -> tuple[ActiveSet, int]:
    """``aset`` with its active entries that carry no signal (δ_a = 0: nothing downstream sees
    them while their downstream kinks are off) moved to the free entries: masked off, not held
    at 0. Their off side costs nothing at first order, so a constraint on them only hides the
    decay's pull; released, the polish lets that pull act. Returns (the set, how many moved)."""
    if aset.size == 0:
        return aset, 0
    sig = output_signals(spec, th, aset)
    top = max(float(max(np.abs(d).max(initial=0.0) for d in sig)), 1e-300)
    act, free = [], []
    moved = 0
    base_free = aset.free or [np.zeros_like(a) for a in aset.active]
    for d, a, f in zip(sig, aset.active, base_free):
        silent = a & (np.abs(d) <= SILENT_RTOL * top)
        moved += int(silent.sum())
        act.append(a & ~silent)
        free.append(f | silent)
    return ActiveSet(act, aset.on, aset.thresholds, free), moved


def _free_dead_units(aset: ActiveSet) -> ActiveSet:
    """``aset`` with the entries of its dead units (rows entirely active) masked off but not held
    at 0: their incoming row feels only the decay and goes to 0 by itself; held as constraints
    they admit spurious KKT points with the row nonzero and orthogonal to the data (the
    multipliers then sit on entries with no signal, δ = 0, which the Clarke test cannot use)."""
    dead = [np.repeat(a.all(axis=1, keepdims=True), a.shape[1], axis=1) for a in aset.active]
    return ActiveSet([a & ~d for a, d in zip(aset.active, dead)], aset.on, aset.thresholds, dead)


def _with_free_active(aset: ActiveSet) -> ActiveSet:
    """The inverse of :func:`_free_dead_units` for reporting: free entries counted active."""
    if aset.free is None:
        return aset
    return ActiveSet([a | f for a, f in zip(aset.active, aset.free)], aset.on, aset.thresholds)


def _pre_values(spec, theta) -> np.ndarray:
    model = DeepUFM(spec.as_float64())
    return np.concatenate([h.detach().numpy().reshape(-1) for h in _forward(model, as_theta64(spec, theta), None)[1]])


def _with_entries(aset: ActiveSet, flat_idx: np.ndarray) -> ActiveSet:
    """``aset`` with the entries ``flat_idx`` (into the flattened layers) made active."""
    act = [a.copy() for a in aset.active]
    on = [o.copy() for o in aset.on]
    sizes = np.cumsum([0] + [a.size for a in act])
    for k in flat_idx.tolist():
        l = int(np.searchsorted(sizes, k, side="right") - 1)
        j, i = np.unravel_index(k - sizes[l], act[l].shape)
        act[l][j, i] = True
        on[l][j, i] = False
    return ActiveSet(act, on, aset.thresholds, aset.free)


def polish_on_kinks(spec: ModelSpec, theta, tol: float = 1e-10, max_iter: int = 40,
                    aset: ActiveSet | None = None, kkt_rcond: float = 1e-8,
                    loss_cap: float | None = None) -> KinkPolish:
    """An active-set Newton method on the KKT system of the kink manifold (module docstring) from
    θ (P,). ``aset``: the entries to hold at 0 to begin with (default: :func:`active_set` at θ).
    Each step is the minimum-norm least-squares solution of the dense KKT matrix (the gauge and
    redundant constraints make it singular; singular values below ``kkt_rcond`` × the largest are
    dropped), cut where the first non-active entry would reach 0 to first order: that entry joins
    the active set (the descent toward a ReLU minimum switches units off one entry at a time, and
    ends with the last few still decaying). ``loss_cap``: give up (not converged) as soon as the
    loss at an iterate exceeds it — a polish that climbs that far is not finishing a last stretch
    (a hand-off's cap, :func:`hand_off_to_kinks`; from a descent still far from its end the Newton
    iterates wander off for all their ``max_iter`` steps). Dense: O((P + |A|)³) per step."""
    spec = spec.as_float64()
    th0 = np.asarray(as_theta64(spec, theta).detach().numpy(), dtype=np.float64)
    aset = _free_dead_units(aset or active_set(spec, th0))
    free = np.concatenate([f.reshape(-1) for f in aset.free])
    th = th0.copy()
    P = th.size
    res = con = np.inf
    it = 0
    model = DeepUFM(spec)
    silenced = False
    for it in range(max_iter + 1):
        if loss_cap is not None and it and float(model.loss(torch.from_numpy(th)[None])[0]) > loss_cap:
            break
        g, J, c = kkt_parts(spec, th, aset)
        mu = _multipliers(g, J)
        r = g - J.T @ mu
        res, con = float(np.linalg.norm(r)), float(np.linalg.norm(c))
        if res <= tol and con <= tol and not silenced:
            # stationary on the manifold: release the silent entries once and polish on
            silenced = True
            aset, moved = _free_silent(spec, th, aset)
            free = np.concatenate([f.reshape(-1) for f in aset.free])
            if moved:
                continue
        if res <= 1e3 * tol and con <= 1e3 * tol:
            # nearly there: entries that the nonlinear steps took to 0 (or a hair across) join
            h = _pre_values(spec, th)
            tiny = ~_active_flat(aset) & ~free & (np.abs(h) <= 1e-9 * np.abs(h).max(initial=1.0))
            if tiny.any():
                aset = _with_entries(aset, np.nonzero(tiny)[0])
                continue
        if (res <= tol and con <= tol) or it == max_iter:
            break
        m = aset.size
        if (res <= 1e3 * tol and con > 1e3 * res) or (res <= tol < con):
            # the stationarity is met and the constraints lag (the multipliers' rank-deficient rows,
            # or a KKT step whose constraint part fell below its rcond): a Gauss–Newton projection
            # onto the manifold
            step = -lstsq(J, c, cond=RANK_RTOL, lapack_driver="gelsd")[0]
            th = th + step
            continue
        H = _lagrangian_hessian(spec, th, aset, mu)
        KKT = np.block([[H, J.T], [J, np.zeros((m, m))]])
        step = lstsq(KKT, -np.concatenate([r, c]), cond=kkt_rcond, lapack_driver="gelsd")[0][:P]
        # the first non-active entry that the (linearised) step takes through 0
        h = _pre_values(spec, th)
        act = _active_flat(aset)
        Jall = torch.func.jacrev(lambda t: _pre_flat(model, t, None))(torch.from_numpy(th)).numpy()
        dh = Jall @ step
        with np.errstate(divide="ignore", invalid="ignore"):
            t_cross = np.where(~act & ~free & (h * dh < 0), -h / dh, np.inf)
        alpha = 1.0
        first = float(t_cross.min(initial=np.inf))
        if first < 1.0:
            alpha = first
            aset = _with_entries(aset, np.nonzero(t_cross <= first * (1 + 1e-9))[0])
        th = th + alpha * step
    ok = res <= tol and con <= tol
    kept = _signs_kept(spec, th, aset)
    return KinkPolish(th, bool(ok and kept), it, res, con, _with_free_active(aset), kept,
                      float(np.linalg.norm(th - th0)))


@dataclass
class ClarkeMultipliers:
    """The bounded least-squares solution s ∈ [0, 1]^A of min ‖∇f₀ + Jᵀdiag(δ)s‖ (module
    docstring): ``s`` (|A|,), ``delta`` (|A|,), the ``residual`` norm, and the counts of strongly
    active (``strict``: 0 < s < 1), weakly active (``at_bound``: s at 0 or 1) and ``degenerate``
    (δ ≈ 0) entries."""

    s: np.ndarray
    delta: np.ndarray
    residual: float
    strict: int
    at_bound: int
    degenerate: int
    degenerate_mask: np.ndarray = field(repr=False, default=None)
    weak_mask: np.ndarray = field(repr=False, default=None)
    #: solved with the chain rule's multiplied slopes (:func:`chained_clarke_multipliers`)
    chained: bool = False

    def stationary_within(self, tol: float) -> bool:
        """The residual is finite and ≤ ``tol`` (a NaN residual is never stationary)."""
        return bool(np.isfinite(self.residual) and self.residual <= tol)


def signal_floor(delta: np.ndarray) -> float:
    """|δ| at or below which an active entry's signal is none (degenerate): MULTIPLIER_TOL × the
    largest |δ|, and never below :data:`SIGNAL_ATOL` (where every signal is round-off, the
    largest is round-off too: relu-mse points with signals of 1e-14 and 1e-19 read as descents)."""
    return max(MULTIPLIER_TOL * float(np.abs(delta).max(initial=0.0)), SIGNAL_ATOL)


def output_signals(spec: ModelSpec, theta, aset: ActiveSet, masks: list | None = None) -> list[np.ndarray]:
    """δ per ReLU layer (d, N): ∂f₀/∂σ(H_l), the signal arriving at each entry's output
    (``masks``: the ReLU derivatives to use, default the active entries off)."""
    model = DeepUFM(spec.as_float64())
    masks = _masks(aset) if masks is None else masks
    th = as_theta64(spec, theta).detach()
    extra = [torch.zeros_like(m, requires_grad=True) for m in masks]
    f, _ = _forward(model, th, masks, extra)
    return [e.numpy() for e in torch.autograd.grad(f, extra)]


def clarke_multipliers(spec: ModelSpec, theta, aset: ActiveSet, parts=None) -> ClarkeMultipliers:
    """Clarke stationarity of θ on its active set (module docstring), by scipy's lsq_linear.
    ``parts``: :func:`kkt_parts` at θ where the caller has them already."""
    g, J, _ = parts if parts is not None else kkt_parts(spec, theta, aset)
    sig = output_signals(spec, theta, aset)
    delta = np.concatenate([d[a] for d, a in zip(sig, aset.active)]) if aset.size else np.zeros(0)
    if aset.size == 0:
        return ClarkeMultipliers(np.zeros(0), delta, float(np.linalg.norm(g)), 0, 0, 0, np.zeros(0, bool), np.zeros(0, bool))
    G = J.T * delta[None, :]
    sol = lsq_linear(G, -g, bounds=(0.0, 1.0), method="bvls", tol=1e-14, lsmr_tol=None)
    if not np.all(np.isfinite(sol.x)):
        # scipy's BVLS divides by zero on some rank-deficient G (seen at a ReLU CE end with 68 active
        # entries and rank 44): the trust-region reflective method solves the same bounded problem
        sol = lsq_linear(G, -g, bounds=(0.0, 1.0), method="trf", tol=1e-14, lsq_solver="exact")
    s = np.clip(sol.x, 0.0, 1.0)
    resid = float(np.linalg.norm(g + G @ s))
    degen = np.abs(delta) <= signal_floor(delta)
    weak = ~degen & ((s <= MULTIPLIER_TOL) | (s >= 1 - MULTIPLIER_TOL))
    return ClarkeMultipliers(s, delta, resid, int((~degen & ~weak).sum()), int(weak.sum()), int(degen.sum()), degen, weak)


def _slope_masks(aset: ActiveSet, slopes: list[np.ndarray]) -> list[torch.Tensor]:
    """ReLU derivative per layer (d, N): 1 on, 0 off, ``slopes[l]`` (float, one per active entry of
    layer l in row-major order) at the active entries."""
    out = []
    for a, o, sl in zip(aset.active, aset.on, slopes):
        m = o.astype(np.float64)
        m[a] = sl
        out.append(torch.from_numpy(m))
    return out


def _slope_gradient(spec: ModelSpec, theta, aset: ActiveSet):
    """(G, bounds): G maps the slopes s (|A|,) tensor — layer l's active entries, in row-major
    order, at s[bounds[l]:bounds[l+1]] — to ∇_θ (P,) of the network with ReLU'(H_a) := s_a at
    every active entry, differentiably in s (the chain rule's generalised gradient)."""
    spec = spec.as_float64()
    counts = [int(a.sum()) for a in aset.active]
    bounds = np.cumsum([0] + counts)
    model = DeepUFM(spec)
    places = []
    for act, c in zip(aset.active, counts):   # each layer's slopes into its (d, N) mask
        place = torch.zeros(act.size, c, dtype=torch.float64)
        place[torch.from_numpy(np.flatnonzero(act)), torch.arange(c)] = 1.0
        places.append(place)
    base = [torch.from_numpy(o.astype(np.float64)) for o in aset.on]
    t0 = as_theta64(spec, theta).detach().clone()

    def G(s):
        masks = [b + (pl @ s[bounds[l]:bounds[l + 1]]).reshape(b.shape) for l, (b, pl) in enumerate(zip(base, places))]
        return torch.func.grad(lambda t: _forward(model, t, masks)[0])(t0)

    return G, bounds


def chain_rule_gradient(spec: ModelSpec, theta, aset: ActiveSet, slopes: list[np.ndarray]) -> np.ndarray:
    """∇_θ of the network with ReLU'(H_a) := slope at every active entry (``slopes`` per layer, as
    :func:`_slope_masks`), (P,): the chain rule's element of the generalised gradient for those
    slopes. Held entries are at 0, so the forward pass does not depend on the slopes; the backward
    pass multiplies the slopes of every layer a signal crosses."""
    G, _ = _slope_gradient(spec, theta, aset)
    return G(torch.from_numpy(np.concatenate([np.asarray(sl, dtype=np.float64) for sl in slopes]))).numpy()


def chained_clarke_multipliers(spec: ModelSpec, theta, aset: ActiveSet, start: ClarkeMultipliers) -> ClarkeMultipliers:
    """Clarke stationarity where active entries feed one another (active entries in more than one
    ReLU layer): the chain rule's generalised gradient G(s) (:func:`chain_rule_gradient`) is
    multilinear in the slopes s ∈ [0, 1]^A — a signal through held entries of two layers carries
    the product of their slopes, which the affine model of :func:`clarke_multipliers` (every other
    active entry off) leaves out. min ‖G(s)‖ over the box is solved by scipy's bounded
    trust-region least squares from ``start``'s slopes, with G's exact Jacobian (one layer's
    block is exact: G is affine in each layer's slopes with the others fixed). The signals δ and
    the weak/degenerate counts are those at the slopes found."""
    spec = spec.as_float64()
    th = np.asarray(as_theta64(spec, theta).detach().numpy(), dtype=np.float64)
    grad_at, bounds = _slope_gradient(spec, th, aset)

    def fun(s):
        return grad_at(torch.from_numpy(s)).numpy()

    def jac(s):
        return torch.func.jacrev(grad_at)(torch.from_numpy(s)).numpy()

    s0 = np.clip(start.s, 0.0, 1.0)
    # ftol 1e-8 ends a stalled solve early (its cost no longer falls); one that converges to 0
    # falls by large factors per step and runs on to xtol/gtol
    sol = least_squares(fun, s0, jac=jac, bounds=(0.0, 1.0), method="trf", xtol=1e-15, ftol=1e-8, gtol=1e-15,
                        max_nfev=150)
    s = np.clip(sol.x, 0.0, 1.0)
    resid = float(np.linalg.norm(fun(s)))
    slopes = [s[bounds[l]:bounds[l + 1]] for l in range(len(aset.active))]
    sig = output_signals(spec, th, aset, _slope_masks(aset, slopes))
    delta = np.concatenate([d[a] for d, a in zip(sig, aset.active)])
    degen = np.abs(delta) <= signal_floor(delta)
    weak = ~degen & ((s <= MULTIPLIER_TOL) | (s >= 1 - MULTIPLIER_TOL))
    return ClarkeMultipliers(s, delta, resid, int((~degen & ~weak).sum()), int(weak.sum()), int(degen.sum()), degen,
                             weak, chained=True)


def clarke_test(spec: ModelSpec, theta, aset: ActiveSet, parts=None, clarke_tol: float = 1e-8) -> ClarkeMultipliers:
    """The Clarke multipliers of θ on ``aset``: the affine model's (:func:`clarke_multipliers`),
    or where those leave a residual above ``clarke_tol`` and held entries sit in more than one
    ReLU layer (so one may feed another), the chain rule's (:func:`chained_clarke_multipliers`)
    when they reach ``clarke_tol``. (Measured 2026-12-07: relu-ce points where GD bounced across
    kinks at ‖∇L‖ ≈ 3e-3 for 180,000 steps, and whose affine residual was 3e-4 … 7e-4.)"""
    cl = clarke_multipliers(spec, theta, aset, parts)
    if cl.stationary_within(clarke_tol) or sum(bool(a.any()) for a in aset.active) < 2:
        return cl
    ch = chained_clarke_multipliers(spec, theta, aset, cl)
    return ch if ch.stationary_within(clarke_tol) else cl


def descent_kinks(J: np.ndarray, cl: ClarkeMultipliers) -> np.ndarray:
    """Held entries whose kink is a first-order descent: (|A|,) bool. An entry with outgoing signal
    δ_a < 0 (beyond :func:`signal_floor`) whose row of J is independent of the other rows (so its
    multiplier s_a ∈ [0, 1] is unique and h_a can move alone, the others held) changes the loss
    at rate δ_a(1 − s_a) into its on side and s_a·δ_a into its off side: at least one is negative
    whatever s_a (both when 0 < s_a < 1). ReLU's convex kink under a negative signal is a concave
    one, and the point is no minimum. (Measured 2026-12-07: a relu-mse class whose two samples
    run through separate units in both ReLU layers holds such an entry, s = 0, rate −1e-3.)"""
    cand = ~cl.degenerate_mask & (cl.delta < -signal_floor(cl.delta))
    out = np.zeros(cl.delta.size, dtype=bool)
    for a in np.nonzero(cand)[0].tolist():
        others = np.delete(J, a, axis=0)
        row = J[a]
        if others.shape[0]:
            coef = lstsq(others.T, row, cond=RANK_RTOL, lapack_driver="gelsd")[0]
            left = float(np.linalg.norm(row - others.T @ coef))
        else:
            left = float(np.linalg.norm(row))
        out[a] = left > 1e-8 * max(float(np.linalg.norm(row)), 1e-300)
    return out


def directional_derivative(spec: ModelSpec, theta, aset: ActiveSet, u) -> float:
    """The one-sided derivative lim_{h↓0} (L(θ + hu) − L(θ))/h of the true (ReLU) loss at θ (P,)
    along u (P,), θ on the kinks of ``aset`` (its active entries at 0 to round-off): the direction
    is pushed forward layer by layer with ReLU's one-sided derivative σ′(h; v) = v on, max(v, 0)
    at an active entry, 0 off — exact also where a held entry feeds another (chained kinks, which
    the affine model gᵀu + Σ_a δ_a·max((Ju)_a, 0) of a single layer misses)."""
    spec = spec.as_float64()
    model = DeepUFM(spec)
    th = as_theta64(spec, theta).detach()
    F = [f[0] for f in model.factors(th[None])]
    dF = [f[0] for f in model.factors(torch.as_tensor(np.asarray(u, dtype=np.float64)).reshape(1, -1))]
    post, dpost = F[0], dF[0]
    for l, (W, dW) in enumerate(zip(F[1:-1], dF[1:-1])):
        h, dh = W @ post, dW @ post + W @ dpost
        on = torch.from_numpy(aset.on[l])
        held = torch.from_numpy(aset.active[l])
        post = torch.where(on, h, torch.zeros_like(h))
        dpost = torch.where(on, dh, torch.where(held, dh.clamp(min=0.0), torch.zeros_like(dh)))
    Z = (F[-1] @ post).detach().requires_grad_(True)
    gZ = torch.autograd.grad(model.data_loss(Z[None])[0], Z)[0]
    dZ = dF[-1] @ post + F[-1] @ dpost
    reg = sum(lam * float((f * df).sum()) for lam, f, df in zip(spec.lambdas, F, dF))
    return float((gZ * dZ).sum()) + reg


@dataclass
class KinkDescents:
    """First-order descent directions of a point on ReLU kinks (:func:`kink_descents`):
    ``vectors`` (P, m) unit directions, ``rates`` (m,) the one-sided derivative of the true loss
    along each (< 0, per unit Euclidean step, :func:`directional_derivative`), most negative
    first; ``entries`` the (layer, unit, sample) of the held entry each moves (None for the
    Clarke descent −w of a point that is not Clarke-stationary) and ``sides`` (m,) +1 (into its
    on side), −1 (off side) or 0 (the Clarke descent)."""

    vectors: np.ndarray
    rates: np.ndarray
    entries: list
    sides: np.ndarray


def _clarke_descent(g: np.ndarray, J: np.ndarray, cl: ClarkeMultipliers) -> list:
    """[(−w, None, 0)] with w = ∇f₀ + Jᵀdiag(δ)s the element the bounded solve ``cl`` leaves, or
    [] where w is zero or not finite (a :func:`kink_descents` candidate)."""
    w = g + J.T @ (cl.delta * cl.s)
    return [(-w, None, 0)] if np.all(np.isfinite(w)) and np.linalg.norm(w) > 0 else []


def kink_descents(spec: ModelSpec, theta, aset: ActiveSet | None = None, clarke_tol: float = 1e-8,
                  parts=None, clarke: ClarkeMultipliers | None = None) -> KinkDescents:
    """The first-order descent directions of θ (P,) across its kinks (:class:`KinkDescents`;
    m = 0 where it has none).

    * θ not Clarke-stationary (bounded least-squares residual > ``clarke_tol``): one direction,
      −w/‖w‖ with w = ∇f₀ + Jᵀdiag(δ)s the minimum-norm element the bounded solve leaves (its
      optimality conditions make the one-sided derivative of the affine model along −w at most
      −‖w‖², exact where no held entry feeds another).
    * θ Clarke-stationary: one direction per held entry a of :func:`descent_kinks` (signal
      δ_a < 0, multiplier s_a), into its on side where 1 − s_a ≥ s_a (the loss falls at
      δ_a(1 − s_a) per unit of the entry) and its off side otherwise (δ_a·s_a): the minimum-norm
      solution u of J u = ±e_a, normalised (the steeper side of one entry moved alone). Where the
      chain rule's test decided (:func:`clarke_test`), every held entry, both sides (J⁺(±e_a)),
      and the affine model's −w: that image is not convex, so its stationarity is checked
      against these one-sided rates.

    Each rate is :func:`directional_derivative` along the unit direction (per Euclidean step,
    exact with chained kinks), the rate at which the true loss falls; a direction whose rate is
    not below −SIGNAL_ATOL (round-off) is dropped.
    Gradient descent with ReLU'(0) = 0 does not take these directions from the kink: on the off
    side of such an entry it sees only the decay, which holds the entry at the kink."""
    spec = spec.as_float64()
    th = np.asarray(as_theta64(spec, theta).detach().numpy(), dtype=np.float64)
    vecs, rates, entries, sides = [], [], [], []
    with _dense_threads(spec.P):
        aset = aset or active_set(spec, th)
        if aset.size:
            g, J, _ = parts = parts if parts is not None else kkt_parts(spec, th, aset)
            cl = clarke if clarke is not None else clarke_test(spec, th, aset, parts, clarke_tol)
            if not cl.stationary_within(clarke_tol):
                candidates = _clarke_descent(g, J, cl)
            else:
                index = aset.index()
                candidates = []
                if cl.chained:
                    # the chain rule's image is not convex and its signals depend on the slopes:
                    # every held entry, both sides, and the affine model's −w, each rated exactly
                    candidates += _clarke_descent(g, J, clarke_multipliers(spec, th, aset, parts))
                    pinv = np.linalg.pinv(J, rcond=RANK_RTOL)   # (P, |A|): column a moves entry a alone where it can
                    for a in range(J.shape[0]):
                        if np.linalg.norm(pinv[:, a]) > 0:
                            candidates += [(pinv[:, a], index[a], 1), (-pinv[:, a], index[a], -1)]
                for a in np.nonzero(descent_kinks(J, cl))[0].tolist() if not cl.chained else []:
                    side = 1 if 1.0 - cl.s[a] >= cl.s[a] else -1
                    target = np.zeros(J.shape[0])
                    target[a] = side
                    candidates.append((lstsq(J, target, cond=RANK_RTOL, lapack_driver="gelsd")[0], index[a], side))
            for u, entry, side in candidates:
                u = u / np.linalg.norm(u)
                rate = directional_derivative(spec, th, aset, u)
                if rate < -SIGNAL_ATOL:
                    vecs.append(u)
                    rates.append(rate)
                    entries.append(entry)
                    sides.append(side)
    order = sorted(range(len(rates)), key=rates.__getitem__)   # most negative first; ties keep entry order
    return KinkDescents(np.stack([vecs[i] for i in order], axis=1) if vecs else np.zeros((th.size, 0)),
                        np.asarray(rates, dtype=np.float64)[order], [entries[i] for i in order],
                        np.asarray(sides, dtype=np.int64)[order])


def dead_units(aset: ActiveSet) -> list[np.ndarray]:
    """Per ReLU layer, the (d,) bool mask of units whose every entry is active."""
    return [a.all(axis=1) for a in aset.active]


def dead_unit_bounds(spec: ModelSpec, theta, aset: ActiveSet) -> list[dict]:
    """Per ReLU layer with dead units: {"layer", "units", "kappa", "lambda_eff", "decided"}
    (module docstring: decided when √(λ_in λ_out) > κ = Σ_i ‖u_i‖‖x_i‖)."""
    model = DeepUFM(spec.as_float64())
    th = as_theta64(spec, theta).detach()
    masks = _masks(aset)
    F = [f[0] for f in model.factors(th[None])]
    lams = spec.lambdas
    sig = output_signals(spec, theta, aset)
    out = []
    dead = dead_units(aset)
    for l, dmask in enumerate(dead):
        if not dmask.any():
            continue
        # input x_i = σ(H_{l+1}'s input) = post of the previous layer, l = 0: H₁
        post = F[0]
        for k in range(l):
            post = (F[k + 1] @ post) * masks[k]
        x = post.numpy()
        # u_i: the gradient at the next layer's input (pre-activation of layer l+1, or Z)
        if l + 1 < len(dead):
            # active entries there can go either way: bound with the larger of the two sides
            u = np.abs(sig[l + 1]) * np.where(aset.active[l + 1] | aset.on[l + 1], 1.0, 0.0)
        else:
            Z = (F[-1] @ ((F[l + 1] @ post) * masks[l])).detach().requires_grad_(True)
            u = torch.autograd.grad(model.data_loss(Z[None])[0], Z)[0].numpy()
        kappa = float(np.sum(np.linalg.norm(u, axis=0) * np.linalg.norm(x, axis=0)))
        lam_eff = float(np.sqrt(lams[l + 1] * lams[l + 2]))
        out.append({"layer": l + 2, "units": int(dmask.sum()), "kappa": kappa, "lambda_eff": lam_eff,
                    "decided": bool(lam_eff > kappa)})
    return out


@dataclass
class KinkReport:
    """Second-order analysis on the kink manifold (:func:`analyse_kinks`)."""

    n_active: int
    clarke: ClarkeMultipliers
    tangent_dim: int
    gauge_zero_modes: int
    index: int
    nullity: int
    excess_zero_modes: int
    smallest_nonzero: float | None
    dead: list
    kind: str
    reason: str
    tau: float

    projected_gradient: float = float("nan")

    @property
    def stationary(self) -> bool:
        return self.kind != "not stationary"

    def to_dict(self) -> dict:
        c = self.clarke
        return {"n_active": self.n_active, "clarke_residual": c.residual,
                "clarke_model": "chain rule" if c.chained else "affine", "strongly_active": c.strict,
                "weakly_active": c.at_bound, "degenerate": c.degenerate,
                "multipliers": {"min": float(c.s.min()) if c.s.size else None,
                                "max": float(c.s.max()) if c.s.size else None},
                "tangent_dim": self.tangent_dim, "gauge_zero_modes": self.gauge_zero_modes, "index": self.index,
                "nullity": self.nullity, "excess_zero_modes": self.excess_zero_modes,
                "smallest_nonzero_eigenvalue": self.smallest_nonzero, "dead_units": self.dead,
                "kind": self.kind, "reason": self.reason, "tau": self.tau,
                "projected_gradient": self.projected_gradient}


#: Steps t (Euclidean) at which a negative eigenvalue's descent is followed on the kink set
#: (:func:`follows_descent`), and the fraction of the second-order fall |λ|t²/2 that must show.
FOLLOW_STEPS = (1e-4, 1e-3, 1e-2)
FOLLOW_FRACTION = 0.5
#: At most this many of the most negative eigenvalues are followed before a point is undecided.
FOLLOW_DIRECTIONS = 4
#: A point of the curve is on the kink set when its held entries are ≤ this in absolute value.
FOLLOW_CTOL = 1e-11


def follows_descent(loss, constraints, theta: np.ndarray, v: np.ndarray, lam: float,
                    steps=FOLLOW_STEPS, fraction: float = FOLLOW_FRACTION, ctol: float = FOLLOW_CTOL,
                    iters: int = 8, signs=None, below: float | None = None) -> tuple[float, np.ndarray] | None:
    """Whether the loss follows the negative curvature λ < 0 of a unit tangent vector v (P,) of
    the set {c = 0} at θ (P,): for each step t of ``steps``, smallest first, θ + t·v is projected
    back onto the set by Gauss–Newton steps −J⁺c (``constraints(θ)`` returns (c (m,), J (m, P)));
    the descent is followed at the first t where the projected point is on the set (|c| ≤
    ``ctol``), within 2t of θ, keeps the signs ``signs(θ')`` of θ's (None: not checked), and has
    ``loss`` ≤ loss(θ) − max(``fraction``·|λ|t²/2, noise), noise = 1e3·ε·|loss(θ)|. A step where
    the loss rises by more than the noise instead ends the search (the descent is not local).
    ``below``: a loss the point must also reach (a larger step is tried while a followed fall is
    short of it). Returns (t, the projected point), or None.

    The tangent Hessian of the Lagrangian is taken on ker J. Where the held constraints are
    dependent at first order (J rank-deficient, as many held ReLU entries are), ker J can be
    larger than the tangent space of the set itself and the multipliers are not unique, so a
    negative eigenvalue there need not be a descent of the loss: along c₁ = x, c₂ = x + y², ker J
    at 0 is the y axis while the set is the single point 0. Only a fall of the true loss on the
    set decides it."""
    L0 = float(loss(theta))
    noise = 1e3 * np.finfo(np.float64).eps * max(abs(L0), 1e-300)
    ref = None if signs is None else signs(theta)
    for t in sorted(steps):
        th = theta + t * v
        for _ in range(iters):
            c, J = constraints(th)
            if float(np.abs(c).max(initial=0.0)) <= ctol:
                break
            th = th - lstsq(J, c, cond=RANK_RTOL, lapack_driver="gelsd")[0]
        else:
            c, _ = constraints(th)
        if float(np.abs(c).max(initial=0.0)) > ctol or np.linalg.norm(th - theta) > 2 * t:
            continue
        if ref is not None and not np.array_equal(signs(th), ref):
            continue
        change = float(loss(th)) - L0
        if change <= -max(fraction * abs(lam) * t * t / 2, noise):
            if below is None or L0 + change < below:
                return t, th
            continue
        if change > noise:
            return None
    return None


def _tangent_spectrum(spec, th, aset: ActiveSet, J: np.ndarray, mu: np.ndarray):
    """The Hessian of the Lagrangian f₀ − μᵀc on ker J net of the gauge (module docstring):
    (dim ker J, gauge zero modes removed, eigenvalues (k,) ascending, their unit vectors in θ
    (P, k))."""
    H = _lagrangian_hessian(spec, th, aset, mu)
    if J.shape[0]:   # tangent space: the null space of J
        _, sv, Vt = np.linalg.svd(J, full_matrices=True)
        rank = int(np.sum(sv > RANK_RTOL * max(sv.max(initial=0.0), 1.0)))
        N = Vt[rank:].T
    else:
        N = np.eye(th.size)
    model = DeepUFM(spec)
    Tg = gauge_tangents(spec, model.factors(torch.from_numpy(th)[None]))[0].numpy()   # (T, P)
    Tt = N.T @ Tg.T                                                                 # (dim, T)
    if Tt.size:
        Ug, sg, _ = np.linalg.svd(Tt, full_matrices=True)
        gz = int(np.sum(sg > 1e-8 * max(sg.max(initial=0.0), 1e-300)))
        Q = N @ Ug[:, gz:]
    else:
        gz, Q = 0, N
    if not Q.shape[1]:
        return int(N.shape[1]), gz, np.zeros(0), np.zeros((th.size, 0))
    ev, evec = np.linalg.eigh(Q.T @ H @ Q)
    return int(N.shape[1]), gz, ev, Q @ evec


def kink_escape(spec: ModelSpec, theta, eps: float, below: float, visit: int = 0) -> np.ndarray | None:
    """A start near θ (P,) (a point on ReLU kinks that is not a minimum) whose true loss is below
    ``below``, for a descent to resume from; None where none is found. First the first-order
    descents of :func:`kink_descents`, the ``visit``-th (mod m) first, each at the steps ``eps``,
    eps/10, …, eps/10⁴ in turn (a descent at rate ‖w‖ ≈ 1e-4 falls only over a short step);
    then a negative eigenvalue of the tangent Hessian whose descent the loss follows on the kink
    set (:func:`follows_descent`, steps eps/100 … 10·eps: a fall of |λ|t²/2 must clear the
    ceiling), at the point of that curve. Gradient descent, reading
    ReLU'(0) = 0, returns to such a point from a start above its loss."""
    spec = spec.as_float64()
    th = np.asarray(as_theta64(spec, theta).detach().numpy(), dtype=np.float64)
    model = DeepUFM(spec)
    with _dense_threads(spec.P):
        aset = active_set(spec, th)
        if aset.size == 0:
            return None
        g, J, _ = parts = kkt_parts(spec, th, aset)
        kd = kink_descents(spec, th, aset, parts=parts)
        m = kd.rates.size
        for j in range(m):
            u = kd.vectors[:, (visit + j) % m]
            for t in eps * 10.0 ** -np.arange(5):
                if _true_loss(model, th + t * u) < below:
                    return th + t * u
        _, _, ev, vectors = _tangent_spectrum(spec, th, aset, J, _multipliers(g, J))
        tau = 1e-8 * max(float(np.abs(ev).max(initial=0.0)), 1.0)
        k = int(np.sum(ev < -tau))
        found = _followed_descent(spec, th, aset, vectors[:, :k], ev[:k], steps=(eps / 100, eps / 10, eps, 10 * eps),
                                  below=below) if k else None   # a followed point is below ``below`` already
    return None if found is None else found[1]


def _followed_descent(spec, th, aset: ActiveSet, vectors: np.ndarray, evals: np.ndarray, steps=FOLLOW_STEPS,
                      below: float | None = None):
    """:func:`follows_descent` on the kink set of ``aset`` for the most negative eigenvalues
    ``evals`` (ascending) and their unit vectors (P, k), at most :data:`FOLLOW_DIRECTIONS` of
    them, every entry off the kinks keeping its sign: (t, point) of the first one followed, or
    None."""
    model = DeepUFM(spec)
    masks, sel = _masks(aset), _active_flat(aset)

    def signs(t):
        return np.sign(_pre_values(spec, t))[~sel]

    def loss(t):
        return _true_loss(model, t)

    def constraints(t):
        return _held_entries(model, torch.from_numpy(t), masks, sel)

    for k in range(min(FOLLOW_DIRECTIONS, evals.size)):
        v = vectors[:, k] / np.linalg.norm(vectors[:, k])
        found = follows_descent(loss, constraints, th, v, float(evals[k]), steps=steps, signs=signs, below=below)
        if found is not None:
            return found
    return None


def analyse_kinks(spec: ModelSpec, theta, aset: ActiveSet | None = None, clarke_tol: float = 1e-8,
                  tau_rel: float = 1e-8) -> KinkReport:
    """First and second order of θ on its kink manifold (module docstring). ``clarke_tol``: the
    largest bounded least-squares residual of a Clarke-stationary point; ``tau_rel``: eigenvalues
    of the tangent Hessian within tau_rel × its largest |eigenvalue| are zero."""
    with _dense_threads(spec.P):
        return _analyse_kinks(spec, theta, aset, clarke_tol, tau_rel)


def _analyse_kinks(spec, theta, aset, clarke_tol, tau_rel) -> KinkReport:
    spec = spec.as_float64()
    th = np.asarray(as_theta64(spec, theta).detach().numpy(), dtype=np.float64)
    aset = aset or active_set(spec, th)
    parts = kkt_parts(spec, th, aset)
    cl = clarke_test(spec, th, aset, parts, clarke_tol)
    g, J, _ = parts
    mu = _multipliers(g, J)
    tangent_dim, gz, ev, vectors = _tangent_spectrum(spec, th, aset, J, mu)
    tau = tau_rel * max(float(np.abs(ev).max(initial=0.0)), 1.0)
    index = int(np.sum(ev < -tau))
    nullity = int(np.sum(np.abs(ev) <= tau))
    nz = ev[np.abs(ev) > tau]
    smallest = float(np.abs(nz).min()) if nz.size else None
    dead = dead_unit_bounds(spec, th, aset)
    # entries of decided dead units need no first-order decision
    in_dead = np.zeros(aset.size, dtype=bool)
    if aset.size:
        decided_layers = {d["layer"] - 2 for d in dead if d["decided"]}
        dm = dead_units(aset)
        in_dead = np.array([l in decided_layers and dm[l][j] for l, j, _ in aset.index()])
    undecided = int(((cl.weak_mask | cl.degenerate_mask) & ~in_dead).sum()) if aset.size else 0
    if not aset.size:
        descents = 0
    elif cl.chained:   # each candidate's one-sided rate taken exactly (chained signals)
        descents = int(kink_descents(spec, th, aset, clarke_tol, parts=parts, clarke=cl).rates.size)
    else:
        descents = int(descent_kinks(J, cl).sum())
    if not cl.stationary_within(clarke_tol):
        kind, reason = "not stationary", f"bounded least-squares residual {cl.residual:.3g} > {clarke_tol:g}"
    elif descents:
        kind, reason = "saddle", (f"{descents} active entries on a concave kink (outgoing signal δ < 0): the loss "
                                  "falls on at least one side of it")
    elif index > 0 and _followed_descent(spec, th, aset, vectors[:, :index], ev[:index]) is not None:
        kind, reason = "saddle", f"{index} negative eigenvalue(s) of the Hessian on the kink manifold"
    elif index > 0:
        kind, reason = "undecided", (f"{index} negative eigenvalue(s) of the Hessian on ker J, none followed by the "
                                     "loss on the kink set (dependent kink constraints: ker J is larger than the "
                                     "set's tangent space)")
    elif undecided:
        kind, reason = "undecided", (f"{undecided} active entries with a multiplier at 0 or 1 or no signal "
                                     "(weakly active): the second order across the kink is not decided")
    elif any(not d["decided"] for d in dead):
        kind, reason = "undecided", "a layer of dead units whose bound √(λ_in λ_out) > κ does not hold"
    elif nullity > 0:
        kind, reason = "degenerate", f"{nullity} excess zero mode(s) on the kink manifold"
    elif cl.chained:
        kind, reason = "undecided", ("stationary by the chain rule's slopes (held entries feed one another): the "
                                     "second order across chained kinks is not decided")
    else:
        kind, reason = "minimum", "strongly active kinks, dead units decided, positive definite on the manifold"
    return KinkReport(aset.size, cl, tangent_dim, gz, index, nullity, nullity, smallest, dead, kind, reason, tau,
                      float(np.linalg.norm(g - J.T @ mu)))


#: Active-set thresholds at a descent's end (× max|H_l|), tried in turn until one polish is
#: accepted: GD leaves kink entries at 1e-9 … 1e-5 of the largest entry after 30,000 steps at the
#: default size, and the smallest entry on either side of the kinks at ≥ 0.2 of it; a descent
#: that stalls bouncing across kinks (the gradient jumps there; ‖∇L‖ stays at 2e-3 … 5e-3) keeps
#: them at 1e-5 … 7e-4, below a gap up to 1e-2 (measured 2026-12-07, relu-ce starts that stalled
#: after 54,000–146,000 steps: 2 of 4 polished at 1e-3, the loss falling 3.4e-6 and 3.8e-6).
#: The looser ones are tried only for a descent that stalled or spent its budget (more steps do not settle a bounce);
#: whichever is tried, the polish must pass the same tests (:func:`hand_off_to_kinks`).
HANDOFF_RTOLS = (1e-4, 1e-3, 1e-2)
#: A descent's end is handed to the kink polish only below this ‖∇L‖.
HANDOFF_GRAD = 1e-2
#: Relative cut-offs of the KKT matrix's singular values tried in turn by the hand-off.
HANDOFF_RCONDS = (1e-8, 1e-10, 1e-12)
#: The polish may lower the loss by at most this × (1 + |L|) and never raise it: it finishes the
#: last stretch of a descent (GD ends at the default size sit 2e-7 … 2e-5 above the kink point
#: they reach), nothing more. (A distance in θ is no test: the gauge moves the polished point
#: along its orbit at no cost.)
HANDOFF_MAX_DROP = 1e-4
#: The hand-off's polish gives up once the loss rises this × (1 + |L|) above the descent's end
#: (``loss_cap`` of :func:`polish_on_kinks`): the result would be refused anyway (it may not
#: raise the loss), and a converging last stretch rises by round-off at most. (Measured
#: 2026-12-07, relu-ce ends after 30,000 GD steps: polishes that did not converge had risen 5e-3
#: relative by their 9th iteration and ran 31 more.)
HANDOFF_GIVE_UP = 1e-3


@dataclass
class KinkHandoff:
    """Per row of a batch handed to :func:`hand_off_to_kinks`: ``ok`` (B,) bool, the polished
    ``theta`` (B, P) (the input where not ok), ``loss`` (B,), ``residual`` (B,) (‖∇f₀ − Jᵀμ‖ on the
    kink manifold; inf where not ok), ``n_active`` (B,) and the ``reason`` of each refusal."""

    ok: np.ndarray
    theta: np.ndarray
    loss: np.ndarray
    residual: np.ndarray
    n_active: np.ndarray
    reason: list


def hand_off_to_kinks(spec: ModelSpec, theta, loss_end, grad_end, tol: float = 1e-10,
                      stalled=None) -> KinkHandoff:
    """Finish the descents that stopped near ReLU kinks (θ (B, P) their ends, ``loss_end`` and
    ``grad_end`` (B,) there) by :func:`polish_on_kinks`. The active set is read at the first
    threshold of :data:`HANDOFF_RTOLS`, and at the others in turn where the row's descent
    ``stalled`` ((B,) bool, default none) and a tighter one was refused. A row is finished only
    where the descent was close (‖∇L‖ ≤ :data:`HANDOFF_GRAD`), its end has an active set, the polish converges
    holding it with every other entry's sign kept, and lowers the loss by at most
    :data:`HANDOFF_MAX_DROP` × (1 + |L|), never raising it: the polish shortens the last stretch
    toward the point the descent was reaching. (Whether that point holds negative curvature on its manifold is
    decided by its analysis, :func:`analyse_kinks`; a saddle is not a descent's end.) Dense and
    row by row on the CPU: for the rows a descent did not certify."""
    spec = spec.as_float64()
    th = np.asarray(theta.detach().cpu().numpy() if torch.is_tensor(theta) else theta, dtype=np.float64)
    B = th.shape[0]
    ok = np.zeros(B, dtype=bool)
    out = th.copy()
    losses = np.asarray(loss_end, dtype=np.float64).copy()
    resid = np.full(B, np.inf)
    n_act = np.zeros(B, dtype=np.int64)
    reasons = [""] * B
    model = DeepUFM(spec)
    stalled = np.zeros(B, dtype=bool) if stalled is None else np.asarray(stalled, dtype=bool)
    with _dense_threads(spec.P):
        for b in range(B):
            ok[b], out[b], losses[b], resid[b], n_act[b], reasons[b] = _hand_off_row(
                spec, model, th[b], float(losses[b]), float(grad_end[b]), tol,
                HANDOFF_RTOLS if stalled[b] else HANDOFF_RTOLS[:1])
    return KinkHandoff(ok, out, losses, resid, n_act, reasons)


def _hand_off_row(spec, model, theta, loss, grad, tol, rtols):
    """One row of :func:`hand_off_to_kinks`: θ (P,) a descent's end, its ``loss`` and ‖∇L‖
    ``grad``, the active-set thresholds ``rtols`` to try in turn. Returns (ok, θ, loss, residual, active-set size, reason): the polished point where
    ok, else θ and ``loss`` unchanged, residual inf and the refusal's reason."""
    if not np.isfinite(grad) or grad > HANDOFF_GRAD:
        return False, theta, loss, np.inf, 0, f"‖∇L‖ {grad:.3g} > {HANDOFF_GRAD:g}"
    reason, size, tried = "no active entries", 0, []
    for rtol in rtols:
        aset = active_set(spec, theta, rtol=rtol)
        if aset.size == 0 or any(np.array_equal(_active_flat(aset), t) for t in tried):
            continue   # the same active set as a threshold tried already: the same polishes
        tried.append(_active_flat(aset))
        size = aset.size
        for rcond in HANDOFF_RCONDS:   # the KKT matrix's numerical rank decides the step: try a few
            try:
                p = polish_on_kinks(spec, theta, tol=tol, aset=aset, kkt_rcond=rcond,
                                    loss_cap=loss + HANDOFF_GIVE_UP * (1 + abs(loss)))
            except np.linalg.LinAlgError as exc:   # LAPACK's SVD can fail on a near-singular KKT matrix
                reason = f"the polish's least-squares solve failed ({exc})"
                continue
            new_loss = float(model.loss(torch.from_numpy(p.theta)[None])[0])
            if not p.converged:
                reason = "polish on the kink manifold did not converge" + ("" if p.signs_kept else " (an entry changed sign)")
            elif new_loss > loss + 1e-12 * (1 + abs(loss)):
                reason = f"the polish raised the loss by {new_loss - loss:.3g}"
            elif new_loss < loss - HANDOFF_MAX_DROP * (1 + abs(loss)):
                reason = f"the polish lowered the loss by {loss - new_loss:.3g}: more than a last stretch"
            else:
                return True, p.theta, new_loss, p.residual, p.active.size, ""
    return False, theta, loss, np.inf, size, reason
