"""The registry of a study's distinct points: every end θ becomes a point here, and only here.

Whatever certifies an end point — a study's trajectories and the descents from its saddles
(:class:`landscape.study.run.StudyRun`), the transition-state search
(:mod:`landscape.study.transition_states`), the saddle phase computed beside the run
(:mod:`landscape.study.prefetch`) and ``landscape net`` (:mod:`landscape.net.run`) — hands it to a
:class:`PointRegistry`, which

1. **identifies** it: its invariant fingerprint matched modulo symmetry against every distinct
   point known (:class:`landscape.analysis.dedup.Deduplicator`, seeded with the points the
   study's database already holds), or a new id registered for it (:meth:`PointRegistry.identify`);
2. **analyses** a new distinct point once (:func:`landscape.analysis.point.analyse_point`, in
   float64, or the analysis of exactly this θ computed beforehand: :attr:`PointRegistry.precomputed`)
   and records its kind, its loss and, for a saddle, its unstable space, which the descents from it
   start along (:meth:`PointRegistry.analyse`, :meth:`PointRegistry.unstable_space`);
3. writes its **store record** (:class:`landscape.io.records.PointRecord`,
   :meth:`PointRegistry.record`), which the caller commits in the one transaction of the unit that
   found it (:meth:`landscape.io.store.StudyStore.commit_unit`: the trajectories or edges that
   reference the point go in with it).

:meth:`PointRegistry.assign` is the three steps for a batch of certified ends, as a study takes
them. Nothing here writes the database.
"""
from __future__ import annotations

from typing import Callable, Iterable, Mapping

import numpy as np
import torch

from ..analysis.dedup import Deduplicator, fingerprints
from ..analysis.point import PointAnalysis, analyse_point
from ..analysis.settings import AnalysisSettings, DedupTolerances
from ..core.spec import ModelSpec
from ..io.records import PointRecord


def unstable_of(a: PointAnalysis) -> tuple[np.ndarray, np.ndarray] | None:
    """(eigenvalues (m,), eigenvectors (P, m)) of the unstable space of an analysis
    (:func:`landscape.analysis.point.analyse_point`), None where its Hessian has none."""
    neg = a.hessian.negative_vectors
    if neg is None:
        return None
    m = neg.shape[1]
    evs = a.spectrum[:m] if a.hessian.method == "dense" else np.sort(a.hessian.parts["most_negative"])[:m]
    return evs, neg


def _descends_across_kinks(kind: str, analysis) -> bool:
    """:meth:`PointRegistry.descends_across_kinks` read off a point's kind and analysis JSON (a
    stored one is untrusted: anything malformed reads as False)."""
    kinks = analysis.get("kinks") if isinstance(analysis, Mapping) else None
    if not isinstance(kinks, Mapping):
        return False
    return (kind, kinks.get("kind")) in (("saddle", "saddle"), ("unverified", "not stationary"))


