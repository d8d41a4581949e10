"""The gradient-conflict report of a trained experiment (paper appendix C, Fig. 3-4): from the
options of ``osoup-conflict`` to the files of ``<exp>/conflict/`` (layout: ``docs/design.md``).

:func:`analyse_experiment` loads the experiment's model and data, collects the per-objective
gradients and clusters the objectives; :func:`write_report` writes ``conflict.json`` (every
number), ``conflict.md``, ``cosine_heatmap.png``, ``layer_heatmaps.png``,
``cluster_scatter.png`` and, when asked, ``suggested_levels.txt`` (recommended order first).
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from osoup.conflict.analysis import MODES, WHOLE, ConflictResult, markdown_summary, to_json_dict
from osoup.conflict.suggest import Clustering, Suggestion, suggest_levels
from osoup.fileio import DataError, atomic_write_text
from osoup.nets.model import SSL_OBJECTIVE
from osoup.train.experiment import BEST, CONFLICT_DIR

log = logging.getLogger(__name__)

SUGGESTED_LEVELS = "suggested_levels.txt"
FIGURES = ("cosine_heatmap.png", "layer_heatmaps.png", "cluster_scatter.png")


@dataclass
class ConflictRequest:
    """Everything one analysis needs; ``None`` data options mean "the experiment's"
    (``osoup-conflict --help`` explains each)."""

    exp_dir: str
    model: str = BEST
    out: str | None = None
    dump_dir: str | None = None
    token_dir: str | None = None
    asr_langs: str | None = None
    st_langs: str | None = None
    ssl: str | None = None
    ssl_sets: str | None = None
    split: str = "train"
    train_split: str | None = None
    dev_split: str | None = None
    max_frames: int | None = None
    max_utts: int | None = None
    num_batches: int = 20
    mode: str = "both"
    suggest_levels: bool = False
    threshold: float = 0.0
    max_groups: int = 3
    favour: str = "asr"
    max_bad_frac: float = 0.05
    seed: int = 1
    device: str = "cpu"

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> "ConflictRequest":
        """The request of parsed command options (other keys are ignored)."""
        return cls(**{f.name: options[f.name] for f in fields(cls) if f.name in options})

    @property
    def out_dir(self) -> Path:
        """``--out``, else ``<exp>/conflict``."""
        return Path(self.out) if self.out else Path(self.exp_dir) / CONFLICT_DIR

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.mode == "both" else (self.mode,)


@dataclass
class ConflictReport:
    """One analysis: the cosine result, run statistics, the settings it ran with and the
    clustering of the supervised objectives with the suggested ``--levels`` orders."""

    result: ConflictResult
    stats: dict
    settings: dict
    ssl_name: str | None
    threshold: float
    max_groups: int
    clustering: Clustering | None = None
    suggestions: list[Suggestion] = field(default_factory=list)

    def document(self) -> dict:
        """The content of ``conflict.json``."""
        doc = {"settings": self.settings, **to_json_dict(self.result), "run": self.stats}
        if self.clustering is not None:
            c = self.clustering
            doc["clustering"] = {
                "method": ("average linkage on 1 - cos (of the primary mode, whole backbone), "
                           "supervised objectives only"),
                "rule": (f"merge the closest clusters while their mean cross-cosine >= {self.threshold:g}, and "
                         f"always while more than {self.max_groups} clusters remain"),
                "clusters": c.clusters,
                "merges": [{"a": a, "b": b, "mean_cos": float(v)} for a, b, v in c.merges],
                "between_cluster_cos": {f"{x + 1}-{y + 1}": v for (x, y), v in c.between.items()},
            }
            doc["suggested_levels"] = [{"spec": s.spec, "note": s.note} for s in self.suggestions]
        return doc

    @property
    def clusters(self) -> list[list[str]]:
        return self.clustering.clusters if self.clustering is not None else []


def analyse_experiment(req: ConflictRequest) -> ConflictReport:
    """Load the experiment's model and its objectives' data, collect the gradients over
    ``req.num_batches`` batches and cluster the supervised objectives."""
    from osoup.conflict.gradients import collect_gradients, load_objective_data
    from osoup.conflict.inputs import resolve_data_settings, resolve_objectives
    from osoup.data.objectives import build_objectives
    from osoup.train.experiment import load_experiment_model

    if req.num_batches < 1:
        raise DataError("--num-batches must be >= 1")
    exp = Path(req.exp_dir)
    ds = resolve_data_settings(exp, req.dump_dir, req.token_dir, req.ssl_sets, req.train_split, req.dev_split,
                               req.max_frames, req.max_utts)
    model, meta = load_experiment_model(exp, req.model, req.device)
    choice = resolve_objectives(meta, model, req.exp_dir, req.asr_langs, req.st_langs, req.ssl)
    specs = build_objectives(ds.dump_dir, ds.token_dir, choice.asr_langs, choice.st_langs, choice.ssl,
                             ds.ssl_sets or None, ds.train_split, ds.dev_split, ds.st_units)
    names = [s.name for s in specs]
    log.info("objectives: %s; %s split; %d batches each (max %d frames / %d utts)", " ".join(names), req.split,
             req.num_batches, ds.max_frames, ds.max_utts)
    head_vocab = {n: h.vocab_size for n, h in model.heads.items()}
    data = load_objective_data(specs, req.split, meta.get("token_dirs", {}), ds.max_frames, ds.max_utts, head_vocab)
    result, stats = collect_gradients(model, data, req.num_batches, req.modes, req.seed, req.device, req.max_bad_frac)
    log.info("gradients of %d objectives over %d batches in %.1f s", len(names), result.num_batches, stats["seconds"])
    settings = {
        "exp_dir": str(exp), "model": req.model, "split": req.split, "split_name": ds.split_name(req.split),
        "num_batches": req.num_batches, "max_frames": ds.max_frames, "max_utts": ds.max_utts, "mode": req.mode,
        "seed": req.seed, "dump_dir": str(ds.dump_dir), "device": req.device,
    }
    ssl_name = SSL_OBJECTIVE if choice.ssl is not None else None
    report = ConflictReport(result, stats, settings, ssl_name, req.threshold, req.max_groups)
    if any(n != SSL_OBJECTIVE for n in names):
        report.clustering, report.suggestions = suggest_levels(
            result.cos[result.primary][WHOLE], names, ssl_name, req.threshold, req.max_groups, req.favour)
    return report


def write_report(report: ConflictReport, out: Path, options: Mapping[str, Any], with_suggestions: bool) -> None:
    """Every file of the report into ``out`` (atomically), ``config.yaml`` holding ``options``.
    ``suggested_levels.txt`` only ``with_suggestions``, which needs a supervised objective."""
    import yaml

    from osoup.conflict.plots import MODE_TITLES, plot_cluster_scatter, plot_cosine_heatmap, plot_layer_heatmap

    res, primary = report.result, report.result.primary
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.yaml", yaml.safe_dump(dict(options), sort_keys=True, allow_unicode=True))
    atomic_write_text(out / "conflict.json", json.dumps(report.document(), indent=1, ensure_ascii=False) + "\n")
    plot_cosine_heatmap(res, out / FIGURES[0])
    plot_layer_heatmap(res, out / FIGURES[1], primary)
    plot_cluster_scatter(res.cos[primary][WHOLE], res.objectives, report.clusters, out / FIGURES[2],
                         "Objectives by gradient direction: " + MODE_TITLES[primary].format(n=res.num_batches),
                         report.ssl_name)
    atomic_write_text(out / "conflict.md", markdown_summary(res, report.settings, report.clusters or None,
                                                            report.suggestions if with_suggestions else None))
    if with_suggestions:
        if not report.suggestions:
            raise DataError("--suggest-levels needs at least one supervised objective")
        atomic_write_text(out / SUGGESTED_LEVELS, "".join(s.spec + "\n" for s in report.suggestions))


def suggestions_text(report: ConflictReport) -> str:
    """The clusters, their mean cross-cosines and the suggested ``--levels``, for the console."""
    lines = [f"clusters of supervised objectives (threshold {report.threshold:g}, at most {report.max_groups}):"]
    lines += [f"  cluster {i}: {', '.join(g)}" for i, g in enumerate(report.clusters, 1)]
    if report.clustering is not None:
        lines += [f"  mean cosine cluster {x + 1} / cluster {y + 1}: {v:+.3f}"
                  for (x, y), v in report.clustering.between.items()]
    lines.append("suggested --levels (first = recommended):")
    lines += [f"  {s.spec:<40s} # {s.note}" for s in report.suggestions]
    return "\n".join(lines) + "\n"


def summary_lines(report: ConflictReport) -> list[str]:
    """Log lines: the most conflicting layers and the whole-backbone cosine matrix."""
    res = report.result
    primary = res.primary
    scores, ranking = res.layer_scores(primary), res.layer_ranking(primary)
    lines = [f"most conflicting layers ({primary}): " + ", ".join(f"{l} {scores[l]:+.3f}" for l in ranking[:3])]
    whole = res.cos[primary][WHOLE]
    lines.append(f"whole-backbone cosine ({primary}):\n" + "\n".join(
        f"  {n:>10s} " + " ".join(f"{v:+.2f}" if np.isfinite(v) else "  n/a" for v in whole[i])
        for i, n in enumerate(res.objectives)))
    return lines
