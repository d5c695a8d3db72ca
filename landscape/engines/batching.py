"""The working batch: how many trajectories one engine step should advance at a time.

Throughput per trajectory is not monotone in the batch size B: on a CPU, a batch whose working
set (θ, ∇L and the activations, about 6·P·B float64 numbers) outgrows the caches runs *slower*
per trajectory (measured at P = 9100: B = 512 gave half the trajectory-steps/s of B = 64); on a
GPU, small batches leave the device idle. :func:`working_batch` measures it: a few GD steps at
each candidate B on the model's device, keeping the smallest B within :data:`TOLERANCE` of the
fastest. When that is the largest candidate (throughput still rising at the end of the list) and
the caller names the ``unit`` it will run, the unit is advanced whole: a width below it would only
leave the unit's last starts a pass of their own (the default study: 384 starts of 8,000–12,800 GD
steps each took 37.8 s at the largest candidate, 256, and 19.7 s at 384). So is a unit that,
probed as well, runs within the tolerance of the fastest candidate: the smallest width within
10% of the best is then only the start of a plateau (the default study with its gradient in numpy:
128), and the narrower batch would pay the per-step cost of every driver iteration more times
(measured 2026-12-03: 22,299 GD iterations at 128 against 12,433 at 384). Every width, the unit's
included, is probed :data:`ROUNDS` times, interleaved, and keeps its fastest probe: on a shared
machine a probe can fall into a slow spell (one-shot probes of the default study's plateau read
107k trajectory-steps/s at 256 against 136k at 128 in one run and the reverse in the next, and
sent its 384 starts through 22,299 iterations instead of 12,433), and the best of interleaved
rounds is what the machine does when nothing else runs. The measurements are cached per
(shapes, dtype, device, threads, batches) for the process. The driver
then runs a unit of any size at this width, refilling finished rows from the unit's pending
starts (:func:`landscape.engines.driver.run_engine`), so results never depend on it.
"""
from __future__ import annotations

import functools
import time

import torch

from ..core.model import DeepUFM, ModelSpec

#: Candidate working batches per device type.
CANDIDATES = {"cpu": (8, 16, 32, 64, 128, 256), "cuda": (256, 1024, 4096, 16384, 65536)}
#: Smallest B whose throughput is within this fraction of the best.
TOLERANCE = 0.1
#: Seconds of measurement per candidate and round.
PROBE_S = 0.02
#: Interleaved rounds of probes; each width keeps its fastest.
ROUNDS = 3


def _probe(model: DeepUFM, B: int) -> float:
    """Trajectory-steps per second of GD at batch B (a few steps from a fixed seeded start)."""
    gen = torch.Generator().manual_seed(0)
    th = (0.3 * torch.randn(B, model.P, generator=gen, dtype=torch.float64)).to(model.device, model.dtype)
    _, g = model.loss_and_grad(th)
    sync = torch.cuda.synchronize if model.device.type == "cuda" else (lambda *a: None)
    sync()
    t, n = time.perf_counter(), 0
    while n < 3 or time.perf_counter() - t < PROBE_S:
        th = torch.add(th, g, alpha=-1e-3)
        _, g = model.loss_and_grad(th)
        n += 1
    sync()
    return B * n / (time.perf_counter() - t)


@functools.lru_cache(maxsize=32)
def _rates(shapes: tuple, spec: ModelSpec, device: str, threads: int, batches: tuple) -> dict:
    """Trajectory-steps per second of GD at each batch of ``batches``: the fastest of
    :data:`ROUNDS` interleaved probes of each (:func:`_probe`), cached."""
    model = DeepUFM(spec, device=device)
    rate = {B: 0.0 for B in batches}
    for _ in range(ROUNDS):
        for B in batches:
            rate[B] = max(rate[B], _probe(model, B))
    return rate


def _candidates(spec: ModelSpec, device: str) -> tuple:
    cands = CANDIDATES.get(torch.device(device).type, CANDIDATES["cpu"])
    if torch.device(device).type == "cuda":
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        cands = tuple(b for b in cands if 12 * 8 * spec.P * b < 0.5 * free) or cands[:1]
    return cands


def working_batch(spec: ModelSpec, device="cpu", unit: int | None = None) -> int:
    """The measured working batch for this model on ``device``; ``unit``: the number of starts the
    caller will run, returned instead when the largest candidate was the fastest, or when the
    unit itself, probed too, is within :data:`TOLERANCE` of the fastest (module docstring)."""
    dev = torch.device(device)
    key = (tuple(spec.shapes), spec, str(dev), torch.get_num_threads())
    cands = _candidates(spec, str(dev))
    unit = int(unit) if unit else None
    probed = cands + ((unit,) if unit and unit not in cands else ())   # the unit in the same rounds
    rate = _rates(*key, probed)
    best = max(rate[b] for b in cands)
    B = min(b for b in cands if rate[b] >= (1 - TOLERANCE) * best)   # the smallest within tolerance
    if not unit or unit <= B:
        return B
    if B == cands[-1]:
        return unit
    return unit if rate[unit] >= (1 - TOLERANCE) * best else B
