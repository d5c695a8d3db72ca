"""One writer per database file (:func:`landscape.io.locking.lock_database`): the study store's and
the λ = 0 store's lock, each with its own error class and messages."""
import fcntl
import os
import re

import pytest

from landscape.io.lambda0_store import Lambda0Store, Lambda0StoreError
from landscape.io.locking import lock_database
from landscape.io.store import StoreError, StudyStore


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "x.sqlite"
    path.write_bytes(b"")
    return path


@pytest.mark.parametrize("lock, error, what", [(StudyStore._lock, StoreError, "study"),
                                               (Lambda0Store._lock, Lambda0StoreError, "λ = 0 study")])
def test_a_second_writer_is_refused_until_the_first_closes(db, lock, error, what):
    fd = lock(db)
    try:
        with pytest.raises(error, match=f"^{re.escape(str(db))}: another process is writing this {what}; wait for it to finish "
                                        r"\(or stop it\) and run again$"):
            lock(db)
    finally:
        os.close(fd)
    os.close(lock(db))   # released by closing


def test_the_study_store_refuses_a_linked_database_or_wal_and_opens_read_only(db, tmp_path):
    real = tmp_path / "real"
    real.write_bytes(b"")
    wal = db.with_name(db.name + "-wal")
    wal.symlink_to(real)
    with pytest.raises(StoreError, match=f"^{re.escape(str(wal))} is a symbolic link: refusing to write a study through it"):
        StudyStore._lock(db)
    wal.unlink()
    fd = StudyStore._lock(db)
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDONLY
    finally:
        os.close(fd)


def test_the_lambda0_store_says_why_it_cannot_open_and_never_follows_a_link(tmp_path):
    with pytest.raises(Lambda0StoreError, match="cannot be opened for writing"):
        Lambda0Store._lock(tmp_path / "absent.sqlite")
    link = tmp_path / "link.sqlite"
    link.symlink_to(tmp_path / "absent.sqlite")
    (tmp_path / "absent.sqlite").write_bytes(b"")
    with pytest.raises(Lambda0StoreError, match="cannot be opened for writing"):   # O_NOFOLLOW
        Lambda0Store._lock(link)
    fd = Lambda0Store._lock(tmp_path / "absent.sqlite")   # read-write
    try:
        assert fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE == os.O_RDWR
    finally:
        os.close(fd)
    with pytest.raises(FileNotFoundError):   # without wrap_open, the OSError itself
        lock_database(tmp_path / "nothing", StoreError, "study")
