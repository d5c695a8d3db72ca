"""Closed forms of MODEL.md §6: DNC, pairing (even/odd K), block structures, catalogue, Theorem 1,
matching; each checked against the model's own loss and gradient at the balanced point."""
import argparse
import math

import numpy as np
import pytest
import torch

from landscape import theory as T
from landscape.cli import theory as cli_theory
from landscape.core.model import DeepUFM, ModelSpec

GRAD_ATOL = 1e-12   # gradient norm at exact balanced critical points


def loss_grad(spec, th):
    loss, g = DeepUFM(spec).loss_and_grad(torch.tensor(th))
    return float(loss), float(g.norm())


def test_dnc_oracle_and_block_roots_agree():
    """MODEL.md §6: K=4, n=2, L=2, λ=1e-3 roots 1.28e-7 and 7.339167829759595, loss 0.02335870."""
    roots = T.block_scale_roots(4, 4, 2, 2, 1e-3)
    np.testing.assert_allclose(roots, T.dnc_scale_roots(4, 2, 2, 1e-3), rtol=1e-13)
    assert roots[0] == pytest.approx(1.28e-7, rel=1e-6) and roots[1] == pytest.approx(7.339167829759595, rel=1e-13)
    assert T.block_structure_loss([(4, roots[1])], 4, 2, 2, 1e-3) == pytest.approx(0.02335870, abs=5e-9)


