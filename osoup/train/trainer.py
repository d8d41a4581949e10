"""The training loop of every method: phases, epochs, steps, dev evaluation and checkpoints.

It reads like icefall's ``train.py``: :meth:`Trainer.run` goes through the phases of the
method (:mod:`osoup.train.phases`), :meth:`Trainer.train_one_epoch` calls
:func:`osoup.train.step.train_step` once per step and :meth:`Trainer.save_checkpoint` when a
checkpoint is due; what a step does, how a phase is set up and what a checkpoint holds live in
their own modules (``step``, ``phase_setup``, ``state``).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import torch

from osoup import expdir
from osoup.data.objectives import ObjectiveSpec
from osoup.fileio import DataError, atomic_write_text
from osoup.nets.model import SSL_OBJECTIVE, SoupModel
from osoup.train import distributed as D
from osoup.train.amp import LossScaler
from osoup.train.checkpoint import (average_models, epoch_checkpoints, find_resume_checkpoint, prune_checkpoints,
                                    remove_interrupted_writes, save_atomic)
from osoup.train.data import load_train_data, steps_per_epoch
from osoup.train.init_from import init_model
from osoup.train.loss import dev_losses
from osoup.train.options import TrainConfig
from osoup.train.phase_setup import PhaseSetup, setup_phase, warm_up
from osoup.train.phases import Phase, plan_phases
from osoup.train.prefetch import StepSource, resolve_num_workers
from osoup.train.progress import EpochProgress, TensorBoard, write_trace
from osoup.train.state import RESUME_KEYS, TrainState, checkpoint_dict, restore_checkpoint
from osoup.train.step import Outcome, StepResult, train_step

log = logging.getLogger(__name__)

__all__ = ["TrainConfig", "Trainer", "TrainingStopped"]


class TrainingStopped(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite steps); the message says why."""


def set_train_mode(model: SoupModel, phase: Phase) -> None:
    """Train mode, except a frozen backbone: it stays a fixed function (no dropout, no
    BatchNorm statistics updates) while the heads train on it."""
    model.train()
    if not phase.train_backbone:
        model.encoder.eval()


def dev_score(dev: dict[str, float]) -> float:
    """Mean dev loss of the supervised objectives (the SSL loss when there are none)."""
    sup = [v for k, v in dev.items() if k != SSL_OBJECTIVE]
    return sum(sup) / len(sup) if sup else dev.get(SSL_OBJECTIVE, math.inf)


