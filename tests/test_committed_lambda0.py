"""The committed λ = 0 sweeps (data/sweeps/lambda0-*) checked apart from the code that wrote them.

* Every stored direction θ̂ (directions.npz) of every finished λ = 0 cell: its normalised margin
  γ = min margin / ‖θ‖^{L+1} recomputed with numpy from the flat θ (MODEL.md §1's layout), against
  the γ stored for it and, for the NC simplex code (label DNC) and the pairs code, against closed
  forms derived here (below), to 1e-10.
* The counts: the per-start records (directions.json) recounted against summary.json, the
  sweep's prevalence.csv and the report (data/sweeps/lambda0-report.json), whose Wilson intervals
  are recomputed here; the λ = 2⁻¹⁰ side and the 2×2 tables recounted from the cells' databases
  with sqlite3.
* L = 1 (proved: gradient flow converges to NC) ends at NC from every start.

Closed forms. At unit minimum margin, the smallest ‖θ‖² whose logits are Z is (L+1)·Σ_i σ_i(Z)^{2/(L+1)}
(the balanced factorisation, every factor's singular values σ_i^{1/(L+1)}), and γ is scale-free,
so γ = 1 / ((L+1) Σ σ_i^{2/(L+1)})^{(L+1)/2} at the code's unit-margin logits:
* NC: Z = (I_K − 11ᵀ/K) ⊗ 1_nᵀ (every margin 1), K−1 singular values √n:
  γ_NC = 1 / (√n · ((L+1)(K−1))^{(L+1)/2}).
* pairs (K even): classes 2j and 2j+1 at ±e_j on both sides, Z = VVᵀ ⊗ 1_nᵀ with V the orthoplex
  (margins 1 to every other pair, 2 to the partner), K/2 singular values 2√n:
  γ_pairs = 1 / ((L+1) · (K/2) · (2√n)^{2/(L+1)})^{(L+1)/2}; at K = 4, 1 / (2√n · (2(L+1))^{(L+1)/2}).
* p pairs and s = K − 2p classes alone ("p×pair+s×self"): the pairs as above, a class c alone with
  logits e_c − 1/K (margins 1). Pair columns are orthogonal to the others; the s columns e_c − 1/K
  have Gram I_s − 11ᵀ/K, eigenvalues 1 (s−1 times) and 1 − s/K: singular values 2√n (p times),
  √n (s−1 times), √(n(1−s/K)), so
  γ = 1 / ((L+1)(p(2√n)^{2/(L+1)} + (s−1)n^{1/(L+1)} + (n(1−s/K))^{1/(L+1)}))^{(L+1)/2}.
"""
import csv
import json
import math
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from oracles import numpy_factors

SWEEPS = Path(__file__).resolve().parents[1] / "data" / "sweeps"
REPORT = SWEEPS / "lambda0-report.json"


def _lambda0_cells():
    out = []
    for s in sorted(SWEEPS.glob("lambda0-*/cells/*/summary.json")):
        summary = json.loads(s.read_text())
        if summary.get("kind") == "lambda0" and summary["n_trajectories"] == summary["config"]["trajectories"]:
            out.append(s.parent)
    return out


CELLS = _lambda0_cells()
IDS = [f"{p.parents[1].name}/{p.name}" for p in CELLS]


def gamma_nc(K, n, L):
    return 1.0 / (math.sqrt(n) * ((L + 1) * (K - 1)) ** ((L + 1) / 2))


