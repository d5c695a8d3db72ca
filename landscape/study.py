"""Running a study: random starts → engine pipeline → certified critical points → results folder.

Trajectories run in chunks of ``batch_size`` (one batched tensor computation each). A results
folder holds ``config.json`` (the effective configuration) and ``summary.json``; later stages of
the pipeline (analysis, database, graph, report) add files beside them.
"""
from __future__ import annotations

import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

from . import __version__
from .config import StudyConfig
from .flows import STOP_REASONS, TrajectoryResults, run_pipeline
from .init import draw_starts, trajectory_seed
from .model import DeepUFM


def run_trajectories(cfg: StudyConfig, indices, *, on_status=None, on_finished=None) -> TrajectoryResults:
    """Run the study's pipeline on trajectories ``indices`` (one batch). Pure function of (cfg, indices)."""
    model = DeepUFM(cfg.model)
    theta0 = draw_starts(cfg.model, cfg.init, cfg.seed, indices)
    return run_pipeline(model, theta0, list(cfg.stages), on_status=on_status, on_finished=on_finished)


def chunks(cfg: StudyConfig, done: set[int] | None = None) -> list[list[int]]:
    """Trajectory indices still to run, split into batches of ``batch_size``."""
    todo = [i for i in range(cfg.trajectories) if not done or i not in done]
    return [todo[i:i + cfg.batch_size] for i in range(0, len(todo), cfg.batch_size)]


def _json_default(o):
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"cannot serialise {type(o).__name__}")


def write_json(path: Path, obj) -> None:
    """Write JSON atomically (temporary file, then rename), so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2, default=_json_default, allow_nan=True))
    tmp.replace(path)


def environment() -> dict:
    return {"landscape": __version__, "torch": torch.__version__, "numpy": np.__version__,
            "python": platform.python_version(), "threads": torch.get_num_threads()}


def run_study(cfg: StudyConfig, out_dir: str | Path, *, progress: bool = True) -> dict:
    """Run every trajectory of ``cfg`` and write ``config.json`` and ``summary.json`` to ``out_dir``.

    Returns the summary dict. ``summary["trajectories"]`` has one record per trajectory (index,
    seed, stop reason, final loss and gradient norm, iterations, gradient and HVP evaluations);
    ``summary["certified_points"]`` lists the certified ones (‖∇L‖ ≤ certify_tol).
    """
    from tqdm.auto import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / "config.json", cfg.to_dict())
    t_start = time.perf_counter()
    records: list[dict] = []
    bar = tqdm(total=cfg.trajectories * len(cfg.stages), desc=cfg.name, unit="traj-stage", disable=not progress, dynamic_ncols=True)
    try:
        for idx in chunks(cfg):
            res = run_trajectories(cfg, idx, on_finished=bar.update,
                                   on_status=lambda s: bar.set_postfix_str(f"{s['engine']} it={s['iteration']} active={s['active']}", refresh=False))
            for b, i in enumerate(idx):
                records.append({"index": i, "seed": trajectory_seed(cfg.seed, i), **res.row(b)})
    finally:
        bar.close()
    wall = time.perf_counter() - t_start
    counts = {r: sum(1 for t in records if t["stop_reason"] == r) for r in STOP_REASONS}
    summary = {
        "study": cfg.name,
        "config": cfg.to_dict(),
        "dynamics": cfg.describe_dynamics(),
        "environment": environment(),
        "wall_time_s": wall,
        "n_trajectories": len(records),
        "stop_reasons": counts,
        "certified_points": [{"trajectory": t["index"], "loss": t["loss"], "grad_norm": t["grad_norm"]}
                             for t in records if t["stop_reason"] == "converged"],
        "trajectories": records,
    }
    write_json(out / "summary.json", summary)
    return summary
