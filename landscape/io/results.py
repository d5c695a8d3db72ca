"""The results folder: file names, atomic and symlink-safe writes, the spectra export.

Every file the package writes into a results folder goes through :func:`atomic_write_bytes`:
the content is written to a new temporary file created *exclusively* in the same folder
(``tempfile.mkstemp``: O_CREAT | O_EXCL, a random name, so no planted file or symlink is ever
opened for writing), flushed to disk, then renamed over the destination with ``os.replace``.
Renaming replaces a directory entry: if the destination is a symlink, the link itself is
replaced and whatever it pointed to is left untouched. A reader never sees half a file, and a
run killed mid-write leaves at most a stray ``.tmp-*`` file. A write the file system refuses (a
full disk, a read-only folder) is raised as an OSError of the same errno that names the
destination, never the temporary file, and, for a full disk, says that the destination keeps its
previous content and that what was finished before is kept.
"""
from __future__ import annotations

import errno
import io
import json
import os
import tempfile
import zipfile
import zlib
from pathlib import Path

import numpy as np
from numpy.lib import format as npy

from ..core.jsonsafe import json_default

#: Database file of a study folder.
DB_NAME = "study.sqlite"
#: Files of a study results folder (summary.json "files").
FILES = {"config": "config.json", "summary": "summary.json", "database": DB_NAME, "spectra": "spectra.npz",
         "tree": "tree.json", "graphml": "graph.graphml", "report": "report.html"}
#: Files of a sweep results folder.
SWEEP_FILES = {"sweep": "sweep.json", "prevalence": "prevalence.csv", "report": "report.html", "cells": "cells"}
#: Files a ``landscape net`` results folder holds besides the study files.
NET_FILES = {"training": "train.npz", "checkpoint": "train.partial.npz"}
#: Files a λ = 0 study folder holds besides config.json and summary.json
#: (:mod:`landscape.study.lambda0`): every start's decided end, the certified directions' θ, and
#: the database its batches are committed to (:mod:`landscape.io.lambda0_store`).
LAMBDA0_FILES = {"starts": "directions.json", "directions": "directions.npz", "database": "lambda0.sqlite"}
#: Everything a landscape results folder may hold that the package wrote (the study files, their
#: SQLite journals, the per-point spectra folder and the continuation outputs).
OWN_NAMES = frozenset(FILES.values()) | {DB_NAME + "-wal", DB_NAME + "-shm", DB_NAME + "-journal", "spectra",
                                         "continuation.json", "continuation-d.json"} | frozenset(NET_FILES.values()) \
    | frozenset(LAMBDA0_FILES.values()) | {LAMBDA0_FILES["database"] + "-journal"}


def _new_file_mode() -> int:
    """0666 minus the process umask: the mode ``open()`` would give a new file."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and without following symlinks (module docstring).
    A folder that is a symbolic link inside a results folder (a planted ``spectra`` link) is
    refused: the temporary file would be created in the link's target."""
    path = Path(path)
    if path.parent.is_symlink() and results_folder_of(path.parent.parent) is not None:
        raise OutputError(f"{path.parent} is a symbolic link inside the results folder {results_folder_of(path.parent.parent)}: "
                          "landscape never writes through it; remove the link")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    except OSError as exc:
        raise _write_refused(path, exc) from None
    try:
        os.fchmod(fd, _new_file_mode())  # mkstemp makes 0600; results are ordinary files
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            Path(tmp).unlink(missing_ok=True)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise _write_refused(path, exc) from None
        raise
    return path


