"""Cosine similarity of per-objective gradients (paper appendix C, eq. 30), whole model and per
layer, in two flavours:

* ``averaged`` (the paper's): each objective's gradient is averaged over N batches first, then
  cos(ḡ_i, ḡ_j). Noise that cancels across batches does not show.
* ``per-batch``: cos(g_i^b, g_j^b) for the b-th batch of each objective, averaged over b. It
  measures the conflict a single training step sees, and is lower in magnitude than the
  averaged one when gradients are noisy.

Everything is kept as small K×K Gram matrices per layer, so the whole-model numbers are sums
of the layer ones and nothing of size D is stored beyond one running sum per objective and
layer (plus the current batch's gradients for the per-batch mode).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from osoup.moo import conflict_scores

MODES = ("averaged", "per-batch")
WHOLE = "whole"
MODE_TITLES_MD = {
    "averaged": "cosine of gradients averaged over {n} batches (paper eq. 30)",
    "per-batch": "mean of per-batch cosines over {n} batches",
}


def cosine_from_gram(gram: np.ndarray) -> np.ndarray:
    """cos_ij = G_ij / sqrt(G_ii G_jj); NaN where either gradient is exactly zero (undefined)."""
    gram = np.asarray(gram, dtype=np.float64)
    norms = np.sqrt(np.clip(np.diag(gram), 0.0, None))
    denom = np.outer(norms, norms)
    with np.errstate(invalid="ignore", divide="ignore"):
        cos = np.where(denom > 0, gram / np.where(denom > 0, denom, 1.0), np.nan)
    return np.clip(cos, -1.0, 1.0)


def pair_indices(k: int) -> list[tuple[int, int]]:
    """Objective pairs (i, j), i < j, in row-major order."""
    return [(i, j) for i in range(k) for j in range(i + 1, k)]


def conflict_score(cos: np.ndarray) -> float:
    """The conflict score of a K×K cosine matrix: the mean pairwise cosine over pairs i < j,
    as :func:`osoup.moo.conflict_scores` defines it for layer selection (undefined pairs, NaN
    here because a gradient was zero, are left out; NaN if no pair is defined). The more
    negative, the more the layer's objectives conflict (paper appendix C)."""
    c = torch.as_tensor(np.asarray(cos, dtype=np.float64))
    defined = torch.isfinite(c)
    pairs = torch.ones(c.shape, dtype=torch.bool).triu(1) & defined
    # A cosine matrix is the Gramian of unit vectors; an undefined diagonal is a zero gradient.
    return float(conflict_scores(torch.where(defined, c, 0.0), pairs))


@dataclass
class ConflictResult:
    """All numbers of one analysis. ``cos[mode][layer]`` is a K×K matrix; layer ``"whole"`` is
    the whole backbone. ``norms[mode][layer]`` is per objective: the norm of the averaged
    gradient (``averaged``) or the mean per-batch norm (``per-batch``)."""

    objectives: list[str]
    layers: list[str]
    num_batches: int
    cos: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    norms: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    layer_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def modes(self) -> list[str]:
        return [m for m in MODES if m in self.cos]

    @property
    def primary(self) -> str:
        """The mode that drives ranking and suggestions: the paper's averaged one if present."""
        return "averaged" if "averaged" in self.cos else self.modes[0]

    def layer_scores(self, mode: str | None = None) -> dict[str, float]:
        mode = mode or self.primary
        return {layer: conflict_score(self.cos[mode][layer]) for layer in self.layers}

    def layer_ranking(self, mode: str | None = None) -> list[str]:
        """Layers, most conflicting (lowest score) first; undefined scores last."""
        scores = self.layer_scores(mode)
        return sorted(self.layers, key=lambda l: (not np.isfinite(scores[l]), scores[l] if np.isfinite(scores[l]) else 0.0))

    def pair_table(self, mode: str | None = None, layer: str = WHOLE) -> list[tuple[str, str, float]]:
        """(objective_i, objective_j, cos) for every pair, most conflicting first."""
        mode = mode or self.primary
        c = self.cos[mode][layer]
        rows = [(self.objectives[i], self.objectives[j], float(c[i, j])) for i, j in pair_indices(len(self.objectives))]
        return sorted(rows, key=lambda r: (not np.isfinite(r[2]), r[2] if np.isfinite(r[2]) else 0.0))


