"""Global mean/variance statistics of features (stage 4), used by the model's GlobalCMVN."""
from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Iterable

import numpy as np

from osoup.fileio import DataError, atomic_write

logger = logging.getLogger(__name__)

STD_FLOOR = 1e-5


class StatsAccumulator:
    """Count, mean and sum of squared deviations per dimension, merged utterance by utterance
    (Chan et al.'s pairwise update in float64, so no large-sum cancellation)."""

    def __init__(self) -> None:
        self.count = 0
        self.mean: np.ndarray | None = None
        self.m2: np.ndarray | None = None

    def add(self, feats: np.ndarray) -> None:
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2:
            raise ValueError(f"expected a [frames, dim] matrix, got shape {x.shape}")
        n = x.shape[0]
        if n == 0:
            return
        mean_b = x.mean(axis=0)
        m2_b = ((x - mean_b) ** 2).sum(axis=0)
        if self.mean is None:
            self.count, self.mean, self.m2 = n, mean_b, m2_b
            return
        if mean_b.shape != self.mean.shape:
            raise ValueError(f"feature dimension {mean_b.shape[0]} differs from earlier {self.mean.shape[0]}")
        total = self.count + n
        delta = mean_b - self.mean
        self.mean = self.mean + delta * (n / total)
        self.m2 = self.m2 + m2_b + delta**2 * (self.count * n / total)
        self.count = total

    def result(self, std_floor: float = STD_FLOOR) -> dict:
        if self.mean is None:
            raise ValueError("no frames accumulated")
        std = np.maximum(np.sqrt(self.m2 / self.count), std_floor)
        return {"count": int(self.count), "mean": self.mean.tolist(), "std": std.tolist()}


def compute_global_cmvn(feats_scps: Iterable[str | Path], std_floor: float = STD_FLOOR) -> dict:
    """{"count", "mean", "std"} over all frames of the given feats.scp files (std floored)."""
    import kaldiio

    feats_scps = list(feats_scps)
    acc = StatsAccumulator()
    n_utts = 0
    for scp in feats_scps:
        scp = Path(scp)
        if not scp.is_file():
            raise DataError(f"{scp}: feats.scp not found")
        try:
            for key, mat in kaldiio.load_scp_sequential(str(scp)):
                if not np.all(np.isfinite(mat)):
                    raise DataError(f"{scp}: utterance {key} has non-finite feature values")
                try:
                    acc.add(mat)
                except ValueError as e:
                    raise DataError(f"{scp}: utterance {key}: {e}") from None
                n_utts += 1
        except (OSError, ValueError) as e:
            raise DataError(f"{scp}: cannot read features ({e})") from None
    if acc.mean is None:
        raise DataError("no feature frames found in " + ", ".join(map(str, feats_scps)))
    logger.info("global CMVN over %d utterances, %d frames", n_utts, acc.count)
    return acc.result(std_floor)


def write_cmvn(path: str | Path, stats: dict) -> None:
    with atomic_write(path) as f:
        json.dump(stats, f)
        f.write("\n")


def read_cmvn(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) float32 arrays from a global_cmvn.json."""
    try:
        with open(path, encoding="utf-8") as f:
            d = json.load(f)
        return np.asarray(d["mean"], dtype=np.float32), np.asarray(d["std"], dtype=np.float32)
    except (OSError, ValueError, KeyError) as e:
        raise DataError(f"{path}: not a valid CMVN stats file ({e})") from None