def _write_refused(path: Path, exc: OSError) -> OSError:
    """The OSError of a refused :func:`atomic_write_bytes` (module docstring): the same errno (so
    the same subclass: PermissionError, …), ``filename`` the destination ``path`` (never the
    temporary file), and for a full disk or quota the words that say what is kept. ``reason``: the
    file system's own words."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        text = (f"{reason}: the disk is full, so {path.name} was not written (an earlier {path.name}, if any, "
                "is unchanged); everything finished before it is kept: free some space and run the command again")
    else:
        text = reason
    new = OSError(exc.errno, text, str(path)) if exc.errno is not None else OSError(text)
    if exc.errno is None:
        new.filename = str(path)
    new.reason = reason
    return new


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def write_json(path: str | Path, obj) -> Path:
    """JSON (indented; numpy values converted) written with :func:`atomic_write_bytes`."""
    return atomic_write_text(path, json.dumps(obj, indent=2, default=json_default, allow_nan=True))


def read_json(path: str | Path):
    """JSON from ``path``; a parse error names the file (ValueError)."""
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not UTF-8 text: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path} is not valid JSON: {exc}") from None


# ----- spectra export -----------------------------------------------------------------------------
def stored_spectra(analysis: dict, spectrum) -> dict:
    """The :func:`write_spectra` entry of a stored point from its analysis record (as a study
    database holds it) and its spectrum array, without re-analysis."""
    h, ranks = analysis["hessian"], analysis["structure"]["ranks"]
    return {"spectrum": np.asarray(spectrum, dtype=np.float64), "method": h["method"],
            "parts": {k: np.asarray(v, dtype=np.float64) for k, v in h["parts"].items()},
            "sv": {k: np.asarray(r["singular_values"], dtype=np.float64) for k, r in ranks.items()}}


def analysis_spectra(a) -> dict:
    """The :func:`write_spectra` entry of a :class:`~landscape.analysis.point.PointAnalysis`."""
    return {"spectrum": a.spectrum, "method": a.hessian.method, "parts": a.hessian.parts, "sv": a.singular_values}


def write_spectra(path: str | Path, entries, ids) -> None:
    """Write one entry {'spectrum', 'method', 'parts': {...}, 'sv': {...}} per id to ``path``
    (.npz), keyed ``"{id}/spectrum"``, ``"{id}/method"``, ``"{id}/parts/{name}"`` and
    ``"{id}/sv/{layer}"``."""
    ids = [str(i) for i in ids]
    if len(ids) != len(entries) or len(set(ids)) != len(ids):
        raise ValueError("write_spectra needs one distinct id per entry")
    arrays = {}
    for i, e in zip(ids, entries):
        if "/" in i:
            raise ValueError(f"point id {i!r} must not contain '/'")
        arrays[f"{i}/spectrum"] = e["spectrum"]
        arrays[f"{i}/method"] = np.array(e["method"])
        for k, v in e["parts"].items():
            arrays[f"{i}/parts/{k}"] = v
        for k, v in e["sv"].items():
            arrays[f"{i}/sv/{k}"] = v
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


#: Largest uncompressed size of one spectra.npz member (and of all of them together) that
#: :func:`load_spectra` decompresses: a results folder is untrusted input, and a few megabytes of
#: zip can declare gigabytes (a zip bomb). Callers that know the study's parameter count P pass
#: the tighter :func:`spectra_member_bound`.
SPECTRA_MAX_MEMBER_BYTES = 256 * 2**20
SPECTRA_MAX_TOTAL_BYTES = 512 * 2**20
#: Room for the .npy header of a member (numpy writes 128 bytes for the vectors of spectra.npz).
NPY_HEADER_BYTES = 4096


def spectra_member_bound(P: int | None) -> int:
    """Largest uncompressed size of a spectra.npz member of a study with P parameters: every array
    :func:`write_spectra` stores is a vector of at most P float64 values (spectrum, Lanczos parts,
    singular values) or a short string, so 8·P bytes plus the .npy header; at most
    :data:`SPECTRA_MAX_MEMBER_BYTES` (also when P is unknown)."""
    if P is None:
        return SPECTRA_MAX_MEMBER_BYTES
    return min(SPECTRA_MAX_MEMBER_BYTES, 8 * max(int(P), 0) + NPY_HEADER_BYTES)


def _npy_member_size(zf, info) -> int:
    """Bytes the .npy member ``info`` holds by its own header (header + shape × item size),
    read without decompressing the data; refuses object arrays (pickles)."""
    with zf.open(info) as fh:
        version = npy.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = npy.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = npy.read_array_header_2_0(fh)
        else:
            raise ValueError(f"member {info.filename!r} has .npy version {version}, not 1.0 or 2.0")
        if dtype.hasobject:
            raise ValueError(f"member {info.filename!r} holds Python objects (a pickle): refused")
        return fh.tell() + int(np.prod(shape, dtype=object)) * dtype.itemsize


def _npz_arrays(path, *, max_member_bytes: int, max_total_bytes: int, max_members: int | None,
                member_bound: str, total_bound: str) -> list[tuple[str, np.ndarray]]:
    """(name, array) of every member of the .npz file ``path``, untrusted input, in file order:
    the checks of :func:`load_arrays`. Raises :class:`_SpectraRefused` for a size refused (its
    message with ``member_bound`` / ``total_bound``: what the bound is) and the zip, zlib and numpy
    errors of a damaged file."""
    out: list[tuple[str, np.ndarray]] = []
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if max_members is not None and len(infos) > max_members:
            raise _SpectraRefused(f"{path} holds {len(infos)} members, more than {max_members}; refused")
        for info in infos:
            if info.file_size > max_member_bytes:
                raise _SpectraRefused(f"{path}: member {info.filename!r} would decompress to {info.file_size} bytes, "
                                      f"more than the {max_member_bytes} bytes {member_bound}; refused (not a file "
                                      "landscape wrote)")
        total = sum(info.file_size for info in infos)
        if total > max_total_bytes:
            raise _SpectraRefused(f"{path} would decompress to {total} bytes in all, more than the "
                                  f"{max_total_bytes} bytes {total_bound}; refused")
        seen = set()
        for info in infos:
            if not info.filename.endswith(".npy") or info.is_dir():
                raise ValueError(f"member {info.filename!r} is not a .npy array")
            if _npy_member_size(zf, info) != info.file_size:
                raise ValueError(f"member {info.filename!r}: its .npy header does not match its size")
            name = info.filename[:-len(".npy")]
            if name in seen:
                raise ValueError(f"member {info.filename!r} appears twice")
            seen.add(name)
            with zf.open(info) as fh:
                out.append((name, npy.read_array(fh, allow_pickle=False)))
    return out


#: What a damaged .npz file raises while it is read (re-raised as a ValueError naming the file).
_NPZ_ERRORS = (EOFError, OSError, ValueError, KeyError, RuntimeError, NotImplementedError)


def load_spectra(path: str | Path, *, max_member_bytes: int = SPECTRA_MAX_MEMBER_BYTES,
                 max_total_bytes: int = SPECTRA_MAX_TOTAL_BYTES) -> dict:
    """Read :func:`write_spectra` output: {id: {'spectrum', 'method', 'parts': {...}, 'sv': {...}}}.

    The file is untrusted: before anything is decompressed, every member's uncompressed size (the
    zip's own headers, which also cap what is decompressed) must be at most ``max_member_bytes``
    and all of them together at most ``max_total_bytes``, and every member must be a .npy array
    whose header declares exactly its size (no pickles: ``allow_pickle=False``). A damaged or
    refused file is a ValueError naming it."""
    out: dict = {}
    try:
        for key, arr in _npz_arrays(path, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes,
                                    max_members=None, member_bound="a spectra member of this study can hold",
                                    total_bound="a report reads from a spectra file"):
            i, rest = key.split("/", 1)
            d = out.setdefault(i, {"parts": {}, "sv": {}})
            if rest == "method":
                d["method"] = str(arr)
            elif rest == "spectrum":
                d["spectrum"] = arr
            else:
                group, name = rest.split("/", 1)
                d[group][name] = arr
    except _SpectraRefused as exc:
        raise ValueError(str(exc)) from None
    except (zipfile.BadZipFile, zlib.error, *_NPZ_ERRORS) as exc:
        raise ValueError(f"{path} is not a readable spectra file ({type(exc).__name__}: {exc}); "
                         "delete it and run `landscape run --resume` on its folder, which rewrites it") from None
    return out


def load_arrays(path: str | Path, *, max_member_bytes: int, max_total_bytes: int, max_members: int = 10_000) -> dict:
    """The arrays of an .npz file that is untrusted input, as :func:`load_spectra` reads one: at
    most ``max_members`` members, each of at most ``max_member_bytes`` and all together at most
    ``max_total_bytes`` uncompressed (checked before anything is decompressed), every member a
    .npy array whose header declares exactly its size, no pickles. {name: array}; a damaged or
    refused file is a ValueError naming it."""
    try:
        return dict(_npz_arrays(path, max_member_bytes=max_member_bytes, max_total_bytes=max_total_bytes,
                                max_members=max_members, member_bound="a member may hold",
                                total_bound="such a file may hold"))
    except _SpectraRefused as exc:
        raise ValueError(str(exc)) from None
    except (zipfile.BadZipFile, zlib.error, *_NPZ_ERRORS) as exc:
        raise ValueError(f"{path} is not a readable .npz file ({type(exc).__name__}: {exc})") from None


class _SpectraRefused(Exception):
    """A spectra file refused for its size (re-raised as ValueError with this message)."""


# ----- where results may be written -------------------------------------------------------------
class OutputError(ValueError):
    """A results folder or output file that must not be written to (named in the message)."""


def _present(path: Path) -> bool:
    """Whether ``path`` is there: a file, a folder, or a symbolic link (a dangling one too)."""
    return path.exists() or path.is_symlink()


def has_study_database(folder: str | Path) -> bool:
    """Whether ``folder`` holds ``study.sqlite`` (a λ > 0 study), or a symbolic link of that name."""
    return _present(Path(folder) / DB_NAME)


def has_lambda0_database(folder: str | Path) -> bool:
    """Whether ``folder`` holds ``lambda0.sqlite`` (a λ = 0 study, finished or not), or a
    symbolic link of that name (refused when opened: landscape never reads a study through one)."""
    return _present(Path(folder) / LAMBDA0_FILES["database"])


def folder_kind(path: str | Path) -> str | None:
    """'study' (a folder holding ``study.sqlite``), 'sweep' (holding ``sweep.json``) or None."""
    path = Path(path)
    if not path.is_dir():
        return None
    if (path / SWEEP_FILES["sweep"]).exists():
        return "sweep"
    if has_study_database(path):
        return "study"
    return None


def is_net_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a ``landscape net`` run (its training file or a net config.json)."""
    path = Path(path)
    if (path / NET_FILES["training"]).is_file():
        return True
    try:
        cfg = read_json(path / FILES["config"])
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and "net" in cfg and "model" not in cfg