class GradientAccumulator:
    """Running statistics of per-objective gradients, one batch (of every objective) at a time.

    ``add_batch(grads)`` takes ``grads[objective][layer]`` as flat tensors (same layers and
    sizes every time). For the averaged mode it keeps one running sum per objective and layer;
    for the per-batch mode it adds the batch's cosine matrices (per layer and whole) to running
    sums, so batches are never stored.
    """

    def __init__(self, objectives: list[str], layers: list[str], modes: tuple[str, ...] = MODES):
        bad = [m for m in modes if m not in MODES]
        if bad or not modes:
            raise ValueError(f"modes must be a non-empty subset of {MODES}, got {modes}")
        if len(set(objectives)) != len(objectives) or not objectives:
            raise ValueError(f"objectives must be distinct and non-empty: {objectives}")
        if WHOLE in layers:
            raise ValueError(f"layer name {WHOLE!r} is reserved for the whole model")
        self.objectives = list(objectives)
        self.layers = list(layers)
        self.modes = tuple(modes)
        self.num_batches = 0
        self.layer_sizes: dict[str, int] = {}
        self._sums: dict[str, dict[str, torch.Tensor]] = {}
        k = len(objectives)
        self._cos_sum = {l: np.zeros((k, k)) for l in [*self.layers, WHOLE]}
        self._cos_count = {l: np.zeros((k, k)) for l in [*self.layers, WHOLE]}
        self._norm_sum = {l: np.zeros(k) for l in [*self.layers, WHOLE]}

    def add_batch(self, grads: Mapping[str, Mapping[str, torch.Tensor]]) -> None:
        missing = [o for o in self.objectives if o not in grads]
        if missing:
            raise ValueError(f"add_batch: no gradients for objectives {missing}")
        for o in self.objectives:
            for l in self.layers:
                if l not in grads[o]:
                    raise ValueError(f"add_batch: objective {o!r} has no gradient for layer {l!r}")
                n = grads[o][l].numel()
                if self.layer_sizes.setdefault(l, n) != n:
                    raise ValueError(f"add_batch: layer {l!r} of {o!r} has {n} values, expected {self.layer_sizes[l]}")
        if "averaged" in self.modes:
            for o in self.objectives:
                sums = self._sums.setdefault(o, {})
                for l in self.layers:
                    # Sums keep the gradients' dtype (a float64 copy of a 100M-parameter model per
                    # objective would be large); Gram matrices are formed in float64, layer by layer.
                    g = grads[o][l].detach().reshape(-1)
                    if l in sums:
                        sums[l] += g
                    else:
                        sums[l] = g.clone()
        if "per-batch" in self.modes:
            whole = np.zeros((len(self.objectives),) * 2)
            for l in self.layers:
                mat = torch.stack([grads[o][l].detach().reshape(-1).to(torch.float64) for o in self.objectives])
                gram = (mat @ mat.T).cpu().numpy()
                whole += gram
                self._add_cos(l, gram)
            self._add_cos(WHOLE, whole)
        self.num_batches += 1

    def _add_cos(self, layer: str, gram: np.ndarray) -> None:
        cos = cosine_from_gram(gram)
        ok = np.isfinite(cos)
        self._cos_sum[layer] += np.where(ok, cos, 0.0)
        self._cos_count[layer] += ok
        self._norm_sum[layer] += np.sqrt(np.clip(np.diag(gram), 0.0, None))

    def result(self) -> ConflictResult:
        if self.num_batches == 0:
            raise ValueError("no batches were added")
        res = ConflictResult(self.objectives, self.layers, self.num_batches, layer_sizes=dict(self.layer_sizes))
        k = len(self.objectives)
        if "averaged" in self.modes:
            cos, norms = {}, {}
            whole = np.zeros((k, k))
            for l in self.layers:
                mat = torch.stack([self._sums[o][l].to(torch.float64) for o in self.objectives]) / self.num_batches
                gram = (mat @ mat.T).cpu().numpy()
                whole += gram
                cos[l], norms[l] = cosine_from_gram(gram), np.sqrt(np.clip(np.diag(gram), 0.0, None))
            cos[WHOLE], norms[WHOLE] = cosine_from_gram(whole), np.sqrt(np.clip(np.diag(whole), 0.0, None))
            res.cos["averaged"], res.norms["averaged"] = cos, norms
        if "per-batch" in self.modes:
            cos, norms = {}, {}
            for l in [*self.layers, WHOLE]:
                with np.errstate(invalid="ignore", divide="ignore"):
                    cos[l] = np.where(self._cos_count[l] > 0, self._cos_sum[l] / np.maximum(self._cos_count[l], 1), np.nan)
                norms[l] = self._norm_sum[l] / self.num_batches
            res.cos["per-batch"], res.norms["per-batch"] = cos, norms
        return res


