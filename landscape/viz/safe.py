"""Results folders are untrusted input: what the reports put into HTML is checked or escaped here.

A results folder can come from anyone (a colleague's archive, a download), so every value a report
reads from it is handled in one of two ways before it reaches ``report.html``:

* **numbers and ids are type-checked** when the file is read (:func:`check_fields` with a field
  table such as :data:`STUDY_SUMMARY_FIELDS`): a string where a number belongs is a
  :class:`ReportInputError` naming the file and the field, e.g. ``summary.json:
  saddle_visits[0].point_id must be an integer, not a string``;
* **everything written into the page** goes through :func:`esc` (``html.escape`` with quotes), at
  the point of writing, numbers included, so a field the tables miss is still inert text.

Figures reach the page as plotly JSON, which plotly serialises with ``<``, ``>`` and ``/`` as
``\\u003c`` … (no ``</script>`` breakout), and plotly.js draws their text as SVG, never as HTML.
The figure keys that become element ids and JavaScript strings must match :data:`FIGURE_KEY`.
"""
from __future__ import annotations

import html
import json
import math
import numbers
import re
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Mapping

#: What a figure key (and so a ``div`` id and a JavaScript string in the page) may hold.
FIGURE_KEY = re.compile(r"[A-Za-z0-9_.=-]+")


class ReportInputError(ValueError):
    """A results-folder file with a value the report refuses (named in the one-line message)."""


def esc(x) -> str:
    """``x`` as text that is inert in HTML element content and in quoted attributes."""
    return html.escape(str(x), quote=True)


# ----- type checks ------------------------------------------------------------------------------
def _json_type(v) -> str:
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "a boolean"
    if isinstance(v, str):
        return "a string"
    if isinstance(v, numbers.Integral):
        return "an integer"
    if isinstance(v, numbers.Real):
        return "a number" if math.isfinite(v) else f"{v} (not finite)"
    if isinstance(v, (list, tuple)):
        return "a list"
    if isinstance(v, Mapping):
        return "an object"
    return type(v).__name__


