"""landscape: explore the loss landscape of deep unconstrained feature models (deep UFMs).

Batched trajectories from random starts, certified critical points, Hessian and collapse analysis,
deduplication modulo symmetry, basin fractions with intervals, the basin graph with transition
states, and continuation of critical points in λ and width.

The package follows the data, each layer importing only layers before it (checked by
``tests/test_layers.py``): :mod:`landscape.core` (model, starts, validation, Krylov methods) →
:mod:`landscape.engines` (batched trajectories) and :mod:`landscape.analysis` (what a point is) →
:mod:`landscape.continuation` (critical points followed in λ and width) →
:mod:`landscape.io` (database, results folder, exports) → :mod:`landscape.study` (studies, sweeps,
graphs) → :mod:`landscape.viz` (figures, reports) → :mod:`landscape.net` (real networks handed to
the UFM) → :mod:`landscape.cli`. The names most
scripts need are importable from here (loaded on first use, so ``import landscape`` is cheap)::

    from landscape import ModelSpec, DeepUFM, load_study, run_study, load_results, analyse_point

``run_study`` (:mod:`landscape.viz.pipeline`) writes the results folder ``landscape run`` writes and
returns a :class:`~landscape.study.result.StudyResult`; ``load_results`` opens a finished folder.
For a λ = 0 study (no weight decay) both give a :class:`~landscape.study.lambda0.Lambda0Result`.
"""
from __future__ import annotations

from ._lazy import lazy_getattr

__version__ = "0.2.0"

#: Public name → module that defines it.
_EXPORTS = {
    "SpecError": "landscape.core.validate",
    "ModelSpec": "landscape.core.model", "DeepUFM": "landscape.core.model",
    "InitScheme": "landscape.core.init", "draw_starts": "landscape.core.init",
    "StageConfig": "landscape.engines", "make_stage": "landscape.engines", "run_engine": "landscape.engines",
    "run_pipeline": "landscape.engines", "TrajectoryResults": "landscape.engines",
    "analyse_point": "landscape.analysis.point", "PointAnalysis": "landscape.analysis.point",
    "AnalysisSettings": "landscape.analysis.settings", "analyse_hessian": "landscape.analysis.hessian",
    "analyse_structure": "landscape.analysis.structure", "theory": "landscape.analysis.theory",
    "StudyConfig": "landscape.study.config", "load_study": "landscape.study.config", "presets": "landscape.study.config",
    "run_study": "landscape.viz.pipeline", "ReportInterrupted": "landscape.viz.pipeline",
    "StudyResult": "landscape.study.result", "summarise": "landscape.study.summary",
    "Lambda0Result": "landscape.study.lambda0", "Lambda0Direction": "landscape.io.lambda0_results",
    "load_sweep": "landscape.study.sweep", "run_sweep": "landscape.study.sweep",
    "StudyStore": "landscape.io.store", "StoreError": "landscape.io.store",
    **{name: "landscape.io.records" for name in ("PointRecord", "TrajectoryRecord", "EdgeRecord",
                                                  "TransitionStateRecord", "SpectrumRecord", "ContinuationRecord")},
    "load_results": "landscape.viz.report", "write_report": "landscape.viz.report", "figures": "landscape.viz.figures",
}

__all__ = sorted(_EXPORTS) + ["__version__"]


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())


def __dir__():
    return __all__
