"""Typed engine state: batch fields with a leading dimension B, and shared scalar fields.

Every engine advances an :class:`EngineState` (or a subclass with its own fields). A field is a
*batch* field (a tensor whose first dimension is the trajectory, sliced by :meth:`take`) unless
it is declared with ``scalar_field()`` (shared by every row, e.g. L-BFGS's iteration counter).
The driver only ever calls :meth:`take` and :meth:`merge`, so an engine's state is a pure value:
a run can be stopped, checkpointed and replayed from it.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace

import torch


def scalar_field(default=None):
    """A state field shared by all rows (not sliced by :meth:`EngineState.take`)."""
    return field(default=default, metadata={"scalar": True})


@dataclass
class EngineState:
    """What every engine carries, per row: ``theta`` (B, P), ``loss`` (B,), ``grad`` (B, P), and
    the evaluation counters ``n_grad`` and ``n_hvp`` (B,) int64."""

    theta: torch.Tensor
    loss: torch.Tensor
    grad: torch.Tensor
    n_grad: torch.Tensor
    n_hvp: torch.Tensor

    def _batch_fields(self):
        return [f.name for f in fields(self) if not f.metadata.get("scalar")]

    def take(self, rows: torch.Tensor) -> "EngineState":
        """The state of the rows ``rows`` (an index tensor), scalar fields unchanged."""
        return replace(self, **{k: getattr(self, k)[rows] for k in self._batch_fields()})

    def merge(self, mask: torch.Tensor, new: "EngineState") -> "EngineState":
        """Rows where ``mask`` (B,) holds from ``new``, the others from ``self``; scalar fields
        from ``new``. Used to freeze rows that have stopped without a host synchronisation."""
        out = {}
        for k in self._batch_fields():
            a, b = getattr(self, k), getattr(new, k)
            m = mask.reshape(mask.shape + (1,) * (a.dim() - 1))
            out[k] = torch.where(m, b, a)
        return replace(new, **out)

    def cat(self, other: "EngineState") -> "EngineState":
        """Rows of ``self`` followed by the rows of ``other`` (same type); scalar fields from
        ``self`` (new rows join the running ones: e.g. L-BFGS's shared slot counter)."""
        return replace(self, **{k: torch.cat([getattr(self, k), getattr(other, k)]) for k in self._batch_fields()})

    def stop_measure(self) -> torch.Tensor:
        """(B,) what the driver compares with the stage's ``tol`` (and watches for stalling and
        divergence): ‖∇L‖ here; an engine whose convergence asks more (min-mode following: one
        negative mode) overrides it."""
        return self.grad.norm(dim=1)

    def stuck(self) -> torch.Tensor | None:
        """(B,) bool: rows the engine itself cannot advance (the driver stops them ``stalled``);
        None: the driver's stall window alone decides."""
        return None

    def outputs(self) -> dict:
        """Per-row values (name → (B,) tensor) the driver records beside θ when a row stops
        (:attr:`~landscape.engines.trajectories.TrajectoryResults.extras`)."""
        return {}

    @property
    def batch_size(self) -> int:
        return int(self.theta.shape[0])
