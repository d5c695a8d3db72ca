"""Sweeps: sweep files and overrides, cell names, the prevalence table, running and resuming."""
import json
import math
import sqlite3
import time
import tomllib
from pathlib import Path

import pytest

from landscape.cli import main as cli_main
from landscape.study.executors import InProcessExecutor
from landscape.core.model import SpecError
from landscape.study.stats import wilson_interval
from landscape.io.store import StudyStore
from landscape.study.run import run_study
from landscape.study.stats import paired_difference
from landscape.study.sweep import (PREVALENCE_FIELDS, SweepConfig, cell_name, load_sweep, prevalence_row,
                             read_prevalence_csv, run_cell, run_sweep, shares_starts, write_prevalence_csv)

DATA = Path(__file__).resolve().parents[1] / "data" / "sweeps"
SMALL = DATA / "width_lambda_small.toml"


def small_dict(**axes) -> dict:
    d = tomllib.loads(SMALL.read_text())
    if axes:
        d["sweep"] = axes
    return d


# ----- sweep files -----------------------------------------------------------------------------
def test_example_sweeps_load():
    small = load_sweep(SMALL)
    assert [c.name for c in small.cells] == ["d=4,lambda=0.001", "d=4,lambda=0.003", "d=8,lambda=0.001",
                                             "d=8,lambda=0.003"]
    assert small.cells[1].config.model.d == 4 and small.cells[1].config.model.lam == 0.003
    assert small.cells[1].config.name == "width_lambda_small-d=4,lambda=0.003"
    paper = load_sweep(DATA / "paper_width.toml", ["trajectories=2000"])
    m = paper.cells[0].config.model
    assert (m.K, m.n, m.L, m.lam, m.activation, m.loss) == (10, 5, 2, 2.0 ** -10, "linear", "ce")
    assert paper.cells[0].config.stages[0].engine == "gd" and paper.cells[0].config.stages[0].lr == 0.5
    assert [c.config.model.d for c in paper.cells] == paper.axes["d"] and len(paper.axes["d"]) >= 5
    assert {c.config.trajectories for c in paper.cells} == {2000}


def test_grid_is_the_cartesian_product_in_axis_order():
    sw = SweepConfig.from_dict(small_dict(**{"d": [4, 5], "init.scale_H": [0.5, 1.0], "stages.0.max_iter": [100, 200, 300]}))
    assert len(sw.cells) == 2 * 2 * 3
    assert sw.cells[0].overrides == {"d": 4, "init.scale_H": 0.5, "stages.0.max_iter": 100}
    assert sw.cells[1].overrides == {"d": 4, "init.scale_H": 0.5, "stages.0.max_iter": 200}
    assert sw.cells[-1].name == "d=5,init.scale_H=1.0,stages.0.max_iter=300"
    c = sw.cells[-1].config
    assert (c.model.d, c.init.scale_H, c.stages[0].max_iter, c.stages[1].max_iter) == (5, 1.0, 300, 50)
    # the effective sweep round-trips through its dict (as saved in sweep.json)
    again = SweepConfig.from_dict(json.loads(json.dumps(sw.to_dict())))
    assert [x.config for x in again.cells] == [x.config for x in sw.cells]


def test_command_line_overrides_base_and_axes():
    sw = load_sweep(SMALL, ["trajectories=5", "sweep.lambda=[0.001]", "sweep.lr=[0.1, 0.2]", "L=3", "engine=gd"])
    assert [c.name for c in sw.cells] == ["d=4,lambda=0.001,lr=0.1", "d=4,lambda=0.001,lr=0.2",
                                          "d=8,lambda=0.001,lr=0.1", "d=8,lambda=0.001,lr=0.2"]
    assert {(c.config.trajectories, c.config.model.L) for c in sw.cells} == {(5, 3)}
    assert sw.cells[1].config.stages[0].lr == 0.2
    assert sw.base["trajectories"] == 5 and sw.to_dict()["sweep"]["lambda"] == [0.001]


