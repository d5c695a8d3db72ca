"""A λ = 0 study's records and finished folder, read back as untrusted input (torch-free).

A λ = 0 study (:mod:`landscape.study.lambda0`) keeps every start's record (:data:`START_KEYS`)
in its database (:mod:`landscape.io.lambda0_store`) and, once finished, in directions.json, with
summary.json (``"kind": "lambda0"``) and directions.npz (θ̂ of every distinct certified
direction). Everything here reads those values back and checks them before anything uses them:
one type checker (:func:`check_fields`: integers, numbers, strings, objects and lists, null where
allowed; a number must fit a float and an integer 64 bits, so a 400-digit integer is refused
here, not later as an OverflowError), the start record (:func:`check_start_record`), the hand-off
check (:func:`check_check_record`), the summary (:func:`check_lambda0_summary`), and the
finished folder's starts and directions (:func:`read_lambda0_starts`,
:func:`read_lambda0_directions`). A refused value is a ValueError naming the file and the row.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.spec import factor_offsets, factor_shapes
from ..engines.outcomes import LAMBDA0_STOP_REASONS, Outcome
from .results import FILES, LAMBDA0_FILES, NPY_HEADER_BYTES, load_arrays, read_json

#: ``kind`` of a λ = 0 study's summary.json and directions.json.
KIND = "lambda0"
#: Significant digits of γ in the key of a distinct direction.
GAMMA_DIGITS = 9

#: Keys of every start record (directions.json, the ``starts`` table), in order.
START_KEYS = ("index", "seed", "stop_reason", "detail", "label", "label_end", "support_size", "support_size_end",
              "support_spread_end", "support_gap_end", "gamma", "gamma_end", "gamma_raw_end", "gamma_rel_change",
              "kkt_residual", "polish", "margin_negative", "excess_zero_modes", "z_rank", "min_margin_end",
              "descent_stop", "descent_iterations", "continue_iterations", "n_grad", "descent_s", "continue_s",
              "decide_s", "direction_id")
_INTS = ("index", "seed", "descent_iterations", "continue_iterations", "n_grad")
_OPT_INTS = ("support_size", "support_size_end", "margin_negative", "excess_zero_modes", "z_rank", "direction_id")
_STRS = ("stop_reason", "detail", "descent_stop")
_OPT_STRS = ("label", "label_end", "polish")
#: The kind of every field of a start record (:func:`check_fields`): ``int``, ``int?``, ``str``,
#: ``str?`` or ``num?`` (``?``: may be null; a number may be NaN or ±inf, or an integer within
#: the range of a float).
START_FIELDS = {k: ("int" if k in _INTS else "int?" if k in _OPT_INTS else "str" if k in _STRS
                    else "str?" if k in _OPT_STRS else "num?") for k in START_KEYS}
#: Stop reasons a start record may hold.
STOP_REASON_VALUES = frozenset(o.value for o in LAMBDA0_STOP_REASONS)

#: Largest summary.json and directions.json (bytes) a λ = 0 folder is read with.
MAX_SUMMARY_BYTES = 64 * 2**20
MAX_STARTS_BYTES = 256 * 2**20
#: Largest model (parameters P) whose directions.npz is read.
MAX_PARAMETERS = 10**8
#: Keys of the environment a batch of starts was computed in (the ``batches`` table).
ENVIRONMENT_KEYS = ("device", "torch", "landscape")


def direction_key(label: str, gamma: float) -> tuple[str, str]:
    """The key of a distinct direction modulo relabelling, gauge and scale: its label and γ to
    :data:`GAMMA_DIGITS` significant digits (both invariant under all three)."""
    return str(label), f"{gamma:.{GAMMA_DIGITS - 1}e}"


# ----- the type checker ------------------------------------------------------------------------------
def _bad(where, what: str) -> ValueError:
    return ValueError(f"{where}: {what}")


def _is_int(v) -> bool:
    """An integer (not a bool) of at most 64 bits."""
    return isinstance(v, int) and not isinstance(v, bool) and -2**63 <= v < 2**63


def _is_num(v) -> bool:
    """A float, or an integer (not a bool) within the range of a float."""
    return isinstance(v, float) or (isinstance(v, int) and not isinstance(v, bool) and abs(v) <= sys.float_info.max)


_KINDS = {"int": (_is_int, "an integer"), "num": (_is_num, "a number"), "str": (lambda x: isinstance(x, str), "a string"),
          "dict": (lambda x: isinstance(x, dict), "an object"), "list": (lambda x: isinstance(x, list), "a list")}


def check_fields(obj: dict, where, kinds: dict) -> None:
    """Each key of ``kinds`` present in ``obj`` with its kind: ``int``, ``num``, ``str``,
    ``dict`` or ``list``, with ``?`` where null is allowed; else a ValueError naming ``where``,
    the key and what it holds."""
    for k, kind in kinds.items():
        if k not in obj:
            raise _bad(where, f"{k!r} is missing")
        v = obj[k]
        base, nullable = kind.rstrip("?"), kind.endswith("?")
        if v is None and nullable:
            continue
        ok, what = _KINDS[base]
        if not ok(v):
            held = (f"an integer of {v.bit_length()} bits, beyond the range of "
                    f"{'a 64-bit integer' if base == 'int' else 'a float'}"
                    if isinstance(v, int) and not isinstance(v, bool) else f"{type(v).__name__} {str(v)[:40]!r}")
            raise _bad(where, f"{k!r} must be {what}{' or null' if nullable else ''}, not {held}")


def check_integers(obj, where) -> None:
    """Refuse (ValueError naming ``where`` and the path inside ``obj``) an integer beyond 64 bits
    anywhere in the parsed JSON ``obj`` (a configuration, read by code that converts numbers to
    floats: 10**400 would be an OverflowError there)."""
    stack = [(obj, "")]
    while stack:
        v, at = stack.pop()
        if isinstance(v, dict):
            stack.extend((x, f"{at}.{k}" if at else str(k)) for k, x in v.items())
        elif isinstance(v, list):
            stack.extend((x, f"{at}[{j}]") for j, x in enumerate(v))
        elif isinstance(v, int) and not isinstance(v, bool) and not _is_int(v):
            raise _bad(where, f"{at or 'the value'} is an integer of {v.bit_length()} bits, beyond the range of a "
                              "64-bit integer and of a float")


def _need(obj: dict, where, /, **kinds) -> None:
    check_fields(obj, where, kinds)


# ----- records -----------------------------------------------------------------------------------------
def check_start_record(rec, where: str) -> dict:
    """``rec`` if it is a start record (exactly the keys :data:`START_KEYS`, each value of its
    kind in :data:`START_FIELDS`, a known stop reason; a certified start has a label, a support,
    a rank and a finite γ > 0); else a ValueError naming ``where``."""
    if not isinstance(rec, dict):
        raise _bad(where, f"a start record must be an object, not {type(rec).__name__}")
    if set(rec) != set(START_KEYS):
        missing, extra = sorted(set(START_KEYS) - set(rec)), sorted(set(rec) - set(START_KEYS))
        raise _bad(where, "a start record has the keys of START_KEYS" + (f"; missing {missing}" if missing else "")
                   + (f"; unknown {extra[:5]}" if extra else ""))
    check_fields(rec, where, START_FIELDS)
    if rec["index"] < 0 or rec["seed"] < 0:
        raise _bad(where, "index and seed must be ≥ 0")
    if rec["stop_reason"] not in STOP_REASON_VALUES:
        raise _bad(where, f"stop_reason {rec['stop_reason'][:40]!r} is not one of {sorted(STOP_REASON_VALUES)}")
    if rec["stop_reason"] == Outcome.CERTIFIED:
        g = rec["gamma"]
        if rec["label"] is None or rec["support_size"] is None or rec["z_rank"] is None or g is None \
                or not (math.isfinite(g) and g > 0):
            raise _bad(where, "a certified start needs a label, a support size, a rank and a finite γ > 0")
    return rec


def _check_fraction(d, where) -> None:
    if not isinstance(d, dict):
        raise _bad(where, "must be an object")
    _need(d, where, count="int", fraction="num?", ci_low="num?", ci_high="num?")


def _check_quantiles(q, where) -> None:
    if q is None:
        return
    if not isinstance(q, dict):
        raise _bad(where, "must be an object or null")
    _need(q, where, n="int", min="num", q25="num", median="num", q75="num", max="num", mean="num")


def check_check_record(c, where) -> dict:
    """``c`` if it is a λ = 0 hand-off check (summary.json ``check``, the ``check_result`` table),
    else a ValueError naming ``where``."""
    if not isinstance(c, dict):
        raise _bad(where, "the check must be an object")
    _need(c, where, dynamics="str", starts="int", certified_main="int", agree="int", agreement="dict",
          same_label="int", longer_stop_reasons="dict", pairs="list")
    _check_fraction(c["agreement"], f"{where}: agreement")
    if not all(isinstance(k, str) and _is_int(v) for k, v in c["longer_stop_reasons"].items()):
        raise _bad(where, "longer_stop_reasons must map stop reasons to counts")
    for j, p in enumerate(c["pairs"]):
        if not isinstance(p, dict):
            raise _bad(where, f"pairs[{j}] must be an object")
        _need(p, f"{where}: pairs[{j}]", index="int", main="str", main_gamma="num", longer="str?",
              longer_gamma="num?", longer_stop_reason="str")
    return c


def check_lambda0_summary(s, where) -> dict:
    """``s`` if it is a λ = 0 summary.json this version reads (the types of every value
    :func:`landscape.study.lambda0.summary_text` and
    :class:`~landscape.study.lambda0.Lambda0Result` use), else a ValueError naming ``where``."""
    if not isinstance(s, dict) or s.get("kind") != KIND:
        raise _bad(where, f"not a λ = 0 study's summary (\"kind\": \"{KIND}\")")
    _need(s, where, study="str", dynamics="str", n_trajectories="int", config="dict", stop_reasons="dict",
          certified="dict", nc="dict", labels="dict", directions="list", gamma="dict", closed_forms="dict",
          decision="dict", check="dict?")
    if s["n_trajectories"] < 0:
        raise _bad(where, "n_trajectories must be ≥ 0")
    m = s["config"].get("model")
    if not isinstance(m, dict):
        raise _bad(where, "config.model must be an object")
    _need(m, f"{where}: config.model", K="int", n="int", d="int", L="int")
    if not all(1 <= m[k] <= MAX_PARAMETERS for k in ("K", "n", "d", "L")) or model_parameters(m) > MAX_PARAMETERS:
        raise _bad(where, "config.model: K, n, d, L must be ≥ 1 and the model at most "
                          f"{MAX_PARAMETERS} parameters")
    if not all(isinstance(k, str) and _is_int(v) for k, v in s["stop_reasons"].items()):
        raise _bad(where, "stop_reasons must map stop reasons to counts")
    _check_fraction(s["certified"], f"{where}: certified")
    if "after_extension" in s["certified"]:
        _need(s["certified"], f"{where}: certified", after_extension="int")
    _check_fraction(s["nc"], f"{where}: nc")
    _need(s["nc"], f"{where}: nc", label="str")
    for k, v in s["labels"].items():
        _check_fraction(v, f"{where}: labels[{k!r}]")
    ids = set()
    for j, d in enumerate(s["directions"]):
        w = f"{where}: directions[{j}]"
        if not isinstance(d, dict):
            raise _bad(w, "must be an object")
        _need(d, w, id="int", label="str", gamma="num", support_size="int", z_rank="int", count="int",
              fraction="num?", ci_low="num?", ci_high="num?")
        if d["id"] < 0 or d["id"] in ids or not (math.isfinite(d["gamma"]) and d["gamma"] > 0):
            raise _bad(w, "id must be a new integer ≥ 0 and γ a finite number > 0")
        ids.add(d["id"])
        if d.get("closed_form") is not None:
            _need(d, w, closed_form="str", closed_form_gamma="num", closed_form_rel_error="num")
    _need(s["closed_forms"], f"{where}: closed_forms", nc_code_margin="num", pairs_code_margin="num?")
    for k in ("polished", "end", "raw_end", "rel_change", "rel_change_stable"):
        _check_quantiles(s["gamma"].get(k), f"{where}: gamma.{k}")
    _need(s["decision"], f"{where}: decision", gamma_rtol="num", check_factor="int")
    if s["check"] is not None:
        check_check_record(s["check"], f"{where}: check")
    if not isinstance(s.get("not_run", []), list) or not all(isinstance(x, str) for x in s.get("not_run", [])):
        raise _bad(where, "not_run must be a list of strings")
    for k in ("wall_time_s",):
        if k in s and not _is_num(s[k]):
            raise _bad(where, f"{k} must be a number")
    if "timings" in s and not (isinstance(s["timings"], dict) and all(_is_num(v) for v in s["timings"].values())):
        raise _bad(where, "timings must map phases to seconds")
    envs = s.get("batch_environments", [])
    if not isinstance(envs, list):
        raise _bad(where, "batch_environments must be a list")
    for j, e in enumerate(envs):
        if not isinstance(e, dict):
            raise _bad(where, f"batch_environments[{j}] must be an object")
        _need(e, f"{where}: batch_environments[{j}]", batches="list", **{k: "str" for k in ENVIRONMENT_KEYS})
    return s


def model_parameters(m: dict) -> int:
    """P of the model ``m`` (summary.json ``config.model``: K, n, d, L), from the factor shapes of
    θ's flat layout (MODEL.md §1)."""
    return factor_offsets(factor_shapes(m["K"], m["n"], m["d"], m["L"]))[-1]


