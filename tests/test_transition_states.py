"""Transition states between minima: alignment modulo symmetry, batched NEB, refinement,
confirmation, the PATHSAMPLE export, and a basin graph that does not depend on the thread count."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import ortho_group

from landscape.analysis import theory as T
from landscape.analysis.dedup import fingerprint
from landscape.analysis.point import analyse_point
from landscape.analysis.symmetry import align, apply_gauge, gauge_interfaces, relabel_classes
from landscape.core.model import DeepUFM, ModelSpec
from landscape.engines.neb import NEBOptions, run_neb
from landscape.engines.outcomes import Outcome
from landscape.io.pathsample import export_pathsample, read_pathsample
from landscape.io.store import StudyStore
from landscape.study.config import load_study
from landscape.study.transition_states import search_transition_states
from landscape.study.run import StudyRun

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("activation", ["linear", "relu"])
def test_aligning_a_point_with_a_moved_copy_of_itself_gives_distance_zero(activation):
    spec = ModelSpec(K=4, n=2, d=6, L=3, lam=1e-3, activation=activation)
    rng = np.random.default_rng(0)
    th = rng.normal(size=spec.P)
    moves = {i: ortho_group.rvs(6, random_state=rng) for i in gauge_interfaces(spec)}
    for i in range(spec.L):   # hidden-unit permutations where there is no continuous gauge (ReLU)
        moves.setdefault(i, np.eye(6)[rng.permutation(6)])
    moved = relabel_classes(spec, apply_gauge(spec, th, moves), rng.permutation(4))
    aligned, info = align(spec, th, moved)
    assert info["distance_before"] > 1.0 and info["distance"] < 1e-10
    m = DeepUFM(spec)
    assert abs(float(m.loss(torch.tensor(aligned)[None])[0] - m.loss(torch.tensor(th)[None])[0])) < 1e-12


def _study_with(tmp_path, overrides, thetas):
    """A study folder holding the given points (analysed) as its only distinct points."""
    cfg = load_study(None, overrides)
    spec = cfg.model
    store = StudyStore.create(tmp_path, cfg.to_dict(), spec)
    recs = []
    for i, th in enumerate(thetas):
        a = analyse_point(spec, th)
        recs.append({"id": i, "kind": a.kind, "label": a.label, "loss": a.loss, "grad_norm": a.grad_norm,
                     "hessian_index": a.hessian.index, "fingerprint": fingerprint(spec, th), "params": th,
                     "spectrum": a.spectrum, "analysis": a.to_dict()})
    trajs = [{"idx": j, "seed": j, "stop_reason": "converged", "certified": True, "point_id": j % len(thetas),
              "engine": {"kind": "main"}} for j in range(2 * len(thetas))]
    store.commit_unit(0, trajs, recs)
    return cfg, store


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_origin_to_large_root_dnc_is_joined_below_the_index_3_saddle_of_the_straight_path(tmp_path):
    """The straight band from the origin to the large-root DNC point is a symmetric valley whose
    highest point is the small-root DNC point, a saddle of index 3 (Newton-MR from the climbing
    image converges to it). Refined by min-mode following, the search ends at index-1 saddles
    instead, and joins the pair through an intermediate minimum (DoubleEndedConnect), every wall
    of that path below the straight path's maximum ℓ_DNC(small root)."""
    K, n, d, L, lam = 3, 2, 4, 2, 1e-2
    large = T.dnc_scale_roots(K, n, L, lam)[-1]
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    dnc = T.dnc_point(spec, large)
    cfg, store = _study_with(tmp_path, [f"K={K}", f"n={n}", f"d={d}", f"L={L}", f"lambda={lam}", "saddles.starts=0",
                                        "transition_states.max_pairs=4"], [np.zeros(spec.P), dnc])
    with store:
        run = StudyRun(cfg, store, lambda e: None)
        search_transition_states(run)
        attempts = store.get_meta("connect_attempts")
        report = store.get_meta("connect_report")
        ts = store.transition_states()
        pts = {p.id: p for p in store.points()}
    # along the straight scaled path tθ the point stays balanced DNC with α = t^{L+1}·α_large, so its
    # loss is ℓ_DNC(α) and its maximum is at the small root, exactly
    small = T.dnc_scale_roots(K, n, L, lam)[0]
    path_max = T.dnc_loss(small, K, n, L, lam)
    m = DeepUFM(spec)
    sampled = m.loss(torch.tensor(np.linspace(0, 1, 2001)[:, None] * dnc[None])).numpy()
    assert sampled.max() <= path_max + 1e-15
    assert attempts[0]["pair"] == [0, 1] and attempts[0]["refined_by"] == "min-mode following"
    assert report["stopped"] == "connected" and report["components_after"] == 1
    assert all(a["outcome"] == "transition state" and a["index"] == 1 for a in attempts)
    import networkx as nx
    G = nx.Graph()
    for t in ts:
        saddle = pts[t.saddle_id]
        assert saddle.kind == "saddle" and saddle.hessian_index == 1 and saddle.grad_norm <= 1e-10
        G.add_edge(t.min1_id, t.min2_id, wall=saddle.loss)
    path = nx.shortest_path(G, 0, 1)
    assert len(path) >= 3      # through an intermediate minimum
    walls = [G.edges[a, b]["wall"] for a, b in zip(path, path[1:])]
    assert max(walls) < path_max - 1e-6


