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
  double-ended search (:mod:`landscape.study.transition_states`), with both barriers and the path.
* ``spectra`` (schema 2): the structured Hessian spectrum of a point (``landscape spectrum``).
* ``continuation`` (schema 2): branches followed in λ or width (``landscape continue``).

Durability: WAL journal, ``synchronous=FULL``, foreign keys on, and a *passive* WAL checkpoint
after every committed unit, so ``study.sqlite`` copied alone holds every committed unit (the WAL
only holds the transaction in flight) — unless a reader (a sqlite3 shell, a notebook cursor) keeps
an older read transaction open, which a passive checkpoint never waits for: commits never stall on
readers, and the next commit after the reader is done catches the main file up. One writer at a
time: a writing store holds an exclusive ``flock`` on the database file, and a second writer gets
"another process is writing this study". Read-only opening (:meth:`StudyStore.open` with
``readonly=True``) works on a read-only mount and never writes; opening for writing in a
read-only place says so (and that reading commands read it in place). A disk that fills up at a
commit raises one line naming the database and saying that the committed units are kept and
``--resume`` continues. The schema version is ``PRAGMA user_version``; ``PRAGMA
application_id`` marks the file as a landscape study. Opening applies the migrations in
:data:`MIGRATIONS` (version v → v+1, one transaction each); a file from a newer schema, a file
that is not a SQLite database, a SQLite database of another application, a corrupt file or a
missing file raises :class:`StoreError` with a clear message.

Untrusted files: a study folder may come from anyone, so opening checks, before anything is read,
that every table of the schema is a real table with exactly the columns of its schema version
(no view, trigger, virtual table or generated column anywhere), that the stored configuration's
model (K, n, d, L → P) agrees with its convenience columns and with every stored θ (P float64
values), and reading checks every value it returns (a number where a number belongs, JSON that
parses, arrays whose byte length matches their shape and the model). Anything else is one
:class:`StoreError` line naming the file, the table, the row and the column. A read-only
connection also aborts any single query that runs far past what a study of the file's size needs
(a progress handler), so no crafted file can keep a reading command busy.

Float columns: SQLite stores NaN as NULL, so a diverged trajectory's loss reads back as None.
"""
from __future__ import annotations

import errno
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
from ..core.jsonsafe import optional_int, to_json
from ..core.model import ModelSpec
from ..engines.outcomes import STOP_REASONS, split_detail
from .locking import lock_database
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


def expected_schema(version: int) -> dict[str, list[tuple[str, str]]]:
    """{table: [(column, declared type), …]} of a database at schema ``version``: the migrations
    0 → ``version`` applied to an empty in-memory database (so it can never disagree with them)."""
    con = sqlite3.connect(":memory:")
    try:
        for v in range(int(version)):
            MIGRATIONS[v](con)
        names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        return {t: [(r[1], (r[2] or "").upper()) for r in con.execute(f'PRAGMA table_xinfo("{t}")')] for t in names}
    finally:
        con.close()


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
    """Inverse of :func:`encode_array` (a writable copy); None for a NULL column. Trusts its input:
    the store reads its columns through the checks of ``_Where.array`` instead."""
    if blob is None:
        return None
    return np.frombuffer(blob, dtype=np.dtype(dtype)).reshape(json.loads(shape)).copy()


def _float_or_none(x) -> float | None:
    if x is None:
        return None
    v = float(x)
    return None if math.isnan(v) else v


# ----- checks of values read from an untrusted file -----------------------------------------------
#: The one dtype a study stores arrays in.
_F8 = "<f8"


def _describe(v) -> str:
    if isinstance(v, bytes):
        return f"a {len(v)}-byte blob"
    if isinstance(v, str):
        return f"text {v[:40]!r}" + ("…" if len(v) > 40 else "")
    return "NULL" if v is None else repr(v)


class _Where:
    """Where a value was read: the database, the table and the row (for one-line errors)."""

    __slots__ = ("db", "table", "row")

    def __init__(self, db: Path, table: str, row: str):
        self.db, self.table, self.row = db, table, row

    def bad(self, col: str, what: str) -> StoreError:
        return StoreError(f"{self.db}: table {self.table}, {self.row}, column {col}: {what} "
                          "(the file was altered or is damaged)")

    def num(self, col: str, v, null: bool = False) -> float | None:
        if v is None and null:
            return None
        if isinstance(v, (int, float)) and not isinstance(v, bool):
            return float(v)
        raise self.bad(col, f"holds {_describe(v)} where a number belongs")

    def integer(self, col: str, v, null: bool = False) -> int | None:
        if v is None and null:
            return None
        if isinstance(v, int) and not isinstance(v, bool):
            return v
        raise self.bad(col, f"holds {_describe(v)} where an integer belongs")

    def text(self, col: str, v, null: bool = False) -> str | None:
        if v is None and null:
            return None
        if isinstance(v, str):
            return v
        raise self.bad(col, f"holds {_describe(v)} where text belongs")

    def convert(self, row: dict, check, cols, null: bool = False) -> None:
        """Check the columns ``cols`` of ``row`` with ``check`` (:meth:`integer`, :meth:`num` or
        :meth:`text`) and store the converted values in place."""
        for c in cols:
            row[c] = check(c, row[c], null=null)

    def json_value(self, col: str, v, kind: type | None = None, null: bool = False):
        if v is None and null:
            return None
        if not isinstance(v, str):
            raise self.bad(col, f"holds {_describe(v)} where JSON text belongs")
        try:
            out = json.loads(v)
        except (ValueError, RecursionError) as exc:
            raise self.bad(col, f"is not valid JSON ({str(exc)[:80]})") from None
        if kind is not None and not isinstance(out, kind):
            raise self.bad(col, f"holds JSON {type(out).__name__}, not a JSON "
                                f"{ {dict: 'object', list: 'array'}.get(kind, kind.__name__)}")
        return out

    def array(self, col: str, blob, dtype, shape, *, shape_col: str, dtype_col: str | None = None,
              null: bool = True) -> np.ndarray | None:
        """A float64 array from its blob, dtype and JSON shape columns, each checked: the blob is a
        blob, the dtype '<f8', the shape a list of non-negative integers whose product × 8 is the
        blob's length."""
        if blob is None:
            if null:
                return None
            raise self.bad(col, "is NULL: a stored point needs θ")
        if not isinstance(blob, bytes):
            raise self.bad(col, f"holds {_describe(blob)} where a float64 array (a blob) belongs")
        if dtype_col is not None and dtype != _F8:
            raise self.bad(dtype_col, f"says dtype {_describe(dtype)}: a study stores float64 ({_F8!r}) arrays only")
        dims = self.json_value(shape_col, shape, list)
        if not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in dims):
            raise self.bad(shape_col, f"holds shape {_describe(shape)}, not a list of non-negative integers")
        n = math.prod(dims)
        if 8 * n != len(blob):
            raise self.bad(col, f"holds {len(blob)} bytes, but its shape {dims} ({shape_col}) needs {8 * n} "
                                "(float64)")
        return np.frombuffer(blob, dtype=_F8).reshape(dims).copy()


