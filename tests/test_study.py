"""Studies end to end: database, deduplication, analysis, fractions, the basin graph, resuming.

One tiny deep linear CE study (K=3, n=2, d=4, L=2, 24 L-BFGS starts in units of 8, 2 Newton-MR
saddle-search starts) is run once per module; the other tests compare against it.
"""
import json
import sqlite3
import math

import networkx as nx
import numpy as np
import pytest

from landscape.io.results import load_spectra
from landscape.study.config import StudyConfig, load_study
from landscape.core.model import SpecError
from landscape.io.store import StoreError, StudyStore
from landscape.study.executors import InProcessExecutor
from landscape.study.run import SADDLE_SEARCH, chunks, run_study, saddle_chunks
from landscape.study.summary import MAIN, POINT_KEYS, SUMMARY_KEYS, summarise
from landscape.analysis.point import analyse_point

TINY = ["K=3", "n=2", "d=4", "L=2", "trajectories=24", "batch_size=8", "name=tiny", "engine=lbfgs",
        "stages.0.max_iter=3000", "stages.0.tol=1e-6", "saddles.starts=2", "saddles.descend.0.max_iter=1500",
        "saddles.descend.0.stall_window=1500"]
LABEL_KEYS = ("label", "n_points", "count", "fraction", "ci_low", "ci_high")
UNCERTIFIED_KEYS = ("stop_reason", "count", "fraction", "ci_low", "ci_high")


@pytest.fixture(scope="module")
def tiny_cfg():
    return load_study(None, TINY)


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_cfg):
    out = tmp_path_factory.mktemp("reference")
    return out, run_study(tiny_cfg, out, progress=False)


def comparable(summary):
    """What two runs of one study must agree on exactly (wall time and environment aside)."""
    return ({k: summary[k] for k in ("n_trajectories", "stop_reasons", "labels", "uncertified", "unseen",
                                     "accumulation", "graph", "headline")},
            [{k: p[k] for k in ("id", "kind", "label", "loss", "index", "basin_count")} for p in summary["points"]])


def test_summary_has_exactly_the_agreed_schema(reference, tiny_cfg):
    out, s = reference
    assert tuple(s) == SUMMARY_KEYS
    assert json.loads((out / "summary.json").read_text()) == json.loads(json.dumps(s))
    assert s["study"] == "tiny" and s["config"] == tiny_cfg.to_dict() and s["dynamics"] == tiny_cfg.describe_dynamics()
    assert "lbfgs" in s["dynamics"] and "init gaussian" in s["dynamics"]
    assert s["n_trajectories"] == 24 and sum(s["stop_reasons"].values()) == 24
    phases = ("setup_s", "trajectories_s", "saddle_search_s", "saddle_descents_s", "transition_states_s", "summary_s")
    # the saddle phase computed beside the trajectories (a forked worker, where the machine has the
    # cores) adds the time the run waited for it
    timed = tuple(k for k in s["timings"] if k != "saddle_prefetch_wait_s")
    assert timed == phases and all(v >= 0 for v in s["timings"].values())
    assert sum(s["timings"].values()) <= s["wall_time_s"] * (1 + 1e-9) + 1e-6
    # the stored trajectories' time: per unit its latest stop, summed (read here with sqlite3)
    with sqlite3.connect(out / "study.sqlite") as con:
        per_unit = con.execute("SELECT MAX(wall_time) FROM trajectories GROUP BY unit").fetchall()
    assert s["trajectory_time_s"] == pytest.approx(sum(v for (v,) in per_unit), rel=1e-12) and per_unit
    assert 0 < s["trajectory_time_s"] <= s["timings"]["trajectories_s"] + s["timings"]["saddle_search_s"]
    assert all(tuple(p) == POINT_KEYS for p in s["points"])
    assert all(tuple(r) == LABEL_KEYS for r in s["labels"])
    assert all(tuple(r) == UNCERTIFIED_KEYS for r in s["uncertified"])
    assert tuple(s["unseen"]) == ("estimate", "n1", "n") and s["unseen"]["n"] == 24
    assert set(s["tolerances"]) >= {"certify_tol", "dedup", "analysis"}
    assert s["tolerances"]["dedup"] == tiny_cfg.dedup.to_dict()
    assert tuple(s["graph"]) == ("n_nodes", "n_edges", "tree", "graphml")
    assert tuple(s["headline"]) == ("dnc_fraction", "dnc_ci_low", "dnc_ci_high", "lowest_loss_label", "lowest_loss",
                                    "lowest_loss_point", "dnc_barrier", "dnc_barrier_to", "dnc_barrier_to_label",
                                    "dnc_barrier_saddle", "basin_barriers", "certified")
    # the DNC fraction among the certified starts: recounted from the labels' basin counts
    cert = s["headline"]["certified"]
    assert cert["n_certified"] == sum(r["count"] for r in s["labels"])
    assert cert["dnc"] == sum(r["count"] for r in s["labels"] if r["label"] == "DNC")
    assert s["diagnosis"] == [] or s["n_trajectories"] - cert["n_certified"] > 0.05 * s["n_trajectories"]
    counted = {p["id"]: p for p in s["points"] if p["basin_count"] and p["kind"] in ("minimum", "degenerate")}
    assert [r["point_id"] for r in s["headline"]["basin_barriers"]] == \
        sorted(counted, key=lambda i: (-counted[i]["basin_count"], i))
    for name in s["files"].values():
        assert (out / name).is_file(), name


