"""Figures of the conflict analysis (paper Fig. 3 heat-map, Fig. 4 cluster scatter), with
matplotlib's Agg backend, each written atomically as PNG."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from osoup.conflict.analysis import WHOLE, ConflictResult, pair_indices
from osoup.fileio import atomic_write
from osoup.nets.model import SSL_OBJECTIVE

MODE_TITLES = {
    "averaged": "cosine of gradients averaged over {n} batches (eq. 30)",
    "per-batch": "mean of per-batch cosines over {n} batches",
}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path, dpi: int = 120) -> None:
    """Render to memory, then write the PNG atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    _plt().close(fig)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _limit(mats: list[np.ndarray]) -> float:
    """Symmetric colour limit from the off-diagonal values (colour centred at 0)."""
    vals = [abs(m[i, j]) for m in mats for i, j in pair_indices(m.shape[0]) if np.isfinite(m[i, j])]
    return float(min(1.0, max(0.05, max(vals, default=1.0))))


def _annotate(ax, mat: np.ndarray, lim: float, fontsize: float) -> None:
    """Cell values; white text on strongly coloured cells, so every number stays readable."""
    for i in range(mat.shape[0]):
        for j in range(mat.shape[1]):
            v = mat[i, j]
            strong = np.isfinite(v) and abs(v) > 0.6 * lim
            ax.text(j, i, "n/a" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center",
                    fontsize=fontsize, color="white" if strong else "black")


def _cmap():
    import matplotlib

    return matplotlib.colormaps["RdBu_r"].with_extremes(bad="0.85")  # the diagonal and undefined cells


MODE_TITLES_SHORT = {
    "averaged": "cosine of gradients averaged\nover {n} batches (paper eq. 30)",
    "per-batch": "mean of per-batch cosines\nover {n} batches",
}


def plot_cosine_heatmap(result: ConflictResult, path: str | Path) -> None:
    """Whole-model cosine matrix, one annotated panel per mode (diagonal greyed: always 1)."""
    plt = _plt()
    modes = result.modes
    mats = [result.cos[m][WHOLE] for m in modes]
    lim = _limit(mats)
    k = len(result.objectives)
    size = max(3.8, 0.65 * k + 1.8)
    fig, axes = plt.subplots(1, len(modes), figsize=(size * len(modes) + 1.5, size + 0.6), squeeze=False)
    im = None
    for ax, mode, mat in zip(axes[0], modes, mats):
        shown = np.ma.masked_invalid(np.where(np.eye(k, dtype=bool), np.nan, mat))
        im = ax.imshow(shown, cmap=_cmap(), vmin=-lim, vmax=lim)
        ax.set_xticks(range(k), result.objectives, rotation=45, ha="right")
        ax.set_yticks(range(k), result.objectives)
        _annotate(ax, mat, lim, fontsize=max(5.0, 10 - 0.4 * k))
        ax.set_title(MODE_TITLES_SHORT[mode].format(n=result.num_batches), fontsize=9)
    fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8, label=f"cosine (colour scale ±{lim:.2f}, centred at 0)")
    fig.suptitle("Gradient cosine similarity, whole shared backbone")
    save_figure(fig, path)


def plot_layer_heatmap(result: ConflictResult, path: str | Path, mode: str | None = None) -> None:
    """Layers × objective pairs: each cell the pair's cosine restricted to that layer; the row
    label carries the layer's conflict score (mean over pairs)."""
    plt = _plt()
    mode = mode or result.primary
    pairs = pair_indices(len(result.objectives))
    if not pairs:
        pairs = [(0, 0)]
    rows = result.layers
    mat = np.array([[result.cos[mode][l][i, j] for i, j in pairs] for l in rows])
    scores = result.layer_scores(mode)
    lim = float(min(1.0, max(0.05, np.nanmax(np.abs(mat)) if np.isfinite(mat).any() else 1.0)))
    fig, ax = plt.subplots(figsize=(max(5.0, 0.55 * len(pairs) + 3), max(3.0, 0.4 * len(rows) + 1.8)))
    im = ax.imshow(np.ma.masked_invalid(mat), cmap=_cmap(), vmin=-lim, vmax=lim, aspect="auto")
    names = result.objectives
    ax.set_xticks(range(len(pairs)), [f"{names[i]}|{names[j]}" for i, j in pairs], rotation=60, ha="right", fontsize=8)
    ax.set_yticks(range(len(rows)), [f"{l} ({scores[l]:+.2f})" for l in rows], fontsize=8)
    if mat.size <= 160:
        _annotate(ax, mat, lim, fontsize=7)
    ax.set_ylabel("layer (conflict score)")
    fig.colorbar(im, ax=ax, label="cosine")
    ax.set_title(f"Per-layer gradient cosine: {MODE_TITLES[mode].format(n=result.num_batches)}", fontsize=9)
    save_figure(fig, path)


