"""``landscape net``: loader, batched networks, the hand-off to the deep UFM, the command.

The UFM loss of a hand-off point is checked against MODEL.md §2 written out here in numpy (not the
package's DeepUFM), and batched seeds against the same seeds trained alone.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from oracles import dnc_loss_from_model_md, numpy_factors, numpy_ufm_loss
from landscape.cli import main as cli_main
from landscape.core.validate import SpecError
from landscape.net.config import NetConfig, load_net
from landscape.net.data import load_dataset
from landscape.net.handoff import ufm_points, ufm_spec
from landscape.net.model import BatchedNet
from landscape.net.run import build_net
from landscape.net.train import train


def tiny_npz(path, K=3, per_class=10, F=6, images=False, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(K, F)) * 2
    y = np.repeat(np.arange(K), per_class)
    rng.shuffle(y)
    X = centres[y] + rng.normal(size=(y.size, F))
    if images:
        X = X.reshape(-1, 2, F // 2)
    np.savez(path, X=X, y=y)
    return str(path)


def tiny_cfg(data, **over) -> NetConfig:
    sets = [f"net.dataset={json.dumps(data)}", "net.n_train=4", "net.n_test=3", "net.d=5", "net.L=2",
            "net.hidden=[7]", "seeds=3", "dtype=\"float64\"", "train.max_iter=60", "train.check_every=10"]
    sets += [f"{k}={v}" for k, v in over.items()]
    return load_net(None, sets)


# ----- the loader ----------------------------------------------------------------------------------
def test_loader_balances_and_orders_classes(tmp_path):
    ds = load_dataset(tiny_npz(tmp_path / "d.npz"), 4, 3, seed=1)
    assert ds.K == 3 and ds.X_train.shape == (12, 6) and ds.X_test.shape == (9, 6)
    assert ds.y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4   # class-ordered: sample fastest
    assert np.allclose(ds.X_train.mean(axis=0), 0) and np.allclose(ds.X_train.std(axis=0), 1)


def test_digits_ship_offline():
    ds = load_dataset("digits", 50, 50)
    assert (ds.K, ds.n_features, ds.image_shape) == (10, 64, (8, 8))
    assert ds.X_train.shape == (500, 64) and ds.X_test.shape == (500, 64)


@pytest.mark.parametrize("arrays, message", [
    ({"X": np.zeros((4, 2))}, "must hold arrays 'X' and 'y'"),
    ({"X": np.zeros((4, 2)), "y": np.zeros(3, dtype=int)}, "one label per sample"),
    ({"X": np.zeros((4, 2)), "y": np.array([0.5, 1, 0, 1])}, "integer class labels"),
    ({"X": np.full((4, 2), np.nan), "y": np.array([0, 1, 0, 1])}, "finite real numbers"),
    ({"X": np.zeros(4), "y": np.array([0, 1, 0, 1])}, "must be (samples, features)"),
    ({"X": np.zeros((4, 2)), "y": np.array([0, 1, 0, 1])}, "smallest class"),
])
def test_loader_refuses_bad_arrays(tmp_path, arrays, message):
    p = tmp_path / "bad.npz"
    np.savez(p, **arrays)
    with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_dataset(str(p), 4, 1)
    with pytest.raises(SpecError, match="no such file"):
        load_dataset(str(tmp_path / "none.npz"), 1)
    with pytest.raises(SpecError, match="must be one of"):
        load_dataset("mnist", 1)


# ----- the configuration ---------------------------------------------------------------------------
def test_config_errors_name_the_field():
    with pytest.raises(SpecError, match=r"net.backbone='vgg' is invalid"):
        load_net(None, ["net.backbone=vgg"])
    with pytest.raises(SpecError, match=r"train.lr=-1 is invalid"):
        load_net(None, ["train.lr=-1"])
    with pytest.raises(SpecError, match=r"regularisation.lambda is invalid with kind='ufm'"):
        load_net(None, ["regularisation.lambda=0.1"])
    with pytest.raises(SpecError, match="not a known field"):
        load_net(None, ["widht=3"])
    with pytest.raises(SpecError, match="not a net preset"):
        load_net(preset="default")
    for name in ("digits-linear", "digits-relu", "digits-standard"):
        cfg = load_net(preset=name)
        assert cfg.seeds == 16 and cfg.d == 64
    assert load_net(preset="digits-relu").L == 4 and load_net(preset="digits-standard").reg.kind == "standard"


def test_study_commands_refuse_net_presets(capsys):
    assert cli_main(["run", "--preset", "digits-linear", "--out", "/nonexistent/x"]) == 2
    assert "landscape net --preset digits-linear" in capsys.readouterr().err


# ----- the network and the hand-off ----------------------------------------------------------------
@pytest.mark.parametrize("backbone, activation", [("mlp", "linear"), ("mlp", "relu"), ("cnn", "linear")])
def test_head_is_a_ufm_point_with_the_network_loss(tmp_path, backbone, activation):
    cfg = tiny_cfg(tiny_npz(tmp_path / "d.npz", images=backbone == "cnn"), **{
        "net.backbone": json.dumps(backbone), "net.activation": json.dumps(activation),
        "net.hidden": "[2, 3]" if backbone == "cnn" else "[7]"})
    ds = load_dataset(cfg.dataset, cfg.n_train, cfg.n_test)
    net = build_net(cfg, ds)
    X, y = torch.tensor(ds.X_train), torch.tensor(ds.y_train)
    train(net, X, y, cfg.reg.to_dict(), lr=0.05, max_iter=20, grad_tol=1e-12, loss_rtol=0, window=10, check_every=5)
    loss = net.objective(X, y, cfg.reg.to_dict())[0].detach().numpy()
    theta = ufm_points(net, X).numpy()
    spec = ufm_spec(cfg, ds.K, ds.n_train)
    assert theta.shape == (3, spec.P)
    for s in range(3):
        ref = numpy_ufm_loss(theta[s], ds.K, ds.n_train, cfg.d, cfg.L, cfg.reg.lambda_H, cfg.reg.lambda_W,
                              relu=activation == "relu")
        assert abs(loss[s] - ref) <= 1e-12 * max(1.0, abs(ref))


@pytest.mark.parametrize("backbone", ["mlp", "cnn"])
def test_batched_seeds_equal_seeds_alone(tmp_path, backbone):
    cfg = tiny_cfg(tiny_npz(tmp_path / "d.npz", images=backbone == "cnn"),
                   **{"net.backbone": json.dumps(backbone), "net.hidden": "[2]" if backbone == "cnn" else "[7]"})
    ds = load_dataset(cfg.dataset, cfg.n_train, cfg.n_test)
    X, y = torch.tensor(ds.X_train), torch.tensor(ds.y_train)
    kw = dict(n_features=ds.n_features, K=ds.K, d=cfg.d, L=cfg.L, activation="linear", backbone=backbone,
              hidden=cfg.hidden, image_shape=ds.image_shape)
    both = BatchedNet(seeds=[3, 8], **kw)
    rb = train(both, X, y, cfg.reg.to_dict(), lr=0.05, max_iter=40, grad_tol=1e-12, loss_rtol=0, window=10,
               check_every=5)
    for i, s in enumerate([3, 8]):
        alone = BatchedNet(seeds=[s], **kw)
        ra = train(alone, X, y, cfg.reg.to_dict(), lr=0.05, max_iter=40, grad_tol=1e-12, loss_rtol=0, window=10,
                   check_every=5)
        assert ra.stop_reason[0] == rb.stop_reason[i] == "max_iter"
        for k, v in alone.params.items():
            assert torch.allclose(v[0], both.params[k][i], rtol=0, atol=1e-12), k


def test_stop_rules_are_per_seed(tmp_path):
    cfg = tiny_cfg(tiny_npz(tmp_path / "d.npz"))
    ds = load_dataset(cfg.dataset, cfg.n_train, cfg.n_test)
    X, y = torch.tensor(ds.X_train), torch.tensor(ds.y_train)
    net = build_net(cfg, ds)
    r = train(net, X, y, cfg.reg.to_dict(), lr=0.05, max_iter=30, grad_tol=1e-12, loss_rtol=0, window=10,
              check_every=10)
    assert r.stop_reason == ["max_iter"] * 3 and r.iterations.tolist() == [30] * 3
    # a huge learning rate diverges, and says so
    net = build_net(cfg, ds)
    r = train(net, X, y, cfg.reg.to_dict(), lr=1e6, max_iter=50, grad_tol=1e-12, loss_rtol=0, window=10, check_every=5)
    assert set(r.stop_reason) == {"diverged"}
    # a generous loss plateau rule stops early
    net = build_net(cfg, ds)
    r = train(net, X, y, cfg.reg.to_dict(), lr=1e-6, max_iter=1000, grad_tol=1e-12, loss_rtol=1e-2, window=10,
              check_every=10)
    assert set(r.stop_reason) == {"converged_loss"} and r.iterations.max() < 1000


# ----- the command ---------------------------------------------------------------------------------
def test_net_command_end_to_end_and_resume(tmp_path, capsys):
    data = tiny_npz(tmp_path / "d.npz")
    out = tmp_path / "run"
    args = ["net", "--out", str(out), "--no-progress", "--set", f"net.dataset={json.dumps(data)}",
            "--set", "net.n_train=4", "--set", "net.n_test=3", "--set", "net.d=4", "--set", "net.L=2",
            "--set", "net.hidden=[6]", "--set", "seeds=3", "--set", "train.max_iter=200",
            "--set", "train.check_every=20", "--set", "regularisation.lambda_H=1e-3",
            "--set", "regularisation.lambda_W=1e-3"]
    assert cli_main(args) == 0
    assert "UFM labels" in capsys.readouterr().out
    s = json.loads((out / "summary.json").read_text())
    assert len(s["seeds"]) == 3 and s["handoff_loss_gap"]["max_abs"] <= 1e-12
    lab = s["labels"]
    assert lab["n"] + lab["uncertified"] == 3
    assert sum(v["count"] for v in lab["fractions"].values()) == lab["n"]
    for seed in s["seeds"]:
        W = [lay for lay in seed["layers"] if lay["name"].startswith("W")]
        assert [lay["name"] for lay in W] == ["W1", "W2"]
        assert all(lay["above_atol"] <= len(lay["singular_values"]) for lay in W)
        assert seed["ufm_certified"] == (seed["ufm_grad_norm"] <= 1e-10)
    # certified ends deduplicated modulo symmetry: seeds at one loss (to 1e-10) share one point
    assert sum(p["n_seeds"] for p in s["ufm_points"]) == 3
    cert = [x for x in s["seeds"] if x["ufm_certified"]]
    for a in cert:
        for b in cert:
            if abs(a["ufm_loss"] - b["ufm_loss"]) < 1e-10 and a["ufm_label"] == b["ufm_label"]:
                assert a["ufm_point_id"] == b["ufm_point_id"]
    html = (out / "report.html").read_text()
    for fid in ("net-singular-values", "net-loss", "net-ufm-labels"):
        assert f'data-figure-id="fig-{fid}"' in html
    from landscape.io.store import StudyStore
    with StudyStore.open(out / "study.sqlite", readonly=True) as st:
        trajs = st.trajectories()
        assert len(trajs) == 3 and all(t.engine["kind"] == "net" for t in trajs)
    # resume: training kept (not rerun), the summary rebuilt the same
    mtime = (out / "train.npz").stat().st_mtime_ns
    (out / "summary.json").unlink()
    assert cli_main(["net", "--resume", str(out), "--no-progress"]) == 0
    assert (out / "train.npz").stat().st_mtime_ns == mtime
    s2 = json.loads((out / "summary.json").read_text())
    assert s2["labels"] == s["labels"] and s2["seeds"] == s["seeds"]
    # an existing run is never overwritten
    assert cli_main(args) == 2
    assert "already holds" in capsys.readouterr().err


def test_presets_list_the_net_command(capsys):
    assert cli_main(["presets"]) == 0
    out = capsys.readouterr().out
    for name in ("digits-linear", "digits-relu", "digits-standard"):
        assert f"landscape net --preset {name}" in out
    assert "landscape sweep --preset paper-width" in out and "landscape run --preset default" in out


# ----- the committed results (data/net) --------------------------------------------------------------
DATA_NET = __import__("pathlib").Path(__file__).resolve().parents[1] / "data" / "net"


@pytest.mark.parametrize("name", sorted(p.name for p in DATA_NET.iterdir() if (p / "summary.json").is_file())
                         if DATA_NET.is_dir() else [])
def test_committed_net_results_hold_against_the_closed_forms(name):
    s = json.loads((DATA_NET / name / "summary.json").read_text())
    spec = s["ufm"]["spec"]
    K, n, L = spec["K"], spec["n"], spec["L"]
    lam_H, lam_W = s["ufm"]["lambda_H"], s["ufm"]["lambda_W"]
    assert len(s["seeds"]) == s["config"]["seeds"] == 16
    assert sum(p["n_seeds"] for p in s["ufm_points"]) == 16
    lab = s["labels"]
    assert sum(v["count"] for v in lab["fractions"].values()) == lab["n"] == 16 - lab["uncertified"]
    if s["dynamics"]["regularisation"]["kind"] == "ufm":
        assert s["handoff_loss_gap"]["max_abs"] <= 1e-12
    if spec["activation"] != "linear":
        assert s["theory"] is None
        return
    lam_eff = (lam_W ** L * lam_H) ** (1 / (L + 1))            # MODEL.md §4: the balanced penalty's λ
    assert abs(s["theory"]["lambda_eff"] - lam_eff) <= 1e-15
    dnc = dnc_loss_from_model_md(K, n, L, lam_eff)
    assert abs(s["theory"]["dnc_loss"] - dnc) <= 1e-10
    for p in s["ufm_points"]:
        if p["theory"] and p["theory"].get("matched"):
            assert abs(p["loss"] - p["theory"]["loss"]) <= 1e-10
    if s["dynamics"]["regularisation"]["kind"] == "ufm":
        # the paper's observation: the trained network's loss is below the DNC bound
        assert all(x["loss"] < dnc for x in s["seeds"])


def test_committed_net_report_renders_in_chromium(tmp_path):
    from browser import CHROMIUM, rendered

    if CHROMIUM is None:
        pytest.skip("no chromium on PATH (CI installs Debian's chromium in .ci/run)")
    if not (DATA_NET / "digits-linear").is_dir():
        pytest.skip("data/net/digits-linear is not committed")
    from landscape.viz.net_report import write_net_report

    folder = tmp_path / "digits-linear"
    folder.mkdir()
    (folder / "summary.json").write_text((DATA_NET / "digits-linear" / "summary.json").read_text())
    svgs, errors = rendered(write_net_report(folder), tmp_path / "profile")
    assert errors == ""
    assert list(svgs) == ["fig-net-singular-values", "fig-net-loss", "fig-net-ufm-labels"]
    assert all(n > 0 for n in svgs.values()), svgs


def test_study_commands_on_a_net_folder_say_what_it_is(tmp_path, capsys):
    if not (DATA_NET / "digits-linear").is_dir():
        pytest.skip("data/net/digits-linear is not committed")
    import shutil

    folder = tmp_path / "n"
    shutil.copytree(DATA_NET / "digits-linear", folder)
    (folder / "report.html").unlink()
    assert cli_main(["inspect", str(folder)]) == 2
    assert "holds a `landscape net` run" in capsys.readouterr().err
    assert cli_main(["report", str(folder)]) == 0
    assert 'data-figure-id="fig-net-ufm-labels"' in (folder / "report.html").read_text()


def test_training_resumed_from_a_checkpoint_ends_where_the_uninterrupted_one_does(tmp_path):
    cfg = tiny_cfg(tiny_npz(tmp_path / "d.npz"))
    ds = load_dataset(cfg.dataset, cfg.n_train, cfg.n_test)
    X, y = torch.tensor(ds.X_train), torch.tensor(ds.y_train)
    kw = dict(lr=0.05, max_iter=60, grad_tol=1e-12, loss_rtol=0, window=10, check_every=10)
    whole = build_net(cfg, ds)
    r_whole = train(whole, X, y, cfg.reg.to_dict(), **kw)
    saved = []

    class Stop(Exception):
        pass

    def keep(state):
        saved.append(({k: v.detach().clone() for k, v in first.params.items()}, dict(state)))
        if state["iteration"] == 30:
            raise Stop   # interrupted right after the checkpoint at step 30

    first = build_net(cfg, ds)
    with pytest.raises(Stop):
        train(first, X, y, cfg.reg.to_dict(), **kw, on_checkpoint=keep, checkpoint_every_s=0.0)
    params, state = saved[-1]
    again = build_net(cfg, ds)
    with torch.no_grad():
        for k, v in again.params.items():
            v.copy_(params[k])
    r = train(again, X, y, cfg.reg.to_dict(), **kw, resume=state)
    assert r.stop_reason == r_whole.stop_reason and r.iterations.tolist() == r_whole.iterations.tolist()
    assert [h[0] for h in r.history] == [h[0] for h in r_whole.history]
    for k in whole.params:
        assert torch.equal(again.params[k], whole.params[k]), k


def test_relu_kinks_count_exact_zero_preactivations():
    """Integer H₁ and W₁: H₂ = W₁H₁ is exact, so its zeros are exactly the entries within 1e-6·max|H₂|
    of 0 (every other entry is an integer ≥ 1 in size); counted by hand in numpy."""
    from landscape.core.model import ModelSpec
    from landscape.net.measure import relu_kinks

    spec = ModelSpec(K=2, n=3, d=4, L=3, activation="relu", loss="ce", lam=1e-3, dtype="float64")
    rng = np.random.default_rng(3)
    H1 = rng.integers(-2, 3, size=(4, 6)).astype(float)
    W1 = rng.integers(-2, 3, size=(4, 4)).astype(float)
    W2 = rng.integers(-2, 3, size=(4, 4)).astype(float)
    W3 = rng.integers(-2, 3, size=(2, 4)).astype(float)
    theta = np.concatenate([H1.ravel(), W1.ravel(), W2.ravel(), W3.ravel()])
    H2 = W1 @ H1
    H3 = W2 @ np.maximum(H2, 0)
    got = relu_kinks(spec, theta)
    assert [g["layer"] for g in got] == ["H2", "H3"]
    for g, H in zip(got, (H2, H3)):
        assert g["size"] == H.size
        assert g["within"]["1e-06"] == int(np.sum(H == 0)) > 0
        assert g["smooth_expectation"]["1e-06"] == pytest.approx(H.size * 1e-6)


@pytest.mark.parametrize("name", sorted(p.name for p in DATA_NET.iterdir() if (p / "study.sqlite").is_file())
                         if DATA_NET.is_dir() else [])
def test_committed_ufm_ends_are_balanced_critical_points_by_direct_analysis(name):
    """Read θ of every certified UFM end straight from study.sqlite (sqlite3 + numpy, no landscape
    code) and check it against MODEL.md: its loss written out in numpy equals the stored loss, and
    for the linear head the critical-point identities of §4 hold to ~‖∇L‖: balance
    λ_{l+1}W_{l+1}ᵀW_{l+1} = λ_l W_lW_lᵀ (λ_H for H₁: λ_W W₁ᵀW₁ = λ_H H₁H₁ᵀ) and 1ᵀW_L = 0."""
    import sqlite3

    s = json.loads((DATA_NET / name / "summary.json").read_text())
    spec = s["ufm"]["spec"]
    K, n, d, L = spec["K"], spec["n"], spec["d"], spec["L"]
    lam_H, lam_W = s["ufm"]["lambda_H"], s["ufm"]["lambda_W"]
    relu = spec["activation"] == "relu"
    certified = {x["ufm_point_id"] for x in s["seeds"] if x["ufm_certified"]}
    con = sqlite3.connect(f"file:{DATA_NET / name / 'study.sqlite'}?mode=ro", uri=True)
    rows = con.execute("SELECT id, loss, grad_norm, params, params_dtype FROM points").fetchall()
    con.close()
    assert {r[0] for r in rows} >= certified
    for pid, loss, gnorm, blob, dt in rows:
        theta = np.frombuffer(blob, dtype=np.dtype(dt))
        assert abs(numpy_ufm_loss(theta, K, n, d, L, lam_H, lam_W, relu=relu) - loss) <= 1e-12
        if pid not in certified or relu:
            continue
        assert gnorm <= 1e-10
        F = numpy_factors(theta, K, n, d, L)
        lams = [lam_H] + [lam_W] * L
        for l in range(L):
            lhs = lams[l + 1] * F[l + 1].T @ F[l + 1]
            rhs = lams[l] * F[l] @ F[l].T
            assert np.abs(lhs - rhs).max() <= 1e-8 * max(1.0, np.abs(lhs).max()), (pid, l)
        assert np.abs(F[-1].sum(axis=0)).max() <= 1e-8


@pytest.mark.parametrize("damage", ["wrong shape", "missing member", "text dtype", "seed count", "not a zip"])
def test_a_damaged_train_npz_is_a_one_line_error(tmp_path, damage):
    """train.npz is untrusted input: a parameter of the wrong shape, a missing one, a text array,
    per-seed arrays of the wrong length or a file that is no .npz are refused naming the file
    and the member, before anything is copied into the network."""
    import io as _io

    from landscape.core.validate import SpecError
    from landscape.net.run import _read_params_npz, _write_params_npz

    net = BatchedNet(seeds=[1, 2], n_features=6, K=3, d=4, L=2, activation="linear", backbone="mlp", hidden=[5],
                     image_shape=None)
    path = tmp_path / "train.npz"
    _write_params_npz(path, net, {"loss": np.zeros(2), "iterations": np.zeros(2, dtype=np.int64)})
    before = {k: v.detach().clone() for k, v in net.params.items()}
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    name = next(k for k in arrays if k.startswith("param/"))
    if damage == "wrong shape":
        arrays[name] = arrays[name][..., :1]
    elif damage == "missing member":
        del arrays[name]
    elif damage == "text dtype":
        arrays[name] = np.full(arrays[name].shape, "x")
    elif damage == "seed count":
        arrays["loss"] = np.zeros(5)
    buf = _io.BytesIO()
    np.savez(buf, **arrays)
    path.write_bytes(b"not a zip" if damage == "not a zip" else buf.getvalue())
    with pytest.raises(SpecError, match=str(path).replace("\\", "\\\\")) as e:
        _read_params_npz(path, net)
    assert "\n" not in str(e.value)
    assert all(torch.equal(v, before[k]) for k, v in net.params.items())   # nothing copied