@pytest.mark.parametrize("cfg_axes, overrides, message", [
    (None, [], r"\[sweep\] is missing"),
    ({}, [], r"\[sweep\] is empty"),
    ({"d": []}, [], r"sweep.d=\[\] is invalid: must be a non-empty list"),
    ({"d": 4}, [], r"sweep.d=4 is invalid: must be a non-empty list"),
    ({"d": [4, 4]}, [], r"sweep.d=\[4, 4\] is invalid: values must be distinct"),
    ({"name": ["a", "b"]}, [], r"sweep.name is invalid"),
    ({"depth": [2, 3]}, [], r"sweep axis 'depth' is not a known field"),
    ({"d": [2, 4]}, [], r"sweep cell d=2: .*d=2 is invalid"),
    ({"d": [4, 8]}, ["d=16"], r"--set d: 'd' is a sweep axis; set its values with --set sweep.d=\[...\]"),
    ({"d": [4, 8]}, ["lambda=-1"], r"lambda=-1 is invalid"),
    ({"activation": ["linear", "lin ear"], "d": [4]}, [], None),
])
def test_bad_sweeps_name_the_field(cfg_axes, overrides, message):
    d = small_dict()
    if cfg_axes is None:
        del d["sweep"]
    else:
        d["sweep"] = cfg_axes
    if message is None:  # an invalid value is reported by the cell it belongs to
        with pytest.raises(SpecError, match=r"sweep cell activation=lin-ear,d=4: activation='lin ear' is invalid"):
            SweepConfig.from_dict(d, overrides)
        return
    with pytest.raises(SpecError, match=message):
        SweepConfig.from_dict(d, overrides)


def test_cell_names_are_safe_and_distinct():
    assert cell_name({"lambda": 2.0 ** -10, "loss": "mse"}) == "lambda=0.0009765625,loss=mse"
    assert cell_name({"init.scales": [1.0, 0.5], "x": "a/b c"}) == "init.scales=1.0-0.5,x=a-b-c"
    d = small_dict(**{"init.name": ["a/b", "a b"]})
    with pytest.raises(SpecError, match=r"two cells share the folder name 'init.name=a-b'"):
        SweepConfig.from_dict(d)


# ----- prevalence table ------------------------------------------------------------------------
def test_prevalence_row_from_a_known_study(tmp_path):
    """The fixture study: 32 starts, 18 at DNC (rank(Z) = K−1 = 3), 9 at pairs (rank K/2 = 2),
    2 at the origin (rank 0), 3 stopped at max_iter."""
    from study_fixture import build_study

    summary = json.loads((build_study(tmp_path / "s") / "summary.json").read_text())
    cell = load_sweep(SMALL).cells[0]
    row = prevalence_row(cell, summary)
    lo, hi = wilson_interval(18, 32)
    assert row["cell"] == cell.name and row["d"] == 4 and row["lambda"] == 0.001
    assert (row["n_trajectories"], row["dnc_count"], row["dnc_fraction"]) == (32, 18, 18 / 32)
    assert (row["dnc_ci_low"], row["dnc_ci_high"]) == (lo, hi)
    assert (row["uncertified_count"], row["uncertified_fraction"]) == (3, 3 / 32)
    assert row["mean_logit_rank"] == (18 * 3 + 9 * 2 + 2 * 0) / 29
    assert row["n_distinct_points"] == 3
    assert (row["frac_DNC"], row["frac_pairs"], row["frac_zero"]) == (18 / 32, 9 / 32, 2 / 32)
    assert math.isclose(sum(v for k, v in row.items() if k.startswith("frac_")) + row["uncertified_fraction"], 1.0,
                        rel_tol=0.0, abs_tol=1e-15)
    # the distribution of the logit rank (not only its mean), per-label intervals, stop reasons
    assert row["logit_rank_counts"] == {"0": 2, "2": 9, "3": 18}
    assert (row["ci_low_DNC"], row["ci_high_DNC"]) == (lo, hi)
    assert sum(row["uncertified_by_reason"].values()) == 3

    path = tmp_path / "p.csv"
    other = dict(row, cell="other", frac_DNC=0.5)
    del other["frac_pairs"]
    write_prevalence_csv(path, [row, other], ["d", "lambda"])
    rows = read_prevalence_csv(path)
    assert list(rows[0])[:3] == ["cell", "d", "lambda"] and list(rows[0])[3:3 + len(PREVALENCE_FIELDS) - 1] == list(
        PREVALENCE_FIELDS[1:])
    assert float(rows[0]["dnc_fraction"]) == 18 / 32 and float(rows[0]["frac_pairs"]) == 9 / 32
    assert float(rows[1]["frac_pairs"]) == 0.0  # a label the cell never reached
    assert float(rows[1]["ci_high_pairs"]) == wilson_interval(0, 32)[1]   # 0 of 32, with its interval
    assert json.loads(rows[0]["logit_rank_counts"]) == {"0": 2, "2": 9, "3": 18}


