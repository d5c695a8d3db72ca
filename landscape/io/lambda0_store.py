"""The database of a λ = 0 study (``DIR/lambda0.sqlite``): its batches of starts, committed one at a time.

A λ = 0 study (:mod:`landscape.study.lambda0`) decides every start's end in batches of
``batch_size`` starts; each finished batch is committed here in **one transaction**, so a run
killed at any moment loses at most the batch in flight, and the same call on the same folder
(``landscape run --resume DIR``) continues from the committed batches. The folder's other files
(directions.json, directions.npz, summary.json) are derived from this database at the end, and
direction ids are assigned then, in start order, exactly as in a run never interrupted.

Tables (stdlib :mod:`sqlite3`; ``PRAGMA application_id`` marks the file, ``PRAGMA user_version``
is the schema version):

* ``config``: the study configuration as JSON (one row) and the parameter count P.
* ``batches``: one row per committed batch (``batch``, the starts ``lo`` … ``hi − 1``, the batch's
  seconds of descent, margin flow and decision, and the environment that computed it: the
  resolved ``device`` and the ``torch`` and ``landscape`` versions; the dtype is the
  configuration's). A run resumes a study only in the environment of its committed batches
  (:meth:`Lambda0Store.check_environment`): elsewhere it is refused, never mixed. Schema
  version 1 (before the environment was recorded) is read, its batches' environment unknown
  (not compared; ``unknown`` in summary.json ``batch_environments``), and brought to version 2
  (the three columns added) when a run resumes it.
* ``starts``: one row per start, keyed by its index (a start is never stored twice): the record
  of :data:`~landscape.io.lambda0_results.START_KEYS` as JSON (exact: NaN and every float
  round-trip) and, to query, its stop reason, label and γ.
* ``thetas``: the polished θ̂ (P float64 values, little-endian bytes, never pickle) of every
  certified start that is the first, in start order, of its direction (label, γ to 9 digits):
  the θ̂ directions.npz keeps. A later start of the same direction holds the same point modulo
  relabelling, gauge and scale, and its θ̂ is not kept (it never was).
* ``check_result``: the hand-off check (``[lambda0] check_starts``) once it is done (one row).

Durability: rollback journal, ``synchronous=FULL``; the file is created whole (schema and
configuration written into a temporary file, then linked into place), so no half-created
database is ever seen. One writer at a time (an exclusive ``flock``).

Untrusted files: opening checks the application id, the schema (exactly these tables and
columns, nothing else: no view, trigger or index of anyone else's) and ``PRAGMA quick_check``;
reading checks every value (types, keys, the record's fields against
:data:`~landscape.io.lambda0_results.START_FIELDS`, numbers within the range of a float, every
batch holding exactly its starts, each start's seed, θ̂ of exactly P finite values and only for
a certified start, the hand-off check's fields, bounded text sizes) and that the stored
configuration is the resumed one.
Anything else is a :class:`Lambda0StoreError` naming the file, the table and the row.
"""
from __future__ import annotations

import json
import math
import os
import sqlite3
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.init import trajectory_seed
from ..core.jsonsafe import json_default
from ..engines.outcomes import Outcome
# the record's keys and checks, defined with the rest of what is read back (names kept importable here)
from .lambda0_results import (ENVIRONMENT_KEYS, START_FIELDS, START_KEYS, STOP_REASON_VALUES,  # noqa: F401
                              check_check_record, check_integers, check_start_record)
from .locking import lock_database
from .results import LAMBDA0_FILES, _new_file_mode

#: ``PRAGMA application_id`` of a λ = 0 study database ("LND0").
APPLICATION_ID = 0x4C4E4430
#: Schema version written by this code (1: landscape 12b11c6, without the batches' environment;
#: such a database is read, its batches' environment unknown, and brought to this version when a
#: run resumes it).
SCHEMA_VERSION = 2
#: File name of the database in a λ = 0 study folder.
DB_NAME = LAMBDA0_FILES["database"]

#: Longest record (JSON text, characters) and check record the database is read back with.
MAX_RECORD_CHARS = 64 * 1024
MAX_CHECK_CHARS = 16 * 2**20
MAX_CONFIG_CHARS = 4 * 2**20

