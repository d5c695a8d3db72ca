"""List the embedded studies and sweeps: `landscape run --preset NAME`, `landscape sweep --preset NAME`."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("presets", help=__doc__.splitlines()[0], description=__doc__)
    p.set_defaults(func=main)


def main(args) -> int:
    from ..study.presets import presets

    for name, info in presets().items():
        cmd = "landscape run --preset" if info["kind"] == "study" else "landscape sweep --preset"
        print(f"{name:<14} {info['kind']:<5}  {info['description']}\n{'':<22}{cmd} {name}")
    return 0
