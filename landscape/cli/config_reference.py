"""The configuration reference, generated from the option classes: ``docs/configuration-reference.md``.

Every field of every option class that a study file, a sweep file or a net file can set, one
Markdown table per TOML table, with its TOML key, type, default, allowed range and description::

    python -m landscape.cli.config_reference > docs/configuration-reference.md

(or ``--output docs/configuration-reference.md``; :func:`reference_markdown` returns the text).
``tests/test_config_reference.py`` fails when the committed page and this output differ, when an
option class gains a field this module does not describe, and when a documented range or default
disagrees with what :func:`landscape.study.config.load_study` (or ``load_net``) accepts.

Where the facts come from:

* **fields** and their **types**: the dataclasses themselves (:func:`dataclasses.fields`, the
  annotations); the engines from :data:`landscape.engines.stage.ENGINES`;
* **defaults**: the effective value a file that omits the key gets, read from the configuration
  the loaders build from the embedded files (``load_study()``: ``landscape/configs/default.toml``;
  ``load_net()``: the ``digits-linear`` preset); where the class's own default (the dataclass
  default, or the fallback of ``from_dict`` for a key the embedded file does not hold) differs,
  both are given;
* **allowed ranges**: the engine options' declared kinds (:func:`landscape.engines.options.number`,
  :func:`~landscape.engines.options.integer`), else the table :func:`field_docs` in this module,
  written from the validation code. Each range carries values just outside it (refused) and at
  its edge (accepted), which the test feeds to the loaders;
* **descriptions**: the engine options' ``doc`` metadata, else :func:`field_docs`.

No torch: like the configuration modules, this runs in milliseconds.
"""
from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import MISSING, dataclass, field, fields, is_dataclass
from functools import lru_cache
from pathlib import Path

from ..analysis.settings import AnalysisSettings, DedupTolerances
from ..core.init import SCHEMES, InitScheme
from ..core.spec import ACTIVATIONS, DTYPE_NAMES, LOSSES, MAX_DEPTH, ModelSpec
from ..core.validate import INDEX_MAX
from ..engines.stage import ENGINES, StageConfig
from ..net import config as netcfg
from ..net.config import BACKBONES, REGULARISATIONS, TRAIN_DTYPES, NetConfig, Regularisation, load_net
from ..study.config import (CERTIFY_TOL_MAX, CHECK_OFFSET, MODEL_KEYS, NAME_MAX, CrossCheckSettings, SaddleSearch, StudyConfig,
                     certify_range, load_study)
from ..study.transition_state_settings import REFINE_METHODS, STRATEGIES, TransitionStateSettings
from ..study.lambda0_settings import Lambda0Settings
from ..study.sweep_config import MAX_CELLS, SweepConfig

#: Where the generated page lives, relative to the repository root.
REFERENCE_PATH = "docs/configuration-reference.md"
#: The command that regenerates it (quoted in the page and in the test's failure message).
REGENERATE = f"python -m landscape.cli.config_reference > {REFERENCE_PATH}"
#: A smallest positive number "just inside" a range ``> 0``.
TINY = 1e-300


# ----- allowed ranges ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Allowed:
    """An allowed range as the page writes it (``text``), with values just ``outside`` it (each
    refused by the loader with an error naming the field) and values at its edge, ``inside``
    (accepted). Empty tuples: nothing to probe (a derived field, not a key)."""

    text: str
    outside: tuple = ()
    inside: tuple = ()


def positive(maximum: float | None = None) -> Allowed:
    """``check_number``: a finite number > 0 (≤ ``maximum``)."""
    if maximum is None:
        return Allowed("finite number > 0", (0.0, -1.0, math.inf), (TINY,))
    return Allowed(f"finite number > 0 and ≤ {maximum:g}", (0.0, maximum * (1 + 1e-9), math.inf), (TINY, maximum))


def nonnegative() -> Allowed:
    """``check_number(allow_zero=True)``: a finite number ≥ 0."""
    return Allowed("finite number ≥ 0", (-TINY, -1.0, math.inf), (0.0,))


def integer(lo: int, hi: int | None = None, hi_text: str | None = None) -> Allowed:
    """``check_int``: an integer (5, 5.0 or 1e2) ≥ ``lo`` (≤ ``hi``)."""
    if hi is None:
        return Allowed(f"integer ≥ {lo}", (lo - 1, lo + 0.5), (lo,))
    return Allowed(f"integer in [{lo}, {hi_text or hi}]", (lo - 1, lo + 0.5, hi + 1), (lo,))


def choice(options, refused: tuple = (), note: str = "") -> Allowed:
    """``check_choice``: one of ``options`` (strings); ``refused``: listed choices refused by a
    later rule (``note`` says which)."""
    ok = tuple(o for o in options if o not in refused)
    quoted = [f'`"{o}"`' for o in ok]
    text = quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " or " + quoted[-1]
    return Allowed(text + (f"; {note}" if note else ""), ("bogus",) + tuple(refused), ok)


def boolean() -> Allowed:
    """``check_bool``: ``true`` or ``false`` (not 1, not "yes")."""
    return Allowed("`true` or `false`", (1, "yes"), (True, False))


def a_table(name: str) -> Allowed:
    """A table written as a value (``model = 3``) is refused."""
    return Allowed(f"a table: see {name}", (3,), ())


def a_pipeline(name: str, empty_refused: bool = True) -> Allowed:
    """An array of stage tables: a single table (``[stages]``) is refused, and an empty array
    where a pipeline is required."""
    return Allowed(f"array of stage tables ({name}); at least one" if empty_refused else
                   f"array of stage tables ({name})",
                   ({"engine": "gd"},) + (([],) if empty_refused else ()), ([{"engine": "newton"}],))


#: A field that is not a TOML key (derived, or the container of other keys).
NOT_A_KEY = Allowed("—")


@dataclass(frozen=True)
class Doc:
    """What the page says of one field: ``text``; ``allowed`` (None: from the field's metadata,
    engine options only); ``key``: the TOML key where it is not the field name ("" for a field
    that is no key); ``type``: the type as written where the annotation is vague (``tuple``);
    ``context``: other keys of the same table a probe must set (``kind = "standard"``)."""

    text: str
    allowed: Allowed | None = None
    key: str | None = None
    type: str | None = None
    context: dict = field(default_factory=dict)


@lru_cache(maxsize=None)
def _study():
    return load_study()


@lru_cache(maxsize=None)
def _net():
    return load_net()


