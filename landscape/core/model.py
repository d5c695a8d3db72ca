"""The deep unconstrained feature model (deep UFM): specification and batched objective.

Conventions follow ``docs/MODEL.md`` §1–§2 exactly:

* K classes, n samples per class, N = K·n columns, **class-ordered** (sample index fastest,
  class slowest), labels Y = I_K ⊗ 1_nᵀ of shape (K, N).
* Trainable factors, L+1 of them: H₁ (d, N), W₁..W_{L−1} (d, d), W_L (K, d). No biases.
* Forward: H₂ = W₁H₁, H_{l+1} = W_l σ(H_l), Z = W_L σ(H_L); σ is never applied to H₁ or Z.
* Objective: g(Z) + Σ_l (λ_l/2)‖factor_l‖_F², with g the mean cross-entropy over the N columns
  or ‖Z − Y‖_F²/(2N) for MSE.

Every function works on a **batch** of B parameter sets at once. A parameter set is stored as a
flat vector θ ∈ ℝ^P (P = d·N + (L−1)·d² + K·d) laid out as the row-major concatenation
[H₁, W₁, …, W_L]; a batch is a (B, P) tensor. :meth:`DeepUFM.factors` gives (B, rows, cols) views.
"""
from __future__ import annotations

import copy
import warnings
from typing import Sequence

import numpy as np
import torch

from .validate import SpecError  # noqa: F401  (re-exported)

from .arrayops import NUMPY, TORCH
from .operators import GaussNewtonOperator, HessianOperator
from .smallmm import CPU_SMALL_PRODUCT, bmm as _bmm
from .spec import ACTIVATIONS, DTYPE_NAMES, LOSSES, ModelSpec  # noqa: F401  (re-exported: the model's spec)
from .theta import DTYPES, as_theta64  # noqa: F401  (re-exported: the torch side of the spec)

#: Multiply-adds of the largest product of the layer-by-layer Hessian-vector product
#: (d·max(d, K)·N) below which the CPU computes it in numpy (:attr:`DeepUFM.host_hvp`). Measured
#: on one thread of a 2-core machine (``benchmarks/bench_small_p.py``), ReLU CE, per application:
#: at K=4, n=2, d=8, L=3 (512 multiply-adds) 136 µs in numpy against 258 µs in torch at B = 64
#: (51 against 98 at B = 8, 659 against 1,004 at B = 384), at K=10, n=5, d=30, L=2 (45,000)
#: 1.57 against 1.76 ms at B = 64 (127 against 161 µs at B = 4); the same numbers up to
#: round-off. Torch's batched gemm is kept for larger products, where it can use more threads.
HOST_HVP_PRODUCT = 1 << 16


