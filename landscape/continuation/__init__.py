"""Following critical points as the weight decay or the width changes (``landscape continue``).

**In λ** (:func:`continue_in_lambda`): a critical point θ*(p) solves F(θ, p) = ∇L(θ; p) = 0, p the
weight decay (or one part of it, or the ratio λ_H/λ_W); pseudo-arclength continuation (Keller
1977) follows the curve (θ(s), p(s)) through folds, every corrected point certified, with the
Hessian index and nullity net of the symmetry zero modes at every step and the folds and index
changes located at the exact crossing. **In width** (:func:`continue_in_width`): a critical point
embedded by zero rows and columns stays critical at every larger width, and is re-analysed there.

* :mod:`.settings`: :class:`ContinuationSettings`, the step control and tolerances (validated,
  torch-free).
* :mod:`.parameters`: the continuation parameters (:data:`PARAMS`) and the weight decay each sets.
* :mod:`.follower`: the predictor-corrector (the system, tangents, the bordered corrector with its
  phase condition, the test that a step continues the branch).
* :mod:`.events`: folds and index changes, located by regula falsi.
* :mod:`.branch`: :class:`Branch`, the output (step records, events, the end reason).
* :mod:`.arclength`: :func:`continue_in_lambda`, the loop and its stopping rules.
* :mod:`.width`: :func:`embed_width` and :func:`continue_in_width`.

The λ → 0 limit of a linear CE point (continuation down in λ, then the λ = 0 polish of its
direction) needs the λ = 0 study's decision, so it lives a floor up:
:func:`landscape.study.lambda0_limit.continue_to_limit`.
"""
from .._lazy import lazy_getattr

__all__ = ["Branch", "ContinuationSettings", "PARAMS", "continue_in_lambda", "continue_in_width", "embed_width",
           "lambdas_at", "param_value", "spec_at"]
_HOME = {"ContinuationSettings": ".settings", "PARAMS": ".parameters", "lambdas_at": ".parameters",
         "param_value": ".parameters", "spec_at": ".parameters", "Branch": ".branch",
         "continue_in_lambda": ".arclength", "continue_in_width": ".width", "embed_width": ".width"}
__getattr__ = lazy_getattr(__name__, _HOME, globals())  # loaded on first use (torch only where needed)
