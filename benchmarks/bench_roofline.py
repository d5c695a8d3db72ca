"""The GD step as a fraction of this machine's roofline, at the paper's sizes.

Measured side by side in one run, on one device:

* **compute peak**: a float64 2000³ matrix product (GFLOP/s), as in ``bench_paper.py``;
* **memory bandwidth**: a STREAM-like triad a = b + s·c over (B, P) float64 tensors far larger
  than the caches (bytes counted: read b, read c, write a = 24 bytes per element; best of 5);
* **the GD step** of the engine (``run_engine`` with ``gd``, lr 0.5, no curvature checks, at the
  working batch the engine picks for that P), in trajectory-steps/s.

Per trajectory-step the step executes F flops of matrix products (``bench_paper.step_flops``:
through the logits' bottleneck, 2·(3(L−1)Kd² + 3KdN)) and must move at least M bytes: the
gradient pass reads θ and writes ∇L, the update reads θ and ∇L and writes θ: 5·P float64 values
(the K-row intermediates are ≪ P). The roofline time of a trajectory-step is
max(F / peak, M / bandwidth); the step's **fraction of the roofline** is that time over the
measured one (1 = at the machine's limit). The target of issue 19 is ≥ 0.7.

``python benchmarks/bench_roofline.py [--device cpu|cuda] [--widths 16 70 100]`` (P = 1216,
9100, 16,000 at K = 10, n = 5, L = 2) writes ``benchmarks/results/roofline.json`` (``--out``
elsewhere). ``--smoke`` (seconds, for ``benchmarks/smoke.sh``; pass ``--out``): d = 16, 5 steps, a
32 MiB triad; it checks that the benchmark runs, not what it measures.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_paper import gd_throughput, peak_gflops, spec_at, step_flops, sync  # noqa: E402
from landscape.engines.batching import working_batch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def triad_gbs(device: torch.device, elements: int = 2 ** 25, reps: int = 5) -> float:
    """Best-of-``reps`` bandwidth (GB/s) of a = b + s·c on float64 vectors of ``elements`` entries
    (256 MiB each at the default), 24 bytes moved per element."""
    b = torch.rand(elements, dtype=torch.float64, device=device)
    c = torch.rand(elements, dtype=torch.float64, device=device)
    a = torch.empty_like(b)
    torch.add(b, c, alpha=3.0, out=a)
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        torch.add(b, c, alpha=3.0, out=a)
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 24.0 * elements / best / 1e9


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--widths", type=int, nargs="+", default=[16, 70, 100])
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--out", default=str(ROOT / "benchmarks/results/roofline.json"))
    ap.add_argument("--smoke", action="store_true", help="seconds: d=16, 5 steps, a small triad (pass --out)")
    args = ap.parse_args()
    if args.smoke:
        args.widths, args.steps = [16], 5
    device = torch.device(args.device)
    peak = peak_gflops(device)
    bw = triad_gbs(device, elements=2 ** 22 if args.smoke else 2 ** 25)
    print(f"{device}: dgemm peak {peak:.1f} GFLOP/s, triad {bw:.1f} GB/s ({torch.get_num_threads()} threads)")
    rows = []
    for d in args.widths:
        spec = spec_at(d)
        B = working_batch(spec, device)
        rate = gd_throughput(spec, B, args.steps, device)
        F = step_flops(spec, bottleneck=True)
        M = 5 * spec.P * 8
        t_roof = max(F / (peak * 1e9), M / (bw * 1e9))
        frac = t_roof * rate
        rows.append({"d": d, "P": spec.P, "B": B, "traj_steps_per_s": rate, "flops_per_step": F, "bytes_per_step": M,
                     "arithmetic_intensity": F / M, "bound": "compute" if F / (peak * 1e9) >= M / (bw * 1e9) else "memory",
                     "roofline_traj_steps_per_s": 1.0 / t_roof, "fraction_of_roofline": frac,
                     "achieved_gflops": F * rate / 1e9, "achieved_gbs": M * rate / 1e9})
        print(f"  d={d} P={spec.P} B={B}: {rate:,.0f} traj-steps/s; {F / M:.2f} flop/byte ({rows[-1]['bound']}-bound); "
              f"roofline {1 / t_roof:,.0f}; fraction {frac:.2f}", flush=True)
    result = {"what": "GD step against this machine's roofline (dgemm peak, triad bandwidth)",
              "date": time.strftime("%Y-%m-%d"), "device": str(device),
              "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "processor": platform.processor(),
                          "torch": torch.__version__, "torch_threads": torch.get_num_threads()},
              "dgemm_gflops": peak, "triad_gbs": bw, "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
