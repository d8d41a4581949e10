"""The training loop for every recipe.

One step: every objective of the current phase draws its own batch, splits it into two
disjoint halves (MoDo's double sampling), and calls ``soup.backward`` for each half; then
``soup.step`` combines the per-objective backbone gradients by the recipe's rule (vs / vc / vm /
joint / mean / static / ssl), gradients are clipped after the combination, and the backbone
(α) and head (β) AdamW optimizers step separately.

Recipes with phases (SPEC §2, paper appendix D):
  two_stage         pre-train on SSL, then fine-tune on the mean of supervised losses
                    (backbone learning rate β during fine-tuning, eq. 32)
  two_stage_static  as two_stage, fine-tuning with fixed per-language weights μ
  peft              pre-train, freeze θ, fine-tune the heads one set at a time
"""
from __future__ import annotations

import json
import logging
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from osoup.data.dataset import FeatureSet, ObjectiveSampler, make_batches, split_halves
from osoup.fileio import DataError, atomic_write_text
from osoup.moo import PenaltySchedule, make_soup, split_optimizers
from osoup.train import distributed as D
from osoup.train.checkpoint import (
    average_models,
    epoch_checkpoints,
    prune_checkpoints,
    rng_state,
    save_atomic,
    set_rng_state,
)
from osoup.nets.model import SoupModel, pad_batch, pad_targets
from osoup.data.objectives import ObjectiveSpec

log = logging.getLogger(__name__)

MOO_RECIPES = ("vs", "vc", "vm", "joint")
PHASED_RECIPES = ("two_stage", "two_stage_static", "peft")
RECIPES = MOO_RECIPES + PHASED_RECIPES
PAPER_STATIC_WEIGHTS = {"en": 0.18, "fr": 0.19, "de": 0.27, "es": 0.16, "ca": 0.20}


class TrainingStopped(RuntimeError):
    """Training cannot go on (e.g. too many consecutive non-finite steps); the message says why."""


@dataclass
class TrainConfig:
    """Every knob of a training run (``osoup-train --help`` documents each)."""

    recipe: str = "vm"
    levels: str | None = "asr>st>ssl"
    epochs: int = 200
    pretrain_epochs: int = 100  # two_stage / peft: epochs of SSL pre-training
    finetune_epochs: int = 0  # two_stage / peft: epochs of fine-tuning (0: `epochs`)
    steps_per_epoch: int = 0  # 0: enough for the largest objective's (upsampled) data to be seen once
    max_frames: int = 12000  # padded frames per objective batch
    max_utts: int = 64
    upsample: dict = field(default_factory=dict)  # lang -> factor (epoch length)
    lr_backbone: float = 5e-4  # α
    lr_heads: float = 5e-5  # β
    weight_decay: float = 0.01
    warmup_steps: int = 0
    scheduler: str = "plateau"  # plateau | step | none (MOO recipes and fine-tuning)
    pretrain_scheduler: str = "step"
    step_size: int = 20  # StepLR every N epochs, ×0.1
    plateau_patience: int = 10
    grad_clip: float = 5.0
    accum_grad: int = 1
    gamma: float = 0.01  # MoDo λ step
    rho: float = 0.0
    gram_normalize: str = "none"
    gram_params: str = "shared"
    weighting: str = "modo"  # weighting inside each multi-objective level (osoup.moo.make_weighting)
    weighting_opts: dict = field(default_factory=dict)
    moo_layers: float = 0  # layer selection: k layers (>= 1) or a fraction (< 1); 0 = full MOO
    conflict_interval: int = 50  # steps between conflict probes (layer selection)
    probe_coords: int = 0  # coordinates per layer group a probe scores on; 0 = all
    penalty_init: list = field(default_factory=lambda: [])
    penalty_rate: list = field(default_factory=lambda: [])
    penalty_cap: list = field(default_factory=lambda: [])
    penalty_scale_epochs: int = 200  # rates are scaled by penalty_scale_epochs / epochs (paper: 200 epochs)
    static_weights: dict = field(default_factory=lambda: dict(PAPER_STATIC_WEIGHTS))
    peft_sets: str = "asr>st"
    seed: int = 1
    keep_last: int = 5
    average_last: int = 0
    log_interval: int = 10
    max_skips: int = 10  # stop after this many consecutive skipped (non-finite) steps
    save_every_steps: int = 0  # also write latest.pt every N steps (0: at epoch ends only)
    amp: str = "none"  # none | bf16 | fp16: autocast of the forward passes (fp16 with a loss scale)
    simulate_ranks: int = 0  # N > 1: one process draws what N data-parallel ranks would draw
    trace: bool = False  # write per-step global losses and λ to <exp>/trace[.rank<r>].jsonl
    cache_feats: bool = True
    device: str = "auto"  # auto: cuda when available, else cpu
    threads: int = 0