def mds_2d(cos: np.ndarray) -> tuple[np.ndarray, float]:
    """Classical MDS of the unit gradient directions: squared distances 2 − 2cos, double
    centring, top two eigenvectors. Returns coordinates [K, 2] and the share of variance shown."""
    c = np.nan_to_num(np.asarray(cos, dtype=np.float64), nan=0.0)
    k = c.shape[0]
    d2 = 2.0 - 2.0 * c
    j = np.eye(k) - np.ones((k, k)) / k
    b = -0.5 * j @ d2 @ j
    w, v = np.linalg.eigh((b + b.T) / 2)
    order = np.argsort(w)[::-1]
    w, v = w[order], v[:, order]
    pos = np.clip(w, 0.0, None)
    coords = np.zeros((k, 2))
    n = min(2, k)
    coords[:, :n] = v[:, :n] * np.sqrt(pos[:n])
    total = pos.sum()
    return coords, float(pos[:n].sum() / total) if total > 0 else 1.0


def plot_cluster_scatter(cos: np.ndarray, names: list[str], clusters: list[list[str]], path: str | Path,
                         title: str, ssl: str | None = SSL_OBJECTIVE) -> None:
    """Objectives in 2-D by gradient direction (MDS), coloured by cluster, size by their mean
    cosine with the other objectives (as the paper's Fig. 4)."""
    plt = _plt()
    coords, share = mds_2d(cos)
    c = np.nan_to_num(np.asarray(cos, dtype=np.float64), nan=0.0)
    k = len(names)
    mean_cos = np.array([(c[i].sum() - c[i, i]) / max(1, k - 1) for i in range(k)])
    cluster_of = {n: ci for ci, g in enumerate(clusters) for n in g}
    colours = plt.get_cmap("tab10")
    fig, ax = plt.subplots(figsize=(6.0, 5.0))
    labelled: set[str] = set()
    for i, n in enumerate(names):
        if n == ssl or n not in cluster_of:
            colour, label, marker = "0.4", "SSL (last level)" if n == ssl else "unclustered", "s"
        else:
            colour, label, marker = colours(cluster_of[n] % 10), f"cluster {cluster_of[n] + 1}", "o"
        ax.scatter(coords[i, 0], coords[i, 1], s=80 + 400 * (mean_cos[i] + 1) / 2, color=colour, marker=marker,
                   alpha=0.8, edgecolors="k", label=None if label in labelled else label)
        labelled.add(label)
        ax.annotate(f"{n} ({mean_cos[i]:+.2f})", (coords[i, 0], coords[i, 1]), textcoords="offset points",
                    xytext=(6, 6), fontsize=8)
    span = max(1e-3, float(np.abs(coords).max()))
    ax.set_xlim(-1.35 * span, 1.35 * span)
    ax.set_ylim(-1.35 * span, 1.35 * span)
    ax.axhline(0, color="0.85", lw=0.5)
    ax.axvline(0, color="0.85", lw=0.5)
    ax.set_xlabel("MDS 1")
    ax.set_ylabel("MDS 2")
    ax.legend(fontsize=8, loc="best")
    ax.set_title(f"{title}\n(MDS of 1-cos, {100 * share:.0f}% of variance; size: mean cosine with the others)", fontsize=9)
    save_figure(fig, path)
