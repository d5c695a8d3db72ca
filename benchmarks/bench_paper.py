"""Speed and fidelity at the paper's size (K=10, n=5, L=2, λ=2⁻¹⁰), as ratios to baselines run side by side.

1. **Peak**: a float64 matrix multiply (2000³) on the device, the machine's own ceiling.
2. **Throughput**, per (device, P, B): the batched GD engine (trajectory-steps/s and GFLOP/s of
   the matrix products it executes, :func:`step_flops`; the linear model's gradient goes through
   the logits' K-row bottleneck, so it executes fewer flops than the layer-by-layer formulation the
   plain loop uses, whose equivalent rate is reported too), a lone ``torch.bmm`` of
   B × (d×d @ d×N) (the batched kernel of the layer-by-layer step), the
   fraction of the peak, and the plain ``torch.optim.SGD`` loop one trajectory at a time (its
   ratio). Also the working batch the engine picks for that P (``landscape.engines.batching``).
3. **pele** (where installed): ms per certified start of pele's ``lbfgs_cpp`` against the
   batched L-BFGS on the same starts at P = 9100.
4. **Fidelity** of the paper's experiment (``--preset paper-fig2`` at each width): certified
   fraction, saddles holding basin counts (must be 0), DNC fraction and Wilson interval, fraction
   per label, wall time per start; the transition states among the d = 70 minima (timed); and GD
   against gradient flow on the same starts at d = 70.
5. **Spectrum**: ``inspect_spectrum`` at the DNC minimum at each width, dense and block
   Lanczos + SLQ, timed per part, with the eigenvalue groups (:func:`spectrum_rows`).

Sections named in ``--skip`` are carried over from an existing ``--out`` file of the same device,
with the date they were measured (``"measured"``).

``python benchmarks/bench_paper.py [--device cpu|cuda] [--quick]`` writes
``benchmarks/results/paper.json`` (``--out`` elsewhere). ``--quick`` (under 3 minutes on 2 cores)
measures throughput at two sizes and fidelity on 8 starts at d = 30. ``--smoke`` (seconds: every
section that ``--quick`` runs, at toy sizes, for ``benchmarks/smoke.sh``; pass ``--out``) checks
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

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from baselines import pele_quench, sgd_baseline  # noqa: E402
from landscape.core.init import InitScheme, draw_starts  # noqa: E402
from landscape.core.model import DeepUFM, ModelSpec  # noqa: E402
from landscape.engines import StageConfig, run_engine, run_pipeline  # noqa: E402

K, N_PER, L, LAM = 10, 5, 2, 2.0 ** -10


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def spec_at(d: int) -> ModelSpec:
    return ModelSpec(K=K, n=N_PER, d=d, L=L, lam=LAM)


def step_flops(spec: ModelSpec, bottleneck: bool = False) -> float:
    """Flops of the matrix products of one GD step of one trajectory. Layer by layer: forward
    W_l·h (2·r·c·N each) and, backward, the weight gradient and the input gradient of every factor
    (2·r·c·N each). Through the logits' bottleneck (the linear model when K < N,
    :meth:`landscape.core.model.DeepUFM._loss_and_grad_bottleneck`): 2·(3(L−1)Kd² + 3KdN)."""
    if bottleneck:
        K, d, N, L = spec.K, spec.d, spec.N, spec.L
        return 2.0 * (3 * (L - 1) * K * d * d + 3 * K * d * N)
    return 3.0 * sum(2.0 * r * c * spec.N for r, c in spec.shapes[1:])


def peak_gflops(device: torch.device, n: int = 2000, reps: int = 3) -> float:
    a = torch.randn(n, n, dtype=torch.float64, device=device)
    b = torch.randn(n, n, dtype=torch.float64, device=device)
    a @ b
    sync(device)
    best = float("inf")
    for _ in range(reps):
        t = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - t)
    return 2.0 * n ** 3 / best / 1e9


def bmm_gflops(spec: ModelSpec, B: int, device: torch.device, reps: int = 20) -> float:
    d, N = spec.d, spec.N
    W = torch.randn(B, d, d, dtype=torch.float64, device=device)
    H = torch.randn(B, d, N, dtype=torch.float64, device=device)
    torch.bmm(W, H)
    sync(device)
    t = time.perf_counter()
    for _ in range(reps):
        torch.bmm(W, H)
    sync(device)
    return 2.0 * d * d * N * B * reps / (time.perf_counter() - t) / 1e9


def gd_throughput(spec: ModelSpec, B: int, steps: int, device: torch.device) -> float:
    model = DeepUFM(spec, device=device)
    theta0 = draw_starts(spec, InitScheme(), 0, range(B), device=device)
    cfg = StageConfig(engine="gd", lr=0.5, max_iter=steps, tol=1e-300, stall_window=10 ** 9, curvature_check=False)
    run_engine(model, theta0, StageConfig(engine="gd", lr=0.5, max_iter=3, tol=1e-300, curvature_check=False))
    sync(device)
    t = time.perf_counter()
    run_engine(model, theta0, cfg)
    sync(device)
    return B * steps / (time.perf_counter() - t)


def throughput_rows(device: torch.device, widths, batches, steps: int, plain_steps: int) -> list[dict]:
    from landscape.engines.batching import working_batch

    peak = peak_gflops(device)
    rows = []
    for d in widths:
        spec = spec_at(d)
        model = DeepUFM(spec)
        sgd_baseline(model, draw_starts(spec, InitScheme(), 0, range(1)), 0.5, 3)   # warm-up (autograd, allocator)
        plain_t, _ = sgd_baseline(model, draw_starts(spec, InitScheme(), 0, range(2)), 0.5, plain_steps)
        plain = 2 * plain_steps / plain_t
        bott = DeepUFM(spec)._bottleneck
        for B in batches:
            gd = gd_throughput(spec, B, steps, device)
            gf = gd * step_flops(spec, bott) / 1e9
            rows.append({"device": str(device), "d": d, "P": spec.P, "B": B, "gd_traj_steps_per_s": gd,
                         "plain_traj_steps_per_s": plain, "ratio_vs_plain": gd / plain, "gflops": gf,
                         "formulation": "bottleneck" if bott else "layer by layer",
                         "layerwise_equivalent_gflops": gd * step_flops(spec) / 1e9,
                         "bmm_gflops": bmm_gflops(spec, B, device), "peak_gflops": peak, "fraction_of_peak": gf / peak,
                         "working_batch": working_batch(spec, device)})
            r = rows[-1]
            print(f"  {device} P={spec.P:>6} B={B:>5}: {gd:>12,.0f} traj-steps/s  {gf:6.1f} GFLOP/s "
                  f"({100 * r['fraction_of_peak']:.0f}% of {peak:.0f}; bmm alone {r['bmm_gflops']:.1f})  "
                  f"plain {plain:,.0f}/s → {r['ratio_vs_plain']:.1f}×", flush=True)
    return rows


def pele_rows(starts: int) -> dict:
    import importlib.util

    if importlib.util.find_spec("pele") is None:
        return {"pele": "not installed (pip install pele)"}
    spec = spec_at(70)
    model = DeepUFM(spec)
    theta0 = draw_starts(spec, InitScheme(), 0, range(starts))
    t_pele, th_pele, steps = pele_quench(model, theta0, 1e-10)
    _, g = model.loss_and_grad(th_pele)
    ok_pele = int((g.norm(dim=1) <= 1e-10).sum())
    t = time.perf_counter()
    res = run_pipeline(model, theta0, [StageConfig(engine="lbfgs", max_iter=20000, tol=1e-10, stall_window=2000)])
    t_lb = time.perf_counter() - t
    ok_lb = int(res.converged.sum())
    out = {"P": spec.P, "starts": starts, "pele_certified": ok_pele, "lbfgs_certified": ok_lb,
           "pele_ms_per_point": 1e3 * t_pele / max(ok_pele, 1), "lbfgs_ms_per_point": 1e3 * t_lb / max(ok_lb, 1),
           "pele_median_steps": float(np.median(steps))}
    out["ratio"] = out["pele_ms_per_point"] / out["lbfgs_ms_per_point"]
    print(f"  pele lbfgs_cpp {out['pele_ms_per_point']:.0f} ms/point ({ok_pele}/{starts}); batched lbfgs "
          f"{out['lbfgs_ms_per_point']:.0f} ms/point ({ok_lb}/{starts}): {out['ratio']:.1f}×", flush=True)
    return out


def fidelity_row(d: int, starts: int, device: str, extra=(), keep: Path | None = None) -> dict:
    """The paper-fig2 study at width d (transition-state search off: basin fractions only)."""
    from landscape.study.config import load_study
    from landscape.study.run import run_study

    unit = starts if device.startswith("cuda") else min(starts, 64)   # a GPU wants one wide unit
    cfg = load_study(preset="paper-fig2", overrides=[f"d={d}", f"trajectories={starts}", f"batch_size={unit}",
                                                     f"device={device}", "transition_states.max_pairs=0", *extra])
    with tempfile.TemporaryDirectory() as tmp:
        folder = keep if keep is not None else Path(tmp)
        t = time.perf_counter()
        s = run_study(cfg, folder, progress=False)
        wall = time.perf_counter() - t
        from landscape.io.store import StudyStore
        with StudyStore.open(folder, readonly=True) as st:
            trajs = [t for t in st.trajectories() if t.engine["kind"] == "main"]
            point_of = {t.idx: t.point_id for t in trajs}
    n = s["n_trajectories"]
    certified = sum(p["basin_count"] for p in s["points"])
    saddles = sum(1 for p in s["points"] if p["kind"] == "saddle" and p["basin_count"] > 0)
    dnc = next((r for r in s["labels"] if r["label"] == "DNC"), {"count": 0, "fraction": 0.0, "ci_low": 0.0,
                                                                    "ci_high": None})
    from landscape.study.stats import wilson_interval
    lo, hi = wilson_interval(dnc["count"], n)
    row = {"d": d, "P": cfg.model.P, "starts": n, "dynamics": s["dynamics"], "certified_fraction": certified / n,
           "saddles_with_basin_counts": saddles, "dnc_fraction": dnc["count"] / n, "dnc_ci_low": lo, "dnc_ci_high": hi,
           "labels": {str(r["label"]): r["count"] / n for r in s["labels"] if r["count"]},
           "uncertified": {u["stop_reason"]: u["count"] for u in s["uncertified"]},
           "saddle_visits": sum(v["n_visits"] for v in s["saddle_visits"]),
           "wall_s": wall, "wall_per_start_s": wall / n, "point_of": point_of,
           "points": {p["id"]: p["label"] for p in s["points"]}}
    print(f"  d={d:>4} ({s['dynamics']}): certified {100 * row['certified_fraction']:.1f}%, saddles holding counts "
          f"{saddles}, DNC {100 * row['dnc_fraction']:.1f}% [{100 * lo:.1f}, {100 * hi:.1f}], labels {row['labels']}, "
          f"{row['wall_per_start_s']:.2f} s/start", flush=True)
    return row


def transition_state_row(folder: Path, max_pairs: int = 6) -> dict:
    """Transition states among the minima of a finished study (the d = 70 fidelity study): the
    batched double-ended search with its default settings, timed."""
    from dataclasses import replace

    from landscape.io.store import StudyStore
    from landscape.study.config import StudyConfig
    from landscape.study.transition_states import TransitionStateSettings, search_transition_states
    from landscape.study.run import StudyRun

    with StudyStore.open(folder) as store:
        cfg = StudyConfig.from_dict(store.config)
        cfg = replace(cfg, transition_states=TransitionStateSettings(max_pairs=max_pairs))
        run = StudyRun(cfg, store, lambda e: None)
        t = time.perf_counter()
        n = search_transition_states(run)
        wall = time.perf_counter() - t
        pts = {p.id: p for p in store.points()}
        ts = [{"saddle": t.saddle_id, "index": pts[t.saddle_id].hessian_index,
               "joins": [pts[t.min1_id].label, pts[t.min2_id].label],
               "barriers": [t.barrier1, t.barrier2], "loss": pts[t.saddle_id].loss}
              for t in store.transition_states()]
        attempts = store.get_meta("connect_attempts", [])
    out = {"P": cfg.model.P, "pairs_tried": len(attempts), "transition_states": n, "wall_s": wall, "records": ts,
           "outcomes": [a["outcome"] for a in attempts]}
    print(f"  transition states at P={cfg.model.P}: {n} from {len(attempts)} pairs in {wall:.0f} s: "
          + "; ".join(f"{'–'.join(r['joins'])} barriers {r['barriers'][0]:.3g}/{r['barriers'][1]:.3g}" for r in ts), flush=True)
    return out


def gd_vs_flow(d: int, starts: int, device: str) -> dict:
    """The same starts under gd(lr 0.5) and the adaptive gradient flow: the fraction of starts
    whose end points are the same distinct point (compared modulo symmetry), and the wall ratio."""
    from landscape.analysis.dedup import DedupTolerances, same_point
    from landscape.study.config import load_study
    from landscape.study.run import run_study

    rows, thetas = {}, {}
    for name, extra in (("gd", []), ("flow", ["engine=flow", "stages.0.rtol=1e-6", "stages.0.max_iter=200000"])):
        cfg = load_study(preset="paper-fig2", overrides=[f"d={d}", f"trajectories={starts}", f"batch_size={min(starts, 64)}",
                                                         f"device={device}", "transition_states.max_pairs=0", *extra])
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            s = run_study(cfg, tmp, progress=False)
            wall = time.perf_counter() - t
            from landscape.io.store import StudyStore
            with StudyStore.open(tmp, readonly=True) as st:
                fps = {p.id: p.fingerprint for p in st.points()}
                thetas[name] = {t.idx: fps.get(t.point_id) for t in st.trajectories()
                                if t.engine["kind"] == "main"}
        rows[name] = {"wall_s": wall, "labels": {str(r["label"]): r["count"] / starts for r in s["labels"] if r["count"]},
                      "dnc": next((r["count"] for r in s["labels"] if r["label"] == "DNC"), 0) / starts,
                      "dynamics": s["dynamics"]}
    same = sum(1 for i in range(starts) if thetas["gd"].get(i) is not None and thetas["flow"].get(i) is not None
               and same_point(thetas["gd"][i], thetas["flow"][i], DedupTolerances()))
    out = {"d": d, "starts": starts, "same_end_point_fraction": same / starts, "gd": rows["gd"], "flow": rows["flow"],
           "wall_ratio_gd_over_flow": rows["gd"]["wall_s"] / rows["flow"]["wall_s"]}
    print(f"  gd vs flow at d={d}: same end point for {same}/{starts} starts; DNC gd {rows['gd']['dnc']:.3f} "
          f"flow {rows['flow']['dnc']:.3f}; wall gd/flow = {out['wall_ratio_gd_over_flow']:.2f}", flush=True)
    return out


def spectrum_rows(widths, device: str, dense_max_P: int = 10000) -> list[dict]:
    """``inspect_spectrum`` at the large-root DNC minimum of the paper's model at each width (the
    closed-form point of ``landscape.analysis.theory``, critical to round-off), timed per path:
    dense (eigen-decomposition with vectors, factor blocks, Gauss–Newton and residual) where
    P ≤ ``dense_max_P``, and always block Lanczos + SLQ; with the groups each path finds and the
    cost the dense-vs-iterative model predicted."""
    from landscape.analysis.hessian import dense_cost_s
    from landscape.analysis.spectrum import SPECTRUM_DENSE_WORK, inspect_spectrum
    from landscape.analysis.theory import dnc_point, dnc_scale_roots

    rows = []
    for d in widths:
        spec = spec_at(d)
        alpha = max(dnc_scale_roots(spec.K, spec.n, spec.L, LAM))
        theta = torch.from_numpy(dnc_point(spec, alpha))
        grad = float(DeepUFM(spec).loss_and_grad(theta)[1].norm())
        for method, limit in (("dense", 10 ** 9), ("lanczos", 1)):   # dense_limit ≥ 1; P > 1 always: Lanczos
            if method == "dense" and spec.P > dense_max_P:
                continue
            t = time.perf_counter()
            rep = inspect_spectrum(spec, theta, dense_limit=limit, device=device)
            wall = time.perf_counter() - t
            groups = [{k: g[k] for k in ("value", "multiplicity", "kind")} for g in rep.groups]
            if method == "lanczos" and len(groups) > 6:  # the extremes only: the groups at the ends
                groups = groups[:3] + groups[-3:]
            rows.append({"d": d, "P": spec.P, "method": method, "wall_s": wall, "timings": rep.timings,
                         "predicted_dense_s": dense_cost_s(spec.P, SPECTRUM_DENSE_WORK), "grad_norm": grad,
                         "symmetry_zero_modes": rep.symmetry_zero_modes, "groups": groups})
            print(f"  spectrum P={spec.P} {method}: {wall:.1f} s "
                  + " ".join(f"{k}={v:.1f}" for k, v in rep.timings.items())
                  + f"; {len(rep.groups)} groups, {rep.symmetry_zero_modes} symmetry zero modes", flush=True)
    return rows


#: The sections of the report, in order.
SECTIONS = ("throughput", "pele", "fidelity", "transition_states", "gd_vs_flow", "spectrum")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu", help="cpu or cuda[:N]")
    ap.add_argument("--quick", action="store_true", help="throughput at two sizes, fidelity on 8 starts at d=30")
    ap.add_argument("--smoke", action="store_true", help="toy sizes (seconds): d=16 throughput, 4 starts at d=10")
    ap.add_argument("--widths", type=int, nargs="+", default=[30, 70, 100], help="widths of the fidelity runs")
    ap.add_argument("--starts", type=int, default=64, help="starts per width in the fidelity runs")
    ap.add_argument("--skip", nargs="*", default=[], choices=["throughput", "pele", "fidelity", "ts", "flow", "spectrum"])
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "paper.json"))
    args = ap.parse_args()
    args.quick = args.quick or args.smoke
    from landscape.core.allocator import retain_freed_host_memory

    tuned = retain_freed_host_memory()  # before any baseline, so the plain loop and pele get it too
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        sys.exit("--device cuda: torch sees no CUDA device here")
    report = {"when": time.strftime("%Y-%m-%d %H:%M"), "machine": platform.node(), "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
              "threads": torch.get_num_threads(), "torch": torch.__version__, "quick": args.quick, "smoke": args.smoke,
              "host_allocator_tuned": tuned}
    gpu = device.type == "cuda"
    if "throughput" not in args.skip:
        print("throughput (GD, lr 0.5):", flush=True)
        if args.smoke:
            report["throughput"] = throughput_rows(device, [16], [16], steps=5, plain_steps=3)
        else:
            widths = [16, 70] if args.quick else [16, 30, 70, 100]
            batches = ([64, 8192] if gpu else [64]) if args.quick else ([256, 2048, 8192, 32768] if gpu else [16, 64, 256, 512])
            report["throughput"] = throughput_rows(device, widths, batches, steps=(200 if gpu else 30) if args.quick else
                                                   (1000 if gpu else 100), plain_steps=20 if args.quick else 50)
    if "pele" not in args.skip and not args.quick and not gpu:
        print("pele vs batched L-BFGS at P=9100:", flush=True)
        report["pele"] = pele_rows(32)
    if "fidelity" not in args.skip:
        print("fidelity of the paper's experiment:", flush=True)
        widths, starts = ([10], 4) if args.smoke else ([30], 8) if args.quick else (args.widths, args.starts)
        with tempfile.TemporaryDirectory() as keep:
            extra = ["stages.0.max_iter=300"] if args.smoke else []   # smoke: uncertified ends are fine
            report["fidelity"] = [fidelity_row(d, starts, str(device), extra,
                                               keep=Path(keep) / f"d{d}" if d == 70 else None) for d in widths]
            if 70 in widths and "ts" not in args.skip:
                print("transition states among the d = 70 minima:", flush=True)
                report["transition_states"] = transition_state_row(Path(keep) / "d70")
    if "flow" not in args.skip and not args.quick:
        print("gd against gradient flow:", flush=True)
        report["gd_vs_flow"] = gd_vs_flow(70, args.starts, str(device))
    if "spectrum" not in args.skip:
        print("Hessian spectra at the DNC minimum:", flush=True)
        report["spectrum"] = spectrum_rows([10] if args.smoke else [30] if args.quick else [30, 70, 100], str(device))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    report["measured"] = {k: report["when"] for k in SECTIONS if k in report}
    if out.exists() and args.skip:
        # sections skipped this time are carried over from the file, with the date they were measured
        try:
            old = json.loads(out.read_text())
        except (OSError, ValueError):
            old = {}
        if old.get("device") == report["device"]:
            for k in SECTIONS:
                if k not in report and k in old:
                    report[k] = old[k]
                    report["measured"][k] = old.get("measured", {}).get(k, old.get("when"))
    for row in report.get("fidelity", []):
        row.pop("point_of", None)
        row.pop("points", None)
    out.write_text(json.dumps(report, indent=1))
    print(f"written {out}")


if __name__ == "__main__":
    main()
