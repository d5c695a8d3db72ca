"""Structure of a point: singular values, numerical ranks, collapse (DNC) metrics and a label.

Everything is float64 numpy. Conventions of ``docs/MODEL.md`` §1–§3: columns class-ordered,
N = K·n; class means M (p × K, column c the mean of class c's columns), global mean
μ_G = M 1/K, centred means M_c = M − μ_G 1ᵀ, S = I_K − 11ᵀ/K.

Layers. The feature layers are, in forward order, H₁ ("H1"), then for l = 2..L the pre-activation
H_l ("H{l}") and, with ReLU, the post-activation σ(H_l) ("σH{l}"), and the logits Z ("Z"). The rank
pattern is the tuple of numerical ranks of, in forward order, H1, W1, H2, [σH2,] W2, …, WL, Z
(names in :attr:`StructureReport.rank_names`).

Numerical rank of a matrix with singular values s₁ ≥ s₂ ≥ …: r = #{s_i > max(rank_rtol·s₁, zero_atol)}
(0 for a matrix that is zero up to ``zero_atol``, e.g. a point certified within round-off of the
origin); the gap that justifies it is s_r/s_{r+1} (inf when s_{r+1} = 0 or r is full).

Label (invariant under gauge rotations, hidden-unit permutations and class relabelling because it
uses only Z̄ up to simultaneous row/column permutation and O(d)-invariant metrics):

* ``zero``: max|Z| ≤ zero_atol.
* otherwise Z̄ is read as a block pattern: classes c ≠ c' are linked when |Z̄_{cc'}| or |Z̄_{c'c}|
  exceeds pattern_rtol·max|Z̄|; each connected component of size k ≥ 2 whose block B satisfies
  ‖B − αS_k‖_F ≤ pattern_rtol·‖B‖_F with α = ⟨B, S_k⟩/‖S_k‖² > 0 is a ``simplex(k)`` (k = 2: a
  ``pair``); a component that is α times a subset block up to a relabelling
  (:func:`match_subset_block`, :class:`landscape.analysis.theory.BlockType`) is ``subsets(m,j)``;
  one that is a P₁ + b P_{m/2} on some cycle of its m classes (two scales: a regular m-gon lifted
  alternately up and down an axis, :func:`match_antiprism_block`,
  :class:`landscape.analysis.theory.AntiprismType`) is ``antiprism(m)``; one of m + 2 classes that is
  a P₁ + s·u vᵀ, the antiprism's m-gon with two cap classes on its axis coupled to its alternation
  (:func:`match_capped_antiprism_block`, :class:`landscape.analysis.theory.CappedAntiprismType`) is
  ``capped_antiprism(m)``; one of K = C(r, 2) classes
  (r ≥ 4) whose Z̄ is Σ_i z_i P_i on the Johnson scheme J(r, 2) with the classes on the edges of
  K_r (three values: diagonal, adjacent = edges sharing a vertex, disjoint; the strongly-regular-
  graph structure of the deep ReLU MSE UFM, :func:`match_srg_block`,
  :class:`landscape.analysis.srg.SRGType`) is ``srg(r)``;
  an isolated class is ``null`` (zero column) or ``self`` (logit only on itself); for CE, a Z̄ that
  reads as one unrecognised block is read again as a centred code, Z̄ = (I − 11ᵀ/K)·B with B's
  blocks recognised as above (:func:`read_centred_blocks`: classes alone are ``self``, e.g. the
  λ = 0 code "4×pair+2×self"); anything else is an unrecognised block, described by
  :func:`describe_logits`.
* ``DNC``: the collapse of the member (MODEL.md §9): for CE a single simplex(K) block, for MSE
  Z̄ = γI (every class a ``self`` block of one scale, ‖Z̄/‖Z̄‖ − I/√K‖ ≤ pattern_rtol); and DNC1,
  DNC2 (centred: an ETF, or an orthogonal frame, which centres to an ETF) and DNC3 below
  collapse_tol at every layer. Each layer's geometry ("ETF" or "OF", :func:`layer_geometry`) is
  reported beside the label; ``pairs``: every block a pair, plus at most one singleton for odd K; the block pattern name
  (e.g. "simplex(4)+3×pair", see :func:`landscape.theory.pattern_name`) when every component is
  recognised and the logits are within-class collapsed; ``other`` otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from itertools import combinations

import networkx as nx
import numpy as np
from scipy.sparse.csgraph import connected_components

from ..core.jsonsafe import json_float
from ..core.model import DeepUFM, ModelSpec, as_theta64
from .labels import DNC, OTHER, PAIRS, ZERO
from .srg import SRGType, is_srg_K, johnson_projectors, multiplicities, triangular_r
from .theory import AntiprismType, BlockType, CappedAntiprismType, block_types, pattern_name, simplex

from .settings import DEFAULT_COLLAPSE_TOL, DEFAULT_PATTERN_RTOL, DEFAULT_RANK_RTOL, DEFAULT_ZERO_ATOL  # noqa: E402,F401


# ----- ranks -----------------------------------------------------------------------------------
@dataclass
class RankInfo:
    """Singular values (descending), numerical rank under ``rtol`` and the gap s_r/s_{r+1}."""

    singular_values: np.ndarray
    rank: int
    gap: float
    rtol: float

    def to_dict(self) -> dict:
        return {"rank": self.rank, "gap": json_float(self.gap), "rtol": self.rtol,
                "singular_values": [float(x) for x in self.singular_values]}


def numerical_rank(A: np.ndarray, rtol: float = DEFAULT_RANK_RTOL, atol: float = 0.0) -> RankInfo:
    """Rank of A under the relative threshold ``rtol`` and the absolute floor ``atol``:
    #{s_i > max(rtol·s₁, atol)} (module docstring). The floor keeps a matrix that is zero up to
    round-off (a point certified within noise of the origin) at rank 0."""
    s = np.linalg.svd(np.asarray(A, dtype=np.float64), compute_uv=False)
    if s.size == 0 or s[0] <= atol:
        return RankInfo(s, 0, float("inf"), rtol)
    r = int(np.sum(s > max(rtol * s[0], atol)))
    gap = float(s[r - 1] / s[r]) if r < s.size and s[r] > 0 else float("inf")
    return RankInfo(s, r, gap, rtol)


# ----- collapse metrics ------------------------------------------------------------------------
def class_means(Hf: np.ndarray, K: int, n: int) -> np.ndarray:
    """Class means (p, K) of class-ordered features (p, K·n)."""
    return Hf.reshape(Hf.shape[0], K, n).mean(axis=2)


@dataclass
class LayerMetrics:
    """Collapse metrics of one feature layer (p × N features), all dimensionless, float64.

    * ``dnc1`` = tr(Σ_W Σ_B^{+r})/K with Σ_W = (1/N)Σ_i (h_i − μ_{c(i)})(…)ᵀ, Σ_B = (1/K) M_c M_cᵀ
      and Σ_B^{+r} the pseudo-inverse truncated to its top ``dnc1_rank`` = r eigenpairs, r the
      numerical rank of M_c (so it stays finite on low-rank points); None when r = 0.
    * ``dnc1_trace_ratio`` = tr Σ_W / tr Σ_B (within-class variability in every direction).
    * ``dnc2_etf`` = ‖G/‖G‖_F − S/‖S‖_F‖_F with G = M_cᵀM_c (centred: 0 for a simplex ETF, also for
      a centred orthogonal frame); ``dnc2_of`` = ‖G̃/‖G̃‖_F − I/√K‖_F with G̃ = MᵀM (uncentred: 0
      only for an orthogonal frame).
    * ``global_mean_ratio`` = ‖μ_G‖/√(mean_c ‖μ_c‖²) (0 when the class means are centred).
    * ``dnc3`` (for the weight W fed by this layer; None for Z) = ‖W(I − Π)‖_F/‖W‖_F, Π the
      projector onto the span of the class means M (rank under rank_rtol), W_L with its rows
      globally centred first (W − 11ᵀW/K): 0 when W's rows lie in the class-mean span.
    """

    name: str
    dnc1: float | None
    dnc1_rank: int
    dnc1_trace_ratio: float | None
    dnc2_etf: float | None
    dnc2_of: float | None
    global_mean_ratio: float | None
    dnc3: float | None = None
    weight: str | None = None

    def to_dict(self) -> dict:
        return {k: json_float(v) for k, v in self.__dict__.items()}


def _normalised_distance(G: np.ndarray, T: np.ndarray) -> float | None:
    g = np.linalg.norm(G)
    return None if g == 0 else float(np.linalg.norm(G / g - T / np.linalg.norm(T)))


def layer_metrics(name: str, Hf: np.ndarray, K: int, n: int, rank_rtol: float = DEFAULT_RANK_RTOL,
                  W: np.ndarray | None = None, weight_name: str | None = None,
                  centre_weight_rows: bool = False) -> LayerMetrics:
    """:class:`LayerMetrics` of features Hf (p, K·n), optionally with the weight W (q, p) it feeds."""
    M = class_means(Hf, K, n)
    muG = M.mean(axis=1, keepdims=True)
    Mc = M - muG
    within = Hf - np.repeat(M, n, axis=1)
    Sw = within @ within.T / (K * n)
    Sb = Mc @ Mc.T / K
    r = numerical_rank(Mc, rank_rtol).rank
    if r:
        e, V = np.linalg.eigh(Sb)
        e, V = e[::-1][:r], V[:, ::-1][:, :r]
        dnc1 = float(np.sum((V.T @ Sw @ V).diagonal() / e) / K)
    else:
        dnc1 = None
    tb = np.trace(Sb)
    ratio = float(np.trace(Sw) / tb) if tb > 0 else None
    etf = _normalised_distance(Mc.T @ Mc, simplex(K))
    of = _normalised_distance(M.T @ M, np.eye(K))
    msq = float(np.mean(np.sum(M ** 2, axis=0)))
    gm = float(np.linalg.norm(muG) / np.sqrt(msq)) if msq > 0 else None
    dnc3 = None
    if W is not None:
        Wc = W - W.mean(axis=0, keepdims=True) if centre_weight_rows else W
        wn = np.linalg.norm(Wc)
        if wn > 0:
            U, s, _ = np.linalg.svd(M, full_matrices=False)
            rm = numerical_rank(M, rank_rtol).rank
            Ur = U[:, :rm]
            dnc3 = float(np.linalg.norm(Wc - (Wc @ Ur) @ Ur.T) / wn)
    return LayerMetrics(name, dnc1, r, ratio, etf, of, gm, dnc3, weight_name)


# ----- block patterns ---------------------------------------------------------------------------
@dataclass
class Block:
    """One connected component of the class graph of Z̄: ``kind`` in {'simplex', 'pair', 'subsets',
    'antiprism', 'capped_antiprism', 'srg', 'null', 'self', 'unrecognised'}, its ``classes`` (sorted),
    fitted ``scale`` α
    (simplex/pair: Z̄ block ≈ αS_k; subsets: ≈ αM̂ up to a relabelling,
    :class:`landscape.analysis.theory.BlockType`; antiprism: the doubled singular value a; srg: the
    largest |z_i|; self: the diagonal entry), relative ``residual`` (simplex: ‖B − αS_k‖_F/‖B‖_F)
    and, for a subset block, its ``shape`` (m, j); for an antiprism block
    (:class:`landscape.analysis.theory.AntiprismType`) ``shape`` (m,), both ``scales`` (a, b) and
    the classes in ``cycle`` order; for a capped antiprism block
    (:class:`landscape.analysis.theory.CappedAntiprismType`) ``shape`` (m,), ``scales`` (a, s, α, γ)
    and in ``cycle`` the m classes in cycle order followed by the caps p₊, p₋; for an SRG block (:class:`landscape.analysis.srg.SRGType`)
    ``shape`` (r,), ``scales`` (z₀, z₁, z₂) and in ``order`` the classes on the edges of K_r in
    lexicographic order ((0,1), (0,2), …: the order of :func:`landscape.analysis.srg.incidence`)."""

    kind: str
    classes: tuple
    scale: float
    residual: float
    shape: tuple | None = None
    scales: tuple | None = None
    cycle: tuple | None = None
    order: tuple | None = None

    @property
    def block_type(self) -> BlockType | AntiprismType | CappedAntiprismType | SRGType | None:
        """The theory's block type of a recognised simplex, pair, subset, (capped) antiprism or SRG
        block."""
        if self.kind in ("simplex", "pair"):
            return BlockType(len(self.classes))
        if self.kind == "antiprism":
            return AntiprismType(len(self.classes))
        if self.kind == "capped_antiprism":
            return CappedAntiprismType(self.shape[0])
        if self.kind == "srg":
            return SRGType(self.shape[0])
        return BlockType(*self.shape) if self.kind == "subsets" else None

    def to_dict(self) -> dict:
        out = {"kind": self.kind, "classes": list(self.classes), "scale": json_float(self.scale),
               "residual": json_float(self.residual)}
        if self.shape is not None:
            out["shape"] = list(self.shape)
        if self.scales is not None:
            out["scales"] = [json_float(x) for x in self.scales]
        if self.cycle is not None:
            out["cycle"] = list(self.cycle)
        if self.order is not None:
            out["order"] = list(self.order)
        return out


def match_subset_block(B: np.ndarray, rtol: float) -> tuple[BlockType, float, float] | None:
    """(type, α, residual) when the block B (k × k) is αM̂ of a subset block type up to a
    relabelling of its classes: r = m − 1 singular values equal to α and the rest 0, every diagonal
    entry α·M̂_SS, and every row's off-diagonal entries the type's multiset α(M̂_SS − δ); residual =
    the largest of those deviations relative to α (≤ ``rtol``). None when no type of size k fits."""
    k = B.shape[0]
    sv = np.linalg.svd(B, compute_uv=False)
    for bt in block_types(k):
        if bt.j == 1:
            continue
        a = float(sv[:bt.rank].mean())
        if a <= 0:
            continue
        want = np.sort(np.concatenate([np.full(c, bt.self_value - d) for c, d in bt.offsets]))
        off = np.sort(B[~np.eye(k, dtype=bool)].reshape(k, k - 1), axis=1) / a
        res = max(float(np.abs(sv[:bt.rank] / a - 1).max()), float(sv[bt.rank:].max() / a) if k > bt.rank else 0.0,
                  float(np.abs(np.diag(B) / a - bt.self_value).max()), float(np.abs(off - want).max()))
        if res <= rtol:
            return bt, a, res
    return None


def match_antiprism_block(B: np.ndarray, rtol: float) -> tuple[AntiprismType, tuple, float, tuple] | None:
    """(type, (a, b), residual, cycle) when the block B (m × m, m even ≥ 4) is a P₁ + b P_{m/2} of
    an antiprism (:class:`landscape.analysis.theory.AntiprismType`) with its classes on some cycle:
    three non-zero eigenvalues of the symmetric part, two of them equal (a) and one (b), the rest 0;
    the cycle is the order of the classes' angles in the plane of the doubled eigenvalue; residual
    = max |B − template| over max(a, b) in that order, which must be ≤ ``rtol``. ``cycle``: local
    indices into B. None when it does not fit (a = b is left out: the plane is then not defined)."""
    m = B.shape[0]
    if m < 4 or m % 2:
        return None
    ev, vec = np.linalg.eigh(0.5 * (B + B.T))
    top = np.argsort(-np.abs(ev))[:3]
    lead = float(np.abs(ev[top]).max())
    if lead <= 0 or float(np.abs(np.delete(ev, top)).max(initial=0.0)) > rtol * lead:
        return None
    e = ev[top]
    pairs = [(abs(e[i] - e[j]), i, j) for i in range(3) for j in range(i + 1, 3)]
    _, i, j = min(pairs)
    k = 3 - i - j
    a, b = 0.5 * float(e[i] + e[j]), float(e[k])
    if a <= 0 or b <= 0 or abs(a - b) <= rtol * lead:
        return None
    X = vec[:, [top[i], top[j]]]
    cycle = tuple(int(c) for c in np.argsort(np.arctan2(X[:, 1], X[:, 0])))
    at = AntiprismType(m)
    res = float(np.abs(B[np.ix_(cycle, cycle)] - at.matrix((a, b))).max() / max(a, b))
    return (at, (a, b), res, cycle) if res <= rtol else None


def match_capped_antiprism_block(B: np.ndarray, rtol: float) -> tuple[CappedAntiprismType, tuple, float, tuple] | None:
    """(type, (a, s, α, γ), residual, order) when the block B (k × k, k = m + 2, m even ≥ 4) is a
    capped antiprism a P₁ + s·u vᵀ (:class:`landscape.analysis.theory.CappedAntiprismType`): three
    non-zero singular values, two of them equal (a) and one (s ≠ a); the caps are the two classes
    with the smallest component in the doubled singular value's right (class-side) plane, the
    cycle the order of the other classes' angles in it; (s, u, v) the leading singular triple of
    the 2 × 2 coupling Eᵀ(B' − aP₁)E on E = (e_p, e_a), B' = B in that order; residual =
    max |B' − template| over the largest singular value, which must be ≤ ``rtol``. ``order``:
    local indices into B (the cycle, then p₊, p₋). None when it does not fit, or when u or v lies
    within ``rtol`` of e_p or e_a (no coupling: a direct sum, e.g. 3×pair or an m-gon beside a
    pair, that small entries joined into one block)."""
    k = B.shape[0]
    m = k - 2
    if m < 4 or m % 2:
        return None
    _, sv, Vt = np.linalg.svd(B)
    lead = float(sv[0])
    if lead <= 0 or float(sv[3]) > rtol * lead:
        return None
    _, i, j = min((abs(sv[i] - sv[j]), i, j) for i in range(3) for j in range(i + 1, 3))
    a, s = 0.5 * float(sv[i] + sv[j]), float(sv[3 - i - j])
    if abs(a - s) <= rtol * lead:
        return None
    X = Vt[[i, j]].T
    radius = np.linalg.norm(X, axis=1)
    caps = [int(c) for c in np.argsort(radius)[:2]]
    rest = [c for c in range(k) if c not in caps]
    cycle = [rest[c] for c in np.argsort(np.arctan2(X[rest, 1], X[rest, 0]))]
    order = tuple(cycle + caps)
    Bp = B[np.ix_(order, order)]
    ct = CappedAntiprismType(m)
    P1 = ct.parts((a, s, 0.0, 0.0))[0]
    E = np.stack(ct.axes(), axis=1)
    U2, s2, V2t = np.linalg.svd(E.T @ (Bp - a * P1) @ E)
    u, v = U2[:, 0], V2t[0]
    params = (a, float(s2[0]), float(np.arctan2(u[1], u[0])), float(np.arctan2(v[1], v[0])))
    if min(abs(u[0]), abs(u[1]), abs(v[0]), abs(v[1])) <= rtol:
        return None   # no coupling of the caps' pair with the axis: a direct sum joined by small entries
    res = float(np.abs(Bp - ct.matrix(params)).max() / lead)
    return (ct, params, res, order) if res <= rtol else None


def _srg_graph_order(G: nx.Graph, r: int) -> tuple | None:
    """Local class indices in the lexicographic order of the edges of K_r when the graph G (nodes
    0 … K−1) is isomorphic to the line graph of K_r (the triangular graph T(r)), else None. The SRG
    parameters (K, 2(r−2), r−2, 4) are checked first (cheap); the isomorphism (VF2) gives the map."""
    k = G.number_of_nodes()
    A = nx.to_numpy_array(G, nodelist=range(k))
    if not np.all(A.sum(axis=1) == 2 * (r - 2)):
        return None
    A2 = A @ A
    off = ~np.eye(k, dtype=bool)
    if not (np.all(A2[(A > 0) & off] == r - 2) and np.all(A2[(A == 0) & off] == 4)):
        return None
    gm = nx.algorithms.isomorphism.GraphMatcher(G, nx.line_graph(nx.complete_graph(r)))
    if not gm.is_isomorphic():
        return None
    where = {e: i for i, e in enumerate(combinations(range(r), 2))}
    order = [0] * k
    for c, e in gm.mapping.items():
        order[where[tuple(sorted(e))]] = int(c)
    return tuple(order)


def match_srg_block(B: np.ndarray, rtol: float) -> tuple[SRGType, tuple, float, tuple] | None:
    """(type, (z₀, z₁, z₂), residual, order) when the block B (K × K, K = C(r, 2), r ≥ 4) is the SRG
    structure Σ_i z_i P_i of :mod:`landscape.analysis.srg` with its classes on the edges of K_r:

    * the symmetric part's diagonal takes one value (spread ≤ ``rtol``·max|B|);
    * its off-diagonal entries take two distinct values (each cluster's spread ≤ ``rtol``·o and
      their gap > ``rtol``·o, o = the largest |off-diagonal entry|: the off-diagonal entries are
      small beside the diagonal, ~λ, so they are judged on their own scale);
    * the graph of the pairs at one of the two values is isomorphic to the line graph of K_r
      (networkx GraphMatcher), which gives the class ↔ edge map: ``order`` (local indices into B)
      lists the classes on the edges (0,1), (0,2), … (:func:`landscape.analysis.srg.incidence`);
    * z_i = ⟨B', P_i⟩/m_i (B' = B in that order, P_i the Johnson projectors, m_i their ranks), and
      the ``residual`` = max(max|diag(B' − Σ z_i P_i)|/max|B|, max|offdiag(B' − Σ z_i P_i)|/o) must be
      ≤ ``rtol`` (B itself, not its symmetric part: an asymmetric block fails here).

    None when it does not fit (a one-scale block αP₁ of J(r, 2) is ``subsets(r,2)``, matched
    earlier by :func:`read_blocks`)."""
    k = B.shape[0]
    if not is_srg_K(k):
        return None
    r = triangular_r(k)
    B = np.asarray(B, dtype=np.float64)
    S = 0.5 * (B + B.T)
    top = float(np.abs(B).max())
    if top <= 0 or float(np.ptp(np.diag(S))) > rtol * top:
        return None
    iu = np.triu_indices(k, 1)
    off = S[iu]
    o = float(np.abs(off).max())
    if o <= 0:
        return None
    v = np.sort(off)
    gaps = np.diff(v)
    g = int(np.argmax(gaps))
    if gaps[g] <= rtol * o or float(v[g] - v[0]) > rtol * o or float(v[-1] - v[g + 1]) > rtol * o:
        return None
    cut = 0.5 * float(v[g] + v[g + 1])
    order = None
    for mask in (off > cut, off < cut):
        G = nx.Graph()
        G.add_nodes_from(range(k))
        G.add_edges_from(zip(iu[0][mask].tolist(), iu[1][mask].tolist()))
        order = _srg_graph_order(G, r)
        if order is not None:
            break
    if order is None:
        return None
    Bp = B[np.ix_(order, order)]
    P = johnson_projectors(r)
    z = tuple(float(np.sum(Bp * Pi) / m) for Pi, m in zip(P, multiplicities(r)))
    D = Bp - sum(zi * Pi for zi, Pi in zip(z, P))
    res = max(float(np.abs(np.diag(D)).max()) / top, float(np.abs(D[~np.eye(k, dtype=bool)]).max()) / o)
    return (SRGType(r), z, res, order) if res <= rtol else None


def read_blocks(Zbar: np.ndarray, pattern_rtol: float = DEFAULT_PATTERN_RTOL) -> list[Block]:
    """Decompose Z̄ (K, K) into blocks (module docstring), largest first, ties by first class."""
    Zbar = np.asarray(Zbar, dtype=np.float64)
    K = Zbar.shape[0]
    thr = pattern_rtol * np.abs(Zbar).max()
    big = np.abs(Zbar) > thr
    adj = (big | big.T) & ~np.eye(K, dtype=bool)
    ncomp, lab = connected_components(adj.astype(np.int8), directed=False)
    blocks = []
    for c in range(ncomp):
        idx = tuple(int(i) for i in np.nonzero(lab == c)[0])
        k = len(idx)
        if k == 1:
            v = float(Zbar[idx[0], idx[0]])
            blocks.append(Block("self" if abs(v) > thr else "null", idx, v, 0.0))
            continue
        B = Zbar[np.ix_(idx, idx)]
        Sk = simplex(k)
        a = float(np.sum(B * Sk) / np.sum(Sk * Sk))
        res = float(np.linalg.norm(B - a * Sk) / np.linalg.norm(B))
        ok = a > 0 and res <= pattern_rtol
        if ok:
            blocks.append(Block("pair" if k == 2 else "simplex", idx, a, res))
            continue
        sub = match_subset_block(B, pattern_rtol)
        anti = match_antiprism_block(B, pattern_rtol) if sub is None else None
        cap = match_capped_antiprism_block(B, pattern_rtol) if sub is None and anti is None else None
        srg = match_srg_block(B, pattern_rtol) if sub is None and anti is None and cap is None else None
        if sub is not None:
            bt, a2, res2 = sub
            blocks.append(Block("subsets", idx, a2, res2, (bt.m, bt.j)))
        elif anti is not None:
            at, (a2, b2), res2, cyc = anti
            blocks.append(Block("antiprism", idx, a2, res2, (at.m,), (a2, b2), tuple(idx[c] for c in cyc)))
        elif cap is not None:
            ct, params, res2, order = cap
            blocks.append(Block("capped_antiprism", idx, params[0], res2, (ct.m,), params, tuple(idx[c] for c in order)))
        elif srg is not None:
            st, zs, res2, order = srg
            blocks.append(Block("srg", idx, max(abs(x) for x in zs), res2, (st.r,), zs,
                                order=tuple(idx[c] for c in order)))
        else:
            blocks.append(Block("unrecognised", idx, a, res))
    return sorted(blocks, key=lambda b: (-len(b.classes), b.classes))


def _column_mode(col: np.ndarray, tol: float) -> float:
    """The most frequent value of ``col`` (values within ``tol`` of each other counted as one; ties:
    the smaller magnitude), as the mean of its cluster."""
    v = np.sort(col)
    best, best_n = 0.0, 0
    i = 0
    while i < v.size:
        j = i
        while j + 1 < v.size and v[j + 1] - v[i] <= tol:
            j += 1
        m = j - i + 1
        c = float(v[i:j + 1].mean())
        if m > best_n or (m == best_n and abs(c) < abs(best)):
            best, best_n = c, m
        i = j + 1
    return best


def read_centred_blocks(Zbar: np.ndarray, pattern_rtol: float = DEFAULT_PATTERN_RTOL) -> list[Block] | None:
    """The blocks of a *centred* code, or None: Z̄ (K, K) = (I − 11ᵀ/K)·B with B block-diagonal, a
    class on its own (B's column e_c: a ``self`` singleton, Z̄'s column e_c − 1/K) or in simplex
    blocks (pairs). The cross-entropy's logits are centred (1ᵀZ = 0 at every KKT point of the
    max-margin problem and every critical point with weight decay, both because the columns of
    ∂L/∂Z sum to zero), so a code that separates every class with some classes alone — the λ = 0
    softmax codes "p×pair+s×self" (MODEL.md §11) — reads as one block under :func:`read_blocks`.
    B is Z̄ with each column's most frequent entry (the background the centring adds) taken off;
    None unless every block of B is recognised and none is null, so a code this does not describe
    stays ``other``."""
    Zbar = np.asarray(Zbar, dtype=np.float64)
    tol = pattern_rtol * float(np.abs(Zbar).max())
    B = Zbar - np.array([_column_mode(Zbar[:, c], tol) for c in range(Zbar.shape[1])])[None, :]
    blocks = read_blocks(B, pattern_rtol)
    if not blocks or any(b.kind in ("unrecognised", "null") for b in blocks):
        return None
    return blocks


def blocks_pattern(blocks: list[Block]) -> str:
    """Canonical pattern name of recognised blocks (see :func:`landscape.theory.pattern_name`)."""
    sizes = [len(b.classes) for b in blocks if b.kind in ("simplex", "pair", "null")]
    return pattern_name(sizes, sum(b.kind == "self" for b in blocks),
                        types=[b.block_type for b in blocks if b.kind in ("subsets", "antiprism", "capped_antiprism", "srg")])


def describe_logits(Zbar: np.ndarray, blocks: list[Block], ranks: dict, rtol: float = DEFAULT_PATTERN_RTOL) -> dict:
    """What can be read off a point whose logits match no catalogued block (JSON-able):

    * ``shared_directions``: classes whose class-mean logit vectors (columns of Z̄) are parallel,
      as groups (singletons left out);
    * ``gram_values``: the distinct values of the normalised class-mean Gram matrix
      G = Z̄ᵀZ̄/max diag G (clustered within ``rtol``) and, per class, how many times each occurs;
      ``regular`` when every class sees the same counts (a symmetric, association-scheme-like
      structure);
    * ``block_sizes`` (connected components of the class graph), ``rank_per_layer``;
    * ``z_singular_values`` (of Z̄, relative to the largest) and ``one_scale``: all non-zero ones
      equal within ``rtol`` (then Z̄ = α·M̂ with M̂ a projector and a closed form follows,
      :func:`landscape.analysis.theory.one_scale_closed_form`)."""
    Zbar = np.asarray(Zbar, dtype=np.float64)
    K = Zbar.shape[0]
    norms = np.linalg.norm(Zbar, axis=0)
    U = Zbar / np.where(norms > 0, norms, 1.0)
    cos = U.T @ U
    _, lab = connected_components((cos >= 1 - 1e-8).astype(np.int8), directed=False)
    shared = [sorted(int(i) for i in np.nonzero(lab == c)[0]) for c in np.unique(lab)]
    G = Zbar.T @ Zbar
    G = G / max(float(np.diag(G).max()), 1e-300)
    vals = np.sort(G.ravel())
    centres = []
    for v in vals:
        if not centres or v - centres[-1][-1] > rtol:
            centres.append([v])
        else:
            centres[-1].append(v)
    levels = [float(np.mean(c)) for c in centres]
    counts = [[int(np.sum(np.abs(G[i] - lv) <= rtol)) for lv in levels] for i in range(K)]
    sv = np.linalg.svd(Zbar, compute_uv=False)
    r = int(np.sum(sv > rtol * sv[0])) if sv[0] > 0 else 0
    rel = sv / sv[0] if sv[0] > 0 else sv
    return {"shared_directions": [g for g in shared if len(g) > 1],
            "gram_values": levels, "gram_counts": counts, "regular": all(c == counts[0] for c in counts),
            "block_sizes": sorted((len(b.classes) for b in blocks), reverse=True),
            "rank_per_layer": {k: v.rank for k, v in ranks.items()},
            "z_singular_values": [float(x) for x in rel[:max(r, 1)]], "z_rank": r,
            "one_scale": bool(r > 0 and float(rel[r - 1]) >= 1 - rtol)}


# ----- the report ------------------------------------------------------------------------------
@dataclass
class StructureReport:
    """Ranks, collapse metrics, Z̄ (K, K: column c = mean logit vector of class c) and label."""

    label: str
    rank_pattern: tuple
    rank_names: tuple
    ranks: dict
    layers: list
    Zbar: np.ndarray
    blocks: list
    pattern: str | None
    dnc_holds: bool
    zbar_simplex_residual: float | None
    thresholds: dict = field(default_factory=dict)
    description: dict | None = None
    geometry: dict = field(default_factory=dict)

    def singular_values(self) -> dict:
        """{name: singular values (descending)} for every entry of the rank pattern."""
        return {k: v.singular_values for k, v in self.ranks.items()}

    def to_dict(self) -> dict:
        return {"label": self.label, "rank_pattern": list(self.rank_pattern), "rank_names": list(self.rank_names),
                "ranks": {k: v.to_dict() for k, v in self.ranks.items()},
                "dnc": [m.to_dict() for m in self.layers], "Zbar": self.Zbar.tolist(),
                "blocks": [b.to_dict() for b in self.blocks], "pattern": self.pattern,
                "dnc_holds": self.dnc_holds, "zbar_simplex_residual": json_float(self.zbar_simplex_residual),
                "thresholds": dict(self.thresholds), "description": self.description,
                "geometry": dict(self.geometry)}


def analyse_structure(spec: ModelSpec, theta, *, rank_rtol: float = DEFAULT_RANK_RTOL,
                      pattern_rtol: float = DEFAULT_PATTERN_RTOL, collapse_tol: float = DEFAULT_COLLAPSE_TOL,
                      zero_atol: float = DEFAULT_ZERO_ATOL) -> StructureReport:
    """Structure of the point θ (P,) (module docstring for every definition and threshold)."""
    model = DeepUFM(spec.as_float64())
    th = as_theta64(spec, theta).reshape(1, -1)
    pre, post, Z = model.forward(th)
    F = [f[0].numpy() for f in model.factors(th)]
    pre = [h[0].numpy() for h in pre]
    post = [h[0].numpy() for h in post]
    Z = Z[0].numpy()
    K, n, L = spec.K, spec.n, spec.L
    relu = spec.activation == "relu"

    ranks, layers = {}, []
    for l in range(L):
        hname = f"H{l + 1}"
        ranks[hname] = numerical_rank(pre[l], rank_rtol, zero_atol)
        feats = [(hname, pre[l])]
        if relu and l > 0:
            ranks[f"σ{hname}"] = numerical_rank(post[l], rank_rtol, zero_atol)
            feats.append((f"σ{hname}", post[l]))
        ranks[f"W{l + 1}"] = numerical_rank(F[l + 1], rank_rtol, zero_atol)
        for j, (nm, Hf) in enumerate(feats):
            feeds = j == len(feats) - 1
            layers.append(layer_metrics(nm, Hf, K, n, rank_rtol, F[l + 1] if feeds else None,
                                        f"W{l + 1}" if feeds else None, centre_weight_rows=feeds and l == L - 1))
    ranks["Z"] = numerical_rank(Z, rank_rtol, zero_atol)
    layers.append(layer_metrics("Z", Z, K, n, rank_rtol))
    names = tuple(ranks)
    Zbar = class_means(Z, K, n)

    zmax = float(np.abs(Z).max())
    Sres = _normalised_distance(Zbar, simplex(K)) if zmax > 0 else None
    finite = lambda v: v is not None and v <= collapse_tol  # noqa: E731
    # ReLU: the frame is judged where the data see it, after the ReLU (σH_l) and in the logits;
    # H₁ and the pre-activations may carry a switched-off negative part (MODEL.md §9)
    framed = [m for m in layers if not relu or m.name.startswith("σ") or m.name == "Z"]
    dnc_holds = (all(finite(m.dnc1) and (m.weight is None or finite(m.dnc3)) for m in layers)
                 and all(finite(m.dnc2_etf) for m in framed))
    if zmax <= zero_atol:
        label, blocks, pattern = ZERO.name, [], None
    else:
        blocks = read_blocks(Zbar, pattern_rtol)
        if spec.loss == "ce" and any(b.kind == "unrecognised" for b in blocks):
            blocks = read_centred_blocks(Zbar, pattern_rtol) or blocks
        recognised = all(b.kind != "unrecognised" for b in blocks)
        z_collapsed = layers[-1].dnc1_trace_ratio is not None and layers[-1].dnc1_trace_ratio <= collapse_tol
        pattern = blocks_pattern(blocks) if recognised else None
        pairs = [b for b in blocks if b.kind == "pair"]
        single = [b for b in blocks if b.kind in ("null", "self")]
        if spec.loss == "ce":
            # one block holding every class: a simplex (for K = 2 the simplex is a pair, ±α/2)
            dnc_logits = len(blocks) == 1 and blocks[0].kind in ("simplex", "pair") and len(blocks[0].classes) == K
        else:   # MSE: Z̄ = γI, every class a "self" block of one scale (an orthogonal frame)
            dnc_logits = (len(blocks) == K and all(b.kind == "self" for b in blocks)
                          and _normalised_distance(Zbar, np.eye(K)) <= pattern_rtol)
        of_rank = mse_frame_rank(Zbar, pattern_rtol) if spec.loss == "mse" else None
        if dnc_logits and dnc_holds:
            label = DNC.name
        elif of_rank is not None and layers[-1].dnc1_trace_ratio is not None \
                and layers[-1].dnc1_trace_ratio <= collapse_tol:
            label = f"OF({of_rank})"   # Z̄ = γ·(rank-r orthogonal projector): r classes collapsed, the rest null
        elif not (recognised and z_collapsed):
            label = OTHER.name
        elif len(pairs) == K // 2 and len(single) == K % 2:
            label = PAIRS.name
        else:
            label = pattern
    thresholds = {"rank_rtol": rank_rtol, "pattern_rtol": pattern_rtol, "collapse_tol": collapse_tol,
                  "zero_atol": zero_atol}
    geometry = {m.name: layer_geometry(m, collapse_tol) for m in layers}
    description = describe_logits(Zbar, blocks, ranks, pattern_rtol) if label == OTHER.name else None
    return StructureReport(label, tuple(ranks[k].rank for k in names), names, ranks, layers, Zbar, blocks,
                           pattern, bool(dnc_holds), Sres, thresholds, description, geometry)


def mse_frame_rank(Zbar: np.ndarray, rtol: float = DEFAULT_PATTERN_RTOL) -> int | None:
    """r where Z̄ = γP for an orthogonal projector P of rank r (within ``rtol`` of γ): the MSE
    structure with r classes collapsed onto an orthogonal frame and the rest null, in any class
    rotation (linear MSE has the continuous class-rotation symmetry,
    :func:`landscape.analysis.symmetry.has_class_rotations`); None otherwise. r = K is Z = γY."""
    Z = np.asarray(Zbar, dtype=np.float64)
    scale = float(np.linalg.norm(Z, 2))
    if scale == 0 or np.linalg.norm(Z - Z.T, 2) > rtol * scale:
        return None
    ev = np.linalg.eigvalsh(0.5 * (Z + Z.T))
    gamma = float(ev.max())
    if gamma <= 0:
        return None
    near_top, near_zero = np.abs(ev - gamma) <= rtol * gamma, np.abs(ev) <= rtol * gamma
    return int(near_top.sum()) if bool(np.all(near_top | near_zero)) else None


def layer_geometry(m: LayerMetrics, collapse_tol: float = DEFAULT_COLLAPSE_TOL) -> str | None:
    """The collapse geometry of one layer's class means (MODEL.md §3, §9): "OF" (orthogonal frame:
    the uncentred Gram ∝ I, ``dnc2_of`` ≤ tol; its global mean is 1/√K of the mean class norm),
    "ETF" (centred simplex ETF, ``dnc2_etf`` ≤ tol, and not an OF; ``global_mean_ratio`` says how
    far the means sit from the origin), or None (neither, or not within-class collapsed)."""
    if m.dnc1_trace_ratio is None or m.dnc1_trace_ratio > collapse_tol:
        return None
    if m.dnc2_of is not None and m.dnc2_of <= collapse_tol:
        return "OF"
    if m.dnc2_etf is not None and m.dnc2_etf <= collapse_tol:
        return "ETF"
    return None
