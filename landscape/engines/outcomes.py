"""Every way a trajectory ends, in one place: the stop reasons and the stop details, with messages.

In the spirit of diffrax's ``RESULTS``: an enumeration whose members carry the human message (and,
where the study's diagnosis has one, the advice it gives). Members are ``str``-valued
(``Outcome.MAX_ITER == "max_iter"``, ``str(Outcome.MAX_ITER) == "max_iter"``), so what is stored
(the database's ``stop_reason`` columns, ``summary.json``'s ``stop_reasons`` keys, ``directions.json``)
is the plain value, and results folders written before this module read the same.

* :class:`Outcome`: the stop reason, exactly one per trajectory. Which members a producer writes:
  :data:`STOP_REASONS` (the batched driver, min-mode following, the study's trajectories),
  :data:`TRAIN_STOP_REASONS` (a network's training, ``landscape net``), :data:`LAMBDA0_STOP_REASONS`
  (a start of a λ = 0 study), :data:`EDGE_STOP_REASONS` (a saddle descent, besides
  ``reason (detail)`` of an uncertified descent, :func:`with_detail`).
* :class:`Detail`: the stop detail that qualifies a reason (``''``: none). A detail may carry a
  free-text explanation after ``": "`` (``kink: …``, why the kink polish refused the row;
  ``stable: …``): :meth:`Detail.explained`, :meth:`Detail.heads`.

``docs/results-folder.md`` lists the members with their messages (:func:`markdown_table`; a test
keeps the two equal).
"""
from __future__ import annotations

from enum import Enum


class _Described(str, Enum):
    """A ``str`` enumeration whose members carry a one-line ``message`` and optional ``advice``
    (a template that the diagnosis fills with ``str.format``)."""

    def __new__(cls, value: str, message: str, advice: str = ""):
        obj = str.__new__(cls, value)
        obj._value_ = value
        obj.message = message
        obj.advice = advice
        return obj

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @classmethod
    def parse(cls, text) -> "_Described":
        """The member whose value is ``text``; ValueError naming the members otherwise."""
        try:
            return cls(text)
        except ValueError:
            raise ValueError(f"{text!r} is not an {cls.__name__} value (one of "
                             f"{', '.join(m.value for m in cls)})") from None

    @classmethod
    def lookup(cls, text):
        """The member whose value is ``text``, or None (a value this version does not know)."""
        return cls._value2member_map_.get(str(text))

    def explained(self, why: str) -> str:
        """This member followed by a free-text explanation: ``"<value>: <why>"``."""
        return f"{self.value}: {why}"

    def heads(self, text) -> bool:
        """Whether ``text`` is this member, alone or :meth:`explained`."""
        s = str(text)
        return s == self.value or s.startswith(self.value + ": ")


class Outcome(_Described):
    """Why a trajectory (a descent, a saddle search, a network's training, a λ = 0 start) stopped."""

    # ----- the batched driver (run_engine / run_pipeline), min-mode following, the study -----
    CONVERGED = ("converged",
                 "‖∇L‖ ≤ the stage's tol, below the row's loss ceiling if it has one, with no negative-curvature "
                 "witness for a descent that checks curvature")
    MAX_ITER = ("max_iter", "the row's iteration budget ran out first",
                "raise the iteration budget ({budget}), or a faster engine (flow, lbfgs) for stage 0")
    DIVERGED = ("diverged",
                "the loss or gradient became non-finite, or the loss exceeded diverge_loss (a λ = 0 start: "
                "non-finite parameters at the end, or its descent diverged)",
                "the loss exceeded stages.I.diverge_loss: reduce the step of the first stage")
    STALLED = ("stalled",
               "for stall_window iterations neither did the loss fall by more than stall_loss_rtol·|L| nor did "
               "‖∇L‖ reach a new minimum by a factor 1 − stall_rtol (the detail: plateau or gradient_flat)",
               "the loss stopped falling before ‖∇L‖ reached the hand-off tolerance (plateau) or the gradient "
               "is flat (‖H∇L‖ small): raise stages.I.stall_window, or finish with newton")
    # ----- a network's training (landscape net) -----
    CONVERGED_GRAD = ("converged_grad", "a network's training: ‖∇L‖ ≤ grad_tol")
    CONVERGED_LOSS = ("converged_loss",
                      "a network's training: the loss fell by less than loss_rtol·|L| over the last window")
    # ----- a saddle descent (an edge of the graph) -----
    RETURNED = ("returned to the saddle", "a descent from a saddle certified at that saddle itself (it never "
                "left it): no edge")
    # ----- a start of a λ = 0 study -----
    CERTIFIED = ("certified",
                 "a λ = 0 start whose polished max-margin direction is a KKT point without negative margin "
                 "directions, settled at the end (detail strict) or reached from the flow's midpoint too "
                 "(detail stable: …); after more rounds of margin flow ([lambda0] extend_rounds) the detail "
                 "says how many (strict: after r …, or stable: … (after r …))")
    DIRECTION_UNSETTLED = ("direction_unsettled",
                           "a λ = 0 start whose support, label or γ at the end differ from its polished "
                           "direction's: the margin flow had not settled")
    MARGIN_SADDLE = ("margin_saddle",
                     "a λ = 0 start whose polished direction has negative directions of the margin: the end "
                     "lingers near a saddle")
    KKT_UNCONVERGED = ("kkt_unconverged", "a λ = 0 start whose polish failed or ended above kkt_tol")
    NOT_SEPARATED = ("not_separated", "a λ = 0 start whose smallest margin is ≤ 0 at the end")