class DeepUFM:
    """Batched objective of a deep UFM: loss, gradient and Hessian-vector products.

    All methods take θ of shape (B, P) (or (P,), treated as B = 1 and squeezed back) in the
    spec's dtype. Gradients are computed by a hand-written batched backward pass (batched products,
    :mod:`landscape.core.smallmm`; in numpy where every product is tiny, :attr:`host_gradient`).
    Hessian-vector products are the hand-written directional derivative of that gradient
    (:meth:`_bottleneck_hvp` for the linear model's bottleneck form, :meth:`_layers_hvp` for every
    other model, ReLU's masks held fixed), exact; double back-propagation through :meth:`loss`
    (:meth:`hvp_operator_autograd`) is their reference.

    **Per-row weight decay.** :meth:`with_row_lambdas` gives a model whose row b has its own
    λ_{b,l} (one per factor) in place of the spec's: cells of a sweep that differ only in λ then
    advance as one batch. Such a model only takes batches of exactly its rows (a (B, P) θ with B
    = the number of its λ rows; anything else is a ValueError); :meth:`for_rows` gives the model
    of a subset of them (the driver follows its working rows with it). On a model without
    per-row λ, :meth:`for_rows` is the model itself.
    """

    def __init__(self, spec: ModelSpec, device: str | torch.device = "cpu", compile: str | bool = False):
        """``compile``: run :meth:`loss_and_grad` through ``torch.compile`` (``True``), not
        (``False``), or ``"auto"``: on a GPU yes, on the CPU no (measured on 2 cores at P = 9100:
        +6–18% per step for a ~10 s compile per process, which only long runs repay). Compiled
        without CUDA graphs, whose replays overwrite outputs the driver still holds. A compile
        that fails (no compiler, an unsupported op) falls back to the eager code, once, with a
        warning."""
        self.spec = spec
        self.device = torch.device(device)
        self.dtype = spec.torch_dtype
        K, n = spec.K, spec.n
        self.Y = torch.kron(torch.eye(K, dtype=self.dtype), torch.ones(1, n, dtype=self.dtype)).to(self.device)
        self.labels = torch.arange(K, device=self.device).repeat_interleave(n)  # (N,)
        self._sizes = [r * c for r, c in spec.shapes]
        # λ of the factor each flat parameter belongs to, (P,): the regulariser is ½ θᵀ diag(λ) θ
        self._lam_vec = torch.cat([torch.full((s,), lam, dtype=self.dtype, device=self.device)
                                   for s, lam in zip(self._sizes, spec.lambdas)])
        #: per-row weight decay (B, L+1) or None (the spec's λ for every row): :meth:`with_row_lambdas`
        self._row_lam: torch.Tensor | None = None
        self._relu = spec.activation == "relu"
        #: λ = 0 (CE): the data term is written without the cancellation of p_y − 1 (:meth:`_data_term`)
        self._separable_ce = spec.loss == "ce" and spec.unregularised
        d, K, N, L = spec.d, spec.K, spec.N, spec.L
        #: the linear model's gradient through the logits' K-row bottleneck, where that is cheaper
        self._bottleneck = (not self._relu and L >= 2
                            and 3 * (L - 1) * K * d * d < 3 * (L - 1) * d * d * N)
        use = (self.device.type == "cuda") if compile == "auto" else bool(compile)
        self._compiled = torch.compile(self._loss_and_grad, dynamic=True) if use else None
        #: the gradient is computed in numpy (:mod:`landscape.core.arrayops`): the linear model's
        #: bottleneck form on the CPU, uncompiled, when every one of its products has fewer than
        #: CPU_SMALL_PRODUCT multiply-adds (there a torch call costs mostly its dispatch)
        self.host_gradient = (self._bottleneck and self.device.type == "cpu" and self._compiled is None
                              and K * d * max(d, N) < CPU_SMALL_PRODUCT)
        #: the layer-by-layer Hessian-vector product (:meth:`_layers_hvp`, every model but the
        #: bottleneck form) is computed in numpy: on the CPU, where every one of its products has
        #: fewer than HOST_HVP_PRODUCT multiply-adds
        self.host_hvp = (not self._bottleneck and self.device.type == "cpu"
                         and d * max(d, K) * N < HOST_HVP_PRODUCT)
        self._Y_host = self.Y.cpu().numpy()

    # ----- per-row weight decay ---------------------------------------------------------------
    def with_row_lambdas(self, lambdas) -> "DeepUFM":
        """This model with weight decay ``lambdas`` per row: a (B, L+1) array (λ_H, λ_W1, …, λ_WL of
        each row), or (B,) for one λ on every factor of the row. Every entry must be finite and >
        0. The returned model shares this one's data and device; see the class docstring."""
        lam = torch.as_tensor(lambdas, dtype=self.dtype).to(self.device)
        if lam.dim() == 1:
            lam = lam[:, None].expand(-1, self.spec.L + 1)
        if lam.dim() != 2 or lam.shape[1] != self.spec.L + 1:
            raise ValueError(f"row lambdas have shape {tuple(lam.shape)}: must be (B,) or (B, L+1={self.spec.L + 1})")
        if not bool(torch.isfinite(lam).all()) or not bool((lam > 0).all()):
            raise ValueError("row lambdas must be finite numbers > 0")
        out = copy.copy(self)
        out._row_lam = lam.contiguous()
        return out

    def for_rows(self, rows) -> "DeepUFM":
        """The model of rows ``rows`` (an index tensor into this model's rows): itself when it has
        no per-row λ, else the same model with those rows' λ, in that order."""
        if self._row_lam is None:
            return self
        out = copy.copy(self)
        out._row_lam = self._row_lam[torch.as_tensor(rows, device=self.device)]
        return out

    @property
    def row_lambdas(self) -> torch.Tensor | None:
        """The per-row weight decay (B, L+1), or None."""
        return self._row_lam

    def min_lambda(self, B: int) -> torch.Tensor:
        """The smallest λ_l of each of B rows, (B,): the spec's min_l λ_l, or per row."""
        if self._row_lam is None:
            return torch.full((B,), min(self.spec.lambdas), dtype=self.dtype, device=self.device)
        self._check_rows(B)
        return self._row_lam.min(dim=1).values

    def _lam_of_rows(self, B: int) -> torch.Tensor:
        """λ of the factor each flat parameter belongs to: (P,) from the spec, or (B, P) per row."""
        if self._row_lam is None:
            return self._lam_vec
        self._check_rows(B)
        return torch.repeat_interleave(self._row_lam, torch.tensor(self._sizes, device=self.device), dim=1)

    def _check_rows(self, B: int) -> None:
        if self._row_lam is not None and B != self._row_lam.shape[0]:
            raise ValueError(f"a batch of {B} rows given to a model with per-row λ for {self._row_lam.shape[0]} rows: "
                             "take the model of those rows with for_rows")

    # ----- layout --------------------------------------------------------------------------
    @property
    def P(self) -> int:
        return self.spec.P

    def factors(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """Views [(B,d,N), (B,d,d)…, (B,K,d)] of a (B, P) batch."""
        B = theta.shape[0]
        out, i = [], 0
        for (r, c), s in zip(self.spec.shapes, self._sizes):
            out.append(theta[:, i:i + s].reshape(B, r, c))
            i += s
        return out

    def flatten(self, factors: Sequence[torch.Tensor]) -> torch.Tensor:
        """Inverse of :meth:`factors`: list of (B, r, c) tensors to (B, P)."""
        B = factors[0].shape[0]
        return torch.cat([f.reshape(B, -1) for f in factors], dim=1)

    def zeros(self, B: int = 1) -> torch.Tensor:
        return torch.zeros(B, self.P, dtype=self.dtype, device=self.device)

    # ----- forward -------------------------------------------------------------------------
    def forward(self, theta: torch.Tensor):
        """Return (pre, post, Z): per-layer features and logits.

        pre[l] and post[l] (l = 0..L−1) are the features entering W_{l+1}: pre[0] = post[0] = H₁,
        pre[l] = W_l post[l−1] and post[l] = σ(pre[l]) for l ≥ 1. Z = W_L post[L−1], (B, K, N).
        """
        F = self.factors(theta)
        pre, post = [F[0]], [F[0]]
        for W in F[1:-1]:
            h = _bmm(W, post[-1])
            pre.append(h)
            post.append(torch.relu(h) if self._relu else h)
        Z = _bmm(F[-1], post[-1])
        return pre, post, Z

    def logits(self, theta: torch.Tensor) -> torch.Tensor:
        """Logits Z, (B, K, N)."""
        return self.forward(theta)[2]

    def data_loss(self, Z: torch.Tensor) -> torch.Tensor:
        """g(Z) per batch element, (B,)."""
        N = self.spec.N
        if self.spec.loss == "ce":
            lse = torch.logsumexp(Z, dim=1)  # (B, N)
            true = (Z * self.Y).sum(dim=1)
            return (lse - true).sum(dim=1) / N
        return ((Z - self.Y) ** 2).sum(dim=(1, 2)) / (2 * N)

    def reg_loss(self, theta: torch.Tensor) -> torch.Tensor:
        """Σ_l (λ_l/2)‖factor_l‖², (B,). Differentiable twice everywhere (Hessian-vector products
        go through it): a sum of squares, not a norm, whose derivative is undefined at 0."""
        return 0.5 * (theta * theta * self._lam_of_rows(theta.shape[0])).sum(dim=1)

    def _reg_value(self, theta, lams: list, ops=TORCH):
        """The value of :meth:`reg_loss` from per-factor norms of views (no (B, P) temporary);
        not for autograd. ``lams``: λ per factor, floats or (B, 1, 1) per-row arrays of the
        namespace ``ops`` (:mod:`.arrayops`). One λ for every factor (the common case): one norm of
        the whole row instead of one per factor."""
        if all(isinstance(lam, float) and lam == lams[0] for lam in lams):
            return (0.5 * lams[0]) * ops.sqnorm(theta)
        out = ops.zeros_rows(theta)
        i = 0
        for s_, lam in zip(self._sizes, lams):
            lam = lam if isinstance(lam, float) else lam.reshape(-1)
            out = out + (0.5 * lam) * ops.sqnorm(theta[:, i:i + s_])
            i += s_
        return out

    def loss(self, theta: torch.Tensor) -> torch.Tensor:
        """Objective value per batch element, (B,). Differentiable (used for HVPs)."""
        squeeze = theta.dim() == 1
        if squeeze:
            theta = theta.unsqueeze(0)
        out = self.data_loss(self.forward(theta)[2]) + self.reg_loss(theta)
        return out[0] if squeeze else out

    # ----- gradient ------------------------------------------------------------------------
    def loss_and_grad(self, theta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (B,) and gradient (B, P) by a hand-written batched backward pass
        (:meth:`_loss_and_grad`, compiled when the model was built with ``compile``)."""
        if self._compiled is not None and theta.dim() == 2 and theta.shape[0] > 1:
            try:
                return self._compiled(theta, self._row_lam)
            except Exception as exc:  # noqa: BLE001  (any compiler failure: fall back, say so once)
                warnings.warn(f"torch.compile of the gradient failed ({type(exc).__name__}: {exc}); "
                              "running eagerly", RuntimeWarning, stacklevel=2)
                self._compiled = None
        return self._loss_and_grad(theta, self._row_lam)

    def _loss_and_grad(self, theta: torch.Tensor, row_lam: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss and gradient of a (B, P) batch, or () and (P,) of one θ (P,). ``row_lam``: the
        per-row λ the model holds (an argument, so that a compiled version sees it as an input)."""
        squeeze = theta.dim() == 1
        if squeeze:
            theta = theta.unsqueeze(0)
        lams = self._factor_lams(theta.shape[0], row_lam)
        loss, grad = (self._loss_and_grad_bottleneck(theta, lams) if self._bottleneck
                      else self._loss_and_grad_layers(theta, lams))
        if squeeze:
            return loss[0], grad[0]
        return loss, grad

    def _data_term(self, Z, ops=TORCH, Y=None):
        """g(Z) (B,) and ∂g/∂Z (B, K, N), in the namespace ``ops`` (``Y``: the labels there)."""
        N = self.spec.N
        Y = self.Y if Y is None else Y
        if self.spec.loss == "ce":
            zmax = ops.colmax(Z)  # log-sum-exp and softmax from one exp
            E = ops.exp(Z - zmax)
            S = ops.colsum(E)
            if self._separable_ce:
                # λ = 0: the margins grow without bound and 1 − p_y falls below ε, where p_y − 1
                # rounds to 0 and log S to 0 (at a margin of ~37 in float64). Written without the
                # cancellation: the true class's entry of ∂g/∂Z is −Σ_{c≠y} p_c (columns of P − Y
                # sum to zero exactly) and g = (z_max − z_y) + log1p(S − 1), S − 1 summed from the
                # other classes (exact when y is the argmax, E_y = 1). Same values up to round-off,
                # except that exponents below −600 are raised to −600: e^{−600} ≈ 3e−261 keeps every
                # product of the backward pass out of the subnormal range (arithmetic on subnormals
                # is ~10× slower on a CPU), an error of e^{−600}/e^{−m} relative to the gradient
                # (m the smallest margin), below round-off while m < 560.
                E = ops.exp(ops.xp.clip(Z - zmax, -600.0, None)) if ops is NUMPY else ops.exp((Z - zmax).clamp(min=-600.0))
                S = ops.colsum(E)
                off = E * (1 - Y)
                Sm1 = ops.colsum(off) + (ops.colsum(E * Y) - 1)
                g = (ops.rowsum((zmax - Z) * Y) + ops.rowsum(ops.xp.log1p(Sm1))) / N
                Poff = off / S
                return g, (Poff - Y * ops.colsum(Poff)) / N
            lse = zmax + ops.log(S)
            g = (ops.rowsum(lse) - ops.rowsum(Z * Y)) / N
            return g, (E / S - Y) / N
        R = Z - Y
        return ops.rowsum(R * R) / (2 * N), R / N

    def _loss_and_grad_bottleneck(self, theta: torch.Tensor, lams: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """The linear model's loss and gradient with every product taken through the K-row
        bottleneck of the logits: A_L = W_L, A_l = A_{l+1}W_l (K × d each), Z = A_1H₁; with
        G = ∂g/∂Z and R_1 = GH₁ᵀ, R_l = R_{l−1}W_{l−1}ᵀ (K × d), ∇W_l = A_{l+1}ᵀR_l + λ_lW_l
        (∇W_L = R_L + λW_L) and ∇H₁ = A_1ᵀG + λH₁. About 3(L−1)Kd² + 3KdN multiply-adds per
        trajectory instead of 3(L−1)d²N + 3KdN (3.3× fewer at K=10, d=70, N=50); the same numbers
        up to round-off (associativity). Chosen when cheaper (:attr:`_bottleneck`). Computed in
        numpy on views of θ where every product is tiny (:attr:`host_gradient`,
        :mod:`landscape.core.arrayops`), else in torch.
        ``lams``: λ per factor, floats or (B, 1, 1) per-row tensors (default: the spec's).
        """
        lams = list(self.spec.lambdas) if lams is None else lams
        with torch.no_grad():
            if not self.host_gradient:
                return self._bottleneck_terms(theta, self.factors(theta), lams, TORCH, self.Y)
            th = theta.detach().numpy()
            lams = self._host_lams(lams)
            with np.errstate(all="ignore"):   # a diverging row gives inf/nan silently, as in torch
                loss, grad = self._bottleneck_terms(th, self.factors(th), lams, NUMPY, self._Y_host)
            return torch.from_numpy(loss), torch.from_numpy(grad)

    @staticmethod
    def _logit_chain(F: list, ops) -> tuple[list, object]:
        """A (A_l = W_L⋯W_l, K × d, at index l = 1 … L; indices 0 and L+1 None) and the logits
        Z = A_1H₁ (B, K, N) from the factors F, in the namespace ``ops``."""
        L = len(F) - 1
        A = [None] * (L + 2)
        A[L] = F[L]
        for l in range(L - 1, 0, -1):
            A[l] = ops.mm(A[l + 1], F[l])
        return A, ops.mm(A[1], F[0])

    def _bottleneck_terms(self, theta, F: list, lams: list, ops, Y):
        """Loss (B,) and gradient (B, P) of :meth:`_loss_and_grad_bottleneck`, written once over
        the namespace ``ops`` (:mod:`.arrayops`): ``theta``, the factors ``F`` and ``Y`` are its
        arrays."""
        L = len(F) - 1
        A, Z = self._logit_chain(F, ops)
        g, G = self._data_term(Z, ops, Y)
        R = ops.mm(G, ops.t(F[0]))
        grads = [ops.decay_mm(F[0], ops.t(A[1]), G, lams[0])] + [None] * L
        for l in range(1, L + 1):
            if l > 1:
                R = ops.mm(R, ops.t(F[l - 1]))
            grads[l] = (ops.decay_add(R, F[L], lams[L]) if l == L
                        else ops.decay_mm(F[l], ops.t(A[l + 1]), R, lams[l]))
        return g + self._reg_value(theta, lams, ops), ops.flatten(grads)

    def _loss_and_grad_layers(self, theta: torch.Tensor, lams: list | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Loss (B,) and gradient (B, P) by a hand-written batched backward pass, layer by layer.

        Written for memory traffic, which dominates at the paper's size on a CPU: the weight decay
        of factor l is folded into the matrix product of its gradient (``baddbmm``:
        λ_l F_l + δ_l h_{l−1}ᵀ in one kernel), the regulariser's value comes from per-factor norms
        of views (no (B, P) temporaries), and the (B, P) gradient is assembled by one ``cat``.
        ``lams``: λ per factor, floats or (B, 1, 1) per-row tensors (default: the spec's).
        """
        lams = list(self.spec.lambdas) if lams is None else lams
        with torch.no_grad():
            F = self.factors(theta)
            pre, post, Z = self.forward(theta)
            g, dZ = self._data_term(Z)
            grads = [None] * len(F)
            delta = dZ  # gradient w.r.t. the output of factor l (B, rows_l, N)
            for l in range(len(F) - 1, 0, -1):
                grads[l] = TORCH.decay_mm(F[l], delta, post[l - 1].transpose(1, 2), lams[l])
                dpost = _bmm(F[l].transpose(1, 2), delta)
                delta = dpost * (pre[l - 1] > 0) if (self._relu and l > 1) else dpost
            grads[0] = TORCH.decay_add(delta, F[0], lams[0])
            return g + self._reg_value(theta, lams), self.flatten(grads)

    def grad(self, theta: torch.Tensor) -> torch.Tensor:
        return self.loss_and_grad(theta)[1]

    # ----- Gauss–Newton-vector products ----------------------------------------------------
    def _jvp(self, F: list, pre: list, post: list, v: torch.Tensor) -> torch.Tensor:
        """J(θ)v of :meth:`logits_jvp` from θ's factors ``F`` and forward pass (``pre``, ``post``)."""
        D = self.factors(v)
        dpost = D[0]
        for l in range(1, len(F)):
            dh = _bmm(D[l], post[l - 1]) + _bmm(F[l], dpost)
            if l < len(F) - 1:
                dpost = dh * (pre[l] > 0) if self._relu else dh
        return dh

    def _vjp(self, F: list, pre: list, post: list, U: torch.Tensor) -> torch.Tensor:
        """J(θ)ᵀU of :meth:`logits_vjp` from θ's factors ``F`` and forward pass."""
        grads = [None] * len(F)
        delta = U
        for l in range(len(F) - 1, 0, -1):
            grads[l] = _bmm(delta, post[l - 1].transpose(1, 2))
            dpost = _bmm(F[l].transpose(1, 2), delta)
            delta = dpost * (pre[l - 1] > 0) if (self._relu and l > 1) else dpost
        grads[0] = delta
        return self.flatten(grads)

    def logits_jvp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """J(θ)v: the derivative of the logits Z along v, (B, K, N), by forward propagation of
        the perturbation: dh₀ = Δ₀, dh_l = Δ_l σ(h_{l−1}) + W_l (σ'(h_{l−1}) ⊙ dh_{l−1})."""
        pre, post, _ = self.forward(theta)
        return self._jvp(self.factors(theta), pre, post, v)

    def logits_vjp(self, theta: torch.Tensor, U: torch.Tensor) -> torch.Tensor:
        """J(θ)ᵀU for U (B, K, N) (a cotangent of the logits), (B, P): the backward pass of
        :meth:`_loss_and_grad` with δ_Z = U and no weight decay."""
        pre, post, _ = self.forward(theta)
        return self._vjp(self.factors(theta), pre, post, U)

    def gauss_newton_operator(self, theta: torch.Tensor) -> GaussNewtonOperator:
        """The Gauss–Newton operator v ↦ G(θ)v (:meth:`gauss_newton_vp`) at a batch θ (B, P):
        a :class:`landscape.core.operators.GaussNewtonOperator` (θ's forward pass computed once)."""
        return GaussNewtonOperator(self, theta)

    def _gauss_newton_function(self, theta: torch.Tensor):
        """v ↦ G(θ)v for a (B, P) batch θ (:meth:`gauss_newton_vp`), θ's forward pass and
        softmax computed once."""
        with torch.no_grad():
            F = self.factors(theta)
            pre, post, Z = self.forward(theta)
            N = self.spec.N
            p = torch.softmax(Z, dim=1) if self.spec.loss == "ce" else None
            lam = self._lam_of_rows(theta.shape[0])

        def apply(v: torch.Tensor) -> torch.Tensor:
            with torch.no_grad():
                JV = self._jvp(F, pre, post, v)
                U = (p * JV - p * (p * JV).sum(dim=1, keepdim=True)) / N if p is not None else JV / N
                return self._vjp(F, pre, post, U) + lam * v

        return apply

    def gauss_newton_vp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """G(θ)v with G = Jᵀ ∇²_Z g J + diag(λ): the Gauss–Newton part of the Hessian (every
        same-factor term of MODEL.md §7 and the cross-factor terms of the same form); the rest,
        H − G = Σ_k (∇_Z g)_k ∇²Z_k, is the residual part (only between different factors, since Z
        is linear in each factor). ∇²_Z g per column: (diag(p) − ppᵀ)/N for CE, I/N for MSE. (B, P)."""
        return GaussNewtonOperator(self, theta)(v)

    # ----- Hessian-vector products ---------------------------------------------------------
    def hvp_operator(self, theta: torch.Tensor) -> HessianOperator:
        """The Hessian at a θ (B, P) batch as an operator v ↦ H(θ)v on (B, P) batches of v: a
        :class:`landscape.core.operators.HessianOperator` (callable, ``@``, ``.dense()``).
        A θ of shape (P,) gives the operator of one row on (P,) vectors."""
        return HessianOperator(self, theta)

    def _hvp_function(self, theta: torch.Tensor):
        """A function v ↦ H(θ)v for (B, P) batches of v, for one θ (B, P) batch.

        Batch elements are independent, so the Hessian of Σ_b L(θ_b) is block diagonal and every
        row gets its own Hessian-vector product: the directional derivative of the model's
        hand-written gradient, exact. The linear model in its bottleneck form
        (:attr:`_bottleneck`) differentiates that gradient (:meth:`_bottleneck_hvp`, in numpy
        where :attr:`host_gradient`); every other model, the ReLU model and the linear model of
        L = 1 or n = 1, differentiates the layer-by-layer one (:meth:`_layers_hvp`, ReLU's masks
        held fixed; in numpy where :attr:`host_hvp`). :meth:`hvp_operator_autograd` (double
        back-propagation) is the reference both are tested and measured against, and the product
        of a subclass that replaces the data term (:meth:`_data_term`).
        """
        if type(self)._data_term is not DeepUFM._data_term:
            # a subclass with a data term of its own (the λ = 0 margin flow's log L,
            # landscape.study.lambda0): its second derivative is not the one written here
            return self.hvp_operator_autograd(theta)
        lams = self._factor_lams(theta.shape[0], self._row_lam)
        build, host = ((self._bottleneck_hvp, self.host_gradient) if self._bottleneck
                       else (self._layers_hvp, self.host_hvp))
        if not host:
            return build(theta.detach(), lams, TORCH, self.Y)
        with np.errstate(all="ignore"):
            op = build(theta.detach().numpy(), self._host_lams(lams), NUMPY, self._Y_host)

        def host_apply(v: torch.Tensor) -> torch.Tensor:
            with np.errstate(all="ignore"):   # non-finite rows stay so silently, as in torch
                return torch.from_numpy(op(v.detach().numpy()))

        return host_apply

    def hvp_operator_autograd(self, theta: torch.Tensor):
        """v ↦ H(θ)v by double back-propagation through :meth:`loss`, reusing one autograd graph
        (every model; the reference the hand-written product is tested and measured against)."""
        th = theta.detach().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(self.loss(th).sum(), th, create_graph=True)

        def apply(v: torch.Tensor) -> torch.Tensor:
            with torch.enable_grad():
                (hv,) = torch.autograd.grad(g, th, grad_outputs=v, retain_graph=True)
            return hv.detach()

        return apply

    def _factor_lams(self, B: int, row_lam: torch.Tensor | None) -> list:
        """λ per factor for a batch of B rows: the spec's floats, or (B, 1, 1) tensors of the
        per-row λ ``row_lam`` (B, L+1)."""
        if row_lam is None:
            return list(self.spec.lambdas)
        self._check_rows(B)
        return [row_lam[:, l, None, None] for l in range(self.spec.L + 1)]

    @staticmethod
    def _host_lams(lams: list) -> list:
        """:meth:`_factor_lams` for the numpy path: per-row tensors as numpy views."""
        return [lam if isinstance(lam, float) else lam.detach().numpy() for lam in lams]

    def _bottleneck_hvp(self, theta, lams: list, ops, Y):
        """v ↦ H(θ)v of the linear model, over the namespace ``ops`` (:mod:`.arrayops`): the
        derivative along v = (D₀ for H₁, D_l for W_l) of the gradient of
        :meth:`_loss_and_grad_bottleneck`, by the product rule through its chains:
        dA_L = D_L, dA_l = dA_{l+1}W_l + A_{l+1}D_l; dZ = dA_1H₁ + A_1D₀;
        dG = (p ⊙ dZ − p ⊙ Σ_k p_k dZ_k)/N per column for CE (p = softmax Z), dZ/N for MSE;
        dR_1 = dG H₁ᵀ + G D₀ᵀ, dR_l = dR_{l−1}W_{l−1}ᵀ + R_{l−1}D_{l−1}ᵀ; then
        H v = (dA_1ᵀG + A_1ᵀdG + λ₀D₀, dA_{l+1}ᵀR_l + A_{l+1}ᵀdR_l + λ_lD_l, dR_L + λ_LD_L).
        θ's chains (A_l, G, p, R_l) are computed once; each product costs about twice a
        gradient's matrix products and no graph. ``theta`` (B, P), v (B, P) arrays of ``ops``."""
        N = self.spec.N
        ce = self.spec.loss == "ce"
        F = self.factors(theta)
        L = len(F) - 1
        A, Z = self._logit_chain(F, ops)
        if ce:
            E = ops.exp(Z - ops.colmax(Z))
            p = E / ops.colsum(E)
            G = (p - Y) / N
        else:
            G = (Z - Y) / N
        R = [None, ops.mm(G, ops.t(F[0]))]
        for l in range(2, L + 1):
            R.append(ops.mm(R[l - 1], ops.t(F[l - 1])))

        def apply(v):
            D = self.factors(v)
            dA = [None] * (L + 2)
            dA[L] = D[L]
            for l in range(L - 1, 0, -1):
                dA[l] = ops.mm(dA[l + 1], F[l]) + ops.mm(A[l + 1], D[l])
            dZ = ops.mm(dA[1], F[0]) + ops.mm(A[1], D[0])
            if ce:
                pd = p * dZ
                dG = (pd - p * ops.colsum(pd)) / N
            else:
                dG = dZ / N
            out = [ops.decay_add(ops.mm(ops.t(dA[1]), G) + ops.mm(ops.t(A[1]), dG), D[0], lams[0])]
            dR = ops.mm(dG, ops.t(F[0])) + ops.mm(G, ops.t(D[0]))
            for l in range(1, L + 1):
                if l > 1:
                    dR = ops.mm(dR, ops.t(F[l - 1])) + ops.mm(R[l - 1], ops.t(D[l - 1]))
                top = dR if l == L else ops.mm(ops.t(dA[l + 1]), R[l]) + ops.mm(ops.t(A[l + 1]), dR)
                out.append(ops.decay_add(top, D[l], lams[l]))
            return ops.flatten(out)

        return apply

    def _layers_hvp(self, theta, lams: list, ops, Y):
        """v ↦ H(θ)v of the layer-by-layer gradient (:meth:`_loss_and_grad_layers`), over the
        namespace ``ops`` (:mod:`.arrayops`): its derivative along v = (D₀ for H₁, D_l for W_l)
        with ReLU's masks M_l = 1[h_l > 0] held fixed (ReLU'(0) = 0, torch's convention; off the
        kinks the network is, locally, the linear one with those masks, and ReLU'' = 0 there).
        With h₀ = H₁ the features entering W_{l+1} (h_l = M_l ⊙ W_l h_{l−1}, 1 ≤ l < L), G = ∂g/∂Z
        and the backward pass δ_L = G, δ_{l−1} = M_{l−1} ⊙ W_lᵀδ_l (M₀ = 1: no mask on H₁), the
        tangent forward pass dh₀ = D₀, dh_l = M_l ⊙ (D_l h_{l−1} + W_l dh_{l−1}),
        dZ = D_L h_{L−1} + W_L dh_{L−1}; dG = (p ⊙ dZ − p ⊙ Σ_k p_k dZ_k)/N per column for CE
        (p = softmax Z), dZ/N for MSE; the tangent backward pass dδ_L = dG,
        dδ_{l−1} = M_{l−1} ⊙ (D_lᵀδ_l + W_lᵀdδ_l); then H v = (dδ₀ + λ₀D₀,
        dδ_l h_{l−1}ᵀ + δ_l dh_{l−1}ᵀ + λ_lD_l for l = 1 … L). The linear model is the case without
        masks. θ's passes (h_l, M_l, G, p, δ_l) are computed once; each product costs about twice
        a gradient's matrix products (sums of two products as ``decay_mm`` with λ = 1) and no
        graph. ``theta`` (B, P), v (B, P) arrays of ``ops``; ``lams`` as in
        :meth:`_bottleneck_terms`."""
        N = self.spec.N
        ce = self.spec.loss == "ce"
        relu = self._relu
        F = self.factors(theta)
        L = len(F) - 1
        post, mask = [F[0]], [None] * L   # h_l and M_l (None: no mask), l = 0 … L−1
        for l in range(1, L):
            h = ops.mm(F[l], post[l - 1])
            if relu:   # as floats: a product with a boolean array casts it every time
                mask[l] = (h > 0).astype(h.dtype) if ops is NUMPY else (h > 0).to(h.dtype)
                h = h * mask[l]
            post.append(h)
        Z = ops.mm(F[L], post[L - 1])
        G = self._data_term(Z, ops, Y)[1]
        if ce:
            E = ops.exp(Z - ops.colmax(Z))
            p = E / ops.colsum(E)
        delta = [None] * (L + 1)   # δ_l, l = 1 … L
        delta[L] = G
        for l in range(L, 1, -1):
            d = ops.mm(ops.t(F[l]), delta[l])
            delta[l - 1] = d * mask[l - 1] if relu else d

        def apply(v):
            D = self.factors(v)
            dpost = [D[0]]
            for l in range(1, L):
                dh = ops.decay_mm(ops.mm(D[l], post[l - 1]), F[l], dpost[l - 1], 1.0)
                dpost.append(dh * mask[l] if relu else dh)
            dZ = ops.decay_mm(ops.mm(D[L], post[L - 1]), F[L], dpost[L - 1], 1.0)
            if ce:
                pd = p * dZ
                dd = (pd - p * ops.colsum(pd)) / N
            else:
                dd = dZ / N
            out = [None] * (L + 1)
            for l in range(L, 0, -1):
                out[l] = ops.decay_mm(ops.decay_mm(D[l], dd, ops.t(post[l - 1]), lams[l]),
                                      delta[l], ops.t(dpost[l - 1]), 1.0)
                dd = ops.decay_mm(ops.mm(ops.t(D[l]), delta[l]), ops.t(F[l]), dd, 1.0)
                if relu and l > 1:
                    dd = dd * mask[l - 1]
            out[0] = ops.decay_add(dd, D[0], lams[0])
            return ops.flatten(out)

        return apply

    def hvp(self, theta: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """H(θ)v for a batch, (B, P)."""
        squeeze = theta.dim() == 1
        if squeeze:
            theta, v = theta.unsqueeze(0), v.unsqueeze(0)
        out = self.hvp_operator(theta)(v)
        return out[0] if squeeze else out

    def hessian(self, theta: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Dense Hessian of one parameter set θ (P,), shape (P, P), exact: its columns H e_j are
        Hessian-vector products of the unit vectors, ``chunk`` of them per batched product (θ
        repeated): :meth:`landscape.core.operators.CurvatureOperator.dense`. Symmetrised, (H + Hᵀ)/2."""
        if self._row_lam is not None:
            raise ValueError("hessian() is of one parameter set: take a model without per-row λ")
        return self.hvp_operator(theta.detach().reshape(1, -1)).dense(chunk)[0]
