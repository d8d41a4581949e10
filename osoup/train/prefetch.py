"""Where a training step's input comes from: assembled in the trainer's process, or by
``torch.utils.data`` worker processes several steps ahead (``--num-workers``, ``--prefetch``).

The samplers stay in the trainer's process either way. With workers, a *lookahead* copy of the
samplers (:func:`osoup.train.data.lookahead`) draws each step's plan, a DataLoader hands the
plans to the workers, and the workers read and pad them (:func:`osoup.train.batch.assemble_step`);
when the step takes a batch, the real samplers draw the same plan. So the samplers a checkpoint
saves are always at what the trainer consumed, never at what was prefetched, and a resumed run
is bit-identical (test/test_resume.py, test/test_input_pipeline.py). On a GPU the batches come
in pinned memory and are copied without blocking (:meth:`osoup.train.batch.HalfBatch.to`).
"""
from __future__ import annotations

import logging
import math
import time
from typing import Any, Iterator, Mapping, Sequence

import torch
from torch.utils.data import DataLoader, Dataset

from osoup.data.dataset import FeatureSet
from osoup.fileio import DataError
from osoup.train.batch import StepBatch, StepPlan, assemble_step
from osoup.train.data import TrainData, draw_step, lookahead

log = logging.getLogger(__name__)

AUTO_WORKERS = {"cpu": 0, "cuda": 2}
"""``--num-workers auto`` by device type (other devices: 0)."""


def parse_num_workers(value: Any) -> str | int:
    """``auto`` or a whole number >= 0 from what the option holds; ValueError otherwise."""
    if isinstance(value, str) and value.strip().lower() == "auto":
        return "auto"
    try:
        n = int(str(value).strip())
    except ValueError:
        raise ValueError(f"expected auto or a whole number >= 0, got {value!r}") from None
    if n < 0:
        raise ValueError(f"expected auto or a whole number >= 0, got {value!r}")
    return n


def resolve_num_workers(value: Any, device: torch.device) -> int:
    """The number of loader workers for ``--num-workers value`` on ``device``."""
    try:
        n = parse_num_workers(value)
    except ValueError as e:
        raise DataError(f"--num-workers: {e}") from None
    return AUTO_WORKERS.get(device.type, 0) if n == "auto" else int(n)


class _Failed:
    """A worker's data error, carried back as a value so that the trainer raises one clear
    DataError (not the DataLoader's re-raised traceback text)."""

    def __init__(self, message: str):
        self.message = message


class StepDataset(Dataset):
    """Map-style dataset whose keys are step plans and whose items are whole step batches."""

    def __init__(self, train_sets: Mapping[str, FeatureSet]):
        self.train_sets = train_sets

    def __getitem__(self, plan: StepPlan) -> StepBatch | _Failed:
        try:
            return assemble_step(self.train_sets, plan)
        except DataError as e:
            return _Failed(str(e))


class _Plans:
    """The endless stream of step plans, drawn from the lookahead samplers as the DataLoader
    asks for them (at most ``prefetch`` steps ahead of the trainer)."""

    def __init__(self, ahead: TrainData, objectives: Sequence[str], accum_grad: int):
        self.ahead, self.objectives, self.accum_grad = ahead, list(objectives), accum_grad

    def __iter__(self) -> Iterator[StepPlan]:
        while True:
            yield draw_step(self.ahead, self.objectives, self.accum_grad)


def _as_is(item: Any) -> Any:
    return item


class StepSource:
    """The next step's batch for the objectives of a phase, and the seconds the trainer waited
    for it (with 0 workers: the time spent reading and padding in the trainer's process)."""

    def __init__(self, data: TrainData, objectives: Sequence[str], accum_grad: int = 1, num_workers: int = 0,
                 prefetch: int = 2, pin_memory: bool = False):
        self.data, self.objectives, self.accum_grad = data, list(objectives), accum_grad
        self.num_workers = num_workers
        self._it: Iterator | None = None
        if num_workers > 0:
            loader = DataLoader(
                StepDataset(data.train_sets), sampler=_Plans(lookahead(data), objectives, accum_grad),
                batch_size=None, collate_fn=_as_is, num_workers=num_workers, pin_memory=pin_memory,
                prefetch_factor=max(1, math.ceil(prefetch / num_workers)),
                generator=torch.Generator())  # the loader's seed draw must not touch the global RNG
            self._it = iter(loader)

    def next(self) -> tuple[StepBatch, float]:
        """The next step's batch (the samplers of ``data`` move on by one step) and the wait."""
        t0 = time.perf_counter()
        plan = draw_step(self.data, self.objectives, self.accum_grad)
        if self._it is None:
            batch = assemble_step(self.data.train_sets, plan)
        else:
            batch = next(self._it)
            if isinstance(batch, _Failed):
                raise DataError(batch.message)
            if batch.plan != plan:
                raise RuntimeError("prefetched step plan differs from the samplers' draw (lookahead out of step)")
        return batch, time.perf_counter() - t0

    def close(self) -> None:
        """Stop the workers (the prefetched steps are dropped; the samplers never saw them)."""
        self._it = None

    def __enter__(self) -> "StepSource":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
