"""Curvature as operator objects: one base class, ``@`` composition, one dense builder.

A :class:`CurvatureOperator` is a batch of B linear maps of ℝ^P, one per row of a parameter
batch θ (B, P): ``op @ v`` (or ``op(v)``) maps v (B, P) to (A_b v_b)_b, (B, P), on the
operator's device and in its dtype (float64 for analysis). On top of that matvec the base class
gives

* ``op1 @ op2``: the lazy composition (row b: A_b B_b), applied right to left;
* ``op.T``: the transpose, where it is known (a symmetric operator is its own transpose; a
  composition's is the reversed composition of the transposes);
* :meth:`~CurvatureOperator.matmat`: the operator of one row (B = 1) on the columns of V (P, k),
  up to ``chunk`` columns per application of the operator rebuilt for that many rows
  (:meth:`~CurvatureOperator.repeat_rows`, cached by their number);
* :meth:`~CurvatureOperator.dense`: the dense (B, P, P) matrices from the identity's columns, the
  one dense builder of the package (symmetrised, (A + Aᵀ)/2, where the operator is symmetric).

The subclasses are the curvature the package uses: :class:`HessianOperator` (exact Hessian-vector
products of :class:`landscape.core.model.DeepUFM`, :meth:`DeepUFM.hvp_operator`),
:class:`GaussNewtonOperator` (G = Jᵀ∇²_Z g J + diag(λ), :meth:`DeepUFM.gauss_newton_vp`) and
:class:`GaugeProjectorOperator` (the projector across the gauge orbit,
:class:`landscape.core.gauge.GaugeProjector`). The negative-curvature witness of the engines runs
Lanczos on ``P @ H @ P`` (:mod:`landscape.engines.curvature`); the analysis builds ``H.dense()``.
The design follows curvlinops' ``_torch_base.py`` (one base class, ``@``), batched over rows.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from .gauge import GaugeProjector

if TYPE_CHECKING:   # the model imports this module (its hvp_operator returns a HessianOperator)
    from .model import DeepUFM

#: Vectors per application in :meth:`CurvatureOperator.dense` and :meth:`~CurvatureOperator.matmat`.
DEFAULT_CHUNK = 256


class CurvatureOperator:
    """A batch of B linear maps of ℝ^P (module docstring). Subclasses implement :meth:`_matvec`
    ((B, P) → (B, P)) and :meth:`_repeat_rows`, and say whether they are ``symmetric``."""

    #: every row's map is symmetric (then ``.T`` is the operator itself and ``dense`` symmetrises)
    symmetric: bool = False

    def __init__(self, batch: int, P: int, device, dtype: torch.dtype):
        self.batch, self.P = int(batch), int(P)
        self.device, self.dtype = torch.device(device), dtype
        self._repeated: dict[int, CurvatureOperator] = {}

    # ----- what a subclass provides ---------------------------------------------------------
    def _matvec(self, v: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _repeat_rows(self, m: int) -> "CurvatureOperator":
        """The operator of B·m rows, row b·m + k being row b of this one (b-major)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be repeated over rows")

    def _transpose(self) -> "CurvatureOperator":
        raise NotImplementedError(f"the transpose of {type(self).__name__} is not known")

    # ----- the algebra ----------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        """(B, P, P)."""
        return (self.batch, self.P, self.P)

    def __call__(self, v: torch.Tensor) -> torch.Tensor:
        """A v for v (B, P): the same as ``self @ v``."""
        return self._matvec(v)

    def __matmul__(self, other):
        if isinstance(other, CurvatureOperator):
            return ComposedOperator(self, other)
        if isinstance(other, torch.Tensor):
            if other.dim() != 2 or other.shape[1] != self.P:
                raise ValueError(f"an operator of shape {self.shape} applied to a tensor of shape "
                                 f"{tuple(other.shape)}: must be (B, P={self.P})")
            return self._matvec(other)
        return NotImplemented

    @property
    def T(self) -> "CurvatureOperator":
        """The transpose: the operator itself when it is symmetric."""
        return self if self.symmetric else self._transpose()

    def repeat_rows(self, m: int) -> "CurvatureOperator":
        """The operator of B·m rows, each row of this one repeated m times in place (cached by m)."""
        if m == 1:
            return self
        if m not in self._repeated:
            self._repeated[m] = self._repeat_rows(m)
        return self._repeated[m]

    # ----- the dense builder -----------------------------------------------------------------
    def _columns(self, make, k: int, chunk: int) -> torch.Tensor:
        """(A_b u_j)_{b, j} for the k columns u_j that ``make(j, m)`` gives as (B, m, P) blocks
        (m at most max(1, chunk // B) columns per block), stacked as (B, k, P)."""
        B, P = self.batch, self.P
        per = max(1, chunk // B)
        out = []
        for j in range(0, k, per):
            m = min(per, k - j)
            U = make(j, m).reshape(B * m, P).contiguous()
            out.append(self.repeat_rows(m)._matvec(U).reshape(B, m, P))
        return torch.cat(out, dim=1)

    def matmat(self, V: torch.Tensor, chunk: int = DEFAULT_CHUNK) -> torch.Tensor:
        """A V (P, k) for an operator of one row (B = 1) and V (P, k) (any shape with P·k
        entries), up to ``chunk`` columns per application."""
        if self.batch != 1:
            raise ValueError(f"matmat is of an operator of one row; this one has {self.batch}")
        V = V.reshape(self.P, -1)
        cols = self._columns(lambda j, m: V[:, j:j + m].T[None], V.shape[1], chunk)
        return cols[0].T.contiguous()

    def dense(self, chunk: int = DEFAULT_CHUNK, symmetrize: bool | None = None) -> torch.Tensor:
        """The dense matrices (B, P, P), by applying the operator to the identity's columns, up
        to ``chunk`` of them per application (over all rows). ``symmetrize`` (default: when the
        operator is ``symmetric``): (A + Aᵀ)/2, which removes the round-off asymmetry of the
        products."""
        B, P = self.batch, self.P
        eye = torch.eye(P, dtype=self.dtype, device=self.device)
        rows = self._columns(lambda j, m: eye[j:j + m].expand(B, m, P), P, chunk)   # row j: A e_j
        A = rows.transpose(1, 2)
        if self.symmetric if symmetrize is None else symmetrize:
            return 0.5 * (A + rows)
        return A.contiguous()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(B={self.batch}, P={self.P}, {self.dtype}, {self.device})"


class ComposedOperator(CurvatureOperator):
    """A₁ A₂ ⋯ A_n row by row, applied right to left; nested compositions are flattened. It is
    symmetric when its factors are and read the same backwards (``P @ H @ P``)."""

    def __init__(self, *ops: CurvatureOperator):
        flat: list[CurvatureOperator] = []
        for op in ops:
            flat.extend(op.ops if isinstance(op, ComposedOperator) else [op])
        first = flat[0]
        for op in flat[1:]:
            if (op.batch, op.P) != (first.batch, first.P):
                raise ValueError(f"cannot compose operators of shapes {first.shape} and {op.shape}")
        super().__init__(first.batch, first.P, first.device, first.dtype)
        self.ops = flat
        self.symmetric = (all(op.symmetric for op in flat)
                          and all(a is b for a, b in zip(flat, reversed(flat))))

    def _matvec(self, v):
        for op in reversed(self.ops):
            v = op._matvec(v)
        return v

    def _repeat_rows(self, m):
        return ComposedOperator(*(op.repeat_rows(m) for op in self.ops))

    def _transpose(self):
        return ComposedOperator(*(op.T for op in reversed(self.ops)))


class _ModelOperator(CurvatureOperator):
    """An operator of a model at a batch θ (B, P), built by ``self._build()`` into a function
    v ↦ A v. A one-dimensional θ (P,) is one row whose operator takes and returns (P,) vectors."""

    symmetric = True

    def __init__(self, model: "DeepUFM", theta: torch.Tensor):
        self._squeeze = theta.dim() == 1
        theta = theta.detach()
        theta = theta.unsqueeze(0) if self._squeeze else theta
        super().__init__(theta.shape[0], theta.shape[1], theta.device, theta.dtype)
        self.model, self.theta = model, theta
        self._fn = self._build()

    def _build(self) -> Callable[[torch.Tensor], torch.Tensor]:
        raise NotImplementedError

    def __call__(self, v):
        if self._squeeze:
            return self._fn(v.unsqueeze(0))[0]
        return self._fn(v)

    def _matvec(self, v):
        return self._fn(v)

    def _repeat_rows(self, m):
        idx = torch.arange(self.batch, device=self.theta.device).repeat_interleave(m)
        return type(self)(self.model.for_rows(idx), self.theta.repeat_interleave(m, dim=0))


class HessianOperator(_ModelOperator):
    """v ↦ H(θ_b) v_b: the exact Hessian of a :class:`~landscape.core.model.DeepUFM` at each row
    of θ (:meth:`DeepUFM.hvp_operator` returns one; :meth:`DeepUFM._hvp_function` says how each
    model computes it)."""

    def _build(self):
        return self.model._hvp_function(self.theta)


class GaussNewtonOperator(_ModelOperator):
    """v ↦ G(θ_b) v_b, G = Jᵀ ∇²_Z g J + diag(λ): the Gauss–Newton part of the Hessian
    (:meth:`DeepUFM.gauss_newton_vp`); the forward pass at θ is computed once."""

    def _build(self):
        return self.model._gauss_newton_function(self.theta)


class GaugeProjectorOperator(CurvatureOperator):
    """v ↦ v − Tᵀ G⁺ T v per row: the orthogonal projector across the gauge orbit
    (:class:`landscape.core.gauge.GaugeProjector`, applied from its structure). Symmetric and
    idempotent. Built from a model and θ (B, P), or ``from_projector``."""

    symmetric = True

    def __init__(self, model: "DeepUFM", theta: torch.Tensor, rtol: float = 1e-10):
        self._init(GaugeProjector(model.spec, model.factors(theta), rtol=rtol), theta.shape[0], theta.shape[1],
                   theta.device, theta.dtype)

    def _init(self, proj: GaugeProjector, B, P, device, dtype):
        CurvatureOperator.__init__(self, B, P, device, dtype)
        self.projector = proj

    @classmethod
    def from_projector(cls, proj: GaugeProjector, P: int) -> "GaugeProjectorOperator":
        """The operator of an existing projector (of a batch of ``P`` parameters)."""
        out = cls.__new__(cls)
        out._init(proj, int(proj.Gplus.shape[0]), P, proj.Gplus.device, proj.Gplus.dtype)
        return out

    @property
    def rank(self) -> torch.Tensor:
        """The rank of the orbit's tangent space per row, (B,)."""
        return self.projector.rank

    def _matvec(self, v):
        return self.projector(v)

    def _repeat_rows(self, m):
        return GaugeProjectorOperator.from_projector(self.projector.repeat_rows(m), self.P)
