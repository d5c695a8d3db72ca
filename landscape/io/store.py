"""SQLite study database: one file per study (``DIR/study.sqlite``), stdlib :mod:`sqlite3` only.

The database holds everything a study needs to be resumed, re-analysed and reported:

* ``config``: the full study configuration as JSON (exact model spec, init scheme, engine and
  every tolerance), plus convenience columns (K, n, d, L, activation, loss, λ convention).
* ``units``: one row per committed unit of work (a chunk of trajectories). A unit's
  trajectories, its new points and the unit row are written in **one transaction**, so a unit is
  either wholly visible or not at all; a study killed at any moment resumes from
  :meth:`StudyStore.completed_indices`.
* ``trajectories``: one row per trajectory, keyed by its study index (PRIMARY KEY, so a
  trajectory can never be stored twice).
* ``points``: distinct critical points (modulo symmetry; see :mod:`landscape.dedup`), with the
  flat float64 parameters θ (P,) stored as raw little-endian bytes (``numpy.tobytes``, never
  pickle) together with their dtype and shape, an optional spectrum stored the same way, the
  invariant fingerprint and the analysis results as JSON.
* ``edges``: saddle connections, one row per (saddle, unstable direction, sign) descent.
* ``transition_states`` (schema 2): index-1 saddles joining two minima, found by the
  double-ended search (:mod:`landscape.study.connect`), with both barriers and the path.
* ``spectra`` (schema 2): the structured Hessian spectrum of a point (``landscape spectrum``).
* ``continuation`` (schema 2): branches followed in λ or width (``landscape continue``).

Durability: WAL journal, ``synchronous=FULL``, foreign keys on, and a WAL checkpoint after every
committed unit, so ``study.sqlite`` copied alone at any moment holds every committed unit (the
WAL only ever holds the transaction in flight). One writer at a time: a writing store holds an
exclusive ``flock`` on the database file, and a second writer gets "another process is writing
this study". Read-only opening (:meth:`StudyStore.open` with ``readonly=True``) works on a
read-only mount and never writes. The schema version is
``PRAGMA user_version``; ``PRAGMA application_id`` marks the file as a landscape study.
Opening applies the migrations in :data:`MIGRATIONS` (version v → v+1, one transaction each);
a file from a newer schema, a file that is not a SQLite database, a SQLite database of another
application, a corrupt file or a missing file raises :class:`StoreError` with a clear message.

Float columns: SQLite stores NaN as NULL, so a diverged trajectory's loss reads back as None.
"""
from __future__ import annotations

import fcntl
import json
import math
import os
import sqlite3
import time
import urllib.parse
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from ..analysis.point import POINT_KINDS as ANALYSED_KINDS
from ..core.jsonsafe import to_json
from ..core.model import ModelSpec
from .records import (ContinuationRecord, EdgeRecord, PointRecord, SpectrumRecord, TrajectoryRecord,
                      TransitionStateRecord)
from .results import DB_NAME

#: ``PRAGMA application_id`` of a landscape study database ("LNDS").
APPLICATION_ID = 0x4C4E4453
#: Schema version written by this code.
SCHEMA_VERSION = 2

#: Stored point kinds: the analysed kinds, and ``unclassified`` (stored before analysis).
POINT_KINDS = ANALYSED_KINDS + ("unclassified",)