@lru_cache(maxsize=None)
def field_docs() -> dict[type, dict[str, Doc]]:
    """Description and allowed range of every field of every option class whose own metadata
    does not carry them, keyed by class and field name. A class that gains a field fails
    :func:`reference_markdown` (and the test) until the field is described here."""
    cfg, net = _study(), _net()
    K, L, traj, starts = cfg.model.K, cfg.model.L, cfg.trajectories, cfg.saddles.starts
    lo_tol, hi_tol = certify_range("float64")
    certify = Allowed(f"in [100·ε, {CERTIFY_TOL_MAX:g}] for the dtype: [{lo_tol:.3g}, {hi_tol:g}] in float64 "
                      "(float32 cannot certify)", (lo_tol * 0.99, hi_tol * 1.01, 0.0), (lo_tol, hi_tol))
    device = Allowed('`"auto"`, `"cpu"`, `"cuda"` or `"cuda:N"`', ("gpu", "cuda:", "cuda:x"),
                     ("auto", "cpu", "cuda", "cuda:0"))
    name = Allowed(f"non-empty string of at most {NAME_MAX} characters, no `/`, `\\` or NUL, not `.` or `..`",
                   ("", "a/b", "x" * (NAME_MAX + 1), ".."), ("x" * NAME_MAX,))
    seed_max = "2⁶³ − 1"
    stage_note = "[[stages]], [[saddles.stages]], [[saddles.descend]], [[cross_check.stages]] and a net file's [[handoff]]"
    study = {
        "name": Doc("Study name; the results folder is `runs/<name>-<time>`. With `--set` overrides and no "
                    "`name=` the study is named after them (`default+d=70`).", name),
        "seed": Doc("Study seed: trajectory i starts from a generator seeded by (seed, i), so every start can be "
                    "replayed alone, in any batch.", integer(0, INDEX_MAX, seed_max)),
        "trajectories": Doc("Random starts of the main dynamics: the starts the basin fractions count.",
                            integer(1, CHECK_OFFSET, "2·10⁹")),
        "batch_size": Doc("Starts per committed unit (computed, then stored in one transaction; a killed run "
                          "loses at most the unit in flight).", integer(1)),
        "certify_tol": Doc("‖∇L‖ at or below which a trajectory is a certified critical point; the last stage of "
                           "every pipeline stops there (its `tol` is replaced by this).", certify),
        "model": Doc("The model, the [model] table.", a_table("[model]"), key="[model]"),
        "init": Doc("The random starts, the [init] table.", a_table("[init]"), key="[init]"),
        "stages": Doc("The main dynamics: a pipeline of engine stages, the [[stages]] array.",
                      a_pipeline("[[stages]]"), key="[[stages]]"),
        "saddles": Doc("The saddle search and the descents from saddles, the [saddles] table.",
                       a_table("[saddles]"), key="[saddles]"),
        "dedup": Doc("Tolerances of the deduplication modulo symmetry, the [dedup] table.", a_table("[dedup]"),
                     key="[dedup]"),
        "analysis": Doc("Thresholds of the point analysis, the [analysis] table.", a_table("[analysis]"),
                        key="[analysis]"),
        "transition_states": Doc("The double-ended transition-state search, the [transition_states] table "
                                 "(formerly [connect], still read).", a_table("[transition_states]"),
                                 key="[transition_states]", type="table"),
        "device": Doc("Where the dynamics run: `auto` takes the first GPU torch sees, else the CPU.", device),
        "max_saddle_visits": Doc("Times a descent whose polish reached a saddle is resumed (it must then converge "
                                 "below the saddle's loss) before it is stored uncertified.", integer(0)),
        "kink_rounds": Doc("ReLU models only (other models refuse a value other than 1): rounds of the first "
                           "stage's `max_iter` steps a descent may run; after each round the kink polish "
                           "(`landscape.study.kink_finish`) finishes the rows that have settled on their kinks, "
                           "and the rows it refused run another round.", integer(1, 100)),
        "working_batch": Doc("Trajectories advanced at once; 0: measured for this P and device "
                             "(`landscape.engines.batching`). Results never depend on it.", integer(0)),
        "compile": Doc("`torch.compile` of the gradient: `auto` is on for CUDA, off on the CPU.",
                       choice(("auto", "on", "off"))),
        "cross_check": Doc("A second dynamics on the first starts, the [cross_check] table (formerly [check], "
                           "still read).", a_table("[cross_check]"), key="[cross_check]"),
        "lambda0": Doc("How a λ = 0 study decides its ends, the [lambda0] table (used only with `lambda = 0`).",
                       a_table("[lambda0]"), key="[lambda0]"),
    }
    model = {
        "K": Doc("Classes.", integer(2)),
        "n": Doc("Samples per class (N = K·n columns).", integer(1)),
        "d": Doc("Width: H₁ is d × N, W₁ … W_{L−1} are d × d, W_L is K × d.",
                 Allowed("integer ≥ K (at least the class count)", (K - 1, K + 0.5), (K,))),
        "L": Doc("Depth: the number of weight matrices W₁ … W_L.", integer(1, MAX_DEPTH, "10⁶")),
        "activation": Doc("Nonlinearity σ between the weight layers (never on H₁ or the logits).",
                          choice(ACTIVATIONS)),
        "loss": Doc("`ce`: cross-entropy; `mse`: squared error to the one-hot targets.", choice(LOSSES)),
        "lam": Doc("Weight decay λ of every factor (MODEL.md §2, the paper's equal-λ setting). `0`: no weight "
                   "decay (MODEL.md §11), for the linear CE model with every factor at 0: a λ = 0 study "
                   "(landscape.study.lambda0, the [lambda0] table) certifies directions, not critical points.",
                   Allowed("finite number ≥ 0; 0 only for activation `linear`, loss `ce`, with every factor at 0",
                           (-TINY, -1.0, math.inf), (0.0, TINY)), key="lambda"),
        "lam_H": Doc("λ of H₁ alone; unset: `lambda`.",
                     Allowed("finite number > 0 (0 only where every factor has λ = 0)", (0.0, -1.0, math.inf),
                             (TINY,)), key="lambda_H"),
        "lam_W": Doc("λ of the weights: one number for every W_l, or L numbers (W₁ … W_L); unset: `lambda`.",
                     Allowed("finite number > 0, or an array of L numbers > 0 (0 only where every factor has "
                             "λ = 0)",
                             (0.0, [1e-3] * (L + 1), [1e-3] * (L - 1) + [0.0]), (TINY, [1e-3] * L)),
                     key="lambda_W"),
        "dtype": Doc("Floating-point type of the dynamics (the analysis is always float64).",
                     choice(DTYPE_NAMES, refused=("float32",), note='`"float32"` is refused: its round-off floor '
                            "100·ε = 1.2e-5 lies above the largest certification tolerance 1e-8")),
    }
    init = {
        "name": Doc("`gaussian`: H₁ ~ N(0, scale_H²), W_l ~ N(0, scale_W²/d); `small`: the gaussian scheme × "
                    "alpha (starts near the origin: saddle-to-saddle dynamics); `orthogonal`: H₁ gaussian, "
                    "W_l = scale_W × a Haar-random matrix with orthonormal rows or columns; `spectral`: a balanced "
                    "start, every factor min(K, N) singular values `singular_value` with Haar-random singular "
                    "vectors aligned between consecutive factors (landscape.core.init).", choice(SCHEMES)),
        "scale_H": Doc("Standard deviation of H₁'s entries.", positive()),
        "scale_W": Doc("W_l's entries have standard deviation scale_W/√d (orthogonal: the scale of the "
                       "orthonormal matrix).", positive()),
        "alpha": Doc("Factor of the `small` scheme (the other schemes ignore it).", positive()),
        "scales": Doc("Standard deviations per factor [H₁, W₁, …, W_L]; override scale_H and scale_W.",
                      Allowed("array of L+1 finite numbers ≥ 0", ([1.0] * L, [-1.0] * (L + 1)), ([0.0] * (L + 1),))),
        "singular_value": Doc("The singular value s of every factor of the `spectral` scheme (logits s^{L+1}·UVᵀ); "
                              "unset: 1.", Allowed("finite number > 0; only with name `spectral`",
                                                   (0.0, -1.0, math.inf), (TINY,)),
                              context={"name": "spectral"}),
    }
    lambda0 = {
        "continue_iter": Doc("Steps of the margin flow after the descent: the adaptive Dormand–Prince integrator "
                             "on log L, the same path as the gradient flow, to margins of thousands; 0: the "
                             "descent's end is decided as it is.", integer(0)),
        "continue_rtol": Doc("Relative error tolerance per step of the margin flow.", positive(0.1)),
        "support_rtol": Doc("At the end, a margin constraint is in the support when its margin is at most "
                            "(1 + support_rtol)·(smallest margin).", positive(0.5)),
        "label_rtol": Doc("Pattern and collapse tolerances of the structure table when the end is labelled (the "
                          "polished direction is labelled at the [analysis] tolerances).", positive(0.5)),
        "kkt_tol": Doc("A polished direction is a KKT point of the max-margin problem when its relative "
                       "stationarity residual is at most this.", positive(1e-4)),
        "gamma_rtol": Doc("Faithfulness bound: 0 ≤ (γ_polished − γ_end)/γ_polished ≤ gamma_rtol, γ_end the "
                          "normalised margin of the end's centred logits at their balanced factorisation.",
                          positive(1.0)),
        "curvature_tol": Doc("Second order: an eigenvalue of the Lagrangian's Hessian on the support's tangent "
                             "space below −curvature_tol makes the direction a saddle of the margin.", positive()),
        "rule": Doc("`strict`: certified when the polished direction is a local maximum of the margin with the "
                    "end's support and label and γ within gamma_rtol; `stable`: also when the strict rule leaves "
                    "an end unsettled but the polish from the margin flow's midpoint reaches the same direction "
                    "(needs continue_iter ≥ 2).", choice(("strict", "stable"))),
        "extend_rounds": Doc("An end left direction_unsettled, margin_saddle or kkt_unconverged flows "
                             "continue_iter/2 more steps and is decided again (the end it flowed from its midpoint), "
                             "up to this many times; the first decision that certifies stands (needs "
                             "continue_iter ≥ 2; 0: none).", integer(0, 100)),
        "check_starts": Doc("The first check_starts starts run again with every descent stage's max_iter × "
                            "check_factor and are decided the same way; the summary reports the agreement.",
                            Allowed("integer in [0, trajectories]", (-1, traj + 1, 0.5), (0,))),
        "check_factor": Doc("How many times longer the check's descent runs.", integer(2)),
    }
    stage = {
        "engine": Doc(f"The engine of this stage; its options (the tables below) sit in the same table, side by "
                      f"side with these common fields. Stage tables are {stage_note}.", choice(tuple(ENGINES))),
        "options": Doc("The engine's options: written as fields of the stage table itself, not as a sub-table.",
                       NOT_A_KEY, key="", type="engine fields"),
        "max_iter": Doc("Iteration budget of the stage.", integer(1)),
        "tol": Doc("‖∇L‖ at which a row converges in this stage; the last stage of a pipeline takes "
                   "`certify_tol` instead.", positive()),
        "stall_window": Doc("A row stalls when, for this many iterations, its loss has not fallen by more than "
                            "stall_loss_rtol·|L| and ‖∇L‖ has not reached a new minimum by a factor "
                            "1 − stall_rtol.", integer(1)),
        "stall_rtol": Doc("Relative fall of ‖∇L‖ below its smallest value so far that counts as progress.",
                          positive()),
        "stall_loss_rtol": Doc("Relative fall of the loss that counts as progress (a plateau whose loss still "
                               "falls is never stalled).", positive()),
        "flat_rtol": Doc("A stall is `gradient_flat` when ‖H∇L‖/‖∇L‖ ≤ flat_rtol (Frye et al.), else "
                         "`plateau`.", positive()),
        "diverge_loss": Doc("A loss above it (or a non-finite one) stops the row as `diverged`.", positive()),
        "entry_grad_norm": Doc("Rows that enter this stage (after the first): those converged in the previous "
                               "one, or stopped there (max_iter, stalled) with ‖∇L‖ ≤ this. Python's None admits "
                               "only converged rows.", positive()),
        "curvature_check": Doc("Negative-curvature test (batched Lanczos) before a row counts as converged; "
                               "unset: on for the descent engines gd, flow and lbfgs, off for newton.", boolean()),
        "curvature_steps": Doc("Hessian-vector products of the test's Lanczos run.", integer(1)),
        "curvature_tau_rel": Doc("The test proves negative curvature at a Ritz value below "
                                 "−max(curvature_tau_rel·min λ, curvature_grad_mult·‖∇L‖).", positive()),
        "curvature_grad_mult": Doc("The ‖∇L‖ term of that threshold: it keeps the O(‖∇L‖) curvature of the "
                                   "symmetry orbit from counting (dropped with curvature_gauge).", positive()),
        "curvature_backoff": Doc("Iterations before a row with negative curvature is tested again (doubling "
                                 "each time).", integer(1)),
        "curvature_gauge": Doc("Project the symmetry-orbit directions out of the test (exact; T²P work per "
                               "tested row, T = d(d−1)/2 per gauge interface, so for small models) and drop the "
                               "‖∇L‖ term: a finisher may then take over at a larger ‖∇L‖ without changing where "
                               "the descent ends.", boolean()),
    }
    saddles = {
        "starts": Doc("Saddle-search trajectories (0: none); stored with the study, never counted in the basin "
                      "fractions.", integer(0, CHECK_OFFSET, "2·10⁹")),
        "index_offset": Doc("Start j is trajectory index index_offset + j, with that index's seed.",
                            Allowed("integer ≥ trajectories and ≤ 2⁶³ − starts; the rows must not overlap the "
                                    "[cross_check] rows 2·10⁹ …", (traj - 1, INDEX_MAX - max(starts, 1) + 2), (traj,))),
        "eps": Doc("Descents start at θ_s ± eps·v (a Euclidean step) along the saddle's unstable directions v.",
                   positive()),
        "max_rounds": Doc("Rounds of connecting the saddles that descents find in turn (each round connects "
                          "every saddle not yet connected).", integer(1)),
        "max_descents": Doc("Most descents per saddle (most negative directions first; two per direction).",
                            integer(2)),
        "directions": Doc("Unit vectors drawn from the eigenspace of a cluster of (near-)degenerate negative "
                          "eigenvalues, seeded by the saddle (distinct eigenvalues: their eigenvectors).",
                          integer(1)),
        "degeneracy_rtol": Doc("Negative eigenvalues equal within this (relative to the most negative one) form "
                               "one degenerate cluster.", positive()),
        "init": Doc("The saddle-search starts' distribution, a [saddles.init] table with the fields of [init]; "
                    "unset: the study's [init].", Allowed("a table with the fields of [init]", ("gaussian",),
                                                         ({"name": "small"},)), key="[saddles.init]"),
        "stages": Doc("Pipeline of the saddle-search starts (default Newton-MR: critical points of any index).",
                      a_pipeline("[[saddles.stages]]"), key="[[saddles.stages]]"),
        "descend": Doc("Pipeline of the descents from saddle ± eps·v; each certified end point becomes an edge of "
                       "the basin graph.", a_pipeline("[[saddles.descend]]"), key="[[saddles.descend]]"),
    }
    cross_check = {
        "starts": Doc("The first `starts` main starts run again with [[cross_check.stages]]; the study reports how often "
                      "both end at the same point modulo symmetry. Stored apart (index 2·10⁹ + j), never counted "
                      "in the fractions.", Allowed("integer in [0, trajectories]; > 0 needs [[cross_check.stages]]",
                                                   (-1, traj + 1, 0.5), (0,))),
        "stages": Doc("The second dynamics, a pipeline of stage tables (required when starts > 0).",
                      a_pipeline("[[cross_check.stages]]", empty_refused=False), key="[[cross_check.stages]]",
                      type="array of tables"),
    }
    dedup = {
        "loss_atol": Doc("Two points are one only if |ℓ_a − ℓ_b| ≤ loss_atol + loss_rtol·max(|ℓ_a|, |ℓ_b|).",
                         nonnegative()),
        "loss_rtol": Doc("Relative part of the loss test (see loss_atol).", nonnegative()),
        "sv_atol": Doc("Per factor, |s_a,i − s_b,i| ≤ sv_atol + sv_rtol·max(s_a,1, s_b,1) for every singular value "
                       "(relative to the factor's largest); the same for the logits' z_sv and z_within.",
                       nonnegative()),
        "sv_rtol": Doc("Relative part of the singular-value test (see sv_atol).", nonnegative()),
        "zbar_atol": Doc("A class permutation π with |Z̄_a[i,j] − Z̄_b[πi,πj]| ≤ zbar_atol + "
                         "zbar_rtol·max(max|Z̄_a|, max|Z̄_b|) for all i, j (class-mean logits).", nonnegative()),
        "zbar_rtol": Doc("Relative part of the class-mean-logit test (see zbar_atol).", nonnegative()),
    }
    analysis = {
        "tau": Doc("Zero threshold of Hessian eigenvalues (μ < −τ negative, |μ| ≤ τ zero); unset: "
                   "τ = max(tau_rel·min λ, noise_mult·ε·ρ(H)).", positive()),
        "tau_rel": Doc("Relative part of the default τ (the curvature scale of genuine modes is λ).", positive()),
        "noise_mult": Doc("Round-off part of the default τ, in units of ε·ρ(H).", positive()),
        "dense_limit": Doc("Dense Hessian iff P ≤ dense_limit; unset: the measured cost model decides "
                           "(within dense_budget_s).", integer(1)),
        "dense_budget_s": Doc("Seconds the dense path may be predicted to take (unset dense_limit).", positive()),
        "lanczos_k": Doc("Eigenvalues per end of the spectrum computed by block Lanczos.", integer(1)),
        "lanczos_tol": Doc("Relative residual each Lanczos eigenvalue is computed to.", positive()),
        "lanczos_seed": Doc("Seed of the Lanczos start blocks.", integer(0, INDEX_MAX, seed_max)),
        "symmetry_rtol": Doc("Numerical rank threshold of the factors when the symmetry space is built.",
                             positive()),
        "rank_rtol": Doc("Numerical rank: singular values above max(rank_rtol·s₁, zero_atol).", positive()),
        "pattern_rtol": Doc("Tolerance of the block pattern read from the class-mean logits Z̄ (links, simplex "
                            "and subset blocks, the MSE γI).", positive()),
        "collapse_tol": Doc("DNC1, DNC2 and DNC3 must fall below it at every layer for the DNC label.", positive()),
        "zero_atol": Doc("Absolute floor of the numerical rank; the `zero` label when max|Z| ≤ zero_atol.",
                         nonnegative()),
    }
    transition_states = {
        "max_pairs": Doc("Most pairs of minima searched (0: no double-ended search).", integer(0)),
        "pairs": Doc("Further pairs of point ids to search (first).",
                     Allowed("array of [id, id] pairs of point ids (integers ≥ 0)", ([[0]], [[-1, 0]], [[0, 1.5]]),
                             ([[0, 1]],)), type="array of [integer, integer]"),
        "images": Doc("Interior images of each nudged elastic band.", integer(3)),
        "spring": Doc("Spring constant of the band.", positive()),
        "climb": Doc("A climbing image.", boolean()),
        "doubly_nudged": Doc("The DNEB spring-force correction.", boolean()),
        "neb_iter": Doc("Band iterations.", integer(1)),
        "neb_tol": Doc("A band has converged when its largest image force is below this.", positive()),
        "neb_dt": Doc("FIRE's first step.", positive()),
        "max_depth": Doc("Rounds of the recursion on unconnected sub-pairs (`pairs` strategy).", integer(0)),
        "refine": Doc("How the climbing image is refined to a saddle: `minmode` (minimum-mode following: index-1 "
                      "saddles; Newton-MR where it fails) or `newton` (Newton-MR: the nearest critical point of any "
                      "index).", choice(REFINE_METHODS)),
        "minmode_iter": Doc("Iterations of the min-mode refinement.", integer(1)),
        "strategy": Doc("`graph`: DoubleEndedConnect over all minima, until every minimum holding a basin count is "
                        "in one component (or max_pairs, or budget_s); `pairs`: the max_pairs most-visited pairs, "
                        "then max_depth rounds of sub-pairs.", choice(STRATEGIES)),
        "budget_s": Doc("Seconds the `graph` strategy may spend.", positive()),
        "split": Doc("Descend from every interior image that is a local minimum of the band's loss profile and "
                     "split the pair at a new minimum found there (AutoNEB-style).", boolean()),
        "split_depth": Doc("Such an image must lie at least split_depth × the band's loss range below both "
                           "neighbours.", positive(1.0)),
        "insert": Doc("Images inserted where the relaxed band resolves a maximum worst, then relaxed again "
                      "(AutoNEB-style); 0: no insertion.", integer(0)),
    }
    sweep = {
        "name": Doc("The sweep's name (the base study's `name`): cell c is the study `<name>-<c>`, in "
                    "`cells/<c>/`.", Allowed("as a study's `name`"), key="name"),
        "base": Doc("The study the grid is laid on: every study field of the file, layered on the embedded "
                    "default study, with the `--set` overrides that are not axes.", NOT_A_KEY, key="",
                    type="study"),
        "axes": Doc("One axis per `KEY = [values]`, keys as for `--set` (`d`, `lambda`, `init.scale_H`, "
                    "`stages.0.lr`, …); the grid is their Cartesian product. `--set sweep.KEY=[...]` replaces "
                    "or adds an axis.",
                    Allowed(f"non-empty arrays of distinct values; any `--set` key but `name`; at most "
                            f"{MAX_CELLS:,} cells in all"), key="[sweep]", type="table of arrays"),
        "cells": Doc("One validated study per grid point, named by its overrides (`d=8,lambda=0.003`).",
                     NOT_A_KEY, key="", type="derived"),
    }
    net_top = {
        "raw": Doc("The layered file the configuration came from (stored with the run).", NOT_A_KEY, key="",
                   type="derived"),
        "name": Doc("Run name.", name),
        "seed": Doc("Networks are seeded seed, seed+1, …, seed+seeds−1.",
                    Allowed("integer in [0, 2⁶³ − seeds]", (-1, INDEX_MAX - net.seeds + 2), (0,))),
        "seeds": Doc("Networks trained (as one batch).", integer(1)),
        "device": Doc("Where the networks are trained.", device),
        "dtype": Doc("Floating-point type of training; the UFM hand-off and its analysis are float64.",
                     choice(TRAIN_DTYPES)),
        "certify_tol": Doc("‖∇L‖ of a certified UFM critical point (the last [[handoff]] stage's `tol`).",
                           Allowed(f"in [{lo_tol:.3g}, {hi_tol:g}] (100·ε of float64 to {CERTIFY_TOL_MAX:g}: the "
                                   "hand-off is float64 whatever `dtype`)", certify.outside, certify.inside)),
        "dataset": Doc('A dataset name (`"digits"`: scikit-learn\'s handwritten digits, offline) or a path to an '
                       "`.npz` file holding `X` and integer labels `y`.",
                       Allowed("non-empty string", ("", 3), ("digits",))),
        "n_train": Doc("Training samples per class.", integer(1)),
        "n_test": Doc("Test samples per class.", integer(0)),
        "standardise": Doc("Standardise every input feature with the training mean and standard deviation.",
                           boolean()),
        "split_seed": Doc("Seed of the order in which each class's samples are split into training and test.",
                          integer(0)),
        "backbone": Doc("`mlp` (ReLU layers) or `cnn` (3×3 convolutions, one channel images); its last layer maps "
                        "to d with no activation: H₁.", choice(BACKBONES)),
        "hidden": Doc("MLP widths, or CNN channels; unset: [128] for mlp, [8, 16] for cnn.",
                      Allowed("non-empty array of integers ≥ 1", ([], [0]), ([1],))),
        "d": Doc("Width of the head (the features H₁ are d × N).", integer(2)),
        "L": Doc("Depth of the head: W₁ … W_L.", integer(1, MAX_DEPTH, "10⁶")),
        "activation": Doc("Nonlinearity of the head.", choice(("linear", "relu"))),
        "reg": Doc("The weight decay, the [regularisation] table.", a_table("[regularisation]"),
                   key="[regularisation]"),
        "lr": Doc("Learning rate of full-batch gradient descent.", positive()),
        "max_iter": Doc("Step budget.", integer(1)),
        "grad_tol": Doc("Converged (`converged_grad`) when ‖∇θ‖ ≤ grad_tol (over every parameter of a seed).",
                        positive()),
        "loss_rtol": Doc("Converged (`converged_loss`) when the loss fell by less than loss_rtol·|loss| over the "
                         "last `window` steps.", nonnegative()),
        "window": Doc("Steps of the loss test.", integer(1)),
        "check_every": Doc("Steps between the stop tests (the only host synchronisation).", integer(1)),
        "handoff": Doc("The engine stages run on the deep UFM from the trained head, a pipeline of stage tables "
                       "(as [[stages]]).", a_pipeline("[[handoff]]"), key="[[handoff]]", type="array of tables"),
        "sv_atol": Doc("Singular values above it count (the paper's absolute threshold).", positive()),
        "sv_rtol": Doc("Singular values above sv_rtol·σ_max count (a relative threshold).", positive(1.0)),
        "analysis": Doc("The point analysis of the handed-off UFM point: the fields of the study's [analysis] "
                        "table.", a_table("[analysis]"), key="[analysis]"),
    }
    standard = {"kind": "standard"}
    reg = {
        "kind": Doc("`ufm`: λ_W on the head, λ_H on the features, backbone_decay on the backbone; `standard`: "
                    "one λ on every parameter, none on the features.", choice(REGULARISATIONS)),
        "lambda_W": Doc("Weight decay of the head's W_l (kind `ufm`).", positive()),
        "lambda_H": Doc("Weight decay of the features H₁ (kind `ufm`, MODEL.md's convention).", positive()),
        "backbone_decay": Doc("Weight decay of the backbone (kind `ufm`; 0: the backbone is free).", nonnegative()),
        "lam": Doc("The one weight decay of kind `standard` (also the λ_W of the hand-off).", positive(),
                   key="lambda", context=standard),
        "handoff_lambda_H": Doc("Feature decay λ_H of the deep UFM the head is handed to (kind `standard`).",
                                positive(), context=standard),
    }
    return {StudyConfig: study, ModelSpec: model, InitScheme: init, StageConfig: stage, SaddleSearch: saddles,
            CrossCheckSettings: cross_check, DedupTolerances: dedup, AnalysisSettings: analysis, TransitionStateSettings: transition_states,
            Lambda0Settings: lambda0, SweepConfig: sweep, NetConfig: net_top, Regularisation: reg}


