"""What a point is: symmetry, Hessian spectra, structure and collapse, closed forms, deduplication.

* :mod:`.symmetry`: gauge tangents, the symmetry space, group actions (MODEL.md §5).
* :mod:`.hessian`: dense and block-Lanczos spectra net of symmetry zero modes; index, nullity, type.
* :mod:`.structure`: singular values, rank patterns, DNC metrics, collapse labels.
* :mod:`.theory`: closed forms of MODEL.md §6, the structure catalogue, Theorem 1.
* :mod:`.settings`: every analysis threshold, once.
* :mod:`.point`: :func:`analyse_point`, the one entry point.
* :mod:`.dedup`: invariant fingerprints, merging modulo symmetry.
"""
from .._lazy import lazy_getattr

__all__ = ["AnalysisSettings", "LEAF_KINDS", "POINT_KINDS", "PointAnalysis", "analyse_point"]
_HOME = {"AnalysisSettings": ".settings", "LEAF_KINDS": ".point", "POINT_KINDS": ".point",
         "PointAnalysis": ".point", "analyse_point": ".point"}
__getattr__ = lazy_getattr(__name__, _HOME, globals())  # loaded on first use (torch only where needed)