def test_dnc_and_pairing_minima_are_joined_by_a_certified_transition_state(tmp_path):
    K, n, d, L, lam = 4, 2, 6, 3, 1e-3
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    dnc = T.dnc_point(spec, T.dnc_scale_roots(K, n, L, lam)[-1])
    pairs = T.pairing_point(spec, T.pairing_scales(K, n, L, lam)[-1], rotations=[ortho_group.rvs(d, random_state=s)
                                                                                 for s in range(L)])
    cfg, store = _study_with(tmp_path, [f"K={K}", f"n={n}", f"d={d}", f"L={L}", f"lambda={lam}", "saddles.starts=0"],
                             [dnc, pairs])
    with store:
        assert search_transition_states(StudyRun(cfg, store, lambda e: None)) >= 1
        ts = store.transition_states()
        pts = {p.id: p for p in store.points()}
        joined = {frozenset((t.min1_id, t.min2_id)) for t in ts}
    assert all(pts[t.saddle_id].hessian_index == 1 for t in ts)
    assert all(t.barrier1 > 0 and t.barrier2 > 0 for t in ts)
    import networkx as nx
    G = nx.Graph(list(map(tuple, joined)))
    assert 0 in G and 1 in G and nx.has_path(G, 0, 1)     # DNC and pairs in one tree


def test_batched_bands_are_independent():
    spec = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-2)
    m = DeepUFM(spec)
    dnc = torch.tensor(T.dnc_point(spec, T.dnc_scale_roots(3, 2, 2, 1e-2)[-1]))
    a = torch.stack([torch.zeros(spec.P), dnc * 0.5])
    b = torch.stack([dnc, dnc])
    opts = NEBOptions(images=6)
    both = run_neb(m, a, b, opts, max_iter=200)
    one = run_neb(m, a[1:], b[1:], opts, max_iter=200)
    np.testing.assert_allclose(both.images[1].numpy(), one.images[0].numpy(), atol=1e-12)


def test_pathsample_export_round_trip_and_pele(tmp_path):
    K, n, d, L, lam = 4, 2, 6, 3, 1e-3
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    dnc = T.dnc_point(spec, T.dnc_scale_roots(K, n, L, lam)[-1])
    pairs = T.pairing_point(spec, T.pairing_scales(K, n, L, lam)[-1])
    cfg, store = _study_with(tmp_path / "s", [f"K={K}", f"n={n}", f"d={d}", f"L={L}", f"lambda={lam}",
                                             "saddles.starts=0"], [dnc, pairs])
    with store:
        search_transition_states(StudyRun(cfg, store, lambda e: None))
        info = export_pathsample(store, spec, tmp_path / "ps")
        pts = {p.id: p for p in store.points(with_params=True)}
        ts = store.transition_states()
    n_min = sum(1 for p in pts.values() if p.kind in ("minimum", "degenerate"))
    back = read_pathsample(tmp_path / "ps", spec.P)
    assert len(back["minima"]) == n_min >= 2 and len(back["ts"]) == len(ts) >= 1
    for k, (e, fv, coords) in enumerate(back["minima"], start=1):
        p = pts[info["minima"][str(k)]]
        assert e == pytest.approx(p.loss, abs=1e-15) and np.array_equal(coords, p.params)
        ev = p.spectrum
        assert fv == pytest.approx(float(np.sum(np.log(ev[ev > p.analysis["tau"]]))), rel=1e-12)
    e, fv, m1, m2, coords = back["ts"][0]
    assert {info["minima"][str(m1)], info["minima"][str(m2)]} == {ts[0].min1_id, ts[0].min2_id}
    assert np.array_equal(coords, pts[ts[0].saddle_id].params)
    pele = pytest.importorskip("pele.storage", reason="pele (GPL, the benchmark extra) is not installed")
    from pele.utils.optim_compatibility import OptimDBConverter

    db = pele.Database()
    cwd = os.getcwd()
    os.chdir(tmp_path / "ps")
    try:
        OptimDBConverter(db, ndof=spec.P).convert()
    finally:
        os.chdir(cwd)
    assert db.number_of_minima() == n_min and db.number_of_transition_states() == len(ts)
    mins = sorted(db.minima(), key=lambda m: m.energy)
    assert mins[0].energy == pytest.approx(back["minima"][0][0]) and mins[0].coords.shape == (spec.P,)


