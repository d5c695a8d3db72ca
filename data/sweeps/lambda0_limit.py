"""The λ → 0 limit of the λ = 2⁻¹⁰ minima against the λ = 0 runs (issue 36 §1, last bullet).

    OMP_NUM_THREADS=1 python data/sweeps/lambda0_limit.py                 # the committed sweeps
    python data/sweeps/lambda0_limit.py --reg /tmp/sw/lambda0-depth-reg --zero /tmp/sw/lambda0-depth

For every cell of the λ = 2⁻¹⁰ sweep (``--reg``, its ``cells/*/study.sqlite``), every distinct
minimum is followed down in λ by :func:`landscape.study.lambda0_limit.continue_to_limit` (pseudo-arclength
legs halving λ, down to ``--floor`` or where criticality stops being resolvable, then the λ = 0
polish of the last point's direction), and its limit is compared with the certified direction of
the same label in the λ = 0 cell of the same name (``--zero``, ``cells/*/summary.json``
"directions") and with the closed form (NC or pairs code). A minimum *agrees* when its limit is
certified (KKT residual ≤ 1e-10, a local maximum of the margin), has the label it had at
λ = 2⁻¹⁰, and its γ equals the λ = 0 direction's and the closed form's to ``RTOL``.

Writes ``--out``.json and ``--out``.md (default data/sweeps/lambda0-limit). The study databases are
copied to a temporary folder before they are opened (the committed folders are never written).
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

import numpy as np  # noqa: E402

from landscape.study.lambda0_limit import continue_to_limit  # noqa: E402
from landscape.io.results import read_json  # noqa: E402
from landscape.io.store import StudyStore  # noqa: E402
from landscape.study.config import StudyConfig  # noqa: E402

#: Relative agreement of γ between the limit, the λ = 0 direction and the closed form.
RTOL = 1e-8


def _points(cell: Path):
    """(config, [(point id, label, θ)]) of the distinct minima of a λ > 0 cell, read from a copy."""
    with tempfile.TemporaryDirectory() as tmp:
        for f in cell.glob("study.sqlite*"):
            shutil.copy2(f, Path(tmp) / f.name)
        with StudyStore.open(Path(tmp) / "study.sqlite", readonly=True) as store:
            cfg = StudyConfig.from_dict(store.config)
            pts = [(p.id, p.label, np.asarray(store.point(p.id).params, dtype=np.float64))
                   for p in store.points() if p.kind == "minimum"]
    return cfg, pts


def _zero_directions(zero: Path | None, name: str) -> list[dict]:
    if zero is None:
        return []
    p = zero / "cells" / name / "summary.json"
    return list(read_json(p).get("directions", [])) if p.is_file() else []


def follow(reg: Path, zero: Path | None, floor: float) -> list[dict]:
    rows = []
    for cell in sorted(p for p in (reg / "cells").iterdir() if (p / "study.sqlite").is_file()):
        cfg, pts = _points(cell)
        dirs = _zero_directions(zero, cell.name)
        for pid, label, th in pts:
            t = time.perf_counter()
            res = continue_to_limit(cfg.model, th, floor=floor, lambda0=cfg.lambda0, analysis=cfg.analysis,
                                    point_id=pid, label=label)
            s = res.summary()
            lim = res.limit or {}
            same = [d for d in dirs if d["label"] == lim.get("label")]
            z = max(same, key=lambda d: d["count"]) if same else None
            rel_zero = abs(lim["gamma"] - z["gamma"]) / z["gamma"] if z and lim else None
            cf = s["closed_form_gamma"]
            gaps = [abs(r["gap_closed_form"]) for r in res.path if r.get("gap_closed_form") is not None]
            agree = bool(lim.get("certified") and lim.get("label") == label and rel_zero is not None
                         and rel_zero <= RTOL and (cf is None or s["limit_rel_error"] <= RTOL))
            rows.append({"cell": cell.name, "L": cfg.model.L, "point_id": pid, "label_reg": label,
                         "lambda_start": s["lambda_start"], "lambda_end": s["lambda_end"], "steps": s["steps"],
                         "end": s["end"], "gamma_start": s["gamma_start"], "gamma_end": s["gamma_end"],
                         "path_max_gap_closed_form": max(gaps) if gaps else None, "monotone": s["monotone"],
                         "limit_label": lim.get("label"), "limit_gamma": lim.get("gamma"),
                         "kkt_residual": lim.get("kkt_residual"), "support_size": lim.get("support_size"),
                         "local_max": lim.get("local_max"), "polish": lim.get("polish"),
                         "closed_form": s["closed_form"], "closed_form_gamma": cf, "rel_error_closed_form": s["limit_rel_error"],
                         "lambda0_direction": ({"id": z["id"], "gamma": z["gamma"], "count": z["count"]} if z else None),
                         "rel_error_lambda0": rel_zero, "agree": agree, "disagreement": s["disagreement"],
                         "seconds": time.perf_counter() - t})
            print(f"{cell.name} point {pid} ({label}): {s['steps']} steps to λ={s['lambda_end']:.3g}; limit "
                  f"{lim.get('label')} γ={lim.get('gamma', float('nan')):.12g}; λ = 0 "
                  f"{z['gamma'] if z else None}; closed form {cf}; agree {agree}", flush=True)
    return rows


def markdown(out: dict) -> str:
    lines = ["# λ → 0 limit of the λ = 2⁻¹⁰ minima against the λ = 0 runs", "",
             f"Generated {out['generated']} by `data/sweeps/lambda0_limit.py` from `{out['reg']}` (λ = 2⁻¹⁰) and "
             f"`{out['zero']}` (λ = 0); floor {out['floor']:g}; agreement to {out['rtol']:g} relative. "
             f"{out['agree']} of {len(out['rows'])} minima agree.", "",
             "γ = min margin / ‖θ‖^{L+1}. Path: the pseudo-arclength follower in legs halving λ, every point "
             "certified to ‖∇L‖ ≤ max(1e-9·λ‖θ‖, 1e-14); it stops where 1e-14 exceeds 1e-6·λ‖θ‖. Limit: the λ = 0 "
             "study's polish of the last point's direction (balanced factorisation of the centred logits, KKT "
             "Newton, second-order test).", "",
             "| cell | point | label at 2⁻¹⁰ | λ end | steps | γ at 2⁻¹⁰ | γ at λ end | max path gap to closed form | "
             "limit label | limit γ | KKT residual | local max | λ = 0 γ (same label) | rel. diff. to λ = 0 | closed form γ | "
             "rel. diff. to closed form | agree |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in out["rows"]:
        z = r["lambda0_direction"]
        g = lambda v, f=".12g": "-" if v is None else format(v, f)  # noqa: E731
        lines.append(f"| {r['cell']} | {r['point_id']} | {r['label_reg']} | {r['lambda_end']:.3g} | {r['steps']} | "
                     f"{g(r['gamma_start'])} | {g(r['gamma_end'])} | {g(r['path_max_gap_closed_form'], '.1e')} | "
                     f"{r['limit_label']} | {g(r['limit_gamma'])} | {g(r['kkt_residual'], '.1e')} | "
                     f"{'yes' if r['local_max'] else 'no'} | {g(z['gamma'] if z else None)} | {g(r['rel_error_lambda0'], '.1e')} | "
                     f"{g(r['closed_form_gamma'])} | {g(r['rel_error_closed_form'], '.1e')} | {'yes' if r['agree'] else 'no'} |")
    lines += ["", "Ends of the paths: " + "; ".join(sorted({r["end"] for r in out["rows"]}))]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reg", default=str(HERE / "lambda0-depth-reg"), help="the λ = 2⁻¹⁰ sweep folder")
    ap.add_argument("--zero", default=str(HERE / "lambda0-depth"), help="the λ = 0 sweep folder of the same cells")
    ap.add_argument("--out", default=str(HERE / "lambda0-limit"), help="output stem (.json and .md)")
    ap.add_argument("--floor", type=float, default=1e-12)
    a = ap.parse_args(argv)
    t = time.perf_counter()
    reg, zero = Path(a.reg), Path(a.zero) if a.zero else None
    rows = follow(reg, zero, a.floor)

    def rel(p: Path) -> str:
        try:
            return str(p.resolve().relative_to(HERE.parents[1]))
        except ValueError:
            return str(p)

    out = {"generated": datetime.now(timezone.utc).isoformat(timespec="seconds"), "reg": rel(reg),
           "zero": rel(zero) if zero else None, "floor": a.floor, "rtol": RTOL,
           "machine": f"{platform.machine()}, {platform.python_version()}", "wall_time_s": time.perf_counter() - t,
           "agree": sum(r["agree"] for r in rows), "rows": rows}
    Path(a.out + ".json").write_text(json.dumps(out, indent=2) + "\n")
    Path(a.out + ".md").write_text(markdown(out))
    print(f"written {a.out}.json and .md: {out['agree']} of {len(rows)} agree ({out['wall_time_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
