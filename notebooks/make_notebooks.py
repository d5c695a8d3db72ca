"""Write the notebooks of this folder from the cell sources below (outputs empty).

    python notebooks/make_notebooks.py

Each notebook's first code cell is tagged ``parameters``: its names are the knobs a reader changes
(number of starts, grid, sizes). ``tests/test_notebooks.py`` executes every notebook with small
values by inserting a cell right after it, as papermill does.
"""
from __future__ import annotations

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

HERE = Path(__file__).resolve().parent


def notebook(cells: list[tuple[str, str]]) -> nbformat.NotebookNode:
    """cells: (kind, source) with kind 'md', 'code' or 'params' (the tagged parameters cell)."""
    out = []
    for kind, src in cells:
        src = src.strip("\n")
        if kind == "md":
            out.append(new_markdown_cell(src))
        else:
            c = new_code_cell(src)
            if kind == "params":
                c.metadata["tags"] = ["parameters"]
            out.append(c)
    nb = new_notebook(cells=out)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    return nb


QUICKSTART = [
    ("md", """
# Quick start: one small study, its figures, one DNC point and one low-rank point

Runs the embedded default study of `landscape run` (deep linear cross-entropy UFM, K=4, n=2, d=8,
L=3, λ=1e-3; Gaussian starts, gradient descent with learning rate 0.5, then a Newton-MR polish that
certifies each end point to ‖∇L‖ ≤ 1e-10) with fewer starts, then looks at what it found.
Set `STUDY_DIR` to open an existing results folder instead of running one.
"""),
    ("params", """
TRAJECTORIES = 128            # random starts
OVERRIDES = []                # further `landscape run --set` overrides, e.g. ["d=12"]
OUT = "runs/quickstart"       # results folder written by the study
STUDY_DIR = None              # an existing results folder to open instead of running a study
"""),
    ("code", """
from pathlib import Path

from landscape import figures
from landscape.study.config import load_study
from landscape.viz.report import headline_text, load_results, point_figures, study_figures, write_report
from landscape import run_study

if STUDY_DIR is None:
    cfg = load_study(None, [f"trajectories={TRAJECTORIES}", *OVERRIDES])
    run_study(cfg, OUT, progress=False)
    STUDY_DIR = OUT
res = load_results(STUDY_DIR)
print(res.dynamics)
print(headline_text(res.result))
"""),
    ("md", "## The study's figures (the same as in its `report.html`)"),
    ("code", """
figs = dict(study_figures(res))
figs["basins"]
"""),
    ("code", """figs["disconnectivity"] if "disconnectivity" in figs else "no tree.json in this folder" """),
    ("code", """figs["loss-rank"]"""),
    ("code", """figs["accumulation"] if "accumulation" in figs else "no accumulation curve in this folder" """),
    ("md", """
## One DNC point and one low-rank point

A low-rank point is a certified point whose logits Z have rank below K − 1 (the rank of DNC), e.g.
the class-pairing structure (rank K/2). For each we print the analysis (rank pattern, Hessian index
and zero modes net of symmetry, the closed-form structure it matches) and draw its spectrum,
singular values and class-mean logits.
"""),
    ("code", """
K = res.result.model.K
have = [p for p in res.points if p.id in res.analyses and p.id in res.spectra]   # typed StudyPoint records
dnc = min((p for p in have if p.label == "DNC"), key=lambda p: p.loss, default=None)
low = min((p for p in have if p.rank_pattern and 0 < p.rank_pattern[-1] < K - 1), key=lambda p: p.loss, default=None)

def describe(p):
    keys = ("id", "kind", "label", "loss", "rank_pattern", "index", "nullity", "symmetry_zero_modes",
            "excess_zero_modes", "type", "basin_count", "fraction", "ci_low", "ci_high")
    for k in keys:
        print(f"{k:>20}: {getattr(p, k)}")
    t = p.theory_match
    print(f"{'theory':>20}: {t and t.pattern} (loss difference {t and t.loss_difference})")

for name, p in (("DNC", dnc), ("low-rank", low)):
    print(f"--- {name} point ---")
    describe(p) if p else print(f"no certified {name} point in this study")
"""),
    ("code", """
shown = [p for p in (dnc, low) if p is not None]
for p in shown:
    for key, fig in point_figures(res, p.id):
        fig.show()
print(f"{len(shown)} points drawn")
"""),
    ("md", "The self-contained HTML report of the same folder (opens with no network):"),
    ("code", """print(write_report(STUDY_DIR))"""),
]

