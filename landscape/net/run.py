"""Running ``landscape net``: train S networks as one batch, hand their heads to the deep UFM,
certify and analyse where the UFM takes them, store it all like a study.

The results folder holds ``config.json``; ``train.npz`` (every seed's trained parameters, written
once training ends, so an interrupted run resumes from it without retraining; until then
``train.partial.npz``, the training's checkpoint of about every minute, from which a resumed run
continues exactly); ``study.sqlite``
(a study database: one trajectory per seed whose ``engine`` record has ``kind = "net"`` with the
training's dynamics and stop reason; the seeds' certified UFM end points deduplicated modulo
symmetry in ``points`` (:class:`landscape.study.points.PointRegistry`, as a study's), each
analysed once; the per-seed network measurements under the meta key
``net_seeds``);
``summary.json`` (:data:`NET_SUMMARY_KEYS`) and ``report.html``.
"""
from __future__ import annotations

import io
import time
import zipfile
from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..analysis.settings import DedupTolerances
from ..core.jsonsafe import json_float
from ..core.model import DeepUFM
from ..core.validate import SpecError
from ..io.records import TrajectoryRecord
from ..io.results import FILES, NET_FILES, atomic_write_bytes, read_json, write_json
from ..io.store import StudyStore
from ..study.points import PointRegistry
from ..study.stats import proportion
from ..study.summary import environment
from ..viz.net_report import write_net_report
from .config import NetConfig
from .data import Dataset, load_dataset
from .handoff import run_handoff, ufm_losses, ufm_points, ufm_spec
from .measure import closed_form_losses, measure_head
from .model import BatchedNet
from .train import TrainResult, train

#: Top-level keys of a net run's summary.json.
NET_SUMMARY_KEYS = ("net", "config", "dynamics", "dataset", "ufm", "theory", "seeds", "ufm_points", "labels", "network_labels",
                    "handoff_loss_gap", "timings", "environment", "files")
_TORCH_DTYPES = {"float64": torch.float64, "float32": torch.float32}


def build_net(cfg: NetConfig, ds: Dataset) -> BatchedNet:
    return BatchedNet(n_features=ds.n_features, K=ds.K, d=cfg.d, L=cfg.L, activation=cfg.activation,
                      backbone=cfg.backbone, hidden=cfg.hidden, image_shape=ds.image_shape, seeds=cfg.seed_list,
                      dtype=_TORCH_DTYPES[cfg.dtype], device=cfg.device)


def accuracy(net: BatchedNet, X: torch.Tensor, y: torch.Tensor) -> np.ndarray:
    """Fraction of samples whose largest logit is their class, per seed (S,); NaN without samples."""
    if X.shape[0] == 0:
        return np.full(net.S, np.nan)
    with torch.no_grad():
        return (net.logits(X).argmax(dim=1) == y).to(torch.float64).mean(dim=1).cpu().numpy()


