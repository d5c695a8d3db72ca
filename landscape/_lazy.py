"""Names of a package loaded on first use (PEP 562), so importing a package stays cheap: the
command line answers, and a study file is validated, without importing torch."""
from __future__ import annotations

import importlib
from typing import Callable, Mapping


def lazy_getattr(package: str, homes: Mapping[str, str], namespace: dict) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package`` that imports ``homes[name]`` (a module path,
    relative to the package when it starts with ".") on first use of ``name`` and keeps the value
    in ``namespace`` (the package's globals). A name whose home is the module of that name (e.g.
    ``landscape.figures`` → ``landscape.viz.figures``) is the module itself."""
    def __getattr__(name: str):
        if name not in homes:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        mod = importlib.import_module(homes[name], package)
        value = mod if mod.__name__.endswith("." + name) else getattr(mod, name)
        namespace[name] = value
        return value

    return __getattr__