SCRIPT = textwrap.dedent("""
    import json, sys, torch
    torch.set_num_threads(int(sys.argv[2]))
    from landscape.study.config import load_study
    from landscape.study.run import run_study
    from landscape.io.store import StudyStore
    cfg = load_study(None, ["K=4", "n=2", "d=5", "L=3", "trajectories=8", "batch_size=8", "name=threads",
                            "engine=lbfgs", "stages.0.max_iter=3000", "stages.0.tol=1e-6", "saddles.starts=2",
                            "saddles.max_rounds=1", "saddles.descend.0.max_iter=2000",
                            "saddles.descend.0.stall_window=2000", "transition_states.max_pairs=1"])
    run_study(cfg, sys.argv[1], progress=False)
    with StudyStore.open(sys.argv[1], readonly=True) as st:
        pts = {p.id: (p.kind, p.label, round(p.loss, 9)) for p in st.points()}
        edges = sorted((pts[e.saddle_id], e.direction, e.sign, pts[e.target_id] if e.target_id is not None
                        else None) for e in st.edges())
        ts = sorted((pts[t.saddle_id], pts[t.min1_id], pts[t.min2_id]) for t in st.transition_states())
    print(json.dumps({"edges": edges, "ts": ts}))
""")


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_the_basin_graph_does_not_depend_on_the_thread_count(tmp_path):
    out = {}
    for threads in (1, 2):
        r = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / f"t{threads}"), str(threads)],
                           capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=900)
        assert r.returncode == 0, r.stderr
        out[threads] = json.loads(r.stdout.strip().splitlines()[-1])
    assert out[1]["edges"] and out[1] == out[2]


# ----- refinement to index 1: minimum-mode following ------------------------------------------------
class _Quartic:
    """f(x) = Σ_i (x_i² − 1)² on ℝ^P: minima at the corners of [−1, 1]^P, and at a point with k
    zero coordinates (the rest ±1) a critical point of index k (∂²f = 12x² − 4: −4 at 0, 8 at ±1).
    The model interface follow_min_mode needs, by hand."""

    device, dtype = torch.device("cpu"), torch.float64

    def for_rows(self, rows):
        return self

    def min_lambda(self, B):
        return torch.full((B,), 1e-3, dtype=torch.float64)

    def loss_and_grad(self, th):
        return ((th ** 2 - 1) ** 2).sum(1), 4 * th * (th ** 2 - 1)

    def hvp_operator(self, th):
        d = 12 * th ** 2 - 4
        return lambda v: d * v


def test_min_mode_following_leaves_higher_index_saddles_for_index_one():
    """From beside the index-2 and index-3 critical points of the quartic (where Newton's method
    converges back to them), min-mode following ends at index-1 saddles: one coordinate 0, the
    others ±1, to 1e-12."""
    from landscape.engines.minmode import MinModeOptions, follow_min_mode

    starts = torch.tensor([[0.05, 0.02, 1.0], [0.01, -0.03, 0.02], [0.3, -0.2, 0.9], [1.0, 1e-4, -1.0]],
                          dtype=torch.float64)
    r = follow_min_mode(_Quartic(), starts, MinModeOptions(push_tol=1e-12), tol=1e-12)
    assert list(r.stop_reason) == ["converged"] * 4
    x = r.theta.numpy()
    assert ((np.abs(x) < 1e-12).sum(axis=1) == 1).all()                      # one zero coordinate
    assert (np.abs(np.abs(x[np.abs(x) >= 1e-12]) - 1) < 1e-12).all()          # the others at ±1
    np.testing.assert_allclose(r.lowest, -4.0, atol=1e-12)                    # its one negative mode
    np.testing.assert_allclose(r.second, 8.0, atol=1e-9)