# ----- running, resuming, the command line -------------------------------------------------------
#: A tiny sweep: K=4, n=1, L=2, λ=1e-2, two widths, 8 L-BFGS trajectories per cell in 2 units of 4
#: (DNC and the pairing structure both occur); a cell takes about a second.
TINY = ["K=4", "n=1", "L=2", "trajectories=8", "batch_size=4", "sweep.d=[4, 6]", "sweep.lambda=[0.01]"]


def test_sweep_writes_cells_table_and_effective_config(tmp_path):
    sweep = load_sweep(SMALL, TINY)
    seen = []
    result = run_sweep(sweep, tmp_path, progress=False, on_cell=lambda c, s, st: seen.append((c.name, st)))
    assert seen == [("d=4,lambda=0.01", "ran"), ("d=6,lambda=0.01", "ran")]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert load_sweep(tmp_path / "sweep.json").cells == sweep.cells  # the effective sweep is saved
    assert saved["sweep_config"]["model"]["K"] == 4 and saved["sweep_config"]["sweep"] == {"d": [4, 6], "lambda": [0.01]}
    assert [c["status"] for c in saved["cells"]] == ["ran", "ran"] and saved["executor"]["executor"] == "lambda-batch"
    rows = read_prevalence_csv(tmp_path / "prevalence.csv")
    assert [r["cell"] for r in rows] == ["d=4,lambda=0.01", "d=6,lambda=0.01"]
    for cell, row in zip(sweep.cells, rows):
        cdir = tmp_path / "cells" / cell.name
        assert json.loads((cdir / "config.json").read_text()) == json.loads(json.dumps(cell.config.to_dict()))
        with StudyStore.open(cdir) as store:  # the table agrees with the cell's database
            trajs = store.trajectories()
            labels = {p.id: p.label for p in store.points()}
        dnc = sum(1 for t in trajs if t.point_id is not None and labels[t.point_id] == "DNC")
        unc = sum(1 for t in trajs if t.point_id is None)
        assert (int(row["n_trajectories"]), int(row["dnc_count"]), int(row["uncertified_count"])) == (8, dnc, unc)
        assert (float(row["dnc_ci_low"]), float(row["dnc_ci_high"])) == wilson_interval(dnc, 8)
        assert int(row["d"]) == cell.config.model.d
    assert {k for r in rows for k in r if k.startswith("frac_")} >= {"frac_DNC"}
    assert result["prevalence"][0]["cell"] == rows[0]["cell"]


def test_resume_skips_finished_cells_and_resumes_unfinished(tmp_path):
    sweep = load_sweep(SMALL, TINY)
    first, second = sweep.cells
    # an interrupted run: cell 1 finished, cell 2 stopped after its first unit was committed
    run_cell(first, tmp_path / "cells" / first.name, InProcessExecutor(), False)

    def stop_after_first_unit(event):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_study(second.config, tmp_path / "cells" / second.name, progress=stop_after_first_unit)
    with StudyStore.open(tmp_path / "cells" / second.name) as store:
        assert store.committed_units() == [0] and store.n_trajectories() == 4
    t_resume = time.time()

    seen = []
    run_sweep(sweep, tmp_path, progress=False, on_cell=lambda c, s, st: seen.append((c.name, st)))
    assert seen == [(first.name, "skipped"), (second.name, "ran")]
    with StudyStore.open(tmp_path / "cells" / second.name) as store:
        assert store.committed_units() == [0, 1]
        assert store.completed_indices().tolist() == list(range(8))
        assert [t.unit for t in store.trajectories()] == [0] * 4 + [1] * 4
    with sqlite3.connect(tmp_path / "cells" / second.name / "study.sqlite") as con:
        committed = dict(con.execute("SELECT unit, committed_at FROM units").fetchall())
    assert committed[0] < t_resume < committed[1]  # unit 0 was kept, not recomputed

    with pytest.raises(SpecError, match=r"already holds a different sweep"):
        run_sweep(load_sweep(SMALL, TINY + ["seed=1"]), tmp_path, progress=False)


