"""PATHSAMPLE / pele export of a study's minima and transition states.

The files are those PATHSAMPLE reads and writes (and pele's
``pele.utils.optim_compatibility.OptimDBConverter`` loads):

* ``min.data``: one line per minimum, ``energy fvib hord Ix Iy Iz``;
* ``ts.data``: one line per transition state, ``energy fvib hord min1 min2 Ix Iy Iz``, with min1
  and min2 the 1-based line numbers of its minima in ``min.data``;
* ``points.min`` and ``points.ts``: the coordinates, P native-endian float64 values per point, one
  record after another, no header (a Fortran direct-access unformatted file).

``energy`` is the loss; ``fvib`` = Σ log μ over the positive Hessian eigenvalues that are not
symmetry zero modes (μ > τ; the saddle's negative one excluded) — from the stored full spectrum
for points analysed densely, else estimated by stochastic Lanczos quadrature
(:func:`landscape.analysis.spectrum.log_det_positive`); ``hord`` (point-group order) 1 and the
moments of inertia ``1 1 1`` (a deep UFM has no rigid-body rotations). ``landscape.json`` beside
them maps line numbers to point ids and says how each fvib was obtained.

The study is untrusted input: every coordinate record written holds exactly P float64 values of
the study's model (a θ of another length would shift every later record of points.min/points.ts,
silently), every transition state's saddle and minima are stored points, and the analysis values
fvib reads (τ, the Hessian method) are checked; anything else is one :class:`StoreError` line
naming the database, the point and the column, and nothing is written. A file that cannot be
written (a full disk, a read-only folder) is one :class:`~landscape.io.results.OutputError` line
naming that file (never the temporary file the atomic write goes through).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..analysis.point import LEAF_KINDS
from ..analysis.spectrum import log_det_positive
from .writes import write_named as _write
from .store import StoreError


def fvib(spectrum, tau: float) -> float:
    """Σ log μ over μ > τ of a full spectrum."""
    ev = np.asarray(spectrum, dtype=np.float64)
    return float(np.sum(np.log(ev[ev > tau])))


def _checked_points(store, spec) -> dict:
    """{id: point} with θ, each θ exactly (P,) float64 of ``spec`` (StoreError naming the point)."""
    points = {p.id: p for p in store.points(with_params=True)}
    for pid, p in points.items():
        th = p.params
        if th is None or th.dtype != np.float64 or th.shape != (spec.P,):
            got = "no θ" if th is None else f"θ of shape {tuple(th.shape)} ({th.dtype})"
            raise StoreError(f"{store.path}: table points, point {pid}, column params: {got}, but the study's model "
                             f"has P={spec.P} float64 parameters: not exported (the records of points.min/points.ts "
                             "would be misaligned)")
    return points


def export_pathsample(store, spec, out_dir: str | Path) -> dict:
    """Write min.data, ts.data, points.min, points.ts and landscape.json into ``out_dir``
    (created); returns the contents of landscape.json. Everything is read and checked before the
    first file is written (module docstring)."""
    out = Path(out_dir)
    points = _checked_points(store, spec)
    tss = store.transition_states()
    for t in tss:
        for col in ("saddle_id", "min1_id", "min2_id"):
            if getattr(t, col) not in points:
                raise StoreError(f"{store.path}: table transition_states, saddle {t.saddle_id}, column {col}: point "
                                 f"{getattr(t, col)} is not stored (the file was altered or is damaged)")
    minima = sorted((pid for pid, p in points.items() if p.kind in LEAF_KINDS), key=lambda i: (points[i].loss, i))
    line = {pid: k + 1 for k, pid in enumerate(minima)}
    how = {}

    def fv(p) -> float:
        a = p.analysis or {}
        tau = a.get("tau", 0.0)
        if not isinstance(tau, (int, float)) or isinstance(tau, bool) or not math.isfinite(tau):
            raise StoreError(f"{store.path}: table points, point {p.id}, column analysis: tau={tau!r} is not a "
                             "finite number (the file was altered or is damaged)")
        hess = a.get("hessian") or {}
        if not isinstance(hess, dict):
            raise StoreError(f"{store.path}: table points, point {p.id}, column analysis: hessian is "
                             f"{type(hess).__name__}, not an object (the file was altered or is damaged)")
        if hess.get("method") == "dense" and p.spectrum is not None:
            how[p.id] = "dense spectrum"
            return fvib(p.spectrum, tau)
        how[p.id] = "stochastic Lanczos quadrature"
        return log_det_positive(spec, p.params, tau=tau)

    min_lines = [f"{points[i].loss:.16e} {fv(points[i]):.16e} 1 1.0 1.0 1.0" for i in minima]
    ts_rows = [t for t in tss if t.min1_id in line and t.min2_id in line]
    ts_lines = [f"{points[t.saddle_id].loss:.16e} {fv(points[t.saddle_id]):.16e} 1 "
                f"{line[t.min1_id]} {line[t.min2_id]} 1.0 1.0 1.0" for t in ts_rows]
    nat = np.dtype("=f8")
    pmin = b"".join(np.asarray(points[i].params, dtype=nat).tobytes() for i in minima)
    pts = b"".join(np.asarray(points[t.saddle_id].params, dtype=nat).tobytes() for t in ts_rows)
    assert len(pmin) == 8 * spec.P * len(minima) and len(pts) == 8 * spec.P * len(ts_rows)
    info = {"P": spec.P, "minima": {str(k + 1): pid for k, pid in enumerate(minima)},
            "transition_states": {str(k + 1): t.saddle_id for k, t in enumerate(ts_rows)},
            "fvib": {str(k): v for k, v in how.items()}, "energy": "loss (MODEL.md §2)"}
    out.mkdir(parents=True, exist_ok=True)
    _write(out / "min.data", "".join(ln + "\n" for ln in min_lines).encode())
    _write(out / "ts.data", "".join(ln + "\n" for ln in ts_lines).encode())
    _write(out / "points.min", pmin)
    _write(out / "points.ts", pts)
    _write(out / "landscape.json", json.dumps(info, indent=1).encode())
    return info


def read_pathsample(out_dir: str | Path, P: int) -> dict:
    """Read an export back: {"minima": [(energy, fvib, coords)], "ts": [(energy, fvib, min1, min2, coords)]}
    (min1/min2 1-based, as in the files)."""
    out = Path(out_dir)
    pm = np.fromfile(out / "points.min", dtype="=f8").reshape(-1, P)
    pt = np.fromfile(out / "points.ts", dtype="=f8").reshape(-1, P) if (out / "points.ts").stat().st_size else np.zeros((0, P))
    mins = [(float(a[0]), float(a[1]), pm[k]) for k, a in enumerate(ln.split() for ln in (out / "min.data").read_text().splitlines())]
    ts = [(float(a[0]), float(a[1]), int(a[3]), int(a[4]), pt[k])
          for k, a in enumerate(ln.split() for ln in (out / "ts.data").read_text().splitlines())]
    return {"minima": mins, "ts": ts}