def test_min_mode_following_is_a_stage_of_the_batched_driver():
    """The ``minmode`` engine run by the driver as any stage is: the quartic's index-2 and index-3
    starts converge at index-1 points (one zero coordinate, the others ±1, to 1e-12) with the
    lowest Ritz value −4 and the second 8 reported beside θ; the driver converges a row only with
    exactly one negative mode, so its stop measure is the largest float (not ‖∇L‖ = 0) at a
    critical point of index 3."""
    from landscape.engines import StageConfig, run_pipeline
    from landscape.engines.minmode import init
    from landscape.engines.options import MinModeOptions
    from landscape.engines.state import EngineState

    q = _Quartic()
    starts = torch.tensor([[0.01, -0.03, 0.02], [0.05, 0.02, 1.0]], dtype=torch.float64)
    res = run_pipeline(q, starts, [StageConfig(engine="minmode", tol=1e-12, push_tol=1e-12, max_iter=100)])
    assert list(res.stop_reason) == ["converged"] * 2
    x = res.theta.numpy()
    assert ((np.abs(x) < 1e-12).sum(axis=1) == 1).all()
    assert (np.abs(np.abs(x[np.abs(x) >= 1e-12]) - 1) < 1e-12).all()
    np.testing.assert_allclose(res.extras["lowest"], -4.0, atol=1e-12)
    np.testing.assert_allclose(res.extras["second"], 8.0, atol=1e-9)
    # at the origin of Σ a_i (x_i² − 1)², a = (1, 2, 3), the gradient is 0 and the Hessian
    # diag(−4a) has three distinct negative modes: not an index-1 point, so no convergence
    a = torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64)

    class Scaled(_Quartic):
        def loss_and_grad(self, th):
            return (a * (th ** 2 - 1) ** 2).sum(1), 4 * a * th * (th ** 2 - 1)

        def hvp_operator(self, th):
            return lambda v: a * (12 * th ** 2 - 4) * v

    origin = torch.zeros(1, 3, dtype=torch.float64)
    loss, grad = Scaled().loss_and_grad(origin)
    st = init(Scaled(), EngineState(origin, loss, grad, torch.ones(1, dtype=torch.long),
                                    torch.zeros(1, dtype=torch.long)), MinModeOptions())
    assert float(st.grad.norm()) == 0.0 and float(st.mu1[0]) == pytest.approx(-12.0)
    assert float(st.mu2[0]) == pytest.approx(-8.0) and float(st.stop_measure()[0]) > 1e300


def test_a_min_mode_row_whose_every_step_is_refused_stops_stalled_by_its_trust_region():
    """A model whose loss is finite only at the start refuses every trial step: the trust radius
    is quartered (0.5 → 0.125) below min_step = 0.2 after one iteration, and the driver stops the
    row ``stalled`` with detail ``trust_region`` where it started (the engine's own stop, not a
    stall window: the window here is 10⁶ iterations)."""
    from landscape.engines import StageConfig, run_engine

    start = torch.tensor([[0.3, -0.2, 0.9]], dtype=torch.float64)

    class Walled(_Quartic):
        def loss_and_grad(self, th):
            loss, grad = super().loss_and_grad(th)
            away = (th != start).any(dim=1)
            return torch.where(away, torch.full_like(loss, float("nan")), loss), grad

    res = run_engine(Walled(), start, StageConfig(engine="minmode", max_step=0.5, min_step=0.2, max_iter=50,
                                                  stall_window=10 ** 6))
    assert res.stop_reason[0] == "stalled" and res.stop_detail[0] == "trust_region"
    assert int(res.iterations[0]) == 1 and torch.equal(res.theta, start)


def test_min_mode_following_ends_at_index_one_where_newton_returns_to_index_three():
    """The straight band from the origin to the large-root DNC point of K=3, n=2, d=4, L=2 climbs
    to the small-root DNC point, a saddle of index 3 (MODEL.md §6). Started beside it, Newton-MR
    returns to it; min-mode following descends two of its three negative modes and ends at a
    certified index-1 saddle below it (index counted here from the dense Hessian, net of the
    symmetry zero modes, by numpy)."""
    from landscape.engines import StageConfig, run_pipeline
    from landscape.engines.minmode import follow_min_mode

    K, n, d, L, lam = 3, 2, 4, 2, 1e-2
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    m = DeepUFM(spec)
    small = torch.tensor(T.dnc_point(spec, T.dnc_scale_roots(K, n, L, lam)[0]))
    l_small = float(m.loss(small[None])[0])
    start = small + 1e-3 * torch.randn(spec.P, generator=torch.Generator().manual_seed(3), dtype=torch.float64)

    def negative_modes(th):
        ev = np.linalg.eigvalsh(m.hessian(th).numpy())
        return int((ev < -1e-6).sum())

    assert negative_modes(small) == 3
    newton = run_pipeline(m, start[None], [StageConfig(engine="newton", max_iter=100, tol=1e-10, stall_window=10)])
    assert newton.stop_reason[0] == "converged" and negative_modes(newton.theta[0]) == 3
    assert float(newton.loss[0]) == pytest.approx(l_small, abs=1e-12)
    mm = follow_min_mode(m, start[None], max_iter=200)
    assert mm.stop_reason[0] == "converged" and mm.grad_norm[0] <= 1e-8
    assert negative_modes(mm.theta[0]) == 1 and float(mm.loss[0]) < l_small - 1e-6