_SCHEMA = """
CREATE TABLE config (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    json  TEXT NOT NULL,
    P     INTEGER NOT NULL
);
CREATE TABLE batches (
    batch          INTEGER PRIMARY KEY,
    lo             INTEGER NOT NULL,
    hi             INTEGER NOT NULL,
    descent_s      REAL,
    margin_flow_s  REAL,
    decide_s       REAL,
    committed_at   REAL NOT NULL
);
CREATE TABLE starts (
    idx          INTEGER PRIMARY KEY,
    batch        INTEGER NOT NULL REFERENCES batches(batch),
    stop_reason  TEXT NOT NULL,
    label        TEXT,
    gamma        REAL,
    record       TEXT NOT NULL
);
CREATE TABLE thetas (
    idx    INTEGER PRIMARY KEY REFERENCES starts(idx),
    theta  BLOB NOT NULL
);
CREATE TABLE check_result (
    id            INTEGER PRIMARY KEY CHECK (id = 1),
    json          TEXT NOT NULL,
    seconds       REAL,
    committed_at  REAL NOT NULL
);
"""
#: The statements that bring a database of schema version ``v − 1`` to version ``v`` (a new
#: database is made by :data:`_SCHEMA` and every one of them, so both have the same tables).
_MIGRATIONS = {
    2: tuple(f"ALTER TABLE batches ADD COLUMN {k} TEXT" for k in ENVIRONMENT_KEYS),
}
#: Longest text of a batch's environment value (device, torch or landscape version).
MAX_ENVIRONMENT_CHARS = 200
#: What a batch committed by schema version 1 has for each environment value.
UNKNOWN = "unknown"


class Lambda0StoreError(ValueError):
    """A λ = 0 study database that cannot be used (named in the message, with what to do)."""


def _schema_rows(con: sqlite3.Connection) -> list[tuple]:
    return sorted(con.execute("SELECT type, name, tbl_name, sql FROM sqlite_master").fetchall(),
                  key=lambda r: tuple("" if x is None else str(x) for x in r))


def _make_schema(con: sqlite3.Connection, version: int, start: int = 0) -> None:
    """Bring the tables of schema version ``start`` (0: none) to ``version``."""
    if start == 0:
        for stmt in _SCHEMA.split(";"):
            if stmt.strip():
                con.execute(stmt)
    for v in range(max(start, 1) + 1, version + 1):
        for stmt in _MIGRATIONS[v]:
            con.execute(stmt)


def _expected_schema(version: int) -> list[tuple]:
    con = sqlite3.connect(":memory:")
    try:
        _make_schema(con, version)
        return _schema_rows(con)
    finally:
        con.close()


def _dumps(obj) -> str:
    return json.dumps(obj, default=json_default, allow_nan=True)


@dataclass
class Lambda0Batch:
    """A committed batch: its starts ``lo`` … ``hi − 1``, seconds of each phase, and the
    environment that computed it (:data:`ENVIRONMENT_KEYS`: the resolved device, the torch and
    landscape versions; None: unknown, a batch committed before they were recorded)."""

    batch: int
    lo: int
    hi: int
    descent_s: float
    margin_flow_s: float
    decide_s: float
    device: str | None = None
    torch: str | None = None
    landscape: str | None = None

    @property
    def environment(self) -> dict:
        return {k: getattr(self, k) for k in ENVIRONMENT_KEYS}


def batch_environments(batches: dict[int, Lambda0Batch]) -> list[dict]:
    """The distinct environments that computed ``batches``, each with its batches in order
    (summary.json ``batch_environments``; :data:`UNKNOWN` for a batch committed before the
    environment was recorded)."""
    groups: dict[tuple, list[int]] = {}
    for b in sorted(batches):
        key = tuple(v if v is not None else UNKNOWN for v in batches[b].environment.values())
        groups.setdefault(key, []).append(b)
    return [{**dict(zip(ENVIRONMENT_KEYS, k)), "batches": v} for k, v in groups.items()]