class PointRegistry:
    """The distinct points of one run (module docstring): their representatives modulo symmetry
    (``dedup``), and the ``kinds``, ``losses`` and saddles' ``unstable`` spaces ({point id: …})
    of every point known (stored before, or analysed here).

    ``spec``: the model; ``tolerances``: the deduplication's
    (:class:`~landscape.analysis.settings.DedupTolerances`); ``settings``: the analysis'
    (:class:`~landscape.analysis.settings.AnalysisSettings`); ``device``: where the analysis
    computes its Hessian. ``points``: the records already stored (their fingerprints, kinds and
    losses), ``next_id`` the first id a new point gets (default: one past the largest of
    ``points``, 0 without them)."""

    def __init__(self, spec: ModelSpec, tolerances: DedupTolerances, settings: AnalysisSettings, *,
                 device="cpu", points: Iterable[PointRecord] = (), next_id: int | None = None):
        points = list(points)
        self.spec, self.settings, self.device = spec, settings, device
        self.dedup = Deduplicator(tolerances, [(p.id, p.fingerprint) for p in points], next_id=next_id)
        self.kinds: dict[int, str] = {p.id: p.kind for p in points}
        self.losses: dict[int, float] = {p.id: p.loss for p in points}
        self.unstable: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        #: ids of points whose Hessian has no eigenvalue below −τ (a saddle on ReLU kinks may be one)
        self.flat: set[int] = set()
        #: ids of points on ReLU kinks whose descent is across a kink only (:meth:`descends_across_kinks`)
        self.across_kinks: set[int] = {p.id for p in points if _descends_across_kinks(p.kind, p.analysis)}
        #: θ (P,) → the analysis of exactly this θ computed elsewhere, or None (then it is computed
        #: here): the saddle prefetch's (:meth:`landscape.study.prefetch.SaddlePrefetch.analysis`)
        self.precomputed: Callable[[torch.Tensor], PointAnalysis | None] | None = None

    @classmethod
    def of_study(cls, cfg, store, device) -> "PointRegistry":
        """The registry of the study ``cfg`` whose database is ``store``
        (:class:`~landscape.io.store.StudyStore`): every stored point known, new ids after the
        store's."""
        return cls(cfg.model, cfg.dedup, cfg.analysis, device=device, points=store.points(),
                   next_id=store.next_point_id())

    def identify(self, thetas: torch.Tensor, certified=None) -> list[tuple[int, bool, dict]]:
        """(point id, is_new, fingerprint) of every row of ``thetas`` (B, P): the distinct point
        the row is modulo symmetry, or a new id registered for it (``is_new``; the point is not
        analysed yet: :meth:`analyse`). A row where ``certified`` (B,) is False is no critical
        point to match: it gets a new id of its own, which no later row matches."""
        if thetas.shape[0] == 0:
            return []
        out = []
        for i, fp in enumerate(fingerprints(self.spec, thetas)):
            if certified is None or certified[i]:
                pid, is_new = self.dedup.assign(fp)
            else:
                pid, is_new = self.dedup.next_id, True
                self.dedup.next_id += 1
            out.append((pid, is_new, fp))
        return out

    def analyse(self, pid: int, theta: torch.Tensor, kind: str | None = None) -> PointAnalysis:
        """Analyse the new distinct point ``pid`` at θ (P,) once, in float64; record its kind (the
        analysis', or ``kind``), loss and, where its Hessian has negative eigenvalues, its
        unstable space."""
        a = self.precomputed(theta) if self.precomputed is not None else None
        if a is None:
            a = analyse_point(self.spec, theta, self.settings, device=self.device)
        space = unstable_of(a)
        if space is not None:
            self.unstable[pid] = space
        else:
            self.flat.add(pid)
        self.kinds[pid], self.losses[pid] = kind or a.kind, a.loss
        if a.kinks is not None and _descends_across_kinks(self.kinds[pid], {"kinks": a.kinks.to_dict()}):
            self.across_kinks.add(pid)
        return a

    def record(self, pid: int, theta: torch.Tensor, fp: Mapping, a: PointAnalysis, *,
               analysis: dict | None = None, spectra: bool = True) -> PointRecord:
        """The store record of the point ``pid`` analysed as ``a`` (:meth:`analyse`) at θ with
        fingerprint ``fp``: its ``analysis`` JSON (default ``a.to_dict()``) and, with ``spectra``,
        its Hessian spectrum and unstable space (the saddle descents of a resumed study start
        from them; ``landscape net`` stores neither)."""
        unstable = evs = None
        if spectra and pid in self.unstable:
            evs, neg = self.unstable[pid]
            unstable = neg.T.copy()
        return PointRecord(id=pid, kind=self.kinds[pid], label=a.label, loss=a.loss, grad_norm=a.grad_norm,
                           hessian_index=a.hessian.index, fingerprint=fp,
                           params=theta.detach().to("cpu", torch.float64).numpy(),
                           spectrum=a.spectrum if spectra else None,
                           analysis=a.to_dict() if analysis is None else analysis,
                           unstable=unstable, unstable_values=evs)

    def assign(self, thetas: torch.Tensor, new: list[PointRecord]) -> list[int]:
        """Point ids of the certified points ``thetas`` (M, P) (:meth:`identify`); each new one is
        analysed (:meth:`analyse`) and its record (:meth:`record`) appended to ``new``, for the
        caller to commit with its unit."""
        ids = []
        for th, (pid, is_new, fp) in zip(thetas, self.identify(thetas)):
            ids.append(pid)
            if is_new:
                new.append(self.record(pid, th, fp, self.analyse(pid, th)))
        return ids

    def descends_across_kinks(self, pid: int) -> bool:
        """The point ``pid`` (analysed here, or stored) lies on ReLU kinks and is a saddle there
        (a concave kink, or a negative curvature the loss follows on the kink set) or not
        Clarke-stationary (``unverified``): a descent that ends there resumes from a start below
        its loss (:func:`landscape.analysis.kinks.kink_escape`). Gradient descent, reading
        ReLU'(0) = 0, does not leave such a point by itself, and from its hand-off state it comes
        back (a relu-ce descent returned to one such point eleven times)."""
        return pid in self.across_kinks

    def unstable_space(self, point: PointRecord) -> tuple[np.ndarray, np.ndarray] | None:
        """(eigenvalues (m,), eigenvectors (P, m)) of a stored saddle's unstable space: from its
        analysis here, or stored with the point; recomputed only for a point stored without it.
        None where the Hessian has no eigenvalue below −τ: a saddle on ReLU kinks whose descent
        is across a kink, at first order (:func:`landscape.analysis.kinks.descent_kinks`), has
        none; its descents start across those kinks instead
        (:func:`landscape.analysis.kinks.kink_descents`, :meth:`landscape.study.run.StudyRun.descend_from_many`)."""
        if point.id in self.unstable:
            return self.unstable[point.id]
        if point.unstable is not None:
            return np.asarray(point.unstable_values), point.unstable.T
        if point.id in self.flat:
            return None
        space = unstable_of(analyse_point(self.spec, point.params, self.settings, device=self.device))
        if space is None:
            self.flat.add(point.id)
        else:
            self.unstable[point.id] = space
        return space
