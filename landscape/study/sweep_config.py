"""Sweep files: the ``[sweep]`` grid on a study file, its cells and their folder names.

Validation only (no torch): a sweep file is checked, and a bad one refused, before anything runs;
running the cells is :mod:`landscape.study.sweep`.
"""
from __future__ import annotations

import copy
import itertools
import json
import math
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping

from ..core.validate import SpecError
from .config import (StudyConfig, apply_overrides, default_config_dict, layered, load_config_dict, parse_value,
                     preset_path, with_current_names)

#: Name of the grid table in a sweep file.
SWEEP_TABLE = "sweep"
#: Most cells a sweep may have: each is a study folder of its own, validated before anything
#: runs (about 0.3 ms a cell), so a grid beyond this is refused before it is expanded.
MAX_CELLS = 10_000
#: Characters allowed in a cell name; anything else becomes "-".
_CELL_CHARS = re.compile(r"[^A-Za-z0-9._=+,\-]")


def _toml_literal(value) -> str:
    """``value`` (a TOML scalar or array) written as TOML, so that ``parse_value`` reads it back."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ("nan" if math.isnan(value) else ("inf" if value > 0 else "-inf"))
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    raise SpecError(f"sweep value {value!r} is invalid: must be a number, boolean, string or list")


def _value_text(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, list):
        return "-".join(_value_text(v) for v in value)
    return str(value)


def cell_name(overrides: Mapping) -> str:
    """Folder name of the cell with ``overrides`` (axis key → value, in axis order)."""
    return _CELL_CHARS.sub("-", ",".join(f"{k}={_value_text(v)}" for k, v in overrides.items()))


@dataclass(frozen=True)
class Cell:
    """One grid point: its ``name``, its ``overrides`` (axis key → value) and the validated study."""

    name: str
    overrides: dict
    config: StudyConfig


@dataclass(frozen=True)
class SweepConfig:
    """A validated sweep: the base study dict (after command-line overrides), the axes and cells."""

    name: str
    base: dict
    axes: dict
    cells: tuple[Cell, ...]

    @classmethod
    def from_dict(cls, cfg: dict, overrides: Iterable[str] = (), *, on_expand=None) -> "SweepConfig":
        """Sweep from a study dict with a ``[sweep]`` table, plus ``--set`` overrides. A grid of
        more than :data:`MAX_CELLS` cells is refused before it is expanded; ``on_expand(n)`` hears
        the number of cells once the axes and the base study are valid, before they are expanded
        and validated one by one (and each estimated: :meth:`StudyConfig.check_resources`). Former
        table names are read as the current ones (:func:`~landscape.study.config.with_current_names`:
        a sweep.json written before a rename resumes)."""
        cfg = copy.deepcopy(with_current_names(cfg))
        axes = cfg.pop(SWEEP_TABLE, None)
        if not isinstance(axes, dict):
            raise SpecError(f"[{SWEEP_TABLE}] is missing: a sweep file is a study file plus a [{SWEEP_TABLE}] "
                            "table of KEY = [values] (keys as for --set, e.g. d, lambda, init.scale_H)")
        axes = dict(axes)
        base_overrides = []
        for item in overrides or []:
            key, sep, raw = (s.strip() for s in item.partition("="))
            if not sep:
                raise SpecError(f"--set {item!r} is invalid: must be KEY=VALUE")
            if key.startswith(SWEEP_TABLE + "."):
                axes[key[len(SWEEP_TABLE) + 1:]] = parse_value(raw)
            elif key in axes:
                raise SpecError(f"--set {key}: {key!r} is a sweep axis; set its values with "
                                f"--set {SWEEP_TABLE}.{key}=[...]")
            else:
                base_overrides.append(item)
        if not axes:
            raise SpecError(f"[{SWEEP_TABLE}] is empty: give at least one KEY = [values]")
        for key, values in axes.items():
            if key == "name":
                raise SpecError(f"{SWEEP_TABLE}.name is invalid: the study name is set per cell from the sweep name")
            if not isinstance(values, list) or not values:
                raise SpecError(f"{SWEEP_TABLE}.{key}={values!r} is invalid: must be a non-empty list of values")
            texts = [_toml_literal(v) for v in values]
            if len(set(texts)) != len(texts):
                raise SpecError(f"{SWEEP_TABLE}.{key}={values!r} is invalid: values must be distinct")
        for key, values in axes.items():
            if isinstance(values, list) and values:
                try:
                    apply_overrides(cfg, [f"{key}={_toml_literal(values[0])}"])
                except SpecError as exc:
                    msg = str(exc)
                    if "not a known field" in msg:
                        msg = f"is not a known field ({msg.split('not a known field ', 1)[1]}"
                    raise SpecError(f"sweep axis {key!r} {msg}") from None
        n_cells = math.prod(len(v) for v in axes.values())
        if n_cells > MAX_CELLS:
            raise SpecError(f"[{SWEEP_TABLE}] is invalid: its grid has {n_cells:,} cells ("
                            + " × ".join(f"{len(v):,} {k}" for k, v in axes.items())
                            + f"); a sweep may have at most {MAX_CELLS:,} cells (each is a study folder of its own): "
                            "split it into several sweeps")
        base = apply_overrides(cfg, base_overrides)
        name = base.get("name", "sweep")
        StudyConfig.from_dict(base)  # the base study must be valid on its own
        if on_expand is not None:
            on_expand(n_cells)
        grid = [dict(zip(axes, combo)) for combo in itertools.product(*axes.values())]
        names = [cell_name(ov) for ov in grid]
        seen = set()
        for cname in names:
            if cname in seen:
                raise SpecError(f"[{SWEEP_TABLE}]: two cells share the folder name {cname!r}; "
                                "make the values differ in [A-Za-z0-9._+,-]")
            seen.add(cname)
        cells = []
        for ov, cname in zip(grid, names):
            d = apply_overrides(base, [f"{k}={_toml_literal(v)}" for k, v in ov.items()])
            d["name"] = f"{name}-{cname}"
            try:
                study = StudyConfig.from_dict(d)
                study.check_resources()
            except SpecError as exc:
                raise type(exc)(f"sweep cell {cname}: {exc}") from None
            cells.append(Cell(cname, ov, study))
        return cls(name=name, base=base, axes=axes, cells=tuple(cells))

    def to_dict(self) -> dict:
        """The effective sweep in the file layout (loadable by :meth:`from_dict`)."""
        return {**copy.deepcopy(self.base), SWEEP_TABLE: copy.deepcopy(self.axes)}


def load_sweep(path: str | Path | None = None, overrides: Iterable[str] = (), *, preset: str | None = None,
               on_expand=None) -> SweepConfig:
    """Sweep from a file (.toml, or the sweep.json of a sweep folder) or a preset, layered on the
    embedded default study (:func:`landscape.study.config.layered`), plus ``--set`` overrides
    (``on_expand``: :meth:`SweepConfig.from_dict`)."""
    if (path is None) == (preset is None):
        raise SpecError("give a sweep file or --preset NAME (one of them)")
    if preset is not None:
        cfg = tomllib.loads(preset_path(preset).read_text(encoding="utf-8"))
        if SWEEP_TABLE not in cfg:
            cmd = "net" if "net" in cfg else "run"
            raise SpecError(f"preset={preset!r} is not a sweep: run it with `landscape {cmd} --preset {preset}`")
    else:
        cfg = load_config_dict(path)
        if Path(path).suffix == ".json" and "sweep_config" in cfg:
            cfg = cfg["sweep_config"]
    axes = cfg.pop(SWEEP_TABLE, None)
    base = layered(default_config_dict(), cfg)
    if axes is not None:
        base[SWEEP_TABLE] = axes
    return SweepConfig.from_dict(base, overrides, on_expand=on_expand)
