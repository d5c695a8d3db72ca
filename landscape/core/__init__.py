"""The objective and what it needs: validation, the model, random starts, batched Krylov methods.

* :mod:`.validate`: every check of a user-given number, once (:class:`SpecError`).
* :mod:`.model`: :class:`ModelSpec` and :class:`DeepUFM` (batched loss, gradient, HVPs).
* :mod:`.init`: seeded random starts.
* :mod:`.linalg`: batched MINRES and Lanczos.
"""
from .model import DeepUFM, ModelSpec
from .validate import SpecError

__all__ = ["DeepUFM", "ModelSpec", "SpecError"]
