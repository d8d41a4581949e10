"""Figures of the comparison (matplotlib's Agg backend, each written atomically as PNG): the
paper's Fig. 1 radar shape and an ASR-error vs BLEU trade-off. Given the paired significance
(:mod:`osoup.score.significance`), a point whose difference to the reference method is
significant is drawn filled (others hollow) and bars and labels carry its mark."""
from __future__ import annotations

import io
import logging
import math
from pathlib import Path

from osoup.fileio import atomic_write
from osoup.score.bootstrap import MARK_BETTER, MARK_WORSE
from osoup.score.comparison import Method, mean_std
from osoup.score.langs import TASKS, lang_label, sort_langs
from osoup.score.significance import AVE, Significance

log = logging.getLogger(__name__)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig, path: str | Path) -> Path:
    """Render to memory, write the PNG atomically, close the figure."""
    path = Path(path)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    _pyplot().close(fig)
    return path


def _significance_note(fig, sig: Significance | None) -> None:
    """What filled and hollow markers and the marks mean, above the panels."""
    if sig is not None and sig.deltas:
        fig.text(0.5, 1.04, f"filled marker or {MARK_BETTER} / {MARK_WORSE}: significantly better / worse than "
                 f"{sig.reference} (paired bootstrap, 95%, {sig.resamples} resamples); hollow: not significant",
                 ha="center", fontsize=8, color="gray")


def _vertex_markers(ax, xs: list[float], ys: list[float], marks: list[str], color) -> None:
    """A marker per point: filled where ``marks`` has a significance mark, hollow elsewhere."""
    for x, y, mark in zip(xs, ys, marks):
        ax.plot([x], [y], linestyle="none", marker="o", color=color, markerfacecolor=color if mark else "none")


def _polygon_panel(ax, methods: list[Method], task: str, langs: list[str], sig: Significance | None = None) -> None:
    """One polygon per method over the languages' axes. ASR shows 100 − WER/CER so that, as for
    BLEU, outward is better; a method missing a language is left out (holes would mislead). With
    ``sig``: filled vertices where the difference to the reference is significant."""
    angles = [2 * math.pi * i / len(langs) for i in range(len(langs))]
    allv = []
    for m in methods:
        vals = m.values(task)
        if not all(lang in vals for lang in langs):
            continue
        v = [mean_std(vals[lang])[0] for lang in langs]
        if task == "asr":
            v = [100.0 - x for x in v]
        allv += v
        (line,) = ax.plot(angles + angles[:1], v + v[:1], marker=None if sig else "o", label=m.label)
        ax.fill(angles + angles[:1], v + v[:1], alpha=0.08)
        if sig is not None:
            _vertex_markers(ax, angles, v, [sig.mark(task, m.label, lang) for lang in langs], line.get_color())
    ax.set_xticks(angles)
    ax.set_rlabel_position(180.0 / len(langs))  # radial tick labels between two axes
    ax.set_xticklabels([lang_label(lang, task) for lang in langs])
    if task == "asr":
        ax.set_title("ASR: 100 − WER/CER (%)\noutward is better", pad=18)
    else:
        ax.set_title("S2TT: BLEU\noutward is better", pad=18)
    if allv:
        lo, hi = min(allv), max(allv)
        pad = max(1.0, 0.2 * (hi - lo))
        ax.set_ylim(max(0.0, lo - pad), hi + pad)


