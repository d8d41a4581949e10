"""Checkpoints: atomic writes, keep-last-N, averaging, RNG state capture."""
from __future__ import annotations

import os
import random
import re
import tempfile
from pathlib import Path

import numpy as np
import torch


def save_atomic(obj: object, path: str | Path) -> None:
    """torch.save to a temp file in the same dir, fsync, then rename: a kill never leaves a
    truncated file under ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def rng_state() -> dict:
    return {
        "python": random.getstate(),
        "numpy": np.random.get_state(),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if state.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


_EPOCH_RE = re.compile(r"^checkpoint\.(\d+)\.pt$")


def epoch_checkpoints(exp_dir: str | Path) -> list[Path]:
    """``checkpoint.<N>.pt`` files sorted by N."""
    found = []
    for p in Path(exp_dir).glob("checkpoint.*.pt"):
        m = _EPOCH_RE.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    return [p for _, p in sorted(found)]


def prune_checkpoints(exp_dir: str | Path, keep: int) -> None:
    ckpts = epoch_checkpoints(exp_dir)
    for p in ckpts[: max(0, len(ckpts) - keep)]:
        p.unlink(missing_ok=True)


def average_models(paths: list[Path]) -> dict[str, torch.Tensor]:
    """Element-wise mean of the ``model`` state dicts of several checkpoints (integer buffers,
    e.g. BatchNorm's counters, are taken from the last one)."""
    if not paths:
        raise ValueError("no checkpoints to average")
    avg: dict[str, torch.Tensor] = {}
    for p in paths:
        state = torch.load(p, map_location="cpu", weights_only=False)["model"]
        for k, v in state.items():
            if not torch.is_floating_point(v):
                avg[k] = v.clone()
            elif k in avg:
                avg[k] += v.double()
            else:
                avg[k] = v.double().clone()
    for k, v in avg.items():
        if torch.is_floating_point(v):
            avg[k] = (v / len(paths)).float()
    return avg
