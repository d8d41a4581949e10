"""What one phase trains with: the update rule of θ (a :class:`osoup.moo.Soup`, or
:class:`HeadsOnly` when θ is frozen), the two AdamW optimizers (θ at α, heads at β; never one
optimizer over both, see :mod:`osoup.moo.optim`; θ's split into layer groups with
``--layer-lr-decay``) and their learning-rate schedules."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from osoup.data.objectives import ObjectiveSpec
from osoup.fileio import DataError
from osoup.moo import PenaltySchedule, make_soup, split_optimizers
from osoup.moo.methods import PENALISED_METHODS, default_penalties
from osoup.nets.backbones import layer_lr_scales
from osoup.nets.model import SSL_OBJECTIVE, SoupModel
from osoup.train.heads_only import HeadsOnly
from osoup.train.phases import Phase, static_weights

Scheduler = Any  # torch.optim.lr_scheduler.LRScheduler | ReduceLROnPlateau


@dataclass
class PhaseSetup:
    """The update rule, optimizers and schedulers of one phase (``opt_backbone`` and its
    scheduler are None when θ is frozen)."""

    update: Any  # Soup | HeadsOnly
    opt_backbone: torch.optim.Optimizer | None
    opt_heads: torch.optim.Optimizer
    sched_backbone: Scheduler | None
    sched_heads: Scheduler | None

    def optimizers(self) -> list[tuple[torch.optim.Optimizer, str]]:
        """(optimizer, "backbone"|"heads") pairs that step in this phase."""
        pairs = [(self.opt_backbone, "backbone")] if self.opt_backbone is not None else []
        return pairs + [(self.opt_heads, "heads")]

    def schedulers(self) -> list[Scheduler]:
        return [s for s in (self.sched_backbone, self.sched_heads) if s is not None]


def penalties(cfg: Any, phase: Phase) -> list[PenaltySchedule] | None:
    """η schedules of a penalised phase: the paper's defaults (``osoup.moo.methods``),
    overridden per level by --penalty-init/rate/cap, rates scaled by
    ``penalty_scale_epochs / epochs`` (the caps are reached at the paper's fraction of training)."""
    if phase.method not in PENALISED_METHODS:
        return None
    n_levels = len(cfg.levels.split(">")) if (phase.method == "vm" and cfg.levels) else 2
    scale = cfg.penalty_scale_epochs / max(1, phase.epochs)
    out = []
    for j, d in enumerate(default_penalties(phase.method, n_levels)):
        init = float(cfg.penalty_init[j]) if j < len(cfg.penalty_init) else d.init
        rate = float(cfg.penalty_rate[j]) if j < len(cfg.penalty_rate) else d.rate
        cap = float(cfg.penalty_cap[j]) if j < len(cfg.penalty_cap) else d.cap
        out.append(PenaltySchedule(init, rate * scale, cap))
    return out


def make_update(cfg: Any, phase: Phase, model: SoupModel, specs: dict[str, ObjectiveSpec]) -> Any:
    """The Soup of ``phase`` over θ, or :class:`HeadsOnly` when θ is frozen."""
    heads = {n: model.objective_head_parameters(n) for n in phase.objectives}
    if not phase.train_backbone:
        return HeadsOnly(heads)
    static = phase.weights
    if phase.method == "static" and static is None:
        static = static_weights(cfg.static_weights, {n: specs[n].lang for n in phase.objectives})
    k = cfg.moo_layers
    return make_soup(
        phase.method, model.shared_parameters(), heads, phase.objectives,
        SSL_OBJECTIVE if SSL_OBJECTIVE in phase.objectives else None,
        levels=cfg.levels if phase.method == "vm" else None,
        penalties=penalties(cfg, phase),
        modo={"gamma": cfg.gamma, "rho": cfg.rho, "normalize": cfg.gram_normalize},
        static_weights=static,
        gram_params=cfg.gram_params,
        weighting=cfg.weighting,
        weighting_kwargs=dict(cfg.weighting_opts) or None,
        layer_groups=model.encoder.layer_groups() if k else None,
        moo_layers=(int(k) if k >= 1 else float(k)) if k else None,
        conflict_interval=cfg.conflict_interval,
        probe_coords=cfg.probe_coords or None,
        buffer_dtype=cfg.moo_buffer_dtype,
    )


def make_scheduler(opt: torch.optim.Optimizer, kind: str, step_size: int, patience: int,
                   epochs: int = 1) -> Scheduler | None:
    """StepLR ×0.1 every ``step_size`` epochs, ReduceLROnPlateau ×0.1 on the dev score, a
    half-cosine from the base rate to 1% of it over the phase's ``epochs``, or none."""
    if kind == "cosine":
        n = max(1, epochs)
        return torch.optim.lr_scheduler.LambdaLR(opt, lambda e: 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(e, n) / n)))
    if kind == "step":
        return torch.optim.lr_scheduler.StepLR(opt, step_size=step_size, gamma=0.1)
    if kind == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=patience)
    if kind == "none":
        return None
    raise DataError(f"unknown scheduler {kind!r}: choose plateau, step, cosine or none")


def layer_decayed_optimizer(model: SoupModel, lr: float, decay: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over θ with one parameter group per layer group of the backbone, each at ``lr``
    times its layer-wise decay factor (kept as ``lr_scale``; :func:`warm_up` ramps to it)."""
    groups = [{"params": ps, "lr": lr * f, "lr_scale": f}
              for ps, f in layer_lr_scales(model.encoder.layer_groups(), decay)]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.98), weight_decay=weight_decay)


def setup_phase(cfg: Any, phase: Phase, model: SoupModel, specs: dict[str, ObjectiveSpec]) -> PhaseSetup:
    """Freeze or unfreeze θ for ``phase`` and build its update, optimizers and schedulers."""
    model.set_backbone_trainable(phase.train_backbone)
    update = make_update(cfg, phase, model, specs)
    heads = [p for n in phase.objectives for p in model.objective_head_parameters(n)]
    if phase.train_backbone:
        opt_t, opt_h = split_optimizers(model.shared_parameters(), heads, phase.lr_backbone, phase.lr_heads,
                                        weight_decay=cfg.weight_decay)
        decay = getattr(cfg, "layer_lr_decay", 1.0)
        if decay != 1.0:
            opt_t = layer_decayed_optimizer(model, phase.lr_backbone, decay, cfg.weight_decay)
    else:
        opt_t = None
        opt_h = torch.optim.AdamW(heads, lr=phase.lr_heads, betas=(0.9, 0.98), weight_decay=cfg.weight_decay)

    def sched(opt: torch.optim.Optimizer | None) -> Scheduler | None:
        return None if opt is None else make_scheduler(opt, phase.scheduler, cfg.step_size, cfg.plateau_patience, phase.epochs)

    return PhaseSetup(update, opt_t, opt_h, sched(opt_t), sched(opt_h))


def warm_up(setup: PhaseSetup, phase: Phase, warmup_steps: int, step_in_phase: int) -> None:
    """Linear ramp of both learning rates over the first ``warmup_steps`` steps of the phase."""
    if warmup_steps <= 0 or step_in_phase >= warmup_steps:
        return
    f = (step_in_phase + 1) / warmup_steps
    for opt, which in setup.optimizers():
        base = phase.lr_backbone if which == "backbone" else phase.lr_heads
        for g in opt.param_groups:
            g["lr"] = base * g.get("lr_scale", 1.0) * f