PREVALENCE = [
    ("md", """
# How often does gradient descent reach DNC? Width and weight decay

The experiment of Garrod & Keating (NeurIPS 2025, MODEL.md §6 "Width"): deep linear CE UFM with
K=10 classes, n=5 samples per class, L=2, λ = 2⁻¹⁰, full-batch gradient descent with learning rate
0.5. The paper ran 10 starts per setting; here every cell gets `STARTS` Gaussian starts and every
end point is certified (Newton-MR polish to ‖∇L‖ ≤ 1e-10) before it counts, so each probability
comes with a 95% Wilson interval. Starts that did not certify stay in every denominator and are
drawn separately.

The sweep definition is `data/sweeps/paper_width.toml` (`landscape sweep` runs the same from the
command line). The full grid at thousands of starts per cell is hours of CPU: start with a small
`STARTS`, or use a cluster executor (`landscape sweep --executor …`).
"""),
    ("params", """
STARTS = 100                                   # random starts per cell
WIDTHS = [10, 15, 20, 30, 40, 50, 70, 100]     # d, at λ = LAMBDA
LAMBDAS = [2.0**-12, 2.0**-11, 2.0**-10, 2.0**-9, 2.0**-8]  # λ, at d = WIDTH_FOR_LAMBDA
LAMBDA = 2.0**-10
WIDTH_FOR_LAMBDA = 70
OVERRIDES = []                                 # --set overrides for every cell (e.g. ["K=10", "n=5"])
SWEEP_FILE = "../data/sweeps/paper_width.toml"
OUT = "runs/dnc_prevalence"
"""),
    ("code", """
import json
from pathlib import Path

from landscape import figures, theory
from landscape.study.sweep import load_sweep, read_prevalence_csv, run_sweep

common = [f"trajectories={STARTS}", f"batch_size={STARTS}", *OVERRIDES]
width = load_sweep(SWEEP_FILE, [*common, f"sweep.d={WIDTHS}", f"lambda={LAMBDA}"])
lam = load_sweep(SWEEP_FILE, [*common, f"sweep.d=[{WIDTH_FOR_LAMBDA}]", f"sweep.lambda={LAMBDAS}"])
run_sweep(width, Path(OUT) / "width", progress=False)
run_sweep(lam, Path(OUT) / "lambda", progress=False)
rows_d = read_prevalence_csv(Path(OUT) / "width" / "prevalence.csv")
rows_lam = read_prevalence_csv(Path(OUT) / "lambda" / "prevalence.csv")
print(f"{len(rows_d)} width cells, {len(rows_lam)} λ cells; dynamics: {rows_d[0]['dynamics']}")
"""),
    ("code", """figures.prevalence_figure(rows_d, "d", x_title="width d")"""),
    ("code", """figures.prevalence_figure(rows_lam, "lambda", x_title="weight decay λ", log_x=True)"""),
    ("code", """figures.rank_distribution_figure(rows_d, "d", x_title="width d")"""),
    ("code", """figures.rank_distribution_figure(rows_lam, "lambda", x_title="weight decay λ", log_x=True)"""),
    ("md", """
## The structures found, next to their closed-form losses

For every label found in a cell: the lowest loss among its certified points, and the loss of the
catalogued closed-form structure it matched (`theory_match`: the same block pattern at its
stationary scale; MODEL.md §6). The catalogue at the same (K, n, L, λ) lists every block structure,
sorted by loss: Theorem 1 says DNC is not the global minimum for K ≥ 6 and L = 2.
"""),
    ("code", """
def structures(out):
    table = []
    for cell in json.loads((Path(out) / "sweep.json").read_text())["cells"]:
        s = json.loads((Path(out) / cell["dir"] / "summary.json").read_text())
        best = {}
        for p in s["points"]:
            if p["basin_count"] and (p["label"] not in best or p["loss"] < best[p["label"]]["loss"]):
                best[p["label"]] = p
        for lab, p in sorted(best.items(), key=lambda kv: kv[1]["loss"]):
            t = p.get("theory_match") or {}
            table.append((cell["name"], lab, p["loss"], t.get("pattern"), t.get("loss"), p["fraction"]))
    return table

print(f"{'cell':<28} {'label':<22} {'loss found':>14} {'theory pattern':<20} {'theory loss':>14} {'fraction':>8}")
for row in structures(Path(OUT) / "width") + structures(Path(OUT) / "lambda"):
    c, lab, l, pat, tl, f = row
    print(f"{c:<28} {lab!s:<22} {l:14.8g} {pat!s:<20} {tl if tl is None else format(tl, '14.8g'):>14} {f:8.3f}")
"""),
    ("code", """
m = width.cells[0].config.model
cat = theory.structure_catalogue(m.K, m.n, m.L, theory.effective_lambda(m))
print(f"closed-form structures at K={m.K}, n={m.n}, L={m.L}, λ={theory.effective_lambda(m):.6g} (lowest loss first):")
for s in cat[:8]:
    print(f"  {s.name:<32} {s.pattern:<20} rank {s.rank:>2}  loss {s.loss:.8g}  ({s.root} root)")
print("Theorem 1 excludes DNC as global minimum:", theory.theorem1_dnc_not_global(m.K, m.L))
"""),
]