# ----- a finished folder ---------------------------------------------------------------------------
def is_lambda0_folder(path: str | Path) -> bool:
    """Whether ``path`` holds a λ = 0 study (its summary.json says ``"kind": "lambda0"``)."""
    p = Path(path) / FILES["summary"]
    if not p.is_file() or p.stat().st_size > MAX_SUMMARY_BYTES:
        return False
    try:
        s = read_json(p)
    except (OSError, ValueError):
        return False
    return isinstance(s, dict) and s.get("kind") == KIND


def read_lambda0_summary(path: str | Path) -> dict:
    """The checked summary.json of the λ = 0 folder ``path`` (:func:`check_lambda0_summary`);
    FileNotFoundError without one."""
    sp = Path(path) / FILES["summary"]
    if not sp.is_file():
        raise FileNotFoundError(f"{sp} does not exist: {Path(path)} is not a finished results folder")
    if sp.stat().st_size > MAX_SUMMARY_BYTES:
        raise ValueError(f"{sp} holds {sp.stat().st_size} bytes, more than a λ = 0 summary has; refused")
    s = check_lambda0_summary(read_json(sp), sp)
    check_integers(s["config"], f"{sp}: config")
    return s


def end_labels(path: str | Path) -> dict[int, str | None]:
    """{start index: label of its certified direction (None: not certified)} of the λ = 0 study in
    ``path`` (its directions.json): a sweep pairs them with a λ > 0 cell's start by start."""
    d = read_json(Path(path) / LAMBDA0_FILES["starts"])
    if not isinstance(d, dict) or d.get("kind") != KIND or not isinstance(d.get("starts"), list):
        raise ValueError(f"{Path(path) / LAMBDA0_FILES['starts']} is not a λ = 0 study's record of its starts")
    return {int(r["index"]): (str(r["label"]) if r.get("stop_reason") == Outcome.CERTIFIED else None) for r in d["starts"]}


