"""Which phases a training method runs: pre-training, fine-tuning, heads-only (paper appendix D).

A phase names what it does, and that name is what the logs and ``train_summary.json`` show:

    vs / vc / vm / joint   one phase named after the method (every objective together); joint
                           without SSL trains the plain mean of its supervised objectives
                           (method mean), and with --task-weights it is joint-static: fixed
                           task-group weights (method static, see :func:`task_group_weights`)
    two_stage              pretrain-ssl, then finetune-mean (backbone at the heads' rate β, eq. 32)
    two_stage_static       pretrain-ssl, then finetune-static (fixed per-language weights μ)
    peft                   pretrain-ssl, then heads-<set> for each set of --peft-sets, θ frozen
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

from osoup.fileio import DataError
from osoup.moo import parse_levels
from osoup.nets.model import SSL_OBJECTIVE

MOO_METHODS = ("vs", "vc", "vm", "joint")
PHASED_METHODS = ("two_stage", "two_stage_static", "peft")
TRAIN_METHODS = MOO_METHODS + PHASED_METHODS


@dataclass
class Phase:
    """One phase: its name, the soup method combining its objectives (``osoup.moo.METHODS``),
    its objectives, length and learning rates. ``train_backbone`` False: θ is frozen and only
    the heads train (no Soup over θ)."""

    name: str
    method: str
    objectives: list[str]
    epochs: int
    lr_backbone: float
    lr_heads: float
    scheduler: str
    train_backbone: bool = True
    weights: dict[str, float] | None = None  # method static: fixed weight per objective


TASK_GROUPS = ("asr", "st", SSL_OBJECTIVE)


def task_group(name: str) -> str:
    """The task group of an objective: ``asr_fr`` -> asr, ``st_fr`` -> st, ``ssl`` -> ssl."""
    return name.split("_", 1)[0]


def task_group_weights(weights: dict[str, float], names: Sequence[str]) -> dict[str, float]:
    """Per-objective weights of ``joint --task-weights``: each group's weight shared equally by
    its objectives, so the loss is Σ_group weight × mean of the group's losses. Every group
    with objectives needs a weight; the weight of a group without objectives in this run is not
    used (one grid serves recipes with and without S2TT or SSL; ``check_options`` warns)."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(task_group(n), []).append(n)
    unknown = sorted(set(weights) - set(TASK_GROUPS))
    if unknown:
        raise DataError(f"--task-weights: unknown task group {unknown[0]!r}; the groups are {', '.join(TASK_GROUPS)}")
    missing = [g for g in groups if g not in weights]
    if missing:
        raise DataError(f"--task-weights: no weight for task group {missing[0]!r} (objectives "
                        f"{', '.join(groups[missing[0]])}); give one for each of {', '.join(groups)}")
    if not any(weights[g] > 0 for g in groups if g != SSL_OBJECTIVE):
        raise DataError("--task-weights: every supervised group has weight 0; nothing would train the heads' tasks")
    return {n: weights[g] / len(members) for g, members in groups.items() for n in members}


def _moo_phase(cfg: Any, names: list[str]) -> Phase:
    if cfg.method in ("vs", "vc", "vm") and len(names) < 2:
        raise DataError(f"method {cfg.method} needs at least two objectives, got {names}")
    if cfg.method == "vc" and SSL_OBJECTIVE not in names:
        raise DataError(f"method {cfg.method} needs the SSL objective (--ssl cpc|bestrq|w2v2)")
    if cfg.method == "joint" and not [n for n in names if n != SSL_OBJECTIVE]:
        raise DataError("method joint needs a supervised objective (--asr-langs or --st-langs)")
    phase = Phase(cfg.method, cfg.method, list(names), cfg.epochs, cfg.lr_backbone, cfg.lr_heads, cfg.scheduler)
    if cfg.method == "joint" and getattr(cfg, "task_weights", None):
        phase.name, phase.method = "joint-static", "static"
        phase.weights = task_group_weights(cfg.task_weights, names)
    elif cfg.method == "joint" and SSL_OBJECTIVE not in names:
        phase.method = "mean"  # no SSL term: the plain mean of the supervised losses
    return phase


def _head_sets(spec: str, supervised: list[str]) -> list[tuple[str, list[str]]]:
    """--peft-sets ``asr>st`` -> [("asr", [asr_*]), ("st", [st_*])]."""
    try:
        groups = parse_levels(spec, supervised, ssl=None)
    except ValueError as e:
        raise DataError(f"--peft-sets {spec!r}: {e}") from None
    labels = ["+".join(t.strip() for t in g.split(",")) for g in spec.split(">")]
    return list(zip(labels, groups))


def plan_phases(cfg: Any, names: Sequence[str]) -> list[Phase]:
    """The phases of ``cfg.method`` over the objectives ``names`` (a :class:`TrainConfig`;
    only names are needed, no data). Raises DataError when the method cannot run on them."""
    names = list(names)
    if cfg.method not in TRAIN_METHODS:
        raise DataError(f"unknown method {cfg.method!r}; choose one of {', '.join(TRAIN_METHODS)}")
    if cfg.method in MOO_METHODS:
        return [_moo_phase(cfg, names)]
    if SSL_OBJECTIVE not in names:
        raise DataError(f"method {cfg.method} pre-trains on SSL: give --ssl cpc|bestrq|w2v2")
    supervised = [n for n in names if n != SSL_OBJECTIVE]
    if not supervised:
        raise DataError(f"method {cfg.method} fine-tunes on supervised objectives: give --asr-langs or --st-langs")
    pretrain = Phase("pretrain-ssl", "ssl", [SSL_OBJECTIVE], cfg.pretrain_epochs, cfg.lr_backbone, cfg.lr_heads,
                     cfg.pretrain_scheduler)
    ft_epochs = cfg.finetune_epochs or cfg.epochs
    if cfg.method in ("two_stage", "two_stage_static"):
        kind = "mean" if cfg.method == "two_stage" else "static"
        return [pretrain, Phase(f"finetune-{kind}", kind, supervised, ft_epochs, cfg.lr_heads, cfg.lr_heads,
                                cfg.scheduler)]
    sets = _head_sets(cfg.peft_sets, supervised)
    per = max(1, ft_epochs // len(sets))
    return [pretrain] + [Phase(f"heads-{label}", "mean", group, per, 0.0, cfg.lr_heads, cfg.scheduler,
                               train_backbone=False) for label, group in sets]


def static_weights(weights: dict[str, float], langs: dict[str, str | None]) -> dict[str, float]:
    """two_stage_static's normalised weights per objective from per-language μ (``langs``:
    objective -> language). Every objective needs a positive weight."""
    raw = {n: float(weights.get(lang or "", 0.0)) for n, lang in langs.items()}
    missing = [n for n, w in raw.items() if w <= 0]
    if missing:
        raise DataError(f"two_stage_static: no positive static weight for {missing} (set --static-weights lang:w,...)")
    total = sum(raw.values())
    return {n: w / total for n, w in raw.items()}