def test_fractions_and_uncertified_add_up_to_one(reference):
    _, s = reference
    for rows in (s["points"], s["labels"]):
        total = sum(r["fraction"] for r in rows) + sum(u["fraction"] for u in s["uncertified"])
        assert math.isclose(total, 1.0, rel_tol=0, abs_tol=1e-12)
    assert sum(p["basin_count"] for p in s["points"]) + sum(u["count"] for u in s["uncertified"]) == 24
    for r in s["points"] + s["labels"]:
        assert r["ci_low"] <= r["fraction"] <= r["ci_high"]
    acc = s["accumulation"]
    assert acc["n_trajectories"] == list(range(1, 25))
    assert acc["n_distinct"][-1] == sum(1 for p in s["points"] if p["kind"] in ("minimum", "degenerate")
                                        and p["basin_count"] > 0)


def test_linear_ce_study_finds_dnc_and_labels_every_point(reference):
    _, s = reference
    labels = {r["label"]: r for r in s["labels"]}
    assert "DNC" in labels and labels["DNC"]["count"] > 0
    h = s["headline"]
    assert h["dnc_fraction"] == labels["DNC"]["fraction"] > 0
    assert (h["dnc_ci_low"], h["dnc_ci_high"]) == (labels["DNC"]["ci_low"], labels["DNC"]["ci_high"])
    best = min(s["points"], key=lambda p: p["loss"])
    assert (h["lowest_loss_point"], h["lowest_loss_label"]) == (best["id"], best["label"])
    assert h["lowest_loss"] == best["loss"]
    for p in s["points"]:
        assert p["label"] and p["rank_pattern"] and p["type"] and p["dnc_metrics"]
        assert p["nullity"] == p["symmetry_zero_modes"] + p["excess_zero_modes"]
    dnc = [p for p in s["points"] if p["label"] == "DNC" and p["kind"] == "minimum"]
    assert dnc and all(p["theory_match"]["pattern"] == "simplex(3)" for p in dnc)
    assert all(abs(p["theory_match"]["loss_difference"]) < 1e-9 for p in dnc)


def test_database_holds_every_trajectory_once_and_saddle_starts_apart(reference, tiny_cfg):
    out, s = reference
    with StudyStore.open(out) as store:
        trajs = store.trajectories()
        points = {p.id: p for p in store.points(with_params=True)}
    offset = tiny_cfg.saddles.index_offset
    assert [t.idx for t in trajs] == list(range(24)) + [offset, offset + 1]
    assert [t.engine["kind"] for t in trajs] == [MAIN] * 24 + [SADDLE_SEARCH] * 2
    done = {t.idx for t in trajs}
    assert chunks(tiny_cfg, done) == [] and saddle_chunks(tiny_cfg, done) == []
    assert all(t.point_id in points for t in trajs if t.certified)
    # basin counts of the summary ignore the saddle-search starts
    main_counts = {}
    for t in trajs[:24]:
        if t.point_id is not None:
            main_counts[t.point_id] = main_counts.get(t.point_id, 0) + 1
    assert {p["id"]: p["basin_count"] for p in s["points"] if p["basin_count"]} == main_counts
    spectra = load_spectra(out / "spectra.npz")
    assert set(spectra) == {str(i) for i in points}
    for pid, p in points.items():
        assert p.analysis is not None and p.kind in ("minimum", "saddle", "degenerate")
        np.testing.assert_array_equal(spectra[str(pid)]["spectrum"], p.spectrum)
        assert p.hessian_index == p.analysis["index"] == int(np.sum(p.spectrum < -p.analysis["tau"]))


