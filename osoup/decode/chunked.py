"""Long-form CTC posteriors in bounded memory: the encoder runs on overlapping windows.

Full self-attention costs memory quadratic in the number of frames, so a long recording is cut
into chunks of ``chunk`` input frames. Each chunk is encoded together with ``context`` input
frames of left and right context; the outputs of the context frames are dropped and the kept
posteriors of consecutive chunks are concatenated before the search. The encoder therefore
never sees more than ``chunk + 2 * context + reach`` frames, whatever the length of the audio.

Frame bookkeeping follows the Conv2d front-end (``osoup/nets/subsampling.py``): output frame u
reads input frames ``factor * u .. factor * u + reach - 1``. Every window starts at a multiple
of ``factor``, so its output frames map exactly onto the output frames of the whole recording,
and together the chunks give exactly the frame count of one full pass. This module knows no
model: it takes any ``forward(feats[1, T, F], lengths[1]) -> (log_probs[1, T', V], lengths[1])``.
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple

import torch
from torch import Tensor

Forward = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class Window(NamedTuple):
    """One encoder call: input frames [start, end); keep its output frames [keep_from, keep_to)."""

    start: int
    end: int
    keep_from: int
    keep_to: int


def output_frames(n_frames: int, factor: int = 4, reach: int = 7) -> int:
    """Output frames of ``n_frames`` input frames (the front-end's formula for factor 4, reach 7)."""
    if factor != 4 or reach != 7:
        raise ValueError("only the Conv2d x4 front-end (factor 4, reach 7) is supported")
    return max(((n_frames - 1) // 2 - 1) // 2, 0)


def plan_windows(n_frames: int, chunk: int, context: int, factor: int = 4, reach: int = 7) -> list[Window]:
    """Windows that together produce every output frame of an ``n_frames`` input exactly once.

    ``chunk`` and ``context`` are input frames, rounded up to multiples of ``factor``. An input
    that fits one window (``chunk + 2 * context``) is one window, identical to a plain pass.
    """
    if chunk < 1 or context < 0:
        raise ValueError(f"chunk must be >= 1 and context >= 0 frames, got {chunk} and {context}")
    step = -(-chunk // factor)  # output frames kept per chunk
    ctx = -(-context // factor)  # output frames of context on each side
    total = output_frames(n_frames, factor, reach)
    if n_frames <= factor * (step + 2 * ctx) + reach - factor or total == 0:
        return [Window(0, n_frames, 0, total)]
    windows = []
    for first in range(0, total, step):
        last = min(first + step, total)
        lo, hi = max(first - ctx, 0), min(last + ctx, total)
        end = min(factor * (hi - 1) + reach, n_frames)
        windows.append(Window(factor * lo, end, first - lo, last - lo))
    return windows


def iter_log_probs(forward: Forward, feats: Tensor, chunk: int, context: int) -> Iterator[Tensor]:
    """Kept posteriors [n, V] of each window of one utterance ``feats[T, F]``, in time order."""
    for w in plan_windows(feats.shape[0], chunk, context):
        x = feats[w.start:w.end].unsqueeze(0)
        lp, lens = forward(x, torch.tensor([w.end - w.start], device=feats.device))
        if int(lens[0]) < w.keep_to:
            raise RuntimeError(f"window {w} produced {int(lens[0])} output frames, expected >= {w.keep_to}")
        yield lp[0, w.keep_from:w.keep_to]


def chunked_log_probs(forward: Forward, feats: Tensor, chunk: int, context: int) -> Tensor:
    """Posteriors [T', V] of one long utterance, concatenated over windows (for beam search)."""
    return torch.cat(list(iter_log_probs(forward, feats, chunk, context)), dim=0)


def chunked_best_path(forward: Forward, feats: Tensor, chunk: int, context: int) -> Tensor:
    """Per-frame argmax [T'] of one long utterance; only token ids are kept, so greedy search
    of an hour needs no more memory than of one window (plus 8 bytes per output frame)."""
    return torch.cat([lp.argmax(dim=-1) for lp in iter_log_probs(forward, feats, chunk, context)])
