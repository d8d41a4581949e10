"""A training step's input, assembled: every half of every objective's minibatch read from its
feature set and padded into CPU tensors, in the order the step consumes them.

The same :func:`assemble_step` runs in the trainer's process (``--num-workers 0``) or in a
``torch.utils.data`` worker (:mod:`osoup.train.prefetch`); either way the tensors are the same,
so the losses are too (test/test_input_pipeline.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Mapping, Sequence

import numpy as np
import torch

from osoup.data.dataset import FeatureSet
from osoup.nets.model import pad_targets

StepPlan = list[tuple[str, list[int]]]
"""What one step reads: (objective, example indices of one half), halves in consumption order."""

_SMALL = ("lengths", "targets", "target_lengths")  # HalfBatch tensors pickled by value


@dataclass
class HalfBatch:
    """One half of an objective's minibatch: padded features (B, T, D) and their lengths, padded
    CTC targets and their lengths (None for SSL audio), and the feature frames it holds."""

    idx: list[int]
    feats: torch.Tensor
    lengths: torch.Tensor
    targets: torch.Tensor | None
    target_lengths: torch.Tensor | None
    frames: int

    def _map(self, fn) -> "HalfBatch":
        return replace(self, feats=fn(self.feats), lengths=fn(self.lengths),
                       targets=None if self.targets is None else fn(self.targets),
                       target_lengths=None if self.target_lengths is None else fn(self.target_lengths))

    def __getstate__(self) -> dict:
        """As a worker sends it: the small tensors by value, so that only the features go
        through shared memory (each shared tensor costs the receiver a file-descriptor hand-over)."""
        state = dict(self.__dict__)
        for k in _SMALL:
            if state[k] is not None:
                state[k] = state[k].numpy()
        return state

    def __setstate__(self, state: dict) -> None:
        for k in _SMALL:
            if state[k] is not None:
                state[k] = torch.from_numpy(state[k])
        self.__dict__.update(state)

    def pin_memory(self) -> "HalfBatch":
        """Page-locked copies (the DataLoader's pin-memory thread calls this), so that
        :meth:`to` can copy to a GPU without blocking the host."""
        return self._map(lambda t: t.pin_memory())

    def to(self, device: torch.device | str) -> "HalfBatch":
        """On ``device``; non-blocking (asynchronous from pinned memory, a no-op on the CPU)."""
        return self._map(lambda t: t.to(device, non_blocking=True))


def _shared_empty(numel: int, dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised 1-D tensor in shared memory."""
    storage = torch.UntypedStorage._new_shared(numel * dtype.itemsize)
    return torch.empty(0, dtype=dtype).set_(storage, 0, (numel,))


def pad_features(mats: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Features (T_i, D) zero-padded into (B, max T_i, D) float32, and the lengths: the values of
    :func:`osoup.nets.model.pad_batch` (test/test_input_pipeline.py), with one copy per
    utterance instead of two."""
    lengths = torch.tensor([m.shape[0] for m in mats], dtype=torch.long)
    out = torch.zeros((len(mats), int(lengths.max()), mats[0].shape[1]), dtype=torch.float32)
    buf = out.numpy()  # the same memory; numpy also takes read-only (cached or mapped) arrays
    for i, m in enumerate(mats):
        buf[i, : m.shape[0]] = m
    return out, lengths


def assemble_half(fset: FeatureSet, idx: Sequence[int]) -> HalfBatch:
    """Read and pad the examples ``idx`` of ``fset`` (on the CPU)."""
    exs = [fset.examples[i] for i in idx]
    feats, lengths = pad_features([fset.load(e.utt_id) for e in exs])
    targets = tlens = None
    if exs[0].target is not None:
        targets, tlens = pad_targets([e.target for e in exs])
    return HalfBatch(list(idx), feats, lengths, targets, tlens, int(sum(e.num_frames for e in exs)))


@dataclass
class StepBatch:
    """Every half of one step (:data:`StepPlan` order), ready for the forward passes."""

    plan: StepPlan
    halves: list[HalfBatch]

    def pin_memory(self) -> "StepBatch":
        return StepBatch(self.plan, [h.pin_memory() for h in self.halves])

    def __getstate__(self) -> dict:
        """As a worker sends it: every half's features copied into ONE shared-memory buffer (the
        receiver takes one file-descriptor hand-over per step, not one per tensor)."""
        feats = [h.feats for h in self.halves]
        flat = _shared_empty(sum(f.numel() for f in feats), torch.float32)
        torch.cat([f.reshape(-1) for f in feats], out=flat)
        return {"plan": self.plan, "halves": [replace(h, feats=None) for h in self.halves], "flat": flat,
                "shapes": [tuple(f.shape) for f in feats]}

    def __setstate__(self, state: dict) -> None:
        offset = 0
        for h, shape in zip(state["halves"], state["shapes"]):
            n = math.prod(shape)
            h.feats = state["flat"][offset: offset + n].view(shape)
            offset += n
        self.plan, self.halves = state["plan"], state["halves"]

    def to(self, device: torch.device | str) -> "StepBatch":
        """Every half on ``device``, all copies queued at once: on a GPU the later halves'
        copies overlap the first halves' forward passes."""
        return StepBatch(self.plan, [h.to(device) for h in self.halves])


def assemble_step(train_sets: Mapping[str, FeatureSet], plan: StepPlan) -> StepBatch:
    """Every half of ``plan``, read and padded."""
    return StepBatch(plan, [assemble_half(train_sets[name], idx) for name, idx in plan])


class ReadyHalf:
    """A half already assembled, handed to :func:`osoup.train.loss.half_loss` in place of its
    feature set: the loss then skips the reading and padding."""

    def __init__(self, fset: FeatureSet, batch: HalfBatch):
        self.fset, self.batch = fset, batch

    @property
    def examples(self) -> list:
        return self.fset.examples

    def take(self, idx: Sequence[int]) -> HalfBatch:
        """The assembled half, which must be the examples ``idx`` (else the prefetched input and
        the samplers have drifted apart: a bug, never a data problem)."""
        if list(idx) != self.batch.idx:
            raise RuntimeError(f"prefetched half {self.batch.idx[:4]}... is not the half drawn {list(idx)[:4]}...")
        return self.batch
