"""The analysis entry point: summary fields, theory match, JSON safety, spectra files."""
import json

import numpy as np
import pytest
import torch

from landscape import theory as T
from landscape.analysis import analyse_point
from landscape.io.results import analysis_spectra, load_spectra, write_spectra


def analyse_points(spec, thetas, **kwargs):
    return [analyse_point(spec, thetas[i], **kwargs) for i in range(len(thetas))]


def save_spectra(path, analyses, ids):
    write_spectra(path, [analysis_spectra(a) for a in analyses], ids)
from landscape.core.model import ModelSpec

SPEC = ModelSpec(K=4, n=2, d=5, L=2, lam=1e-3)
ALPHA = 7.339167829759595   # MODEL.md §6 large DNC root at K=4, n=2, L=2, λ=1e-3


def test_dnc_point_summary_and_theory_match():
    a = analyse_point(SPEC, torch.tensor(T.dnc_point(SPEC, ALPHA)))
    d = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert d["label"] == "DNC" and d["rank_pattern"] == [3] * 5
    assert (d["index"], d["nullity"], d["symmetry_zero_modes"], d["excess_zero_modes"], d["type"]) == \
        (0, T.gauge_orbit_dimension(2, 3, 5), T.gauge_orbit_dimension(2, 3, 5), 0, "minimum")
    assert d["smallest_nonzero_eigenvalue"] == pytest.approx(1e-3, rel=1e-10)
    assert d["tau"] == pytest.approx(1e-6)
    assert d["loss"] == pytest.approx(0.02335870, abs=5e-9)
    th = d["theory"]
    assert th["pattern"] == "simplex(4)" and th["kind"] == "pattern" and th["rank_pattern_consistent"]
    assert abs(th["loss_difference"]) < 1e-14 and th["scales"] == pytest.approx([ALPHA], rel=1e-12)
    assert np.allclose(d["Zbar"], ALPHA * T.simplex(4), atol=1e-12)
    assert set(d["thresholds"]) >= {"tau", "tau_rel", "rank_rtol", "pattern_rtol", "collapse_tol", "zero_atol",
                                    "symmetry_rtol", "dense_limit"}
    assert len(d["dnc"]) == 3 and d["dnc"][0]["weight"] == "W1"
    text = a.format_text()
    assert "label: DNC" in text and "index 0, nullity 18 = 18 symmetry + 0 excess" in text
    assert a.spectrum_kind == "full" and a.spectrum.shape == (SPEC.P,)


def test_theory_match_for_block_pattern_and_rank_only():
    spec = ModelSpec(K=5, n=1, d=5, L=2, lam=1e-3)
    a3 = T.block_scale_roots(3, 5, 1, 2, 1e-3)[-1]
    a2 = T.block_scale_roots(2, 5, 1, 2, 1e-3)[-1]
    a = analyse_point(spec, T.balanced_point(spec, T.block_Zbar(5, [((0, 2, 3), a3), ((1, 4), a2)])))
    assert a.label == "simplex(3)+pair" and a.match["pattern"] == "simplex(3)+pair"
    assert abs(a.match["loss_difference"]) < 1e-14 and a.match["Zbar_rel_error"] < 1e-12
    # the odd-K paper family is not critical, its 'self' singleton has no closed form: rank-only match
    b = analyse_point(spec, T.pairing_point(spec, 5.0))
    assert b.label == "pairs" and b.match["kind"] == "rank" and b.match["rank"] == 3


def test_non_linear_model_has_no_theory_and_origin_is_zero():
    relu = ModelSpec(K=3, n=2, d=4, L=2, lam=1e-3, activation="relu")
    a = analyse_point(relu, np.zeros(relu.P))
    assert a.match is None and a.label == "zero" and a.to_dict()["theory"] is None
    lin = analyse_point(SPEC, np.zeros(SPEC.P))
    assert lin.match["kind"] == "zero" and lin.match["loss_difference"] == 0.0


def test_analyse_points_and_spectra_roundtrip(tmp_path):
    thetas = torch.tensor(np.stack([T.dnc_point(SPEC, ALPHA), T.pairing_point(SPEC, 3.0), np.zeros(SPEC.P)]))
    res = analyse_points(SPEC, thetas)
    assert [r.label for r in res] == ["DNC", "pairs", "zero"]
    lan = analyse_point(SPEC, thetas[0], dense_limit=10, lanczos_k=6)
    assert lan.spectrum_kind == "lanczos_subsets" and lan.hessian.index == 0 and lan.hessian.nullity == res[0].hessian.nullity
    path = tmp_path / "spectra.npz"
    save_spectra(path, res + [lan], ["p0", "p1", "p2", "p0-lanczos"])
    back = load_spectra(path)
    assert set(back) == {"p0", "p1", "p2", "p0-lanczos"}
    np.testing.assert_array_equal(back["p1"]["spectrum"], res[1].spectrum)
    assert back["p0"]["method"] == "dense" and back["p0-lanczos"]["method"] == "lanczos"
    np.testing.assert_array_equal(back["p0-lanczos"]["parts"]["largest"], lan.hessian.parts["largest"])
    np.testing.assert_array_equal(back["p0"]["sv"]["W2"], res[0].singular_values["W2"])
    with pytest.raises(ValueError):
        save_spectra(path, res, ["a", "a", "b"])
