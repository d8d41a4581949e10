"""The training data of a run: each objective's feature sets, batches and its own resumable
sampler (``docs/design.md``), and the two disjoint halves a step draws from it (MoDo's
double sampling, paper §3)."""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from osoup.data.dataset import FeatureSet, ObjectiveSampler, make_batches, split_halves
from osoup.data.objectives import ObjectiveSpec
from osoup.fileio import DataError
from osoup.train.batch import StepPlan

log = logging.getLogger(__name__)


@dataclass
class TrainData:
    """Per objective: train and dev feature sets, the sampler of this process and, with
    --simulate-ranks N, the samplers of the virtual ranks 1..N-1."""

    train_sets: dict[str, FeatureSet] = field(default_factory=dict)
    dev_sets: dict[str, FeatureSet] = field(default_factory=dict)
    samplers: dict[str, ObjectiveSampler] = field(default_factory=dict)
    sim_samplers: dict[str, list[ObjectiveSampler]] = field(default_factory=dict)
    batch_counts: dict[str, int] = field(default_factory=dict)


def _feature_sets(spec: ObjectiveSpec, cache: bool) -> tuple[FeatureSet, FeatureSet | None]:
    from osoup.text.tokenizer import Tokenizer

    enc = vocab = None
    if spec.token_dir is not None:
        tok = Tokenizer(spec.token_dir)
        enc, vocab = tok.encode, tok.vocab_size
    train = FeatureSet(spec.train_dirs, spec.text_file, enc, cache=cache, vocab_size=vocab)
    if len(train) < 2:
        raise DataError(
            f"objective {spec.name}: its training data ({', '.join(map(str, spec.train_dirs))}) has "
            f"{len(train)} utterance; every step splits the objective's minibatch into two disjoint halves "
            f"(double sampling), which needs at least 2")
    dev = FeatureSet(spec.dev_dirs, spec.text_file, enc, cache=cache, vocab_size=vocab) if spec.dev_dirs else None
    return train, dev


def _samplers(batches: list[list[int]], seed: int, rank: int, world_size: int,
              simulate: int) -> tuple[ObjectiveSampler, list[ObjectiveSampler]]:
    """This process's sampler and, with ``simulate`` > 1 ranks in one process, the others'."""
    if world_size > 1:
        return ObjectiveSampler(batches, seed, rank=rank, world_size=world_size), []
    if simulate > 1:
        return (ObjectiveSampler(batches, seed, rank=0, world_size=simulate),
                [ObjectiveSampler(batches, seed, rank=r, world_size=simulate) for r in range(1, simulate)])
    return ObjectiveSampler(batches, seed=seed), []


def load_train_data(specs: list[ObjectiveSpec], cfg: Any, rank: int = 0, world_size: int = 1,
                    simulate_ranks: int = 0) -> TrainData:
    """Read every objective's data and make its batches and sampler (seed ``seed*1000 + i``)."""
    data = TrainData()
    for i, s in enumerate(specs):
        train, dev = _feature_sets(s, cfg.cache_feats)
        data.train_sets[s.name] = train
        if dev is not None:
            data.dev_sets[s.name] = dev
        batches = make_batches(train.examples, cfg.max_frames, cfg.max_utts)
        data.batch_counts[s.name] = len(batches)
        data.samplers[s.name], data.sim_samplers[s.name] = _samplers(
            batches, cfg.seed * 1000 + i, rank, world_size, simulate_ranks)
        log.info("objective %s: %d train utterances (%.2f h) in %d batches, %d dev utterances", s.name, len(train),
                 train.total_frames() / 360000, len(batches), len(dev) if dev is not None else 0)
    return data


def draw_halves(data: TrainData, name: str) -> tuple[list[int], list[int]]:
    """The two disjoint halves of ``name``'s next minibatch. With --simulate-ranks N, each half
    is the concatenation, rank by rank, of the halves the N ranks would draw (the union that N
    real ranks see in one step)."""
    parts = [split_halves(s.next()) for s in [data.samplers[name], *data.sim_samplers.get(name, [])]]
    return [i for h0, _ in parts for i in h0], [i for _, h1 in parts for i in h1]


def draw_step(data: TrainData, objectives: Sequence[str], accum_grad: int) -> StepPlan:
    """What one step reads, drawn from ``data``'s samplers: for each objective, for each of its
    ``accum_grad`` minibatches, its two halves (the order in which the step consumes them)."""
    plan: StepPlan = []
    for name in objectives:
        for _ in range(accum_grad):
            plan.extend((name, half) for half in draw_halves(data, name))
    return plan


def lookahead(data: TrainData) -> TrainData:
    """A copy of ``data`` whose samplers are clones of ``data``'s: drawing from it leaves
    ``data``'s samplers (the ones a checkpoint saves) where they are."""
    return TrainData(train_sets=data.train_sets, dev_sets=data.dev_sets,
                     samplers={n: s.clone() for n, s in data.samplers.items()},
                     sim_samplers={n: [s.clone() for s in ss] for n, ss in data.sim_samplers.items()},
                     batch_counts=data.batch_counts)


def steps_per_epoch(data: TrainData, objectives: list[str], langs: dict[str, str | None], cfg: Any,
                    n_ranks: int) -> int:
    """--steps-per-epoch, or (0) enough steps for the largest objective's data, after
    per-language upsampling, to be seen once over ``n_ranks`` ranks."""
    if cfg.steps_per_epoch > 0:
        return cfg.steps_per_epoch
    n = 1
    for name in objectives:
        factor = float(cfg.upsample.get(langs.get(name), 1.0))
        n = max(n, math.ceil(data.batch_counts[name] * factor / n_ranks))
    return n
