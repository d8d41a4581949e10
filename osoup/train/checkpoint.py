"""Checkpoints: atomic writes, keep-last-N, averaging, RNG state capture."""
from __future__ import annotations

import errno
import logging
import os
import random
import shutil
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from osoup import expdir
from osoup.fileio import atomic_write
from osoup.expdir import epoch_checkpoints  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


def save_atomic(obj: object, path: str | Path) -> None:
    """torch.save through :func:`osoup.fileio.atomic_write` (temp file, fsync, rename): a kill
    never leaves a truncated file under ``path``, and a failed write names ``path``."""
    path = Path(path)
    try:
        with atomic_write(path, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
    except RuntimeError as e:
        if "inline_container" in str(e) or "PytorchStreamWriter" in str(e):
            raise _write_error(path, e) from e  # torch's writer turns a failed write into RuntimeError
        raise


def _write_error(path: Path, e: RuntimeError) -> OSError:
    """An OSError naming ``path`` for a torch.save that failed while writing (a full disk, most
    often: torch reports it as an unexpected file position)."""
    full = shutil.disk_usage(path.parent).free < (1 << 20)
    reason = "No space left on device" if full else f"write failed ({str(e).splitlines()[0]})"
    return OSError(errno.ENOSPC if full else errno.EIO, reason, str(path))


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


def remove_interrupted_writes(exp_dir: str | Path) -> None:
    """Delete the temp files of checkpoint writes that a kill interrupted (see :func:`save_atomic`)."""
    for tmp in Path(exp_dir).glob(".*.pt.*.tmp"):
        log.info("removing %s (an interrupted checkpoint write)", tmp)
        tmp.unlink(missing_ok=True)


def find_resume_checkpoint(exp_dir: str | Path, device: torch.device | str,
                           required: Sequence[str]) -> tuple[dict, Path] | None:
    """The newest loadable training checkpoint of ``exp_dir``: ``latest.pt``, else the epoch
    checkpoints from the newest down. A file that cannot be read, or lacks one of the
    ``required`` keys (e.g. a kill during a write on a file system without atomic rename), is
    skipped with a warning."""
    exp_dir = Path(exp_dir)
    for path in [exp_dir / expdir.LATEST] + epoch_checkpoints(exp_dir)[::-1]:
        if not path.is_file():
            continue
        try:
            state = torch.load(path, map_location=device, weights_only=False)
            missing = [k for k in required if k not in state]
            if missing:
                raise ValueError(f"not a training checkpoint (missing {', '.join(missing)})")
        except Exception as e:  # noqa: BLE001 - any unreadable checkpoint is skipped
            log.warning("cannot resume from %s (%s): trying an older checkpoint", path, e)
            continue
        return state, path
    return None
