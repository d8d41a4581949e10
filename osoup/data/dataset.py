"""Training data: feature sets read from dumped data dirs, length-bucketed batches, and one
resumable sampler per objective.

Each objective (``asr_fr``, ``st_de``, ``ssl``) draws its own minibatches from its own data
(``docs/design.md``): :class:`ObjectiveSampler` cycles over its batches and reshuffles on its own, and its
position is part of the checkpoint.
"""
from __future__ import annotations

import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from osoup.data.datadir import read_scp
from osoup.fileio import DataError

log = logging.getLogger(__name__)


@dataclass
class Example:
    utt_id: str
    num_frames: int
    target: list[int] | None  # CTC token ids (None for SSL-only audio)


class FeatureSet:
    """Utterances of one or more dumped data dirs (``feats.scp`` + ``utt2num_frames``), with
    optional token targets produced by ``encode`` from the ``text_file`` of each dir."""

    def __init__(
        self,
        dirs: Sequence[str | Path],
        text_file: str | None = None,
        encode: Callable[[str], list[int]] | None = None,
        cache: bool = False,
        vocab_size: int | None = None,
    ):
        self.examples: list[Example] = []
        self._scp: dict[str, str] = {}
        self._cache: dict[str, np.ndarray] | None = {} if cache else None
        for d in dirs:
            d = Path(d)
            feats = read_scp(d / "feats.scp")
            nframes = read_scp(d / "utt2num_frames")
            texts = read_scp(d / text_file, allow_empty_value=True) if text_file else None
            for utt, ark in feats.items():
                if utt in self._scp:
                    raise DataError(f"{d}: utterance {utt!r} also appears in another data dir of this objective")
                if utt not in nframes:
                    raise DataError(f"{d}/utt2num_frames: no entry for {utt!r}")
                target = None
                if texts is not None:
                    if utt not in texts:
                        raise DataError(f"{d}/{text_file}: no entry for {utt!r}")
                    assert encode is not None
                    target = encode(texts[utt])
                    if not target:
                        raise DataError(f"{d}/{text_file}: utterance {utt!r} has no tokens after normalisation")
                    if vocab_size is not None and (min(target) < 1 or max(target) >= vocab_size):
                        raise DataError(f"{d}/{text_file}: utterance {utt!r} has a token id outside [1, {vocab_size})")
                self._scp[utt] = ark
                self.examples.append(Example(utt, int(nframes[utt]), target))
        if not self.examples:
            raise DataError(f"no utterances in {', '.join(map(str, dirs))}")
        self.index = {e.utt_id: i for i, e in enumerate(self.examples)}

    def __len__(self) -> int:
        return len(self.examples)

    def load(self, utt_id: str) -> np.ndarray:
        if self._cache is not None and utt_id in self._cache:
            return self._cache[utt_id]
        import kaldiio

        try:
            mat = np.asarray(kaldiio.load_mat(self._scp[utt_id]), dtype=np.float32)
        except Exception as e:  # noqa: BLE001 - any reader failure is a data error here
            raise DataError(f"cannot read features of utterance {utt_id!r} from {self._scp[utt_id]}: {e}") from None
        if mat.ndim != 2 or not np.isfinite(mat).all():
            raise DataError(f"features of utterance {utt_id!r} ({self._scp[utt_id]}) are malformed or non-finite")
        if self._cache is not None:
            self._cache[utt_id] = mat
        return mat

    def total_frames(self) -> int:
        return sum(e.num_frames for e in self.examples)


def make_batches(examples: Sequence[Example], max_frames: int, max_utts: int, min_utts: int = 2) -> list[list[int]]:
    """Length-bucketed batches of example indices: sorted by length, cut so that the padded
    size (longest × count) stays within ``max_frames`` and ``max_utts``. Every batch has at least
    ``min_utts`` utterances (double sampling needs two disjoint halves), except when the set is
    smaller than that."""
    order = sorted(range(len(examples)), key=lambda i: examples[i].num_frames)
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = examples[i].num_frames  # sorted ascending: the newcomer is the longest
        if cur and (len(cur) + 1 > max_utts or longest * (len(cur) + 1) > max_frames) and len(cur) >= min_utts:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        if len(cur) < min_utts and batches:
            prev = batches[-1]
            while len(cur) < min_utts and len(prev) > min_utts:
                cur.insert(0, prev.pop())  # borrow from the previous batch: both stay within limits
            if len(cur) < min_utts:
                prev.extend(cur)
            else:
                batches.append(cur)
        else:
            batches.append(cur)
    return batches


class ObjectiveSampler:
    """Endless, reshuffling stream of batches for one objective. ``state_dict`` holds the
    cycle number and position, so a resumed run sees exactly the same batches."""

    def __init__(self, batches: list[list[int]], seed: int, rank: int = 0, world_size: int = 1):
        if not batches:
            raise ValueError("sampler needs at least one batch")
        self.batches = batches
        self.seed = seed
        self.rank, self.world_size = rank, world_size
        self.cycle = 0
        self.pos = 0
        self._order = self._make_order()

    def _make_order(self) -> list[int]:
        rng = random.Random(f"{self.seed}-{self.cycle}")
        order = list(range(len(self.batches)))
        rng.shuffle(order)
        if self.world_size > 1:
            n = len(order) - len(order) % self.world_size or len(order)
            order = order[:n][self.rank :: self.world_size] or order[: 1]
        return order

    def __len__(self) -> int:
        return len(self._order)

    def next(self) -> list[int]:
        if self.pos >= len(self._order):
            self.cycle += 1
            self.pos = 0
            self._order = self._make_order()
        b = self.batches[self._order[self.pos]]
        self.pos += 1
        return b

    def state_dict(self) -> dict:
        return {"cycle": self.cycle, "pos": self.pos, "seed": self.seed}

    def load_state_dict(self, state: dict) -> None:
        self.seed = state["seed"]
        self.cycle = state["cycle"]
        self._order = self._make_order()
        self.pos = state["pos"]

    def clone(self) -> "ObjectiveSampler":
        """An independent sampler at the same position (sharing the batch lists), to draw ahead
        of this one without moving it: a prefetcher's lookahead (``osoup/train/prefetch.py``)."""
        twin = ObjectiveSampler(self.batches, self.seed, self.rank, self.world_size)
        twin.load_state_dict(self.state_dict())
        return twin


def split_halves(batch: Sequence[int]) -> tuple[list[int], list[int]]:
    """Two disjoint halves of a length-sorted batch (alternating, so both span the lengths)."""
    b = list(batch)
    h0, h1 = b[0::2], b[1::2]
    assert not set(h0) & set(h1)
    return h0, h1


def steps_per_epoch(sizes: dict[str, int], batch_counts: dict[str, int], upsample: dict[str, float]) -> int:
    """Steps for the largest objective's (upsampled) data to be seen once."""
    best = 1
    for name, n_batches in batch_counts.items():
        best = max(best, math.ceil(n_batches * upsample.get(name, 1.0)))
    return best
