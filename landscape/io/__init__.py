"""Where results live: the SQLite study database and the results folder.

* :mod:`.store`: :class:`StudyStore`, one SQLite file per study (schema versions, migrations).
* :mod:`.results`: file names, atomic and symlink-safe writes, the spectra export.
"""
import importlib

__all__ = ["DB_NAME", "FILES", "StoreError", "StudyStore"]
_HOME = {"DB_NAME": ".results", "FILES": ".results", "StoreError": ".store", "StudyStore": ".store"}


def __getattr__(name):  # loaded on first use, so the command line answers before torch is imported
    if name in _HOME:
        return getattr(importlib.import_module(_HOME[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