@dataclass(frozen=True, eq=False)
class Lambda0Direction:
    """A distinct certified direction of a λ = 0 study (modulo relabelling, gauge and scale):
    its row of summary.json ``directions`` and ``theta``, θ̂ (P,) from directions.npz at unit
    minimum margin (MODEL.md §1's flat layout: H₁, W₁ … W_L, row-major), with ``starts``, the
    indices of the starts that reached it."""

    id: int
    label: str
    gamma: float
    support_size: int
    z_rank: int
    count: int
    fraction: float | None
    ci_low: float | None
    ci_high: float | None
    closed_form: str | None
    closed_form_gamma: float | None
    theta: np.ndarray = field(repr=False)
    starts: tuple[int, ...] = field(repr=False)


def read_lambda0_starts(folder: str | Path, summary: dict) -> list[dict]:
    """Every start's record of the finished λ = 0 folder ``folder`` (directions.json), checked
    against its checked ``summary``: every record's keys and types, the starts 0 … n−1 in order,
    each certified start's direction one of the summary's with its label and γ, the counts the
    summary's."""
    p = Path(folder) / LAMBDA0_FILES["starts"]
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist: the λ = 0 folder {folder} is not finished")
    if p.stat().st_size > MAX_STARTS_BYTES:
        raise ValueError(f"{p} holds {p.stat().st_size} bytes, more than a λ = 0 record of starts has; refused")
    doc = read_json(p)
    if not isinstance(doc, dict) or doc.get("kind") != KIND or doc.get("keys") != list(START_KEYS) \
            or not isinstance(doc.get("starts"), list):
        raise ValueError(f"{p} is not a λ = 0 study's record of its starts (kind, keys, starts)")
    n = int(summary["n_trajectories"])
    if len(doc["starts"]) != n:
        raise ValueError(f"{p} holds {len(doc['starts'])} starts, summary.json {n}")
    dirs = {int(d["id"]): d for d in summary["directions"]}
    counts: dict[int, int] = {}
    for j, r in enumerate(doc["starts"]):
        check_start_record(r, f"{p}: starts[{j}]")
        if r["index"] != j:
            raise ValueError(f"{p}: starts[{j}] has index {r['index']}: the starts must be 0 … {n - 1} in order")
        did = r["direction_id"]
        if r["stop_reason"] != Outcome.CERTIFIED:
            if did is not None:
                raise ValueError(f"{p}: starts[{j}] is not certified but has a direction id")
            continue
        d = dirs.get(did)
        if d is None or direction_key(r["label"], r["gamma"]) != direction_key(d["label"], d["gamma"]):
            raise ValueError(f"{p}: starts[{j}]: direction id {did!r} is not a direction of summary.json with its "
                             "label and γ")
        counts[did] = counts.get(did, 0) + 1
    if counts != {i: int(d["count"]) for i, d in dirs.items()}:
        raise ValueError(f"{p}: the starts of each direction differ from summary.json's counts")
    return doc["starts"]


