"""A study that mostly fails says why and what to change (landscape.study.diagnosis)."""
import numpy as np
import pytest
import torch

from landscape.core.init import draw_starts
from landscape.core.model import DeepUFM
from landscape.study.config import load_study
from landscape.study.diagnosis import (UNCERTIFIED_SHARE, certified_headline, diagnose, largest_curvature)


def _record(stops, labels):
    return {"n_trajectories": sum(stops.values()), "stop_reasons": stops,
            "labels": [{"label": k, "count": v} for k, v in labels.items()]}


def test_no_diagnosis_when_at_most_the_stated_share_fails():
    cfg = load_study(None, ["trajectories=100"])
    n_bad = int(UNCERTIFIED_SHARE * 100)
    rec = _record({"converged": 100 - n_bad, "max_iter": n_bad}, {"DNC": 100 - n_bad})
    assert diagnose(cfg, rec, measure=False) == []


def test_the_largest_curvature_at_the_starts_is_the_dense_hessians_top_eigenvalue():
    """Lanczos λ_max at each start against numpy's eigvalsh of the dense Hessian (autograd)."""
    cfg = load_study(None, ["model.loss=mse", "trajectories=4"])
    lam = largest_curvature(cfg, [0, 1, 2])
    spec = cfg.model
    m = DeepUFM(spec)
    th = draw_starts(spec, cfg.init, cfg.seed, [0, 1, 2]).to(torch.float64)
    for t, l in zip(th, lam):
        H = torch.autograd.functional.hessian(lambda x: m.loss(x[None])[0], t).numpy()
        assert l == pytest.approx(np.linalg.eigvalsh(H)[-1], rel=1e-8)


def test_a_diverging_study_is_told_the_stable_step_and_the_option():
    cfg = load_study(None, ["model.loss=mse", "trajectories=64"])
    rec = _record({"converged": 15, "diverged": 49}, {"DNC": 15})
    (d,) = diagnose(cfg, rec)
    top = max(largest_curvature(cfg))
    assert d["reason"] == "diverged" and d["count"] == 49 and d["share"] == pytest.approx(49 / 64)
    assert f"2/λ_max = {2 / top:.3g}" in d["advice"] and "--set stages.0.lr=" in d["advice"]
    lr = float(d["advice"].split("--set stages.0.lr=")[1].split()[0])
    assert lr <= 0.5 * 2 / top and lr > 0.1 * 2 / top      # a 1-2-5 step within a factor of 5 below half


def test_relu_max_iter_names_the_kink_limitation_and_others_the_budget():
    relu = load_study(None, ["model.activation=relu", "trajectories=64"])
    (d,) = diagnose(relu, _record({"converged": 2, "max_iter": 62}, {"simplex(4)": 2}))
    assert "kink" in d["advice"]
    lin = load_study(None, ["trajectories=64"])
    (d,) = diagnose(lin, _record({"converged": 2, "max_iter": 62}, {"DNC": 2}))
    assert "stages.0.max_iter=30000" in d["advice"]


def test_the_certified_headline_counts_only_certified_starts():
    rec = _record({"converged": 15, "diverged": 49}, {"DNC": 12, "pairs": 3})
    h = certified_headline(rec)
    assert h["n_certified"] == 15 and h["dnc"] == 12 and h["fraction"] == pytest.approx(12 / 15)
    # Wilson's interval for 12/15 at 95% (z = 1.959964): computed here
    z, n, p = 1.959963984540054, 15, 12 / 15
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    w = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    assert h["ci_low"] == pytest.approx(c - w, abs=1e-12) and h["ci_high"] == pytest.approx(c + w, abs=1e-12)
