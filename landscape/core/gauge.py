"""The continuous gauge symmetry of MODEL.md §5, batched: orbit tangents and their projector.

For each interface i between factor F_i (d rows) and F_{i+1} (d columns) and each generator
A = E_ab − E_ba of so(d) (a < b), the objective is constant along F_i → e^{sA}F_i,
F_{i+1} → F_{i+1}e^{−sA}, whose tangent at s = 0 is δF_i = A F_i (row a: F_i[b], row b: −F_i[a]),
δF_{i+1} = −F_{i+1}A (column a: F_{i+1}[:, b], column b: −F_{i+1}[:, a]), every other factor 0.
The linear model has L interfaces; with ReLU only H₁|W₁ (σ is never applied to H₁).

Differentiating L(e^{sA}θ) = L(θ) gives ⟨∇L, t⟩ = 0 for every tangent t at every θ, and twice,
tᵀHt = −⟨∇L, A²θ⟩: away from a critical point the orbit directions carry curvature O(‖∇L‖), of
either sign. :class:`GaugeProjector` removes their span, so that a Lanczos run on P H P sees only
the curvature across the orbit (:mod:`landscape.engines.curvature`).

The linear MSE model has one more continuous symmetry, the class rotations
(:func:`has_class_rotations`): H₁ → H₁(Qᵀ ⊗ I_n), W_L → Q W_L with Q ∈ O(K), whose generator
A = E_ab − E_ba of so(K) (a < b) has the tangent δH₁ = H₁(Aᵀ ⊗ I_n) (class block a of H₁'s
columns: block b; block b: −block a), δW_L = A W_L (row a: W_L[b], row b: −W_L[a]).
:class:`GaugeProjector` removes those too (:func:`class_rotation_tangents`).
"""
from __future__ import annotations

import copy

import numpy as np
import torch

from .arrayops import NUMPY, TORCH
from .spec import ModelSpec


def gauge_interfaces(spec: ModelSpec) -> list[int]:
    """Interfaces i (between factor i and factor i+1, factors [H₁, W₁, …, W_L]) with an O(d) gauge:
    all L for the linear model, only 0 (H₁|W₁) with ReLU."""
    return list(range(spec.L)) if spec.activation == "linear" else [0]


def gauge_tangent_count(spec: ModelSpec) -> int:
    """T, the number of generator tangents per row: d(d−1)/2 per gauge interface."""
    return len(gauge_interfaces(spec)) * spec.d * (spec.d - 1) // 2


def has_class_rotations(spec: ModelSpec) -> bool:
    """Whether the model has the continuous class-rotation symmetry: the linear MSE member only.
    With Y = I_K ⊗ 1_nᵀ, H₁ → H₁(Qᵀ ⊗ I_n) and W_L → Q W_L (Q ∈ O(K)) map Z to Q Z (Qᵀ ⊗ I_n),
    and ‖QZ(Qᵀ⊗I) − Y‖ = ‖Z − Y‖ because Qᵀ Y (Q ⊗ I) = Y; the weight decay is unchanged. (CE is
    not invariant under it; with ReLU, mixing H₁'s columns does not commute with the ReLU.)"""
    return spec.loss == "mse" and spec.activation == "linear"


def class_rotation_tangents(spec: ModelSpec, factors: list[torch.Tensor]) -> torch.Tensor:
    """The K(K−1)/2 generator tangents of the class rotations (module docstring) at a batch given
    by its factors, (B, K(K−1)/2, P) in the flat layout of θ, generators (a, b) row-major; (B, 0, P)
    for a model without them (:func:`has_class_rotations`)."""
    H, W = factors[0], factors[-1]
    B, K, n = H.shape[0], spec.K, spec.n
    a, b = torch.triu_indices(K, K, offset=1, device=H.device)
    R = a.numel() if has_class_rotations(spec) else 0
    parts = [torch.zeros(B, R, f.shape[1] * f.shape[2], dtype=f.dtype, device=f.device) for f in factors]
    if R:
        t = torch.arange(R, device=H.device)
        Hc = H.reshape(B, H.shape[1], K, n).permute(0, 2, 1, 3)   # (B, K, d, n): class blocks
        dH = torch.zeros(B, R, *Hc.shape[1:], dtype=H.dtype, device=H.device)
        dH[:, t, a] = Hc[:, b]
        dH[:, t, b] = -Hc[:, a]
        parts[0] = dH.permute(0, 1, 3, 2, 4).reshape(B, R, -1)
        dW = torch.zeros(B, R, *W.shape[1:], dtype=W.dtype, device=W.device)
        dW[:, t, a] = W[:, b]
        dW[:, t, b] = -W[:, a]
        parts[-1] = dW.reshape(B, R, -1)
    return torch.cat(parts, dim=2)


