"""Gradient-conflict analysis (paper appendix C): per-objective gradient cosines of a trained
model, whole backbone and per layer, plots, and a suggested ``vm`` level hierarchy.

Layering: uses data/, nets/, moo/, text/ and, beside it, train/'s objective loss
(:mod:`osoup.train.loss`) and experiment-dir contract (:mod:`osoup.train.experiment`); never
bin/ (and train/ never imports conflict/). :mod:`.suggest` works on any cosine matrix;
:mod:`.analysis` on any per-layer gradient vectors (no model needed), scored with
:func:`osoup.moo.conflict_scores`; :mod:`.gradients` computes them for a SoupModel;
:mod:`.inputs` resolves what to analyse; :mod:`.report` runs one analysis and writes its
files; :mod:`.plots` draws the figures.
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
