"""Where training stands, as saved in ``latest.pt`` / ``checkpoint.N.pt`` and restored on
``--resume`` (bit-identical continuation: test/test_resume.py).

:class:`TrainState` holds the counters, the best dev score, the history, the skip counts and
the loss scale; :func:`checkpoint_dict` adds the model, the phase's optimizers, schedulers and
Soup, the samplers' positions and the RNG states; :func:`restore_checkpoint` puts all of it
back in one place. The keys are those of earlier checkpoints, so they still resume.
"""
from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass, field
from typing import Any

import torch

from osoup.train import distributed as D
from osoup.train.amp import LossScaler
from osoup.train.checkpoint import rng_state, set_rng_state
from osoup.train.data import TrainData
from osoup.train.phase_setup import PhaseSetup

log = logging.getLogger(__name__)

_COUNTERS = ("global_epoch", "phase_idx", "phase_epoch", "step_in_phase", "best_dev", "history")


@dataclass
class TrainState:
    """Counters over the whole run: epochs finished (``global_epoch``), the current phase and
    its epoch and step, the best dev score of the last phase, one history record per evaluated epoch,
    skipped steps (in total and in a row), and the fp16 loss scale."""

    global_epoch: int = 0
    phase_idx: int = 0
    phase_epoch: int = 0
    step_in_phase: int = 0
    best_dev: float = math.inf
    history: list[dict] = field(default_factory=list)
    skips_total: int = 0
    consecutive_skips: int = 0
    scaler: LossScaler = field(default_factory=lambda: LossScaler(False))

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in _COUNTERS}
        out.update(skips_total=self.skips_total, consecutive_skips=self.consecutive_skips)
        out.update(self.scaler.state_dict())
        return out

    @classmethod
    def from_dict(cls, d: dict[str, Any], scaler: LossScaler) -> "TrainState":
        """The state saved by :meth:`to_dict` (older checkpoints lack the skip counts and the
        loss scale: zeros and ``scaler`` as given)."""
        scaler.load_state_dict(d)
        return cls(**{k: d[k] for k in _COUNTERS}, skips_total=int(d.get("skips_total", 0)),
                   consecutive_skips=int(d.get("consecutive_skips", 0)), scaler=scaler)


RESUME_KEYS = ("model", "opt_backbone", "opt_heads", "soup", "samplers", "rng") + _COUNTERS


def checkpoint_dict(state: TrainState, model: torch.nn.Module, setup: PhaseSetup, data: TrainData,
                    cfg: Any, model_conf: dict, n_ranks: int, dist: D.DistContext) -> dict[str, Any]:
    """Everything a resume needs. Under torchrun this is a collective (every rank's RNG state)."""
    def sd(x: Any) -> Any:
        return x.state_dict() if x is not None else None

    return {
        "model": model.state_dict(),
        "opt_backbone": sd(setup.opt_backbone),
        "opt_heads": setup.opt_heads.state_dict(),
        "sched_backbone": sd(setup.sched_backbone),
        "sched_heads": sd(setup.sched_heads),
        "soup": setup.update.state_dict(),
        "samplers": {n: s.state_dict() for n, s in data.samplers.items()},
        "rng": rng_state(),
        "rng_ranks": D.all_gather_objects(rng_state()) if dist.enabled else None,
        "n_ranks": n_ranks,
        **state.to_dict(),
        "config": asdict(cfg),
        "model_conf": model_conf,
    }


def _load(obj: Any, saved: Any) -> None:
    if obj is not None and saved is not None:
        obj.load_state_dict(saved)


def restore_checkpoint(ckpt: dict[str, Any], model: torch.nn.Module, setup: PhaseSetup, data: TrainData,
                       scaler: LossScaler, n_ranks: int, dist: D.DistContext) -> TrainState:
    """Put a checkpoint back: model, the phase's update/optimizers/schedulers, every sampler
    (each simulated rank's too: all ranks' samplers are at the same position), the RNG state
    (this rank's under torchrun) and the counters."""
    model.load_state_dict(ckpt["model"])
    setup.update.load_state_dict(ckpt["soup"])
    _load(setup.opt_backbone, ckpt["opt_backbone"])
    setup.opt_heads.load_state_dict(ckpt["opt_heads"])
    _load(setup.sched_backbone, ckpt.get("sched_backbone"))
    _load(setup.sched_heads, ckpt.get("sched_heads"))
    for n, st in ckpt["samplers"].items():
        if n in data.samplers:
            for smp in [data.samplers[n], *data.sim_samplers.get(n, [])]:
                smp.load_state_dict(st)
    ranks = ckpt.get("rng_ranks")
    set_rng_state(ranks[dist.rank] if dist.enabled and ranks and len(ranks) == dist.world_size else ckpt["rng"])
    if int(ckpt.get("n_ranks", 1)) != n_ranks:
        log.warning("checkpoint was written with %s data-parallel ranks, now %d: batches differ from an "
                    "uninterrupted run", ckpt.get("n_ranks", 1), n_ranks)
    return TrainState.from_dict(ckpt, scaler)
