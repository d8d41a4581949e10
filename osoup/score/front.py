"""The WER-BLEU front of model soups: points, Pareto marking, plot, table and JSON.

Each point is one scored model (a soup or one of the individual methods it mixes) reduced to
the paper's two averages: the mean ASR error (WER, CER for Chinese) and the mean S2TT BLEU over
the languages of one split (:func:`osoup.score.scoring.split_averages`). A point is on the
front when no other point has lower-or-equal error and higher-or-equal BLEU with one of the two
strictly better. ``test/test_model_soup.py`` checks the marking on a hand example.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from osoup.fileio import DataError, atomic_write
from osoup.score.plots import _pyplot, save_figure
from osoup.score.scoring import select_sets, split_averages

FRONT_PNG = "soup_front.png"
FRONT_MD = "RESULTS.md"
FRONT_JSON = "soup.json"
_METHOD_COLORS = ["tab:orange", "tab:green", "tab:purple", "tab:brown", "tab:pink", "tab:olive", "tab:cyan"]


@dataclass
class FrontPoint:
    """One scored model: label, kind (``soup`` or ``method``), its averages and per-language values."""

    label: str
    kind: str
    exp: str
    asr: float | None
    bleu: float | None
    asr_langs: dict[str, float] = field(default_factory=dict)
    st_langs: dict[str, float] = field(default_factory=dict)
    weights: tuple[float, ...] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"label": self.label, "kind": self.kind, "exp": self.exp,
                "weights": list(self.weights) if self.weights is not None else None,
                "asr_ave": self.asr, "bleu_ave": self.bleu, "asr": self.asr_langs, "st": self.st_langs}


def point_from_results(results: dict, dtag: str, split: str, label: str, kind: str,
                       weights: Sequence[float] | None = None) -> FrontPoint:
    """The point of one decode tag and split of an experiment's results (as ``osoup-score``
    writes them); a missing decode tag or split is a DataError naming the experiment."""
    where = results.get("_path") or results.get("exp")
    dec = results["decodes"].get(dtag)
    if dec is None:
        raise DataError(f"{where}: no decode tag {dtag!r} (has {', '.join(results['decodes']) or 'none'})")
    if not any(e["split"] == split for e in dec["sets"]):
        raise DataError(f"{where}: decode {dtag!r} has no {split!r} sets")
    ave = split_averages(dec["sets"]).get(split, {})
    langs = {task: {e["lang"]: e["value"] for e in select_sets(dec["sets"], split, task)} for task in ("asr", "st")}
    return FrontPoint(label, kind, str(results.get("exp") or where), ave.get("asr", {}).get("value"),
                      ave.get("st", {}).get("value"), langs["asr"], langs["st"],
                      tuple(weights) if weights is not None else None)


def dominates(p: FrontPoint, q: FrontPoint) -> bool:
    """``p`` is at least as good as ``q`` on both axes (error down, BLEU up) and better on one."""
    if None in (p.asr, p.bleu, q.asr, q.bleu):
        return False
    return p.asr <= q.asr and p.bleu >= q.bleu and (p.asr < q.asr or p.bleu > q.bleu)


def pareto_flags(points: Sequence[FrontPoint]) -> list[bool]:
    """True for each point with both averages that no other point dominates."""
    return [p.asr is not None and p.bleu is not None and not any(dominates(q, p) for q in points)
            for p in points]


def front_plot(points: Sequence[FrontPoint], flags: Sequence[bool], path: str | Path) -> Path | None:
    """Average ASR error (x) against average BLEU (y): soups as dots (joined in weight order
    when two models are mixed), individual methods as stars, non-dominated points ringed and
    joined by the front's staircase."""
    drawn = [(p, f) for p, f in zip(points, flags) if p.asr is not None and p.bleu is not None]
    if not drawn:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 5))
    soups = [p for p, _ in drawn if p.kind == "soup"]
    line = "o-" if all(p.weights is not None and len(p.weights) == 2 for p in soups) else "o"
    ax.plot([p.asr for p in soups], [p.bleu for p in soups], line, color="tab:blue", alpha=0.7, label="soups")
    for p in soups:
        ax.annotate(p.label.removeprefix("soup "), (p.asr, p.bleu), textcoords="offset points", xytext=(5, 4),
                    fontsize=7, color="tab:blue")
    methods = [p for p, _ in drawn if p.kind != "soup"]
    for p, color in zip(methods, _METHOD_COLORS * (1 + len(methods) // len(_METHOD_COLORS))):
        ax.plot([p.asr], [p.bleu], "*", markersize=13, color=color, label=p.label)
    front = sorted((p for p, f in drawn if f), key=lambda p: p.asr)
    ax.plot([p.asr for p in front], [p.bleu for p in front], "o", markersize=12, markerfacecolor="none",
            markeredgecolor="tab:red", label="non-dominated")
    ax.step([p.asr for p in front], [p.bleu for p in front], where="post", color="tab:red", alpha=0.5)
    ax.set_xlabel("average ASR WER/CER (%)  (← better)")
    ax.set_ylabel("average S2TT BLEU  (↑ better)")
    ax.set_title("Model soups: ASR error vs. S2TT BLEU")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return save_figure(fig, path)


def _cell(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def front_markdown(points: Sequence[FrontPoint], flags: Sequence[bool], title: str, notes: Sequence[str]) -> str:
    """The table of every point: per-language ASR error and BLEU, their averages, and the front."""
    asr_langs = list(dict.fromkeys(lang for p in points for lang in p.asr_langs))
    st_langs = list(dict.fromkeys(lang for p in points for lang in p.st_langs))
    head = (["model", "kind"] + [f"ASR {lang}" for lang in asr_langs] + ["ASR ave."]
            + [f"BLEU {lang}" for lang in st_langs] + ["BLEU ave.", "front"])
    lines = [f"# {title}", ""] + [f"- {n}" for n in notes] + ["", "| " + " | ".join(head) + " |",
                                                              "|" + "---|" * len(head)]
    for p, f in zip(points, flags):
        row = ([p.label, p.kind] + [_cell(p.asr_langs.get(lang)) for lang in asr_langs] + [_cell(p.asr)]
               + [_cell(p.st_langs.get(lang)) for lang in st_langs] + [_cell(p.bleu), "yes" if f else ""])
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", "ASR: WER (CER for Chinese), lower is better; BLEU: higher is better; front: no other model "
                  "is at least as good on both averages and better on one.", ""]
    return "\n".join(lines)


def write_front(points: Sequence[FrontPoint], out_dir: str | Path, title: str, notes: Sequence[str],
                info: dict[str, Any]) -> dict[str, Path]:
    """``soup_front.png`` (when a point has both averages), ``RESULTS.md`` and ``soup.json``
    (``info`` plus every point with its front flag), each written atomically."""
    out_dir = Path(out_dir)
    flags = pareto_flags(points)
    written = {"md": out_dir / FRONT_MD, "json": out_dir / FRONT_JSON}
    with atomic_write(written["md"]) as f:
        f.write(front_markdown(points, flags, title, notes))
    doc = {**info, "points": [{**p.as_dict(), "pareto": flag} for p, flag in zip(points, flags)]}
    with atomic_write(written["json"]) as f:
        json.dump(doc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    png = front_plot(points, flags, out_dir / FRONT_PNG)
    if png is not None:
        written["png"] = png
    return written
