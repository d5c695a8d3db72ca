"""Where results live: the SQLite study database and the results folder.

* :mod:`.store`: :class:`StudyStore`, one SQLite file per study (schema versions, migrations).
* :mod:`.records`: the typed records the store accepts and returns (:class:`PointRecord`, …).
* :mod:`.results`: file names, atomic and symlink-safe writes, the spectra export.
* :mod:`.lambda0_store`: the database a λ = 0 study commits its batches of starts to.
* :mod:`.lambda0_results`: a λ = 0 study's records, summary and finished folder read back, every
  value checked (torch-free).
"""
from .._lazy import lazy_getattr

_RECORDS = ("PointRecord", "TrajectoryRecord", "EdgeRecord", "TransitionStateRecord", "SpectrumRecord",
            "ContinuationRecord")
__all__ = ["DB_NAME", "FILES", "StoreError", "StudyStore", *_RECORDS]
_HOME = {"DB_NAME": ".results", "FILES": ".results", "StoreError": ".store", "StudyStore": ".store",
         **{name: ".records" for name in _RECORDS}}
__getattr__ = lazy_getattr(__name__, _HOME, globals())  # loaded on first use (torch only where needed)