def model_dims(config) -> tuple[int, int, int, int] | None:
    """(K, n, d, L) of the model of a stored study configuration (``model`` of a study,
    ``ufm_spec`` of a ``landscape net`` run), or None where it names none. A model table whose
    K, n, d or L is not a positive integer raises ValueError naming the field."""
    if not isinstance(config, dict):
        return None
    key = "ufm_spec" if "net" in config and "ufm_spec" in config else "model"
    m = config.get(key)
    if m is None:
        return None
    if not isinstance(m, dict):
        raise ValueError(f"{key} is {_describe(m)}, not a table")
    dims = []
    for k, lo in (("K", 2), ("n", 1), ("d", 1), ("L", 1)):
        v = m.get(k)
        if not isinstance(v, int) or isinstance(v, bool) or v < lo:
            raise ValueError(f"{key}.{k}={_describe(v)} is not an integer ≥ {lo}")
        dims.append(v)
    return tuple(dims)


def dims_P(dims: tuple[int, int, int, int]) -> int:
    """P = d·N + (L−1)·d² + K·d of (K, n, d, L) (:attr:`ModelSpec.P`)."""
    K, n, d, L = dims
    return d * K * n + (L - 1) * d * d + K * d


def _dims_text(dims) -> str:
    return ", ".join(f"{k}={v}" for k, v in zip("KndL", dims))


# ----- failures of SQLite, in words --------------------------------------------------------------
_SQLITE_FULL, _SQLITE_IOERR, _SQLITE_READONLY = 13, 10, 8


def _code(exc: BaseException) -> int | None:
    c = getattr(exc, "sqlite_errorcode", None)
    return None if c is None else c & 0xFF


def _disk_full(exc: BaseException, db: Path) -> bool:
    """``exc`` (a failed write) means that the disk (or the quota) is full."""
    if isinstance(exc, OSError):
        return exc.errno in (errno.ENOSPC, errno.EDQUOT)
    if _code(exc) == _SQLITE_FULL or "disk is full" in str(exc):
        return True
    if _code(exc) == _SQLITE_IOERR or "disk I/O error" in str(exc):
        try:
            st = os.statvfs(db.parent)
            return st.f_bavail * st.f_frsize < 2**20
        except OSError:
            return False
    return False


def _says_readonly(exc: BaseException) -> bool:
    return "readonly" in str(exc).replace("-", "").replace(" ", "")


def readonly_reason(db: Path) -> str | None:
    """Why the study database ``db`` (or the folder it would be created in) cannot be written:
    a read-only file system, a read-only folder or a read-only file; None if it can."""
    folder = db.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return f"is on a read-only file system ({folder})"
    except OSError:
        return None
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"is in a read-only folder ({folder})"
    if db.exists() and not os.access(db, os.W_OK):
        return "is a read-only file"
    return None


def _readonly_error(db: Path, reason: str) -> StoreError:
    return StoreError(f"{db} {reason}: this command writes to the study, so it cannot run there; copy the study "
                      "folder somewhere writable (inspect and export read it where it is)")


_TRAJ_COLS = ("idx", "unit", "seed", "stop_reason", "certified", "iterations", "n_grad", "n_hvp",
              "wall_time", "loss", "grad_norm", "engine", "point_id")
_POINT_META_COLS = ("id", "kind", "label", "loss", "grad_norm", "hessian_index", "fingerprint",
                    "analysis", "unit")
_EDGE_COLS = ("saddle_id", "direction", "sign", "target_id", "eigenvalue", "eps", "barrier", "stop_reason")

#: A read-only connection calls its progress handler every this many SQLite VM instructions …
_PROGRESS_PERIOD = 10_000
#: … and aborts one query after max(_QUERY_MIN_STEPS, _QUERY_STEPS_PER_BYTE × file size)
#: instructions: far more than any query of the store needs on a study of that size (a scan, a sort),
#: far less than a crafted file would make it run.
_QUERY_MIN_STEPS = 2 * 10**9
_QUERY_STEPS_PER_BYTE = 500


