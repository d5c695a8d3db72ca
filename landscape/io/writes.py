"""One safe way out for an exported file: :func:`write_named`, shared by the export registry
(:mod:`landscape.io.export`) and the PATHSAMPLE writer (:mod:`landscape.io.pathsample`), which the
registry loads only when that format is asked for."""
from __future__ import annotations

import errno
from pathlib import Path

from .results import OutputError, atomic_write_bytes


def write_named(path: str | Path, data: bytes) -> None:
    """:func:`~landscape.io.results.atomic_write_bytes`, a failure (a full disk, a read-only folder)
    raised as one :class:`OutputError` line naming ``path``, never the temporary file the atomic
    write goes through."""
    try:
        atomic_write_bytes(path, data)
    except OSError as exc:
        full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
        raise OutputError(f"cannot write {path}: {getattr(exc, 'reason', None) or exc.strerror or exc}"
                          + ("; the disk is full: free some space and export again (the study is unchanged)"
                             if full else "")) from None
