"""Continuation in λ and in width, against the closed forms of MODEL.md §6 and §8."""
import json
import math

import pytest
import torch
from scipy.optimize import minimize_scalar

from landscape.analysis import theory as T
from landscape.cli import main
from landscape.core.model import DeepUFM, ModelSpec
from landscape.continuation import ContinuationSettings, continue_in_lambda, continue_in_width, embed_width

K, N_PER, D, L, LAM = 4, 1, 4, 2, 1e-3


def fold_lambda(K, n, L):
    """λ_max = max_α f(α)/n^{1/(L+1)}, f(α) = α^{(L−1)/(L+1)}/(e^α + K − 1), computed independently."""
    f = lambda a: a ** ((L - 1) / (L + 1)) / (math.exp(a) + K - 1)  # noqa: E731
    r = minimize_scalar(lambda a: -f(a), bounds=(1e-8, 30.0), method="bounded", options={"xatol": 1e-13})
    return -r.fun / n ** (1 / (L + 1)), r.x


@pytest.fixture(scope="module")
def dnc_branch():
    spec = ModelSpec(K=K, n=N_PER, d=D, L=L, lam=LAM)
    th = T.dnc_point(spec, T.dnc_scale_roots(K, N_PER, L, LAM)[-1])
    return continue_in_lambda(spec, th, to=0.5, settings=ContinuationSettings(max_steps=300))


def test_the_dnc_branch_stays_on_the_scale_equation_and_folds_where_the_roots_merge(dnc_branch):
    br = dnc_branch
    lam_max, alpha_star = fold_lambda(K, N_PER, L)
    folds = [e for e in br.events if e["kind"] == "fold"]
    assert len(folds) == 1
    assert abs(folds[0]["lambda"] - lam_max) <= 1e-8 * lam_max
    assert folds[0]["logit_scale"] == pytest.approx(alpha_star, rel=2e-2)   # the located point, near the merge
    fold_step = next(i for i, s in enumerate(br.steps) if s["lambda"] > 0.95 * lam_max)
    for i, s in enumerate(br.steps):
        if s["logit_scale"] <= 0:
            continue
        roots = T.dnc_scale_roots(K, N_PER, L, s["lambda"])
        assert roots, s
        alpha = roots[-1] if i <= fold_step else roots[0]
        # the branch's loss is ℓ_DNC(α(λ)), α on the large root before the fold, the small one after
        if abs(s["logit_scale"] - alpha) <= 1e-3 * alpha:
            assert abs(s["loss"] - T.dnc_loss(alpha, K, N_PER, L, s["lambda"])) <= 1e-8
        assert abs(s["loss"] - T.dnc_loss(s["logit_scale"], K, N_PER, L, s["lambda"])) <= 1e-8
        assert s["grad_norm"] <= 1e-10


def test_past_the_fold_the_branch_is_the_small_root(dnc_branch):
    br = dnc_branch
    lam_max, _ = fold_lambda(K, N_PER, L)
    after = [s for s in br.steps[br.steps.index(max(br.steps, key=lambda s: s["lambda"])) + 1:]
             if s["logit_scale"] > 0 and s["lambda"] < 0.9 * lam_max]
    assert after
    for s in after:
        small = T.dnc_scale_roots(K, N_PER, L, s["lambda"])[0]
        assert s["logit_scale"] == pytest.approx(small, rel=1e-6)
        # derivable: along the one-parameter DNC family the small root is a local maximum of
        # ℓ_DNC(α) (it lies above the origin's log K, between two local minima), so index ≥ 1
        assert s["index"] >= 1
    before = [s for s in br.steps if s["lambda"] < 0.5 * lam_max][:3]
    assert all(s["index"] == 0 for s in before)        # the large root: PSD for small λ (Theorem 4)
    fold = next(e for e in br.events if e["kind"] == "fold")
    assert fold["index_after"] == after[0]["index"]
    # events chain: each one's index_before is the previous one's index_after, starting at 0
    idx = 0
    for e in br.events:
        assert e["index_before"] == idx
        idx = e["index_after"]