def results_folder_of(path: str | Path) -> Path | None:
    """The nearest study or sweep folder that is ``path`` or holds it at any depth, or None."""
    p = Path(os.path.abspath(path))
    for anc in (p, *p.parents):
        if folder_kind(anc):
            return anc
    return None


def owned_by_results_folder(path: str | Path) -> Path | None:
    """The results folder that owns ``path``: a file or folder of a study or sweep at any depth
    (its first component below that folder one of the names the package writes: the database
    and its journals, summary, spectra/…, cells/…, continuation files, …), or None. A sweep's
    cells are studies of their own, owned twice."""
    p = Path(os.path.abspath(path))
    for anc in p.parents:
        kind = folder_kind(anc)
        if kind:
            first = p.relative_to(anc).parts[0]
            names = OWN_NAMES | set(SWEEP_FILES.values()) if kind == "sweep" else OWN_NAMES
            if first in names:
                return anc
    return None


def is_sqlite_file(path: str | Path) -> bool:
    """Whether ``path`` is a regular file that starts with SQLite's header (a database)."""
    try:
        with open(path, "rb") as fh:
            return fh.read(16) == b"SQLite format 3\x00"
    except OSError:
        return False


def check_writable_folder(folder: str | Path, what: str) -> Path:
    """Refuse at once (before any computation) a results folder this command cannot write into:
    a real probe (an exclusive temporary file, removed again), so read-only mounts are caught as
    well as permissions. ``what`` says what the command would write there."""
    folder = Path(folder)
    try:
        fd, tmp = tempfile.mkstemp(prefix=".landscape-probe-", dir=folder)
    except OSError as exc:
        raise OutputError(f"{folder} is not writable ({exc.strerror or exc}): {what} would be written there; "
                          "copy the study to a writable folder") from None
    os.close(fd)
    os.unlink(tmp)
    return folder