_SCHEMA_V1 = """
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE config (
    id                 INTEGER PRIMARY KEY CHECK (id = 1),
    json               TEXT NOT NULL,
    K                  INTEGER,
    n                  INTEGER,
    d                  INTEGER,
    L                  INTEGER,
    activation         TEXT,
    loss               TEXT,
    lambda_convention  TEXT,
    created_at         REAL NOT NULL
);
CREATE TABLE units (
    unit          INTEGER PRIMARY KEY,
    n_trajectories INTEGER NOT NULL,
    wall_time     REAL,
    committed_at  REAL NOT NULL
);
CREATE TABLE points (
    id             INTEGER PRIMARY KEY,
    kind           TEXT NOT NULL,
    label          TEXT,
    loss           REAL NOT NULL,
    grad_norm      REAL NOT NULL,
    hessian_index  INTEGER,
    fingerprint    TEXT NOT NULL,
    params         BLOB NOT NULL,
    params_dtype   TEXT NOT NULL,
    params_shape   TEXT NOT NULL,
    spectrum       BLOB,
    spectrum_dtype TEXT,
    spectrum_shape TEXT,
    analysis       TEXT,
    unit           INTEGER REFERENCES units(unit)
);
CREATE TABLE trajectories (
    idx          INTEGER PRIMARY KEY,
    unit         INTEGER NOT NULL REFERENCES units(unit),
    seed         INTEGER NOT NULL,
    stop_reason  TEXT NOT NULL,
    certified    INTEGER NOT NULL CHECK (certified IN (0, 1)),
    iterations   INTEGER,
    n_grad       INTEGER,
    n_hvp        INTEGER,
    wall_time    REAL,
    loss         REAL,
    grad_norm    REAL,
    engine       TEXT,
    point_id     INTEGER REFERENCES points(id),
    CHECK (certified = 0 OR point_id IS NOT NULL)
);
CREATE INDEX trajectories_point ON trajectories(point_id);
CREATE TABLE edges (
    saddle_id   INTEGER NOT NULL REFERENCES points(id),
    direction   INTEGER NOT NULL,
    sign        INTEGER NOT NULL CHECK (sign IN (-1, 1)),
    target_id   INTEGER REFERENCES points(id),
    eigenvalue  REAL,
    eps         REAL,
    barrier     REAL,
    stop_reason TEXT,
    PRIMARY KEY (saddle_id, direction, sign)
);
"""


_SCHEMA_V2 = """
ALTER TABLE points ADD COLUMN unstable BLOB;
ALTER TABLE points ADD COLUMN unstable_shape TEXT;
ALTER TABLE points ADD COLUMN unstable_values TEXT;
CREATE TABLE transition_states (
    saddle_id     INTEGER PRIMARY KEY REFERENCES points(id),
    min1_id       INTEGER NOT NULL REFERENCES points(id),
    min2_id       INTEGER NOT NULL REFERENCES points(id),
    barrier1      REAL NOT NULL,
    barrier2      REAL NOT NULL,
    path_max_loss REAL,
    path_length   REAL,
    pair_a        INTEGER,
    pair_b        INTEGER,
    json          TEXT
);
CREATE TABLE spectra (
    point_id   INTEGER PRIMARY KEY REFERENCES points(id),
    json       TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE continuation (
    id         INTEGER PRIMARY KEY,
    param      TEXT NOT NULL,
    json       TEXT NOT NULL,
    created_at REAL NOT NULL
)
"""


class StoreError(RuntimeError):
    """The study database cannot be opened or the requested write would corrupt it."""


def _statements(script: str) -> list[str]:
    """Split a schema script of plain DDL statements (no ';' inside strings) into statements."""
    return [s.strip() for s in script.split(";") if s.strip()]


def _migrate_0_to_1(con: sqlite3.Connection) -> None:
    """Create the version-1 schema in an empty database."""
    for stmt in _statements(_SCHEMA_V1):
        con.execute(stmt)


def _migrate_1_to_2(con: sqlite3.Connection) -> None:
    """Unstable eigenvectors of saddles; transition states, spectra and continuation tables."""
    for stmt in _statements(_SCHEMA_V2):
        con.execute(stmt)


#: Migration path: ``MIGRATIONS[v]`` upgrades a database from schema version v to v+1 inside one
#: transaction (the caller sets ``user_version``). Version 0 is an empty database.
MIGRATIONS: dict[int, Callable[[sqlite3.Connection], None]] = {0: _migrate_0_to_1, 1: _migrate_1_to_2}


def resolve_path(path: str | Path) -> Path:
    """The database file of ``path``: ``path`` itself if it ends in .sqlite/.sqlite3/.db,
    otherwise ``path / DB_NAME`` (``path`` is a study directory)."""
    p = Path(path)
    return p if p.suffix in (".sqlite", ".sqlite3", ".db") else p / DB_NAME


