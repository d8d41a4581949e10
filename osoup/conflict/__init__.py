"""Gradient-conflict analysis (paper appendix C): per-objective gradient cosines of a trained
model, whole backbone and per layer, plots, and a suggested ``vm`` level hierarchy.

Layering: uses data/, nets/, moo/, text/; never train/ or bin/. :mod:`.suggest` works on any
cosine matrix; :mod:`.analysis` on any per-layer gradient vectors (no model needed);
:mod:`.gradients` computes them for a SoupModel; :mod:`.plots` draws the figures.
"""
from osoup.conflict.analysis import (
    MODES,
    WHOLE,
    ConflictResult,
    GradientAccumulator,
    conflict_score,
    cosine_from_gram,
    markdown_summary,
    to_json_dict,
)
from osoup.conflict.suggest import Clustering, Suggestion, average_linkage, levels_spec, suggest_levels

__all__ = [
    "MODES",
    "WHOLE",
    "Clustering",
    "ConflictResult",
    "GradientAccumulator",
    "Suggestion",
    "average_linkage",
    "conflict_score",
    "cosine_from_gram",
    "levels_spec",
    "markdown_summary",
    "suggest_levels",
    "to_json_dict",
]
