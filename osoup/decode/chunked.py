"""Long-form CTC posteriors in bounded memory: the encoder runs on overlapping windows.

Full self-attention costs memory quadratic in the number of frames, so a long recording is cut
into chunks of ``chunk`` input frames. Each chunk is encoded together with ``context`` input
frames of left and right context; the outputs of the context frames are dropped and the kept
posteriors of consecutive chunks are concatenated before the search. The encoder therefore
never sees more than ``chunk + 2 * context + reach`` frames, whatever the length of the audio.

Frame bookkeeping follows the encoder's front-end, a stack of unpadded convolutions described
by its total stride ``factor`` and receptive field ``reach`` (:class:`Frontend`): output frame u
reads input rows ``factor * u .. factor * u + reach - 1``. For the Conv2d front-end on fbank
(``osoup/nets/subsampling.py``) that is 4 and 7 frames; for wav2vec 2.0's CNN on raw 16 kHz
samples, 320 and 400 samples. Every window starts at a multiple of ``factor``, so its output
frames map exactly onto the output frames of the whole recording, and together the chunks give
exactly the frame count of one full pass. This module knows no model: it takes any
``forward(feats[1, T, F], lengths[1]) -> (log_probs[1, T', V], lengths[1])``.
"""
from __future__ import annotations

from typing import Callable, Iterator, NamedTuple, Sequence

import torch
from torch import Tensor

Forward = Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]


class Window(NamedTuple):
    """One encoder call: input frames [start, end); keep its output frames [keep_from, keep_to)."""

    start: int
    end: int
    keep_from: int
    keep_to: int


class Frontend(NamedTuple):
    """A stack of unpadded convolutions: total stride ``factor``, receptive field ``reach``
    (input rows per output frame and rows one output frame reads)."""

    factor: int
    reach: int

    @classmethod
    def of_convs(cls, kernels: Sequence[int], strides: Sequence[int]) -> "Frontend":
        """The stack of layers with these kernels and strides, bottom first."""
        factor, reach = 1, 1
        for k, s in zip(kernels, strides, strict=True):
            reach += (int(k) - 1) * factor
            factor *= int(s)
        return cls(factor, reach)


CONV2D_X4 = Frontend(4, 7)
"""osoup's Conformer front-end on fbank: two Conv2d layers, kernel 3, stride 2."""


def output_frames(n_frames: int, factor: int = 4, reach: int = 7) -> int:
    """Output frames of ``n_frames`` input rows: (T - reach) // factor + 1, or 0 when shorter than
    ``reach`` (for nested unpadded convolutions this equals applying each layer's formula in turn)."""
    if factor < 1 or reach < 1:
        raise ValueError(f"factor and reach must be >= 1, got {factor} and {reach}")
    return max((n_frames - reach) // factor + 1, 0)


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


def iter_log_probs(forward: Forward, feats: Tensor, chunk: int, context: int,
                   frontend: Frontend = CONV2D_X4) -> Iterator[Tensor]:
    """Kept posteriors [n, V] of each window of one utterance ``feats[T, F]``, in time order."""
    for w in plan_windows(feats.shape[0], chunk, context, *frontend):
        x = feats[w.start:w.end].unsqueeze(0)
        lp, lens = forward(x, torch.tensor([w.end - w.start], device=feats.device))
        if int(lens[0]) < w.keep_to:
            raise RuntimeError(f"window {w} produced {int(lens[0])} output frames, expected >= {w.keep_to}")
        yield lp[0, w.keep_from:w.keep_to]


def chunked_log_probs(forward: Forward, feats: Tensor, chunk: int, context: int,
                      frontend: Frontend = CONV2D_X4) -> Tensor:
    """Posteriors [T', V] of one long utterance, concatenated over windows (for beam search)."""
    return torch.cat(list(iter_log_probs(forward, feats, chunk, context, frontend)), dim=0)


def chunked_best_path(forward: Forward, feats: Tensor, chunk: int, context: int,
                      frontend: Frontend = CONV2D_X4) -> Tensor:
    """Per-frame argmax [T'] of one long utterance; only token ids are kept, so greedy search
    of an hour needs no more memory than of one window (plus 8 bytes per output frame)."""
    return torch.cat([lp.argmax(dim=-1) for lp in iter_log_probs(forward, feats, chunk, context, frontend)])


RAW_ROWS_PER_SEC = 16000
"""Rows a second of raw input: 16 kHz samples (``osoup.data.feats_type.RAW_SAMPLE_RATE``)."""


def model_input(model) -> tuple[str, Frontend, int]:
    """(input kind, front-end geometry, input rows per second) of a SoupModel's backbone:
    ("fbank", Conv2d x4, 100) for the Conformer, ("raw", its CNN, 16000) for a wav2vec 2.0-style
    backbone (``input_kind`` "raw", whose ``hf_config`` holds the CNN's kernels and strides)."""
    enc = model.encoder
    if getattr(enc, "input_kind", "fbank") != "raw":
        return "fbank", CONV2D_X4, 100
    cfg = enc.hf_config
    return "raw", Frontend.of_convs(cfg["conv_kernel"], cfg["conv_stride"]), RAW_ROWS_PER_SEC