def own_subfolder(folder: str | Path, name: str) -> Path:
    """``folder/name`` as a real sub-folder of a results folder, created if missing; a symbolic
    link or a file there is an :class:`OutputError` (landscape never writes through a link)."""
    d = Path(folder) / name
    if d.is_symlink():
        raise OutputError(f"{d} is a symbolic link inside a results folder: landscape never writes through it; "
                          "remove the link (the folder is recreated)")
    if d.exists() and not d.is_dir():
        raise OutputError(f"{d} is a file where the results folder keeps a folder: move it away")
    d.mkdir(exist_ok=True)
    return d


def _writable_place(path: Path) -> None:
    probe = path
    while not probe.exists():
        if probe.parent == probe:
            break
        probe = probe.parent
    if not probe.is_dir():
        raise OutputError(f"{path}: {probe} is a file, not a folder")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise OutputError(f"{path}: {probe} is not writable (a read-only place); choose another folder")


def check_results_folder(path: str | Path, force: bool = False) -> Path:
    """Check that a study may be written into ``path``: a new folder, an empty one, or one that
    already holds a study (resumed or refused later by the study itself). A file, an unwritable
    place, or a non-empty folder without a study (someone's files) is an :class:`OutputError`
    naming what is there, unless ``force``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise OutputError(f"--out {path} is a file, not a folder")
    if folder_kind(path) == "sweep":
        raise OutputError(f"--out {path} is a sweep folder (it holds sweep.json): a study goes into a folder of its own")
    if owned_by_results_folder(path) is not None and folder_kind(path) != "study":
        raise OutputError(f"--out {path} is inside the results folder {owned_by_results_folder(path)} "
                          "(a folder it keeps): choose another folder")
    if path.is_dir():
        entries = sorted(os.listdir(path))
        if entries and DB_NAME not in entries and LAMBDA0_FILES["database"] not in entries and not force:
            shown = ", ".join(entries[:6]) + (f", … ({len(entries)} entries)" if len(entries) > 6 else "")
            raise OutputError(f"--out {path} is not empty and holds no study ({shown}): choose a new or empty "
                              "folder, or pass --force to write into it (files of the same names are replaced)")
    _writable_place(path)
    return path


def check_output_file(path: str | Path, protected_dir: str | Path | None = None, force: bool = False) -> Path:
    """Check that an export may write ``path``: never a file or folder that any study or sweep
    folder owns, at any depth (:func:`owned_by_results_folder`; ``protected_dir`` too), never a
    database, a directory, a FIFO or device, never into a missing folder, and over another
    existing file only with ``force``. Raises :class:`OutputError` naming the file."""
    path = Path(path)
    if path.is_dir():
        raise OutputError(f"-o {path} is a directory: give a file name")
    if path.exists() and not path.is_file():
        raise OutputError(f"-o {path} is not a regular file (a FIFO, socket or device): give a file name, "
                          "or leave -o out to write to standard output")
    owner = owned_by_results_folder(path)
    if owner is not None:
        raise OutputError(f"-o {path} is a file of the results folder {owner}: exports never write over it "
                          "(nor into anything a study or sweep keeps), with or without --force")
    if is_sqlite_file(path):
        raise OutputError(f"-o {path} is a database: exports never write over one, with or without --force")
    if not path.parent.exists():
        raise OutputError(f"-o {path}: the folder {path.parent} does not exist")
    if not path.parent.is_dir():
        raise OutputError(f"-o {path}: {path.parent} is not a folder")
    if protected_dir is not None:
        own = {(Path(protected_dir) / n).resolve() for n in OWN_NAMES}
        if path.resolve() in own or (path.exists() and any(path.samefile(p) for p in own if p.exists())):
            raise OutputError(f"-o {path} is a file of the study in {protected_dir}: exports never write over it")
    if (path.exists() or path.is_symlink()) and not force:
        raise OutputError(f"-o {path} already exists: pass --force to replace it")
    _writable_place(path.parent)
    return path
