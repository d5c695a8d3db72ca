"""The torch side of a :class:`~landscape.core.spec.ModelSpec`: the torch dtype of each dtype name
and one parameter set θ as a float64 tensor.

:mod:`landscape.core.spec` stays torch-free (a study file is validated without importing torch)
and imports this only inside the two methods that need torch (:meth:`ModelSpec.split`,
:attr:`ModelSpec.torch_dtype`); :mod:`landscape.core.model` re-exports both names.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:   # annotations only: this module never imports the spec at run time
    from .spec import ModelSpec

DTYPES = {"float64": torch.float64, "float32": torch.float32}


def as_theta64(spec: ModelSpec, theta) -> torch.Tensor:
    """One parameter set (a torch tensor or array-like with P entries) as a detached float64
    CPU tensor of shape (P,); a wrong length is a ValueError naming P."""
    th = theta.detach() if torch.is_tensor(theta) else torch.from_numpy(np.asarray(theta, dtype=np.float64))
    th = th.to(dtype=torch.float64, device="cpu").reshape(-1)
    if th.numel() != spec.P:
        raise ValueError(f"theta has {th.numel()} entries: the spec needs P={spec.P}")
    return th