@pytest.mark.parametrize("insert", [0, 4])
def test_the_default_study_transition_state_between_dnc_and_pairs(tmp_path, insert):
    """The default study's size (K=4, n=2, d=8, L=3, λ=1e-3): DNC and the pairing minimum, built
    from their closed forms, are joined by the transition state an independent check found (own
    loss from MODEL.md, exact Hessian, descents, and pele's DoubleEndedConnect on the same minima):
    loss 0.0216797407 and barrier 5.247062e-4 out of DNC, here to 1e-10 and 1e-9; the same with
    4 images inserted AutoNEB-style into the relaxed band (18 interior images, relaxed again)."""
    K, n, d, L, lam = 4, 2, 8, 3, 1e-3
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    dnc = T.dnc_point(spec, T.dnc_scale_roots(K, n, L, lam)[-1])
    pairs = T.pairing_point(spec, T.pairing_scales(K, n, L, lam)[-1])
    cfg, store = _study_with(tmp_path, [f"K={K}", f"n={n}", f"d={d}", f"L={L}", f"lambda={lam}", "saddles.starts=0",
                                        "transition_states.max_pairs=1", f"transition_states.insert={insert}"], [dnc, pairs])
    with store:
        search_transition_states(StudyRun(cfg, store, lambda e: None))
        ts = store.transition_states()
        (att,) = store.get_meta("connect_attempts")
        saddle = store.point(ts[0].saddle_id) if ts else None
    assert att["outcome"] == "transition state" and att["refined_by"] == "min-mode following"
    assert att["neb_images"] == 14 + insert
    assert saddle.hessian_index == 1 and saddle.grad_norm <= 1e-10
    assert saddle.loss == pytest.approx(0.0216797407, abs=1e-10)
    out_of_dnc = ts[0].barrier1 if ts[0].min1_id == 0 else ts[0].barrier2
    assert out_of_dnc == pytest.approx(5.247062e-4, abs=1e-9)


# ----- the connect strategy over all minima (DoubleEndedConnect) ------------------------------------
def test_plan_path_goes_through_an_intermediate_minimum_on_a_line():
    """Three minima on a line, A — B — C at distances 1 and 1 (A to C: 2): the cheapest path by
    distance² from A's component to C goes through B (1 + 1 < 4), so the pairs are (A, B), (B, C);
    once A–B is joined (weight 0) only (B, C) is left; once B–C failed, A–C is the way; joined,
    nothing is left."""
    import networkx as nx

    from landscape.study.transition_states import plan_path

    pos = {0: 0.0, 1: 1.0, 2: 2.0}
    d2 = lambda a, b: (pos[a] - pos[b]) ** 2   # noqa: E731
    uf = nx.utils.UnionFind([0, 1, 2])
    assert plan_path([0, 2], [0, 1, 2], d2, uf, set()) == ([(0, 1), (1, 2)], "")
    uf.union(0, 1)
    assert plan_path([0, 2], [0, 1, 2], d2, uf, set()) == ([(1, 2)], "")
    assert plan_path([0, 2], [0, 1, 2], d2, uf, {frozenset((1, 2))}) == ([(0, 2)], "")
    assert plan_path([0, 2], [0, 1, 2], d2, uf, {frozenset((1, 2)), frozenset((0, 2))}) == ([], "no untried pair left")
    uf.union(1, 2)
    assert plan_path([0, 2], [0, 1, 2], d2, uf, set()) == ([], "connected")
    # the nearest outside minimum first, whatever its rank among the held ones
    pos.update({3: 10.0})
    uf = nx.utils.UnionFind([0, 1, 2, 3])
    assert plan_path([0, 3, 2], [0, 1, 2, 3], d2, uf, set())[0][-1] == (1, 2)


