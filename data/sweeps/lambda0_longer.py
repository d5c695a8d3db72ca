"""Probe: λ = 0 ends decided again after 10× longer GD, the rest of the λ = 0 procedure as committed.

Without ``--first``: the starts of lambda0-depth (L = 3 and 4) that reach NC at λ = 0 but the pairs
minimum at λ = 2⁻¹⁰. With ``--first N``: the first N certified starts of each cell (a sample that
does not select on the outcome), added under "first"; ``--sweep NAME --cells L=2,L=3`` takes them
from another committed λ = 0 sweep (entries carry their sweep). Writes
data/sweeps/lambda0-longer.json: per start, the committed label, γ and rule and the longer run's.

    OMP_NUM_THREADS=1 python data/sweeps/lambda0_longer.py             # the discordant starts
    OMP_NUM_THREADS=1 python data/sweeps/lambda0_longer.py --first 16  # and the first 16 certified
    OMP_NUM_THREADS=1 python data/sweeps/lambda0_longer.py --first 16 --sweep lambda0-depth-k10 --cells L=2,L=3,L=4
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from landscape.study.config import StudyConfig  # noqa: E402
from landscape.study.lambda0 import _start_records, describe_dynamics, run_dynamics  # noqa: E402
from landscape.study.sweep import cell_end_labels  # noqa: E402

FACTOR = 10


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    first = int(_arg("--first", "0"))
    sweep = _arg("--sweep", "lambda0-depth")
    cells = _arg("--cells", "L=3,L=4").split(",")
    path = HERE / "lambda0-longer.json"
    if first:
        out = json.loads(path.read_text(encoding="utf-8"))
        out["first"] = [c for c in out.get("first", []) if c.get("sweep", "lambda0-depth") != sweep]
    else:
        out = {"factor": FACTOR, "cells": []}
    for name in cells:
        cell = HERE / sweep / "cells" / name
        cfg = StudyConfig.from_dict(json.loads((cell / "config.json").read_text()))
        starts = {r["index"]: r for r in json.loads((cell / "directions.json").read_text())["starts"]}
        reg_dir = HERE / f"{sweep}-reg" / "cells" / name
        reg = cell_end_labels(reg_dir) if reg_dir.is_dir() else {}
        if first:
            idx = sorted(i for i, r in starts.items() if r["stop_reason"] == "certified")[:first]
        else:
            idx = sorted(i for i, r in starts.items() if r["stop_reason"] == "certified" and r["label"] == "DNC"
                         and reg.get(i) == "pairs")
        t = time.perf_counter()
        dyn = run_dynamics(cfg, idx, factor=FACTOR)
        recs, _ = _start_records(cfg, idx, dyn, lambda k: None)
        rows = [{"index": i, "committed": [starts[i]["label"], starts[i]["gamma"], starts[i]["detail"]],
                 "longer": [r["label"], r["gamma"], r["stop_reason"], r["detail"]], "reg": reg.get(i)}
                for i, r in zip(idx, recs)]
        out["first" if first else "cells"].append({"sweep": sweep, "cell": name, "dynamics": describe_dynamics(cfg, FACTOR), "starts": idx,
                             "same_label": sum(r["longer"][0] == r["committed"][0] and r["longer"][2] == "certified"
                                               for r in rows),
                             "rows": rows, "wall_time_s": time.perf_counter() - t})
        last = out["first" if first else "cells"][-1]
        print(last["cell"], last["same_label"], "of", len(idx), "same label;",
              [(r["index"], r["longer"][0], r["longer"][2]) for r in rows], flush=True)
        path.write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
