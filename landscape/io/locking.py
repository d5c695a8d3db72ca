"""One writer per database: an exclusive, non-blocking ``flock`` on the database file.

The study store (:meth:`landscape.io.store.StudyStore._lock`) and the λ = 0 store
(:meth:`landscape.io.lambda0_store.Lambda0Store._lock`) take the same lock; they differ in how they
open the file, the error class they raise, and which files they refuse as symbolic links here
(the λ = 0 store checks its file before creating it, with its own message).
"""
from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path
from typing import Iterable


def lock_database(path: Path, error: type[Exception], what: str, *, flags: int = os.O_RDONLY,
                  no_links: Iterable[Path] = (), wrap_open: bool = False) -> int:
    """A descriptor of ``path`` (opened with ``flags``, never through a symbolic link) holding an
    exclusive advisory lock for this writer; closing it releases the lock.

    ``what`` names the database in the messages ("study": "another process is writing this
    study; …"). Raises ``error`` when another process holds the lock, and when one of the files
    ``no_links`` (e.g. the database and its WAL and shared-memory files) is a symbolic link,
    through which SQLite would write outside the folder. ``wrap_open``: a failure to open the
    file is ``error`` ("cannot be opened for writing") too, else the ``OSError`` itself. Any other
    failure of ``flock`` closes the descriptor and is raised as it is."""
    for f in no_links:
        if f.is_symlink():
            raise error(f"{f} is a symbolic link: refusing to write a {what} through it "
                        "(copy the real file into the folder instead)")
    try:
        fd = os.open(path, flags | getattr(os, "O_NOFOLLOW", 0))
    except OSError as e:
        if not wrap_open:
            raise
        raise error(f"{path} cannot be opened for writing ({e.strerror or e})") from None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
        os.close(fd)
        if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise error(f"{path}: another process is writing this {what}; wait for it to finish "
                        "(or stop it) and run again") from None
        raise
    return fd