def _is_int(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def _is_real(v, finite: bool) -> bool:
    return (isinstance(v, numbers.Real) and not isinstance(v, bool)
            and (not finite or math.isfinite(v)))


#: Kinds of :func:`check_fields`: a predicate and what the message says a value must be. A
#: trailing ``?`` allows null.
_KINDS = {
    "int": (_is_int, "an integer"),
    "num": (lambda v: _is_real(v, True), "a finite number"),
    "real": (lambda v: _is_real(v, False), "a number"),
    "str": (lambda v: isinstance(v, str), "a string"),
    "list": (lambda v: isinstance(v, list), "a list"),
    "ints": (lambda v: isinstance(v, list) and all(_is_int(x) for x in v), "a list of integers"),
    "nums": (lambda v: isinstance(v, list) and all(_is_real(x, True) for x in v), "a list of finite numbers"),
}


#: The entry kind of the list kinds.
_ELEMENT = {"ints": "int", "nums": "num"}


def _tokens(path: str) -> list[str]:
    return re.findall(r"\[\]|[^.\[\]]+", path)


def _join(where: str, key: str) -> str:
    if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", key):
        return f"{where}.{key}" if where else key
    return f"{where}[{json.dumps(key)[:60]}]"


def _walk(node, tokens: list[str], where: str, source: str) -> Iterator[tuple[str, Any]]:
    if not tokens:
        yield where, node
        return
    t, rest = tokens[0], tokens[1:]
    if node is None:
        return
    if t == "[]":
        if not isinstance(node, list):
            raise ReportInputError(f"{source}: {where} must be a list, not {_json_type(node)}")
        for i, x in enumerate(node):
            yield from _walk(x, rest, f"{where}[{i}]", source)
        return
    if not isinstance(node, Mapping):
        raise ReportInputError(f"{source}: {where or 'the file'} must be an object, not {_json_type(node)}")
    if t == "*":
        for k, v in node.items():
            yield from _walk(v, rest, _join(where, str(k)), source)
    elif t in node:
        yield from _walk(node[t], rest, _join(where, t), source)


def check_fields(doc, fields: Mapping[str, str], source) -> None:
    """Check the values of ``doc`` (parsed JSON of the file ``source``) named by ``fields``: path →
    kind. A path is keys joined by dots, ``[]`` for every element of a list and ``*`` for every
    value of an object (``points[].id``, ``labels.fractions.*.count``); a path that is absent is
    not checked (the report says what it misses elsewhere). Kinds: ``int``, ``num`` (a finite
    number), ``real`` (any number), ``str``, ``list``, ``ints``, ``nums``; ``?`` after a kind allows null.
    Raises :class:`ReportInputError`: ``<source>: <field> must be …, not …``."""
    if not isinstance(doc, Mapping):
        raise ReportInputError(f"{source}: must be a JSON object, not {_json_type(doc)}")
    for path, kind in fields.items():
        optional = kind.endswith("?")
        ok, what = _KINDS[kind.rstrip("?")]
        for where, v in _walk(doc, _tokens(path), "", source):
            if v is None and optional:
                continue
            if kind.rstrip("?") in _ELEMENT and isinstance(v, list):   # name the first bad entry
                elem_ok, elem_what = _KINDS[_ELEMENT[kind.rstrip("?")]]
                bad = next((i for i, x in enumerate(v) if not elem_ok(x)), None)
                if bad is not None:
                    raise ReportInputError(f"{source}: {where}[{bad}] must be {elem_what}, not {_json_type(v[bad])}")
            if not ok(v):
                raise ReportInputError(f"{source}: {where} must be {what}{' or null' if optional else ''}, "
                                       f"not {_json_type(v)}")


def contained_path(folder, name, what: str) -> Path:
    """``folder / name`` for a file name read from a results folder's own files, refused unless it
    stays inside ``folder``: a non-empty relative path with no ``..``, whose real path (symbolic
    links followed) is inside the real ``folder``. ``what`` names the field in the message."""
    folder = Path(folder)
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ReportInputError(f"{what} must be a file name inside {folder}, not {_json_type(name)}")
    rel = PurePosixPath(name)
    if rel.is_absolute() or ".." in rel.parts:
        raise ReportInputError(f"{what} ({json.dumps(name)[:80]}) must be a relative path inside {folder} "
                               "(no absolute path, no '..')")
    path = folder / rel
    try:
        inside = path.resolve().is_relative_to(folder.resolve())
    except (OSError, RuntimeError):   # a symbolic-link loop
        inside = False
    if not inside:
        raise ReportInputError(f"{what} ({json.dumps(name)[:80]}) leads out of {folder} through a symbolic link")
    return path


# ----- the fields each report reads -------------------------------------------------------------
#: A study's summary.json: every number or id the study report shows or computes with.
STUDY_SUMMARY_FIELDS = {
    "n_trajectories": "int", "wall_time_s": "num?", "stop_reasons.*": "int?", "tolerances.confidence": "num?",
    "graph.n_edges": "int?", "timings.*": "num?", "trajectory_time_s": "num?",
    "config.model.K": "int?", "config.model.n": "int?", "config.model.d": "int?", "config.model.L": "int",
    "points[].id": "int", "points[].loss": "num", "points[].grad_norm": "real?", "points[].rank_pattern": "ints?",
    "points[].index": "int?", "points[].nullity": "int?", "points[].symmetry_zero_modes": "int?",
    "points[].excess_zero_modes": "int?", "points[].smallest_nonzero_eigenvalue": "real?",
    "points[].theory_match.loss_difference": "real?", "points[].basin_count": "int?",
    "points[].fraction": "num?", "points[].ci_low": "num?", "points[].ci_high": "num?",
    "labels[].n_points": "int?", "labels[].count": "int",
    "labels[].fraction": "num?", "labels[].ci_low": "num?", "labels[].ci_high": "num?",
    "uncertified[].count": "int",
    "uncertified[].fraction": "num?", "uncertified[].ci_low": "num?", "uncertified[].ci_high": "num?",
    "unseen.estimate": "num?", "unseen.n1": "int?", "unseen.n": "int?",
    "accumulation.n_trajectories": "ints", "accumulation.n_distinct": "ints",
    "saddle_visits[].point_id": "int", "saddle_visits[].index": "int?", "saddle_visits[].n_trajectories": "int",
    "saddle_visits[].n_visits": "int?", "saddle_visits[].mean_lingered": "num", "saddle_visits[].loss": "num?",
    "headline.dnc_fraction": "num?", "headline.dnc_ci_low": "num?", "headline.dnc_ci_high": "num?",
    "headline.lowest_loss": "num?", "headline.lowest_loss_point": "int?",
    "headline.dnc_barrier": "num?", "headline.dnc_barrier_saddle": "int?", "headline.dnc_barrier_to": "int?",
    "headline.basin_barriers[].point_id": "int", "headline.basin_barriers[].loss": "num",
    "headline.basin_barriers[].basin_count": "int", "headline.basin_barriers[].fraction": "num?",
    "headline.basin_barriers[].barrier": "num?", "headline.basin_barriers[].to": "int?",
    "headline.basin_barriers[].saddle": "int?",
    "headline.certified.n_certified": "int?", "headline.certified.dnc": "int?",
    "headline.certified.fraction": "num?", "headline.certified.ci_low": "num?", "headline.certified.ci_high": "num?",
    "diagnosis": "list?", "diagnosis[].reason": "str", "diagnosis[].count": "int", "diagnosis[].share": "num?",
    "diagnosis[].advice": "str",
    "graph.tree": "str?",
}

#: A study's tree.json (the disconnectivity graph).
TREE_FIELDS = {
    "roots": "list", "nodes[].id": "str", "nodes[].type": "str", "nodes[].level": "num", "nodes[].point_id": "int?",
    "nodes[].children": "list?",
    "nodes[].basin_count": "int?", "nodes[].fraction": "num?", "nodes[].members": "ints?",
    "nodes[].barriers.*": "num?",
}

#: A sweep's sweep.json.
SWEEP_FIELDS = {
    "confidence": "num", "cells[].name": "str", "cells[].status": "str?", "cells[].n_trajectories": "int?",
    "paired[].both": "int", "paired[].first_only": "int", "paired[].second_only": "int", "paired[].neither": "int",
    "paired[].difference": "num?", "paired[].ci_low": "num?", "paired[].ci_high": "num?",
}

#: What a sweep report reads from a cell's summary.json (its accumulation curve).
CELL_SUMMARY_FIELDS = {
    "accumulation.n_trajectories": "ints", "accumulation.n_distinct": "ints",
    "unseen.estimate": "num?", "unseen.n1": "int?", "unseen.n": "int?",
}

#: A ``landscape net`` folder's summary.json.
NET_SUMMARY_FIELDS = {
    "dataset.K": "int", "dataset.n_train": "int", "dataset.n_test": "int",
    "dynamics.training.lr": "num", "dynamics.certify_tol": "num", "handoff_loss_gap.max_abs": "real",
    "ufm.P": "int", "ufm.spec.L": "int", "config.analysis.sv_atol": "num",
    "seeds[].seed": "int", "seeds[].train_accuracy": "real", "seeds[].test_accuracy": "real?",
    "seeds[].loss": "real", "seeds[].logit_rank": "int?", "seeds[].ufm_loss": "real",
    "seeds[].layers[].name": "str", "seeds[].layers[].above_atol": "int", "seeds[].layers[].singular_values": "nums",
    "theory.dnc_loss": "real?", "theory.best.loss": "real",
    "labels.n": "int", "labels.uncertified": "int", "labels.fractions.*.count": "int",
    "labels.fractions.*.fraction": "num?", "labels.fractions.*.ci_low": "num?", "labels.fractions.*.ci_high": "num?",
}
