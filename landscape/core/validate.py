"""Every check of a user-given number or choice, once.

Each function returns the validated value (converted where stated) or raises :class:`SpecError`
whose message names the field, the value and the allowed range, e.g.
``lr=-1 is invalid: must be a finite number > 0``. The CLI turns a SpecError into one line on
standard error and exit status 2.

Integer fields accept an integral float as well (``trajectories = 1e4`` as ``stages.0.max_iter =
1e4``: TOML and ``--set`` write ``1e4`` for ten thousand), returned as an int; ``2.5`` or
``true`` are refused alike.

**Memory budget.** Inputs whose work grows with a number the user gives (trajectories, width,
depth, band images, a dense matrix) are estimated before anything is allocated and refused with
the estimate when it exceeds :func:`memory_budget`: the environment variable
``LANDSCAPE_MEMORY_BUDGET`` (bytes, or a size such as ``64G``, ``512M``, ``1.5T``), else half of
this machine's physical memory (the rule of the dense Hessian path,
:func:`landscape.analysis.hessian.dense_fits`), else 8 GiB where that cannot be read. The refusal
is a :class:`ResourceError` (a SpecError: one line, exit status 2).
"""
from __future__ import annotations

import math
import os
from typing import Iterable


class SpecError(ValueError):
    """A model or study field has a value outside its allowed range."""


class ResourceError(SpecError):
    """An input whose estimated memory exceeds :func:`memory_budget` (the message gives both)."""


def _is_real(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_int(value) -> int | None:
    """``value`` as an int if it is an int or an integral float (not a bool), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():   # False for inf and nan
        return int(value)
    return None


def check_int(name: str, value, minimum: int, why: str = "", maximum: int | None = None) -> int:
    """``int(value)`` if it is an integer, or an integral float (5.0, 1e4), ≥ ``minimum`` (and ≤
    ``maximum`` when given; bools are not integers here), else a SpecError naming the field, the
    value and the allowed range."""
    v = _as_int(value)
    if v is None or v < minimum or (maximum is not None and v > maximum):
        rng = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise SpecError(f"{name}={value!r} is invalid: must be an integer {rng}{why}")
    return v


def check_integral(name: str, value, minimum: int = 1, maximum: int | None = None) -> int:
    """An integral number ≥ ``minimum`` given as int or float (5, 5.0 or 1e2), returned as int:
    the same rule and message as :func:`check_int`."""
    return check_int(name, value, minimum, maximum=maximum)


#: Largest seed and trajectory index: both are stored as SQLite integers (signed 64-bit).
INDEX_MAX = 2 ** 63 - 1


# ----- the memory budget ----------------------------------------------------------------------
#: Environment variable that sets the memory budget (module docstring).
MEMORY_BUDGET_ENV = "LANDSCAPE_MEMORY_BUDGET"
#: The budget where neither the variable nor the physical memory can be read.
FALLBACK_MEMORY_BUDGET = 8 * 2 ** 30
_SIZE_UNITS = {"": 1, "B": 1, "K": 2 ** 10, "KB": 2 ** 10, "KIB": 2 ** 10, "M": 2 ** 20, "MB": 2 ** 20,
               "MIB": 2 ** 20, "G": 2 ** 30, "GB": 2 ** 30, "GIB": 2 ** 30, "T": 2 ** 40, "TB": 2 ** 40,
               "TIB": 2 ** 40}


def parse_size(text: str) -> int:
    """Bytes of a size written as a number with an optional unit (``123``, ``1.5e9``, ``512M``,
    ``64G``, ``2TiB``; units are powers of 1024); ValueError if it is not one."""
    t = text.strip().upper().replace(" ", "")
    i = len(t)
    while i and t[i - 1].isalpha():
        i -= 1
    num, unit = t[:i], t[i:]
    value = float(num) * _SIZE_UNITS[unit]    # KeyError and ValueError: not a size
    if not (math.isfinite(value) and value > 0):
        raise ValueError(text)
    return int(value)


def memory_budget() -> tuple[int, str]:
    """(bytes, where they come from) of the memory budget (module docstring)."""
    raw = os.environ.get(MEMORY_BUDGET_ENV, "").strip()
    if raw:
        try:
            return parse_size(raw), f"{MEMORY_BUDGET_ENV}={raw}"
        except (ValueError, KeyError):
            raise SpecError(f"{MEMORY_BUDGET_ENV}={raw!r} is invalid: must be a size in bytes, e.g. 17179869184, "
                            "16G or 512M") from None
    try:
        mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        mem = -1
    if mem > 0:
        return mem // 2, f"half of this machine's {format_bytes(mem)} of RAM; {MEMORY_BUDGET_ENV}=SIZE changes it"
    return FALLBACK_MEMORY_BUDGET, f"the default, {MEMORY_BUDGET_ENV}=SIZE changes it"


def format_bytes(n: float) -> str:
    """``n`` bytes in the largest binary unit that keeps the number ≥ 1 (``1.5 GiB``)."""
    n = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if abs(n) < 1024 or unit == "PiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} EiB"   # pragma: no cover


def check_memory(subject: str, need: float, what: str, allowed: str = "") -> None:
    """A :class:`ResourceError` if ``need`` bytes exceed :func:`memory_budget`: "``subject`` is
    refused: ``what`` is estimated to need N GiB of memory, over the memory budget of M GiB
    (its source)``; allowed``" (``allowed``: the range that fits, e.g. "within it d <= 223")."""
    budget, source = memory_budget()
    if need > budget:
        raise ResourceError(f"{subject} is refused: {what} is estimated to need {format_bytes(need)} of memory, "
                            f"over the memory budget of {format_bytes(budget)} ({source})"
                            + (f"; {allowed}" if allowed else ""))


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
