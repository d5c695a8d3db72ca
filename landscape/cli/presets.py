"""List the embedded studies, sweeps and net runs: `landscape run|sweep|net --preset NAME`."""
from __future__ import annotations


def register(sub) -> None:
    p = sub.add_parser("presets", help=__doc__.splitlines()[0], description=__doc__)
    p.set_defaults(func=main)


def main(args) -> int:
    from ..study.presets import presets

    for name, info in presets().items():
        cmd = {"study": "run", "sweep": "sweep", "net": "net"}[info["kind"]]
        print(f"{name:<16} {info['kind']:<5}  {info['description']}\n{'':<24}landscape {cmd} --preset {name}")
    return 0
