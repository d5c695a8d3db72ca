"""Probe: hard λ = 0 starts decided at every checkpoint of a long margin flow (issue 36 §1).

The starts of a committed cell that either of two runs of different length left uncertified
(default: lambda0-depth-k10-flow and lambda0-depth-k10-flow60k, L = 4) are run again from the
cell's configuration — the same GD, then the margin flow in chunks of ``--chunk`` steps up to
``--chunks`` chunks — and decided at every checkpoint k ≥ 2 by the study's own rule, the
checkpoint before it as the midpoint (what ``[lambda0] extend_rounds`` does after the first
decision). Shows how often the decision of a start changes as its flow goes on, and whether the
first certifying checkpoint (where an extended study stops) names the direction the later
checkpoints name. Writes data/sweeps/lambda0-checkpoints.json.

    OMP_NUM_THREADS=2 python data/sweeps/lambda0_checkpoints.py
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch
from threadpoolctl import threadpool_limits

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from landscape.study.config import StudyConfig  # noqa: E402
from landscape.study.lambda0 import decide, margin_flow, run_dynamics  # noqa: E402


def _arg(name: str, default: str) -> str:
    return sys.argv[sys.argv.index(name) + 1] if name in sys.argv else default


def main() -> None:
    cell = _arg("--cell", "L=4")
    runs = _arg("--runs", "lambda0-depth-k10-flow,lambda0-depth-k10-flow60k").split(",")
    chunk, chunks = int(_arg("--chunk", "15000")), int(_arg("--chunks", "8"))
    cell_dirs = [HERE / r / "cells" / cell for r in runs]
    cfg = StudyConfig.from_dict(json.loads((cell_dirs[0] / "config.json").read_text(encoding="utf-8")))
    recs = [{r["index"]: r for r in json.loads((d / "directions.json").read_text(encoding="utf-8"))["starts"]}
            for d in cell_dirs]
    idx = sorted(i for i in recs[0] if any(rs[i]["stop_reason"] != "certified" for rs in recs))
    t = time.perf_counter()
    dyn = run_dynamics(replace(cfg, lambda0=replace(cfg.lambda0, continue_iter=0)), idx)
    points = [torch.from_numpy(dyn.theta)]
    for _ in range(chunks):
        points.append(margin_flow(cfg, points[-1].numpy(), chunk).theta.detach().to("cpu", torch.float64))
    flow_s = time.perf_counter() - t
    rows = []
    for j, i in enumerate(idx):
        decisions = []
        for k in range(2, chunks + 1):
            with threadpool_limits(limits=1, user_api="blas"):
                rec, _ = decide(cfg, points[k][j].numpy(), points[k - 1][j].numpy())
            decisions.append({"flow_steps": k * chunk, "stop_reason": rec["stop_reason"], "label": rec.get("label"),
                              "gamma": rec.get("gamma"), "support_size": rec.get("support_size"),
                              "detail": rec["detail"]})
        first = next((d for d in decisions if d["stop_reason"] == "certified"), None)
        rows.append({"index": i, "runs": {r: [rs[i]["stop_reason"], rs[i]["label"], rs[i]["gamma"]]
                                          for r, rs in zip(runs, recs)},
                     "decisions": decisions,
                     "first_certified": first and {k: first[k] for k in ("flow_steps", "label", "gamma")},
                     "last": {k: decisions[-1][k] for k in ("flow_steps", "stop_reason", "label", "gamma")}})
        print(i, [(d["flow_steps"], d["stop_reason"][:5], d["label"], f"{d['gamma']:.6e}" if d["gamma"] else None)
                  for d in decisions], flush=True)
    out = {"cell": cell, "runs": runs, "dynamics": f"the cell's descent, then the margin flow in {chunks} chunks of "
           f"{chunk} steps (each chunk restarts the step size); decided at every checkpoint from {2 * chunk} steps "
           "on, the checkpoint before as the midpoint", "starts": idx, "rows": rows,
           "wall_time_s": time.perf_counter() - t, "flow_s": flow_s}
    (HERE / "lambda0-checkpoints.json").write_text(json.dumps(out, indent=1, ensure_ascii=False) + "\n",
                                                    encoding="utf-8")


if __name__ == "__main__":
    main()
