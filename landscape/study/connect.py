"""Transition states between minima: the ``[connect]`` settings (the search is added below)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..core.validate import SpecError, check_bool, check_fields, check_int, check_number


@dataclass(frozen=True)
class ConnectSettings:
    """The ``[connect]`` table: which minima to join by transition states, and how.

    * ``max_pairs``: pairs of minima that hold basin counts to connect, most-visited first
      (0: no double-ended search); ``pairs``: further pairs of point ids the user names.
    * ``images``: interior images of each nudged elastic band; ``spring``: spring constant;
      ``climb``: a climbing image; ``doubly_nudged``: the DNEB spring-force correction.
    * ``neb_iter``, ``neb_tol``: band iterations and the force tolerance (max over images of the
      perpendicular force norm) at which a band has converged; ``neb_lr``: the band's step size.
    * ``max_depth``: how deep the DoubleEndedConnect-style recursion on unconnected sub-pairs goes.
    """

    max_pairs: int = 0
    pairs: tuple = ()
    images: int = 14
    spring: float = 1.0
    climb: bool = True
    doubly_nudged: bool = False
    neb_iter: int = 3000
    neb_tol: float = 1e-4
    neb_lr: float = 0.05
    max_depth: int = 2

    @classmethod
    def from_dict(cls, d: dict) -> "ConnectSettings":
        check_fields("[connect]", d, [f.name for f in fields(cls)])
        pairs = d.get("pairs", [])
        if not isinstance(pairs, (list, tuple)) or not all(
                isinstance(p, (list, tuple)) and len(p) == 2 and all(isinstance(i, int) and not isinstance(i, bool)
                                                                    and i >= 0 for i in p) for p in pairs):
            raise SpecError(f"connect.pairs={pairs!r} is invalid: must be a list of [id, id] pairs of point ids")
        return cls(max_pairs=check_int("connect.max_pairs", d.get("max_pairs", 0), 0),
                   pairs=tuple(tuple(p) for p in pairs),
                   images=check_int("connect.images", d.get("images", 14), 3),
                   spring=check_number("connect.spring", d.get("spring", 1.0)),
                   climb=check_bool("connect.climb", d.get("climb", True)),
                   doubly_nudged=check_bool("connect.doubly_nudged", d.get("doubly_nudged", False)),
                   neb_iter=check_int("connect.neb_iter", d.get("neb_iter", 3000), 1),
                   neb_tol=check_number("connect.neb_tol", d.get("neb_tol", 1e-4)),
                   neb_lr=check_number("connect.neb_lr", d.get("neb_lr", 0.05)),
                   max_depth=check_int("connect.max_depth", d.get("max_depth", 2), 0))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["pairs"] = [list(p) for p in self.pairs]
        return out


def connect_minima(session) -> int:
    """Join pairs of minima by transition states (:class:`ConnectSettings`); returns how many
    transition states were stored. Nothing to do when ``max_pairs`` is 0 and no pair is named."""
    cfg = session.cfg.connect
    if cfg.max_pairs == 0 and not cfg.pairs:
        return 0
    raise NotImplementedError("the double-ended search is not built yet")