def read_lambda0_directions(folder: str | Path, summary: dict, starts: list[dict]) -> list[Lambda0Direction]:
    """The distinct certified directions of the finished λ = 0 folder ``folder``: the checked
    ``summary``'s rows with θ̂ from directions.npz (exactly one θ̂ of P finite float64 values per
    direction, no pickles, bounded sizes) and the indices of the ``starts`` that reached each."""
    p = Path(folder) / LAMBDA0_FILES["directions"]
    rows = summary["directions"]
    P = model_parameters(summary["config"]["model"])
    member = 8 * P + NPY_HEADER_BYTES
    if not p.is_file():
        raise FileNotFoundError(f"{p} does not exist: the λ = 0 folder {folder} is not finished")
    arrays = load_arrays(p, max_member_bytes=member, max_total_bytes=member * max(len(rows), 1), max_members=len(rows))
    names = {f"direction-{d['id']}" for d in rows}
    if set(arrays) != names:
        raise ValueError(f"{p} holds {sorted(arrays)[:5]}, not the directions of summary.json {sorted(names)[:5]}")
    out = []
    for d in rows:
        th = arrays[f"direction-{d['id']}"]
        if th.dtype != np.float64 or th.shape != (P,) or not np.all(np.isfinite(th)):
            raise ValueError(f"{p}: direction-{d['id']} must be {P} finite float64 values (the model's P), not "
                             f"{th.dtype} {th.shape}")
        cf = d.get("closed_form")
        out.append(Lambda0Direction(
            id=d["id"], label=d["label"], gamma=float(d["gamma"]), support_size=d["support_size"], z_rank=d["z_rank"],
            count=d["count"], fraction=d["fraction"], ci_low=d["ci_low"], ci_high=d["ci_high"],
            closed_form=cf, closed_form_gamma=d.get("closed_form_gamma") if cf else None, theta=th,
            starts=tuple(r["index"] for r in starts if r["direction_id"] == d["id"])))
    return out