class StudyStore:
    """One study database. Create with :meth:`create`, reopen with :meth:`open`; use as a context
    manager or call :meth:`close`. One writing process at a time; readers may run concurrently.

    Records in and out are the typed records of :mod:`landscape.io.records` (fields and units
    documented there): :class:`TrajectoryRecord`, :class:`PointRecord`, :class:`EdgeRecord`,
    :class:`TransitionStateRecord`, :class:`SpectrumRecord`, :class:`ContinuationRecord`. A writer
    also takes a plain mapping with the record's field names (checked by ``from_mapping``: an
    unknown or missing field is refused before anything is written); a read record carries the
    ``unit`` that committed it. Every value read is checked (module docstring: untrusted files).
    """

    def __init__(self, con: sqlite3.Connection, path: Path, readonly: bool = False, lock_fd: int | None = None):
        self._con = con
        self.path = path
        self.readonly = readonly
        self._lock_fd = lock_fd
        self._version = SCHEMA_VERSION
        #: Parameters per point (from the stored configuration's model, else the stored θ); None
        #: while unknown (a store created without a model and without points).
        self.P: int | None = None
        #: A ``landscape net`` run (its configuration has ``net`` and ``ufm_spec``), not a study.
        self.is_net = False
        self._steps = 0
        self._budget = 0
        if readonly:
            try:
                size = path.stat().st_size + sum(f.stat().st_size for f in (path.with_name(path.name + "-wal"),)
                                                 if f.is_file())
            except OSError:
                size = 0
            self._budget = max(_QUERY_MIN_STEPS, _QUERY_STEPS_PER_BYTE * size) // _PROGRESS_PERIOD
            con.set_progress_handler(self._progress, _PROGRESS_PERIOD)

    def _progress(self) -> int:
        self._steps += 1
        return 1 if self._steps > self._budget else 0

    # ----- opening -----------------------------------------------------------------------------
    @staticmethod
    def _lock(path: Path) -> int:
        """An exclusive advisory lock on the database file for this writer (released by close).
        A database, WAL or shared-memory file that is a symbolic link is refused: SQLite would
        write through it, outside the study folder (:func:`landscape.io.locking.lock_database`)."""
        return lock_database(path, StoreError, "study", flags=os.O_RDONLY,
                             no_links=(path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")))

    @staticmethod
    def _connect(path: Path) -> sqlite3.Connection:
        reason = readonly_reason(path)
        if reason:
            raise _readonly_error(path, reason)
        con = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
        try:
            mode = con.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            # commits never wait on a checkpoint: SQLite's own is passive, ours too (_checkpoint);
            # a WAL that grew while a reader held it is cut back to this size once reset
            con.execute("PRAGMA wal_autocheckpoint=1000")
            con.execute(f"PRAGMA journal_size_limit={4 * 2**20}")
        except sqlite3.DatabaseError as e:
            con.close()
            reason = readonly_reason(path) or (
                "is read-only" if _code(e) == _SQLITE_READONLY or _says_readonly(e) else None)
            if reason:
                raise _readonly_error(path, reason) from e
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
        last = None
        for query in ("?mode=ro", "?mode=ro&immutable=1"):
            con = None
            try:
                con = sqlite3.connect(uri + query, uri=True, isolation_level=None, timeout=60.0)
                con.execute("PRAGMA application_id").fetchone()
                return con
            except sqlite3.OperationalError as e:
                last = e
                if con is not None:
                    con.close()
                continue
            except sqlite3.DatabaseError as e:
                if con is not None:
                    con.close()
                raise StoreError(f"{path} is not a readable SQLite database: {e}") from e
        raise StoreError(f"{path} cannot be opened even read-only ({last}): check that the file is readable "
                         "(its permissions) and is a study database")

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
        reason = readonly_reason(db)
        if reason:
            raise _readonly_error(db, reason)
        db.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.close(os.open(db, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))  # never through a planted link
        except FileExistsError:
            raise StoreError(f"{db} already exists: open it (landscape run --resume) instead of creating it") from None
        except OSError as exc:
            raise StoreError(f"cannot create {db}: {exc.strerror}") from None
        lock = cls._lock(db)
        try:
            con = cls._connect(db)
        except BaseException:
            os.close(lock)
            db.unlink(missing_ok=True)
            raise
        store = cls(con, db, lock_fd=lock)
        try:
            dims = (spec.K, spec.n, spec.d, spec.L) if spec is not None else model_dims(dict(config))
        except ValueError:
            dims = None
        store.P = spec.P if spec is not None else (dims_P(dims) if dims else None)
        store.is_net = "net" in config and "ufm_spec" in config
        try:
            with store._transaction("the new study's schema and configuration"):
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
        readers below handle), and work on read-only files and mounts. Always (cheap): the schema
        and the model's P against the stored θ (module docstring: untrusted files)."""
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
            store._check_schema(version)
            if check:
                rows = [r[0] for r in store._rows("PRAGMA quick_check")]
                if rows != ["ok"]:
                    raise StoreError(f"{db} is corrupt: " + "; ".join(map(str, rows[:5])))
            store._version = version
            store._check_model()
            if not readonly:
                store._upgrade(version)
                store._version = SCHEMA_VERSION
        except sqlite3.DatabaseError as e:
            store.close()
            raise StoreError(f"{db} is corrupt or unreadable: {e}") from e
        except BaseException:
            store.close()
            raise
        return store

    def _check_schema(self, version: int) -> None:
        """Every table of schema ``version`` is a real table (not a view, not virtual) with exactly
        its columns (names and declared types, no generated ones), and the file holds no view and
        no trigger (a study has none: a view shadowing a table could make any query endless)."""
        db = self.path
        rows = self._rows("SELECT type, name, tbl_name, sql FROM sqlite_master")
        for type_, name, tbl, _ in rows:
            if type_ in ("view", "trigger"):
                on = f" on table {tbl!r}" if type_ == "trigger" else ""
                raise StoreError(f"{db}: holds a {type_} {name!r}{on}, which no landscape study has: the file was "
                                 "altered; refusing to read it")
        tables = {name: (sql or "") for type_, name, _, sql in rows if type_ == "table"}
        for table, cols in expected_schema(version).items():
            if table not in tables:
                raise StoreError(f"{db}: table {table!r} is missing (a schema-{version} study has it): the file was "
                                 "altered or is damaged")
            if tables[table].lstrip().upper().startswith("CREATE VIRTUAL"):
                raise StoreError(f"{db}: table {table!r} is a virtual table, not a table of a landscape study: the "
                                 "file was altered; refusing to read it")
            info = self._rows(f'PRAGMA table_xinfo("{table}")')
            hidden = [r[1] for r in info if r[6]]
            if hidden:
                raise StoreError(f"{db}: table {table!r} has generated or hidden column(s) {hidden}, which no "
                                 "landscape study has: the file was altered; refusing to read it")
            got = [(r[1], (r[2] or "").upper()) for r in info]
            if got != cols:
                want, have = dict(cols), dict(got)
                diffs = [f"{c} is declared {have[c] or 'untyped'}, not {want[c]}" for c in want
                         if c in have and have[c] != want[c]]
                diffs += [f"{c} is missing" for c in want if c not in have]
                diffs += [f"{c} is unexpected" for c in have if c not in want]
                diffs = diffs or ["its columns are in another order"]
                more = f"; {len(diffs) - 4} more" if len(diffs) > 4 else ""
                raise StoreError(f"{db}: table {table!r} does not have the columns of a schema-{version} study "
                                 f"({'; '.join(diffs[:4])}{more}): the file was altered or is damaged")

    def _check_model(self) -> None:
        """The stored configuration is a JSON object whose model (K, n, d, L) agrees with the
        config table's columns, and every stored θ holds exactly P float64 values of that model
        (of the first stored point where the configuration names no model). Sets :attr:`P`."""
        db = self.path
        rows = self._rows("SELECT json, K, n, d, L FROM config WHERE id = 1")
        if not rows:
            raise StoreError(f"{db}: table config has no row: the study's configuration is missing (the file was "
                             "altered or is damaged)")
        where = _Where(db, "config", "row id=1")
        cfg = where.json_value("json", rows[0][0], dict)
        self.is_net = "net" in cfg and "ufm_spec" in cfg
        try:
            dims = model_dims(cfg)
        except ValueError as exc:
            raise where.bad("json", f"{exc}") from None
        cols = tuple(rows[0][1:])
        if any(c is not None for c in cols):
            if dims is None:
                if not all(isinstance(c, int) and not isinstance(c, bool) and c >= 1 for c in cols):
                    raise where.bad("K, n, d, L", f"hold {cols}, not a model's sizes")
                dims = cols
            elif cols != dims:
                raise StoreError(f"{db}: table config: the model columns K, n, d, L = {cols} disagree with the "
                                 f"configuration's model ({_dims_text(dims)}): the file was altered; refusing to "
                                 "open it")
        P = dims_P(dims) if dims else None
        source = f"the stored configuration's model ({_dims_text(dims)}) has P={P} parameters" if dims else None
        if P is None:
            first = self._rows("SELECT id, length(params) FROM points WHERE typeof(params) = 'blob' "
                               "ORDER BY id LIMIT 1")
            if first and first[0][1] % 8 == 0 and first[0][1] > 0:
                P = first[0][1] // 8
                source = f"point {first[0][0]} holds P={P} parameters"
        if P is not None:
            bad = self._rows(
                "SELECT id, typeof(params), length(params), params_dtype, params_shape FROM points "
                "WHERE typeof(params) != 'blob' OR length(params) != ? OR params_dtype IS NOT ? "
                "OR params_shape IS NOT ? ORDER BY id LIMIT 1", (8 * P, _F8, json.dumps([P])))
            if bad:
                pid, typ, n, dtype, shape = bad[0]
                w = _Where(db, "points", f"point {pid}")
                if typ != "blob":
                    raise w.bad("params", f"holds {typ} where θ (a blob of {P} float64 values) belongs")
                if n != 8 * P:
                    raise StoreError(f"{db}: table points, point {pid}, column params: θ holds {n} bytes "
                                     f"({n / 8:g} float64 values), but {source} ({8 * P} bytes): the stored "
                                     "configuration does not match the stored points (the file was altered or mixed "
                                     "with another study's); refusing to open it")
                if dtype != _F8:
                    raise w.bad("params_dtype", f"says dtype {_describe(dtype)}: a study stores float64 ({_F8!r}) only")
                raise w.bad("params_shape", f"says shape {_describe(shape)}, not [{P}]")
        self.P = P

    def _checkpoint(self) -> None:
        """Move the WAL into the main file (module docstring: a copied study.sqlite is whole) without
        ever waiting for a reader: a PASSIVE checkpoint copies what no open read transaction still
        needs and never calls the busy handler. A reader that just started may pin the last frames
        for a moment: a few short retries (≤ 50 ms), then the next commit finishes the job. The
        commit before it is durable in the WAL either way, so a failing checkpoint is ignored."""
        try:
            for attempt in range(6):
                busy, log, done = self._con.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if log < 0 or done >= log:
                    return
                time.sleep(0.01)
        except sqlite3.Error:
            pass

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
            with self._transaction(f"the migration to schema version {version + 1}"):
                self._migrate(version)
            version += 1

    @property
    def schema_version(self) -> int:
        return self._header()[1]

    def close(self) -> None:
        try:
            if self.readonly:
                try:
                    self._con.set_progress_handler(None, 0)
                except sqlite3.ProgrammingError:  # closed before
                    pass
            self._con.close()
        finally:
            if self._lock_fd is not None:
                os.close(self._lock_fd)
                self._lock_fd = None

    def __enter__(self) -> "StudyStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ----- the two ways in and out ------------------------------------------------------------------
    def _rows(self, sql: str, params=()) -> list[tuple]:
        """All rows of one query; a SQLite failure (a damaged page, a query past its budget) is a
        :class:`StoreError` naming the file."""
        self._steps = 0
        try:
            return self._con.execute(sql, params).fetchall()
        except sqlite3.DatabaseError as e:
            if self.readonly and self._steps > self._budget:
                raise StoreError(f"{self.path}: a query ran past {self._budget * _PROGRESS_PERIOD:.3g} SQLite steps, "
                                 "far more than a study of this size needs: the file is not one landscape wrote; "
                                 "refusing to read on") from e
            raise StoreError(f"{self.path} is corrupt or unreadable: {e}") from e

    @contextmanager
    def _transaction(self, what: str = "this write", hint: str = "") -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE … COMMIT; rolled back on any exception). A full
        disk or a read-only place is one :class:`StoreError` line naming the database, saying that
        ``what`` was not stored and everything committed before is kept (``hint``: how to go on);
        constraint failures (IntegrityError) reach the caller as they are."""
        if self.readonly:
            raise StoreError(f"{self.path} is open read-only")
        try:
            self._con.execute("BEGIN IMMEDIATE")
            try:
                yield self._con
                self._con.execute("COMMIT")
            except BaseException:
                if self._con.in_transaction:
                    try:
                        self._con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
        except sqlite3.IntegrityError:
            raise
        except (sqlite3.DatabaseError, OSError) as e:
            if isinstance(e, OSError) and e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            if _disk_full(e, self.path):
                raise StoreError(f"{self.path}: the disk is full ({e}): {what} was not stored; everything committed "
                                 f"before is kept{hint}") from e
            if _code(e) == _SQLITE_READONLY or _says_readonly(e):
                raise _readonly_error(self.path, readonly_reason(self.path) or "is read-only") from e
            raise

    # ----- configuration -----------------------------------------------------------------------
    @property
    def config(self) -> dict:
        """The study configuration exactly as given to :meth:`create`."""
        rows = self._rows("SELECT json FROM config WHERE id = 1")
        if not rows:
            raise StoreError(f"{self.path}: table config has no row: the study's configuration is missing")
        return _Where(self.path, "config", "row id=1").json_value("json", rows[0][0], dict)

    # ----- writing -----------------------------------------------------------------------------
    def next_point_id(self) -> int:
        """Smallest id above every stored point (0 for an empty table)."""
        return int(self._rows("SELECT COALESCE(MAX(id) + 1, 0) FROM points")[0][0])

    def commit_unit(self, unit: int, trajectories: Iterable[TrajectoryRecord | Mapping],
                    points: Iterable[PointRecord | Mapping] = (), edges: Iterable[EdgeRecord | Mapping] = (),
                    wall_time: float | None = None) -> int:
        """Atomically store one unit of work: its new distinct ``points`` (inserted first, so the
        trajectories may reference them), its ``trajectories`` and any ``edges``. Either all of it
        becomes visible or none of it (one transaction, one commit). Returns the number of
        trajectories stored. Raises :class:`StoreError` (and stores nothing) if the unit was
        already committed, a trajectory index is already stored, a point id exists, a reference
        is dangling, a point's θ does not hold the study's P values, or the disk is full (the
        message says so, and that ``--resume`` continues from the units committed before)."""
        unit = int(unit)
        try:
            with self._transaction(f"unit {unit}", f", and {self.resume_command()} continues from them once there "
                                   "is space") as con:
                if con.execute("SELECT 1 FROM units WHERE unit = ?", (unit,)).fetchone():
                    raise StoreError(f"unit {unit} is already committed")
                con.execute("INSERT INTO units (unit, n_trajectories, wall_time, committed_at) VALUES (?, 0, ?, ?)",
                            (unit, _float_or_none(wall_time), time.time()))
                con.executemany(_insert_sql("points", _POINT_ROW_COLS), (self._point_row(p, unit) for p in points))
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
        if self.P is None:   # a store created without a model: its first θ sets P
            first = self._rows("SELECT length(params) FROM points ORDER BY id LIMIT 1")
            self.P = first[0][0] // 8 if first else None
        self._checkpoint()
        return count[0]

    def resume_command(self) -> str:
        """How a stopped writer of this database goes on: ``landscape run --resume DIR``, ``landscape
        net --resume DIR``, or for a sweep cell the same ``landscape sweep`` command again."""
        folder = self.path.parent
        if self.is_net:
            return f"`landscape net --resume {folder}`"
        if folder.parent.name == "cells":
            return f"the same `landscape sweep` command again (it resumes the cell {folder.name})"
        return f"`landscape run --resume {folder}`"

    def add_edges(self, edges: Iterable[EdgeRecord | Mapping]) -> None:
        """Store saddle-connection edges in one transaction; a (saddle, direction, sign) already
        stored raises :class:`StoreError` and nothing is written."""
        try:
            with self._transaction("the saddle-connection edges") as con:
                con.executemany(_insert_sql("edges", _EDGE_COLS), (_edge_row(e) for e in edges))
        except sqlite3.IntegrityError as e:
            raise StoreError(f"edges not stored (nothing was written): {e}") from e
        self._checkpoint()

    def add_transition_states(self, records: Iterable[TransitionStateRecord | Mapping]) -> None:
        """Store transition-state records in one transaction; a saddle already stored as a
        transition state is replaced."""
        recs = [TransitionStateRecord.from_mapping(r) for r in records]
        with self._transaction("the transition states") as con:
            con.executemany(f"INSERT OR REPLACE INTO transition_states ({', '.join(_TS_COLS)}, json) "
                            f"VALUES ({', '.join('?' * (len(_TS_COLS) + 1))})",
                            ((*(getattr(r, c) for c in _TS_COLS), to_json(r.details)) for r in recs))
        self._checkpoint()

    def set_meta(self, key: str, value) -> None:
        """Store a JSON-able ``value`` under ``key`` in the meta table (one transaction)."""
        with self._transaction(f"meta {key!r}") as con:
            con.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (str(key), to_json(value)))
        self._checkpoint()

    def get_meta(self, key: str, default=None):
        """The JSON value stored under ``key`` by :meth:`set_meta`, or ``default`` (also for a value
        that is not JSON text)."""
        r = self._rows("SELECT value FROM meta WHERE key = ?", (str(key),))
        if not r or not isinstance(r[0][0], str):
            return default
        try:
            return json.loads(r[0][0])
        except (ValueError, RecursionError):
            return default

    def transition_states(self) -> list[TransitionStateRecord]:
        """Every transition-state record, by saddle id (empty for a schema-1 database)."""
        if self._version < 2:
            return []
        out = []
        for r in self._rows(f"SELECT {', '.join(_TS_COLS)}, json FROM transition_states ORDER BY saddle_id"):
            w = _Where(self.path, "transition_states", f"saddle {r[0]}")
            v = dict(zip(_TS_COLS, r[:-1]))
            w.convert(v, w.integer, ("saddle_id", "min1_id", "min2_id"))
            w.convert(v, w.integer, ("pair_a", "pair_b"), null=True)
            w.convert(v, w.num, ("barrier1", "barrier2"))
            w.convert(v, w.num, ("path_max_loss", "path_length"), null=True)
            out.append(TransitionStateRecord(**v, details=w.json_value("json", r[-1], dict, null=True) or {}))
        return out

    def put_spectrum(self, point_id: int, record: Mapping) -> None:
        """Store (or replace) the structured spectrum record (its JSON ``data``) of a point."""
        data = record.data if isinstance(record, SpectrumRecord) else dict(record)
        with self._transaction(f"the spectrum of point {int(point_id)}") as con:
            con.execute("INSERT OR REPLACE INTO spectra (point_id, json, created_at) VALUES (?, ?, ?)",
                        (int(point_id), to_json(data), time.time()))
        self._checkpoint()

    def spectrum_record(self, point_id: int) -> SpectrumRecord | None:
        """The structured spectrum record of a point, or None."""
        if self._version < 2:
            return None
        r = self._rows("SELECT json FROM spectra WHERE point_id = ?", (int(point_id),))
        if not r:
            return None
        data = _Where(self.path, "spectra", f"point {int(point_id)}").json_value("json", r[0][0], dict)
        return SpectrumRecord(point_id=int(point_id), data=data)

    def add_continuation(self, param: str, record: Mapping) -> int:
        """Store one continuation run (its JSON record: all its branches) and return its id."""
        with self._transaction(f"the {param} continuation") as con:
            cur = con.execute("INSERT INTO continuation (param, json, created_at) VALUES (?, ?, ?)",
                              (str(param), to_json(dict(record)), time.time()))
            rid = int(cur.lastrowid)
        self._checkpoint()
        return rid

    def continuations(self) -> list[ContinuationRecord]:
        """Every stored continuation run, oldest first."""
        if self._version < 2:
            return []
        out = []
        for rid, param, js in self._rows("SELECT id, param, json FROM continuation ORDER BY id"):
            w = _Where(self.path, "continuation", f"row id={rid}")
            out.append(ContinuationRecord(id=w.integer("id", rid), param=w.text("param", param),
                                          record=w.json_value("json", js, dict)))
        return out

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
            sets["spectrum"], sets["spectrum_dtype"], sets["spectrum_shape"] = self._spectrum_cols(point_id, spectrum)
        if not sets:
            return
        with self._transaction(f"the analysis of point {int(point_id)}") as con:
            cur = con.execute(f"UPDATE points SET {', '.join(f'{k} = ?' for k in sets)} WHERE id = ?",
                              (*sets.values(), int(point_id)))
            if cur.rowcount != 1:
                raise StoreError(f"no point with id {point_id}")

    # ----- reading -----------------------------------------------------------------------------
    def committed_units(self) -> list[int]:
        w = _Where(self.path, "units", "a row")
        return [w.integer("unit", r[0]) for r in self._rows("SELECT unit FROM units ORDER BY unit")]

    def completed_indices(self) -> np.ndarray:
        """Sorted study indices of every stored trajectory, int64 (n,)."""
        rows = self._rows("SELECT idx FROM trajectories ORDER BY idx")
        return np.array([r[0] for r in rows], dtype=np.int64)  # idx is the rowid: always an integer

    def n_trajectories(self) -> int:
        return int(self._rows("SELECT COUNT(*) FROM trajectories")[0][0])

    def trajectories(self) -> list[TrajectoryRecord]:
        """Every trajectory record, in index order."""
        out = []
        for r in self._rows(f"SELECT {', '.join(_TRAJ_COLS)} FROM trajectories ORDER BY idx"):
            w = _Where(self.path, "trajectories", f"trajectory {r[0]}")
            t = dict(zip(_TRAJ_COLS, r))
            w.convert(t, w.integer, ("unit", "seed"))
            w.convert(t, w.integer, ("iterations", "n_grad", "n_hvp", "point_id"), null=True)
            w.convert(t, w.num, ("wall_time", "loss", "grad_norm"), null=True)
            t["stop_reason"] = w.text("stop_reason", t["stop_reason"])
            if t["stop_reason"] not in STOP_REASONS:
                raise w.bad("stop_reason", f"holds {_describe(t['stop_reason'])}, not a stop reason "
                                           f"({', '.join(r.value for r in STOP_REASONS)})")
            if t["certified"] not in (0, 1) or isinstance(t["certified"], float):
                raise w.bad("certified", f"holds {_describe(t['certified'])}, not 0 or 1")
            t["certified"] = bool(t["certified"])
            t["engine"] = w.json_value("engine", t["engine"], null=True)
            out.append(TrajectoryRecord(**t))
        return out

    def _array_cols(self) -> tuple[str, ...]:
        return ("params", "params_dtype", "params_shape", "spectrum", "spectrum_dtype", "spectrum_shape") + (
            ("unstable", "unstable_shape", "unstable_values") if self._version >= 2 else ())

    def points(self, with_params: bool = False) -> list[PointRecord]:
        """Every distinct point, by id; ``params``, ``spectrum`` and the saddles' ``unstable``
        eigenvectors (m, P) with their ``unstable_values`` only if ``with_params``."""
        cols = _POINT_META_COLS + (self._array_cols() if with_params else ())
        return [self._point_from_row(dict(zip(cols, r)))
                for r in self._rows(f"SELECT {', '.join(cols)} FROM points ORDER BY id")]

    def point(self, point_id: int) -> PointRecord:
        """One point with its parameters (P,), spectrum and unstable eigenvectors as float64 arrays."""
        cols = _POINT_META_COLS + self._array_cols()
        r = self._rows(f"SELECT {', '.join(cols)} FROM points WHERE id = ?", (int(point_id),))
        if not r:
            raise StoreError(f"no point with id {point_id}")
        return self._point_from_row(dict(zip(cols, r[0])))

    def basin_counts(self) -> dict[int, int]:
        """Number of trajectories that certified at each point id (points never reached: absent)."""
        w = _Where(self.path, "trajectories", "a row")
        return {w.integer("point_id", p): int(c) for p, c in self._rows(
            "SELECT point_id, COUNT(*) FROM trajectories WHERE point_id IS NOT NULL GROUP BY point_id")}

    def edges(self) -> list[EdgeRecord]:
        """Every saddle-connection edge, ordered by (saddle_id, direction, sign)."""
        out = []
        for r in self._rows(f"SELECT {', '.join(_EDGE_COLS)} FROM edges ORDER BY saddle_id, direction, sign"):
            w = _Where(self.path, "edges", f"saddle {r[0]!r} direction {r[1]!r} sign {r[2]!r}")
            e = dict(zip(_EDGE_COLS, r))
            w.convert(e, w.integer, ("saddle_id", "direction"))
            if e["sign"] not in (-1, 1) or isinstance(e["sign"], float):
                raise w.bad("sign", f"holds {_describe(e['sign'])}, not -1 or 1")
            e["target_id"] = w.integer("target_id", e["target_id"], null=True)
            w.convert(e, w.num, ("eigenvalue", "eps", "barrier"), null=True)
            e["stop_reason"] = w.text("stop_reason", e["stop_reason"], null=True)
            if e["stop_reason"] is not None:
                try:
                    split_detail(e["stop_reason"])
                except ValueError:
                    raise w.bad("stop_reason", f"holds {_describe(e['stop_reason'])}, not a stop reason "
                                               "(an Outcome, with its detail in parentheses)") from None
            out.append(EdgeRecord(**e))
        return out

    # ----- row conversion (the store's own checks of P on the way in and out) -------------------
    def _point_row(self, p: PointRecord | Mapping, unit: int) -> tuple:
        p = PointRecord.from_mapping(p)
        if p.params is None:
            raise StoreError(f"point {p.id} has no params: a stored point needs θ")
        params, pdt, pshape = encode_array(p.params)
        if self.P is not None and len(params) != 8 * self.P:
            raise StoreError(f"{self.path}: point {p.id}'s θ has {len(params) // 8} values, but the study's model has "
                             f"P={self.P} parameters: not stored")
        spec_blob = spec_dt = spec_shape = None
        if p.spectrum is not None:
            spec_blob, spec_dt, spec_shape = self._spectrum_cols(p.id, p.spectrum)
        un_blob = un_shape = un_vals = None
        if p.unstable is not None:
            un = np.asarray(p.unstable, dtype="<f8")
            vals = [float(x) for x in p.unstable_values]
            if un.ndim != 2 or (self.P is not None and un.shape[1] != self.P) or un.shape[0] != len(vals):
                raise StoreError(f"{self.path}: point {p.id}'s unstable eigenvectors have shape {un.shape} and "
                                 f"{len(vals)} eigenvalues: need (m, P={self.P}) and m values; not stored")
            un_blob, _, un_shape = encode_array(un)
            un_vals = to_json(vals)
        return (int(p.id), _check_kind(p.kind), p.label, float(p.loss), float(p.grad_norm),
                optional_int(p.hessian_index), to_json(dict(p.fingerprint)), params, pdt, pshape,
                spec_blob, spec_dt, spec_shape, None if p.analysis is None else to_json(dict(p.analysis)), unit,
                un_blob, un_shape, un_vals)

    def _spectrum_cols(self, point_id, spectrum) -> tuple[bytes, str, str]:
        ev = np.asarray(spectrum, dtype="<f8")
        if ev.ndim != 1 or (self.P is not None and ev.size > self.P):
            raise StoreError(f"{self.path}: point {point_id}'s spectrum has shape {ev.shape}: a Hessian spectrum is "
                             f"one vector of at most P={self.P} eigenvalues; not stored")
        return encode_array(ev)

    def _point_from_row(self, r: dict) -> PointRecord:
        """A point record from its row, every column checked (module docstring: untrusted files)."""
        pid = r["id"]
        w = _Where(self.path, "points", f"point {pid}")
        r["id"] = w.integer("id", pid)
        kind = w.text("kind", r["kind"])
        if kind not in POINT_KINDS:
            raise w.bad("kind", f"holds {kind[:40]!r}, not one of {', '.join(POINT_KINDS)}")
        r["label"] = w.text("label", r["label"], null=True)
        r["loss"] = w.num("loss", r["loss"])
        r["grad_norm"] = w.num("grad_norm", r["grad_norm"])
        r["hessian_index"] = w.integer("hessian_index", r["hessian_index"], null=True)
        r["unit"] = w.integer("unit", r["unit"], null=True)
        r["fingerprint"] = w.json_value("fingerprint", r["fingerprint"], dict)
        r["analysis"] = w.json_value("analysis", r["analysis"], dict, null=True)
        if "params" in r:
            P = self.P
            blob = r.pop("params")
            if isinstance(blob, bytes) and P is not None and len(blob) != 8 * P:
                raise w.bad("params", f"θ holds {len(blob)} bytes ({len(blob) / 8:g} float64 values), but the "
                                      f"study's model has P={P} parameters ({8 * P} bytes)")
            params = w.array("params", blob, r.pop("params_dtype"), r.pop("params_shape"), shape_col="params_shape",
                             dtype_col="params_dtype", null=False)
            if params.ndim != 1:
                raise w.bad("params_shape", f"says shape {list(params.shape)}: θ is one vector")
            r["params"] = params
            spec = w.array("spectrum", r.pop("spectrum"), r.pop("spectrum_dtype"), r.pop("spectrum_shape"),
                           shape_col="spectrum_shape", dtype_col="spectrum_dtype")
            if spec is not None and (spec.ndim != 1 or (P is not None and spec.size > P)):
                raise w.bad("spectrum_shape", f"says shape {list(spec.shape)}: a Hessian spectrum is one vector of "
                                              f"at most P={P} eigenvalues")
            r["spectrum"] = spec
            if "unstable" in r:
                un = w.array("unstable", r.pop("unstable"), _F8, r.pop("unstable_shape"), shape_col="unstable_shape")
                vals = w.json_value("unstable_values", r.pop("unstable_values"), list, null=True)
                if un is not None:
                    if un.ndim != 2 or (P is not None and un.shape[1] != P):
                        raise w.bad("unstable_shape", f"says shape {list(un.shape)}, not (m, P={P})")
                    if vals is None or len(vals) != un.shape[0]:
                        raise w.bad("unstable_values", f"holds {0 if vals is None else len(vals)} values for "
                                                       f"{un.shape[0]} unstable eigenvectors")
                if vals is not None:
                    vals = np.array([w.num("unstable_values", x) for x in vals], dtype=np.float64)
                r["unstable"], r["unstable_values"] = un, vals
            else:
                r["unstable"] = r["unstable_values"] = None
        r["kind"] = kind
        return PointRecord(**r)


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


def _check_stop_reason(reason, edge: bool = False) -> str | None:
    """A trajectory's stop reason (one of :data:`~landscape.engines.outcomes.STOP_REASONS`) or an
    edge's (an :class:`~landscape.engines.outcomes.Outcome`, its detail in parentheses, or None)
    as the plain string stored."""
    if edge and reason is None:
        return None
    if edge:
        try:
            split_detail(reason)
        except ValueError as exc:
            raise StoreError(f"edge stop reason {reason!r} is invalid: {exc}") from None
    elif reason not in STOP_REASONS:
        raise StoreError(f"stop reason {reason!r} is invalid: must be one of "
                         f"{', '.join(r.value for r in STOP_REASONS)}")
    return str(reason)


def _trajectory_row(t: TrajectoryRecord | Mapping, unit: int) -> tuple:
    t = TrajectoryRecord.from_mapping(t)
    return (int(t.idx), unit, int(t.seed), _check_stop_reason(t.stop_reason), int(bool(t.certified)),
            optional_int(t.iterations), optional_int(t.n_grad), optional_int(t.n_hvp),
            _float_or_none(t.wall_time), _float_or_none(t.loss),
            _float_or_none(t.grad_norm), None if t.engine is None else to_json(t.engine),
            optional_int(t.point_id))


def _edge_row(e: EdgeRecord | Mapping) -> tuple:
    e = EdgeRecord.from_mapping(e)
    return (int(e.saddle_id), int(e.direction), int(e.sign), optional_int(e.target_id),
            _float_or_none(e.eigenvalue), _float_or_none(e.eps),
            _float_or_none(e.barrier), _check_stop_reason(e.stop_reason, edge=True))
