"""The few array operations the objective's gradient is written in, over torch or numpy.

:meth:`landscape.core.model.DeepUFM.loss_and_grad` of the linear model is written once, over one
of two namespaces with the same methods: :data:`TORCH` (torch tensors on any device, batched
products through :mod:`landscape.core.smallmm`) and :data:`NUMPY` (numpy arrays). On the CPU,
where every product of the gradient is tiny (fewer than
:data:`~landscape.core.smallmm.CPU_SMALL_PRODUCT` multiply-adds, the default study's 4 × 8 × 8),
the cost of a torch call is mostly its dispatch: measured on 2 cores for K=4, d=8, N=8, L=3,
float64, one gradient took 298 µs in torch against 100 µs in numpy at B = 4, 315 against 111 µs
at B = 8, 681 against 278 µs at B = 64 and 1,441 against 1,215 µs at B = 384, with the same numbers
up to round-off (numpy's stacked ``matmul`` calls one dgemm per matrix, without ATen's scalar loop
for small products). The model runs the numpy form on views of the same memory
(``Tensor.numpy()``, ``torch.from_numpy``: no copies).

Shapes follow the model: factors (B, r, c), logits (B, K, N); every reduction is per row b.
"""
from __future__ import annotations

import numpy as np
import torch

from .smallmm import baddbmm as _baddbmm, bmm as _bmm


class _Ops:
    """What both namespaces share; a subclass names its module (``xp``) and its keywords of a
    reduction over axis 1, kept (``_over_classes``: ``dim``/``keepdim`` in torch,
    ``axis``/``keepdims`` in numpy)."""

    xp = None
    _over_classes = {"axis": 1, "keepdims": True}

    def exp(self, X):
        return self.xp.exp(X)

    def log(self, X):
        return self.xp.log(X)

    @staticmethod
    def t(X):
        """The transpose of every matrix of a (B, r, c) batch, a view (B, c, r)."""
        return X.swapaxes(1, 2)

    def colmax(self, Z):
        """max over axis 1 (the classes), kept: (B, 1, N)."""
        return self.xp.amax(Z, **self._over_classes)

    def colsum(self, Z):
        """Sum over axis 1, kept: (B, 1, N)."""
        return Z.sum(**self._over_classes)

    @staticmethod
    def rowsum(X):
        """Sum of every entry but the batch axis: (B,)."""
        return X.reshape(X.shape[0], -1).sum(1)

    @staticmethod
    def decay_add(R, F, lam):
        """R + λ F for a float or a (B, 1, 1) per-row λ."""
        return R + lam * F


class TorchOps(_Ops):
    """The operations on torch tensors (batched products through :mod:`.smallmm`)."""

    xp = torch
    _over_classes = {"dim": 1, "keepdim": True}
    mm = staticmethod(_bmm)

    @staticmethod
    def decay_mm(F, A, X, lam):
        """λ F + A X, (B, r, c), for a float λ (one ``baddbmm``) or a (B, 1, 1) per-row λ."""
        if isinstance(lam, float):
            return _baddbmm(F, A, X, beta=lam)
        return _baddbmm(F * lam, A, X)

    @staticmethod
    def decay_add(R, F, lam):
        return torch.add(R, F, alpha=lam) if isinstance(lam, float) else R + F * lam

    @staticmethod
    def sqnorm(X):
        """‖X_b‖² over every entry of row b, (B,)."""
        return torch.linalg.vector_norm(X.reshape(X.shape[0], -1), dim=1) ** 2

    @staticmethod
    def flatten(parts):
        """(B, r_i, c_i) parts to one (B, Σ r_i c_i) array, row-major, in order."""
        B = parts[0].shape[0]
        return torch.cat([f.reshape(B, -1) for f in parts], dim=1)

    @staticmethod
    def zeros_rows(X):
        """Zeros (B,) of X's dtype and device."""
        return torch.zeros(X.shape[0], dtype=X.dtype, device=X.device)


class NumpyOps(_Ops):
    """The same operations on numpy arrays."""

    xp = np
    mm = staticmethod(np.matmul)

    @staticmethod
    def decay_mm(F, A, X, lam):
        out = np.matmul(A, X)
        out += lam * F
        return out

    @staticmethod
    def sqnorm(X):
        X = X.reshape(X.shape[0], -1)
        return np.einsum("ij,ij->i", X, X)

    @staticmethod
    def flatten(parts):
        return np.concatenate([f.reshape(parts[0].shape[0], -1) for f in parts], axis=1)

    @staticmethod
    def zeros_rows(X):
        return np.zeros(X.shape[0], dtype=X.dtype)


TORCH = TorchOps()
NUMPY = NumpyOps()
