"""What a run reports while it trains: periodic log lines (losses, λ, η, speech seconds per
second, the fraction of time spent waiting for input, ETA), TensorBoard scalars, and the
``--trace`` file of per-step losses and λ."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import torch

from osoup import expdir

log = logging.getLogger(__name__)


class TensorBoard:
    """A lazily opened SummaryWriter under ``<exp>/tensorboard`` (optional: without
    TensorBoard installed, a warning and nothing else)."""

    def __init__(self, exp_dir: Path, enabled: bool = True):
        self.dir = exp_dir / expdir.TENSORBOARD
        self._writer: Any = None if enabled else False

    def _get(self) -> Any:
        if self._writer is None:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self._writer = SummaryWriter(str(self.dir))
            except Exception as e:  # noqa: BLE001 - TensorBoard is optional at run time
                log.warning("TensorBoard disabled: %s", e)
                self._writer = False
        return self._writer or None

    def scalars(self, values: Mapping[str, Any], step: int) -> None:
        """Each value under its name; a vector value as ``name/i`` per entry."""
        tb = self._get()
        if tb is None:
            return
        for k, v in values.items():
            v = torch.as_tensor(v).flatten()
            if v.numel() == 1:
                tb.add_scalar(k, float(v), step)
            else:
                for j, x in enumerate(v.tolist()):
                    tb.add_scalar(f"{k}/{j}", x, step)

    def close(self) -> None:
        if self._writer:
            self._writer.close()


def write_trace(exp_dir: Path, rank: int | None, record: dict) -> None:
    """--trace: one JSON line per step (global losses, λ) per rank, for equivalence checks."""
    name = expdir.trace_name(rank)
    with open(exp_dir / name, "a", encoding="utf-8") as f:
        f.write(json.dumps(record) + "\n")


def _vectors(stats: Mapping[str, Any], prefix: str) -> str:
    return " ".join(f"{k}=[{','.join(f'{x:.2f}' for x in v.flatten().tolist())}]"
                    for k, v in stats.items() if k.startswith(prefix))


class EpochProgress:
    """Running means of the objectives' losses over the taken steps since the last log line;
    ``frames`` and ``data_wait`` (seconds the steps waited for their input) since the epoch's
    start."""

    def __init__(self, objectives: list[str], steps: int, first_step: int, epoch: int, log_interval: int):
        self.objectives, self.steps, self.first_step = objectives, steps, first_step
        self.epoch, self.log_interval = epoch, log_interval
        self.t0 = time.time()
        self.frames = 0
        self.data_wait = 0.0
        self._reset()

    def _reset(self) -> None:
        self.sums = {n: 0.0 for n in self.objectives}
        self.count = 0
        self._mark = (time.time(), self.data_wait)

    def wait_fraction(self) -> float:
        """The fraction of wall time since the last log line that the steps spent waiting for
        their input (reading and padding, or a loader worker that has not caught up)."""
        t, wait = self._mark
        return min(1.0, (self.data_wait - wait) / max(time.time() - t, 1e-9))

    def throughput(self) -> float:
        """Seconds of speech (100 frames each) per second of wall time."""
        return self.frames / 100.0 / max(time.time() - self.t0, 1e-9)

    def add(self, losses: list[float]) -> None:
        for n, v in zip(self.objectives, losses):
            self.sums[n] += v
        self.count += 1

    def maybe_log(self, step: int, stats: Mapping[str, Any], tb: TensorBoard | None) -> None:
        """At every ``log_interval``-th step and the epoch's last: one log line (and TensorBoard)."""
        if (step + 1) % self.log_interval != 0 and step + 1 != self.steps:
            return
        elapsed = time.time() - self.t0
        eta = elapsed / (step + 1 - self.first_step) * (self.steps - step - 1)
        means = {n: self.sums[n] / max(self.count, 1) for n in self.objectives}
        etas = " ".join(f"{k}={float(v):.3f}" for k, v in stats.items() if k.startswith("eta"))
        wait = self.wait_fraction()
        log.info("epoch %d step %d/%d | %s | %s %s | %.1f s speech/s | data wait %.0f%% | ETA %.0fs", self.epoch,
                 step + 1, self.steps, " ".join(f"{n}={v:.3f}" for n, v in means.items()), _vectors(stats, "lambda"),
                 etas, self.throughput(), 100 * wait, eta)
        if tb is not None:
            gstep = (self.epoch - 1) * self.steps + step + 1
            tb.scalars({f"train/{n}": v for n, v in means.items()}, gstep)
            tb.scalars(stats, gstep)
            tb.scalars({"throughput/speech_sec_per_sec": self.throughput(), "throughput/data_wait_frac": wait},
                       gstep)
        self._reset()