def option_classes() -> tuple[type, ...]:
    """Every option class the page documents: those of :func:`field_docs` and each engine's options."""
    engines = tuple(dict.fromkeys(e.options for e in ENGINES.values()))
    return tuple(field_docs()) + engines


# ----- rows and sections ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    """One field of the page: its class and field name, TOML key ("" if it is none), type, the
    default cell as written, the allowed range and the description; ``context``: see :class:`Doc`."""

    owner: type
    field: str
    key: str
    type: str
    default: str
    allowed: Allowed
    doc: str
    context: dict


@dataclass(frozen=True)
class Section:
    """One TOML table of the page. ``file``: ``study``, ``sweep`` or ``net``; ``table``: its path
    (``""`` the top level, ``model``, ``stages``, ``regularisation``, …); ``engine``: for the
    option tables of one engine; ``qualifier``: how the loaders' errors name its fields
    (``init.``, ``stages[0].``; ``""`` for the top level and [model])."""

    file: str
    title: str
    table: str
    intro: str
    rows: tuple[Row, ...]
    qualifier: str = ""
    engine: str | None = None

    def patch(self, key: str, value, context: dict | None = None) -> dict:
        """The smallest file (a dict, layered on the embedded one by the loader) that sets ``key`` of
        this table to ``value``: a stage field is set on the first of two stages (the last stage's
        ``tol`` is replaced by ``certify_tol``)."""
        ctx = dict(context or {})
        if self.table in ("stages", "handoff"):
            first = {"engine": self.engine or "gd", **ctx, key: value}
            return {self.table: [first, {"engine": "newton"}]}
        if self.table == "":
            return {**ctx, key: value}
        return {self.table: {**ctx, key: value}}


def toml_literal(value) -> str:
    """``value`` written as TOML; a float in the shortest form that reads back exactly (0.001, 1e-10,
    1e8: an exponent form where Python's repr has one or the number is ≥ 10⁶)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
        text = repr(value)
        if "e" in text or abs(value) >= 1e6:   # 1e-10, 1e8: the shortest mantissa that reads back exactly
            for digits in range(17):
                sci = f"{value:.{digits}e}"
                if float(sci) == value:
                    break
            mantissa, exponent = sci.split("e")
            text = f"{mantissa}e{int(exponent)}"
        return text
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_literal(v) for v in value) + "]"
    raise TypeError(f"no TOML literal for {value!r}")


