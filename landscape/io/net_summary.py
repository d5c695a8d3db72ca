"""The typed view of a ``landscape net`` folder's summary.json (:func:`landscape.net.run.summarise_net`).

:class:`NetSummary` is what code above ``io/`` reads instead of the JSON: the dataset, the
dynamics in words, the UFM the heads were handed to, the closed-form losses, one
:class:`NetSeed` per trained network (its accuracies, loss, head factors' singular values and the
UFM end its head reached) and the UFM labels' fractions. Read from a results folder it is
untrusted input: the report type-checks it first (:data:`landscape.viz.safe.NET_SUMMARY_FIELDS`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..core.jsonsafe import optional_float, optional_int


@dataclass(frozen=True)
class HeadFactor:
    """One head factor W_l of a trained network: its ``name`` (``W1`` …), ``singular_values``
    (descending) and how many lie ``above_atol`` (the paper's threshold)."""

    name: str
    singular_values: list[float]
    above_atol: int

    @classmethod
    def from_row(cls, row: Mapping) -> HeadFactor:
        return cls(str(row["name"]), [float(v) for v in row["singular_values"]], int(row["above_atol"]))


@dataclass(frozen=True)
class NetSeed:
    """One trained network (a summary.json ``seeds`` row): ``seed``, ``train_accuracy`` and
    ``test_accuracy`` (None without a test split), its regularised ``loss``, its head ``layers``
    (:class:`HeadFactor` by name), the numerical ``logit_rank`` and ``network_label`` of its own
    head, and where the UFM engines took that head: ``ufm_label`` (None where uncertified),
    ``ufm_stop_reason``, ``ufm_loss``."""

    seed: int
    train_accuracy: float
    test_accuracy: float | None
    loss: float
    layers: dict[str, HeadFactor]
    logit_rank: int | None
    network_label: str | None
    ufm_label: str | None
    ufm_stop_reason: str | None
    ufm_loss: float

    @classmethod
    def from_row(cls, row: Mapping) -> NetSeed:
        layers = [HeadFactor.from_row(lay) for lay in row.get("layers") or []]
        return cls(seed=int(row["seed"]), train_accuracy=float(row["train_accuracy"]),
                   test_accuracy=optional_float(row.get("test_accuracy")), loss=float(row["loss"]),
                   layers={lay.name: lay for lay in layers}, logit_rank=optional_int(row.get("logit_rank")),
                   network_label=row.get("network_label"), ufm_label=row.get("ufm_label"),
                   ufm_stop_reason=row.get("ufm_stop_reason"), ufm_loss=float(row["ufm_loss"]))


@dataclass(frozen=True)
class LabelShare:
    """The seeds whose UFM end carries one label: ``count`` of the certified seeds, ``fraction``
    with its Wilson interval [``ci_low``, ``ci_high``]."""

    count: int
    fraction: float | None
    ci_low: float | None
    ci_high: float | None

    @classmethod
    def from_row(cls, row: Mapping) -> LabelShare:
        return cls(int(row["count"]), *(optional_float(row.get(k)) for k in ("fraction", "ci_low", "ci_high")))


@dataclass(frozen=True)
class NetSummary:
    """A ``landscape net`` run (module docstring). ``name``; ``dataset`` (:class:`NetDataset`);
    ``training_method``, ``training_lr``, ``regularisation``, ``handoff_engines`` and
    ``certify_tol``: the dynamics; ``L`` and ``P`` of the UFM; ``sv_atol``: the singular-value
    threshold; ``dnc_loss`` and ``best_structure`` / ``best_loss``: the UFM's closed forms;
    ``seeds`` (:class:`NetSeed`); ``n_certified`` and ``n_uncertified`` seeds and ``labels``
    (UFM label → :class:`LabelShare`); ``handoff_loss_gap``: the largest |network loss − UFM loss
    at hand-off|. ``summary``: the whole summary.json."""

    name: str
    dataset: "NetDataset"
    training_method: str
    training_lr: float
    regularisation: str
    handoff_engines: list[str]
    certify_tol: float
    L: int
    P: int
    sv_atol: float
    dnc_loss: float | None
    best_structure: str | None
    best_loss: float | None
    seeds: list[NetSeed]
    n_certified: int
    n_uncertified: int
    labels: dict[str, LabelShare]
    handoff_loss_gap: float | None
    summary: Mapping[str, Any]

    @classmethod
    def from_json(cls, s: Mapping) -> NetSummary:
        dyn, th, lab = s["dynamics"], s.get("theory") or {}, s["labels"]
        best = th.get("best") or {}
        gap = (s.get("handoff_loss_gap") or {}).get("max_abs")
        return cls(name=str(s["net"]), dataset=NetDataset.from_row(s["dataset"]),
                   training_method=str(dyn["training"]["method"]), training_lr=float(dyn["training"]["lr"]),
                   regularisation=str(dyn["regularisation"]),
                   handoff_engines=[str(st["engine"]) for st in dyn["handoff"]],
                   certify_tol=float(dyn["certify_tol"]), L=int(s["ufm"]["spec"]["L"]), P=int(s["ufm"]["P"]),
                   sv_atol=float(((s.get("config") or {}).get("analysis") or {}).get("sv_atol", 1e-6)),
                   dnc_loss=optional_float(th.get("dnc_loss")), best_structure=best.get("name"),
                   best_loss=optional_float(best.get("loss")),
                   seeds=[NetSeed.from_row(r) for r in s["seeds"]], n_certified=int(lab["n"]),
                   n_uncertified=int(lab["uncertified"]),
                   labels={str(k): LabelShare.from_row(v) for k, v in lab["fractions"].items()},
                   handoff_loss_gap=optional_float(gap), summary=s)


@dataclass(frozen=True)
class NetDataset:
    """The data the networks were trained on: ``name``, ``K`` classes, ``n_train`` and
    ``n_test`` samples per class."""

    name: str
    K: int
    n_train: int
    n_test: int

    @classmethod
    def from_row(cls, row: Mapping) -> NetDataset:
        return cls(str(row["name"]), int(row["K"]), int(row["n_train"]), int(row["n_test"]))