SPECTRA = [
    ("md", """
# Hessian spectra at DNC, class-pairing and mixed critical points

Exact balanced critical points of the deep linear CE UFM built from the closed forms of MODEL.md §6
(`landscape.analysis.theory`), analysed in float64 with dense Hessians (`landscape.analysis.analyse_point`).
At a critical point of rank r the O(d) gauge orbit has dimension L·(r·d − r(r+1)/2): that many
zero eigenvalues are symmetry, not degeneracy. The figures mark them apart from the *excess*
zero modes, and the index and nullity below are net of them. Theorem 4 of the paper: for small λ
the large-scale DNC point has no negative eigenvalue.
"""),
    ("params", """
K, n, d, L = 6, 2, 8, 2       # classes, samples per class, width, depth
LAMBDA = 1e-3                 # weight decay on every factor
MIXED = [4, 2]                # block sizes of the mixed structure (a simplex(4) and a pair)
"""),
    ("code", """
from landscape import figures, theory
from landscape.analysis import analyse_point
from landscape.core.model import ModelSpec

spec = ModelSpec(K=K, n=n, d=d, L=L, lam=LAMBDA, dtype="float64")

def blocks_point(sizes):
    blocks, start = [], 0
    for k in sizes:
        blocks.append((tuple(range(start, start + k)), theory.block_scale_roots(k, K, n, L, LAMBDA)[-1]))
        start += k
    return theory.balanced_point(spec, theory.block_Zbar(K, blocks))

points = {"DNC": blocks_point([K]), "pairs": blocks_point([2] * (K // 2)), "mixed": blocks_point(MIXED)}
analyses = {name: analyse_point(spec, th) for name, th in points.items()}
print(f"P = {spec.P} parameters")
for name, a in analyses.items():
    h = a.hessian
    print(f"{name:>6}: label {a.label:<18} loss {a.loss:.8g}  |grad| {a.grad_norm:.1e}  rank {a.structure.ranks['Z'].rank}"
          f"  index {h.index}  nullity {h.nullity} = {h.symmetry_zero_modes} symmetry"
          f" (theory {theory.gauge_orbit_dimension(L, a.structure.ranks['Z'].rank, d)}) + {h.excess_zero_modes} excess"
          f"  → {h.description}")
"""),
    ("code", """
for name, a in analyses.items():
    figures.hessian_spectrum_figure(a.spectrum, tau=a.hessian.tau, symmetry_zero_modes=a.hessian.symmetry_zero_modes,
                                    title=f"Hessian spectrum: {name} ({a.label}), loss {a.loss:.6g}").show()
"""),
    ("md", "Singular values of every layer at the three points: rank K−1 for DNC, K/2 for the pairing."),
    ("code", """
for name, a in analyses.items():
    figures.singular_values_figure(a.singular_values, title=f"Singular values per layer: {name}",
                                   rank_rtol=a.structure.thresholds["rank_rtol"]).show()
"""),
    ("md", """
## Spectra read by their structure (`landscape spectrum`)

`landscape.analysis.spectrum.inspect_spectrum` groups the eigenvalues (zero modes, the bulk at λ,
outliers with their multiplicities and the share of each factor), gives every factor block's own
spectrum, the spectral density, and splits the Hessian into its Gauss–Newton part (λ plus a
positive semi-definite matrix) and the residual part that couples different factors: negative
curvature can only come from the residual. At large-root DNC the bulk at λ has multiplicity
Σ_l (a_l − r)(b_l − r) + r (a_l × b_l the factor shapes, r = K − 1).
"""),
    ("code", """
from landscape.analysis.spectrum import inspect_spectrum

rec = inspect_spectrum(spec, points["DNC"]).to_dict()
for g in rec["groups"]:
    print(f"{g['kind']:<8} {g['value']:>12.6g} ×{g['multiplicity']}")
r = K - 1
print("bulk predicted:", sum((a - r) * (b - r) for a, b in spec.shapes) + r)
for fig in (figures.spectrum_groups_figure(rec), figures.spectral_density_figure(rec),
            figures.block_spectra_figure(rec), figures.gauss_newton_figure(rec)):
    fig.show()
"""),
]