def gauge_tangents(spec: ModelSpec, factors: list[torch.Tensor]) -> torch.Tensor:
    """The generator tangents (B, T, P) at a batch given by its factors [(B, d, N), (B, d, d)…,
    (B, K, d)] (:meth:`landscape.core.model.DeepUFM.factors`), T = :func:`gauge_tangent_count`,
    in the flat layout of θ; generators ordered by interface, then (a, b) row-major."""
    B, d = factors[0].shape[0], spec.d
    a, b = torch.triu_indices(d, d, offset=1, device=factors[0].device)
    T_i = a.numel()
    blocks = []
    for i in gauge_interfaces(spec):
        parts = [torch.zeros(B, T_i, f.shape[1] * f.shape[2], dtype=f.dtype, device=f.device) for f in factors]
        Fi, Fn = factors[i], factors[i + 1]
        t = torch.arange(T_i, device=Fi.device)
        dFi = torch.zeros(B, T_i, *Fi.shape[1:], dtype=Fi.dtype, device=Fi.device)
        dFi[:, t, a] = Fi[:, b]
        dFi[:, t, b] = -Fi[:, a]
        FnT = Fn.transpose(1, 2)                               # (B, d, rows): row a is column a of F_{i+1}
        dFnT = torch.zeros(B, T_i, *FnT.shape[1:], dtype=Fn.dtype, device=Fn.device)
        dFnT[:, t, a] = FnT[:, b]
        dFnT[:, t, b] = -FnT[:, a]
        parts[i] = dFi.reshape(B, T_i, -1)
        parts[i + 1] = dFnT.transpose(2, 3).reshape(B, T_i, -1)
        blocks.append(torch.cat(parts, dim=2))
    return torch.cat(blocks, dim=1)


