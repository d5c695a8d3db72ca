"""The ``[transition_states]`` table of a study: which minima to join by transition states, and how.

Validation only (no torch), so a study file is checked without importing it; the search itself
is :mod:`landscape.study.transition_states`.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..engines.options import MinModeOptions, NEBOptions
from ..core.validate import INDEX_MAX, SpecError, check_bool, check_choice, check_fields, check_int, check_number

#: Refinements of a band's climbing image (``[transition_states] refine``).
REFINE_METHODS = ("minmode", "newton")
#: How the pairs to search are chosen (``[transition_states] strategy``).
STRATEGIES = ("graph", "pairs")


@dataclass(frozen=True)
class TransitionStateSettings:
    """The ``[transition_states]`` table: which minima to join by transition states, and how.

    * ``strategy``: ``graph`` (pele's DoubleEndedConnect over all minima: on the graph of minima
      with edge weight = aligned distance², 0 once joined by a transition state and ∞ once
      searched in vain, search the cheapest path from the most-visited minimum's component to
      the nearest minimum holding a basin count outside it, round after round, until every
      minimum holding a count is in one component, ``max_pairs`` pairs were searched or
      ``budget_s`` seconds are spent) or ``pairs`` (the ``max_pairs`` most-visited pairs, then
      ``max_depth`` rounds of sub-pairs).
    * ``max_pairs``: the most pairs searched (0: no double-ended search); ``pairs``: further
      pairs of point ids the user names (searched first).
    * ``images``: interior images of each nudged elastic band; ``spring``: spring constant;
      ``climb``: a climbing image; ``doubly_nudged``: the DNEB spring-force correction.
    * ``neb_iter``, ``neb_tol``: band iterations and the force tolerance (largest image force) at
      which a band has converged; ``neb_dt``: FIRE's first step.
    * ``max_depth``: rounds of the recursion on unconnected sub-pairs (``pairs`` strategy);
      ``budget_s``: seconds the ``graph`` strategy may spend.
    * ``refine``: how the climbing image (and its neighbours) is refined to a saddle: ``minmode``
      (minimum-mode following, :mod:`landscape.engines.minmode`: uphill along the lowest mode,
      downhill in its complement, so it ends at index-1 saddles; rows where it fails fall back to
      Newton-MR from the image) or ``newton`` (Newton-MR from the image: the nearest critical
      point of any index); ``minmode_iter``: its iterations.
    * ``split``: descend (the study's saddle-descent pipeline) from every interior image that is
      a local minimum of its band's loss profile, at least ``split_depth`` × the band's loss range
      below both neighbours, and, where that reaches a minimum other than the pair's two, split
      the pair there (AutoNEB-style): the new minimum is stored (it holds no basin count) and the
      sub-pairs (first end, it) and (it, second end) are searched in later rounds.
    * ``insert``: after a band has relaxed, grow it by this many images where its loss profile
      resolves a maximum worst (AutoNEB-style, :func:`landscape.engines.neb.insert_images`: each
      halves the longest segment that brackets one of the band's maxima) and relax it again,
      climbing image on, before the refinement; 0: no insertion.
    """

    max_pairs: int = 6
    pairs: tuple = ()
    images: int = 14
    spring: float = 1.0
    climb: bool = True
    doubly_nudged: bool = False
    neb_iter: int = 3000
    neb_tol: float = 1e-4
    neb_dt: float = 0.02
    max_depth: int = 2
    refine: str = "minmode"
    minmode_iter: int = 100
    strategy: str = "graph"
    budget_s: float = 1800.0
    split: bool = True
    split_depth: float = 1e-3
    insert: int = 0

    @classmethod
    def from_dict(cls, d: dict) -> "TransitionStateSettings":
        check_fields("[transition_states]", d, [f.name for f in fields(cls)])
        pairs = d.get("pairs", [])
        if not isinstance(pairs, (list, tuple)) or not all(isinstance(p, (list, tuple)) and len(p) == 2 for p in pairs):
            raise SpecError(f"transition_states.pairs={pairs!r} is invalid: must be a list of [id, id] pairs of point ids")
        pairs = [[check_int(f"transition_states.pairs[{k}][{j}]", i, 0, " (a point id)", maximum=INDEX_MAX) for j, i in enumerate(p)]
                 for k, p in enumerate(pairs)]
        dflt = cls()
        return cls(max_pairs=check_int("transition_states.max_pairs", d.get("max_pairs", dflt.max_pairs), 0),
                   pairs=tuple(tuple(p) for p in pairs),
                   images=check_int("transition_states.images", d.get("images", dflt.images), 3),
                   spring=check_number("transition_states.spring", d.get("spring", dflt.spring)),
                   climb=check_bool("transition_states.climb", d.get("climb", dflt.climb)),
                   doubly_nudged=check_bool("transition_states.doubly_nudged", d.get("doubly_nudged", dflt.doubly_nudged)),
                   neb_iter=check_int("transition_states.neb_iter", d.get("neb_iter", dflt.neb_iter), 1),
                   neb_tol=check_number("transition_states.neb_tol", d.get("neb_tol", dflt.neb_tol)),
                   neb_dt=check_number("transition_states.neb_dt", d.get("neb_dt", dflt.neb_dt)),
                   max_depth=check_int("transition_states.max_depth", d.get("max_depth", dflt.max_depth), 0),
                   refine=check_choice("transition_states.refine", d.get("refine", dflt.refine), REFINE_METHODS),
                   minmode_iter=check_int("transition_states.minmode_iter", d.get("minmode_iter", dflt.minmode_iter), 1),
                   strategy=check_choice("transition_states.strategy", d.get("strategy", dflt.strategy), STRATEGIES),
                   budget_s=check_number("transition_states.budget_s", d.get("budget_s", dflt.budget_s)),
                   split=check_bool("transition_states.split", d.get("split", dflt.split)),
                   split_depth=check_number("transition_states.split_depth", d.get("split_depth", dflt.split_depth), maximum=1.0),
                   insert=check_int("transition_states.insert", d.get("insert", dflt.insert), 0))

    def to_dict(self) -> dict:
        out = asdict(self)
        out["pairs"] = [list(p) for p in self.pairs]
        return out

    def minmode_options(self) -> MinModeOptions:
        """The refinement's :class:`~landscape.engines.options.MinModeOptions` (its budget is
        ``minmode_iter``, given to :func:`landscape.engines.minmode.follow_min_mode`)."""
        return MinModeOptions()

    def neb_options(self) -> NEBOptions:
        """The band's :class:`~landscape.engines.options.NEBOptions` (its iterations and force
        tolerance are ``neb_iter`` and ``neb_tol``, given to :func:`landscape.engines.neb.run_neb`)."""
        return NEBOptions(images=self.images, spring=self.spring, dt=self.neb_dt, climb=self.climb,
                          doubly_nudged=self.doubly_nudged)
