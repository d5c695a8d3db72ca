"""Inputs that would allocate, hang or dead-end are refused at once, with one clear line.

Every case runs the command line in this process (``landscape.cli.main``; a subprocess only for
the broken pipe) and checks: exit status 2, one line on standard error naming the field, its
allowed range and, for resources, the estimate; no traceback; nothing written (the output folder
does not exist, or holds what it held); little memory (traced) spent. The time the heaviest
refusals take is checked in the slow pass only (``-m slow``), with a bound a loaded machine meets:
a wall-clock bound in the default run fails on a busy machine, not on a bug. The memory budget is
pinned to 8 GiB (``LANDSCAPE_MEMORY_BUDGET``) so the estimates do not depend on this machine's RAM.
"""
import os
import subprocess
import sys
import time
import tracemalloc

import numpy as np
import pytest

from landscape.cli import main
from landscape.core.validate import ResourceError, SpecError, check_int, check_integral, memory_budget, parse_size
from study_fixture import build_study

#: Most traced bytes a refusal may take.
MAX_BYTES = 64 * 2 ** 20
#: Most seconds a refusal may take (slow pass only: at once is milliseconds; what is refused would
#: take minutes or all the memory, so a bound this generous still tells them apart on a loaded machine).
SLOW_MAX_S = 30.0


@pytest.fixture(autouse=True)
def budget(monkeypatch):
    monkeypatch.setenv("LANDSCAPE_MEMORY_BUDGET", "8G")


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """A small stored study (P = 144, five points; closed forms, no run)."""
    return build_study(tmp_path_factory.mktemp("bounds") / "study")


def sets(*overrides):
    return [a for o in overrides for a in ("--set", o)]


