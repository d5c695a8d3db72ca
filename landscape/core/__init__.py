"""The objective and what it needs: validation, the model, random starts, batched Krylov methods.

* :mod:`.validate`: every check of a user-given number, once (:class:`SpecError`).
* :mod:`.thresholds`: the zero threshold of curvature (``tau_rel``), once for every layer.
* :mod:`.model`: :class:`ModelSpec` and :class:`DeepUFM` (batched loss, gradient, HVPs).
* :mod:`.init`: seeded random starts.
* :mod:`.linalg`: batched MINRES and Lanczos.
* :mod:`.arrayops`: the operations the linear model's gradient and HVP are written in, over torch
  or numpy (numpy where every product is tiny); :mod:`.smallmm`: tiny batched products in torch.
"""
from .._lazy import lazy_getattr

__all__ = ["DeepUFM", "ModelSpec", "SpecError"]
_HOME = {"DeepUFM": ".model", "ModelSpec": ".model", "SpecError": ".validate"}
__getattr__ = lazy_getattr(__name__, _HOME, globals())  # loaded on first use (torch only where needed)
