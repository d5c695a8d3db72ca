"""Every notebook runs top to bottom with small parameters (nbclient), and is stored without outputs.

Parameters are injected as papermill does: a code cell inserted right after the cell tagged
``parameters``. Notebooks run in a temporary working directory, so their results folders land there.
"""
import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

ROOT = Path(__file__).resolve().parents[1]
NB = ROOT / "notebooks"
TINY = '["K=3", "n=1", "d=4", "L=2", "lambda=1e-2", "stages.0.max_iter=4000"]'
PARAMS = {
    "quickstart.ipynb": f'TRAJECTORIES = 8\nOVERRIDES = {TINY}',
    "dnc_prevalence.ipynb": ('STARTS = 4\nWIDTHS = [3, 5]\nLAMBDAS = [1e-2, 2e-2]\nLAMBDA = 1e-2\nWIDTH_FOR_LAMBDA = 4\n'
                             'OVERRIDES = ["K=3", "n=1", "stages.0.max_iter=4000"]\n'
                             f'SWEEP_FILE = {str(ROOT / "data" / "sweeps" / "paper_width.toml")!r}'),
    "hessian_spectra.ipynb": "K, n, d, L = 4, 1, 5, 2\nLAMBDA = 1e-2\nMIXED = [3]",
    "depth_low_rank_bias.ipynb": ('DEPTHS = [1, 2, 3]\nSTARTS = 8\n'
                                  'OVERRIDES = ["K=3", "n=1", "d=4", "lambda=1e-2", "stages.0.max_iter=4000"]'),
    "lambda0_panels.ipynb": f'REPORT = {str(ROOT / "data" / "sweeps" / "lambda0-report.json")!r}',
}


def test_every_notebook_has_parameters():
    assert sorted(p.name for p in NB.glob("*.ipynb")) == sorted(PARAMS)


def run(name: str, cwd: Path) -> nbformat.NotebookNode:
    nb = nbformat.read(NB / name, as_version=4)
    i = next(k for k, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", []))
    nb.cells.insert(i + 1, nbformat.v4.new_code_cell(PARAMS[name]))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}).execute()
    return nb


def text(nb) -> str:
    out = []
    for c in nb.cells:
        for o in c.get("outputs", []):
            out.append(o.get("text", "") or str(o.get("data", {}).get("text/plain", "")))
    return "\n".join(out)


def figures_shown(nb) -> int:
    return sum("application/vnd.plotly.v1+json" in o.get("data", {}) for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_notebook_is_stored_without_outputs(name):
    nb = nbformat.read(NB / name, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_hessian_spectra_notebook(tmp_path):
    nb = run("hessian_spectra.ipynb", tmp_path)
    out = text(nb)
    assert "P = 65 parameters" in out  # H1 d·K·n = 20, W1 d·d = 25, W2 K·d = 20
    # gauge orbit L·(r·d − r(r+1)/2): r=3 → 2·(15 − 6) = 18, r=2 → 2·(10 − 3) = 14
    assert "DNC: label DNC" in out and "rank 3  index 0  nullity 18 = 18 symmetry (theory 18) + 0 excess" in out
    assert "pairs: label pairs" in out and "rank 2  index 0  nullity 14 = 14 symmetry (theory 14) + 0 excess" in out
    assert "mixed: label simplex(3)+null" in out and "strict saddle of index 2" in out
    # the structured spectrum of DNC: bulk at λ of multiplicity Σ(a−r)(b−r) + r = 2 + 4 + 2 + 3 = 11
    assert "bulk predicted: 11" in out and re.search(r"^bulk\s+0\.01\s+×11$", out, re.M), out
    # a spectrum and a singular-value figure for each of 3 points, then DNC's groups, density,
    # factor blocks and Gauss–Newton/residual split
    assert figures_shown(nb) == 10


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_depth_notebook(tmp_path):
    nb = run("depth_low_rank_bias.ipynb", tmp_path)
    out = text(nb)
    for L in (1, 2, 3):
        assert f"L={L}: 8/8 certified" in out
    assert out.count("(DNC); 2 singular values of Z above 0.001·s₁") == 3  # K=3: DNC has rank K−1 = 2
    assert figures_shown(nb) == 2


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_quickstart_notebook(tmp_path):
    nb = run("quickstart.ipynb", tmp_path)
    out = text(nb)
    assert "DNC reached by" in out
    assert (tmp_path / "runs" / "quickstart" / "report.html").is_file()


@pytest.mark.slow   # long: run by .ci/run's second pass
def test_dnc_prevalence_notebook(tmp_path):
    nb = run("dnc_prevalence.ipynb", tmp_path)
    out = text(nb)
    assert "2 width cells, 2 λ cells" in out
    # K=3, L=2, λ=1e-2: every start certifies at DNC, which matches its closed form; Theorem 1 allows it
    assert out.count("DNC                        0.10099772 simplex(3)               0.10099772    1.000") == 3
    assert "Theorem 1 excludes DNC as global minimum: False" in out
    assert figures_shown(nb) == 4


@pytest.mark.skipif(not (ROOT / "data" / "sweeps" / "lambda0-report.json").is_file(), reason="no λ = 0 report committed")
def test_lambda0_panels_notebook(tmp_path):
    nb = run("lambda0_panels.ipynb", tmp_path)
    out = text(nb)
    assert "lambda0-depth ['L=1'" in out
    assert figures_shown(nb) >= 3