def snapshot(folder):
    """Every file under ``folder`` with its size and modification time, except SQLite's -wal and
    -shm files (opening the database, even to read it, may make or remove them)."""
    out = {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            if name.endswith(("-wal", "-shm")):
                continue
            p = os.path.join(root, name)
            st = os.lstat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


def refused(capsys, argv, *needles, out=None, untouched=None, max_s=None):
    """Run ``landscape ARGV``; assert a one-line refusal holding every needle, within MAX_BYTES
    traced memory (and ``max_s`` seconds, where given), with ``out`` not created and ``untouched``
    unchanged."""
    argv = [str(a) for a in argv]
    before = snapshot(untouched) if untouched else None
    tracemalloc.start()
    t = time.perf_counter()
    try:
        code = main(argv)
    finally:
        elapsed = time.perf_counter() - t
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    stdout, err = capsys.readouterr()
    assert code == 2, (code, stdout, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"landscape {argv[0]}: error: "), err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    if max_s is not None:
        assert elapsed < max_s, f"{elapsed:.2f} s"
    assert peak < MAX_BYTES, f"{peak / 2 ** 20:.1f} MiB traced"
    if out is not None:
        assert not os.path.exists(out), os.listdir(out)
    if untouched is not None:
        assert snapshot(untouched) == before
    return lines[0]


# ----- 1. resources bounded up front ------------------------------------------------------------------
@pytest.mark.parametrize("override, needles", [
    ("trajectories=1000000000", ("trajectories=1000000000 is refused", "TiB of memory", "memory budget of 8 GiB",
                                 "LANDSCAPE_MEMORY_BUDGET=8G", "trajectories must be <= 5,")),
    ("trajectories=1e9", ("trajectories=1000000000 is refused",)),   # an integral float is the same integer
    ("d=5000", ("the model d=5000, L=3", "P=50,060,000", "estimated to need", "within it d <= ")),
    ("L=100000", ("the model d=8, L=100000", "P=6,400,032", "estimated to need", "L <= ")),
    ("L=1000000000", ("L=1000000000 is invalid: must be an integer in [1, 1000000]",)),
    ("transition_states.images=1e7", ("transition_states.images=10000000 is refused", "nudged elastic band of 10,000,002 images",
                            "transition_states.images must be in [3, ")),
    ("batch_size=100000000", ("batch_size=100000000 is refused", "batch_size must be <= ")),
    ("analysis.dense_limit=1000000000", ("analysis.dense_limit=1000000000 is refused",)),
])
def test_a_study_too_large_for_memory_is_refused_with_the_estimate(tmp_path, capsys, override, needles):
    extra = ["d=150"] if override.startswith("analysis.dense_limit") else []
    refused(capsys, ["run", "--out", tmp_path / "out", "--no-progress", *sets(override, *extra)], *needles,
            out=tmp_path / "out")


@pytest.mark.slow   # a wall-clock bound: the slow pass only (module docstring)
@pytest.mark.parametrize("argv, needle", [
    (["run", "--no-progress", "--set", "trajectories=1e9"], "trajectories=1000000000 is refused"),
    (["run", "--no-progress", "--set", "d=5000"], "the model d=5000, L=3"),
    (["run", "--no-progress", "--set", "L=100000"], "the model d=8, L=100000"),
    (["run", "--no-progress", "--set", "transition_states.images=1e7"], "transition_states.images=10000000 is refused"),
    (["theory", "--K", "100000"], "K=100000 is invalid here"),
    (["continue", "STUDY", "--param", "d", "--to", "1e12"], "--to=1000000000000 is refused"),
])
def test_the_heaviest_refusals_take_seconds_at_most(study, tmp_path, capsys, argv, needle):
    argv = [study if a == "STUDY" else a for a in argv]
    if argv[0] == "run":
        argv[1:1] = ["--out", tmp_path / "out"]
    refused(capsys, argv, needle, max_s=SLOW_MAX_S)


def test_a_stored_study_too_large_is_refused_again_on_resume(tmp_path, capsys):
    """transition_states.images = 1e7 in a stored study (written before the bound): refused by `run --resume` before
    any trajectory runs, and the database is not touched."""
    from landscape.io.store import StudyStore
    from landscape.study.config import StudyConfig, apply_overrides, default_config_dict

    cfg = StudyConfig.from_dict(apply_overrides(default_config_dict(), ["transition_states.images=10000000"]))
    out = tmp_path / "old"
    out.mkdir()
    StudyStore.create(out / "study.sqlite", cfg.to_dict(), cfg.model).close()
    before = (out / "study.sqlite").read_bytes()
    refused(capsys, ["run", "--resume", out, "--no-progress"], "transition_states.images=10000000 is refused",
            "estimated to need")
    assert (out / "study.sqlite").read_bytes() == before     # (reading it may leave SQLite's -wal and -shm)
    assert not {"config.json", "summary.json", "report.html"} & set(os.listdir(out))


def test_the_memory_budget_is_one_documented_knob(monkeypatch):
    assert memory_budget() == (8 * 2 ** 30, "LANDSCAPE_MEMORY_BUDGET=8G")
    assert parse_size("512M") == 2 ** 29 and parse_size("1.5e9") == 1_500_000_000 and parse_size("2TiB") == 2 ** 41
    monkeypatch.setenv("LANDSCAPE_MEMORY_BUDGET", "lots")
    with pytest.raises(SpecError, match="LANDSCAPE_MEMORY_BUDGET='lots' is invalid: must be a size in bytes"):
        memory_budget()
    monkeypatch.delenv("LANDSCAPE_MEMORY_BUDGET")
    assert memory_budget()[0] > 0


def test_spectrum_refuses_a_symmetry_space_over_the_budget_before_writing(study, capsys, monkeypatch):
    """The dense gauge-tangent matrix (rows × P) and its SVD are estimated from the interfaces' ranks
    before anything of it is built (d = 300 asked for a 2682 × 183,600 matrix; here a budget of 64 KiB
    stands in for it) and the spectrum command refuses before it writes spectra/."""
    monkeypatch.setenv("LANDSCAPE_MEMORY_BUDGET", "64K")
    refused(capsys, ["spectrum", study, "0", "--budget", "30"], "the symmetry space of this point",
            "gauge-tangent matrix and SVD", "estimated to need", "memory budget of 64 KiB", untouched=study)
    assert not (study / "spectra").exists()


def test_the_symmetry_analysis_itself_is_bounded(study, monkeypatch):
    """The run's own analysis takes the same path (analysis.symmetry.symmetry_tangents): bounded there."""
    from landscape.analysis.symmetry import symmetry_rows, symmetry_space
    from landscape.io.store import StudyStore
    from landscape.study.config import StudyConfig

    with StudyStore.open(study / "study.sqlite", readonly=True) as store:
        spec = StudyConfig.from_dict(store.config).model
        theta = store.point(0).params
    rows = symmetry_rows(spec, theta)
    assert rows > 0 and symmetry_space(spec, theta).dimension <= rows
    monkeypatch.setenv("LANDSCAPE_MEMORY_BUDGET", str(4 * 8 * rows * spec.P - 1))
    with pytest.raises(ResourceError, match=rf"its dense {rows} × {spec.P} gauge-tangent matrix"):
        symmetry_space(spec, theta)


def test_a_width_continuation_is_bounded_before_its_first_width(study, capsys):
    """--to 1e12 used to sum the time estimate over 10¹² widths: the sum stops once past --budget, or
    at the widest width within the memory budget, which refuses the rest."""
    refused(capsys, ["continue", study, "--param", "d", "--to", "1e12"], "--to=1000000000000 is refused",
            "s or more", "over --budget=600 s", untouched=study)
    refused(capsys, ["continue", study, "--param", "d", "--to", "1e12", "--budget", "1e300"],
            "--to=1000000000000 is refused", "the symmetry analysis at width 1000000000000", "estimated to need",
            "--to must be <= ", untouched=study)


@pytest.mark.parametrize("argv, needles", [
    (["--K", "100000"], ("K=100000 is invalid here", "K must be in [2, 41]")),
    (["--K", str(2 ** 40)], (f"K={2 ** 40} is invalid here", "K must be in [2, 41]")),
    (["--L", "1000000000"], ("L=1000000000 is invalid: must be an integer in [1, 1000000]",)),
])
def test_theory_refuses_a_huge_model_at_once(capsys, argv, needles):
    refused(capsys, ["theory", *argv], *needles)


@pytest.mark.parametrize("argv, needles", [
    (["--executor", "dask-local", "--workers", "1000000"], ("--workers=1000000 is invalid: must be an integer in [1, ",
                                                            "per core")),
    (["--executor", "dask-local", "--torch-threads", "0"],
     ("--torch-threads=0 is invalid: must be an integer in [1, 1024]", "leave the option out for the default")),
    (["--executor", "dask", "--scheduler", "garbage"], ("--scheduler='garbage' is invalid", "SCHEME://HOST:PORT")),
    (["--executor", "dask", "--scheduler", "tcp://host:99999"], ("--scheduler='tcp://host:99999' is invalid",)),
])
def test_sweep_executor_options_are_checked_first(tmp_path, capsys, argv, needles):
    refused(capsys, ["sweep", "--preset", "paper-width", "--out", tmp_path / "out", *argv], *needles,
            out=tmp_path / "out")


def test_net_labels_are_checked_against_the_samples_before_counting(tmp_path, capsys):
    X = np.random.default_rng(0).standard_normal((100, 5))
    y = np.arange(100) % 4
    y[3] = 1_500_000_000     # a bincount of it: 12 GB
    np.savez(tmp_path / "big-label.npz", X=X, y=y)
    dataset = f'net.dataset="{tmp_path / "big-label.npz"}"'
    refused(capsys, ["net", "--out", tmp_path / "out", "--no-progress", *sets(dataset)], "dataset y is invalid",
            "in [0, 99] for 100 samples", "found labels 0..1500000000", out=tmp_path / "out")


def test_a_config_that_is_not_a_regular_small_file_is_refused(tmp_path, capsys):
    refused(capsys, ["run", "--config", "/dev/zero", "--out", tmp_path / "out"], "config='/dev/zero' is invalid",
            "not a regular file", out=tmp_path / "out")
    big = tmp_path / "big.toml"
    big.write_text("# " + "x" * (2 ** 20) + "\n")
    refused(capsys, ["run", "--config", big, "--out", tmp_path / "out"], "is invalid: larger than 1 MiB",
            "at most 1,048,576 bytes", out=tmp_path / "out")
    refused(capsys, ["theory", "--config", "/dev/zero"], "not a regular file")
    refused(capsys, ["sweep", "/dev/zero", "--out", tmp_path / "out"], "not a regular file", out=tmp_path / "out")


# ----- 2. dead ends refused at load ------------------------------------------------------------------
def test_saddle_rows_overlapping_the_check_rows_are_refused_at_load(tmp_path, capsys):
    f = tmp_path / "overlap.toml"
    f.write_text("trajectories = 8\n[saddles]\nstarts = 4\nindex_offset = 1999999998\n"
                 "[cross_check]\nstarts = 2\n[[cross_check.stages]]\nengine = \"gd\"\nlr = 0.5\n")
    refused(capsys, ["run", "--config", f, "--out", tmp_path / "out"], "saddles.index_offset=1999999998 is invalid",
            "overlap the [cross_check] rows 2000000000..2000000001", "must be <= 1999999996 or >= 2000000002",
            out=tmp_path / "out")


@pytest.mark.parametrize("overrides, needles", [
    (("saddles.index_offset=9223372036854775808", "saddles.starts=2"),
     ("saddles.index_offset=9223372036854775808 is invalid: must be an integer in [0, 9223372036854775806]",)),
    (("seed=9223372036854775808",),
     ("seed=9223372036854775808 is invalid: must be an integer in [0, 9223372036854775807]",)),
    (("trajectories=2000000001",), ("trajectories=2000000001 is invalid: must be an integer in [1, 2000000000]",)),
    (("analysis.lanczos_seed=1e30",), ("analysis.lanczos_seed=1e+30 is invalid: must be an integer in [0, ",)),
])
def test_indices_and_seeds_stay_signed_64_bit(tmp_path, capsys, overrides, needles):
    refused(capsys, ["run", "--out", tmp_path / "out", *sets(*overrides)], *needles, out=tmp_path / "out")


@pytest.mark.parametrize("dataset, needle", [
    ("missing.npz", "missing.npz' is invalid: no such file"),
    ("small.npz", "n_train + n_test = 100 is invalid: the smallest class of"),
])
def test_a_bad_net_dataset_leaves_no_folder_behind(tmp_path, capsys, dataset, needle):
    """Checked before config.json is written: the corrected command is not refused as 'already holds a run'."""
    np.savez(tmp_path / "small.npz", X=np.random.default_rng(0).standard_normal((20, 3)), y=np.arange(20) % 4)
    path = tmp_path / dataset
    refused(capsys, ["net", "--out", tmp_path / "out", "--no-progress", *sets(f'net.dataset="{path}"')],
            needle, out=tmp_path / "out")


@pytest.mark.parametrize("points", [",", "", " , ", "1,x", "-1"])
def test_continue_with_no_points_is_an_input_error(study, capsys, points):
    refused(capsys, ["continue", study, "--param", "lambda", "--to", "0.002", "--points", points],
            f"--points={points!r} is invalid: must be one or more point ids", untouched=study)


# ----- 3. messages -----------------------------------------------------------------------------------
def test_piping_into_a_reader_that_stops_early_exits_quietly():
    p = subprocess.Popen([sys.executable, "-m", "landscape", "presets"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()     # the reader is gone before the first line (`| head -0`)
    err = p.stderr.read()
    assert p.wait(timeout=30) == 0 and err == b""


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="needs Linux /proc")
def test_an_output_folder_that_cannot_be_created_is_named_with_the_reason(capsys):
    refused(capsys, ["run", "--out", "/proc/x", "--no-progress"], "--out /proc/x cannot be created",
            "/proc does not accept new folders", "No such file or directory")


def test_resuming_a_sweep_folder_with_run_points_to_sweep(tmp_path, capsys):
    (tmp_path / "sweep.json").write_text("{}")
    refused(capsys, ["run", "--resume", tmp_path, "--no-progress"], "is a sweep folder",
            f"`landscape sweep {tmp_path / 'sweep.json'} --out {tmp_path}`", untouched=tmp_path)


def test_a_huge_sweep_is_refused_before_it_is_expanded(tmp_path, capsys):
    f = tmp_path / "huge.toml"
    f.write_text(f"[sweep]\nseed = {list(range(100))}\n\"stages.0.max_iter\" = {list(range(1, 2001))}\n")
    refused(capsys, ["sweep", f, "--out", tmp_path / "out"], "its grid has 200,000 cells",
            "at most 10,000 cells", out=tmp_path / "out")


def test_a_large_sweep_says_so_before_expanding(tmp_path, capsys):
    f = tmp_path / "large.toml"
    f.write_text("[sweep]\nseed = " + str(list(range(1000))) + "\n")
    (tmp_path / "file").write_text("not a folder")
    code = main(["sweep", str(f), "--out", str(tmp_path / "file")])
    _, err = capsys.readouterr()
    assert code == 2 and err.splitlines()[0] == "sweep: expanding and validating 1,000 cells…"


def test_integral_floats_are_integers_everywhere():
    from landscape.study.config import load_study

    cfg = load_study(None, ["trajectories=1e4", "stages.0.max_iter=1e4", "saddles.starts=2.0", "d=9.0"])
    assert cfg.trajectories == 10_000 and cfg.stages[0].max_iter == 10_000 and cfg.saddles.starts == 2
    assert type(cfg.trajectories) is int and type(cfg.model.d) is int and cfg.model.d == 9
    msgs = []
    for o in ("batch_size=2.5", "stages.0.max_iter=2.5", "trajectories=2.5"):
        with pytest.raises(SpecError) as e:
            load_study(None, [o])
        msgs.append(str(e.value).split(" is invalid: ")[1])
    assert msgs[0] == msgs[1] == "must be an integer >= 1"
    assert msgs[2].startswith("must be an integer in [1, 2000000000]")
    assert check_int("x", 3.0, 1) == check_integral("x", 3.0) == 3
    for bad in (True, 2.5, float("inf"), float("nan"), "3"):
        with pytest.raises(SpecError, match="must be an integer >= 1"):
            check_int("x", bad, 1)