def gamma_pairs(K, n, L):
    return 1.0 / ((L + 1) * (K // 2) * (2 * math.sqrt(n)) ** (2 / (L + 1))) ** ((L + 1) / 2)


def gamma_pairs_self(K, n, L, p):
    s, e = K - 2 * p, 2 / (L + 1)
    total = p * (2 * math.sqrt(n)) ** e + ((s - 1) * n ** (e / 2) + (n * (1 - s / K)) ** (e / 2) if s else 0.0)
    return 1.0 / ((L + 1) * total) ** ((L + 1) / 2)


def gamma_subsets(m, j, n, L):
    """K = C(m, j) classes at the j-subsets of an m-set, Z̄_ST ∝ |S∩T| − j²/m: an orthogonal
    projector (times σ = K·j(m−j)/(m(m−1))) of rank m − 1 whose smallest margin, against the
    subsets sharing j − 1 elements, is 1/σ; at unit margin m − 1 singular values σ√n."""
    K = math.comb(m, j)
    sigma = K * j * (m - j) / m / (m - 1)
    return 1.0 / ((L + 1) * (m - 1) * (sigma * math.sqrt(n)) ** (2 / (L + 1))) ** ((L + 1) / 2)


def pairs_self_label(label, K):
    """(p, s) of a label "p×pair+s×self" (m× left out for 1), or None."""
    parts = str(label).split("+")
    if len(parts) != 2 or not parts[0].endswith("pair") or not parts[1].endswith("self"):
        return None
    p = int(parts[0][:-len("×pair")]) if "×" in parts[0] else 1
    s = int(parts[1][:-len("×self")]) if "×" in parts[1] else 1
    return (p, s) if 2 * p + s == K else None


def numpy_gamma(theta, K, n, d, L):
    F = numpy_factors(theta, K, n, d, L)
    Z = F[0]
    for W in F[1:]:
        Z = W @ Z
    y = np.repeat(np.arange(K), n)
    zy = Z[y, np.arange(K * n)]
    M = zy[None, :] - Z
    M[y, np.arange(K * n)] = np.inf
    return M.min() / np.linalg.norm(theta) ** (L + 1)


def wilson(k, n, z=1.959963984540054):
    p = k / n
    c = (p + z * z / (2 * n)) / (1 + z * z / n)
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, c - h), min(1.0, c + h)


def _model(cell):
    m = json.loads((cell / "config.json").read_text())["model"]
    return m["K"], m["n"], m["d"], m["L"]


def test_the_formulas_here_are_those_of_small_cases():
    # K = 4, n = 1, L = 1: NC's unit-margin logits I − 11ᵀ/4 have singular values 1, 1, 1, so
    # ‖θ‖² = 2·3 and γ = 1/6; the orthoplex's VVᵀ has 2, 2: ‖θ‖² = 2·4, γ = 1/8
    assert gamma_nc(4, 1, 1) == pytest.approx(1 / 6, rel=1e-15)
    assert gamma_pairs(4, 1, 1) == pytest.approx(1 / 8, rel=1e-15)
    for K, L in ((4, 1), (10, 2), (10, 4)):   # the mixed family's ends are NC and pairs
        assert gamma_pairs_self(K, 1, L, 0) == pytest.approx(gamma_nc(K, 1, L), rel=1e-14)
        assert gamma_pairs_self(K, 1, L, K // 2) == pytest.approx(gamma_pairs(K, 1, L), rel=1e-14)
    # K = 10, 4 pairs + 2 alone, L = 2: singular values 2 (×4), 1, √0.8
    assert gamma_pairs_self(10, 1, 2, 4) == pytest.approx((3 * (4 * 2 ** (2 / 3) + 1 + 0.8 ** (1 / 3))) ** -1.5, rel=1e-14)
    assert pairs_self_label("4×pair+2×self", 10) == (4, 2) and pairs_self_label("pair+8×self", 10) == (1, 8)
    # subsets(m, 1) is NC; subsets(5, 2): σ = 3, four singular values 3 at unit margin
    assert gamma_subsets(4, 1, 1, 3) == pytest.approx(gamma_nc(4, 1, 3), rel=1e-14)
    assert gamma_subsets(5, 2, 1, 3) == pytest.approx((4 * 4 * 3 ** 0.5) ** -2, rel=1e-14)
    for L in (1, 2, 3, 4):
        assert gamma_pairs(4, 1, L) == pytest.approx(1 / (2 * (2 * (L + 1)) ** ((L + 1) / 2)), rel=1e-14)
    for K in (4, 10):
        V = np.kron(np.eye(K // 2), [[1.0], [-1.0]])          # classes 2j, 2j+1 at ±e_j
        for L in (1, 2, 3, 4):
            for Z, g in (((np.eye(K) - 1 / K), gamma_nc(K, 1, L)), (V @ V.T, gamma_pairs(K, 1, L))):
                s = np.linalg.svd(Z, compute_uv=False)
                s = s[s > 1e-12]
                marg = min(Z[i, i] - Z[c, i] for i in range(K) for c in range(K) if c != i)
                assert marg == pytest.approx(1.0)
                assert 1 / ((L + 1) * (s ** (2 / (L + 1))).sum()) ** ((L + 1) / 2) == pytest.approx(g, rel=1e-13)


@pytest.mark.skipif(not CELLS, reason="no finished λ = 0 cell committed")
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_stored_directions_have_their_gamma_and_closed_form(cell):
    K, n, d, L = _model(cell)
    summary = json.loads((cell / "summary.json").read_text())
    z = np.load(cell / "directions.npz")
    dirs = {int(r["id"]): r for r in summary["directions"]}
    assert sorted(f"direction-{i}" for i in dirs) == sorted(z.files)
    for i, r in dirs.items():
        theta = z[f"direction-{i}"].astype(np.float64)
        assert theta.size == d * K * n + d * d * (L - 1) + K * d
        g = numpy_gamma(theta, K, n, d, L)
        assert g == pytest.approx(r["gamma"], rel=1e-10), i
        if r["label"] == "DNC":
            assert g == pytest.approx(gamma_nc(K, n, L), rel=1e-10), i
        elif r["label"] == "pairs" and K % 2 == 0:
            assert g == pytest.approx(gamma_pairs(K, n, L), rel=1e-10), i
        elif str(r["label"]).startswith("subsets("):
            m, j = (int(v) for v in r["label"][len("subsets("):-1].split(","))
            assert math.comb(m, j) == K, r["label"]
            assert g == pytest.approx(gamma_subsets(m, j, n, L), rel=1e-10), i
        elif pairs_self_label(r["label"], K) is not None:
            assert g == pytest.approx(gamma_pairs_self(K, n, L, pairs_self_label(r["label"], K)[0]), rel=1e-10), i


@pytest.mark.skipif(not CELLS, reason="no finished λ = 0 cell committed")
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_stored_directions_are_kkt_points_by_an_independent_check(cell):
    """Every stored θ̂ (closed form or not, "other" included) is a KKT point of
    min ½‖θ‖² s.t. margins ≥ 1, checked apart from landscape.analysis.margins: the margins'
    gradients by torch autograd through the factors built here, the multipliers by scipy's NNLS on
    the constraints within 1e-8 of the smallest margin (which must be 1), and the relative
    stationarity residual ‖θ̂ − Σα∇m‖/‖θ̂‖ ≤ 1e-9."""
    torch = pytest.importorskip("torch")
    from scipy.optimize import nnls

    K, n, d, L = _model(cell)
    summary = json.loads((cell / "summary.json").read_text())
    z = np.load(cell / "directions.npz")
    y = np.repeat(np.arange(K), n)
    for r in summary["directions"]:
        theta = z[f"direction-{r['id']}"].astype(np.float64)

        def margins(t):
            F = numpy_factors(t, K, n, d, L)
            Z = F[0]
            for W in F[1:]:
                Z = W @ Z
            zy = Z[y, torch.arange(K * n)]
            return torch.stack([zy[i] - Z[c, i] for i in range(K * n) for c in range(K) if c != y[i]])

        t = torch.tensor(theta, dtype=torch.float64)
        m = margins(t).numpy()
        assert m.min() == pytest.approx(1.0, abs=1e-9), r["id"]
        S = np.flatnonzero(m <= 1 + 1e-8)
        J = torch.autograd.functional.jacobian(margins, t).numpy()[S]
        alpha, _ = nnls(J.T, theta, maxiter=100 * len(S))
        assert np.linalg.norm(theta - J.T @ alpha) / np.linalg.norm(theta) <= 1e-9, (r["id"], r["label"])


@pytest.mark.skipif(not CELLS, reason="no finished λ = 0 cell committed")
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_counts_recount_from_the_per_start_records(cell):
    K, n, d, L = _model(cell)
    summary = json.loads((cell / "summary.json").read_text())
    starts = json.loads((cell / "directions.json").read_text())["starts"]
    N = len(starts)
    assert N == summary["n_trajectories"] and sorted(r["index"] for r in starts) == list(range(N))
    cert = [r for r in starts if r["stop_reason"] == "certified"]
    nc = sum(r["label"] == "DNC" for r in cert)
    assert summary["certified"]["count"] == len(cert)
    assert summary["nc"]["count"] == nc
    # every certified start's γ is its direction's (directions are told apart by γ to 9 digits)
    gam = {int(r["id"]): (r["gamma"], r["label"]) for r in summary["directions"]}
    for r in cert:
        assert r["gamma"] == pytest.approx(gam[r["direction_id"]][0], rel=1e-8)
        assert r["label"] == gam[r["direction_id"]][1]
    if L == 1:
        assert nc == N, "L = 1 (the proved case) must end at NC from every start"
    # the sweep's prevalence.csv
    rows = {r["cell"]: r for r in csv.DictReader((cell.parents[1] / "prevalence.csv").open(encoding="utf-8"))}
    row = rows[cell.name]
    assert int(row["n_trajectories"]) == N and int(row["dnc_count"]) == nc
    assert int(row["uncertified_count"]) == N - len(cert)
    lo, hi = wilson(nc, N)
    assert float(row["dnc_ci_low"]) == pytest.approx(lo, abs=1e-12)
    assert float(row["dnc_ci_high"]) == pytest.approx(hi, abs=1e-12)



@pytest.mark.skipif(not CELLS, reason="no finished λ = 0 cell committed")
@pytest.mark.parametrize("cell", CELLS, ids=IDS)
def test_the_typed_view_and_the_prevalence_row_read_what_the_records_say(cell):
    """``load_results(cell).result`` (the typed λ = 0 summary) counts what the per-start records
    count, and the prevalence row recomputed from it is the committed prevalence.csv row."""
    from landscape import load_results
    from landscape.study.lambda0 import prevalence_row
    from landscape.study.sweep_config import Cell

    starts = json.loads((cell / "directions.json").read_text())["starts"]
    cert = [r for r in starts if r["stop_reason"] == "certified"]
    labels, ranks = {}, {}
    for r in cert:
        labels[r["label"]] = labels.get(r["label"], 0) + 1
        ranks[r["z_rank"]] = ranks.get(r["z_rank"], 0) + 1
    res = load_results(cell).result
    assert res.n_trajectories == len(starts) and res.certified.count == len(cert)
    assert res.nc.count == labels.get("DNC", 0) and res.label_counts() == labels
    assert res.logit_rank_counts() == ranks
    assert sum(res.stop_reasons.values()) == len(starts)
    lo, hi = wilson(len(cert), len(starts))
    assert res.certified.ci_low == pytest.approx(lo, abs=1e-12)
    assert res.certified.ci_high == pytest.approx(hi, abs=1e-12)
    K, n, _, L = _model(cell)
    assert res.nc_code_margin == pytest.approx(gamma_nc(K, n, L), rel=1e-12)


SWEEP_FOLDERS = sorted({c.parents[1] for c in CELLS})


@pytest.mark.skipif(not SWEEP_FOLDERS, reason="no finished λ = 0 cell committed")
@pytest.mark.parametrize("sweep", SWEEP_FOLDERS, ids=[p.name for p in SWEEP_FOLDERS])
def test_the_prevalence_table_rewritten_from_the_typed_views_is_the_committed_one(sweep, tmp_path):
    """Every row of a committed λ = 0 sweep's prevalence.csv, recomputed from its cell's typed
    summary and written again, is the committed row, character for character (the numbers the
    sweep printed are unchanged)."""
    from landscape import load_results
    from landscape.study.lambda0 import prevalence_row
    from landscape.study.sweep import write_prevalence_csv
    from landscape.study.sweep_config import Cell

    committed = list(csv.DictReader((sweep / "prevalence.csv").open(encoding="utf-8")))
    header = list(committed[0])
    axes = header[1:header.index("n_trajectories")]   # the sweep's axes: between cell and the counts
    rows = []
    for r in committed:
        if not (sweep / "cells" / r["cell"] / "directions.json").is_file():
            pytest.skip(f"{sweep.name}/{r['cell']} is not a finished λ = 0 cell")
        cell = Cell(r["cell"], {k: json.loads(r[k]) for k in axes}, None)
        rows.append(prevalence_row(cell, load_results(sweep / "cells" / r["cell"]).result))
    write_prevalence_csv(tmp_path / "prevalence.csv", rows, axes)
    assert (tmp_path / "prevalence.csv").read_text(encoding="utf-8") == (sweep / "prevalence.csv").read_text(encoding="utf-8")


def _reg_ends(folder: Path) -> dict:
    con = sqlite3.connect(f"file:{folder / 'study.sqlite'}?mode=ro", uri=True)
    rows = con.execute("SELECT t.idx, t.certified, p.label FROM trajectories t LEFT JOIN points p "
                       "ON p.id = t.point_id WHERE json_extract(t.engine, '$.kind') = 'main'").fetchall()
    con.close()
    return {int(i): (lab if c else None) for i, c, lab in rows}


@pytest.mark.skipif(not REPORT.is_file(), reason="no λ = 0 report committed")
def test_report_fractions_and_paired_tables_recount():
    rep = json.loads(REPORT.read_text(encoding="utf-8"))
    seen = 0
    for sw in rep["sweeps"]:
        for row in sw["cells"]:
            cell = SWEEPS / sw["lambda0"] / "cells" / row["cell"]
            starts = json.loads((cell / "directions.json").read_text())["starts"]
            l0 = {r["index"]: (r["label"] if r["stop_reason"] == "certified" else None) for r in starts}
            N = len(l0)
            a = row["lambda0"]
            k = sum(v == "DNC" for v in l0.values())
            assert (a["n"], a["certified"], a["nc"]["count"]) == (N, sum(v is not None for v in l0.values()), k)
            assert a["nc"]["fraction"] == k / N
            assert (a["nc"]["ci_low"], a["nc"]["ci_high"]) == pytest.approx(wilson(k, N), abs=1e-12)
            assert sum(x["count"] for x in a["directions"]) == a["certified"]
            for lab, c in a["labels"].items():
                assert c == sum(v == lab for v in l0.values())
            if row["L"] == 1:
                assert k == N
            if row["reg"] is None:
                continue
            reg = _reg_ends(SWEEPS / sw["reg"] / "cells" / row["cell"])
            b = row["reg"]
            kd = sum(v == "DNC" for v in reg.values())
            assert (b["n"], b["certified"], b["dnc"]["count"]) == (len(reg), sum(v is not None for v in reg.values()), kd)
            assert (b["dnc"]["ci_low"], b["dnc"]["ci_high"]) == pytest.approx(wilson(kd, len(reg)), abs=1e-12)
            both = [i for i in l0 if l0[i] is not None and reg.get(i) is not None]
            t = row["paired"]["table"]
            assert row["paired"]["n_both_certified"] == len(both)
            assert t["both"] == sum(l0[i] == "DNC" and reg[i] == "DNC" for i in both)
            assert t["first_only"] == sum(l0[i] == "DNC" and reg[i] != "DNC" for i in both)
            assert t["second_only"] == sum(l0[i] != "DNC" and reg[i] == "DNC" for i in both)
            assert t["neither"] == sum(l0[i] != "DNC" and reg[i] != "DNC" for i in both)
            seen += 1
    assert seen or not any(sw["cells"] for sw in rep["sweeps"] if any(r["reg"] for r in sw["cells"]))


@pytest.mark.skipif(not REPORT.is_file(), reason="no λ = 0 report committed")
def test_the_same_starts_run_longer_recount():
    """The report's comparison of a cell with the same starts run longer (more GD steps or a longer
    margin flow), recounted from both cells' per-start records: certified counts, the starts both
    certify, how many reach the same direction (γ to 1e-8 and the same logit rank) and which moved."""
    rep = json.loads(REPORT.read_text(encoding="utf-8"))
    for c in rep.get("longer", []):
        a = {r["index"]: r for r in json.loads((SWEEPS / c["short"] / "cells" / c["cell"] / "directions.json").read_text())["starts"]}
        b = {r["index"]: r for r in json.loads((SWEEPS / c["long"] / "cells" / c["cell"] / "directions.json").read_text())["starts"]}
        ca = {i for i, r in a.items() if r["stop_reason"] == "certified"}
        cb = {i for i, r in b.items() if r["stop_reason"] == "certified"}
        both = ca & cb
        same = {i for i in both if math.isclose(a[i]["gamma"], b[i]["gamma"], rel_tol=1e-8) and a[i]["z_rank"] == b[i]["z_rank"]}
        assert (c["n"], c["certified_short"], c["certified_long"]) == (len(a), len(ca), len(cb))
        assert (c["both"], c["same_direction"]) == (len(both), len(same))
        assert sorted(m["index"] for m in c["moved"]) == sorted(both - same)
        assert c["short_only"] == sorted(ca - cb) and c["long_only"] == sorted(cb - ca)


EXTENDED = (("lambda0-depth-k10-flow", "lambda0-depth-k10-extend"),)


@pytest.mark.parametrize("first, extended", EXTENDED, ids=[b for _, b in EXTENDED])
def test_extension_rounds_touch_only_the_starts_the_first_decision_left(first, extended):
    """A sweep with [lambda0] extend_rounds against the committed sweep of the same starts and
    dynamics without it: every start the first decision certified has the same record (label,
    γ bit for bit, support, rule, flow steps); every other start flowed continue_iter/2 more
    steps per round, at most extend_rounds rounds, and is either certified after r rounds (its
    detail says so) or uncertified after all of them; the summary counts the extended ones."""
    pairs = 0
    for cell in sorted((SWEEPS / extended / "cells").glob("*")):
        a_dir = SWEEPS / first / "cells" / cell.name
        if not (cell / "directions.json").is_file() or not (a_dir / "directions.json").is_file():
            continue
        cfg = json.loads((cell / "config.json").read_text())["lambda0"]
        half, rounds = cfg["continue_iter"] // 2, cfg["extend_rounds"]
        assert rounds >= 1
        a = {r["index"]: r for r in json.loads((a_dir / "directions.json").read_text())["starts"]}
        b = {r["index"]: r for r in json.loads((cell / "directions.json").read_text())["starts"]}
        assert a.keys() == b.keys()
        extended_n = 0
        for i, ra in a.items():
            rb = b[i]
            if ra["stop_reason"] == "certified":
                keys = ("stop_reason", "label", "gamma", "support_size", "detail", "continue_iterations", "z_rank")
                assert {k: rb[k] for k in keys} == {k: ra[k] for k in keys}, i
                continue
            r, rest = divmod(rb["continue_iterations"] - ra["continue_iterations"], half)
            assert rest == 0 and 1 <= r <= rounds, (i, rb["continue_iterations"])
            if rb["stop_reason"] == "certified":
                assert f"after {r} more margin-flow round(s) of {half} steps" in rb["detail"], rb["detail"]
                extended_n += 1
            else:
                assert r == rounds, i
        summary = json.loads((cell / "summary.json").read_text())
        assert summary["certified"]["after_extension"] == extended_n
        pairs += 1
    if not pairs:
        pytest.skip(f"no finished cell of {extended} beside {first}")