class GaugeProjector:
    """v ↦ v − Tᵀ G⁺ T v per row: the orthogonal projector onto the complement of the orbit's
    tangent space at a batch θ (B, P), T (B, T, P) the tangents of :func:`gauge_tangents` (and,
    for linear MSE, the class rotations' of :func:`class_rotation_tangents` after them) and G⁺
    the pseudo-inverse of their Gram matrix G = T Tᵀ.

    G⁺ comes from the eigen-decomposition of G: directions with Gram eigenvalue ≤ ``rtol``·largest
    are dropped (a tangent that vanishes or repeats others at a low-rank θ), so the rank r is
    found, not assumed. T v and Tᵀ c are applied from their structure, never as (B, T, P)
    matrices: for interface i, (T v)_ab = (M − Mᵀ)_ab with M = V_i F_iᵀ − F_{i+1}ᵀ V_{i+1} (V_i the
    part of v in factor i), and Tᵀ c puts C F_i into factor i and −F_{i+1} C into factor i+1, C
    the antisymmetric matrix of the coefficients c. An application then reads G⁺ (B, T, T)
    once and a few d × d products, where the explicit basis Q (B, P, r) of Q Qᵀ had to be read
    twice (at the default study's B = 48, P = 224, T = 84: measured 2.0 → 0.5 ms). The operator
    is symmetric whatever the round-off in G⁺ (symmetrised), so P H P is a compression of H: a
    Ritz value of P H P below −t proves an eigenvalue of H below −t/‖P‖². Cost: T²P per row to
    build, about 4Td + T² per row and interface to apply.
    """

    def __init__(self, spec: ModelSpec, factors: list[torch.Tensor], rtol: float = 1e-10):
        self.spec = spec
        Tg = torch.cat([gauge_tangents(spec, factors), class_rotation_tangents(spec, factors)], dim=1)  # (B, T, P), only to build G
        G = Tg @ Tg.transpose(1, 2)                             # (B, T, T)
        w, V = torch.linalg.eigh(G)
        keep = w > rtol * w[:, -1:].clamp(min=torch.finfo(w.dtype).tiny)
        inv = torch.where(keep, 1.0 / w.clamp(min=torch.finfo(w.dtype).tiny), torch.zeros_like(w))
        Gp = (V * inv[:, None, :]) @ V.transpose(1, 2)
        self.Gplus = 0.5 * (Gp + Gp.transpose(1, 2))            # (B, T, T)
        self.rank = keep.sum(dim=1)                             # (B,)
        d = spec.d
        self._host = factors[0].device.type == "cpu"
        self._ops = NUMPY if self._host else TORCH
        a, b = torch.triu_indices(d, d, offset=1, device=factors[0].device)
        self._interfaces = gauge_interfaces(spec)
        self._rotations = has_class_rotations(spec)
        ka, kb = torch.triu_indices(spec.K, spec.K, offset=1)
        self._ka, self._kb = ka.numpy(), kb.numpy()
        self._sizes = [f.shape[1] * f.shape[2] for f in factors]
        if self._host:
            self._F = [f.detach().numpy() for f in factors]
            self._Gplus, self._ia, self._ib = self.Gplus.numpy(), a.numpy(), b.numpy()
        else:
            self._F, self._Gplus, self._ia, self._ib = [f.detach() for f in factors], self.Gplus, a, b

    def repeat_rows(self, m: int) -> "GaugeProjector":
        """The projector of the batch with each row repeated m times in place (row b·m + k is
        row b): the same G⁺ and factors, repeated, nothing recomputed."""
        out = copy.copy(self)
        out.Gplus = self.Gplus.repeat_interleave(m, dim=0)
        out.rank = self.rank.repeat_interleave(m, dim=0)
        if self._host:
            out._F = [np.repeat(f, m, axis=0) for f in self._F]
            out._Gplus = out.Gplus.numpy()
        else:
            out._F, out._Gplus = [f.repeat_interleave(m, dim=0) for f in self._F], out.Gplus
        return out

    def _split(self, v) -> list:
        B, out, i = v.shape[0], [], 0
        for f, s in zip(self._F, self._sizes):
            out.append(v[:, i:i + s].reshape(B, *f.shape[1:]))
            i += s
        return out

    def _coefficients(self, v):
        F, Vf, a, b = self._F, self._split(v), self._ia, self._ib
        out = []
        for i in self._interfaces:
            M = Vf[i] @ F[i].swapaxes(1, 2) - F[i + 1].swapaxes(1, 2) @ Vf[i + 1]   # (B, d, d)
            out.append(M[:, a, b] - M[:, b, a])
        if self._rotations:
            # ⟨v, t_A⟩ = ⟨A, M⟩ with M = Σ_{j,i} V₀[j, c, i] H₁[j, c', i] + V_L W_Lᵀ (K × K)
            K, n, B = self.spec.K, self.spec.n, v.shape[0]
            V0, H = Vf[0].reshape(B, -1, K, n), F[0].reshape(B, -1, K, n)
            V0c, Hc = V0.swapaxes(1, 2).reshape(B, K, -1), H.swapaxes(1, 2).reshape(B, K, -1)
            M = V0c @ Hc.swapaxes(1, 2) + Vf[-1] @ F[-1].swapaxes(1, 2)
            ka, kb = self._class_pairs(M)
            out.append(M[:, ka, kb] - M[:, kb, ka])
        return self._ops.flatten(out)

    def _class_pairs(self, like):
        """The (a, b), a < b, of so(K)'s generators, as index arrays of ``like``'s library."""
        if self._host:
            return self._ka, self._kb
        return (torch.from_numpy(self._ka).to(like.device), torch.from_numpy(self._kb).to(like.device))

    def _combine(self, c):
        F, a, b, d, B = self._F, self._ia, self._ib, self.spec.d, c.shape[0]
        parts = [None] * len(F)
        T_i = len(a)
        for j, i in enumerate(self._interfaces):
            C = (np.zeros((B, d, d), dtype=c.dtype) if self._host
                 else torch.zeros(B, d, d, dtype=c.dtype, device=c.device))
            C[:, a, b] = c[:, j * T_i:(j + 1) * T_i]
            C[:, b, a] = -c[:, j * T_i:(j + 1) * T_i]
            for k, part in ((i, C @ F[i]), (i + 1, -(F[i + 1] @ C))):
                parts[k] = part if parts[k] is None else parts[k] + part
        if self._rotations:
            # Σ c_ab t_ab: δW_L = C W_L, δH₁'s class block c = Σ_c' C[c, c'] · block c'
            K, n = self.spec.K, self.spec.n
            R = K * (K - 1) // 2
            ka, kb = self._class_pairs(c)
            C = (np.zeros((B, K, K), dtype=c.dtype) if self._host
                 else torch.zeros(B, K, K, dtype=c.dtype, device=c.device))
            C[:, ka, kb] = c[:, -R:]
            C[:, kb, ka] = -c[:, -R:]
            Hc = F[0].reshape(B, -1, K, n).swapaxes(1, 2).reshape(B, K, -1)       # (B, K, d·n)
            dH = (C @ Hc).reshape(B, K, -1, n).swapaxes(1, 2).reshape(F[0].shape)
            for k, part in ((0, dH), (len(F) - 1, C @ F[-1])):
                parts[k] = part if parts[k] is None else parts[k] + part
        return self._ops.flatten([f * 0 if p is None else p for f, p in zip(F, parts)])

    def _apply(self, v):
        c = (self._Gplus @ self._coefficients(v)[:, :, None])[:, :, 0]
        return v - self._combine(c)

    def _wrap(self, fn, x: torch.Tensor) -> torch.Tensor:
        """fn on x's numpy view on the CPU (small products: numpy's stacked matmul is several
        times faster than torch's batched one there), on x itself elsewhere."""
        return torch.from_numpy(fn(x.detach().numpy())) if self._host else fn(x)

    def tangent_coefficients(self, v: torch.Tensor) -> torch.Tensor:
        """T v (B, T): the inner products of v (B, P) with every generator tangent."""
        return self._wrap(self._coefficients, v)

    def combine(self, c: torch.Tensor) -> torch.Tensor:
        """Tᵀ c (B, P): the combination of the generator tangents with coefficients c (B, T)."""
        return self._wrap(self._combine, c)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """P v for v (B, P)."""
        return self._wrap(self._apply, v)
