"""Every check of a user-given number or choice, once.

Each function returns the validated value (converted where stated) or raises :class:`SpecError`
whose message names the field, the value and the allowed range, e.g.
``lr=-1 is invalid: must be a finite number > 0``. The CLI turns a SpecError into one line on
standard error and exit status 2.
"""
from __future__ import annotations

import math
from typing import Iterable


class SpecError(ValueError):
    """A model or study field has a value outside its allowed range."""


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_int(name: str, value, minimum: int, why: str = "", maximum: int | None = None) -> int:
    """``value`` if it is an integer ≥ ``minimum`` (and ≤ ``maximum`` when given; bools are not
    integers here), else a SpecError naming the field, the value and the allowed range."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (
            maximum is not None and value > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise SpecError(f"{name}={value!r} is invalid: must be an integer {rng}{why}")
    return value


def check_integral(name: str, value, minimum: int = 1) -> int:
    """An integral number ≥ ``minimum`` given as int or float (5, 5.0 or 1e2), returned as int:
    TOML and ``--set`` write ``1e4`` for ten thousand."""
    if not (_is_real(value) and math.isfinite(value) and value >= minimum and float(value).is_integer()):
        raise SpecError(f"{name}={value!r} is invalid: must be an integer >= {minimum}")
    return int(value)


def check_number(name: str, value, allow_zero: bool = False, maximum: float | None = None) -> float:
    """``float(value)`` if it is a finite real number > 0 (≥ 0 with ``allow_zero``; ≤ ``maximum``
    when given; bools are not numbers here), else a SpecError naming the field and the range."""
    ok = _is_real(value) and math.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if ok and maximum is not None:
        ok = value <= maximum
    if not ok:
        rng = ">= 0" if allow_zero else "> 0"
        if maximum is not None:
            rng += f" and <= {maximum:g}"
        raise SpecError(f"{name}={value!r} is invalid: must be a finite number {rng}")
    return float(value)


def check_choice(name: str, value, choices: Iterable[str]) -> str:
    """``value`` if it is one of ``choices`` (strings), else a SpecError listing them."""
    choices = tuple(choices)
    if not isinstance(value, str) or value not in choices:
        raise SpecError(f"{name}={value!r} is invalid: must be one of {choices}")
    return value


def check_bool(name: str, value) -> bool:
    """``value`` if it is a boolean (true/false in TOML), else a SpecError."""
    if not isinstance(value, bool):
        raise SpecError(f"{name}={value!r} is invalid: must be true or false")
    return value


def check_table(name: str, value) -> dict:
    """``value`` if it is a table (dict), else a SpecError: ``model = 3`` or ``init = "gaussian"``
    in a study file is a table written as a value."""
    if not isinstance(value, dict):
        raise SpecError(f"{name}={value!r} is invalid: must be a table ([{name}] with KEY = value lines)")
    return value


def check_fields(table: str, d: dict, allowed) -> None:
    """A SpecError if ``d`` (the table ``table``) has keys outside ``allowed``."""
    extra = sorted(set(d) - set(allowed))
    if extra:
        raise SpecError(f"{table} has unknown field(s) {extra}: allowed are {sorted(allowed)}")