def _num(x: float) -> float | None:
    """JSON number, or null for an undefined (NaN) value."""
    return float(x) if np.isfinite(x) else None


def _mat(m: np.ndarray) -> list[list[float | None]]:
    return [[_num(v) for v in row] for row in np.asarray(m)]


def to_json_dict(result: ConflictResult) -> dict:
    """Every number of the result (NaN written as null), keyed by mode; ``primary`` names the
    mode used for the ranking and the suggested levels."""
    out: dict = {
        "objectives": result.objectives,
        "layers": result.layers,
        "layer_sizes": result.layer_sizes,
        "num_batches": result.num_batches,
        "primary_mode": result.primary,
        "mode_descriptions": {
            "averaged": "cosine of the per-objective gradients averaged over the batches (paper eq. 30)",
            "per-batch": "mean over batches of the cosine of the per-batch gradients",
        },
        "modes": {},
    }
    for mode in result.modes:
        scores = result.layer_scores(mode)
        out["modes"][mode] = {
            "whole_model": _mat(result.cos[mode][WHOLE]),
            "per_layer": {l: _mat(result.cos[mode][l]) for l in result.layers},
            "layer_score": {l: _num(scores[l]) for l in result.layers},
            "layer_ranking": result.layer_ranking(mode),
            "whole_model_score": _num(conflict_score(result.cos[mode][WHOLE])),
            "pairs_most_conflicting_first": [
                {"a": a, "b": b, "cos": _num(c)} for a, b, c in result.pair_table(mode)
            ],
            "grad_norm": {
                l: dict(zip(result.objectives, (_num(v) for v in result.norms[mode][l])))
                for l in [WHOLE, *result.layers]
            },
            "grad_norm_meaning": ("norm of the averaged gradient" if mode == "averaged"
                                  else "mean over batches of the per-batch gradient norm"),
        }
    return out


def _md_matrix(names: list[str], m: np.ndarray) -> list[str]:
    lines = ["| | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for i, n in enumerate(names):
        lines.append(f"| {n} | " + " | ".join("n/a" if not np.isfinite(v) else f"{v:+.3f}" for v in m[i]) + " |")
    return lines


def markdown_summary(result: ConflictResult, settings: dict, clusters: list[list[str]] | None = None,
                     suggestions: list | None = None, top_layers: int = 5) -> str:
    """Short human-readable summary: settings, whole-model matrices, most conflicting pairs and
    layers, and (if given) the clusters and suggested levels (objects with .spec and .note)."""
    lines = ["# Gradient conflict analysis", ""]
    lines.append("Settings: " + ", ".join(f"{k}={v}" for k, v in settings.items()))
    lines.append("")
    for mode in result.modes:
        lines += [f"## Whole backbone: {MODE_TITLES_MD[mode].format(n=result.num_batches)}", ""]
        lines += _md_matrix(result.objectives, result.cos[mode][WHOLE])
        lines.append("")
    p = result.primary
    lines += [f"## Most conflicting pairs ({p})", ""]
    for a, b, c in result.pair_table(p)[:5]:
        lines.append(f"- {a} / {b}: {c:+.3f}")
    lines += ["", f"## Most conflicting layers ({p}; score = mean pairwise cosine)", ""]
    scores = result.layer_scores(p)
    for l in result.layer_ranking(p)[:top_layers]:
        lines.append(f"- {l}: {scores[l]:+.3f}")
    if clusters is not None:
        lines += ["", "## Clusters of supervised objectives", ""]
        lines += [f"- cluster {i + 1}: {', '.join(g)}" for i, g in enumerate(clusters)]
    if suggestions:
        lines += ["", "## Suggested --levels (first = recommended)", ""]
        lines += [f"- `{s.spec}`: {s.note}" for s in suggestions]
    return "\n".join(lines) + "\n"