def _is_literal(value) -> bool:
    if isinstance(value, (list, tuple)):
        return all(_is_literal(v) for v in value)
    return isinstance(value, (bool, int, float, str))


#: A class default that does not exist: the key is required where the file is not layered on an
#: embedded one ([model] K, n, d, L).
REQUIRED = object()


def default_cell(effective, own=MISSING) -> str:
    """The default as the page writes it: a TOML literal in backticks (the value a file that omits
    the key gets), ``unset``, and the class's own default where it differs."""
    def one(v):
        if v is None:
            return "unset"
        return f"`{toml_literal(v)}`" if _is_literal(v) else "—"

    def norm(v):
        v = list(v) if isinstance(v, tuple) else v
        return type(v), v

    if effective is MISSING:
        return "—"
    text = one(effective)
    if own is not MISSING and norm(own) != norm(effective):
        text += " (class default: " + ("none, required" if own is REQUIRED else one(own)) + ")"
    return text


_SCALARS = {"int": "integer", "float": "float", "str": "string", "bool": "boolean"}


def render_type(cls: type, f, doc: Doc) -> str:
    """The type column: the doc's override, else the annotation (``float | None`` → ``float,
    optional`` where the default is None; ``tuple[float, ...]`` → ``array of float``; an option
    class → ``table``; ``tuple[StageConfig, ...]`` → ``array of tables``). An annotation this
    does not know raises: describe its type in :func:`field_docs`."""
    if doc.type is not None:
        return doc.type
    parts = [p.strip() for p in str(f.type).split("|")]
    optional = "None" in parts and f.default is None
    out = []
    for p in (p for p in parts if p != "None"):
        m = re.fullmatch(r"tuple\[(\w+), \.\.\.\]", p)
        inner = m.group(1) if m else None
        if p in _SCALARS:
            out.append(_SCALARS[p])
        elif inner in _SCALARS:
            out.append(f"array of {_SCALARS[inner]}")
        elif inner == "StageConfig":
            out.append("array of tables")
        elif p in {c.__name__ for c in field_docs()}:
            out.append("table")
        else:
            raise TypeError(f"{cls.__name__}.{f.name}: no type for the annotation {f.type!r}; give one "
                            f"(Doc(type=...)) in landscape.cli.config_reference.field_docs")
    return " or ".join(out) + (", optional" if optional else "")


