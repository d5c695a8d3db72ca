"""Batched matrix products that stay fast when the matrices are tiny (the default study's 8 × 8).

On the CPU, ATen multiplies a batch of matrices with a scalar triple loop when the product has
fewer than :data:`CPU_SMALL_PRODUCT` multiply-adds (m·k·n, ``bmm_out_or_baddbmm_`` in
``aten/src/ATen/native/LinearAlgebra.cpp``) and with MKL's batched gemm otherwise. At the
default size (K=4, d=8, N=8: every product 256 multiply-adds) the loop is 3–4× slower than the
gemm path on the larger 8 × 8 × 8 product (measured on 2 cores, B = 384, float64: 220 µs
against 60–80 µs). :func:`bmm` pads the rows of ``A`` with zeros up to that size, which sends
the product to the gemm path, and returns the first m rows (only for batches large
enough that the padding's own cost, ~12 µs a call, is repaid: :data:`PADDING_PAYS`): the same numbers up to the
summation order of the kernel (round-off). Elsewhere (a GPU, or a product at or above the
threshold) it is ``torch.bmm`` itself. Differentiable (autograd goes through the padding, and
the padded products of the backward pass are large enough as well).

Shapes: ``A`` (B, m, k), ``X`` (B, k, n), result (B, m, n); any strides.
"""
from __future__ import annotations

import torch

#: ATen's threshold (multiply-adds per product) below which a CPU batched product is a scalar loop.
CPU_SMALL_PRODUCT = 400
#: Multiply-adds of the whole batch (B·m·k·n) below which the loop is cheaper than padding
#: (measured at 4 × 8 × 8: 47 µs looped against 30 µs padded at B = 64, 22 against 25 at B = 32).
PADDING_PAYS = 16384


def _padded_rows(A: torch.Tensor, X: torch.Tensor) -> int:
    """Rows to give ``A`` (0: none) so that its product with ``X`` takes the gemm path."""
    m, k = A.shape[-2], A.shape[-1]
    n = X.shape[-1]
    if (A.device.type != "cpu" or m * k * n >= CPU_SMALL_PRODUCT or k * n == 0
            or A.shape[0] * m * k * n < PADDING_PAYS):
        return 0
    return -(-CPU_SMALL_PRODUCT // (k * n)) - m


def bmm(A: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
    """``torch.bmm(A, X)`` (B, m, n), through the gemm path where ATen would loop (module docstring)."""
    extra = _padded_rows(A, X)
    if not extra:
        return torch.bmm(A, X)
    m = A.shape[1]
    Ap = torch.cat([A, A.new_zeros(A.shape[0], extra, A.shape[2])], dim=1)
    return torch.bmm(Ap, X)[:, :m]


def baddbmm(C: torch.Tensor, A: torch.Tensor, X: torch.Tensor, beta: float = 1.0) -> torch.Tensor:
    """``torch.baddbmm(C, A, X, beta=beta)`` = β·C + A X, (B, m, n), through the gemm path where
    ATen would loop."""
    if not _padded_rows(A, X):
        return torch.baddbmm(C, A, X, beta=beta)
    return torch.add(bmm(A, X), C, alpha=beta)
