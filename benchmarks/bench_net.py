"""Speed of ``landscape net``: S seeds trained as one batch against the same seeds one at a time.

1. **Throughput**: ``--steps`` full-batch GD steps of the preset's networks (default
   ``digits-linear``: 16 seeds, MLP 64→128→64 + L=3 linear head, N = 500), batched, against the
   same seeds each trained alone for the same steps, side by side; seed-steps/s of both and the
   ratio. The batched parameters after the steps equal the lone ones (max |difference| reported).
2. **The preset end to end** (``--full``): ``landscape net --preset NAME`` with its stopping rule,
   wall time per phase (training, UFM hand-off, analysis) from its summary.

``python benchmarks/bench_net.py [--preset NAME] [--steps 200] [--full] [--device cpu|cuda] [--set K=V]``
(``--set net.dataset=data/digits.npz``: the same digits as an .npz, for a machine without scikit-learn)
writes ``benchmarks/results/net.json`` (a section per preset; ``--out`` elsewhere). ``--smoke``
(seconds, for ``benchmarks/smoke.sh``; pass ``--out``): 5 steps of 2 toy networks (5 images per
class, hidden 16, d = 10) and the preset end to end at that size with capped budgets; it checks
that the benchmark runs, not what it measures.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import torch

from landscape.net.config import load_net
from landscape.net.data import load_dataset
from landscape.net.model import BatchedNet
from landscape.net.run import build_net, run_net
from landscape.net.train import train

_DT = {"float64": torch.float64, "float32": torch.float32}
#: What ``--smoke`` sets before any ``--set`` of the command line.
SMOKE_SET = ["seeds=2", "net.n_train=5", "net.n_test=5", "net.d=10", "net.hidden=[16]", "train.max_iter=50",
             "train.check_every=10", "handoff.0.max_iter=500", "handoff.0.stall_window=100"]


def _steps(net, X, y, reg, lr, steps):
    t0 = time.perf_counter()
    train(net, X, y, reg, lr=lr, max_iter=steps, grad_tol=1e-300, loss_rtol=0.0, window=steps + 1,
          check_every=steps)
    if net.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def throughput(cfg, steps: int) -> dict:
    ds = load_dataset(cfg.dataset, cfg.n_train, cfg.n_test, seed=cfg.split_seed, standardise=cfg.standardise)
    dt = _DT[cfg.dtype]
    X = torch.tensor(ds.X_train, dtype=dt, device=cfg.device)
    y = torch.tensor(ds.y_train, device=cfg.device)
    reg = cfg.reg.to_dict()
    batched = build_net(cfg, ds)
    t_b = _steps(batched, X, y, reg, cfg.lr, steps)
    t_alone, diff = 0.0, 0.0
    for i, s in enumerate(cfg.seed_list):
        one = BatchedNet(n_features=ds.n_features, K=ds.K, d=cfg.d, L=cfg.L, activation=cfg.activation,
                         backbone=cfg.backbone, hidden=cfg.hidden, image_shape=ds.image_shape, seeds=[s], dtype=dt,
                         device=cfg.device)
        t_alone += _steps(one, X, y, reg, cfg.lr, steps)
        diff = max(diff, max(float((one.params[k][0] - batched.params[k][i]).detach().abs().max()) for k in one.params))
    S = cfg.seeds
    return {"seeds": S, "steps": steps, "dtype": cfg.dtype, "batched_s": t_b, "one_at_a_time_s": t_alone,
            "batched_seed_steps_per_s": S * steps / t_b, "one_at_a_time_seed_steps_per_s": S * steps / t_alone,
            "ratio": t_alone / t_b, "max_abs_param_difference": diff}


def full_run(cfg) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        s = run_net(cfg, Path(tmp) / "run", progress=False)
    lab = s["labels"]
    return {"timings": s["timings"], "labels": lab["fractions"], "uncertified": lab["uncertified"],
            "train_stop_reasons": sorted({x["train_stop_reason"] for x in s["seeds"]}),
            "logit_ranks": [x["logit_rank"] for x in s["seeds"]],
            "test_accuracy": [x["test_accuracy"] for x in s["seeds"]]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="digits-linear")
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--full", action="store_true", help="also run the preset end to end")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="as `landscape net --set`, e.g. net.dataset=data/digits.npz where scikit-learn is absent")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "net.json"))
    ap.add_argument("--smoke", action="store_true", help="seconds: toy sizes, 5 steps, --full included (pass --out)")
    a = ap.parse_args(argv)
    if a.smoke:
        a.steps, a.full = 5, True
    cfg = load_net(preset=a.preset, overrides=[f'device="{a.device}"', *(SMOKE_SET if a.smoke else []), *a.overrides])
    out = Path(a.out)
    rec = json.loads(out.read_text()) if out.is_file() else {}
    section = {"measured": time.strftime("%Y-%m-%d"), "machine": f"{platform.processor() or platform.machine()}, "
               f"{torch.get_num_threads()} threads, device {a.device}", "torch": torch.__version__,
               "throughput": throughput(cfg, a.steps)}
    if a.full:
        section["full"] = full_run(cfg)
    rec[a.preset] = section
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=1))
    print(json.dumps(section, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