def _doc(cls: type, f) -> Doc:
    """The :class:`Doc` of field ``f`` of ``cls``: the table's, else the field's metadata (an engine
    option declared with ``number`` or ``integer`` and a ``doc``)."""
    table = field_docs().get(cls, {})
    if f.name in table:
        return table[f.name]
    kind, text = f.metadata.get("kind"), f.metadata.get("doc", "")
    if kind in ("number", "integer") and text:
        allowed = (integer(1) if kind == "integer" else
                   nonnegative() if f.metadata.get("allow_zero") else positive())
        return Doc(text[:1].upper() + text[1:] + ("" if text.endswith(".") else "."), allowed)
    raise LookupError(f"{cls.__name__}.{f.name} is not described: add it to "
                      "landscape.cli.config_reference.field_docs (description and allowed range), "
                      f"then regenerate: {REGENERATE}")


def _field(cls: type, name: str):
    for f in fields(cls):
        if f.name == name:
            return f
    raise LookupError(f"{cls.__name__} has no field {name!r} (stale entry in field_docs)")


def _row(cls: type, name: str, effective=MISSING, own=MISSING) -> Row:
    f = _field(cls, name)
    doc = _doc(cls, f)
    key = f.name if doc.key is None else doc.key
    if own is MISSING and f.default is not MISSING:
        own = f.default
    allowed = doc.allowed if doc.allowed is not None else positive()
    default = "—" if key == "" else default_cell(effective, own)
    return Row(owner=cls, field=f.name, key=key, type=render_type(cls, f, doc), default=default,
               allowed=allowed, doc=doc.text, context=dict(doc.context))