def test_a_branch_that_reaches_its_target_lands_on_it():
    spec = ModelSpec(K=K, n=N_PER, d=D, L=L, lam=LAM)
    br = continue_in_lambda(spec, T.dnc_point(spec, T.dnc_scale_roots(K, N_PER, L, LAM)[-1]), to=0.02)
    assert br.end == "reached" and br.steps[-1]["lambda"] == pytest.approx(0.02, rel=1e-14) and not br.events
    a = T.dnc_scale_roots(K, N_PER, L, 0.02)[-1]
    assert br.steps[-1]["loss"] == pytest.approx(T.dnc_loss(a, K, N_PER, L, 0.02), abs=1e-10)


def test_width_embedding_keeps_critical_points_and_grows_the_orbit():
    spec = ModelSpec(K=4, n=2, d=4, L=2, lam=1e-3)
    beta = T.pairing_scales(4, 2, 2, 1e-3)[-1]
    for th, r in ((T.dnc_point(spec, T.dnc_scale_roots(4, 2, 2, 1e-3)[-1]), 3), (T.pairing_point(spec, beta), 2)):
        g0 = float(DeepUFM(spec).loss_and_grad(torch.tensor(th))[1].norm())
        br = continue_in_width(spec, th, to=7)
        assert [s["d"] for s in br.steps] == [4, 5, 6, 7]
        for s in br.steps:
            s2, th2 = embed_width(spec, th, s["d"])
            g = float(DeepUFM(s2).loss_and_grad(torch.tensor(th2))[1].norm())
            assert abs(g - g0) <= 1e-15 and abs(s["grad_norm"] - g0) <= 1e-15
            assert s["symmetry_zero_modes"] == T.gauge_orbit_dimension(2, r, s["d"]) == 2 * (r * s["d"] - r * (r + 1) // 2)


def test_cli_continue_writes_json_and_the_report_draws_it(tmp_path, capsys):
    out = tmp_path / "s"
    sets = ["K=4", "n=1", "d=4", "L=2", "trajectories=4", "batch_size=4", "saddles.starts=0", "transition_states.max_pairs=0"]
    assert main(["run", "--out", str(out), "--no-progress", *[a for s in sets for a in ("--set", s)]]) == 0
    capsys.readouterr()
    assert main(["continue", str(out), "--param", "lambda", "--to", "0.01", "--steps", "60"]) == 0
    rec = json.loads((out / "continuation.json").read_text())
    assert rec["param"] == "lambda" and rec["from"] == 1e-3 and rec["to"] == 0.01 and rec["branches"]
    for br in rec["branches"]:
        assert {"point_id", "label", "steps", "events", "end"} <= set(br)
        assert all({"lambda", "loss", "grad_norm", "index", "nullity"} <= set(s) for s in br["steps"])
    assert main(["continue", str(out), "--param", "d", "--to", "6"]) == 0
    recd = json.loads((out / "continuation-d.json").read_text())
    assert all([s["d"] for s in br["steps"]] == [4, 5, 6] for br in recd["branches"])
    assert main(["report", str(out)]) == 0
    html = (out / "report.html").read_text()
    assert "Bifurcation diagram" in html and "Critical-manifold dimension against width" in html
    assert main(["continue", str(out), "--param", "lambda", "--to", "-1"]) == 2


def test_k6_dnc_loses_stability_before_its_fold_where_a_direct_analysis_says():
    """K=6, n=1, L=2: the continuation finds the large-root DNC branch's index change (0 → 9)
    before its fold; the closed-form DNC points on either side, analysed directly, agree."""
    from landscape.analysis.hessian import analyse_hessian

    spec = ModelSpec(K=6, n=1, d=6, L=2, lam=1e-3)
    br = continue_in_lambda(spec, T.dnc_point(spec, T.dnc_scale_roots(6, 1, 2, 1e-3)[-1]), to=0.5)
    lam_max, _ = fold_lambda(6, 1, 2)
    change = next(e for e in br.events if e["kind"] == "index_change")
    fold = next(e for e in br.events if e["kind"] == "fold")
    assert change["lambda"] < fold["lambda"] and abs(fold["lambda"] - lam_max) <= 1e-8 * lam_max
    assert (change["index_before"], change["index_after"]) == (0, 9)
    for lam, index in ((0.999 * change["lambda"], 0), (1.001 * change["lambda"], 9)):
        s = ModelSpec(K=6, n=1, d=6, L=2, lam=lam)
        assert analyse_hessian(s, T.dnc_point(s, T.dnc_scale_roots(6, 1, 2, lam)[-1])).index == index



def _direct_crossing(K, lo, hi, count):
    """λ where the closed-form large-root DNC point (K, n=1, d=K, L=2) gets ``count`` negative
    eigenvalues, by bisection on the eigenvalues of its exact Hessian (torch autograd of the
    model's loss, every mode; the gauge zero modes stay within 1e-12 of 0, so counting eigenvalues
    below −1e-12 counts the crossing one as soon as it is −1e-12: a bias of ~1e-14 in λ here)."""
    import numpy as np

    def negatives(lam):
        spec = ModelSpec(K=K, n=1, d=K, L=2, lam=lam)
        th = torch.tensor(T.dnc_point(spec, T.dnc_scale_roots(K, 1, 2, lam)[-1]))
        Hm = torch.autograd.functional.hessian(lambda x: DeepUFM(spec).loss(x[None])[0], th).numpy()
        return int((np.linalg.eigvalsh(0.5 * (Hm + Hm.T)) < -1e-12).sum())

    assert negatives(lo) < count <= negatives(hi)
    while hi - lo > 1e-11 * hi:
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if negatives(mid) >= count else (mid, hi)
    return 0.5 * (lo + hi)


@pytest.mark.parametrize("K, crossings, targets", [(4, [(0.15, 0.17, 2, 0, 2), (0.17, 0.1776, 5, 2, 5)], (0.2, 0.3, 1.0, 1e300)),
                                                   pytest.param(6, [(0.09, 0.11, 9, 0, 9)], (0.2, 1e300),
                                                                marks=pytest.mark.slow)])   # long: .ci/run's 2nd pass
def test_events_at_the_exact_crossings_whatever_the_target(K, crossings, targets):
    """Folds at max of the closed-form scale map and index changes where a direct analysis of the
    closed-form DNC point says, to 1e-8 relative, for --to 0.2, 0.3, 1 and 1e300 alike."""
    lam_max, _ = fold_lambda(K, 1, 2)
    exact = [(_direct_crossing(K, lo, hi, c), before, after) for lo, hi, c, before, after in crossings]
    spec = ModelSpec(K=K, n=1, d=K, L=2, lam=1e-3)
    th = T.dnc_point(spec, T.dnc_scale_roots(K, 1, 2, 1e-3)[-1])
    seen = None
    for to in targets:
        br = continue_in_lambda(spec, th, to=to)
        folds = [e for e in br.events if e["kind"] == "fold"]
        changes = [e for e in br.events if e["kind"] == "index_change"]
        assert len(folds) == 1 and abs(folds[0]["lambda"] - lam_max) <= 1e-8 * lam_max, (to, br.events)
        for lam_x, before, after in exact:
            e = min(changes, key=lambda e: abs(e["lambda"] - lam_x))
            assert abs(e["lambda"] - lam_x) <= 1e-8 * lam_x, (to, e, lam_x)
            assert (e["index_before"], e["index_after"]) == (before, after)
            assert e["eigenvalue_slope"] < 0   # the eigenvalue falls through 0 as λ grows
        events = [(e["kind"], round(e["lambda"], 9)) for e in br.events]
        assert seen is None or events == seen   # no dependence on the target
        seen = events


def test_k2_branch_does_not_jump_to_the_origin():
    """K=2: the DNC branch followed towards λ = 0.5 turns at its fold and comes back on the small
    root; every step is on the scale equation and the logit scale changes gradually."""
    spec = ModelSpec(K=2, n=1, d=2, L=2, lam=1e-3)
    br = continue_in_lambda(spec, T.dnc_point(spec, T.dnc_scale_roots(2, 1, 2, 1e-3)[-1]), to=0.5)
    lam_max, _ = fold_lambda(2, 1, 2)
    assert [e["kind"] for e in br.events] == ["fold"] and abs(br.events[0]["lambda"] - lam_max) <= 1e-8 * lam_max
    scales = [s["logit_scale"] for s in br.steps]
    for a, b in zip(scales, scales[1:]):
        assert 0.25 <= b / a <= 4.0   # (on the small root α ∝ λ³: a 25% step in λ halves it)
    for s in br.steps:
        assert s["grad_norm"] <= 1e-10
        assert abs(s["loss"] - T.dnc_loss(s["logit_scale"], 2, 1, 2, s["lambda"])) <= 1e-8


def test_no_spurious_events_as_lambda_vanishes():
    """The pairing minimum followed to λ = 1e-14: no events (its index is 0 on the whole branch,
    MODEL.md §6), and the branch stops with a stated reason where the index cannot be resolved."""
    spec = ModelSpec(K=4, n=1, d=4, L=2, lam=1e-3)
    br = continue_in_lambda(spec, T.pairing_point(spec, T.pairing_scales(4, 1, 2, 1e-3)[-1]), to=1e-14)
    assert br.events == []
    assert "not resolvable" in br.end or "→ 0" in br.end


def test_progress_hears_every_step_and_every_event(dnc_branch):
    spec = ModelSpec(K=K, n=N_PER, d=D, L=L, lam=LAM)
    heard = []
    br = continue_in_lambda(spec, T.dnc_point(spec, T.dnc_scale_roots(K, N_PER, L, LAM)[-1]), to=0.5,
                            settings=ContinuationSettings(max_steps=300),
                            progress=lambda step, events: heard.append((step, list(events))))
    assert [s for s, _ in heard] == br.steps == dnc_branch.steps   # the start first, then every accepted step
    assert [e for _, ev in heard for e in ev] == br.events and any(ev for _, ev in heard)
    assert heard[0][1] == []


# ----- landscape continue: progress lines and a record of every run ----------------------------------
@pytest.fixture
def study_dir(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).parent))
    from study_fixture import build_study

    return build_study(tmp_path / "study")


