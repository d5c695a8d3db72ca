"""Trajectory engines, batched over B trajectories: typed state, one module per engine, the driver.

* :mod:`.state`: :class:`EngineState` (batch fields with leading dimension B, scalar fields,
  :meth:`~EngineState.take`).
* :mod:`.gd`, :mod:`.flow`, :mod:`.newton`, :mod:`.lbfgs`: each an options dataclass and an
  (init, step) pair over its state.
* :mod:`.stage`: :class:`StageConfig` (engine, its options, the stopping rules) and the
  :data:`ENGINES` registry.
* :mod:`.driver`: :func:`run_engine` and :func:`run_pipeline` (active sets, stop reasons,
  negative-curvature tests before a descent converges or hands over).
* :mod:`.curvature`: the batched negative-curvature witness.
* :mod:`.outcomes`: :class:`Outcome` and :class:`Detail`, every stop reason and detail with its message.
"""
from .._lazy import lazy_getattr

__all__ = ["Detail", "ENGINES", "EngineState", "Outcome", "STOP_REASONS", "StageConfig", "TrajectoryResults", "make_stage", "run_engine",
           "run_pipeline"]
_HOME = {"run_engine": ".driver", "run_pipeline": ".driver", "STOP_REASONS": ".outcomes", "Outcome": ".outcomes", "Detail": ".outcomes",
         "TrajectoryResults": ".trajectories", "ENGINES": ".stage", "StageConfig": ".stage", "make_stage": ".stage",
         "EngineState": ".state"}
__getattr__ = lazy_getattr(__name__, _HOME, globals())  # loaded on first use (torch only where needed)