@pytest.mark.parametrize("K, n, L", [(4, 2, 2), (6, 1, 3)])
def test_even_pairing_scale_loss_and_criticality(K, n, L):
    lam = 1e-3
    betas = T.pairing_scales(K, n, L, lam)
    assert len(betas) == 2
    np.testing.assert_allclose(betas, [a / 2 for a in T.block_scale_roots(2, K, n, L, lam)], rtol=1e-12)
    spec = ModelSpec(K=K, n=n, d=K, L=L, lam=lam)
    for b in betas:
        assert T.pairing_loss_dbeta(b, K, n, L, lam) == pytest.approx(0.0, abs=1e-12)
        loss, g = loss_grad(spec, T.pairing_point(spec, b))
        assert g < GRAD_ATOL
        assert loss == pytest.approx(T.pairing_loss(b, K, n, L, lam), abs=1e-14)
        assert loss == pytest.approx(T.block_structure_loss([(2, 2 * b)] * (K // 2), K, n, L, lam), abs=1e-14)


def test_odd_pairing_family_loss_and_stationarity():
    """Odd K: the model's loss at the balanced point equals ℓ_LR(β); at the stationary β the loss is
    stationary along the family but the point is not critical (spare column sums to β ≠ 0)."""
    K, n, L, lam = 5, 2, 3, 1e-3
    spec = ModelSpec(K=K, n=n, d=6, L=L, lam=lam)
    for b in (0.5, 3.0):
        assert loss_grad(spec, T.pairing_point(spec, b))[0] == pytest.approx(T.pairing_loss(b, K, n, L, lam), abs=1e-14)
    b = T.pairing_scales(K, n, L, lam)[-1]
    h = 1e-5
    fd = (T.pairing_loss(b + h, K, n, L, lam) - T.pairing_loss(b - h, K, n, L, lam)) / (2 * h)
    assert abs(fd) < 1e-9
    assert T.pairing_loss_dbeta(b + 0.1, K, n, L, lam) == pytest.approx(
        (T.pairing_loss(b + 0.1 + h, K, n, L, lam) - T.pairing_loss(b + 0.1 - h, K, n, L, lam)) / (2 * h), rel=1e-6)
    assert loss_grad(spec, T.pairing_point(spec, b))[1] > 1e-3


def test_block_structures_are_critical_points():
    """simplex(3)+pair at K=5 with every combination of roots is critical and has the closed-form loss."""
    K, n, L, lam = 5, 2, 2, 1e-3
    spec = ModelSpec(K=K, n=n, d=5, L=L, lam=lam)
    for a3 in T.block_scale_roots(3, K, n, L, lam):
        for a2 in T.block_scale_roots(2, K, n, L, lam):
            th = T.balanced_point(spec, T.block_Zbar(K, [((1, 2, 4), a3), ((0, 3), a2)]))
            loss, g = loss_grad(spec, th)
            assert g < GRAD_ATOL
            assert loss == pytest.approx(T.block_structure_loss([(3, a3), (2, a2)], K, n, L, lam), abs=1e-14)


def test_effective_lambda_gives_l1_ce_optimum():
    """With (λ_W, λ_H) the reduced problem uses Λ = √(λ_Wλ_H) at L = 1: the DNC block root is α* of
    MODEL.md §6 (4.619164, loss 0.213971044560325)."""
    spec = ModelSpec(K=5, n=3, d=5, L=1, lam_W=3e-3, lam_H=1e-2)
    lam = T.effective_lambda(spec)
    assert lam == pytest.approx(math.sqrt(3e-5), rel=1e-15)
    (a,) = T.block_scale_roots(5, 5, 3, 1, lam)
    assert a == pytest.approx(4.619164, abs=1e-6)
    assert T.block_structure_loss([(5, a)], 5, 3, 1, lam) == pytest.approx(0.213971044560325, abs=1e-13)


def test_theorem1_and_catalogue():
    assert [T.theorem1_dnc_not_global(K, L) for K, L in [(3, 5), (4, 2), (4, 3), (5, 2), (6, 2)]] == \
        [False, False, True, False, True]
    cat = T.structure_catalogue(4, 2, 2, 1e-3)
    assert [s.loss for s in cat] == sorted(s.loss for s in cat)
    assert (cat[0].name, cat[0].root) == ("DNC", "large")
    assert cat[0].loss == pytest.approx(0.02335870, abs=5e-9)
    assert {s.pattern for s in cat} == {"simplex(4)", "2×pair", "simplex(3)+null", "pair+2×null", "zero"}
    assert T.dnc_global_minimum_candidate(4, 2, 2, 1e-3)["candidate"]
    # where Theorem 1 excludes DNC, the catalogue finds a structure beating it (small λ)
    for K, L in [(4, 3), (6, 2), (5, 4)]:
        v = T.dnc_global_minimum_candidate(K, 1, L, 1e-3)
        assert v["theorem1_excludes_dnc"] and v["beaten_in_catalogue"] and not v["candidate"]


def test_match_structure_recovers_scales_and_loss():
    K, n, L, lam = 5, 2, 2, 1e-3
    a3 = T.block_scale_roots(3, K, n, L, lam)[-1]
    a2 = T.block_scale_roots(2, K, n, L, lam)[0]
    loss = T.block_structure_loss([(3, a3), (2, a2)], K, n, L, lam)
    m = T.match_structure([((0, 1, 2), a3 * (1 + 1e-9)), ((3, 4), a2)], loss + 1e-3, K, n, L, lam)
    assert m["pattern"] == "simplex(3)+pair" and m["rank"] == 3
    assert m["scales"] == pytest.approx([a3, a2], rel=1e-14)
    assert m["loss_difference"] == pytest.approx(1e-3, abs=1e-12)
    assert m["scale_rel_error"] == pytest.approx(1e-9, rel=1e-5)


def _run_cli(argv):
    parser = argparse.ArgumentParser()
    cli_theory.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.func(args)


def test_cli_theory_prints_sorted_catalogue(capsys, tmp_path):
    assert _run_cli(["theory", "--K", "4", "--n", "2", "--L", "2", "--lambda", "1e-3"]) == 0
    out = capsys.readouterr().out
    assert "0.0233587032" in out and "candidate: yes" in out
    table = out.splitlines()[2:-1]  # title, header, rows, verdict
    assert len(table) == 7 and table[0].startswith("DNC") and table[4].startswith("zero")
    losses = [float(ln.split()[4]) for ln in table]
    assert losses == sorted(losses)
    cfg = tmp_path / "c.toml"
    cfg.write_text("[model]\nK = 6\nn = 2\nd = 6\nL = 2\nlambda = 1e-3\nactivation = 'linear'\nloss = 'ce'\n")
    assert _run_cli(["theory", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "candidate: no" in out and "Theorem 1 excludes" in out


# ----- landscape theory DIR: a study's model, its lowest minima beside the closed forms -----------
@pytest.fixture(scope="module")
def study_dir(tmp_path_factory):
    from study_fixture import build_study

    return build_study(tmp_path_factory.mktemp("theory") / "study")


def test_theory_reads_a_study_folder_and_places_its_minima(study_dir, capsys):
    import json

    assert _run_cli(["theory", str(study_dir)]) == 0
    out = capsys.readouterr().out
    assert out.startswith("K=4 n=2 d=6 L=3 λ=0.001")   # the folder's model, not the default study's (d=8)
    rows = {ln.split()[0] + " " + ln.split()[2]: ln for ln in out.splitlines()[2:9]}
    assert rows["pairs large"].endswith("← study: point #1 (minimum)")
    assert rows["DNC large"].endswith("← study: point #0 (minimum)")
    assert rows["simplex(3)+null large"].endswith("← study: point #3 (saddle)")
    assert "←" not in rows["DNC small"]
    tail = out[out.index("study fixture: 32 starts; its 3 lowest minima:"):].splitlines()
    assert [ln.split()[1] for ln in tail[1:]] == ["#1", "#0", "#2"]   # by loss
    assert "9 of 32 starts (28.1%)  = pairs (2×pair, large root), Δloss" in tail[1]
    assert "18 of 32 starts (56.2%)  = DNC (simplex(4), large root)" in tail[2]
    assert _run_cli(["theory", str(study_dir), "--json"]) == 0
    study = json.loads(capsys.readouterr().out)["study"]
    assert study["compared"] and [m["id"] for m in study["minima"]] == [1, 0, 2]
    assert study["minima"][1]["closed_form"].startswith("DNC (simplex(4), large root)")
    # config.json named directly reads the folder too; another λ is another model: no comparison
    assert _run_cli(["theory", str(study_dir / "config.json")]) == 0
    assert "its 3 lowest minima" in capsys.readouterr().out
    assert _run_cli(["theory", str(study_dir), "--lambda", "1e-2"]) == 0
    out = capsys.readouterr().out
    assert "λ=0.01" in out and "its minima are not compared (the options above change its model)" in out
    assert "← study" not in out


def _folder(tmp_path, study_dir, summary=None, config=None):
    import shutil

    d = tmp_path / "copy"
    shutil.copytree(study_dir, d)
    if summary is not None:
        (d / "summary.json").write_text(summary)
    if config is not None:
        (d / "config.json").write_text(config)
    return d


def test_theory_treats_a_folder_as_untrusted_input(study_dir, tmp_path, capsys):
    import json

    from landscape.cli import main

    s = json.loads((study_dir / "summary.json").read_text())
    s["points"][1]["label"] = "\x1b[2J\x1b]0;owned\x07pairs"   # terminal escape sequences in a label
    d = _folder(tmp_path, study_dir, summary=json.dumps(s))
    assert main(["theory", str(d)]) == 0
    out = capsys.readouterr().out
    assert "\x1b" not in out and "\x07" not in out and "point #1" in out
    assert "\\x1b[2J" in out   # shown escaped, not interpreted

    s["points"][0]["loss"] = "0.01"   # a damaged summary: the theory still prints, the comparison says why not
    (d / "summary.json").write_text(json.dumps(s))
    assert main(["theory", str(d)]) == 0
    out = capsys.readouterr().out
    assert "candidate: no" in out and "its minima are not compared" in out
    assert "summary.json: points[0].loss must be a finite number, not a string" in out

    (d / "config.json").unlink()   # no config.json: the model of the summary's configuration …
    s["points"][0]["loss"] = 0.0211550344907
    (d / "summary.json").write_text(json.dumps(s))
    assert main(["theory", str(d)]) == 0 and "its 3 lowest minima" in capsys.readouterr().out
    s["points"][0]["loss"] = "x"   # … and then a bad summary is the error
    (d / "summary.json").write_text(json.dumps(s))
    assert main(["theory", str(d)]) == 2
    assert "summary.json: points[0].loss must be a finite number" in capsys.readouterr().err

    for config, message in (("{not json", "cannot parse it"), ('{"model": 3}', "no [model] table"),
                            ('{"model": {"K": 4}}', "config.json: [model] is missing field(s) ['n', 'd', 'L']"),
                            ('{"model": {"K": "\\u001b[31m", "n": 2, "d": 4, "L": 2}}', "K='\\x1b[31m' is invalid"),
                            ('{"net": {}, "ufm_spec": {}}', "a `landscape net` run"), ("[1, 2]", "must hold a table")):
        (d / "config.json").write_text(config)
        assert main(["theory", str(d)]) == 2, config
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1 and "\x1b" not in err, (config, err)
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "sweep").mkdir()
    (tmp_path / "sweep" / "sweep.json").write_text("{}")
    for argv, message in (([str(tmp_path / "none")], "no such folder"),
                          ([str(empty)], "holds neither config.json nor summary.json"),
                          ([str(tmp_path / "sweep")], "is a sweep folder: give one of its cells"),
                          ([str(study_dir), "--preset", "default"], "give one of DIR, --config or --preset")):
        assert main(["theory", *argv]) == 2, argv
        assert message in capsys.readouterr().err, argv


# ----- roots near folds and at extreme λ, against an independent high-precision solution -------
mp = pytest.importorskip("mpmath")
mp.mp.dps = 50


def _mp_block_loss(a, k, K, n, L, lam):
    """Per-block loss (k/K)·CE_k(α) + (λ(L+1)/2)(k−1)(α√n)^{2/(L+1)}, written from MODEL.md §6 (the
    CE of a class in a simplex(k) block: logit α(1−1/k) on itself, −α/k on its k−1 partners, 0 on
    the K−k others), in 50-digit arithmetic."""
    a = mp.mpf(a)
    own, part = a * (1 - mp.mpf(1) / k), -a / k
    ce = mp.log1p((k - 1) * mp.exp(part - own) + (K - k) * mp.exp(-own))
    return mp.mpf(k) / K * ce + mp.mpf(lam) * (L + 1) / 2 * (k - 1) * (a * mp.sqrt(n)) ** (mp.mpf(2) / (L + 1))


def _mp_fold(k, K, n, L):
    """λ at the fold of a simplex(k) block: stationarity dF/dα = 0 reads λ = m(α) with
    m = −(k/K)·CE_k'(α) / ((L+1)/2 (k−1) q n^{q/2} α^{q−1}), q = 2/(L+1); the fold is max_α m."""
    q = mp.mpf(2) / (L + 1)

    def m(a):
        dce = mp.diff(lambda x: _mp_block_loss(x, k, K, n, L, 0), a)
        return -dce / ((L + 1) / mp.mpf(2) * (k - 1) * q * mp.sqrt(n) ** q * a ** (q - 1))

    amax = mp.findroot(lambda a: mp.diff(m, a), 0.8 if k == K else 1.0)
    return float(m(amax)), m


@pytest.mark.parametrize("k, K, n, L", [(4, 4, 1, 2), (6, 6, 1, 2), (2, 4, 1, 2), (3, 10, 5, 2), (4, 4, 2, 3)])
def test_both_roots_found_a_hair_below_the_fold(k, K, n, L):
    lam_fold, m = _mp_fold(k, K, n, L)
    if (k, K, n, L) == (4, 4, 1, 2):
        assert lam_fold == pytest.approx(0.17766, abs=1e-5)   # the fold of issue 18
    below = T.block_scale_roots(k, K, n, L, lam_fold * (1 - 1e-9))
    assert len(below) == 2 and below[0] < below[1]
    for a in below:  # each is a root of the independent stationarity condition
        assert float(m(a) / (lam_fold * (1 - 1e-9))) == pytest.approx(1.0, abs=1e-13)
    assert T.block_scale_roots(k, K, n, L, lam_fold * (1 + 1e-9)) == []
    if k == K:
        assert len(T.dnc_scale_roots(K, n, L, lam_fold * (1 - 1e-9))) == 2


def test_theory_cli_near_the_fold_lists_dnc(capsys):
    assert _run_cli(["theory", "--K", "4", "--n", "1", "--L", "2", "--d", "4", "--lambda", "0.1775"]) == 0
    out = capsys.readouterr().out
    assert "no critical scale" not in out
    dnc = [ln for ln in out.splitlines() if ln.startswith("DNC ") and "simplex(4)" in ln]
    assert len(dnc) == 2   # both roots, 0.7407 and 0.8367
    assert sorted(round(float(ln.split()[-1]), 4) for ln in dnc) == [0.7407, 0.8367]


@pytest.mark.parametrize("K, n, L", [(10, 5, 2), (4, 1, 3), (5, 2, 2)])
def test_every_structure_survives_lambda_1e_300(K, n, L):
    lam = 1e-300
    for k in range(2, K + 1):
        roots = T.block_scale_roots(k, K, n, L, lam)
        assert len(roots) == 1   # the small root underflows (α ~ λ^{(L+1)/(L−1)}); the large one is found
        a = roots[0]
        dF = mp.diff(lambda x: _mp_block_loss(x, k, K, n, L, lam), a)
        scale = mp.diff(lambda x: _mp_block_loss(x, k, K, n, L, 0), a)
        assert abs(float(dF / scale)) < 1e-12
    cat = T.structure_catalogue(K, n, L, lam)
    parts = [p for p in T._partitions(K) if max(p) >= 2]
    # plus subsets(5,2) at K = 10: the one subset block of at most 10 classes (C(m, j) ≤ 10 with
    # 2 ≤ j ≤ m/2 leaves (4,2) = 3×pair, excluded, and (5,2))
    assert len([s for s in cat if s.critical and s.name != "zero"]) == len(parts) + (K == 10)
    if T.theorem1_dnc_not_global(K, L):
        assert cat[0].name != "DNC"
    assert T.dnc_global_minimum_candidate(K, n, L, lam)["best"] != "DNC" or not T.theorem1_dnc_not_global(K, L)


@pytest.mark.slow
def test_scale_maps_are_unimodal():
    """The check behind block_scale_roots' docstring: d log f/du changes sign once (block maps, and
    the pairing family's map for odd K) on a fine grid of u = log α. Slow (10 s of scalar
    evaluations over K ≤ 12): run by .ci/run's second pass."""
    us = np.linspace(-40, 12, 2601)
    for K in range(2, 13):
        for L in (2, 3, 6):
            for k in range(2, K + 1):
                r = np.array([T.block_scale_log_residual(u, k, K, 1, L, 1.0) for u in us])
                assert np.count_nonzero(np.diff(np.sign(np.diff(r)))) == 1, (K, L, k)
            for bt in (t for size in range(6, K + 1) for t in T.block_types(size) if t.j > 1):
                r = np.array([T.block_type_log_residual(u, bt, K, 1, L, 1.0) for u in us])
                assert np.count_nonzero(np.diff(np.sign(np.diff(r)))) == 1, (K, L, bt)
    # the odd-K pairing family: the sign changes of dℓ_LR/dβ on a fine grid are exactly the roots found
    for K in (3, 5, 7, 9):
        for lam in (1e-1, 1e-3, 2.0 ** -10, 1e-6):
            bs = np.exp(np.linspace(-60, 8, 8001))
            d = np.array([T.pairing_loss_dbeta(b, K, 2, 2, lam) for b in bs])
            assert np.count_nonzero(np.diff(np.sign(d))) == len(T.pairing_scales(K, 2, 2, lam)), (K, lam)


# ----- the subset blocks and honest matching (issue 18 items 5–6) -------------------------------
def _edges_of_4_simplex_logits(alpha):
    """Z̄ of 10 classes at the 2-subsets of {0..4}, built here from the definition: class means
    v_S = e_i + e_j − (2/5)1, Gram ⟨v_S, v_T⟩ = |S∩T| − 4/5, normalised to a projector (its
    non-zero eigenvalue is 3), times α."""
    import itertools
    subsets = list(itertools.combinations(range(5), 2))
    G = np.array([[len(set(a) & set(b)) - 0.8 for b in subsets] for a in subsets])
    return alpha * G / 3.0


def test_subsets_5_2_is_a_critical_minimum_at_its_closed_form():
    """K = 10, n = 5, L = 2, d = 10, λ = 2⁻¹⁰: the rank-4 minimum GD reaches from 2 of 32 starts
    (loss 0.0814321533). The closed form's scale minimises the model's own loss along αM̂, the
    balanced point is critical to round-off, its dense Hessian has no negative eigenvalue, and the
    analysis names it and matches it to 1e-10."""
    from scipy.optimize import minimize_scalar
    from landscape.analysis.point import analyse_point

    K, n, L, d, lam = 10, 5, 2, 10, 2.0 ** -10
    spec = ModelSpec(K=K, n=n, d=d, L=L, lam=lam)
    bt = T.BlockType(5, 2)
    a = T.block_type_roots(bt, K, n, L, lam)[-1]
    loss_th = T.block_structure_loss([(bt, a)], K, n, L, lam)
    assert loss_th == pytest.approx(0.0814321533, abs=1e-10)
    along = lambda x: loss_grad(spec, T.balanced_point(spec, _edges_of_4_simplex_logits(x)))[0]  # noqa: E731
    best = minimize_scalar(along, bracket=(a * 0.9, a, a * 1.1), tol=1e-10)
    assert best.x == pytest.approx(a, rel=1e-6) and best.fun == pytest.approx(loss_th, abs=1e-14)
    rng = np.random.default_rng(3)
    perm = rng.permutation(K)
    Zb = _edges_of_4_simplex_logits(a)[np.ix_(perm, perm)]   # relabelled classes
    th = T.balanced_point(spec, Zb)
    loss, g = loss_grad(spec, th)
    assert g < GRAD_ATOL and loss == pytest.approx(loss_th, abs=1e-14)
    from landscape.analysis.hessian import dense_hessian
    ev = np.linalg.eigvalsh(dense_hessian(spec, th))
    assert ev.min() > -1e-12
    an = analyse_point(spec, th)
    assert an.label == "subsets(5,2)" and an.kind == "minimum"
    assert an.match["matched"] and abs(an.match["loss_difference"]) < 1e-13


def test_a_match_means_a_match():
    """A point of a catalogued pattern away from its stationary scale, and a point of no pattern,
    report the nearest closed form with matched = False (the loss differs far beyond 1e-10)."""
    from landscape.analysis.point import analyse_point

    K, n, L, lam = 4, 2, 2, 1e-3
    spec = ModelSpec(K=K, n=n, d=5, L=L, lam=lam)
    a = T.dnc_scale_roots(K, n, L, lam)[-1]
    off = analyse_point(spec, T.dnc_point(spec, 1.3 * a))   # DNC-shaped, not critical
    assert off.label == "DNC" and not off.match["matched"]
    assert off.match["pattern"] == "simplex(4)" and abs(off.match["loss_difference"]) > 1e-4
    assert "nearest" in off.match["reason"]
    on = analyse_point(spec, T.dnc_point(spec, a))
    assert on.match["matched"] and abs(on.match["loss_difference"]) < 1e-14


def test_unnamed_logits_are_described():
    """A Z̄ of no catalogued block is described: classes sharing a direction, Gram values, rank,
    one scale or not."""
    from landscape.analysis.structure import analyse_structure

    spec = ModelSpec(K=4, n=1, d=4, L=2, lam=1e-3)
    Zb = np.array([[3.0, 3.0, -1.0, -2.0], [-1.0, -1.0, 2.0, 0.5], [-1.0, -1.0, -0.5, 2.0], [-1.0, -1.0, -0.5, -0.5]])
    rep = analyse_structure(spec, T.balanced_point(spec, Zb))
    assert rep.label == "other"
    d = rep.description
    assert d["shared_directions"] == [[0, 1]] and d["z_rank"] == 3 and not d["one_scale"]
    assert d["block_sizes"] == [4] and not d["regular"]