def test_every_saddle_is_connected_downhill(reference):
    out, s = reference
    with StudyStore.open(out) as store:
        points = {p.id: p for p in store.points()}
        edges = store.edges()
        spectra = {i: store.point(i).spectrum for i, p in points.items() if p.kind == "saddle"}
    saddles = [p for p in points.values() if p.kind == "saddle"]
    assert saddles, "the saddle search should find saddles in this study"
    S = load_study(None, TINY).saddles
    for p in saddles:
        mine = [e for e in edges if e.saddle_id == p.id]
        # one direction per simple negative eigenvalue of the stored spectrum, `directions` samples of
        # each cluster of equal ones (relative to the most negative), at most max_descents // 2
        neg = np.sort(spectra[p.id][spectra[p.id] < -p.analysis["tau"]])
        assert neg.size == p.hessian_index
        breaks = np.nonzero(np.diff(neg) > S.degeneracy_rtol * abs(neg[0]))[0]
        sizes = np.diff(np.concatenate([[0], breaks + 1, [neg.size]]))
        q = min(int(sum(1 if c == 1 else S.directions for c in sizes)), S.max_descents // 2)
        assert sorted((e.direction, e.sign) for e in mine) == sorted((j, sg) for j in range(q) for sg in (-1, 1))
        for e in mine:
            assert e.eigenvalue < 0 and e.eps == 1e-3
            if e.target_id is not None:
                assert e.target_id != p.id and e.barrier > 0
                # the barrier is a difference of two losses near 1: equal to a few ulps of the losses
                assert math.isclose(e.barrier, p.loss - points[e.target_id].loss, rel_tol=1e-12,
                                    abs_tol=8 * np.finfo(float).eps * abs(p.loss))
            else:
                assert e.barrier is None and e.stop_reason
    G = nx.read_graphml(out / "graph.graphml")
    assert G.number_of_nodes() == s["graph"]["n_nodes"] == len(points)
    assert G.number_of_edges() == s["graph"]["n_edges"] == sum(e.target_id is not None for e in edges)
    tree = json.loads((out / "tree.json").read_text())
    leaves = {n["point_id"] for n in tree["nodes"] if n["type"] == "leaf"}
    assert leaves == {i for i, p in points.items() if p.kind in ("minimum", "degenerate")}


def test_interrupted_study_resumes_to_the_uninterrupted_result(tmp_path, tiny_cfg, reference):
    events = []

    def stop_after_first_unit(event):
        events.append(event)
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(tiny_cfg, tmp_path, progress=stop_after_first_unit)
    assert events == [{"phase": "trajectories", "unit": 0, "done": 8, "total": 24}]
    with StudyStore.open(tmp_path) as store:
        assert store.completed_indices().tolist() == list(range(8)) and store.committed_units() == [0]
    assert not (tmp_path / "summary.json").exists()
    resumed = run_study(tiny_cfg, tmp_path, progress=False)
    assert comparable(resumed) == comparable(reference[1])
    with StudyStore.open(tmp_path) as store:
        idx = store.completed_indices().tolist()
    assert idx == sorted(set(idx)) and len(idx) == 24 + tiny_cfg.saddles.starts
    # running a finished study again computes nothing new
    again = run_study(tiny_cfg, tmp_path, progress=False)
    assert comparable(again) == comparable(reference[1])


def test_an_executor_computes_the_same_study(tmp_path, tiny_cfg, reference):
    s = run_study(tiny_cfg, tmp_path, progress=False, executor=InProcessExecutor())
    assert comparable(s) == comparable(reference[1])


def test_unstable_directions_dense_and_lanczos_agree(reference, tiny_cfg):
    """The analysis keeps the saddle's negative eigenvectors (no second eigen-solve); dense and
    Lanczos give the same eigenvalues and the same unstable subspace."""
    with StudyStore.open(reference[0], readonly=True) as store:
        saddle = next(p for p in store.points(with_params=True) if p.kind == "saddle")
    w, V = saddle.unstable_values, saddle.unstable.T
    lan = analyse_point(tiny_cfg.model, saddle.params, dense_limit=10).hessian
    wl, Vl = np.sort(lan.parts["most_negative"])[:lan.index], lan.negative_vectors
    assert len(w) == len(wl) == saddle.hessian_index == lan.index
    np.testing.assert_allclose(wl, w, rtol=0, atol=1e-10)
    # the same invariant subspace: the projector onto one span fixes the other's basis
    np.testing.assert_allclose(V @ (V.T @ Vl), Vl, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(V, axis=0), 1.0, rtol=0, atol=1e-12)
    H = saddle.params  # an eigenvector: H v = μ v
    from landscape.analysis.hessian import dense_hessian
    Hd = dense_hessian(tiny_cfg.model, H)
    np.testing.assert_allclose(Hd @ V, V * w, rtol=0, atol=1e-9)


def test_a_folder_holding_another_study_is_refused(tmp_path, tiny_cfg, reference):
    other = load_study(None, TINY + ["seed=1"])
    with pytest.raises(StoreError, match="different configuration"):
        run_study(other, reference[0], progress=False)


def test_diverging_trajectories_are_stored_and_counted_not_fatal(tmp_path):
    cfg = load_study(None, ["K=3", "n=2", "d=4", "L=2", "trajectories=6", "batch_size=4", "engine=gd", "lr=1e5",
                            "stages.0.max_iter=200", "saddles.starts=0"])
    s = run_study(cfg, tmp_path, progress=False)
    assert s["stop_reasons"]["diverged"] == 6 and s["points"] == [] and s["labels"] == []
    assert s["uncertified"] == [{"stop_reason": "diverged", "count": 6, "fraction": 1.0,
                                 "ci_low": pytest.approx(0.6096, abs=1e-4), "ci_high": 1.0}]
    assert s["graph"]["n_nodes"] == 0 and s["headline"]["lowest_loss"] is None and s["headline"]["dnc_fraction"] == 0.0
    assert json.loads((tmp_path / "tree.json").read_text())["roots"] == []
    with StudyStore.open(tmp_path) as store:
        assert [t.stop_reason for t in store.trajectories()] == ["diverged"] * 6


def test_summarise_needs_only_the_database(reference, tiny_cfg):
    out, s = reference
    with StudyStore.open(out) as store:
        again = summarise(StudyConfig.from_dict(store.config), store)
    assert again.record["points"] == json.loads(json.dumps(s["points"]))
    assert again.tree.graph["roots"] and again.graph.number_of_edges() == s["graph"]["n_edges"]


@pytest.mark.parametrize("override, message", [
    ("saddles.starts=-1", "saddles.starts=-1 is invalid"),
    ("saddles.index_offset=10", "saddles.index_offset=10 is invalid: must be >= trajectories"),
    ("saddles.eps=0", "saddles.eps=0 is invalid"),
    ("saddles.color=1", r"\[saddles\] has unknown field"),
    ("saddles.descend.0.engine=adam", r"saddles.descend\[0\].engine='adam' is invalid"),
    ("saddles.stages.3.max_iter=1", "--set saddles.stages.3.max_iter: stage 3 does not exist"),
    ("saddles.init.name=uniform", "saddles.init.name='uniform' is invalid"),
    ("dedup.loss_rtol=-1", "dedup.loss_rtol=-1 is invalid"),
    ("analysis.rank_rtol=0", "analysis.rank_rtol=0 is invalid"),
    ("analysis.lanczos_k=2.5", "analysis.lanczos_k=2.5 is invalid"),
])
def test_saddle_dedup_and_analysis_tables_are_validated(override, message):
    with pytest.raises(SpecError, match=message):
        load_study(None, [override])


def test_saddle_table_overrides_round_trip():
    cfg = load_study(None, ["saddles.starts=5", "saddles.descend.0.rtol=1e-7", "saddles.init.name=small",
                            "dedup.loss_rtol=1e-6", "analysis.tau_rel=1e-4"])
    assert cfg.saddles.starts == 5 and cfg.saddles.descend[0].rtol == 1e-7 and cfg.saddles.init.name == "small"
    assert cfg.saddles.descend[-1].tol == cfg.saddles.stages[-1].tol == cfg.certify_tol
    assert cfg.dedup.loss_rtol == 1e-6 and cfg.analysis.kwargs()["tau_rel"] == 1e-4
    assert StudyConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


# ----- [cross_check]: the same starts by another dynamics -------------------------------------------------
def _with_check(stages, starts=16):
    d = load_study(None, TINY).to_dict()
    d["cross_check"] = {"starts": starts, "stages": stages}
    from landscape.study.config import StudyConfig

    return StudyConfig.from_dict(d)


def test_a_check_by_the_same_dynamics_agrees_everywhere(tmp_path, reference):
    """The check reruns main starts 0..15 with the main dynamics itself, in the same chunks: every
    start ends where it did (the same point id), so the agreement is complete and the two DNC
    fractions are equal; the main results are those of the run without a check."""
    cfg = _with_check([s.settings() for s in load_study(None, TINY).stages])
    s = run_study(cfg, tmp_path, progress=False)
    c = s["check"]
    with StudyStore.open(tmp_path, readonly=True) as store:
        main_certified = sum(1 for t in store.trajectories()
                             if (t.engine or {}).get("kind") == "main" and t.idx < 16 and t.certified)
    assert c["n"] == 16 and c["agree"] == main_certified >= 12 and not c["disagree"]
    assert c["main_dnc"] == c["check_dnc"] and c["dnc_difference"]["difference"] == 0
    assert comparable(s) == comparable(reference[1])
    assert json.loads((tmp_path / "config.json").read_text())["cross_check"]["starts"] == 16


def test_a_gd_check_is_recounted_from_the_database(tmp_path):
    """Main L-BFGS, check GD at lr 0.5 on the first 8 starts: the record's agreement, DNC counts
    and uncertified count equal a recount from study.sqlite with sqlite3 (check trajectory j is
    stored at index 2·10⁹ + j and starts with main trajectory j's seed)."""
    cfg = _with_check([{"engine": "gd", "lr": 0.5, "max_iter": 20000, "tol": 1e-3, "curvature_gauge": True,
                        "stall_window": 5000},
                       {"engine": "newton", "max_iter": 50, "stall_window": 10, "entry_grad_norm": 1e-3}], starts=8)
    c = run_study(cfg, tmp_path, progress=False)["check"]
    q = ("SELECT t.idx, t.seed, t.certified, t.point_id, p.label, json_extract(t.engine, '$.kind') "
         "FROM trajectories t LEFT JOIN points p ON p.id = t.point_id")
    with sqlite3.connect(tmp_path / "study.sqlite") as con:
        rows = con.execute(q).fetchall()
    main = {i: r for i, *r in rows if r[-1] == "main"}
    chk = {i - 2_000_000_000: r for i, *r in rows if r[-1] == "check"}
    assert sorted(chk) == list(range(8)) and all(chk[j][0] == main[j][0] for j in chk)   # the same seeds
    agree = sum(1 for j in chk if main[j][1] and chk[j][1] and main[j][2] == chk[j][2])
    assert c["agree"] == agree and c["n"] == 8 and c["dynamics"].startswith("gd(lr=0.5)")
    assert c["check_dnc"]["count"] == sum(1 for j in chk if chk[j][1] and chk[j][3] == "DNC")
    assert c["main_dnc"]["count"] == sum(1 for j in chk if main[j][1] and main[j][3] == "DNC")
    assert c["check_uncertified"] == sum(1 for j in chk if not chk[j][1])


def test_check_units_are_the_working_batch_and_skip_what_is_stored():
    """A check is committed in units of the working batch where that is below batch_size, so an
    interrupted hours-long check keeps its finished units; stored check starts are not rerun."""
    from landscape.study.run import CHECK_OFFSET, cross_check_chunks

    cfg = _with_check([{"engine": "gd"}], starts=8)
    assert cross_check_chunks(cfg) == [[CHECK_OFFSET + j for j in range(8)]]          # batch_size 8
    assert cross_check_chunks(cfg, unit=3) == [[CHECK_OFFSET + j for j in js] for js in ([0, 1, 2], [3, 4, 5], [6, 7])]
    assert cross_check_chunks(cfg, {CHECK_OFFSET, CHECK_OFFSET + 4}, unit=3) == [
        [CHECK_OFFSET + j for j in js] for js in ([1, 2, 3], [5, 6, 7])]


def test_bad_check_tables_name_the_field():
    with pytest.raises(SpecError, match="cross_check.stages is empty"):
        _with_check([], starts=4)
    with pytest.raises(SpecError, match=r"cross_check.starts=99 is invalid: must be at most trajectories=24"):
        _with_check([{"engine": "gd"}], starts=99)


def test_presets_keep_their_measured_working_batch():
    """The default study's size-specific settings must not leak into the presets layered on it:
    every embedded study and sweep measures its own working batch (0) unless its file names one."""
    import tomllib

    from landscape.study.presets import preset_path, presets
    from landscape.study.sweep_config import load_sweep

    for name, meta in presets().items():
        own = tomllib.loads(preset_path(name).read_text(encoding="utf-8")).get("working_batch", 0)
        if meta["kind"] == "study":
            assert load_study(preset=name).working_batch == own, name
        elif meta["kind"] == "sweep":
            assert {c.config.working_batch for c in load_sweep(preset=name).cells} == {own}, name


def _prefetched_run(monkeypatch, cfg, out, **kw):
    """run_study with the saddle phase forced into the forked worker; returns (summary, the worker)."""
    from landscape.study import prefetch as pf

    made = []
    start = pf.SaddlePrefetch.start.__func__

    def recording_start(cls, *a):
        made.append(start(cls, *a))
        return made[-1]

    monkeypatch.setattr(pf.SaddlePrefetch, "start", classmethod(recording_start))
    summary = run_study(cfg, out, prefetch=True, **kw)
    return summary, made[0]


def test_the_saddle_phase_computed_beside_the_trajectories_is_the_same_study(tmp_path, monkeypatch, tiny_cfg,
                                                                              reference):
    """The forked worker's saddle search, analyses and descents are taken where their content
    matches (here every one: the same functions at the same thread count), and the study is the
    one computed in sequence: the same points, fractions, edges and transition states."""
    import multiprocessing

    s, worker = _prefetched_run(monkeypatch, tiny_cfg, tmp_path, progress=False)
    assert comparable(s) == comparable(reference[1])
    assert worker.error is None
    assert worker.hits["units"] == len(saddle_chunks(tiny_cfg)) and worker.hits["descents"] == 1
    assert worker.hits["analyses"] >= 1
    with StudyStore.open(tmp_path) as a, StudyStore.open(reference[0]) as b:
        assert [(e.saddle_id, e.direction, e.sign, e.target_id, e.stop_reason) for e in a.edges()] == \
               [(e.saddle_id, e.direction, e.sign, e.target_id, e.stop_reason) for e in b.edges()]
        assert len(a.edges()) > 0
    assert multiprocessing.active_children() == []


def test_a_failed_worker_leaves_the_run_to_compute_everything_itself(tmp_path, monkeypatch, tiny_cfg, reference):
    from landscape.study import prefetch as pf

    def broken(cfg, chunks):
        raise RuntimeError("no saddle search here")

    monkeypatch.setattr(pf, "compute_saddle_phase", broken)
    s, worker = _prefetched_run(monkeypatch, tiny_cfg, tmp_path, progress=False)
    assert comparable(s) == comparable(reference[1])
    assert "no saddle search here" in worker.error and sum(worker.hits.values()) == 0


def test_an_interrupted_run_leaves_no_worker_and_its_threads(tmp_path, monkeypatch, tiny_cfg):
    import multiprocessing

    import torch

    threads = torch.get_num_threads()

    def stop(event):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        _prefetched_run(monkeypatch, tiny_cfg, tmp_path, progress=stop)
    assert multiprocessing.active_children() == [] and torch.get_num_threads() == threads