def _attr(obj, name: str):
    v = getattr(obj, name)
    if is_dataclass(v) or isinstance(v, dict) or (isinstance(v, tuple) and v and is_dataclass(v[0])):
        return MISSING   # a table or a pipeline: described in its own section
    return v


def _bare_study() -> StudyConfig:
    """The study :meth:`StudyConfig.from_dict` builds from a bare file (only what it requires), the
    source of the class defaults of keys without a dataclass default."""
    m = _study().model
    return StudyConfig.from_dict({"model": {"K": m.K, "n": m.n, "d": m.d, "L": m.L}, "stages": [{"engine": "gd"}]})


def _rows(cls: type, names, eff_obj=None, bare_obj=None, required=()) -> tuple[Row, ...]:
    out = []
    for name in names:
        if eff_obj is None:   # a stage table: its class defaults are its defaults
            eff = _field(cls, name).default
        else:
            eff = _attr(eff_obj, name)
        own = MISSING
        if name in required:
            own = REQUIRED
        elif bare_obj is not None:
            own = _attr(bare_obj, name)
        out.append(_row(cls, name, eff, own))
    return tuple(out)


def _names(cls: type) -> list[str]:
    return [f.name for f in fields(cls)]


def _stage_summary(stage: StageConfig, last: bool) -> str:
    """A stage as ``engine = "gd"`` and the fields that differ from that engine's class defaults."""
    base = StageConfig(engine=stage.engine).settings()
    mine = stage.settings()
    parts = [f"`engine = {toml_literal(stage.engine)}`"]
    for k, v in mine.items():
        if k == "engine" or (k == "tol" and last):
            continue
        if v != base[k]:
            parts.append(f"`{k} = {toml_literal(v)}`")
    return ", ".join(parts) + (" (its `tol` is `certify_tol`)" if last else "")