DEPTH = [
    ("md", """
# Low-rank bias with depth

Theorem 3 of Garrod & Keating: with weak regularisation, as the depth L grows, all but at most
q_K = 2 singular values of the normalised optimal logits decay exponentially in L. Here, for each
depth, `STARTS` Gaussian starts run gradient descent (learning rate 0.5) then a Newton-MR polish;
among the certified end points (‖∇L‖ ≤ 1e-10) the lowest-loss one is the "best found solution",
and we count its singular values of Z above `SV_RTOL` times the largest.
"""),
    ("params", """
DEPTHS = [1, 2, 3, 4, 5, 6]
STARTS = 64
OVERRIDES = ["K=4", "n=2", "d=8", "lambda=1e-3"]   # --set overrides of the default study
SV_RTOL = 1e-3                                      # "non-negligible": s_i > SV_RTOL · s_1
"""),
    ("code", """
import numpy as np
import plotly.graph_objects as go

from landscape import figures
from landscape.study.config import load_study
from landscape.analysis.structure import analyse_structure
from landscape.study.run import run_trajectories

best = {}
for L in DEPTHS:
    cfg = load_study(None, [*OVERRIDES, f"L={L}", f"trajectories={STARTS}", f"batch_size={STARTS}"])
    r = run_trajectories(cfg, list(range(STARTS)))
    ok = np.nonzero(r.converged)[0]
    if ok.size == 0:
        print(f"L={L}: no start certified ({r.counts()})")
        continue
    i = ok[np.argmin(r.loss[ok])]
    s = analyse_structure(cfg.model, r.theta[i])
    sv = s.ranks["Z"].singular_values
    best[L] = {"loss": float(r.loss[i]), "label": s.label, "sv": sv / sv[0],
               "count": int(np.sum(sv > SV_RTOL * sv[0])), "certified": int(ok.size)}
    print(f"L={L}: {ok.size}/{STARTS} certified; best loss {r.loss[i]:.8g} ({s.label}); "
          f"{best[L]['count']} singular values of Z above {SV_RTOL:g}·s₁")
print(cfg.describe_dynamics())
"""),
    ("code", """
Ls = sorted(best)
fig = go.Figure(go.Scatter(x=Ls, y=[best[L]["count"] for L in Ls], mode="lines+markers",
                           text=[best[L]["label"] for L in Ls], hovertemplate="L=%{x}: %{y} (%{text})<extra></extra>"))
fig.update_layout(title=f"Non-negligible singular values of the best found Z (s_i > {SV_RTOL:g}·s₁) against depth",
                  xaxis_title="depth L (number of weight matrices)", yaxis_title="count", template="plotly_white")
fig
"""),
    ("code", """
figures.singular_values_figure({f"L={L}": best[L]["sv"] for L in Ls},
                               title="Normalised singular values s_i/s₁ of the best found Z, per depth")
"""),
]

