"""The objective's two paths side by side: numpy against torch, hand-written against autograd.

For the linear model at the default study's size (K=4, n=2, d=8, L=3, P = 224) and at the
paper's (K=10, n=5, d=70, L=2, P = 9,100), and for the ReLU model (CE) at the default size and at
K=10, n=5, d=30, L=2 (P = 2,700), times per call, interleaved (each candidate once per round, the
median of the rounds, so that a noisy machine biases none of them):

* ``grad``: :meth:`DeepUFM.loss_and_grad` computed in numpy (``host_gradient``, the default at
  the linear model's small size) and in torch (``smallmm``'s padded batched products);
* ``hvp``: one application of the hand-written Hessian-vector product
  (:meth:`DeepUFM.hvp_operator`: the bottleneck form's for the linear model, the layer-by-layer
  one with ReLU's masks held fixed for the ReLU model) and of the autograd one
  (:meth:`DeepUFM.hvp_operator_autograd`, double back-propagation through one retained graph), in
  the path the model takes; for the ReLU model also the hand-written product in torch where the
  model takes numpy (``host_hvp``), as ``hvp hand-written torch``.

``python benchmarks/bench_small_p.py [--rounds N]`` prints the table and writes
``benchmarks/results/small_p.json`` with the machine, date and thread count (``--out``
elsewhere). ``--smoke`` (seconds, for ``benchmarks/smoke.sh``; pass ``--out``): one round of 3
calls per candidate; it checks that the benchmark runs, not what it measures.
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch

from landscape.core.model import DeepUFM
from landscape.core.spec import ModelSpec

SIZES = {"default": (ModelSpec(K=4, n=2, d=8, L=3, lam=1e-3), (4, 12, 64, 384)),
         "paper": (ModelSpec(K=10, n=5, d=70, L=2, lam=2 ** -10), (4, 64)),
         "relu default": (ModelSpec(K=4, n=2, d=8, L=3, lam=1e-3, activation="relu"), (8, 64, 384)),
         "relu d=30": (ModelSpec(K=10, n=5, d=30, L=2, lam=2 ** -10, activation="relu"), (4, 64))}


def per_call_us(fn, calls: int) -> float:
    fn()
    t = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t) / calls * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "small_p.json"))
    ap.add_argument("--smoke", action="store_true", help="seconds: one round of 3 calls each (pass --out)")
    args = ap.parse_args()
    if args.smoke:
        args.rounds = 1
    rows = []
    for name, (spec, batches) in SIZES.items():
        for B in batches:
            host, dev = DeepUFM(spec), DeepUFM(spec)
            dev.host_gradient = dev.host_hvp = False
            th = torch.randn(B, spec.P, dtype=torch.float64, generator=torch.Generator().manual_seed(B)) * 0.3
            v = torch.randn_like(th)
            hand, auto = host.hvp_operator(th), host.hvp_operator_autograd(th)
            calls = 3 if args.smoke else max(3, int(2e5 // (B * spec.P ** 0.5)))
            cands = {"grad numpy": lambda: host.loss_and_grad(th), "grad torch": lambda: dev.loss_and_grad(th),
                     "hvp hand-written": lambda: hand(v), "hvp autograd": lambda: auto(v)}
            if not host.host_gradient:   # the paper's size, ReLU: the model never takes the numpy path
                del cands["grad numpy"]
            if host.host_hvp:            # ReLU on the CPU: the hand-written product in numpy, and in torch
                cands["hvp hand-written torch"] = (lambda op: lambda: op(v))(dev.hvp_operator(th))
            times = {k: [] for k in cands}
            for _ in range(args.rounds):
                for k, fn in cands.items():
                    times[k].append(per_call_us(fn, calls))
            row = {"size": name, "P": spec.P, "B": B, "host_gradient": host.host_gradient, "host_hvp": host.host_hvp,
                   **{f"{k} us": round(statistics.median(t), 1) for k, t in times.items()}}
            if "grad numpy us" in row:
                row["grad torch/numpy"] = round(row["grad torch us"] / row["grad numpy us"], 2)
            row["hvp autograd/hand"] = round(row["hvp autograd us"] / row["hvp hand-written us"], 2)
            if "hvp hand-written torch us" in row:
                row["hvp autograd/hand torch"] = round(row["hvp autograd us"] / row["hvp hand-written torch us"], 2)
            rows.append(row)
            print(row, flush=True)
    rec = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(), "processor": platform.processor(),
           "threads": torch.get_num_threads(), "torch": torch.__version__, "rounds": args.rounds, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rec, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