@pytest.mark.slow   # 11 s: run by .ci/run's second pass (the planner itself is tested above)
def test_graph_strategy_joins_every_minimum_holding_a_count(tmp_path):
    """Origin, the rank-one minimum between them and large-root DNC (K=3, n=2, d=4, L=2, λ=1e-2),
    all three holding basin counts: the graph strategy searches until they are one component
    through certified index-1 transition states, and its report says so."""
    K, n, d, L, lam = 3, 2, 4, 2, 1e-2
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    dnc = T.dnc_point(spec, T.dnc_scale_roots(K, n, L, lam)[-1])
    # the intermediate minimum: descend from the index-1 saddle beside the small-root DNC point
    from landscape.engines import StageConfig, run_pipeline
    from landscape.engines.minmode import follow_min_mode

    m = DeepUFM(spec)
    small = torch.tensor(T.dnc_point(spec, T.dnc_scale_roots(K, n, L, lam)[0]))
    ts = follow_min_mode(m, (small * 1.01)[None]).theta
    v = torch.linalg.eigh(m.hessian(ts[0]))[1][:, 0]
    down = [ts[0] + s * 1e-3 * v for s in (1, -1)]
    ends = run_pipeline(m, torch.stack(down), [StageConfig(engine="lbfgs", max_iter=3000, tol=1e-11),
                                               StageConfig(engine="newton", max_iter=50, tol=1e-12, stall_window=10)])
    mid = next(th for th, l in zip(ends.theta, ends.loss) if 0.2 < l < 1.0).numpy()
    cfg, store = _study_with(tmp_path, [f"K={K}", f"n={n}", f"d={d}", f"L={L}", f"lambda={lam}", "saddles.starts=0",
                                        "transition_states.max_pairs=6"], [np.zeros(spec.P), mid, dnc])
    with store:
        search_transition_states(StudyRun(cfg, store, lambda e: None))
        report = store.get_meta("connect_report")
        ts_rec = store.transition_states()
        pts = {p.id: p for p in store.points()}
    assert report["strategy"] == "graph" and report["components_before"] == 3
    assert report["components_after"] == 1 and report["stopped"] == "connected"
    assert 2 <= report["pairs_tried"] <= 6 and report["transition_states"] == len(ts_rec) >= 2
    assert all(pts[t.saddle_id].hessian_index == 1 for t in ts_rec)
    import networkx as nx
    G = nx.Graph([(t.min1_id, t.min2_id) for t in ts_rec])
    assert nx.has_path(G, 0, 2) and nx.has_path(G, 0, 1)


def test_band_minima_are_the_interior_dips_of_a_profile():
    """Interior local minima of a loss profile deeper than depth × its range below both
    neighbours; end points, shoulders and shallower dips are not."""
    from landscape.study.transition_states import band_minima

    E = np.array([0.0, 1.0, 0.5, 1.2, 1.2, 0.9, 0.8999, 2.0, 1.0])
    assert band_minima(E, 1e-3) == [2]                 # 0.8999 is 1e-4 below 0.9 < 1e-3 · 2.0
    assert band_minima(E, 1e-6) == [2, 6]
    assert band_minima(np.linspace(0, 1, 16), 0.0) == []    # monotone: nothing
    assert band_minima(np.array([1.0, 0.0, 1.0]), 0.5) == [1]
    assert band_minima(np.array([1.0, 0.0, 1.0]), 1.0) == []


def _rank_one_minimum(spec):
    """The rank-one minimum M between the origin and large-root DNC at K=3, n=2, d=4, L=2, λ=1e-2,
    built outside the code under test: at a balanced point the loss is F(Z̄) = mean CE of the class
    columns of Z̄ + (λ(L+1)/2)(√n σ(Z̄))^{2/(L+1)} (MODEL.md §4); minimise it over rank-one
    Z̄ = a bᵀ with scipy (BFGS from a fixed start: no eigenvector sign or round-off picks the
    branch), and factor Z̄ ⊗ 1ᵀ as a balanced point. Returns (θ, its reduced loss)."""
    from scipy.optimize import minimize
    from scipy.special import logsumexp

    K, n, L, lam = spec.K, spec.n, spec.L, spec.lam

    def F(x):
        Zb = np.outer(x[:K], x[K:])
        ce = float(np.mean(logsumexp(Zb, axis=0) - np.diag(Zb)))
        return ce + 0.5 * lam * (L + 1) * (np.sqrt(n) * np.linalg.norm(x[:K]) * np.linalg.norm(x[K:])) ** (2 / (L + 1))

    r = minimize(F, np.array([1.0, -2.0, 1.0, 1.0, -2.0, 4.0]), method="BFGS", options={"gtol": 1e-12})
    assert 0.2 < r.fun < 1.0   # between DNC (0.12) and the origin (log 3)
    return T.balanced_point(spec, np.outer(r.x[:K], r.x[K:])), float(r.fun)