class Detail(_Described):
    """What qualifies a stop reason (stored as the trajectory's ``stop_detail``; ``''``: nothing)."""

    PLATEAU = ("plateau", "a stall where ‖H∇L‖/‖∇L‖ > flat_rtol")
    GRADIENT_FLAT = ("gradient_flat",
                     "a stall where ‖H∇L‖/‖∇L‖ ≤ flat_rtol: the gradient lies in a near-null direction of the "
                     "Hessian (Frye et al.'s gradient-flat points)")
    NEGATIVE_CURVATURE = ("negative_curvature",
                          "stopped uncertified after a negative-curvature witness where it would have converged "
                          "or been handed to the next stage")
    TRUST_REGION = ("trust_region", "a stall where the engine's trust radius fell below its min_step "
                    "(min-mode following)")
    SADDLE_VISITS = ("saddle_visits",
                     "still at a saddle after its last allowed visit (max_saddle_visits) or with no iterations "
                     "left")
    KINK = ("kink",
            "certified on its ReLU kink manifold by the kink polish (`kink: …`: the polish refused the row, "
            "and why)",
            "a known limitation: with weight decay the minima of a ReLU model put pre-activations exactly on "
            "the kink (MODEL.md §10), where gradient descent converges sub-linearly and ‖∇L‖ ≤ certify_tol is "
            "the wrong test. The kink polish (landscape.study.kink_finish) certified the ends whose active set "
            "had settled; these had not (or their point is not Clarke-stationary on its kinks, or is a saddle "
            "there). More iterations (--set stages.0.max_iter=…) let more active sets settle")
    STRICT = ("strict", "a certified λ = 0 start: the end agrees with its polished direction")
    STABLE = ("stable",
              "a certified λ = 0 start whose end disagrees with its polished direction (`stable: …` says how) "
              "but the polish from the flow's midpoint reaches the same direction")


#: Stop reasons of the batched driver, in the order the summary counts them.
STOP_REASONS = (Outcome.CONVERGED, Outcome.MAX_ITER, Outcome.DIVERGED, Outcome.STALLED)
#: Stop reasons of a network's training.
TRAIN_STOP_REASONS = (Outcome.CONVERGED_GRAD, Outcome.CONVERGED_LOSS, Outcome.MAX_ITER, Outcome.DIVERGED)
#: Stop reasons of a λ = 0 start, in the order its summary lists them.
LAMBDA0_STOP_REASONS = (Outcome.CERTIFIED, Outcome.DIRECTION_UNSETTLED, Outcome.MARGIN_SADDLE,
                        Outcome.KKT_UNCONVERGED, Outcome.NOT_SEPARATED, Outcome.DIVERGED)
#: Stop reasons of a saddle descent that reached a point or its saddle (others: :func:`with_detail`).
EDGE_STOP_REASONS = (Outcome.CONVERGED, Outcome.RETURNED)
#: Details of a stalled row.
STALL_DETAILS = (Detail.GRADIENT_FLAT, Detail.PLATEAU, Detail.TRUST_REGION)


def with_detail(reason, detail) -> str:
    """``reason`` with its detail in parentheses when there is one: ``"stalled (plateau)"``, the
    form of the uncertified rows of a summary and of an edge's stop reason."""
    return str(reason) + (f" ({detail})" if detail else "")


def split_detail(text: str) -> tuple[Outcome, str]:
    """The inverse of :func:`with_detail`: (stop reason, detail); ValueError where the reason is
    not an :class:`Outcome`."""
    s = str(text)
    head, sep, rest = s.partition(" (")
    if sep and rest.endswith(")") and Outcome.lookup(head) is not None:
        return Outcome(head), rest[:-1]
    return Outcome.parse(s), ""


def markdown_table() -> str:
    """The members of :class:`Outcome` and :class:`Detail` with their messages, as the Markdown
    tables of ``docs/results-folder.md``."""
    lines = []
    for cls, what in ((Outcome, "Stop reason"), (Detail, "Stop detail")):
        lines += [f"| {what} | Meaning |", "| --- | --- |"]
        lines += [f"| `{m.value}` | {m.message.replace('|', chr(92) + '|')} |" for m in cls]
        lines.append("")
    return "\n".join(lines[:-1])
