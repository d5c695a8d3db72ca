"""landscape: explore the loss landscape of deep unconstrained feature models (deep UFMs).

Batched trajectories from random starts, certified critical points, Hessian and collapse analysis,
deduplication modulo symmetry, basin fractions with intervals and the basin graph.
"""
from .model import DeepUFM, ModelSpec, SpecError

__all__ = ["DeepUFM", "ModelSpec", "SpecError"]
__version__ = "0.1.0"