def test_a_band_through_a_third_basin_splits_the_pair_there_and_joins_it_through_that_minimum(tmp_path, monkeypatch):
    """A study holding only the origin and large-root DNC (K=3, n=2, d=4, L=2, λ=1e-2); the first
    band is the broken line origin → M → DNC through the rank-one minimum M the study does not hold
    (one band step), and its profile's dip is reported at M's image. Whether a relaxed
    band still dips there by more than ``split_depth`` depends on which point of M's symmetry orbit
    the band meets (M's basin is narrow towards DNC), so the detection itself is tested on profiles
    (test_band_minima_are_the_interior_dips_of_a_profile) and this test holds the route fixed. The
    search descends from the dip, stores M (loss equal to the reduced problem's, built with scipy;
    no basin count), splits the pair into (origin, M), (M, DNC), and joins origin and DNC through M
    by certified index-1 transition states."""
    import landscape.study.transition_states as C

    K, n, d, L, lam = 3, 2, 4, 2, 1e-2
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    dnc = T.dnc_point(spec, T.dnc_scale_roots(K, n, L, lam)[-1])
    M, mid_loss = _rank_one_minimum(spec)
    mid = align(spec, dnc, M)[0]   # M in the DNC point's frame: the band below starts through it
    calls = []
    real = C.run_neb

    def through_mid(model, A, B, opts, initial=None, **band):
        if not calls:   # the first band only: origin → M → DNC (M aligned to the origin's frame is M)
            Mb = torch.tensor(align(spec, A[0].numpy(), mid)[0])
            t = torch.linspace(0, 1, (opts.images + 3) // 2, dtype=torch.float64)[:, None]   # M at the middle image
            first = (1 - t) * A[0] + t * Mb
            second = (1 - t) * Mb + t * B[0]
            initial = torch.cat([first, second[1:]])[None]
            assert initial.shape[1] == opts.images + 2
            band["max_iter"] = 1  # one step: its middle image stays in M's basin
        calls.append(len(A))
        return real(model, A, B, opts, initial=initial, **band)

    real_minima = C.band_minima
    dips = []

    def dip_at_mid(E, depth):
        if not dips:   # the first band's profile: its dip is M's image
            dips.append(len(E) // 2)
            return [len(E) // 2]
        return real_minima(E, depth)

    monkeypatch.setattr(C, "run_neb", through_mid)
    monkeypatch.setattr(C, "band_minima", dip_at_mid)
    cfg, store = _study_with(tmp_path, [f"K={K}", f"n={n}", f"d={d}", f"L={L}", f"lambda={lam}", "saddles.starts=0",
                                        "transition_states.max_pairs=6", "transition_states.strategy=pairs", "transition_states.images=15"],
                             [np.zeros(spec.P), dnc])
    with store:
        search_transition_states(StudyRun(cfg, store, lambda e: None))
        attempts = store.get_meta("connect_attempts")
        ts = store.transition_states()
        pts = {p.id: p for p in store.points()}
        counts = store.basin_counts()
    first = attempts[0]
    assert first["pair"] == [0, 1] and first["band_minima"] >= 1 and len(first["split"]) == 1
    m = first["split"][0]
    assert pts[m].kind == "minimum" and pts[m].loss == pytest.approx(mid_loss, abs=1e-10)
    assert counts.get(m, 0) == 0                       # found by the search: no basin count
    # the sub-pairs not already joined by the first band's transition state, each searched once
    later = [tuple(sorted(a["pair"])) for a in attempts[1:]]
    assert len(later) == len(set(later)) and set(later) <= {(0, m), (1, m)} and later
    import networkx as nx
    G = nx.Graph()
    for t in ts:
        assert pts[t.saddle_id].hessian_index == 1 and pts[t.saddle_id].grad_norm <= 1e-10
        G.add_edge(t.min1_id, t.min2_id)
    assert nx.has_path(G, 0, 1) and m in nx.shortest_path(G, 0, 1)


def test_insert_images_bisects_the_bracket_of_each_maximum():
    """AutoNEB-style insertion on bands along a line through a bump e^{−((t−t*)/w)²} (t the
    coordinate along the line, t* per band; the last band's bump lies beyond its end, a monotone
    profile). Every inserted image halves the longest segment that brackets a maximum: beside an
    interior local maximum, toward its higher neighbour (for the highest image, an end point, its
    only neighbour), recounted here with numpy; its loss is the bump's there; four insertions
    bisect the bracket of t* four times, so the nearest image is within 1/16 of a spacing."""
    from landscape.engines.neb import insert_images

    P, M = 3, 5
    direction = torch.tensor([1.0, 2.0, -2.0], dtype=torch.float64) / 3.0
    centres = torch.tensor([0.37, 0.81, 2.0], dtype=torch.float64)

    def loss(x):   # x (Q, P), row q on band q's line
        t = x @ direction
        return torch.exp(-((t - centres[: x.shape[0]]) / 0.2) ** 2)

    t = torch.linspace(0, 1, M + 2, dtype=torch.float64)
    R = t[None, :, None] * direction[None, None, :] * torch.ones(3, 1, 1, dtype=torch.float64)
    E = torch.stack([loss(R[:, i]) for i in range(M + 2)], dim=1)
    R2, E2 = R, E
    for _ in range(4):
        Rn, En = insert_images(R2, E2, 1, loss)
        for q in range(3):
            e, x = E2[q].numpy(), R2[q].numpy()
            peaks = [i for i in range(1, len(e) - 1) if e[i] >= e[i - 1] and e[i] >= e[i + 1]] or [int(np.argmax(e))]
            segs = [0 if i == 0 else len(e) - 2 if i == len(e) - 1 else (i - 1 if e[i - 1] >= e[i + 1] else i)
                    for i in peaks]
            j = max(segs, key=lambda s_: (np.linalg.norm(x[s_ + 1] - x[s_]), -s_))
            want = 0.5 * (R2[q, j] + R2[q, j + 1])
            assert torch.equal(Rn[q, j + 1], want), q
            assert torch.equal(Rn[q, : j + 1], R2[q, : j + 1]) and torch.equal(Rn[q, j + 2:], R2[q, j + 1:])
            assert float(En[q, j + 1]) == pytest.approx(float(loss(want[None].expand(3, P))[q]), abs=1e-15)
        R2, E2 = Rn, En
    assert R2.shape == (3, M + 6, P) and E2.shape == (3, M + 6)
    for q in range(2):
        assert float((R2[q] @ direction - centres[q]).abs().min()) <= (1 / (M + 1)) / 16, q
    assert torch.equal(insert_images(R, E, 4, loss)[0], R2)      # k at once = k times one


def test_a_kink_saddle_without_a_negative_hessian_eigenvalue_is_connected_across_its_kinks(tmp_path):
    """A relu-mse class split through both ReLU layers (built by landscape.analysis.family) is a
    saddle by a first-order descent across a kink, and its Hessian has no eigenvalue below −τ: it
    has no unstable space (None, remembered; the run once stopped with "stored as a saddle but its
    Hessian has no eigenvalue"), and its descents start across its concave kinks (one per held
    entry, landscape.analysis.kinks.kink_descents), ± each: no edge carries an eigenvalue, no
    descent returns to the saddle, and those that certify end below it by Δ₂ − Δ₁ (≈ 6.3406e-4:
    the class then splits through one layer only; tests/test_relu_mse_family.py derives both) —
    at least one does."""
    from landscape.analysis.family import relu_mse_split_point
    from landscape.study.run import _descend_from_saddles

    overrides = ["model.activation=relu", "model.loss=mse", "saddles.starts=0"]
    spec = load_study(None, overrides).model
    th = relu_mse_split_point(spec, (2, 0, 0, 0))
    cfg, store = _study_with(tmp_path, overrides, [th])
    with store:
        saddle = store.point(0)
        assert saddle.kind == "saddle" and saddle.hessian_index == 0
        run = StudyRun(cfg, store, lambda e: None)
        assert run.points.unstable_space(saddle) is None and 0 in run.points.flat
        assert run.points.descends_across_kinks(0)
        _descend_from_saddles(run)
        edges = store.edges()
        assert sorted((e.direction, e.sign) for e in edges) == [(0, -1), (0, 1), (1, -1), (1, 1)]
        assert all(e.eigenvalue is None and e.stop_reason != Outcome.RETURNED.value for e in edges)
        down = [e for e in edges if e.target_id is not None]
        assert down and all(abs(e.barrier - 6.3406e-4) < 1e-7 for e in down), [e.barrier for e in down]

