"""The λ = 0 sweeps against the same starts at λ = 2⁻¹⁰ (issue 36 §3): one report of the finished cells.

    python data/sweeps/lambda0_report.py        # writes data/sweeps/lambda0-report.json and .md

Reads every finished cell of the committed sweeps named in :data:`PAIRS` (λ = 0 sweep, λ = 2⁻¹⁰
sweep of the same cells and starts) and writes, per cell: the NC fraction at λ = 0 over all
starts with its 95% Wilson interval (a start counts as NC when its direction is certified and
labelled DNC), the labels, normalised margins γ (and γ/γ_NC) and logit ranks of the certified
directions, the DNC fraction at λ = 2⁻¹⁰, and the start-by-start 2×2 table (NC at λ = 0 × DNC at
λ = 2⁻¹⁰) over the starts certified in both, with Newcombe's paired interval for the difference.
A cell of the λ = 2⁻¹⁰ sweep that has not finished leaves its side of the row empty.
"""
from __future__ import annotations

import collections
from datetime import datetime, timezone
import json
import platform
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from landscape.io.results import read_json  # noqa: E402
from landscape.study.lambda0 import is_lambda0_folder  # noqa: E402
from landscape.study.stats import paired_counts, paired_difference, proportion  # noqa: E402
from landscape.study.sweep import cell_end_labels  # noqa: E402

#: (λ = 0 sweep, λ = 2⁻¹⁰ sweep of the same cells and starts), folders under data/sweeps.
PAIRS = (("lambda0-depth", "lambda0-depth-reg"), ("lambda0-width", "lambda0-width-reg"),
         ("lambda0-depth-k10", "lambda0-depth-k10-reg"), ("lambda0-depth-k10-long", "lambda0-depth-k10-reg"),
         ("lambda0-depth-k10-flow", "lambda0-depth-k10-reg"), ("lambda0-depth-k10-extend", "lambda0-depth-k10-reg"))
#: (λ = 0 sweep, the same cells and starts run longer): how the decision moves with the run's length.
LONGER = (("lambda0-depth-k10", "lambda0-depth-k10-long"), ("lambda0-depth-k10", "lambda0-depth-k10-flow"),
          ("lambda0-depth-k10-flow", "lambda0-depth-k10-flow60k"), ("lambda0-depth-k10-extend", "lambda0-depth-k10-flow60k"))
#: Two certified ends are the same direction when their γ agree to this (γ is told apart to 9 digits).
SAME_GAMMA_RTOL = 1e-8
NC = "DNC"
#: What produced the committed cells (the summaries carry versions, not commits).
PROVENANCE = ("Code: lambda0-depth and lambda0-depth-reg (GD lr 0.25) at commit c0ca14a with the λ = 0 preset "
              "changes of f2f73ae's session; lambda0-depth-k10(-reg), lambda0-width d=32, lambda0-init and "
              "lambda0-spectral with the working tree of 12b11c6 (the λ = 0 store being written; the decisions' "
              "code is f2f73ae's, whose polish at the used width changes γ only in round-off); lambda0-width "
              "d=8, 16 and lambda0-width-reg at commit cc68625 plus refactors of landscape/engines and "
              "landscape/core (GD lr 0.5). The lambda0-width d=8 cell repeats the lr-0.5 depth cell that "
              "lambda0-depth at lr 0.25 replaced. lambda0-depth-k10-flow at commit c1f7bed with its preset (committed "
              "in 3a65f6e); lambda0-depth-k10-flow60k at commit d3cd7b1 (`landscape sweep --preset "
              "lambda0-depth-k10-flow --set lambda0.continue_iter=60000 --set sweep.L=[4] --set "
              "name=lambda0-depth-k10-flow60k`); lambda0-depth-k10-extend at commit fd90b80 with its preset; "
              "lambda0-checkpoints.json by data/sweeps/lambda0_checkpoints.py at the same commit.")
#: Panels without a λ = 2⁻¹⁰ side (λ = 0 only): the initialisation.
SINGLE = ("lambda0-init", "lambda0-spectral")


def _machine() -> str:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model or platform.processor()} ({platform.machine()}), shared 2-core virtual machine"