def _write_params_npz(path: Path, net: BatchedNet, arrays: dict) -> None:
    """Write every seed's parameters (``param/<name>``) and ``arrays`` into one .npz, atomically."""
    buf = io.BytesIO()
    np.savez(buf, **{f"param/{k}": v.detach().cpu().numpy() for k, v in net.params.items()}, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _read_params_npz(path: Path, net: BatchedNet) -> dict:
    """Load the parameters of :func:`_write_params_npz` into ``net``; return the other arrays.
    The file is untrusted input: every parameter must be there with the network's shape and a
    real floating dtype, and the per-seed arrays must have one entry per seed (one-line
    :class:`~landscape.core.validate.SpecError` naming the file and the member otherwise)."""
    try:
        f = np.load(path, allow_pickle=False)
    except (ValueError, OSError, zipfile.BadZipFile) as exc:
        raise SpecError(f"{path}: not a readable .npz ({exc})") from None
    with f:
        for k, v in net.params.items():
            name = f"param/{k}"
            if name not in f.files:
                raise SpecError(f"{path}: member {name} is missing (the file was altered or belongs to another network)")
            a = f[name]
            if tuple(a.shape) != tuple(v.shape) or a.dtype.kind != "f":
                raise SpecError(f"{path}: member {name} has shape {tuple(a.shape)} and dtype {a.dtype}; this network's "
                                f"{k} is {tuple(v.shape)} floating point (the file was altered or belongs to another network)")
        seeds = next(iter(net.params.values())).shape[0]
        rest = {k: f[k] for k in f.files if not k.startswith("param/")}
        for k, a in rest.items():
            if k in _PER_SEED and (a.ndim != 1 or a.shape[0] != seeds):
                raise SpecError(f"{path}: member {k} has shape {tuple(a.shape)}, not one entry per seed ({seeds})")
        with torch.no_grad():
            for k, v in net.params.items():
                v.copy_(torch.from_numpy(f[f"param/{k}"]).to(v.dtype))
        return rest


#: Arrays of train.npz with one entry per seed.
_PER_SEED = ("stop_reason", "iterations", "loss", "ce", "grad_norm")


def _save_training(path: Path, net: BatchedNet, tr: TrainResult) -> None:
    _write_params_npz(path, net, {
        "stop_reason": np.array(tr.stop_reason), "iterations": tr.iterations, "loss": tr.loss, "ce": tr.ce,
        "grad_norm": tr.grad_norm, "wall_time_s": np.array(tr.wall_time_s),
        "history_iter": np.array([h[0] for h in tr.history]), "history_loss": np.array([h[1] for h in tr.history])})


def _load_training(path: Path, net: BatchedNet) -> TrainResult:
    f = _read_params_npz(path, net)
    hist = list(zip(f["history_iter"].tolist(), f["history_loss"].tolist()))
    return TrainResult([str(s) for s in f["stop_reason"]], f["iterations"], f["loss"], f["ce"], f["grad_norm"],
                       hist, float(f["wall_time_s"]))


def _save_checkpoint(path: Path, net: BatchedNet, state: dict) -> None:
    _write_params_npz(path, net, {f"state/{k}": np.asarray(v) for k, v in state.items()})


def _load_checkpoint(path: Path, net: BatchedNet) -> dict:
    return {k[len("state/"):]: v for k, v in _read_params_npz(path, net).items()}


def describe_dynamics(cfg: NetConfig) -> dict:
    """What produced every number: the network's training and the UFM engines after it."""
    return {"training": {"method": "full-batch gradient descent", "lr": cfg.lr, "max_iter": cfg.max_iter,
                         "grad_tol": cfg.grad_tol, "loss_rtol": cfg.loss_rtol, "window": cfg.window,
                         "dtype": cfg.dtype, "init": "PyTorch default (Kaiming-uniform a=√5, zero biases), "
                                                     "one generator per seed"},
            "regularisation": cfg.reg.to_dict(),
            "handoff": [s.settings() for s in cfg.handoff], "certify_tol": cfg.certify_tol}


def run_net(cfg: NetConfig, out_dir: str | Path, *, progress: bool | Callable[[str], None] = True) -> dict:
    """Run (or resume) the net study ``cfg`` into ``out_dir``; return its summary."""
    say = progress if callable(progress) else ((lambda m: print(m, flush=True)) if progress else (lambda *_: None))
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg_path = out / FILES["config"]
    if cfg_path.is_file():
        if read_json(cfg_path) != cfg.to_dict():
            raise SpecError(f"{out} holds a net run with another configuration: choose another --out")
    else:
        write_json(cfg_path, cfg.to_dict())
    t_all = time.perf_counter()
    timings: dict[str, float] = {}
    ds = load_dataset(cfg.dataset, cfg.n_train, cfg.n_test, seed=cfg.split_seed, standardise=cfg.standardise)
    net = build_net(cfg, ds)
    dev, dt = net.device, net.dtype
    Xtr = torch.tensor(ds.X_train, dtype=dt, device=dev)
    ytr = torch.tensor(ds.y_train, device=dev)
    Xte = torch.tensor(ds.X_test, dtype=dt, device=dev)
    yte = torch.tensor(ds.y_test, device=dev)
    reg = cfg.reg.to_dict()
    train_path = out / NET_FILES["training"]
    if train_path.is_file():
        tr = _load_training(train_path, net)
        say(f"[training] {net.S} seeds: kept from {train_path.name}")
    else:
        ckpt_path = out / NET_FILES["checkpoint"]
        resume = _load_checkpoint(ckpt_path, net) if ckpt_path.is_file() else None
        say(f"[training] {net.S} seeds, {ds.K}×{ds.n_train} samples, full-batch GD lr {cfg.lr}, "
            f"up to {cfg.max_iter} steps" + (f", from the checkpoint at step {int(resume['iteration'])}"
                                             if resume is not None else ""))
        tr = train(net, Xtr, ytr, reg, lr=cfg.lr, max_iter=cfg.max_iter, grad_tol=cfg.grad_tol,
                   loss_rtol=cfg.loss_rtol, window=cfg.window, check_every=cfg.check_every,
                   on_check=(lambda it, n: say(f"[training] step {it}: {n} of {net.S} seeds running")
                             if it % (10 * cfg.check_every) == 0 else None),
                   resume=resume, on_checkpoint=lambda st: _save_checkpoint(ckpt_path, net, st))
        _save_training(train_path, net, tr)
        ckpt_path.unlink(missing_ok=True)
    timings["training_s"] = tr.wall_time_s
    acc_tr, acc_te = accuracy(net, Xtr, ytr), accuracy(net, Xte, yte)

    spec = ufm_spec(cfg, ds.K, ds.n_train)
    # the network's regularised loss, recomputed in float64, against the UFM loss of its head
    net64 = build_net(replace(cfg, dtype="float64", device="cpu"), ds)
    with torch.no_grad():
        for k, v in net64.params.items():
            v.copy_(net.params[k].detach().to("cpu", torch.float64))
        X64 = torch.tensor(ds.X_train, dtype=torch.float64)
        net_loss64 = net64.objective(X64, torch.tensor(ds.y_train), reg)[0].numpy()
    theta0 = ufm_points(net64, X64)
    ufm0 = ufm_losses(spec, theta0)

    db = out / FILES["database"]
    if db.is_file() and not StudyStore.is_uninitialised(db):
        store = StudyStore.open(db)
    else:
        StudyStore.discard_uninitialised(db) if db.is_file() else None
        store = StudyStore.create(db, {"net": cfg.to_dict(), "ufm_spec": spec.to_dict()}, spec)
    try:
        if 0 not in store.committed_units():
            t0 = time.perf_counter()
            say(f"[hand-off] {net.S} heads → deep UFM (P = {spec.P}): "
                + " → ".join(s.describe() for s in cfg.handoff))
            res, certified = run_handoff(cfg, spec, theta0)
            timings["handoff_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            thetas = res.theta.detach().cpu().to(torch.float64)
            # the seeds' ends become points as a study's do (landscape.study.points): certified ones
            # deduplicated modulo symmetry, each distinct point analysed once; an uncertified end
            # is a point of its own
            registry = PointRegistry(spec, DedupTolerances(), cfg.analysis, device="cpu")
            found = registry.identify(thetas, certified=certified)
            point_of = [pid for pid, _, _ in found]
            firsts = [(pid, i, fp) for i, (pid, is_new, fp) in enumerate(found) if is_new]
            points = []
            for k, (pid, i, fp) in enumerate(firsts):
                say(f"[analysis] point {pid} ({k + 1} of {len(firsts)} distinct UFM end points, seed {cfg.seed_list[i]})")
                pa = registry.analyse(pid, thetas[i], kind=None if certified[i] else "unverified")
                a = pa.to_dict()
                a["ufm_end"] = measure_head(spec, thetas[i].numpy(), sv_atol=cfg.sv_atol, sv_rtol=cfg.sv_rtol,
                                            structure=pa.structure)
                points.append(registry.record(pid, thetas[i], fp, pa, analysis=a, spectra=False))
            seeds_rec, trajs = [], []
            for i, seed in enumerate(cfg.seed_list):
                nw = measure_head(spec, theta0[i].numpy(), sv_atol=cfg.sv_atol, sv_rtol=cfg.sv_rtol,
                                  settings=cfg.analysis)
                nw.update({"seed": seed, "train_accuracy": json_float(acc_tr[i]),
                           "test_accuracy": json_float(acc_te[i]), "loss": float(net_loss64[i]),
                           "ce": json_float(tr.ce[i]), "ufm_loss_at_handoff": float(ufm0[i]),
                           "train_stop_reason": tr.stop_reason[i], "train_iterations": int(tr.iterations[i]),
                           "train_grad_norm": json_float(tr.grad_norm[i])})
                seeds_rec.append(nw)
                row = res.row(i)
                trajs.append(TrajectoryRecord(
                    idx=i, seed=seed, stop_reason=row["stop_reason"], certified=bool(certified[i]),
                    iterations=row["iterations"], n_grad=row["n_grad"], n_hvp=row["n_hvp"],
                    wall_time=row["wall_time"], loss=row["loss"], grad_norm=row["grad_norm"], point_id=point_of[i],
                    engine={"kind": "net", "training_stop_reason": tr.stop_reason[i],
                            "training_iterations": int(tr.iterations[i]), **describe_dynamics(cfg)}))
            timings["analysis_s"] = time.perf_counter() - t0
            # the per-seed network records first: a run stopped before the unit recomputes both
            store.set_meta("net_seeds", seeds_rec)
            store.set_meta("net_timings", timings)
            store.commit_unit(0, trajs, points, wall_time=timings["handoff_s"] + timings["analysis_s"])
        else:
            timings.update(store.get_meta("net_timings", {}) or {})
        summary = summarise_net(cfg, ds, spec, store, timings)
    finally:
        store.close()
    summary["timings"]["total_s"] = time.perf_counter() - t_all
    write_json(out / FILES["summary"], summary)
    write_net_report(out)
    return summary


def label_fractions(labels: list[str]) -> dict:
    """{label: {count, fraction, ci_low, ci_high}} over the given labels (95% Wilson intervals)."""
    n = len(labels)
    return {lab: proportion(labels.count(lab), n) for lab in sorted(set(labels), key=lambda x: (-labels.count(x), x))}


def summarise_net(cfg: NetConfig, ds: Dataset, spec, store: StudyStore, timings: dict) -> dict:
    """The summary.json record (:data:`NET_SUMMARY_KEYS`) from the stored points and trajectories."""
    pts = {p.id: p for p in store.points()}
    network = {r["seed"]: r for r in store.get_meta("net_seeds", [])}
    seeds, ufm_labels, net_labels, gaps = [], [], [], []
    for t in sorted(store.trajectories(), key=lambda t: t.idx):
        a = pts[t.point_id].analysis
        nw = network[t.seed]
        seeds.append({"seed": t.seed, "train_accuracy": nw["train_accuracy"], "test_accuracy": nw["test_accuracy"],
                      "loss": nw["loss"], "ce": nw["ce"], "train_stop_reason": nw["train_stop_reason"],
                      "train_iterations": nw["train_iterations"], "layers": nw["layers"],
                      "logit_rank": nw["logit_rank"], "rank_pattern": nw["rank_pattern"],
                      "network_label": nw["label"], "dnc_metrics": nw["dnc_metrics"],
                      "ufm_point_id": t.point_id, "ufm_certified": t.certified,
                      "ufm_stop_reason": t.stop_reason, "ufm_label": a["label"] if t.certified else None,
                      "ufm_kind": a["kind"] if t.certified else "uncertified", "ufm_loss": a["loss"],
                      "ufm_grad_norm": a["grad_norm"], "ufm_index": a["index"], "ufm_theory": a["theory"],
                      "ufm_logit_rank": a["ufm_end"]["logit_rank"], "ufm_layers": a["ufm_end"]["layers"]})
        net_labels.append(nw["label"])
        gaps.append(abs(nw["loss"] - nw["ufm_loss_at_handoff"]))
        if t.certified:
            ufm_labels.append(a["label"])
    n_unc = len(seeds) - len(ufm_labels)
    distinct = [{"id": p.id, "label": p.label, "kind": p.kind, "loss": p.loss, "index": p.hessian_index,
                 "n_seeds": sum(1 for s_ in seeds if s_["ufm_point_id"] == p.id),
                 "theory": p.theory, "rank_pattern": p.rank_pattern}
                for p in sorted(pts.values(), key=lambda p: p.loss)]
    return {"net": cfg.name, "config": cfg.to_dict(), "dynamics": describe_dynamics(cfg),
            "dataset": {"name": ds.name, "K": ds.K, "n_train": ds.n_train, "n_test": ds.n_test,
                        "n_features": ds.n_features, "image_shape": list(ds.image_shape) if ds.image_shape else None,
                        "standardise": cfg.standardise, "split_seed": cfg.split_seed},
            "ufm": {"spec": spec.to_dict(), "P": spec.P, "lambda_H": spec.lambdas[0], "lambda_W": spec.lambdas[1]},
            "theory": closed_form_losses(spec), "seeds": seeds, "ufm_points": distinct,
            "labels": {"n": len(ufm_labels), "uncertified": n_unc, "fractions": label_fractions(ufm_labels),
                       "basis": "UFM label of each seed's certified end point; uncertified seeds counted apart"},
            "network_labels": {"n": len(net_labels), "fractions": label_fractions(net_labels),
                               "basis": "structure label of the trained network's own head (before the UFM engines)"},
            "handoff_loss_gap": {"max_abs": max(gaps) if gaps else None,
                                 "meaning": "|network regularised loss − UFM loss of its head| (0 up to round-off "
                                            "under ufm regularisation with a free backbone)"},
            "timings": dict(timings), "environment": environment(cfg.device),
            "files": {k: v for k, v in {**FILES, **NET_FILES}.items() if k not in ("spectra", "tree", "graphml")}}
