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
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..analysis.point import LEAF_KINDS
from .results import atomic_write_bytes, atomic_write_text


def fvib(spectrum, tau: float) -> float:
    """Σ log μ over μ > τ of a full spectrum."""
    ev = np.asarray(spectrum, dtype=np.float64)
    return float(np.sum(np.log(ev[ev > tau])))


def export_pathsample(store, spec, out_dir: str | Path) -> dict:
    """Write min.data, ts.data, points.min, points.ts and landscape.json into ``out_dir``
    (created); returns the contents of landscape.json."""
    from ..analysis.spectrum import log_det_positive

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    points = {p.id: p for p in store.points(with_params=True)}
    tss = store.transition_states()
    minima = sorted((pid for pid, p in points.items() if p.kind in LEAF_KINDS), key=lambda i: (points[i].loss, i))
    line = {pid: k + 1 for k, pid in enumerate(minima)}
    how = {}

    def fv(p) -> float:
        a = p.analysis or {}
        tau = a.get("tau", 0.0)
        if (a.get("hessian") or {}).get("method") == "dense" and p.spectrum is not None:
            how[p.id] = "dense spectrum"
            return fvib(p.spectrum, tau)
        how[p.id] = "stochastic Lanczos quadrature"
        return log_det_positive(spec, p.params, tau=tau)

    min_lines = [f"{points[i].loss:.16e} {fv(points[i]):.16e} 1 1.0 1.0 1.0" for i in minima]
    ts_rows = [t for t in tss if t.min1_id in line and t.min2_id in line]
    ts_lines = [f"{points[t.saddle_id].loss:.16e} {fv(points[t.saddle_id]):.16e} 1 "
                f"{line[t.min1_id]} {line[t.min2_id]} 1.0 1.0 1.0" for t in ts_rows]
    atomic_write_text(out / "min.data", "".join(ln + "\n" for ln in min_lines))
    atomic_write_text(out / "ts.data", "".join(ln + "\n" for ln in ts_lines))
    nat = np.dtype("=f8")
    atomic_write_bytes(out / "points.min", b"".join(np.asarray(points[i].params, dtype=nat).tobytes() for i in minima))
    atomic_write_bytes(out / "points.ts", b"".join(np.asarray(points[t.saddle_id].params, dtype=nat).tobytes()
                                                   for t in ts_rows))
    info = {"P": spec.P, "minima": {str(k + 1): pid for k, pid in enumerate(minima)},
            "transition_states": {str(k + 1): t.saddle_id for k, t in enumerate(ts_rows)},
            "fvib": {str(k): v for k, v in how.items()}, "energy": "loss (MODEL.md §2)"}
    atomic_write_text(out / "landscape.json", json.dumps(info, indent=1))
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
