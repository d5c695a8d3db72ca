"""The zero threshold of curvature, declared once for every layer that counts Hessian eigenvalues.

An eigenvalue μ counts as negative below −τ and as zero within ±τ, with τ = ``tau_rel``·min_l λ_l
(MODEL.md §6: the origin's Hessian is λI, and the smallest genuine curvature at the DNC points is
≈ λ, so a fixed fraction of the smallest weight decay separates genuine modes from the symmetry
zero modes by orders of magnitude). The point analysis (:mod:`landscape.analysis.hessian`), the
descents' negative-curvature test (:class:`landscape.engines.stage.StageConfig`), min-mode
following (:mod:`landscape.engines.minmode`) and continuation (:mod:`landscape.continuation`) all
take their default ``tau_rel`` from here. Torch-free.
"""
from __future__ import annotations

#: Default ``tau_rel``: τ = DEFAULT_TAU_REL · min_l λ_l (module docstring).
DEFAULT_TAU_REL = 1e-3