def _written(path: Path) -> str:
    """When a cell's summary was written (UTC, from the file's time: the summaries carry no date; a
    date an earlier report recorded is kept, :func:`_keep_dates`)."""
    return datetime.fromtimestamp(path.stat().st_mtime, timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _finished(cell_dir: Path, n: int) -> dict | None:
    p = cell_dir / "summary.json"
    if not p.is_file():
        return None
    s = read_json(p)
    return s if s.get("n_trajectories") == n else None


def lambda0_side(cell_dir: Path, summary: dict) -> dict:
    starts = read_json(cell_dir / "directions.json")["starts"]
    n = len(starts)
    cert = [r for r in starts if r["stop_reason"] == "certified"]
    nc_gamma = summary["closed_forms"]["nc_code_margin"]
    gam = collections.Counter((r["label"], round(r["gamma"], 9), round(r["gamma"] / nc_gamma, 6), r["z_rank"])
                              for r in cert)
    cfg = summary["config"]
    return {"n": n, "certified": len(cert), "certified_ci": proportion(len(cert), n),
            "by_rule": summary["certified"]["by_rule"],
            "after_extension": int(summary["certified"].get("after_extension", 0)),
            "nc": proportion(sum(r["label"] == NC for r in cert), n),
            "nc_of_certified": proportion(sum(r["label"] == NC for r in cert), len(cert)) if cert else None,
            "labels": dict(collections.Counter(r["label"] for r in cert).most_common()),
            "stop_reasons": {k: v for k, v in summary["stop_reasons"].items() if v},
            "gamma_nc_closed_form": nc_gamma, "closed_forms": summary["closed_forms"],
            "directions": [{"label": lab, "gamma": g, "gamma_over_nc": q, "z_rank": zr, "count": c}
                           for (lab, g, q, zr), c in sorted(gam.items(), key=lambda x: -x[1])],
            "z_rank": dict(sorted(collections.Counter(r["z_rank"] for r in cert).items())),
            "dynamics": summary["dynamics"], "rule": cfg["lambda0"]["rule"], "init": cfg["init"],
            # the batches' seconds shared out over their starts (the descents run as one batch)
            "per_start_s": {k: float(summary.get("timings", {}).get(t, 0.0)) / n
                            for k, t in (("descent_s", "descent_s"), ("continue_s", "margin_flow_s"),
                                         ("decide_s", "decide_s"))},
            "steps_per_start": {"descent": max(int(r.get("descent_iterations") or 0) for r in starts),
                                "margin_flow": max(int(r.get("continue_iterations") or 0) for r in starts)},
            "wall_time_s": summary["wall_time_s"], "environment": summary["environment"],
            "written": _written(cell_dir / "summary.json")}


def reg_side(cell_dir: Path, summary: dict) -> dict:
    ends = cell_end_labels(cell_dir)
    n = len(ends)
    labs = [v for v in ends.values() if v is not None]
    return {"n": n, "certified": len(labs), "dnc": proportion(labs.count(NC), n),
            "labels": dict(collections.Counter(labs).most_common()),
            "uncertified_by_reason": {str(r["stop_reason"]): int(r["count"]) for r in summary["uncertified"]},
            "dynamics": (summary.get("dynamics") or "") + " (" + "; ".join(
                f"{st['engine']} " + ", ".join(f"{k} {st[k]:g}" for k in ("lr", "max_iter", "tol", "entry_grad_norm")
                                               if k in st and not (k == "lr" and st["engine"] != "gd"))
                for st in summary["config"]["stages"]) + f"; certify_tol {summary['config']['certify_tol']:g})",
            "lambda": summary["config"]["model"]["lambda"],
            "wall_time_s": summary.get("wall_time_s"), "environment": summary.get("environment"),
            "written": _written(cell_dir / "summary.json")}


def paired(l0_dir: Path, reg_dir: Path) -> dict:
    """2×2 over the starts certified in both regimes: NC at λ = 0 (first) × DNC at λ = 2⁻¹⁰ (second)."""
    a, b = cell_end_labels(l0_dir), cell_end_labels(reg_dir)
    both = sorted(i for i in set(a) & set(b) if a[i] is not None and b[i] is not None)
    tab = paired_counts((a[i] == NC for i in both), (b[i] == NC for i in both))
    # λ = 0 label × λ = 2⁻¹⁰ label, every start (None: not certified)
    cross = collections.Counter(f"{a.get(i)} | {b.get(i)}" for i in sorted(set(a) | set(b)))
    return {"n_both_certified": len(both), "table": tab, "difference": paired_difference(**tab),
            "labels_cross": dict(cross.most_common())}


def longer_run(short_dir: Path, long_dir: Path) -> dict:
    """The same starts decided after a short and a longer run: how many each certifies, and of the
    starts both certify how many reach the same direction (γ to :data:`SAME_GAMMA_RTOL`, the same
    rank of the logits); the others listed (index, short label and γ, long label and γ). A label can
    differ at the same γ where the structure table learned a name after the short run (its "other")."""
    a = {r["index"]: r for r in read_json(short_dir / "directions.json")["starts"]}
    b = {r["index"]: r for r in read_json(long_dir / "directions.json")["starts"]}
    cert = lambda r: r is not None and r["stop_reason"] == "certified"   # noqa: E731
    both = sorted(i for i in a if cert(a[i]) and cert(b.get(i)))
    same = [i for i in both if abs(a[i]["gamma"] - b[i]["gamma"]) <= SAME_GAMMA_RTOL * b[i]["gamma"]
            and a[i]["z_rank"] == b[i]["z_rank"]]
    renamed = collections.Counter(f"{a[i]['label']} → {b[i]['label']}" for i in same if a[i]["label"] != b[i]["label"])
    return {"short": short_dir.parents[1].name, "long": long_dir.parents[1].name, "cell": short_dir.name,
            "n": len(a), "certified_short": sum(cert(r) for r in a.values()),
            "certified_long": sum(cert(r) for r in b.values()), "both": len(both), "same_direction": len(same),
            "renamed": dict(renamed),
            "short_only": sorted(i for i in a if cert(a[i]) and not cert(b.get(i))),
            "long_only": sorted(i for i in a if cert(b.get(i)) and not cert(a[i])),
            "moved": [{"index": i, "short": a[i]["label"], "short_gamma": a[i]["gamma"], "long": b[i]["label"],
                       "long_gamma": b[i]["gamma"]} for i in both if i not in same]}


def _keep_dates(rep: dict) -> None:
    """Keep the dates of the cells an earlier report recorded (a checkout resets file times), where
    the cell is the same run (the same wall time), and the machine it named for each sweep."""
    path = HERE / "lambda0-report.json"
    if not path.is_file():
        return
    def key(sw, r, side):   # the same run of the same cell: its wall time too
        return sw["lambda0"], r["cell"], side, r[side].get("wall_time_s")

    earlier = read_json(path)
    old = {key(sw, r, side): r[side]["written"] for sw in earlier["sweeps"] for r in sw["cells"]
           for side in ("lambda0", "reg") if r.get(side) and r[side].get("written")}
    for sw in rep["sweeps"]:
        for r in sw["cells"]:
            for side in ("lambda0", "reg"):
                if r.get(side) and key(sw, r, side) in old:
                    r[side]["written"] = old[key(sw, r, side)]
    # the machine that computed each sweep: an earlier report's (its own, or the one it named for all)
    machines = {sw["lambda0"]: sw.get("machine", earlier.get("machine")) for sw in earlier["sweeps"]}
    for sw in rep["sweeps"]:
        sw["machine"] = machines.get(sw["lambda0"]) or sw["machine"]


def build() -> dict:
    out = {"machine": _machine(), "sweeps": []}
    for l0_name, reg_name in PAIRS + tuple((name, None) for name in SINGLE):
        l0_root = HERE / l0_name
        reg_root = HERE / reg_name if reg_name else None
        if not (l0_root / "sweep.json").is_file():
            continue
        rec = read_json(l0_root / "sweep.json")
        reg_rec = read_json(reg_root / "sweep.json") if reg_root and (reg_root / "sweep.json").is_file() else None
        rows = []
        for cell in rec["cells"]:
            d0 = l0_root / cell["dir"]
            n = rec["sweep_config"]["trajectories"]
            s0 = _finished(d0, n)
            if s0 is None or not is_lambda0_folder(d0):
                continue
            m = s0["config"]["model"]
            row = {"cell": cell["name"], "K": m["K"], "n": m["n"], "d": m["d"], "L": m["L"], "init": s0["config"]["init"],
                   "lambda0": lambda0_side(d0, s0), "reg": None, "paired": None}
            dr = reg_root / "cells" / cell["name"] if reg_root else None
            sr = _finished(dr, n) if reg_rec is not None else None
            if sr is not None:
                row["reg"] = reg_side(dr, sr)
                row["paired"] = paired(d0, dr)
            rows.append(row)
        out["sweeps"].append({"lambda0": l0_name, "reg": reg_name, "cells": rows, "machine": out["machine"]})
    out["longer"] = []
    for short, long in LONGER:
        for cell in sorted((HERE / long / "cells").glob("*")) if (HERE / long / "cells").is_dir() else []:
            if (cell / "directions.json").is_file() and (HERE / short / "cells" / cell.name / "directions.json").is_file():
                out["longer"].append(longer_run(HERE / short / "cells" / cell.name, cell))
    _keep_dates(out)
    return out


def _pct(p: dict) -> str:
    return f"{100 * p['fraction']:.1f}% [{100 * p['ci_low']:.1f}%, {100 * p['ci_high']:.1f}%]"


def markdown(rep: dict) -> str:
    lines = ["# λ = 0 against λ = 2⁻¹⁰, start by start (issue 36 §3)", "",
             "Machines: each sweep's (below). Written by `python data/sweeps/lambda0_report.py` from the committed "
             "cells; NC fractions are over all starts (an uncertified start is not NC), 95% Wilson intervals. "
             "The 2×2 tables and paired differences (Newcombe's interval) are over the starts certified in both "
             "regimes. " + PROVENANCE, ""]
    for sw in rep["sweeps"]:
        lines += [f"## {sw['lambda0']}" + (f" / {sw['reg']}" if sw["reg"] else " (λ = 0 only)"), "",
                  f"Machine (λ = 0 side): {sw['machine']}.", "",
                  "| cell | λ=0: certified (by rule; not certified) | NC at λ=0 | λ=0 labels | λ=2⁻¹⁰: certified | DNC at λ=2⁻¹⁰ "
                  "| 2×2 (both, NC only, DNC only, neither; n) | NC − DNC, paired (95%) | wall λ=0 / λ=2⁻¹⁰ |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in sw["cells"]:
            a, b, p = r["lambda0"], r["reg"], r["paired"]
            labs = ", ".join(f"{k} {v}" for k, v in a["labels"].items())
            cert_how = f"strict {a['by_rule']['strict']}, stable {a['by_rule']['stable']}" + (
                f", {a['after_extension']} of them after more flow rounds" if a.get("after_extension") else "") + "".join(
                f"; {k} {v}" for k, v in a["stop_reasons"].items() if k != "certified")
            bcol = (f"{b['certified']}/{b['n']}", _pct(b["dnc"])) if b else ("—", "—")
            pcol = (f"{p['table']['both']}, {p['table']['first_only']}, {p['table']['second_only']}, "
                    f"{p['table']['neither']}; {p['n_both_certified']}") if p else "—"
            diff = (f"{100 * p['difference']['difference']:+.1f} pp [{100 * p['difference']['ci_low']:+.1f}, "
                    f"{100 * p['difference']['ci_high']:+.1f}]") if p else "—"
            wall = f"{a['wall_time_s']:.0f} s / " + (f"{b['wall_time_s']:.0f} s" if b and b["wall_time_s"] else "—")
            lines.append(f"| {r['cell']} | {a['certified']}/{a['n']} ({cert_how}) | {_pct(a['nc'])} | {labs} | {bcol[0]} | "
                         f"{bcol[1]} | {pcol} | {diff} | {wall} |")
        lines += ["", "Written (λ = 0 / λ = 2⁻¹⁰; torch threads): " + "; ".join(
            f"{r['cell']} {r['lambda0']['written']} ({r['lambda0']['environment'].get('threads')})"
            + (f" / {r['reg']['written']} ({(r['reg']['environment'] or {}).get('threads')})" if r["reg"] else "")
            for r in sw["cells"])]
        lines += ["", "Directions at λ = 0 (label, γ, γ/γ_NC, rank of the logits, starts):", ""]
        for r in sw["cells"]:
            a = r["lambda0"]
            ds = "; ".join(f"{x['label']} γ={x['gamma']:.9g} ({x['gamma_over_nc']:.4f}·γ_NC, rank {x['z_rank']}) "
                           f"×{x['count']}" for x in a["directions"])
            lines.append(f"* {r['cell']} (γ_NC = {a['gamma_nc_closed_form']:.9g}): {ds}")
        lines += ["", "Per start (seconds of descent / margin flow / decision, each batch's time shared over its starts; "
                  "at most how many descent and "
                  "margin-flow steps; the end is decided after them, not by a tolerance): " + "; ".join(
                      f"{r['cell']} {r['lambda0']['per_start_s']['descent_s']:.2f} / "
                      f"{r['lambda0']['per_start_s']['continue_s']:.2f} / {r['lambda0']['per_start_s']['decide_s']:.2f} s, "
                      f"{r['lambda0']['steps_per_start']['descent']} + {r['lambda0']['steps_per_start']['margin_flow']} steps"
                      for r in sw["cells"])]
        lines += ["", "Dynamics: " + "; ".join(sorted({r['lambda0']['dynamics'] for r in sw["cells"]}))
                  + " (λ = 0, rule " + ", ".join(sorted({r['lambda0']['rule'] for r in sw["cells"]})) + ")",
                  "Dynamics at λ = 2⁻¹⁰: " + "; ".join(sorted({r['reg']['dynamics'] for r in sw["cells"] if r["reg"]})),
                  ""]
        for r in sw["cells"]:
            if r["paired"]:
                lines.append(f"* {r['cell']} labels (λ=0 | λ=2⁻¹⁰): "
                             + ", ".join(f"{k} ×{v}" for k, v in r["paired"]["labels_cross"].items()))
        lines.append("")
    if rep.get("longer"):
        lines += ["## The same starts run longer", "",
                  "Certified by the shorter and the longer run; of the starts both certify, how many reach the same "
                  "direction (γ to 1e-8, the same rank of the logits), with the labels that changed name at the same γ "
                  "and the starts that moved to another direction.", ""]
        for c in rep["longer"]:
            moved = "; ".join(f"{m['index']}: {m['short']} γ={m['short_gamma']:.9g} → {m['long']} γ={m['long_gamma']:.9g}"
                              for m in c["moved"]) or "none"
            renamed = ", ".join(f"{k} ×{v}" for k, v in c["renamed"].items()) or "none"
            lines.append(f"* {c['short']} → {c['long']} {c['cell']}: certified {c['certified_short']} → "
                         f"{c['certified_long']} of {c['n']}; both {c['both']}, same direction {c['same_direction']} "
                         f"(renamed at the same γ: {renamed}); moved: {moved}; certified only by the shorter run: "
                         f"{c['short_only'] or 'none'}")
        lines.append("")
    lines += checkpoint_lines()
    longer = HERE / "lambda0-longer.json"
    if longer.is_file():
        lg = read_json(longer)
        lines += ["## The discordant starts with 10× longer GD (`python data/sweeps/lambda0_longer.py`)", ""]
        for c in lg["cells"]:
            lines.append(f"* {c.get('sweep', 'lambda0-depth')} {c['cell']}: {c['same_label']} of {len(c['starts'])} starts that reach NC at "
                         f"λ = 0 and pairs at λ = 2⁻¹⁰ certify at the same label again after {c['dynamics']} "
                         f"({c['wall_time_s']:.0f} s); starts {c['starts']}")
        for c in lg.get("first", []):
            lines.append(f"* {c.get('sweep', 'lambda0-depth')} {c['cell']}, the first {len(c['starts'])} certified starts: {c['same_label']} "
                         f"certify at the same label after the same 10× longer GD ({c['wall_time_s']:.0f} s)")
        lines.append("")
    return "\n".join(lines)


def checkpoint_lines() -> list[str]:
    """The hard starts decided at every checkpoint of a long flow (data/sweeps/lambda0-checkpoints.json):
    per start, the decision at each checkpoint, and whether the first certified direction is the
    last certified one (the label and γ to :data:`SAME_GAMMA_RTOL`)."""
    path = HERE / "lambda0-checkpoints.json"
    if not path.is_file():
        return []
    ck = read_json(path)
    same, rows = 0, []
    for r in ck["rows"]:
        cert = [d for d in r["decisions"] if d["stop_reason"] == "certified"]
        first, last = (cert[0], cert[-1]) if cert else (None, None)
        ok = first is not None and first["label"] == last["label"] and \
            abs(first["gamma"] - last["gamma"]) <= SAME_GAMMA_RTOL * last["gamma"]
        same += ok
        steps = ", ".join(f"{d['flow_steps'] // 1000}k {'✓' if d['stop_reason'] == 'certified' else '·'}"
                          f"{d['label']} {d['gamma']:.6g}" if d["gamma"] else f"{d['flow_steps'] // 1000}k {d['stop_reason']}"
                          for d in r["decisions"])
        runs = "; ".join(f"{k}: {v[0]} {v[1]}" for k, v in r["runs"].items())
        rows.append(f"* start {r['index']} ({runs}): {steps} — first certified "
                    + (f"{first['label']} at {first['flow_steps']} steps, {'the same as' if ok else 'not'} the last certified"
                       f" ({last['label']} at {last['flow_steps']})" if first else "never"))
    return ["## Hard starts decided at every checkpoint (`python data/sweeps/lambda0_checkpoints.py`)", "",
            f"{ck['cell']} of {', '.join(ck['runs'])}: the {len(ck['rows'])} starts either run left uncertified, "
            f"{ck['dynamics']} ({ck['wall_time_s']:.0f} s; ✓ certified, · not). The first certified direction is the "
            f"last certified one for {same} of {len(ck['rows'])}.", ""] + rows + [""]


def main() -> None:
    rep = build()
    (HERE / "lambda0-report.json").write_text(json.dumps(rep, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    text = markdown(rep)
    (HERE / "lambda0-report.md").write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