def _pipeline_lines(title: str, stages) -> list[str]:
    if not stages:
        return [f"* {title}: none."]
    out = [f"* {title}:"]
    for i, s in enumerate(stages):
        out.append(f"    {i + 1}. {_stage_summary(s, i == len(stages) - 1)}")
    return out


def sections() -> tuple[Section, ...]:
    """Every table of a study, sweep and net file, in page order."""
    cfg, bare = _study(), _bare_study()
    net, net_bare = _net(), NetConfig.from_dict({})
    wrong = {f: k for k, f in MODEL_KEYS.items() if (_doc(ModelSpec, _field(ModelSpec, f)).key or f) != k}
    if wrong:
        raise LookupError(f"field_docs' [model] keys differ from landscape.study.config.MODEL_KEYS: {wrong}")
    out = [
        Section("study", "Top level", "", "The fields outside any table, and the tables a study file may hold.",
                _rows(StudyConfig, _names(StudyConfig), cfg, bare)),
        Section("study", "[model]", "model", "The deep UFM (names of [the model](MODEL.md)); K, n, d and L are "
                "required where a file is not layered on the embedded default.",
                _rows(ModelSpec, _names(ModelSpec), cfg.model, bare.model, required=("K", "n", "d", "L"))),
        Section("study", "[init]", "init", "The distribution of the random starts (each trajectory's start is "
                "drawn with its own seed). `[saddles.init]` takes the same fields.",
                _rows(InitScheme, _names(InitScheme), cfg.init, bare.init), qualifier="init."),
        Section("study", "Stage tables: common fields", "stages",
                "Every stage table ([[stages]], [[saddles.stages]], [[saddles.descend]], [[cross_check.stages]], a net "
                "file's [[handoff]]) holds these fields and the options of its engine side by side. Arrays of "
                "tables are replaced whole by a file (never merged stage by stage), so a stage's defaults are the "
                "class defaults below; the pipelines of the embedded default study are listed after the engines.",
                _rows(StageConfig, _names(StageConfig)), qualifier="stages[0]."),
    ]
    for name, engine in ENGINES.items():
        out.append(Section("study", f'Stage tables: engine = "{name}"', "stages",
                           f"Options of `{engine.options.__module__}.{engine.options.__name__}` "
                           f"({'a descent engine' if engine.descent else 'a critical-point finder'}).",
                           _rows(engine.options, _names(engine.options)), qualifier="stages[0].", engine=name))
    out += [
        Section("study", "[saddles]", "saddles", "The saddle search: where saddles come from, and the descents "
                "that connect every saddle found to the points below it (the basin graph).",
                _rows(SaddleSearch, _names(SaddleSearch), cfg.saddles, bare.saddles), qualifier="saddles."),
        Section("study", "[cross_check]", "cross_check", "A second dynamics on the first starts of the main one "
                "(formerly [check], a name still read).",
                _rows(CrossCheckSettings, _names(CrossCheckSettings), cfg.cross_check, bare.cross_check),
                qualifier="cross_check."),
        Section("study", "[dedup]", "dedup", "When two certified points are the same point modulo symmetry.",
                _rows(DedupTolerances, _names(DedupTolerances), cfg.dedup, bare.dedup), qualifier="dedup."),
        Section("study", "[analysis]", "analysis", "Every threshold of the point analysis (Hessian spectrum, "
                "symmetry, structure and label); stored with every analysed point.",
                _rows(AnalysisSettings, _names(AnalysisSettings), cfg.analysis, bare.analysis),
                qualifier="analysis."),
        Section("study", "[transition_states]", "transition_states", "Transition states between minima (nudged "
                "elastic bands); formerly [connect], a name still read.",
                _rows(TransitionStateSettings, _names(TransitionStateSettings), cfg.transition_states,
                      bare.transition_states), qualifier="transition_states."),
        Section("study", "[lambda0]", "lambda0", "How a λ = 0 study (`[model] lambda = 0`, landscape.study.lambda0) "
                "decides where each start goes: the descent, the margin flow that follows its path further, the "
                "polish to a KKT point of the max-margin problem and the rule that certifies it.",
                _rows(Lambda0Settings, _names(Lambda0Settings), cfg.lambda0, bare.lambda0), qualifier="lambda0."),
        Section("sweep", "[sweep]", "sweep", "A sweep file is a study file (every table above, layered on the "
                "embedded default study) plus a `[sweep]` table of `KEY = [values]`. The fields of "
                "`landscape.study.sweep_config.SweepConfig`:",
                (_row(SweepConfig, "name", cfg.name),)
                + tuple(_row(SweepConfig, n) for n in ("base", "axes", "cells"))),
    ]
    net_own = {n: getattr(netcfg, attr) for n, attr in (("top", "_TOP"), ("net", "_NET"), ("train", "_TRAIN"),
                                                         ("analysis", "_ANALYSIS_OWN"))}
    tables = {"reg": "top", "handoff": "top", "analysis": "top", "raw": "top"}
    placed = {f: t for t, names in net_own.items() for f in names}
    unplaced = [f for f in _names(NetConfig) if f not in placed and f not in tables]
    if unplaced:
        raise LookupError(f"NetConfig fields {unplaced} belong to no table of a net file: place them in "
                          "landscape.cli.config_reference.sections")
    by_table = {t: [f for f in _names(NetConfig) if placed.get(f, tables.get(f)) == t] for t in net_own}
    out += [
        Section("net", "Top level", "", "A net file (`landscape net`) is layered on the `digits-linear` preset; "
                "its defaults are that preset's, its class defaults those of "
                "`landscape.net.config.NetConfig.from_dict` for an empty file.",
                _rows(NetConfig, by_table["top"], net, net_bare)),
        Section("net", "[net]", "net", "The dataset and the network (backbone and deep UFM head).",
                _rows(NetConfig, by_table["net"], net, net_bare), qualifier="net."),
        Section("net", "[regularisation]", "regularisation", "The weight decay. A table of the other `kind` "
                "replaces the preset's instead of merging with it (the kinds take different fields).",
                _rows(Regularisation, _names(Regularisation), net.reg, net_bare.reg), qualifier="regularisation."),
        Section("net", "[train]", "train", "Full-batch gradient descent of every seed at once.",
                _rows(NetConfig, by_table["train"], net, net_bare), qualifier="train."),
        Section("net", "[analysis]", "analysis", "The measurement of the trained head and the analysis of the "
                "handed-off UFM point: the study's [analysis] fields, and two of its own.",
                _rows(NetConfig, by_table["analysis"], net, net_bare)
                + _rows(AnalysisSettings, _names(AnalysisSettings), net.analysis, net_bare.analysis),
                qualifier="analysis."),
    ]
    return tuple(out)