# ----- array and JSON encoding -------------------------------------------------------------------
def encode_array(a) -> tuple[bytes, str, str]:
    """(raw little-endian float64 bytes, dtype string '<f8', shape as JSON) of an array; no pickle."""
    arr = np.ascontiguousarray(np.asarray(a, dtype="<f8"))
    return arr.tobytes(), arr.dtype.str, json.dumps(list(arr.shape))


def decode_array(blob: bytes | None, dtype: str | None, shape: str | None) -> np.ndarray | None:
    """Inverse of :func:`encode_array` (a writable copy); None for a NULL column."""
    if blob is None:
        return None
    return np.frombuffer(blob, dtype=np.dtype(dtype)).reshape(json.loads(shape)).copy()


def _float_or_none(x) -> float | None:
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else v


_TRAJ_COLS = ("idx", "unit", "seed", "stop_reason", "certified", "iterations", "n_grad", "n_hvp",
              "wall_time", "loss", "grad_norm", "engine", "point_id")
_POINT_META_COLS = ("id", "kind", "label", "loss", "grad_norm", "hessian_index", "fingerprint",
                    "analysis", "unit")
_EDGE_COLS = ("saddle_id", "direction", "sign", "target_id", "eigenvalue", "eps", "barrier", "stop_reason")


class StudyStore:
    """One study database. Create with :meth:`create`, reopen with :meth:`open`; use as a context
    manager or call :meth:`close`. One writing process at a time; readers may run concurrently.

    Records in and out are the typed records of :mod:`landscape.io.records` (fields and units
    documented there): :class:`TrajectoryRecord`, :class:`PointRecord`, :class:`EdgeRecord`,
    :class:`TransitionStateRecord`, :class:`SpectrumRecord`, :class:`ContinuationRecord`. A writer
    also takes a plain mapping with the record's field names (checked by ``from_mapping``: an
    unknown or missing field is refused before anything is written); a read record carries the
    ``unit`` that committed it.
    """

    def __init__(self, con: sqlite3.Connection, path: Path, readonly: bool = False, lock_fd: int | None = None):
        self._con = con
        self.path = path
        self.readonly = readonly
        self._lock_fd = lock_fd
        self._version = SCHEMA_VERSION

    # ----- opening -----------------------------------------------------------------------------
    @staticmethod
    def _lock(path: Path) -> int:
        """An exclusive advisory lock on the database file for this writer (released by close).
        A database, WAL or shared-memory file that is a symbolic link is refused: SQLite would
        write through it, outside the study folder."""
        for f in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            if f.is_symlink():
                raise StoreError(f"{f} is a symbolic link: refusing to write a study through it "
                                 "(copy the real file into the folder instead)")
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreError(f"{path}: another process is writing this study; wait for it to finish "
                             "(or stop it) and run again") from None
        return fd

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        con = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
        except sqlite3.DatabaseError as e:
            con.close()
            if isinstance(e, sqlite3.OperationalError) and "readonly" in str(e).replace("-", "").replace(" ", ""):
                raise StoreError(f"{path} is readable but not writable (a read-only database or folder): this "
                                 "command writes to it; copy the study to a writable folder") from e
            raise StoreError(f"{path} is not a readable SQLite database: {e}") from e
        if mode.lower() != "wal":
            con.close()
            raise StoreError(f"{path}: could not switch the database to WAL mode (got {mode!r})")
        return con

    @staticmethod
    def _connect_readonly(path: Path) -> sqlite3.Connection:
        """A connection that never writes: ``mode=ro``; where even the WAL index cannot be made
        (a read-only mount), ``immutable=1`` (the file is read as it is on disk)."""
        uri = "file:" + urllib.parse.quote(str(path.resolve()))
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            try:
                con = sqlite3.connect(uri + query, uri=True, isolation_level=None, timeout=60.0)
                con.execute("PRAGMA application_id").fetchone()
                return con
            except sqlite3.OperationalError:
                continue
            except sqlite3.DatabaseError as e:
                raise StoreError(f"{path} is not a readable SQLite database: {e}") from e
        raise StoreError(f"{path} cannot be opened even read-only")

    @staticmethod
    def is_uninitialised(path: str | Path) -> bool:
        """True for a file a study creation left before it wrote its schema (a run killed within
        its first milliseconds): empty, or a SQLite file with no tables and no application id."""
        db = resolve_path(path)
        if not db.is_file():
            return False
        if db.stat().st_size == 0:
            return True
        with open(db, "rb") as fh:
            if fh.read(16) != b"SQLite format 3\x00":
                return False
        try:
            con = StudyStore._connect_readonly(db)
        except StoreError:
            return False
        try:
            app = con.execute("PRAGMA application_id").fetchone()[0]
            n = con.execute("SELECT COUNT(*) FROM sqlite_master").fetchone()[0]
            return app == 0 and n == 0
        except sqlite3.DatabaseError:
            return False
        finally:
            con.close()

    @staticmethod
    def discard_uninitialised(path: str | Path) -> bool:
        """Remove an uninitialised database file (:meth:`is_uninitialised`) and its journals;
        returns whether it did."""
        db = resolve_path(path)
        if not StudyStore.is_uninitialised(db):
            return False
        for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
            f.unlink(missing_ok=True)
        return True

    @classmethod
    def create(cls, path: str | Path, config: Mapping[str, Any], spec: ModelSpec | None = None) -> "StudyStore":
        """Create a new study database at ``path`` (a directory, created if needed, or a .sqlite
        file) holding ``config``: a JSON-able dict, the full study configuration (spec, init,
        engine, every tolerance; e.g. ``StudyConfig.to_dict()``). ``spec``, the study's model,
        fills the convenience columns (NULL without it). Schema and configuration are written in
        one transaction; if it fails, the new file is removed. Raises :class:`StoreError` if the
        database file exists."""
        db = resolve_path(path)
        if db.exists() or db.is_symlink():
            raise StoreError(f"{db} already exists: open it (landscape run --resume) instead of creating it")
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(db, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))  # never through a planted link
        except FileExistsError:
            raise StoreError(f"{db} already exists: open it (landscape run --resume) instead of creating it") from None
        except OSError as exc:
            raise StoreError(f"cannot create {db}: {exc.strerror}") from None
        lock = cls._lock(db)
        con = cls._connect(db)
        store = cls(con, db, lock_fd=lock)
        try:
            with store._transaction():
                for version in range(SCHEMA_VERSION):
                    store._migrate(version)
                con.execute(
                    "INSERT INTO config (id, json, K, n, d, L, activation, loss, lambda_convention, created_at)"
                    " VALUES (1, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (to_json(dict(config)), *((spec.K, spec.n, spec.d, spec.L, spec.activation, spec.loss,
                                               spec.lambda_convention) if spec else (None,) * 7), time.time()))
            store._checkpoint()
        except BaseException:
            store.close()
            for f in (db, db.with_name(db.name + "-wal"), db.with_name(db.name + "-shm")):
                f.unlink(missing_ok=True)  # the file this call created holds nothing
            raise
        return store

    @classmethod
    def open(cls, path: str | Path, check: bool = True, readonly: bool = False) -> "StudyStore":
        """Open an existing study database, migrating it to :data:`SCHEMA_VERSION` if it is older.
        ``check`` runs ``PRAGMA quick_check`` (linear in the file size) to detect corruption.
        ``readonly``: never write (no migration: an older schema is read as it is, which the
        readers below handle), and work on read-only files and mounts."""
        db = resolve_path(path)
        if not db.is_file():
            raise StoreError(f"no study database at {db}")
        if db.stat().st_size == 0 or cls.is_uninitialised(db):
            raise StoreError(f"{db} is an empty study database (a run killed while creating it): delete it, "
                             f"or run the study again into {db.parent}, which recreates it")
        lock = None
        if readonly:
            con = cls._connect_readonly(db)
        else:
            lock = cls._lock(db)
            try:
                con = cls._connect(db)
            except BaseException:
                os.close(lock)
                raise
        store = cls(con, db, readonly=readonly, lock_fd=lock)
        try:
            app, version = store._header()
            if app != APPLICATION_ID:
                raise StoreError(f"{db} is a SQLite database but not a landscape study database "
                                 f"(application_id={app:#x}, expected {APPLICATION_ID:#x})")
            if version > SCHEMA_VERSION:
                raise StoreError(f"{db} has schema version {version}, newer than this landscape "
                                 f"(supports up to {SCHEMA_VERSION}): upgrade landscape to open it")
            if check:
                rows = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
                if rows != ["ok"]:
                    raise StoreError(f"{db} is corrupt: " + "; ".join(rows[:5]))
            if not readonly:
                store._upgrade(version)
            store._version = version if readonly else SCHEMA_VERSION
        except sqlite3.DatabaseError as e:
            store.close()
            raise StoreError(f"{db} is corrupt or unreadable: {e}") from e
        except BaseException:
            store.close()
            raise
        return store

    def _checkpoint(self) -> None:
        """Move the WAL into the main file (module docstring: a copied study.sqlite is whole)."""
        self._con.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()

    def _header(self) -> tuple[int, int]:
        app = self._con.execute("PRAGMA application_id").fetchone()[0]
        version = self._con.execute("PRAGMA user_version").fetchone()[0]
        return app, version

    def _migrate(self, version: int) -> None:
        """Inside an open transaction: apply MIGRATIONS[version] and stamp version + 1."""
        MIGRATIONS[version](self._con)
        self._con.execute(f"PRAGMA user_version = {int(version) + 1}")
        self._con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
        self._con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)",
                          (f"schema_v{version + 1}_at", repr(time.time())))

    def _upgrade(self, version: int) -> None:
        """Bring an existing database from ``version`` to SCHEMA_VERSION, one transaction per step."""
        while version < SCHEMA_VERSION:
            with self._transaction():
                self._migrate(version)
            version += 1

    @property
    def schema_version(self) -> int:
        return self._header()[1]

    def close(self) -> None:
        try:
            self._con.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> "StudyStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")
        self._con.execute("BEGIN IMMEDIATE")
        try:
            yield self._con
        except BaseException:
            self._con.execute("ROLLBACK")
            raise
        self._con.execute("COMMIT")

    # ----- configuration -----------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The study configuration exactly as given to :meth:`create`."""
        return json.loads(self._con.execute("SELECT json FROM config WHERE id = 1").fetchone()[0])

    # ----- writing -----------------------------------------------------------------------------
    def next_point_id(self) -> int:
        """Smallest id above every stored point (0 for an empty table)."""
        return int(self._con.execute("SELECT COALESCE(MAX(id) + 1, 0) FROM points").fetchone()[0])

    def commit_unit(self, unit: int, trajectories: Iterable[TrajectoryRecord | Mapping],
                    points: Iterable[PointRecord | Mapping] = (), edges: Iterable[EdgeRecord | Mapping] = (),
                    wall_time: float | None = None) -> int:
        """Atomically store one unit of work: its new distinct ``points`` (inserted first, so the
        trajectories may reference them), its ``trajectories`` and any ``edges``. Either all of it
        becomes visible or none of it (one transaction, one commit). Returns the number of
        trajectories stored. Raises :class:`StoreError` (and stores nothing) if the unit was
        already committed, a trajectory index is already stored, a point id exists, or a
        reference is dangling."""
        unit = int(unit)
        try:
            with self._transaction() as con:
                if con.execute("SELECT 1 FROM units WHERE unit = ?", (unit,)).fetchone():
                    raise StoreError(f"unit {unit} is already committed")
                con.execute("INSERT INTO units (unit, n_trajectories, wall_time, committed_at) VALUES (?, 0, ?, ?)",
                            (unit, _float_or_none(wall_time), time.time()))
                con.executemany(_insert_sql("points", _POINT_ROW_COLS), (_point_row(p, unit) for p in points))
                count = [0]

                def rows():
                    for t in trajectories:
                        count[0] += 1
                        yield _trajectory_row(t, unit)

                con.executemany(_insert_sql("trajectories", _TRAJ_COLS), rows())
                con.executemany(_insert_sql("edges", _EDGE_COLS), (_edge_row(e) for e in edges))
                con.execute("UPDATE units SET n_trajectories = ? WHERE unit = ?", (count[0], unit))
        except sqlite3.IntegrityError as e:
            raise StoreError(f"unit {unit} not stored (nothing was written): {e}") from e
        self._checkpoint()
        return count[0]

    def add_edges(self, edges: Iterable[EdgeRecord | Mapping]) -> None:
        """Store saddle-connection edges in one transaction; a (saddle, direction, sign) already
        stored raises :class:`StoreError` and nothing is written."""
        try:
            with self._transaction() as con:
                con.executemany(_insert_sql("edges", _EDGE_COLS), (_edge_row(e) for e in edges))
        except sqlite3.IntegrityError as e:
            raise StoreError(f"edges not stored (nothing was written): {e}") from e
        self._checkpoint()

    def add_transition_states(self, records: Iterable[TransitionStateRecord | Mapping]) -> None:
        """Store transition-state records in one transaction; a saddle already stored as a
        transition state is replaced."""
        recs = [TransitionStateRecord.from_mapping(r) for r in records]
        with self._transaction() as con:
            con.executemany(f"INSERT OR REPLACE INTO transition_states ({', '.join(_TS_COLS)}, json) "
                            f"VALUES ({', '.join('?' * (len(_TS_COLS) + 1))})",
                            ((*(getattr(r, c) for c in _TS_COLS), to_json(r.details)) for r in recs))
        self._checkpoint()

    def set_meta(self, key: str, value) -> None:
        """Store a JSON-able ``value`` under ``key`` in the meta table (one transaction)."""
        with self._transaction() as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (str(key), to_json(value)))
        self._checkpoint()

    def get_meta(self, key: str, default=None):
        """The JSON value stored under ``key`` by :meth:`set_meta`, or ``default``."""
        r = self._con.execute("SELECT value FROM meta WHERE key = ?", (str(key),)).fetchone()
        if r is None:
            return default
        try:
            return json.loads(r[0])
        except json.JSONDecodeError:
            return default

    def transition_states(self) -> list[TransitionStateRecord]:
        """Every transition-state record, by saddle id (empty for a schema-1 database)."""
        if self._version < 2:
            return []
        return [TransitionStateRecord(**dict(zip(_TS_COLS, r[:-1])), details=json.loads(r[-1]) if r[-1] else {})
                for r in self._con.execute(
                    f"SELECT {', '.join(_TS_COLS)}, json FROM transition_states ORDER BY saddle_id")]

    def put_spectrum(self, point_id: int, record: Mapping) -> None:
        """Store (or replace) the structured spectrum record (its JSON ``data``) of a point."""
        data = record.data if isinstance(record, SpectrumRecord) else dict(record)
        with self._transaction() as con:
            con.execute("INSERT OR REPLACE INTO spectra (point_id, json, created_at) VALUES (?, ?, ?)",
                        (int(point_id), to_json(data), time.time()))
        self._checkpoint()

    def spectrum_record(self, point_id: int) -> SpectrumRecord | None:
        """The structured spectrum record of a point, or None."""
        if self._version < 2:
            return None
        r = self._con.execute("SELECT json FROM spectra WHERE point_id = ?", (int(point_id),)).fetchone()
        return None if r is None else SpectrumRecord(point_id=int(point_id), data=json.loads(r[0]))

    def add_continuation(self, param: str, record: Mapping) -> int:
        """Store one continuation run (its JSON record: all its branches) and return its id."""
        with self._transaction() as con:
            cur = con.execute("INSERT INTO continuation (param, json, created_at) VALUES (?, ?, ?)",
                              (str(param), to_json(dict(record)), time.time()))
            rid = int(cur.lastrowid)
        self._checkpoint()
        return rid

    def continuations(self) -> list[ContinuationRecord]:
        """Every stored continuation run, oldest first."""
        if self._version < 2:
            return []
        return [ContinuationRecord(id=r[0], param=r[1], record=json.loads(r[2]))
                for r in self._con.execute("SELECT id, param, json FROM continuation ORDER BY id")]

    def update_point(self, point_id: int, *, kind: str | None = None, label: str | None = None,
                     hessian_index: int | None = None, analysis: Mapping | None = None,
                     spectrum=None) -> None:
        """Set the given (non-None) analysis fields of a stored point, in one transaction."""
        sets: dict[str, Any] = {}
        if kind is not None:
            sets["kind"] = _check_kind(kind)
        if label is not None:
            sets["label"] = str(label)
        if hessian_index is not None:
            sets["hessian_index"] = int(hessian_index)
        if analysis is not None:
            sets["analysis"] = to_json(dict(analysis))
        if spectrum is not None:
            sets["spectrum"], sets["spectrum_dtype"], sets["spectrum_shape"] = encode_array(spectrum)
        if not sets:
            return
        with self._transaction() as con:
            cur = con.execute(f"UPDATE points SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                              (*sets.values(), int(point_id)))
            if cur.rowcount != 1:
                raise StoreError(f"no point with id {point_id}")

    # ----- reading -----------------------------------------------------------------------------
    def committed_units(self) -> list[int]:
        return [r[0] for r in self._con.execute("SELECT unit FROM units ORDER BY unit")]

    def completed_indices(self) -> np.ndarray:
        """Sorted study indices of every stored trajectory, int64 (n,)."""
        rows = self._con.execute("SELECT idx FROM trajectories ORDER BY idx").fetchall()
        return np.array([r[0] for r in rows], dtype=np.int64)

    def n_trajectories(self) -> int:
        return int(self._con.execute("SELECT COUNT(*) FROM trajectories").fetchone()[0])

    def trajectories(self) -> list[TrajectoryRecord]:
        """Every trajectory record, in index order."""
        out = []
        for r in self._con.execute(f"SELECT {', '.join(_TRAJ_COLS)} FROM trajectories ORDER BY idx"):
            t = dict(zip(_TRAJ_COLS, r))
            t["certified"] = bool(t["certified"])
            t["engine"] = None if t["engine"] is None else json.loads(t["engine"])
            out.append(TrajectoryRecord(**t))
        return out

    def _array_cols(self) -> tuple[str, ...]:
        return ("params", "params_dtype", "params_shape", "spectrum", "spectrum_dtype", "spectrum_shape") + (
            ("unstable", "unstable_shape", "unstable_values") if self._version >= 2 else ())

    def points(self, with_params: bool = False) -> list[PointRecord]:
        """Every distinct point, by id; ``params``, ``spectrum`` and the saddles' ``unstable``
        eigenvectors (m, P) with their ``unstable_values`` only if ``with_params``."""
        cols = _POINT_META_COLS + (self._array_cols() if with_params else ())
        return [_point_from_row(dict(zip(cols, r)))
                for r in self._con.execute(f"SELECT {', '.join(cols)} FROM points ORDER BY id")]

    def point(self, point_id: int) -> PointRecord:
        """One point with its parameters (P,), spectrum and unstable eigenvectors as float64 arrays."""
        cols = _POINT_META_COLS + self._array_cols()
        r = self._con.execute(f"SELECT {', '.join(cols)} FROM points WHERE id = ?", (int(point_id),)).fetchone()
        if r is None:
            raise StoreError(f"no point with id {point_id}")
        return _point_from_row(dict(zip(cols, r)))

    def basin_counts(self) -> dict[int, int]:
        """Number of trajectories that certified at each point id (points never reached: absent)."""
        return {int(p): int(c) for p, c in self._con.execute(
            "SELECT point_id, COUNT(*) FROM trajectories WHERE point_id IS NOT NULL GROUP BY point_id")}

    def edges(self) -> list[EdgeRecord]:
        """Every saddle-connection edge, ordered by (saddle_id, direction, sign)."""
        return [EdgeRecord(**dict(zip(_EDGE_COLS, r))) for r in self._con.execute(
            f"SELECT {', '.join(_EDGE_COLS)} FROM edges ORDER BY saddle_id, direction, sign")]


# ----- row conversion --------------------------------------------------------------------------
_POINT_ROW_COLS = ("id", "kind", "label", "loss", "grad_norm", "hessian_index", "fingerprint", "params",
                   "params_dtype", "params_shape", "spectrum", "spectrum_dtype", "spectrum_shape",
                   "analysis", "unit", "unstable", "unstable_shape", "unstable_values")
_TS_COLS = ("saddle_id", "min1_id", "min2_id", "barrier1", "barrier2", "path_max_loss", "path_length", "pair_a",
            "pair_b")


def _insert_sql(table: str, cols: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})"