class Lambda0Store:
    """The database of one λ = 0 study (module docstring). :meth:`open` creates it for a
    configuration or opens it and checks that it holds exactly that configuration; :meth:`read`
    returns everything committed, checked; :meth:`commit_batch` and :meth:`commit_check` write."""

    def __init__(self, con: sqlite3.Connection, path: Path, config: dict, P: int, trajectories: int,
                 batch_size: int, seed: int, lock_fd: int | None, environment: dict | None = None):
        self._con, self.path, self.config, self.P = con, path, config, P
        self.trajectories, self.batch_size, self.seed = trajectories, batch_size, seed
        self._lock_fd = lock_fd
        #: the environment of this run ({device, torch, landscape}), recorded with every batch it commits
        self.environment = dict(environment) if environment is not None else dict.fromkeys(ENVIRONMENT_KEYS)
        self.version = SCHEMA_VERSION

    # ----- opening ------------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path, config: dict, P: int, trajectories: int, batch_size: int,
             seed: int, normalise=None, environment: dict | None = None) -> "Lambda0Store":
        """The database at ``path`` for the study whose ``config`` (its ``to_dict``) has P
        parameters: created if absent, else opened, checked, and refused where it holds another
        configuration (the stored one compared as ``normalise`` reads it, e.g. fields added
        since with their defaults); a database of an earlier schema version is brought to this
        one. ``environment``: this run's {device, torch, landscape}, recorded with every batch
        it commits (:meth:`check_environment` compares it with the committed batches')."""
        path = Path(path)
        if path.is_symlink():
            raise Lambda0StoreError(f"{path} is a symbolic link: landscape never writes through one; remove it")
        if not path.exists():
            cls._create(path, config, P)
        fd = cls._lock(path)
        try:
            con = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
        except sqlite3.Error as e:
            os.close(fd)
            raise Lambda0StoreError(f"{path} is not a readable SQLite database: {e}") from None
        store = cls(con, path, config, int(P), int(trajectories), int(batch_size), int(seed), fd, environment)
        try:
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA foreign_keys=ON")
            store._check_file()
            if store.version < SCHEMA_VERSION:
                store._migrate()
            stored = store.stored_config()
            if normalise is not None:
                stored = normalise(stored)
            if json.loads(_dumps(stored)) != json.loads(_dumps(config)):
                raise Lambda0StoreError(
                    f"{path} holds a λ = 0 study with a different configuration than this one: continue it with "
                    f"`landscape run --resume {path.parent}` (its own configuration), or write to another folder")
        except sqlite3.DatabaseError as e:
            store.close()
            raise Lambda0StoreError(f"{path} is not a readable λ = 0 study database: {e}") from None
        except BaseException:
            store.close()
            raise
        return store

    @staticmethod
    def read_config(path: str | Path) -> dict:
        """The configuration stored in the database at ``path`` (the file checked; nothing written
        but the rollback of a transaction a killed run left)."""
        path = Path(path)
        if not path.is_file():
            raise Lambda0StoreError(f"{path} does not exist: not an interrupted λ = 0 study")
        if path.is_symlink():
            raise Lambda0StoreError(f"{path} is a symbolic link: landscape never reads a study through one")
        try:   # read-write: a batch left half-written by a killed run is rolled back (its journal)
            con = sqlite3.connect(str(path), isolation_level=None, timeout=60.0)
        except sqlite3.Error as e:
            raise Lambda0StoreError(f"{path} is not a readable SQLite database: {e}") from None
        store = Lambda0Store(con, path, {}, 0, 0, 1, 0, None)
        try:
            store._check_file()
            return store.stored_config()
        except sqlite3.DatabaseError as e:
            raise Lambda0StoreError(f"{path} is not a readable λ = 0 study database: {e}") from None
        finally:
            store.close()

    @staticmethod
    def _create(path: Path, config: dict, P: int) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
        os.fchmod(fd, _new_file_mode())   # mkstemp makes 0600; results are ordinary files
        os.close(fd)
        try:
            con = sqlite3.connect(tmp, isolation_level=None)
            try:
                con.execute("PRAGMA journal_mode=DELETE")
                con.execute("BEGIN IMMEDIATE")
                _make_schema(con, SCHEMA_VERSION)
                con.execute("INSERT INTO config (id, json, P) VALUES (1, ?, ?)", (_dumps(config), int(P)))
                con.execute(f"PRAGMA application_id = {APPLICATION_ID}")
                con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                con.execute("COMMIT")
            finally:
                con.close()
            with open(tmp, "rb+") as fh:
                os.fsync(fh.fileno())
            try:
                os.link(tmp, path)   # never over an existing file (a second run creating it at once)
            except FileExistsError:
                pass
        finally:
            Path(tmp).unlink(missing_ok=True)
            Path(tmp + "-journal").unlink(missing_ok=True)

    @staticmethod
    def _lock(path: Path) -> int:
        """An exclusive advisory lock on the database file for this writer (released by close);
        :meth:`open` has refused a symbolic link already (:func:`landscape.io.locking.lock_database`)."""
        return lock_database(path, Lambda0StoreError, "λ = 0 study", flags=os.O_RDWR, wrap_open=True)

    def _check_file(self) -> None:
        con = self._con
        app = con.execute("PRAGMA application_id").fetchone()[0]
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if app != APPLICATION_ID:
            raise Lambda0StoreError(f"{self.path} is not a λ = 0 study database (application id {app:#x})")
        if not (isinstance(version, int) and 1 <= version <= SCHEMA_VERSION):
            raise Lambda0StoreError(f"{self.path} has schema version {version}; this version of landscape reads "
                                    f"1 … {SCHEMA_VERSION}: resume it with the version of landscape that wrote it")
        self.version = version
        if _schema_rows(con) != _expected_schema(version):
            raise Lambda0StoreError(f"{self.path}: its tables are not those of a λ = 0 study database (an extra or "
                                    "altered table, view, trigger or index): refused")
        rows = [r[0] for r in con.execute("PRAGMA quick_check").fetchall()]
        if rows != ["ok"]:
            raise Lambda0StoreError(f"{self.path} is damaged (PRAGMA quick_check: {'; '.join(map(str, rows[:3]))})")

    def _migrate(self) -> None:
        """Bring a database of an earlier schema version to :data:`SCHEMA_VERSION` (one
        transaction; its batches' environment stays unknown)."""
        def migrate(con):
            _make_schema(con, SCHEMA_VERSION, start=self.version)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        self._transaction(f"the update of its schema version {self.version} to {SCHEMA_VERSION}", migrate)
        self.version = SCHEMA_VERSION

    def stored_config(self) -> dict:
        rows = self._con.execute("SELECT id, length(json), typeof(json), P FROM config").fetchall()
        if len(rows) != 1 or rows[0][2] != "text" or not isinstance(rows[0][3], int) or rows[0][3] <= 0:
            raise Lambda0StoreError(f"{self.path}: table config must hold one row with the configuration and P")
        if rows[0][1] > MAX_CONFIG_CHARS:
            raise Lambda0StoreError(f"{self.path}: config.json holds {rows[0][1]} characters; refused")
        text = self._con.execute("SELECT json FROM config").fetchone()[0]
        try:
            cfg = json.loads(text)
        except (ValueError, RecursionError) as e:
            raise Lambda0StoreError(f"{self.path}: table config: not JSON ({e})") from None
        if not isinstance(cfg, dict):
            raise Lambda0StoreError(f"{self.path}: table config: the configuration must be an object")
        try:
            check_integers(cfg, f"{self.path}: table config, row 1")
        except ValueError as e:
            raise Lambda0StoreError(f"{e}; refused (move the file away to recompute)") from None
        if self.P and rows[0][3] != self.P:
            raise Lambda0StoreError(f"{self.path}: table config: P = {rows[0][3]}, the study's model has {self.P}")
        return cfg

    def close(self) -> None:
        if self._con is not None:
            self._con.close()
            self._con = None
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # ----- reading ------------------------------------------------------------------------------
    def n_batches(self) -> int:
        return -(-self.trajectories // self.batch_size)

    def batch_range(self, b: int) -> tuple[int, int]:
        lo = b * self.batch_size
        return lo, min(lo + self.batch_size, self.trajectories)

    def _bad(self, table: str, row, what: str) -> Lambda0StoreError:
        return Lambda0StoreError(f"{self.path}: table {table}, row {row}: {what}; the file was not written by this "
                                 "version of landscape, or was altered: refused (move it away to recompute)")

    def read(self) -> tuple[dict[int, Lambda0Batch], dict[int, dict], dict[int, np.ndarray], dict | None]:
        """Everything committed, checked (module docstring): ``(batches, records, thetas,
        check)``: {batch: :class:`Lambda0Batch`}, {start index: record (``direction_id`` None)},
        {start index: θ̂ (P,)}, and the stored check (or None)."""
        con, T = self._con, self.trajectories
        n = con.execute("SELECT (SELECT count(*) FROM batches), (SELECT count(*) FROM starts), "
                        "(SELECT count(*) FROM thetas), (SELECT count(*) FROM check_result)").fetchone()
        if n[0] > self.n_batches() or n[1] > T or n[2] > n[1] or n[3] > 1:
            raise Lambda0StoreError(f"{self.path} holds {n[0]} batches, {n[1]} starts, {n[2]} θ̂: more than a study "
                                    f"of {T} starts in batches of {self.batch_size} has; refused")
        batches: dict[int, Lambda0Batch] = {}
        env = ", ".join(ENVIRONMENT_KEYS) if self.version >= 2 else ", ".join(["NULL"] * len(ENVIRONMENT_KEYS))
        for row in con.execute(f"SELECT batch, lo, hi, descent_s, margin_flow_s, decide_s, {env} FROM batches"):
            b, lo, hi, *secs = row[:6]
            if not (isinstance(b, int) and 0 <= b < self.n_batches()) or (lo, hi) != self.batch_range(b):
                raise self._bad("batches", b, f"batch {b!r} of starts {lo!r}…{hi!r} is not one of this study's "
                                f"batches ({self.batch_size} starts each)")
            if not all(s is None or isinstance(s, float) for s in secs):
                raise self._bad("batches", b, "seconds must be numbers")
            if not all(v is None or (isinstance(v, str) and 0 < len(v) <= MAX_ENVIRONMENT_CHARS) for v in row[6:]):
                raise self._bad("batches", b, f"its environment ({', '.join(ENVIRONMENT_KEYS)}) must be text of at "
                                f"most {MAX_ENVIRONMENT_CHARS} characters")
            batches[b] = Lambda0Batch(b, lo, hi, *[float(s) if s is not None else 0.0 for s in secs], *row[6:])
        longest = con.execute("SELECT max(length(CAST(record AS BLOB))) FROM starts").fetchone()[0]
        if longest is not None and longest > MAX_RECORD_CHARS:
            raise Lambda0StoreError(f"{self.path}: table starts holds a record of {longest} bytes (at most "
                                    f"{MAX_RECORD_CHARS}); refused")
        recs: dict[int, dict] = {}
        for idx, b, reason, label, gamma, text in con.execute(
                "SELECT idx, batch, stop_reason, label, gamma, record FROM starts ORDER BY idx"):
            if not isinstance(idx, int) or b not in batches or not batches[b].lo <= idx < batches[b].hi:
                raise self._bad("starts", idx, f"start {idx!r} is not a start of its batch {b!r}")
            if not isinstance(text, str):
                raise self._bad("starts", idx, "the record must be JSON text")
            try:
                rec = check_start_record(json.loads(text), f"{self.path}: table starts, row {idx}")
            except (ValueError, RecursionError, OverflowError) as e:
                raise Lambda0StoreError(f"{e}; refused (move the file away to recompute)") from None
            if rec["index"] != idx or rec["direction_id"] is not None:
                raise self._bad("starts", idx, "the record's index differs from its row, or it has a direction id")
            if rec["seed"] != trajectory_seed(self.seed, idx):
                raise self._bad("starts", idx, "its seed is not this study's seed of that start")
            if (reason, label) != (rec["stop_reason"], rec["label"]) or not (
                    gamma == rec["gamma"] or (gamma is None and (rec["gamma"] is None or not math.isfinite(rec["gamma"])))):
                raise self._bad("starts", idx, "the columns stop_reason, label and gamma differ from the record")
            recs[idx] = rec
        for b in batches.values():
            have = sum(1 for i in range(b.lo, b.hi) if i in recs)
            if have != b.hi - b.lo:
                raise self._bad("batches", b.batch, f"the batch holds {have} of its {b.hi - b.lo} starts")
        if len(recs) != sum(b.hi - b.lo for b in batches.values()):
            raise Lambda0StoreError(f"{self.path}: table starts holds starts of no committed batch; refused")
        thetas: dict[int, np.ndarray] = {}
        for idx, blob in con.execute("SELECT idx, theta FROM thetas"):
            if idx not in recs or recs[idx]["stop_reason"] != Outcome.CERTIFIED:
                raise self._bad("thetas", idx, "θ̂ of a start that is not a stored certified start")
            if not isinstance(blob, bytes) or len(blob) != 8 * self.P:
                raise self._bad("thetas", idx, f"θ̂ must be {self.P} float64 values ({8 * self.P} bytes), not "
                                f"{len(blob) if isinstance(blob, bytes) else type(blob).__name__}")
            th = np.frombuffer(blob, dtype="<f8").astype(np.float64)
            if not np.all(np.isfinite(th)):
                raise self._bad("thetas", idx, "θ̂ holds a non-finite value")
            thetas[idx] = th
        check = None
        row = con.execute("SELECT length(CAST(json AS BLOB)), json FROM check_result").fetchone()
        if row is not None:
            if row[0] is None or row[0] > MAX_CHECK_CHARS or not isinstance(row[1], str):
                raise self._bad("check_result", 1, "the check must be JSON text of bounded size")
            try:
                check = check_check_record(json.loads(row[1]), "the check")
            except (ValueError, RecursionError, OverflowError) as e:
                raise self._bad("check_result", 1, f"not a hand-off check this version reads ({e})") from None
        return batches, recs, thetas, check

    def check_environment(self, batches: dict[int, Lambda0Batch]) -> None:
        """Refuse (:class:`Lambda0StoreError`) to compute more of this study in an environment
        other than the one its committed ``batches`` were computed in (the resolved device, the
        torch and landscape versions): the starts of one study would not be of one computation.
        A value a batch does not know (schema version 1) is not compared."""
        here = self.environment
        for b in sorted(batches):
            theirs = batches[b].environment
            differ = [f"{k} {theirs[k]} (this run: {here[k]})" for k in ENVIRONMENT_KEYS
                      if theirs[k] is not None and here[k] is not None and theirs[k] != here[k]]
            if differ:
                raise Lambda0StoreError(
                    f"{self.path}: batch {b} was computed with {', '.join(differ)}: the batches of one study are "
                    f"computed in one environment. Resume it where it was run (device {theirs['device']}, torch "
                    f"{theirs['torch']}, landscape {theirs['landscape']}), or write to another folder (a new run)")

    # ----- writing ------------------------------------------------------------------------------
    def _transaction(self, what: str, fn) -> None:
        con = self._con
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                fn(con)
                con.execute("COMMIT")
            except BaseException:
                # a COMMIT that failed (SQLITE_FULL, SQLITE_IOERR) may have rolled back already: an
                # explicit ROLLBACK would then raise "no transaction is active" over the real error
                if con.in_transaction:
                    try:
                        con.execute("ROLLBACK")
                    except sqlite3.Error:
                        pass
                raise
        except sqlite3.OperationalError as e:
            if "full" in str(e).lower():
                raise Lambda0StoreError(f"{self.path}: the disk is full ({e}): {what} was not stored; every batch "
                                        "committed before is kept: free some space and resume") from None
            raise
        except sqlite3.IntegrityError as e:
            raise Lambda0StoreError(f"{self.path}: {what} is already stored ({e})") from None

    def commit_batch(self, batch: int, recs: list[dict], thetas: dict[int, np.ndarray], seconds: dict) -> list[str]:
        """Store batch ``batch`` (its records in start order, θ̂ by start index, ``seconds``: its
        ``descent_s``, ``margin_flow_s``, ``decide_s``) in one transaction; return the records'
        JSON texts as stored."""
        lo, hi = self.batch_range(batch)
        if [r["index"] for r in recs] != list(range(lo, hi)):
            raise ValueError(f"batch {batch} holds starts {lo}…{hi - 1}")
        texts = [_dumps(r) for r in recs]

        def write(con):
            con.execute("INSERT INTO batches (batch, lo, hi, descent_s, margin_flow_s, decide_s, committed_at, "
                        f"{', '.join(ENVIRONMENT_KEYS)}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                        (batch, lo, hi, float(seconds.get("descent_s", 0.0)), float(seconds.get("margin_flow_s", 0.0)),
                         float(seconds.get("decide_s", 0.0)), time.time(),
                         *(self.environment[k] for k in ENVIRONMENT_KEYS)))
            for r, t in zip(recs, texts):
                g = r["gamma"]
                con.execute("INSERT INTO starts (idx, batch, stop_reason, label, gamma, record) VALUES (?, ?, ?, ?, ?, ?)",
                            (int(r["index"]), batch, str(r["stop_reason"]), r["label"],
                             float(g) if g is not None and math.isfinite(g) else None, t))
            for i, th in sorted(thetas.items()):
                arr = np.ascontiguousarray(th, dtype="<f8").reshape(-1)
                if arr.size != self.P:
                    raise ValueError(f"θ̂ of start {i} has {arr.size} values, not P = {self.P}")
                con.execute("INSERT INTO thetas (idx, theta) VALUES (?, ?)", (int(i), arr.tobytes()))

        self._transaction(f"batch {batch} (starts {lo}…{hi - 1})", write)
        return texts

    def commit_check(self, check: dict, seconds: float) -> None:
        """Store the hand-off check (one row)."""
        self._transaction("the hand-off check", lambda con: con.execute(
            "INSERT INTO check_result (id, json, seconds, committed_at) VALUES (1, ?, ?, ?)",
            (_dumps(check), float(seconds), time.time())))

    def check_seconds(self) -> float | None:
        row = self._con.execute("SELECT seconds FROM check_result").fetchone()
        return float(row[0]) if row is not None and isinstance(row[0], float) else None