def test_cli_sweep(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sweep", str(SMALL), "--no-progress", "--out", str(out)] + [a for s in TINY for a in ("--set", s)]
    assert cli_main(args + ["--set", "sweep.d=[4]"]) == 0
    text = capsys.readouterr().out
    assert "[1/1] d=4,lambda=0.01: ran, 8 trajectories" in text and "prevalence.csv" in text
    assert len(read_prevalence_csv(out / "prevalence.csv")) == 1
    assert cli_main(args + ["--set", "sweep.d=[4]"]) == 0  # the same command again: nothing to do
    assert "[1/1] d=4,lambda=0.01: skipped" in capsys.readouterr().out
    assert cli_main(args + ["--set", "d=5"]) == 2
    assert "'d' is a sweep axis" in capsys.readouterr().err
    assert cli_main(args + ["--executor", "dask"]) == 2
    assert "--executor dask needs --scheduler" in capsys.readouterr().err


def test_a_sweep_stopped_after_a_cell_has_that_cells_tables(tmp_path):
    """Stopped in its second cell, a sweep leaves sweep.json and prevalence.csv for the first."""
    sweep = load_sweep(SMALL, TINY)

    def stop_in_second(cell, summary, status):
        if cell.name == sweep.cells[0].name:
            raise KeyboardInterrupt   # right after the first cell's tables were written

    with pytest.raises(KeyboardInterrupt):
        run_sweep(sweep, tmp_path, progress=False, on_cell=stop_in_second)
    rows = read_prevalence_csv(tmp_path / "prevalence.csv")
    assert [r["cell"] for r in rows] == [sweep.cells[0].name]
    saved = json.loads((tmp_path / "sweep.json").read_text())
    assert [c["status"] for c in saved["cells"]] == ["ran", "pending"]


def test_cells_that_share_starts_give_paired_differences(tmp_path):
    """λ cells start from the same points (common random numbers): sweep.json pairs neighbouring
    λ cells start by start; d cells do not share starts and are not paired. The 2×2 counts are
    recomputed here from the two databases with sqlite3."""
    sweep = load_sweep(SMALL, ["K=4", "n=1", "L=2", "trajectories=8", "batch_size=8",
                               "sweep.d=[4, 5]", "sweep.lambda=[0.01, 0.05]"])
    by = {c.name: c for c in sweep.cells}
    assert shares_starts(by["d=4,lambda=0.01"], by["d=4,lambda=0.05"])
    assert not shares_starts(by["d=4,lambda=0.01"], by["d=5,lambda=0.01"])
    result = run_sweep(sweep, tmp_path, progress=False)
    rows = result["paired"]
    assert sorted((r["axis"], r["first"], r["second"]) for r in rows) == [
        ("lambda", "d=4,lambda=0.01", "d=4,lambda=0.05"), ("lambda", "d=5,lambda=0.01", "d=5,lambda=0.05")]
    assert json.loads((tmp_path / "sweep.json").read_text())["paired"] == json.loads(json.dumps(rows))

    def ends(cell):
        q = ("SELECT t.idx, p.label FROM trajectories t LEFT JOIN points p ON p.id = t.point_id "
             "WHERE t.certified = 1")
        with sqlite3.connect(tmp_path / "cells" / cell / "study.sqlite") as con:
            got = dict(con.execute(q).fetchall())
        return [got.get(i) == "DNC" for i in range(8)]

    for r in rows:
        x, y = ends(r["first"]), ends(r["second"])
        tab = (sum(a and b for a, b in zip(x, y)), sum(a and not b for a, b in zip(x, y)),
               sum(b and not a for a, b in zip(x, y)), sum(not a and not b for a, b in zip(x, y)))
        assert (r["both"], r["first_only"], r["second_only"], r["neither"]) == tab
        assert r["difference"] == pytest.approx((sum(x) - sum(y)) / 8, abs=1e-15)
        assert (r["ci_low"], r["ci_high"]) == (paired_difference(*tab)["ci_low"], paired_difference(*tab)["ci_high"])
    # the report draws every cell's accumulation curve and tables the paired rows
    from landscape.study.sweep_result import SweepRecord
    from landscape.viz.sweep_report import render_sweep_report, sweep_figures

    html = render_sweep_report(tmp_path)
    assert 'data-figure-id="fig-accumulation-cells"' in html and "Paired differences of the DNC fraction" in html
    assert html.count("<td class='l'>lambda</td>") == 2
    keys = [k for k, _ in sweep_figures(SweepRecord.from_json(result), result["prevalence"])]
    assert "rank-lambda-0" in keys and "rank-d-0" in keys



def test_lambda_cells_advance_as_one_batch_and_store_what_they_store_alone(tmp_path):
    """The default executor runs the units of cells that differ only in λ as one batch (per-row λ):
    every cell's database then holds, start by start, what the cell run alone stores: the same
    stop reasons, point labels and losses (to round-off), iterations to ±1. Cells of another width are
    not pooled with them."""
    from landscape.study.executors import InProcessExecutor
    from landscape.study.lambda_batch import LambdaBatchExecutor

    overrides = ["K=4", "n=1", "L=2", "trajectories=8", "batch_size=4", "sweep.d=[4, 5]",
                 "sweep.lambda=[0.01, 0.03, 0.05]"]
    sweep = load_sweep(SMALL, overrides)
    joint = LambdaBatchExecutor()
    run_sweep(sweep, tmp_path / "joint", executor=joint, progress=False)
    assert joint.lambda_batches == 4          # 2 widths × 2 units, each pooling the 3 λ cells
    run_sweep(sweep, tmp_path / "alone", executor=InProcessExecutor(), progress=False)

    def stored(root, cell):
        with StudyStore.open(root / "cells" / cell, readonly=True) as store:
            labels = {p.id: p.label for p in store.points()}
            return [(t.idx, t.stop_reason, t.iterations, labels.get(t.point_id), t.loss)
                    for t in store.trajectories()]

    for cell in sweep.cells:
        a, b = stored(tmp_path / "joint", cell.name), stored(tmp_path / "alone", cell.name)
        assert [(r[0], r[1], r[3]) for r in a] == [(r[0], r[1], r[3]) for r in b], cell.name
        assert [r[4] for r in a] == pytest.approx([r[4] for r in b], rel=1e-12, abs=1e-14)
        # a step that meets a tolerance to round-off may be taken once more or less
        assert all(abs(x[2] - y[2]) <= 1 for x, y in zip(a, b))


def test_a_structure_keeps_its_name_across_cells(tmp_path):
    """simplex(8)+pair at d = 20, 50 and 100 (K = 10), with other rotations and another order of
    the classes in every cell, is one label, so the prevalence table gives it one column whatever
    point ids and class orders each cell had."""
    import numpy as np
    from scipy.stats import ortho_group

    from landscape.analysis import theory as T
    from landscape.analysis.structure import analyse_structure
    from landscape.analysis.symmetry import relabel_classes
    from landscape.core.model import ModelSpec

    names = set()
    rows = []
    for k, d in enumerate((20, 50, 100)):
        spec = ModelSpec(K=10, n=1, d=d, L=2, lam=2.0 ** -10)
        Zb = T.block_Zbar(10, [(tuple(range(8)), 7.0), ((8, 9), 4.0)])
        th = T.balanced_point(spec, Zb, rotations=[ortho_group.rvs(d, random_state=k + s) for s in range(2)])
        th = relabel_classes(spec, th, np.random.default_rng(k).permutation(10))
        label = analyse_structure(spec, th).label
        names.add(label)
        rows.append({"cell": f"d={d}", "d": d, "n_trajectories": 4, f"count_{label}": 4, f"frac_{label}": 1.0})
    assert names == {"simplex(8)+pair"}
    write_prevalence_csv(tmp_path / "p.csv", [{**{k: 0 for k in PREVALENCE_FIELDS}, **r} for r in rows], ["d"])
    header = (tmp_path / "p.csv").read_text().splitlines()[0].split(",")
    assert header.count("count_simplex(8)+pair") == 1


def test_a_sweep_written_before_the_table_renames_resumes():
    """data/sweeps/lambda0-width/sweep.json was written when [transition_states] was [connect]: its
    stored configuration, read again, is the preset's (what run_sweep compares before it resumes)."""
    from landscape.study.sweep_config import SweepConfig, load_sweep

    stored = json.loads((Path(__file__).resolve().parents[1] / "data/sweeps/lambda0-width/sweep.json").read_text())
    previous = stored["sweep_config"]
    assert "connect" in previous and "transition_states" not in previous
    current = json.loads(json.dumps(load_sweep(preset="lambda0-width").to_dict()))
    assert previous != current
    assert json.loads(json.dumps(SweepConfig.from_dict(previous).to_dict())) == current