# ----- the page ------------------------------------------------------------------------------------
_CODE = re.compile(r"(`[^`]*`)")


def _cell(text: str) -> str:
    """Text for a table cell: one line, ``|`` escaped outside code spans."""
    text = " ".join(str(text).split())
    return "".join(p if p.startswith("`") else p.replace("|", "\\|") for p in _CODE.split(text))


def _key_cell(row: Row) -> str:
    return f"`{row.key}`" if row.key else "—"


def _table(section: Section) -> list[str]:
    lines = ["| key | field | type | default | allowed | description |", "|---|---|---|---|---|---|"]
    for r in section.rows:
        cells = [_key_cell(r), f"`{r.owner.__name__}.{r.field}`", r.type, r.default, r.allowed.text, r.doc]
        lines.append("| " + " | ".join(_cell(c) for c in cells) + " |")
    return lines


def _heading(section: Section, level: int) -> str:
    return "#" * level + " " + section.title


def reference_markdown() -> str:
    """The page ``docs/configuration-reference.md``: every field of every option class."""
    cfg, net = _study(), _net()
    lo_tol, _ = certify_range("float64")
    out = [
        "# Configuration reference",
        "",
        f"*Generated from the option classes by `{REGENERATE}`: do not edit by hand. "
        "`tests/test_config_reference.py` fails when this page and the classes disagree.*",
        "",
        "Every key a study file, a sweep file or a net file can set, one table per TOML table "
        "(the guide is [Configuration](configuration.md)). The columns:",
        "",
        "* **key**: the TOML key (also the `--set` key within its table: `stages.0.lr`, `transition_states.images`);",
        "* **field**: the option class and its field (Python names: `ModelSpec.lam` is `lambda`);",
        "* **default**: what a file that omits the key gets: every study and sweep file is layered on the "
        "embedded default study (`landscape/configs/default.toml`), every net file on the `digits-linear` "
        "preset. Where the class's own default differs (the dataclass default, or what `from_dict` takes for a "
        "file not layered on an embedded one) it follows as *class default*; `unset` is a field left out;",
        "* **allowed**: what the validation accepts. A value outside is refused before anything runs (and "
        "before torch is imported) with one line naming the field, e.g. `stages[0].lr=0 is invalid: must be a "
        "finite number > 0`. Integers may be written as integral floats (`1e4`). Memory-bound fields "
        "(`trajectories`, `batch_size`, the model's size, `transition_states.images`) are also refused when a run is "
        "estimated to exceed the memory budget (`LANDSCAPE_MEMORY_BUDGET`).",
        "",
        f"Study indices: main trajectories 0 … trajectories − 1, check rows {CHECK_OFFSET:,} + j, saddle-search "
        f"starts `saddles.index_offset` + j; the certification tolerance's floor is 100·ε of the dtype "
        f"({lo_tol:.3g} in float64).",
        "",
        "## Study files",
        "",
    ]
    secs = sections()
    for s in secs:
        if s.file == "study":
            out += [_heading(s, 3), "", s.intro, ""] + _table(s) + [""]
            if s.engine == list(ENGINES)[-1]:
                out += ["### Default pipelines", "",
                        "The stages of the embedded default study (fields that differ from the engine's class "
                        "defaults; a file that gives a pipeline replaces it whole):", ""]
                out += _pipeline_lines("`[[stages]]`", cfg.stages)
                out += _pipeline_lines("`[[saddles.stages]]`", cfg.saddles.stages)
                out += _pipeline_lines("`[[saddles.descend]]`", cfg.saddles.descend)
                out += _pipeline_lines("`[[cross_check.stages]]`", cfg.cross_check.stages)
                out += [""]
    out += ["## Sweep files", ""]
    for s in secs:
        if s.file == "sweep":
            out += [_heading(s, 3), "", s.intro, ""] + _table(s) + [""]
    out += ["## Net files", ""]
    for s in secs:
        if s.file == "net":
            out += [_heading(s, 3), "", s.intro, ""] + _table(s) + [""]
            if s.title == "[train]":
                out += ["### [[handoff]]", "",
                        "The engine stages run on the deep UFM from each trained head: stage tables as in a study "
                        "(common fields and engine options above), the last one's `tol` is `certify_tol`. "
                        "Default (the preset's, else `landscape.net.config.DEFAULT_HANDOFF`):", ""]
                out += _pipeline_lines("`[[handoff]]`", net.handoff) + [""]
    return "\n".join(out).rstrip("\n") + "\n"


def main(argv=None) -> int:
    """``python -m landscape.cli.config_reference [--output PATH]``: the page on standard output,
    or written to PATH."""
    parser = argparse.ArgumentParser(prog="python -m landscape.cli.config_reference",
                                     description="Generate docs/configuration-reference.md from the option classes.")
    parser.add_argument("--output", "-o", help="write the page here instead of standard output")
    args = parser.parse_args(argv)
    text = reference_markdown()
    if args.output:
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.buffer.write(text.encode("utf-8"))
        sys.stdout.flush()
    return 0


if __name__ == "__main__":   # pragma: no cover
    sys.exit(main())