@dataclass
class Phase:
    name: str
    recipe: str  # soup recipe: vs vc vm joint mean static ssl
    objectives: list[str]
    epochs: int
    lr_backbone: float
    lr_heads: float
    scheduler: str
    train_backbone: bool = True


def default_penalties(recipe: str, n_levels: int) -> list[tuple[float, float, float]]:
    if recipe in ("vc", "joint"):
        return [(0.0, 0.02, 1.5)]
    if recipe == "vm":
        return [(0.1, 0.02, 1.5)] + [(0.0, 0.02, 1.5)] * max(0, n_levels - 2)
    return []


class Trainer:
    def __init__(self, cfg: TrainConfig, specs: list[ObjectiveSpec], model_conf: dict, exp_dir: str | Path,
                 dist: D.DistContext | None = None):
        if cfg.recipe not in RECIPES:
            raise DataError(f"unknown recipe {cfg.recipe!r}; choose one of {', '.join(RECIPES)}")
        self.cfg = cfg
        self.dist = dist or D.DistContext()
        if cfg.amp not in ("none", "bf16", "fp16"):
            raise DataError(f"unknown --amp {cfg.amp!r}: choose none, bf16 or fp16")
        if cfg.simulate_ranks > 1 and self.dist.enabled:
            raise DataError("--simulate-ranks is for a single process; under torchrun the ranks are real")
        # data-parallel ranks whose batches one step sees: real (torchrun) or simulated
        self.n_ranks = self.dist.world_size if self.dist.enabled else max(1, cfg.simulate_ranks)
        self.loss_scale = 2.0**16 if cfg.amp == "fp16" else 1.0
        self._scale_good_steps = 0
        self.specs = {s.name: s for s in specs}
        self.names = [s.name for s in specs]
        self.exp = Path(exp_dir)
        self.exp.mkdir(parents=True, exist_ok=True)
        self.device = torch.device(("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else cfg.device)
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        torch.manual_seed(cfg.seed)
        self.phases = self._make_phases()
        self.model = SoupModel(**model_conf).to(self.device)
        if self.dist.enabled:
            D.broadcast_parameters(self.model)
            if self.dist.rank > 0:  # own dropout / SpecAugment / SSL draws per rank
                torch.manual_seed(cfg.seed + 7919 * self.dist.rank)
        self.model_conf = model_conf
        self._load_data()
        self.global_epoch = 0  # epochs finished over all phases
        self.phase_idx = 0
        self.phase_epoch = 0
        self.step_in_phase = 0
        self.best_dev = math.inf
        self.skips_total = 0
        self.consecutive_skips = 0
        self.history: list[dict] = []
        self._tb = None

    # -- set-up ----------------------------------------------------------------------------
    def _make_phases(self) -> list[Phase]:
        c = self.cfg
        sup = [n for n in self.names if n != "ssl"]
        has_ssl = "ssl" in self.names
        if c.recipe in MOO_RECIPES:
            if c.recipe in ("vs", "vc", "vm") and len(self.names) < 2:
                raise DataError(f"recipe {c.recipe} needs at least two objectives, got {self.names}")
            if c.recipe in ("vc", "joint") and not has_ssl:
                raise DataError(f"recipe {c.recipe} needs the SSL objective (--ssl cpc|bestrq)")
            return [Phase("joint", c.recipe, list(self.names), c.epochs, c.lr_backbone, c.lr_heads, c.scheduler)]
        if not has_ssl:
            raise DataError(f"recipe {c.recipe} pre-trains on SSL: give --ssl cpc|bestrq")
        phases = [Phase("pretrain", "ssl", ["ssl"], c.pretrain_epochs, c.lr_backbone, c.lr_heads, c.pretrain_scheduler)]
        ft_epochs = c.finetune_epochs or c.epochs
        if c.recipe == "two_stage":
            phases.append(Phase("finetune", "mean", sup, ft_epochs, c.lr_heads, c.lr_heads, c.scheduler))
        elif c.recipe == "two_stage_static":
            phases.append(Phase("finetune", "static", sup, ft_epochs, c.lr_heads, c.lr_heads, c.scheduler))
        else:  # peft: one set of heads at a time, θ frozen
            from osoup.moo import parse_levels

            sets = parse_levels(c.peft_sets, sup, ssl=None)
            per = max(1, ft_epochs // len(sets))
            for i, group in enumerate(sets):
                phases.append(Phase(f"peft{i}", "mean", group, per, 0.0, c.lr_heads, c.scheduler, train_backbone=False))
        return phases

    def _load_data(self) -> None:
        from osoup.text.tokenizer import Tokenizer

        c = self.cfg
        self.train_sets: dict[str, FeatureSet] = {}
        self.dev_sets: dict[str, FeatureSet] = {}
        self.samplers: dict[str, ObjectiveSampler] = {}
        self.sim_samplers: dict[str, list[ObjectiveSampler]] = {}  # --simulate-ranks: virtual ranks 1..N-1
        self.batch_counts: dict[str, int] = {}
        for i, (name, s) in enumerate(self.specs.items()):
            enc = vocab = None
            if s.token_dir is not None:
                tok = Tokenizer(s.token_dir)
                enc, vocab = tok.encode, tok.vocab_size
            self.train_sets[name] = FeatureSet(s.train_dirs, s.text_file, enc, cache=c.cache_feats, vocab_size=vocab)
            if s.dev_dirs:
                self.dev_sets[name] = FeatureSet(s.dev_dirs, s.text_file, enc, cache=c.cache_feats, vocab_size=vocab)
            batches = make_batches(self.train_sets[name].examples, c.max_frames, c.max_utts)
            self.batch_counts[name] = len(batches)
            seed = c.seed * 1000 + i
            if self.dist.enabled:
                self.samplers[name] = ObjectiveSampler(batches, seed, rank=self.dist.rank, world_size=self.dist.world_size)
            elif self.n_ranks > 1:
                self.samplers[name] = ObjectiveSampler(batches, seed, rank=0, world_size=self.n_ranks)
                self.sim_samplers[name] = [ObjectiveSampler(batches, seed, rank=r, world_size=self.n_ranks)
                                           for r in range(1, self.n_ranks)]
            else:
                self.samplers[name] = ObjectiveSampler(batches, seed=seed)
            log.info(
                "objective %s: %d train utterances (%.2f h) in %d batches, %d dev utterances",
                name,
                len(self.train_sets[name]),
                self.train_sets[name].total_frames() / 360000,
                len(batches),
                len(self.dev_sets[name]) if name in self.dev_sets else 0,
            )

    def steps_per_epoch(self, phase: Phase) -> int:
        if self.cfg.steps_per_epoch > 0:
            return self.cfg.steps_per_epoch
        n = 1
        for name in phase.objectives:
            lang = self.specs[name].lang
            n = max(n, math.ceil(self.batch_counts[name] * float(self.cfg.upsample.get(lang, 1.0)) / self.n_ranks))
        return n

    def _make_soup(self, phase: Phase):
        c = self.cfg
        heads = {n: self.model.objective_head_parameters(n) for n in phase.objectives}
        shared = self.model.shared_parameters()
        ssl = "ssl" if "ssl" in phase.objectives else None
        penalties = None
        if phase.recipe in ("vc", "joint", "vm"):
            n_levels = len(c.levels.split(">")) if (phase.recipe == "vm" and c.levels) else 2
            defaults = default_penalties(phase.recipe, n_levels)
            scale = c.penalty_scale_epochs / max(1, phase.epochs)
            penalties = []
            for j, (i0, r0, cap0) in enumerate(defaults):
                i = float(c.penalty_init[j]) if j < len(c.penalty_init) else i0
                r = float(c.penalty_rate[j]) if j < len(c.penalty_rate) else r0
                cap = float(c.penalty_cap[j]) if j < len(c.penalty_cap) else cap0
                penalties.append(PenaltySchedule(i, r * scale, cap))
        static = None
        if phase.recipe == "static":
            raw = {n: float(c.static_weights.get(self.specs[n].lang, 0.0)) for n in phase.objectives}
            missing = [n for n, w in raw.items() if w <= 0]
            if missing:
                raise DataError(f"two_stage_static: no positive static weight for {missing} (set --static-weights lang:w,...)")
            total = sum(raw.values())
            static = {n: w / total for n, w in raw.items()}
        return make_soup(
            phase.recipe,
            shared,
            heads,
            phase.objectives,
            ssl,
            levels=c.levels if phase.recipe == "vm" else None,
            penalties=penalties,
            modo={"gamma": c.gamma, "rho": c.rho, "normalize": c.gram_normalize},
            static_weights=static,
            gram_params=c.gram_params,
            weighting=c.weighting,
            weighting_kwargs=dict(c.weighting_opts) or None,
            layer_groups=self.model.encoder.layer_groups() if c.moo_layers else None,
            moo_layers=(int(c.moo_layers) if c.moo_layers >= 1 else float(c.moo_layers)) if c.moo_layers else None,
            conflict_interval=c.conflict_interval,
            probe_coords=c.probe_coords or None,
        )

    def _make_optimizers(self, phase: Phase):
        shared = self.model.shared_parameters()
        heads = [p for n in phase.objectives for p in self.model.objective_head_parameters(n)]
        opt_t, opt_h = split_optimizers(shared, heads, phase.lr_backbone, phase.lr_heads, weight_decay=self.cfg.weight_decay)
        return opt_t, opt_h

    def _make_scheduler(self, opt: torch.optim.Optimizer, kind: str):
        if kind == "step":
            return torch.optim.lr_scheduler.StepLR(opt, step_size=self.cfg.step_size, gamma=0.1)
        if kind == "plateau":
            return torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=0.1, patience=self.cfg.plateau_patience)
        if kind == "none":
            return None
        raise DataError(f"unknown scheduler {kind!r}: choose plateau, step or none")

    # -- one batch -------------------------------------------------------------------------
    def _draw_halves(self, name: str) -> tuple[list[int], list[int]]:
        """The two disjoint halves of ``name``'s next minibatch. With --simulate-ranks N, each
        half is the concatenation, rank by rank, of the halves the N ranks would draw (the
        union that N real ranks see in one step)."""
        parts = [split_halves(s.next()) for s in [self.samplers[name], *self.sim_samplers.get(name, [])]]
        return [i for h0, _ in parts for i in h0], [i for _, h1 in parts for i in h1]

    def _autocast(self):
        if self.cfg.amp == "none":
            return torch.autocast(self.device.type, enabled=False)
        return torch.autocast(self.device.type, dtype=torch.bfloat16 if self.cfg.amp == "bf16" else torch.float16)

    def _half_loss(self, name: str, fset: FeatureSet, idx: list[int]) -> tuple[torch.Tensor, int]:
        """The loss of one half: its loss sum over the total count (CTC: target tokens, SSL:
        prediction terms). Under torchrun the count is the GLOBAL one (summed over ranks), so
        the ranks' losses, and their gradients, add up to the loss of the union of the halves."""
        exs = [fset.examples[i] for i in idx]
        feats, lengths = pad_batch([fset.load(e.utt_id) for e in exs], self.device)
        frames = int(sum(e.num_frames for e in exs))
        with self._autocast():
            if name == "ssl":
                loss_sum, count = self.model.ssl_loss(feats, lengths)
            else:
                targets, tlens = pad_targets([e.target for e in exs], self.device)
                loss_sum = self.model.supervised_loss(name, feats, lengths, targets, tlens)
                count = sum(len(e.target) for e in exs)
        loss_sum = loss_sum.float()
        if self.dist.enabled:
            return loss_sum / D.global_count(count, loss_sum.device), frames
        if name == "ssl":
            return loss_sum / torch.clamp(torch.as_tensor(count, dtype=loss_sum.dtype, device=loss_sum.device), min=1), frames
        return loss_sum / float(count), frames

    # -- dev -------------------------------------------------------------------------------
    @torch.no_grad()
    def dev_losses(self, names: list[str]) -> dict[str, float]:
        self.model.eval()
        out = {}
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(12345)
            for name in names:
                fset = self.dev_sets.get(name)
                if fset is None:
                    continue
                total, count = 0.0, 0.0
                for b in make_batches(fset.examples, self.cfg.max_frames, self.cfg.max_utts, min_utts=1):
                    exs = [fset.examples[i] for i in b]
                    feats, lengths = pad_batch([fset.load(e.utt_id) for e in exs], self.device)
                    if name == "ssl":
                        s, n = self.model.ssl_loss(feats, lengths)
                        total += float(s)
                        count += float(n)
                    else:
                        targets, tlens = pad_targets([e.target for e in exs], self.device)
                        total += float(self.model.supervised_loss(name, feats, lengths, targets, tlens))
                        count += sum(len(e.target) for e in exs)
                out[name] = total / max(count, 1.0)
        self.model.train()
        return out

    # -- checkpoints -----------------------------------------------------------------------
    def _state(self, soup, opt_t, opt_h, sch_t, sch_h) -> dict:
        return {
            "model": self.model.state_dict(),
            "opt_backbone": opt_t.state_dict(),
            "opt_heads": opt_h.state_dict(),
            "sched_backbone": sch_t.state_dict() if sch_t is not None else None,
            "sched_heads": sch_h.state_dict() if sch_h is not None else None,
            "soup": soup.state_dict(),
            "samplers": {n: s.state_dict() for n, s in self.samplers.items()},
            "rng": rng_state(),
            "rng_ranks": D.all_gather_objects(rng_state()) if self.dist.enabled else None,
            "loss_scale": self.loss_scale,
            "n_ranks": self.n_ranks,
            "global_epoch": self.global_epoch,
            "phase_idx": self.phase_idx,
            "phase_epoch": self.phase_epoch,
            "step_in_phase": self.step_in_phase,
            "best_dev": self.best_dev,
            "history": self.history,
            "skips_total": self.skips_total,
            "consecutive_skips": self.consecutive_skips,
            "config": asdict(self.cfg),
            "model_conf": self.model_conf,
        }

    def _tensorboard(self):
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._tb = SummaryWriter(str(self.exp / "tensorboard"))
            except Exception as e:  # noqa: BLE001 - TensorBoard is optional at run time
                log.warning("TensorBoard disabled: %s", e)
                self._tb = False
        return self._tb or None

    # -- main loop -------------------------------------------------------------------------
    _RESUME_KEYS = ("model", "opt_backbone", "opt_heads", "soup", "samplers", "rng", "global_epoch",
                    "phase_idx", "phase_epoch", "step_in_phase", "best_dev", "history")

    def load_resume_state(self) -> tuple[dict, Path] | None:
        """The newest loadable checkpoint of the experiment: ``latest.pt``, else the epoch
        checkpoints from the newest down. A file that cannot be read (e.g. a kill during a
        write on a file system without atomic rename) is skipped with a warning."""
        if self.dist.is_main:  # temp files of checkpoint writes that a kill interrupted
            for tmp in self.exp.glob(".*.pt.*.tmp"):
                log.info("removing %s (an interrupted checkpoint write)", tmp)
                tmp.unlink(missing_ok=True)
        candidates = [self.exp / "latest.pt"] + epoch_checkpoints(self.exp)[::-1]
        for path in candidates:
            if not path.is_file():
                continue
            try:
                state = torch.load(path, map_location=self.device, weights_only=False)
                missing = [k for k in self._RESUME_KEYS if k not in state]
                if missing:
                    raise ValueError(f"not a training checkpoint (missing {', '.join(missing)})")
            except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
                log.warning("cannot resume from %s (%s): trying an older checkpoint", path, e)
                continue
            return state, path
        return None

    def run(self, resume: bool = False) -> dict:
        """Train every phase to the end (from the newest checkpoint with ``resume``); returns
        the summary also written to ``train_summary.json``."""
        c = self.cfg
        resume_state = None
        found = self.load_resume_state() if resume else None
        if found is not None:
            resume_state, path = found
            self.model.load_state_dict(resume_state["model"])
            for k in ("global_epoch", "phase_idx", "phase_epoch", "step_in_phase", "best_dev", "history"):
                setattr(self, k, resume_state[k])
            self.skips_total = int(resume_state.get("skips_total", 0))
            self.consecutive_skips = int(resume_state.get("consecutive_skips", 0))
            for n, st in resume_state["samplers"].items():
                if n in self.samplers:
                    for smp in [self.samplers[n], *self.sim_samplers.get(n, [])]:
                        smp.load_state_dict(st)  # every rank's sampler is at the same position
            self.loss_scale = float(resume_state.get("loss_scale", self.loss_scale))
            if int(resume_state.get("n_ranks", 1)) != self.n_ranks:
                log.warning("checkpoint was written with %s data-parallel ranks, now %d: batches differ from an "
                            "uninterrupted run", resume_state.get("n_ranks", 1), self.n_ranks)
            log.info("resumed from %s: epoch %d (phase %d, epoch %d in phase, step %d in phase)",
                     path, self.global_epoch, self.phase_idx, self.phase_epoch, self.step_in_phase)
        elif resume:
            log.info("--resume given but %s holds no checkpoint: starting from scratch", self.exp)

        while self.phase_idx < len(self.phases):
            phase = self.phases[self.phase_idx]
            for p in self.model.encoder.parameters():
                p.requires_grad_(phase.train_backbone)
            soup = self._make_soup(phase)
            opt_t, opt_h = self._make_optimizers(phase)
            sch_t = self._make_scheduler(opt_t, phase.scheduler)
            sch_h = self._make_scheduler(opt_h, phase.scheduler)
            in_phase = self.phase_epoch > 0 or self.step_in_phase > 0
            if resume_state is not None and resume_state["phase_idx"] == self.phase_idx and in_phase:
                soup.load_state_dict(resume_state["soup"])
                opt_t.load_state_dict(resume_state["opt_backbone"])
                opt_h.load_state_dict(resume_state["opt_heads"])
                if sch_t is not None and resume_state["sched_backbone"] is not None:
                    sch_t.load_state_dict(resume_state["sched_backbone"])
                    sch_h.load_state_dict(resume_state["sched_heads"])
                ranks = resume_state.get("rng_ranks")
                if self.dist.enabled and ranks and len(ranks) == self.dist.world_size:
                    set_rng_state(ranks[self.dist.rank])
                else:
                    set_rng_state(resume_state["rng"])
            resume_state = None
            spe = self.steps_per_epoch(phase)
            log.info(
                "phase %s: recipe %s, objectives %s, %d epochs × %d steps, lr backbone %g heads %g",
                phase.name, phase.recipe, ",".join(phase.objectives), phase.epochs, spe, phase.lr_backbone, phase.lr_heads,
            )
            def save_latest() -> None:
                state = self._state(soup, opt_t, opt_h, sch_t, sch_h)  # a collective under torchrun
                if self.dist.is_main:
                    save_atomic(state, self.exp / "latest.pt")

            while self.phase_epoch < phase.epochs:
                self._train_epoch(phase, soup, opt_t, opt_h, spe, save_latest)
                dev = self.dev_losses(phase.objectives)
                sup = [v for k, v in dev.items() if k != "ssl"]
                score = sum(sup) / len(sup) if sup else dev.get("ssl", math.inf)
                for sch in (sch_t, sch_h):
                    if isinstance(sch, torch.optim.lr_scheduler.ReduceLROnPlateau):
                        sch.step(score)
                    elif sch is not None:
                        sch.step()
                self.phase_epoch += 1
                self.global_epoch += 1
                rec = {"epoch": self.global_epoch, "phase": phase.name, "dev": dev, "dev_score": score}
                self.history.append(rec)
                log.info("epoch %d (%s) dev losses: %s", self.global_epoch, phase.name,
                         " ".join(f"{k}={v:.3f}" for k, v in dev.items()))
                tb = self._tensorboard() if self.dist.is_main else None
                if tb:
                    for k, v in dev.items():
                        tb.add_scalar(f"dev/{k}", v, self.global_epoch)
                # The last phase picks the model; earlier phases (pre-training) always pass on.
                is_last_phase = self.phase_idx == len(self.phases) - 1
                if is_last_phase and score < self.best_dev and math.isfinite(score):
                    self.best_dev = score
                    if self.dist.is_main:
                        save_atomic({"model": self.model.state_dict(), "model_conf": self.model_conf, "epoch": self.global_epoch}, self.exp / "best.pt")
                state = self._state(soup, opt_t, opt_h, sch_t, sch_h)
                if self.dist.is_main:
                    save_atomic(state, self.exp / f"checkpoint.{self.global_epoch}.pt")
                    save_atomic(state, self.exp / "latest.pt")
                    prune_checkpoints(self.exp, max(c.keep_last, c.average_last))
            self.phase_idx += 1
            self.phase_epoch = 0
            self.step_in_phase = 0
        if c.average_last > 1 and self.dist.is_main:
            ckpts = epoch_checkpoints(self.exp)[-c.average_last :]
            save_atomic({"model": average_models(ckpts), "model_conf": self.model_conf, "averaged": [p.name for p in ckpts]},
                        self.exp / f"avg{c.average_last}.pt")
        summary = {"best_dev": self.best_dev, "epochs": self.global_epoch, "skipped_steps": self.skips_total, "history": self.history}
        if self.dist.is_main:
            atomic_write_text(self.exp / "train_summary.json", json.dumps(summary, indent=1))
        if self._tb:
            self._tb.close()
        return summary

    @staticmethod
    def _all_finite(losses: torch.Tensor, *tensor_lists: list[torch.Tensor]) -> torch.Tensor:
        """A device bool: every loss and every gradient entry is finite (no host sync)."""
        flags = [torch.isfinite(losses).all()]
        grads = [t for ts in tensor_lists for t in ts if t.numel() > 0]
        if grads:
            norms = torch._foreach_norm(grads)  # inf/nan anywhere makes the norm non-finite
            flags.append(torch.isfinite(torch.stack([n.float() for n in norms])).all())
        return torch.stack(flags).all()

    def _skip_step(self, phase: Phase, soup, per: list[float], heads: list) -> None:
        """A non-finite loss or gradient: no parameter, optimizer or λ change; count, log, and
        stop after ``max_skips`` in a row, naming the objective(s)."""
        self.skips_total += 1
        self.consecutive_skips += 1
        bad = [n for n, v in zip(phase.objectives, per) if not math.isfinite(v)]
        if bad:
            what = "non-finite loss of " + ",".join(bad)
        else:  # losses fine: look for the objective through its head's gradient
            bad = [
                n for n in phase.objectives
                if any(p.grad is not None and not bool(torch.isfinite(p.grad).all()) for p in self.model.objective_head_parameters(n))
            ]
            what = ("non-finite gradient of " + ",".join(bad)) if bad else (
                "non-finite gradient of the shared backbone (losses finite: " + ",".join(phase.objectives) + ")"
            )
        soup.zero_grad()  # forgets the step's gradients; λ and the step counter are untouched
        log.warning("%s at step %d: step skipped (%d in a row, %d in total)", what, self.step_in_phase,
                    self.consecutive_skips, self.skips_total)
        if self.consecutive_skips >= self.cfg.max_skips:
            raise TrainingStopped(
                f"{self.consecutive_skips} consecutive steps skipped ({what} at step {self.step_in_phase}, "
                f"epoch {self.global_epoch + 1}); stopping. Lower the learning rate, check that objective's "
                f"data, or raise --max-skips"
            )

    def _trace(self, rec: dict) -> None:
        """--trace: one JSON line per step (global losses, λ) per rank, for equivalence checks."""
        name = f"trace.rank{self.dist.rank}.jsonl" if self.dist.enabled else "trace.jsonl"
        with open(self.exp / name, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")

    def _maybe_save(self, save_latest, step: int, spe: int) -> None:
        """--save-every-steps: a mid-epoch latest.pt (the epoch end writes its own)."""
        n = self.cfg.save_every_steps
        if save_latest is not None and n > 0 and self.step_in_phase % n == 0 and step + 1 < spe:
            save_latest()

    def _train_epoch(self, phase: Phase, soup, opt_t, opt_h, spe: int, save_latest=None) -> None:
        c = self.cfg
        self.model.train()
        t0 = time.time()
        frames_seen = 0
        loss_acc = {n: 0.0 for n in phase.objectives}
        n_logged = 0
        shared = self.model.shared_parameters()
        heads = [p for n in phase.objectives for p in self.model.objective_head_parameters(n)]
        start_step = self.step_in_phase - self.phase_epoch * spe
        for step in range(max(0, start_step), spe):
            # warm-up: linear ramp of both learning rates over the first warmup_steps of the phase
            if c.warmup_steps > 0 and self.step_in_phase < c.warmup_steps:
                f = (self.step_in_phase + 1) / c.warmup_steps
                for opt, base in ((opt_t, phase.lr_backbone), (opt_h, phase.lr_heads)):
                    for g in opt.param_groups:
                        g["lr"] = base * f
            epoch_f = self.phase_epoch + step / spe
            soup.zero_grad()
            opt_t.zero_grad(set_to_none=True)
            opt_h.zero_grad(set_to_none=True)
            soup.begin_step(epoch_f)
            # running statistics (BatchNorm) change in the forward pass: a skipped step restores them
            buffers_before = [(b, b.detach().clone()) for b in self.model.buffers()]
            losses = []
            scale = self.loss_scale  # 1 unless --amp fp16
            for name in phase.objectives:
                fset = self.train_sets[name]
                for _ in range(c.accum_grad):
                    for h, idx in enumerate(self._draw_halves(name)):
                        loss, frames = self._half_loss(name, fset, idx)
                        soup.backward(name, h, loss * (scale / c.accum_grad) if scale != 1.0 else loss / c.accum_grad)
                        losses.append(loss.detach())
                        frames_seen += frames
            per_t = torch.stack(losses).view(len(phase.objectives), -1).float().mean(1)
            grads = [p.grad for p in shared + heads if p.grad is not None]
            if self.dist.enabled or scale != 1.0:
                # G1, G2 (and the soup's losses) in one collective, before λ; then the other
                # gradients in buckets. fp16: unscale before the Gramian (a scaled Gramian
                # would change MoDo's effective step size γ).
                def reduce(ts: list[torch.Tensor]) -> None:
                    D.all_reduce_fused(ts)
                    if scale != 1.0:
                        torch._foreach_mul_(ts, 1.0 / scale)  # the soup's losses were scaled too

                soup.reduce_pending(reduce)
                direct = {id(p) for p in soup.direct_params()}
                D.all_reduce_buckets([p.grad for p in shared if p.grad is not None and id(p) in direct]
                                     + [p.grad for p in heads if p.grad is not None] + [per_t])
                if scale != 1.0 and grads:
                    torch._foreach_mul_(grads, 1.0 / scale)
            # Checked before soup.step: a NaN Gramian must never reach the λ update (λ, the
            # probe schedule and loss-based weightings stay as they were on a skipped step).
            finite = self._all_finite(per_t, soup.pending_buffers(), grads)
            # the one host synchronisation of the step: finiteness and the logged losses together
            flags = torch.cat([finite.float().view(1), per_t.detach()]).tolist()
            per = flags[1:]
            if flags[0] != 1.0:
                if scale > 1.0 and all(math.isfinite(v) for v in per):
                    # fp16 overflow of the scaled gradients: lower the scale and retry on the next batch
                    self.loss_scale = scale / 2
                    self._scale_good_steps = 0
                    log.info("fp16 gradient overflow at step %d: loss scale %g -> %g", self.step_in_phase, scale,
                             self.loss_scale)
                    soup.zero_grad()
                else:
                    self._skip_step(phase, soup, per, heads)
                with torch.no_grad():  # the step is dropped: model buffers (BatchNorm statistics) as before it
                    for b, saved in buffers_before:
                        b.copy_(saved)
                self.step_in_phase += 1
                self._maybe_save(save_latest, step, spe)
                continue
            stats = soup.step(epoch_f)
            self.consecutive_skips = 0
            if scale != 1.0:
                self._scale_good_steps += 1
                if self._scale_good_steps >= 2000:  # torch.amp.GradScaler's default growth interval
                    self.loss_scale, self._scale_good_steps = scale * 2, 0
            lams = [v for k, v in stats.items() if k.startswith("lambda/")]
            if self.dist.enabled and lams and (self.step_in_phase % c.log_interval == 0 or c.trace):
                D.assert_same_on_all_ranks(torch.cat([v.flatten().float() for v in lams]), "λ")
            if c.trace:
                self._trace({"step": self.step_in_phase, "losses": dict(zip(phase.objectives, per)),
                             "lambda": [v.flatten().tolist() for v in lams]})
            if phase.train_backbone and c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(shared, c.grad_clip)
            if c.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(heads, c.grad_clip)
            if phase.train_backbone:
                opt_t.step()
            opt_h.step()
            self.step_in_phase += 1
            if any(k.startswith("conflict/") for k in stats):
                log.info("conflict probe at step %d: MOO layers now %s", self.step_in_phase, ",".join(soup.selected_layers))
            self._maybe_save(save_latest, step, spe)
            for n, v in zip(phase.objectives, per):
                loss_acc[n] += v
            n_logged += 1
            if (step + 1) % c.log_interval == 0 or step + 1 == spe:
                el = time.time() - t0
                rtf = frames_seen / 100.0 / max(el, 1e-9)
                eta = el / (step + 1 - max(0, start_step)) * (spe - step - 1)
                lam = " ".join(
                    f"{k}=[{','.join(f'{x:.2f}' for x in v.flatten().tolist())}]" for k, v in stats.items() if k.startswith("lambda")
                )
                eta_s = " ".join(f"{k}={float(v):.3f}" for k, v in stats.items() if k.startswith("eta"))
                log.info(
                    "epoch %d step %d/%d | %s | %s %s | %.1f s speech/s | ETA %.0fs",
                    self.global_epoch + 1, step + 1, spe,
                    " ".join(f"{n}={loss_acc[n] / max(n_logged, 1):.3f}" for n in phase.objectives),
                    lam, eta_s, rtf, eta,
                )
                tb = self._tensorboard()
                if tb:
                    gstep = self.global_epoch * spe + step + 1
                    for n in phase.objectives:
                        tb.add_scalar(f"train/{n}", loss_acc[n] / max(n_logged, 1), gstep)
                    for k, v in stats.items():
                        v = torch.as_tensor(v).flatten()
                        if v.numel() == 1:
                            tb.add_scalar(k, float(v), gstep)
                        else:
                            for j, x in enumerate(v.tolist()):
                                tb.add_scalar(f"{k}/{j}", x, gstep)
                    tb.add_scalar("throughput/speech_sec_per_sec", rtf, gstep)
                loss_acc = {n: 0.0 for n in phase.objectives}
                n_logged = 0
        el = time.time() - t0
        self.last_throughput = frames_seen / 100.0 / max(el, 1e-9)