class Trainer:
    """One training run: its config, model, data, phases and :class:`TrainState`."""

    def __init__(self, cfg: TrainConfig, specs: list[ObjectiveSpec], model_conf: dict, exp_dir: str | Path,
                 dist: D.DistContext | None = None):
        self.cfg = cfg
        self.dist = dist or D.DistContext()
        if cfg.amp not in ("none", "bf16", "fp16"):
            raise DataError(f"unknown --amp {cfg.amp!r}: choose none, bf16 or fp16")
        if cfg.simulate_ranks > 1 and self.dist.enabled:
            raise DataError("--simulate-ranks is for a single process; under torchrun the ranks are real")
        # data-parallel ranks whose batches one step sees: real (torchrun) or simulated
        self.n_ranks = self.dist.world_size if self.dist.enabled else max(1, cfg.simulate_ranks)
        self.specs = {s.name: s for s in specs}
        self.exp = Path(exp_dir)
        self.exp.mkdir(parents=True, exist_ok=True)
        auto = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(auto if cfg.device == "auto" else cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.phases = plan_phases(cfg, list(self.specs))
        self.model = SoupModel(**model_conf).to(self.device)
        if self.dist.enabled:
            D.broadcast_parameters(self.model)
            if self.dist.rank > 0:  # own dropout / SpecAugment / SSL draws per rank
                torch.manual_seed(cfg.seed + 7919 * self.dist.rank)
        self.model_conf = model_conf
        world = self.dist.world_size if self.dist.enabled else 1
        self.data = load_train_data(specs, cfg, self.dist.rank, world, cfg.simulate_ranks)
        self.state = TrainState(scaler=LossScaler(cfg.amp == "fp16"))
        self.tb = TensorBoard(self.exp, enabled=self.dist.is_main)
        self.last_throughput = 0.0
        self.num_workers = resolve_num_workers(cfg.num_workers, self.device)
        log.info("input: %d loader workers (--num-workers %s)%s", self.num_workers, cfg.num_workers,
                 f", {cfg.prefetch} steps ahead" if self.num_workers else ", read in the training process")
        self.source: StepSource | None = None

    # -- the run ---------------------------------------------------------------------------
    def run(self, resume: bool = False) -> dict:
        """Train every phase to the end (from the newest checkpoint with ``resume``); returns
        the summary also written to ``train_summary.json``."""
        found = self._find_resume() if resume else None
        self.initialise(found[1] if found else None)
        first = int(found[0]["phase_idx"]) if found else 0
        for idx in range(first, len(self.phases)):
            phase = self.phases[idx]
            setup = setup_phase(self.cfg, phase, self.model, self.specs)
            if found is not None:
                ckpt, path = found
                self.state = restore_checkpoint(ckpt, self.model, setup, self.data, self.state.scaler,
                                                self.n_ranks, self.dist)
                st = self.state
                log.info("resumed from %s: epoch %d (phase %d, epoch %d in phase, step %d in phase)",
                         path, st.global_epoch, st.phase_idx, st.phase_epoch, st.step_in_phase)
                found = None
            self.run_phase(phase, setup)
            if phase.method == "ssl" and idx + 1 < len(self.phases):
                self.save_pretrained()
            self.state.phase_idx, self.state.phase_epoch, self.state.step_in_phase = idx + 1, 0, 0
        return self.finish()

    def initialise(self, resumed_from: Path | None) -> None:
        """--init-from: the other experiment's weights for a fresh run; a resumed run continues
        from its own checkpoint, which wins (``osoup.train.init_from``)."""
        if not self.cfg.init_from:
            return
        if resumed_from is not None:
            log.info("--init-from %s ignored: resuming from %s (the checkpoint wins)", self.cfg.init_from,
                     resumed_from)
            return
        init_model(self.model, self.cfg.init_from, heads=self.cfg.init_heads,
                   new_heads=self.cfg.init_new_heads)

    def save_pretrained(self) -> None:
        """``pretrain.pt`` at the end of SSL pre-training: {model, model_conf, epoch}, a stable
        name to fine-tune other methods from (``--init-from exp/<tag>/pretrain.pt``)."""
        if self.dist.is_main:
            path = self.exp / expdir.PRETRAIN
            save_atomic({"model": self.model.state_dict(), "model_conf": self.model_conf,
                         "epoch": self.state.global_epoch}, path)
            log.info("pre-training done after epoch %d: wrote %s", self.state.global_epoch, path)

    def _find_resume(self) -> tuple[dict, Path] | None:
        if self.dist.is_main:
            remove_interrupted_writes(self.exp)
        found = find_resume_checkpoint(self.exp, self.device, RESUME_KEYS)
        if found is None:
            log.info("--resume given but %s holds no checkpoint: starting from scratch", self.exp)
        return found

    def run_phase(self, phase: Phase, setup: PhaseSetup) -> None:
        """The remaining epochs of ``phase``, each followed by dev evaluation and a checkpoint."""
        spe = steps_per_epoch(self.data, phase.objectives, {n: s.lang for n, s in self.specs.items()}, self.cfg,
                              self.n_ranks)
        log.info("phase %s: method %s, objectives %s, %d epochs × %d steps, lr backbone %s heads %g", phase.name,
                 phase.method, ",".join(phase.objectives), phase.epochs, spe,
                 f"{phase.lr_backbone:g}" if phase.train_backbone else "frozen", phase.lr_heads)
        with StepSource(self.data, phase.objectives, self.cfg.accum_grad, self.num_workers, self.cfg.prefetch,
                        pin_memory=self.device.type == "cuda") as self.source:
            while self.state.phase_epoch < phase.epochs:
                self.train_one_epoch(phase, setup, spe)
                self.end_epoch(phase, setup)

    def train_one_epoch(self, phase: Phase, setup: PhaseSetup, spe: int) -> None:
        """The epoch's remaining steps (a resumed run starts mid-epoch)."""
        c, st = self.cfg, self.state
        set_train_mode(self.model, phase)
        first = max(0, st.step_in_phase - st.phase_epoch * spe)
        progress = EpochProgress(phase.objectives, spe, first, st.global_epoch + 1, c.log_interval)
        for step in range(first, spe):
            warm_up(setup, phase, c.warmup_steps, st.step_in_phase)
            verify = st.step_in_phase % c.log_interval == 0 or c.trace
            result = train_step(self.model, phase, setup, self.data, c, st.scaler, self.device, self.dist,
                                st.phase_epoch + step / spe, verify_lambda=verify, source=self.source)
            progress.frames += result.frames
            progress.data_wait += result.data_wait
            self._after_step(result, phase, setup)
            if self.cfg.save_every_steps > 0 and st.step_in_phase % c.save_every_steps == 0 and step + 1 < spe:
                self.save_checkpoint(setup, [expdir.LATEST])  # mid-epoch; the epoch end writes its own
            if result.outcome is Outcome.TAKEN:
                progress.add(result.losses)
                progress.maybe_log(step, result.stats, self.tb if self.dist.is_main else None)
        self.last_throughput = progress.throughput()

    def _after_step(self, result: StepResult, phase: Phase, setup: PhaseSetup) -> None:
        """Count the step: skips (stopping after --max-skips in a row), fp16 overflows, trace."""
        st = self.state
        if result.outcome is Outcome.SKIPPED:
            self._record_skip(result.reason)
        elif result.outcome is Outcome.OVERFLOW:
            log.info("fp16 gradient overflow at step %d: loss scale %g -> %g", st.step_in_phase,
                     st.scaler.scale * 2, st.scaler.scale)
        else:
            st.consecutive_skips = 0
            if self.cfg.trace:
                lams = [v.flatten().tolist() for k, v in result.stats.items() if k.startswith("lambda/")]
                write_trace(self.exp, self.dist.rank if self.dist.enabled else None,
                            {"step": st.step_in_phase, "losses": dict(zip(phase.objectives, result.losses)),
                             "lambda": lams})
        st.step_in_phase += 1
        if any(k.startswith("conflict/") for k in result.stats):
            log.info("conflict probe at step %d: MOO layers now %s", st.step_in_phase,
                     ",".join(setup.update.selected_layers))

    def _record_skip(self, what: str) -> None:
        """A skipped step (non-finite loss or gradient): count and log it; stop after
        ``max_skips`` in a row, naming the objective(s)."""
        st = self.state
        st.skips_total += 1
        st.consecutive_skips += 1
        log.warning("%s at step %d: step skipped (%d in a row, %d in total)", what, st.step_in_phase,
                    st.consecutive_skips, st.skips_total)
        if st.consecutive_skips >= self.cfg.max_skips:
            raise TrainingStopped(
                f"{st.consecutive_skips} consecutive steps skipped ({what} at step {st.step_in_phase}, "
                f"epoch {st.global_epoch + 1}); stopping. Lower the learning rate, check that objective's "
                f"data, or raise --max-skips")

    # -- epoch ends and checkpoints -------------------------------------------------------------
    def end_epoch(self, phase: Phase, setup: PhaseSetup) -> None:
        """Dev losses, learning-rate schedules, history, best.pt (last phase only: earlier
        phases always pass their model on) and the epoch checkpoint."""
        c, st = self.cfg, self.state
        epoch = st.phase_epoch + 1  # of this phase, 1-based
        evaluate = epoch == phase.epochs or (c.dev_every > 0 and epoch % c.dev_every == 0)
        dev, score = {}, math.inf
        if evaluate:
            dev = dev_losses(self.model, self.data.dev_sets, phase.objectives, c.max_frames, c.max_utts, self.device)
            score = dev_score(dev)
        for sch in setup.schedulers():
            if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
                sch.step(score)  # check_options: --dev-every 1, so every epoch has its score
            else:
                sch.step()
        st.phase_epoch += 1
        st.global_epoch += 1
        if not evaluate:
            log.info("epoch %d (%s) done; no dev evaluation after it (--dev-every %d)", st.global_epoch,
                     phase.name, c.dev_every)
        else:
            st.history.append({"epoch": st.global_epoch, "phase": phase.name, "dev": dev, "dev_score": score})
            log.info("epoch %d (%s) dev losses: %s", st.global_epoch, phase.name,
                     " ".join(f"{k}={v:.3f}" for k, v in dev.items()))
            if self.dist.is_main:
                self.tb.scalars({f"dev/{k}": v for k, v in dev.items()}, st.global_epoch)
        is_last_phase = st.phase_idx == len(self.phases) - 1
        if evaluate and is_last_phase and score < st.best_dev and math.isfinite(score):
            st.best_dev = score
            if self.dist.is_main:
                save_atomic({"model": self.model.state_dict(), "model_conf": self.model_conf,
                             "epoch": st.global_epoch}, self.exp / expdir.BEST)
        self.save_checkpoint(setup, [expdir.epoch_checkpoint_name(st.global_epoch), expdir.LATEST])
        if self.dist.is_main:
            prune_checkpoints(self.exp, max(c.keep_last, c.average_last))

    def save_checkpoint(self, setup: PhaseSetup, names: list[str]) -> None:
        """Write the training state under each of ``names`` (rank 0; a collective under torchrun)."""
        state = checkpoint_dict(self.state, self.model, setup, self.data, self.cfg, self.model_conf, self.n_ranks,
                                self.dist)
        if self.dist.is_main:
            for name in names:
                save_atomic(state, self.exp / name)

    def finish(self) -> dict[str, Any]:
        """avgN.pt (--average-last N) and train_summary.json; returns the summary."""
        c, st = self.cfg, self.state
        if c.average_last > 1 and self.dist.is_main:
            ckpts = epoch_checkpoints(self.exp)[-c.average_last:]
            save_atomic({"model": average_models(ckpts), "model_conf": self.model_conf,
                         "averaged": [p.name for p in ckpts]}, self.exp / expdir.average_name(c.average_last))
        summary = {"best_dev": st.best_dev, "epochs": st.global_epoch, "skipped_steps": st.skips_total,
                   "phases": [p.name for p in self.phases], "history": st.history}
        if self.dist.is_main:
            atomic_write_text(self.exp / expdir.TRAIN_SUMMARY, json.dumps(summary, indent=1))
        self.tb.close()
        return summary