def _fake_branches(monkeypatch, interrupt_at=None):
    """continue_in_lambda replaced by three instant steps with a fold on the second; point
    ``interrupt_at`` raises KeyboardInterrupt (Ctrl-C) when its branch starts."""
    import landscape.continuation as cont

    def fake(spec, theta, *, param, to, point_id, label, settings, progress=None):
        if point_id == interrupt_at:
            raise KeyboardInterrupt
        br = cont.Branch(point_id, label)
        for i, p in enumerate((1e-3, 2e-3, 4e-3)):
            step = {param: p, "loss": 0.1 + i, "grad_norm": 1e-12, "index": int(i >= 1), "nullity": 0}
            br.steps.append(step)
            events = [{"kind": "fold", param: 1.5e-3, "index_before": 0, "index_after": 1}] if i == 1 else []
            br.events += events
            if progress is not None:
                progress(step, events)
        br.end = "reached"
        return br

    monkeypatch.setattr(cont, "continue_in_lambda", fake)


def _runs_in_db(folder):
    from landscape.io.store import StudyStore

    with StudyStore.open(folder / "study.sqlite", readonly=True) as st:
        return [c.record for c in st.continuations()]


def test_continue_prints_progress_and_keeps_every_run(study_dir, capsys, monkeypatch):
    import landscape.cli.continue_ as cli_continue

    _fake_branches(monkeypatch)
    monkeypatch.setattr(cli_continue, "PROGRESS_EVERY_S", 0.0)   # a line per step
    argv = ["continue", str(study_dir), "--param", "lambda", "--to", "0.004"]
    assert main(argv + ["--points", "0,1"]) == 0
    out = capsys.readouterr().out
    assert "following 2 point(s) in lambda from 0.001 towards 0.004" in out
    assert "point 0 (DNC) [1/2]: following lambda towards 0.004" in out and "point 1 (pairs) [2/2]" in out
    assert "  point 0: fold at lambda=0.0015 (index 0→1)" in out
    assert "  point 1: step 2, lambda=0.004, loss 2.1, index 1; 1 event(s) so far" in out
    assert "(its first run;" in out
    first = json.loads((study_dir / "continuation.json").read_text())
    assert first["earlier_runs"] == [] and [b["point_id"] for b in first["branches"]] == [0, 1]
    assert first["run"]["arguments"]["points"] == [0, 1] and first["run"]["started_at"] <= first["run"]["finished_at"]

    assert main(argv + ["--points", "2", "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "point 2 (zero) [1/1]: following lambda" in out and "  point 2:" not in out   # quiet: no step lines
    assert "run 2 in it; the 1 earlier run(s) kept" in out
    rec = json.loads((study_dir / "continuation.json").read_text())
    # the latest run at the top level, as readers expect; the first one kept whole in earlier_runs
    assert rec["param"] == "lambda" and [b["point_id"] for b in rec["branches"]] == [2]
    assert rec["run"]["arguments"]["points"] == [2]
    assert rec["earlier_runs"] == [{k: v for k, v in first.items() if k != "earlier_runs"}]
    assert [[b["point_id"] for b in r["branches"]] for r in _runs_in_db(study_dir)] == [[0, 1], [2]]


def test_ctrl_c_before_the_first_branch_or_bad_input_leave_the_record_alone(study_dir, capsys, monkeypatch):
    _fake_branches(monkeypatch, interrupt_at=1)
    argv = ["continue", str(study_dir), "--param", "lambda", "--to", "0.004"]
    assert main(argv + ["--points", "0"]) == 0
    path = study_dir / "continuation.json"
    before = path.read_bytes()
    capsys.readouterr()

    assert main(argv + ["--points", "1"]) == 130    # Ctrl-C while the first branch runs
    err = capsys.readouterr().err
    assert "interrupted before the first branch finished: nothing was written" in err and "unchanged" in err
    assert path.read_bytes() == before and len(_runs_in_db(study_dir)) == 1
    for bad in (["--to", "-1"], ["--points", "7"], ["--points", "x"], ["--steps", "0"]):
        assert main(["continue", str(study_dir), "--param", "lambda", "--to", "0.004", *bad]) == 2, bad
        assert path.read_bytes() == before and len(_runs_in_db(study_dir)) == 1

    assert main(argv + ["--points", "0,1,2"]) == 130   # Ctrl-C in the second branch: the first one is kept
    err = capsys.readouterr().err
    assert "the 1 finished branch(es) are kept" in err and "run 2 in it; the 1 earlier run(s) kept" in err
    rec = json.loads(path.read_text())
    assert rec["interrupted"] and [b["point_id"] for b in rec["branches"]] == [0] and len(rec["earlier_runs"]) == 1

    path.write_text("{not json")   # a damaged record is refused before any work, never replaced
    assert main(argv + ["--points", "0"]) == 2
    err = capsys.readouterr().err
    assert "is not a readable continuation record" in err and "move it away" in err
    assert path.read_text() == "{not json" and len(_runs_in_db(study_dir)) == 2


def test_continue_refuses_a_bad_target_naming_its_range(study_dir, capsys):
    """--to is checked like every other number (landscape.core.validate): a weight decay is a
    finite number > 0; a width an integer, at least the study's (6.0 reads as 6)."""
    for param, to, want in (("lambda", "inf", "--to=inf is invalid: must be a finite number > 0"),
                            ("lambda_H", "0", "--to=0.0 is invalid: must be a finite number > 0"),
                            ("d", "6.5", "--to=6.5 is invalid: must be an integer >= "),
                            ("d", "1", "--to=1.0 is invalid: must be an integer >= ")):
        assert main(["continue", str(study_dir), "--param", param, "--to", to]) == 2
        err = capsys.readouterr().err
        assert want in err, err
        assert not (study_dir / "continuation.json").exists() and not (study_dir / "continuation-d.json").exists()