LAMBDA0 = [
    ("md", """
# λ = 0: where unregularised gradient descent goes, against depth (issue 36 §3)

Draws the panels of the committed λ = 0 sweeps (`data/sweeps/lambda0-depth/`, and
`lambda0-width/` where committed) beside the same starts at λ = 2⁻¹⁰ (`…-reg/`), from the report
`data/sweeps/lambda0-report.json` that `python data/sweeps/lambda0_report.py` writes from the
cells. Every start: GD lr 0.5 for 20,000 steps, the margin flow, and a certified KKT polish of its
direction (λ = 0); GD then Newton-MR to ‖∇L‖ ≤ 1e-10 (λ = 2⁻¹⁰). NC fractions are over all starts,
with 95% Wilson intervals. The paper (Garrod, Keating & Thrampoulidis 2026): depth shrinks NC's
basin; L = 1 converges to NC (proved).
"""),
    ("params", """
REPORT = None    # path of lambda0-report.json; None: data/sweeps/lambda0-report.json above the working folder
"""),
    ("code", """
import json
from pathlib import Path

import plotly.graph_objects as go
from plotly.subplots import make_subplots

if REPORT is None:
    here = Path.cwd().resolve()
    REPORT = next(p / "data" / "sweeps" / "lambda0-report.json" for p in [here, *here.parents]
                  if (p / "data" / "sweeps" / "lambda0-report.json").is_file())
rep = json.loads(Path(REPORT).read_text(encoding="utf-8"))
print(rep["machine"])
for sw in rep["sweeps"]:
    print(sw["lambda0"], [r["cell"] for r in sw["cells"]], "λ = 2⁻¹⁰ finished:", [r["cell"] for r in sw["cells"] if r["reg"]])
"""),
    ("md", "## NC at λ = 0 and DNC at λ = 2⁻¹⁰, per cell, from the same starts"),
    ("code", """
def band(fig, xs, ps, name, color):
    fig.add_trace(go.Scatter(x=xs, y=[100 * p["fraction"] for p in ps], name=name, mode="lines+markers",
                             line=dict(color=color),
                             error_y=dict(type="data", symmetric=False,
                                          array=[100 * (p["ci_high"] - p["fraction"]) for p in ps],
                                          arrayminus=[100 * (p["fraction"] - p["ci_low"]) for p in ps])))

for sw in rep["sweeps"]:
    rows = sw["cells"]
    xs = [r["cell"] for r in rows]
    fig = go.Figure()
    band(fig, xs, [r["lambda0"]["nc"] for r in rows], "NC at λ = 0", "#1f77b4")
    reg = [r for r in rows if r["reg"]]
    if reg:
        band(fig, [r["cell"] for r in reg], [r["reg"]["dnc"] for r in reg], "DNC at λ = 2⁻¹⁰", "#d62728")
    fig.update_layout(title=f"{sw['lambda0']}: fraction of starts ending at NC (95% Wilson intervals)",
                      xaxis_title="cell", yaxis_title="% of starts", yaxis_range=[0, 102], template="plotly_white")
    fig.show()
"""),
    ("md", "## Labels of the certified directions at λ = 0"),
    ("code", """
for sw in rep["sweeps"]:
    rows = sw["cells"]
    labels = sorted({lab for r in rows for lab in r["lambda0"]["labels"]} | {"uncertified"})
    fig = go.Figure()
    for lab in labels:
        ys = [r["lambda0"]["labels"].get(lab, 0) if lab != "uncertified" else r["lambda0"]["n"] - r["lambda0"]["certified"]
              for r in rows]
        fig.add_trace(go.Bar(x=[r["cell"] for r in rows], y=ys, name=lab))
    fig.update_layout(barmode="stack", title=f"{sw['lambda0']}: where each start's direction goes (λ = 0)",
                      yaxis_title="starts", template="plotly_white")
    fig.show()
"""),
    ("md", "## Normalised margins γ/γ_NC of the directions reached (marker area: starts)"),
    ("code", """
for sw in rep["sweeps"]:
    fig = go.Figure()
    for r in sw["cells"]:
        ds = r["lambda0"]["directions"]
        fig.add_trace(go.Scatter(x=[r["cell"]] * len(ds), y=[x["gamma_over_nc"] for x in ds], mode="markers",
                                 name=r["cell"], text=[f"{x['label']} (rank {x['z_rank']}): {x['count']} starts" for x in ds],
                                 marker=dict(size=[6 + 30 * (x["count"] / r["lambda0"]["n"]) ** 0.5 for x in ds]),
                                 hovertemplate="%{text}, γ/γ_NC = %{y:.6f}<extra></extra>"))
    fig.add_hline(y=1.0, line_dash="dot", annotation_text="NC (closed form)")
    fig.update_layout(title=f"{sw['lambda0']}: γ/γ_NC of every certified direction", yaxis_title="γ / γ_NC",
                      showlegend=False, template="plotly_white")
    fig.show()
"""),
    ("md", "## Start by start: NC at λ = 0 × DNC at λ = 2⁻¹⁰ (starts certified in both)"),
    ("code", """
for sw in rep["sweeps"]:
    rows = [r for r in sw["cells"] if r["paired"]]
    if not rows:
        print(sw["lambda0"], ": no λ = 2⁻¹⁰ cell finished")
        continue
    fig = make_subplots(rows=1, cols=len(rows), subplot_titles=[r["cell"] for r in rows])
    for j, r in enumerate(rows, 1):
        t = r["paired"]["table"]
        z = [[t["both"], t["first_only"]], [t["second_only"], t["neither"]]]
        fig.add_trace(go.Heatmap(z=z, x=["DNC at λ=2⁻¹⁰", "not DNC"], y=["NC at λ=0", "not NC"], text=z,
                                 texttemplate="%{text}", colorscale="Blues", showscale=False), row=1, col=j)
        fig.update_yaxes(autorange="reversed", row=1, col=j)
    fig.update_layout(title=f"{sw['lambda0']} against {sw['reg']}: the same starts", template="plotly_white")
    fig.show()
    for r in rows:
        print(r["cell"], r["paired"]["labels_cross"])
"""),
]

NOTEBOOKS = {"quickstart.ipynb": QUICKSTART, "dnc_prevalence.ipynb": PREVALENCE,
             "hessian_spectra.ipynb": SPECTRA, "depth_low_rank_bias.ipynb": DEPTH,
             "lambda0_panels.ipynb": LAMBDA0}


def main() -> None:
    for name, cells in NOTEBOOKS.items():
        nbformat.write(notebook(cells), HERE / name)
        print(HERE / name)


if __name__ == "__main__":
    main()
