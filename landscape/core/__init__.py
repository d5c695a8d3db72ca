"""The objective and what it needs: validation, the model, random starts, batched Krylov methods.

* :mod:`.validate`: every check of a user-given number, once (:class:`SpecError`).
* :mod:`.model`: :class:`ModelSpec` and :class:`DeepUFM` (batched loss, gradient, HVPs).
* :mod:`.init`: seeded random starts.
* :mod:`.linalg`: batched MINRES and Lanczos.
"""
import importlib

__all__ = ["DeepUFM", "ModelSpec", "SpecError"]
_HOME = {"DeepUFM": ".model", "ModelSpec": ".model", "SpecError": ".validate"}


def __getattr__(name):  # loaded on first use: `landscape.core.validate` must not import torch
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
