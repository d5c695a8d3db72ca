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
