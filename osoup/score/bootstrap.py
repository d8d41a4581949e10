"""Paired bootstrap resampling of test utterances (Koehn 2004): per-utterance sufficient
statistics of WER/CER and BLEU, resampled corpus metrics of seed-averaged systems, and the
difference of two systems with its percentile interval. Knows no files; the comparison of
methods is :mod:`osoup.score.significance`, which documents the test.

A resample is a vector of draw counts per utterance, so a resample's summed statistics are
``counts @ stats``; ``test/test_significance.py`` checks the resampled numbers against jiwer and
sacrebleu on the same drawn utterances.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator, Sequence

import jiwer
import numpy as np
import sacrebleu

INTERVAL = (2.5, 97.5)  # percentiles of the 95% interval
MARK_BETTER, MARK_WORSE = "*", "‡"  # "†" already marks partial averages in the comparison tables


# ---------------------------------------------------------------- per-utterance statistics

def edit_stats(refs: Sequence[str], hyps: Sequence[str], metric: str) -> np.ndarray:
    """Per utterance ``[edits, reference units]`` of WER (words) or CER (characters, whitespace
    removed), as :mod:`osoup.score.metrics` counts them; int64 array of shape [N, 2]."""
    if metric == "cer":
        refs, hyps = [" ".join("".join(t.split())) for t in refs], [" ".join("".join(t.split())) for t in hyps]
    else:
        refs, hyps = [" ".join(t.split()) for t in refs], [" ".join(t.split()) for t in hyps]
    out = np.zeros((len(refs), 2), dtype=np.int64)
    for i, chunks in enumerate(jiwer.process_words(list(refs), list(hyps)).alignments):
        out[i, 0] = sum(max(c.ref_end_idx - c.ref_start_idx, c.hyp_end_idx - c.hyp_start_idx)
                        for c in chunks if c.type != "equal")
        out[i, 1] = len(refs[i].split())
    return out


def bleu_metric() -> sacrebleu.BLEU:
    """The BLEU of :func:`osoup.score.metrics.bleu_details` (one reference, tokenize 13a)."""
    return sacrebleu.BLEU(tokenize="13a")


def bleu_stats(refs: Sequence[str], hyps: Sequence[str]) -> np.ndarray:
    """Per sentence sacrebleu's BLEU sufficient statistics; int64 array of shape [N, 2 + 2·4]."""
    return np.asarray(bleu_metric()._extract_corpus_statistics(list(hyps), [list(refs)]), dtype=np.int64)


def corpus_values(metric: str, sums: np.ndarray) -> np.ndarray:
    """The corpus metric of each row of summed statistics ([B, K] -> [B]): WER/CER in percent or
    BLEU (0-100)."""
    sums = np.atleast_2d(sums)
    if metric == "bleu":
        bleu = bleu_metric()
        return np.array([bleu._compute_score_from_stats(row.astype(np.int64).tolist()).score for row in sums])
    return 100.0 * sums[:, 0] / sums[:, 1]


def utterance_stats(refs: Sequence[str], hyps: Sequence[str], metric: str) -> np.ndarray:
    """Sufficient statistics per utterance for ``metric`` (wer, cer or bleu)."""
    return bleu_stats(refs, hyps) if metric == "bleu" else edit_stats(refs, hyps, metric)


# ---------------------------------------------------------------- resampling

def draw_counts(n_utts: int, n_resamples: int, rng: np.random.Generator, rows: int = 0) -> Iterator[np.ndarray]:
    """How often each utterance is drawn in each resample, in blocks of ``rows`` resamples
    ([rows, n_utts] int arrays; memory stays bounded on large test sets)."""
    rows = rows or max(1, min(n_resamples, 2_000_000 // max(1, n_utts)))
    for start in range(0, n_resamples, rows):
        c = min(rows, n_resamples - start)
        idx = rng.integers(0, n_utts, size=(c, n_utts)) + n_utts * np.arange(c)[:, None]
        yield np.bincount(idx.ravel(), minlength=c * n_utts).reshape(c, n_utts)


def resampled_values(metric: str, systems: dict[str, list[np.ndarray]],
                     counts: Iterable[np.ndarray]) -> dict[str, np.ndarray]:
    """Each system's metric in every resample: the mean over its seed replicas (one statistics
    array each, rows paired by utterance) of the corpus metric on the drawn utterances."""
    out: dict[str, list[np.ndarray]] = {name: [] for name in systems}
    for block in counts:
        block = block.astype(np.float64)
        for name, seeds in systems.items():
            out[name].append(np.mean([corpus_values(metric, block @ s) for s in seeds], axis=0))
    return {name: np.concatenate(v) for name, v in out.items()}


def observed_value(metric: str, seeds: list[np.ndarray]) -> float:
    """The full test set's metric, averaged over seed replicas (the identity resample)."""
    return float(np.mean([corpus_values(metric, s.sum(axis=0))[0] for s in seeds]))


@dataclass(frozen=True)
class Delta:
    """One method minus the reference on one measure and language (or the average)."""

    observed: float
    mean: float
    low: float
    high: float
    lower_is_better: bool

    @property
    def significant(self) -> bool:
        return self.low > 0 or self.high < 0

    @property
    def better(self) -> bool:
        return self.significant and ((self.high < 0) == self.lower_is_better)

    @property
    def mark(self) -> str:
        return "" if not self.significant else MARK_BETTER if self.better else MARK_WORSE

    def to_json(self) -> dict:
        return {"delta": self.observed, "mean": self.mean, "low": self.low, "high": self.high,
                "significant": self.significant, "better": self.better}


def make_delta(diffs: np.ndarray, observed: float, lower_is_better: bool) -> Delta:
    """The resampled differences' mean and 95% percentile interval."""
    low, high = np.percentile(diffs, INTERVAL)
    return Delta(float(observed), float(np.mean(diffs)), float(low), float(high), lower_is_better)
