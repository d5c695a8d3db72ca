"""Where results live: the SQLite study database and the results folder.

* :mod:`.store`: :class:`StudyStore`, one SQLite file per study (schema versions, migrations).
* :mod:`.results`: file names, atomic and symlink-safe writes, the spectra export.
"""
from .results import DB_NAME, FILES
from .store import StoreError, StudyStore

__all__ = ["DB_NAME", "FILES", "StoreError", "StudyStore"]