def _check_kind(kind: str) -> str:
    if kind not in POINT_KINDS:
        raise StoreError(f"point kind {kind!r} is invalid: must be one of {POINT_KINDS}")
    return kind


def _opt_int(x) -> int | None:
    return None if x is None else int(x)


def _point_row(p: PointRecord | Mapping, unit: int) -> tuple:
    p = PointRecord.from_mapping(p)
    if p.params is None:
        raise StoreError(f"point {p.id} has no params: a stored point needs θ")
    params, pdt, pshape = encode_array(p.params)
    spec_blob = spec_dt = spec_shape = None
    if p.spectrum is not None:
        spec_blob, spec_dt, spec_shape = encode_array(p.spectrum)
    un_blob = un_shape = un_vals = None
    if p.unstable is not None:
        un_blob, _, un_shape = encode_array(p.unstable)
        un_vals = to_json([float(x) for x in p.unstable_values])
    return (int(p.id), _check_kind(p.kind), p.label, float(p.loss), float(p.grad_norm),
            _opt_int(p.hessian_index), to_json(dict(p.fingerprint)), params, pdt, pshape,
            spec_blob, spec_dt, spec_shape, None if p.analysis is None else to_json(dict(p.analysis)), unit,
            un_blob, un_shape, un_vals)


def _trajectory_row(t: TrajectoryRecord | Mapping, unit: int) -> tuple:
    t = TrajectoryRecord.from_mapping(t)
    return (int(t.idx), unit, int(t.seed), str(t.stop_reason), int(bool(t.certified)),
            _opt_int(t.iterations), _opt_int(t.n_grad), _opt_int(t.n_hvp),
            _float_or_none(t.wall_time), _float_or_none(t.loss),
            _float_or_none(t.grad_norm), None if t.engine is None else to_json(t.engine),
            _opt_int(t.point_id))


def _edge_row(e: EdgeRecord | Mapping) -> tuple:
    e = EdgeRecord.from_mapping(e)
    return (int(e.saddle_id), int(e.direction), int(e.sign), _opt_int(e.target_id),
            _float_or_none(e.eigenvalue), _float_or_none(e.eps),
            _float_or_none(e.barrier), e.stop_reason)


def _point_from_row(r: dict) -> PointRecord:
    r["fingerprint"] = json.loads(r["fingerprint"])
    r["analysis"] = None if r["analysis"] is None else json.loads(r["analysis"])
    if "params" in r:
        r["params"] = decode_array(r.pop("params"), r.pop("params_dtype"), r.pop("params_shape"))
        r["spectrum"] = decode_array(r.pop("spectrum"), r.pop("spectrum_dtype"), r.pop("spectrum_shape"))
        if "unstable" in r:
            r["unstable"] = decode_array(r.pop("unstable"), "<f8", r.pop("unstable_shape"))
            vals = r.pop("unstable_values")
            r["unstable_values"] = None if vals is None else np.array(json.loads(vals))
        else:
            r["unstable"] = r["unstable_values"] = None
    return PointRecord(**r)
