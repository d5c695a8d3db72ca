"""The named structures a critical point can be labelled with: one table, read everywhere.

A point's label is one of these names, or the name of a block pattern built from the theory's
block types (``simplex(k)``, ``pair``, ``subsets(m,j)``, ``null``, ``self`` joined by "+", see
:func:`landscape.analysis.theory.pattern_name`; their closed forms are
:class:`landscape.analysis.theory.BlockType` and :func:`~landscape.analysis.theory.structure_catalogue`).
How each is recognised is :func:`landscape.analysis.structure.analyse_structure`; its colour in
every figure is ``colour`` here. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class NamedStructure:
    """A label with a name of its own: ``name`` (the label string), what it means, its colour."""

    name: str
    description: str
    colour: str


DNC = NamedStructure("DNC", "deep neural collapse of the member: logits one simplex(K) block (CE) or γI (MSE), "
                            "DNC1–DNC3 at every layer, hidden class means an ETF (linear CE) or an orthogonal "
                            "frame (ReLU, MSE) (MODEL.md §3, §9; closed forms: landscape.analysis.family)",
                     "#1f77b4")
PAIRS = NamedStructure("pairs", "class pairing: every block a pair, plus at most one singleton for odd K "
                                "(MODEL.md §6; closed form: the pair block type)", "#ff7f0e")
ZERO = NamedStructure("zero", "the origin: logits zero within zero_atol (loss log K)", "#7f7f7f")
OTHER = NamedStructure("other", "no catalogued block type: described by landscape.analysis.structure.describe_logits",
                       "#8c564b")
#: Every named structure by its label.
NAMED = {s.name: s for s in (DNC, PAIRS, ZERO, OTHER)}
#: Colour of a point that has no label (not analysed).
UNLABELLED_COLOUR = "#bcbd22"
