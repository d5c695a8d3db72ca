"""The embedded study and sweep files (``landscape/configs/*.toml``): names, kinds, descriptions.

Only the standard library and :mod:`landscape.core.validate`, so ``landscape presets`` and a bad
``--preset`` answer without importing torch.
"""
from __future__ import annotations

import tomllib
from importlib import resources

from ..core.validate import SpecError


def _configs():
    return resources.files("landscape").joinpath("configs")


def preset_path(name: str):
    """The embedded file of preset ``name`` (a SpecError lists the presets if there is none)."""
    p = _configs().joinpath(f"{name}.toml")
    if not (isinstance(name, str) and name and "/" not in name and p.is_file()):
        raise SpecError(f"preset={name!r} is invalid: must be one of {sorted(presets())}")
    return p


def preset_kind(table: dict) -> str:
    """``"sweep"`` (a ``[sweep]`` table: ``landscape sweep``), ``"net"`` (a ``[net]`` table:
    ``landscape net``) or ``"study"`` (``landscape run``)."""
    return "sweep" if "sweep" in table else "net" if "net" in table else "study"


def presets() -> dict[str, dict]:
    """{name: {"kind": "study" | "sweep" | "net", "description": first comment line}} of the embedded files."""
    out = {}
    for f in sorted(_configs().iterdir(), key=lambda f: f.name):
        if not f.name.endswith(".toml"):
            continue
        text = f.read_text(encoding="utf-8")
        first = next((ln[1:].strip() for ln in text.splitlines() if ln.startswith("#")), "")
        out[f.name[:-5]] = {"kind": preset_kind(tomllib.loads(text)), "description": first}
    return out


def default_config_dict() -> dict:
    """The embedded default study (``landscape/configs/default.toml``) as a dict."""
    return tomllib.loads(preset_path("default").read_text(encoding="utf-8"))