def _bar_panel(ax, methods: list[Method], task: str, langs: list[str], sig: Significance | None = None) -> None:
    """Grouped bars (mean, with the seed std as an error bar) of one task: the radar panel's
    stand-in when there are fewer than three languages. With ``sig``: a bar whose difference to
    the reference is significant carries its mark above it."""
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        vals = m.values(task)
        xs = [i + (j - (len(methods) - 1) / 2) * width for i, lang in enumerate(langs) if lang in vals]
        stats = [mean_std(vals[lang]) for lang in langs if lang in vals]
        ax.bar(xs, [mu for mu, _ in stats], width, yerr=[sd or 0.0 for _, sd in stats], capsize=3, label=m.label)
        marks = [sig.mark(task, m.label, lang) if sig is not None else "" for lang in langs if lang in vals]
        for x, (mu, sd), mark in zip(xs, stats, marks):
            if mark:
                ax.text(x, mu + (sd or 0.0), mark, ha="center", va="bottom", fontsize=12)
    ax.set_xticks(range(len(langs)))
    ax.set_xticklabels([lang_label(lang, task) for lang in langs])
    if task == "asr":
        ax.set_title("ASR: WER/CER (%)\nlower is better")
    else:
        ax.set_title("S2TT: BLEU\nhigher is better")


def _shared_legend(fig, axes: list) -> None:
    """One legend below the panels with every method once."""
    fig.subplots_adjust(bottom=0.16)  # room for the legend below the x labels
    handles, names = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="lower center", ncol=min(4, max(1, len(names))),
               bbox_to_anchor=(0.5, -0.02))


def radar_plot(methods: list[Method], path: str | Path, significance: Significance | None = None) -> Path | None:
    """Fig. 1 shape: one polar panel per task (ASR, S2TT), one axis per language, one polygon
    per method. A task with fewer than three languages gets grouped bars instead (a polygon
    needs three axes; ``test/test_score.py`` checks the panel kinds)."""
    panels = [(task, langs) for task in TASKS
              if (langs := sort_langs(lang for m in methods for lang in m.values(task)))]
    if not panels:
        log.warning("radar plot: no results to plot")
        return None
    plt = _pyplot()
    fig = plt.figure(figsize=(5.5 * len(panels), 5.5))
    axes = []
    for i, (task, langs) in enumerate(panels, 1):
        polar = len(langs) >= 3
        ax = fig.add_subplot(1, len(panels), i, projection="polar" if polar else None)
        axes.append(ax)
        (_polygon_panel if polar else _bar_panel)(ax, methods, task, langs, significance)
    if any(len(langs) >= 3 for _, langs in panels):
        fig.text(0.5, 1.0, "radial axes do not start at 0", ha="center", fontsize=8, color="gray")
    _significance_note(fig, significance)
    _shared_legend(fig, axes)
    return save_figure(fig, path)


def _tradeoff_marks(sig: Significance | None, label: str) -> str:
    """The significance marks of a method's averages, e.g. `` (ASR *, BLEU ‡)``; empty if none."""
    if sig is None:
        return ""
    marks = [f"{name} {mark}" for name, task in (("ASR", "asr"), ("BLEU", "st"))
             if (mark := sig.mark(task, label, AVE))]
    return f" ({', '.join(marks)})" if marks else ""


def tradeoff_plot(methods: list[Method], path: str | Path, significance: Significance | None = None) -> Path | None:
    """Average ASR error (x, lower is better) against average BLEU (y, higher is better),
    one point per method, with ±1 std error bars where seed replicas exist. With
    ``significance``: filled where either average differs significantly from the reference's."""
    pts = [(m, m.averages("asr"), m.averages("st")) for m in methods]
    pts = [p for p in pts if p[1] and p[2]]
    if not pts:
        log.warning("trade-off plot: no method has both ASR and S2TT results; not written")
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m, asr_ave, st_ave in pts:
        x, xs = mean_std(asr_ave)
        y, ys = mean_std(st_ave)
        marks = _tradeoff_marks(significance, m.label)
        bars = ax.errorbar([x], [y], xerr=None if xs is None else [xs], yerr=None if ys is None else [ys],
                           fmt="o", capsize=4, label=m.label)
        if significance is not None and not marks:
            bars.lines[0].set_markerfacecolor("none")
        ax.annotate(m.label + marks, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlabel("average ASR WER/CER (%)  (← better)")
    ax.set_ylabel("average S2TT BLEU  (↑ better)")
    ax.set_title("ASR error vs. S2TT BLEU (better: up and left)")
    ax.grid(True, alpha=0.3)
    _significance_note(fig, significance)
    return save_figure(fig, path)
