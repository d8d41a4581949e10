"""The names in an experiment directory ``exp/<tag>/`` and how to find its files.

The layout is described in :mod:`osoup.train.experiment` (which also loads models) and in
``docs/design.md``, "Experiment directory". This part needs no torch and no model, so that
every layer (scoring included) names experiment files through one module.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from osoup.fileio import DataError

CONFIG = "config.yaml"
OBJECTIVES = "objectives.json"
TRAIN_LOG = "train.log"
LATEST = "latest.pt"
BEST = "best.pt"
PRETRAIN = "pretrain.pt"
TRAIN_SUMMARY = "train_summary.json"
TENSORBOARD = "tensorboard"
TRAIN_DONE = ".train.done"
DECODE_CONF = "decode.yaml"
RESULTS_MD = "RESULTS.md"
RESULTS_JSON = "results.json"
CONFLICT_DIR = "conflict"
PACKED = "model.pack.pt"
HYP_TASKS = ("asr", "st")
PACKED_KEYS = ("model", "model_conf", "tokenizers")

_EPOCH_RE = re.compile(r"^checkpoint\.(\d+)\.pt$")
_AVG_RE = re.compile(r"^avg(\d+)\.pt$")
_RANK_FILE_RE = re.compile(r"^(train\.rank\d+\.log|trace(\.rank\d+)?\.jsonl)$")
_TRAIN = "osoup-train (recipe stage 6)"
_WRITERS = {
    CONFIG: _TRAIN, OBJECTIVES: _TRAIN, TRAIN_LOG: _TRAIN, LATEST: _TRAIN, BEST: _TRAIN, PRETRAIN: _TRAIN,
    TRAIN_SUMMARY: _TRAIN,
    TENSORBOARD: _TRAIN, TRAIN_DONE: "egs/TEMPLATE/asr.sh (stage 6)",
    DECODE_CONF: "osoup-decode (recipe stage 7)", RESULTS_MD: "osoup-score --exp (recipe stage 8)",
    RESULTS_JSON: "osoup-score --exp (recipe stage 8)", CONFLICT_DIR: "osoup-conflict (recipe stage 10)",
    PACKED: "osoup-decode --exp-dir EXP --pack-out FILE",
}


# -- names ---------------------------------------------------------------------------------
def epoch_checkpoint_name(epoch: int) -> str:
    """``checkpoint.<epoch>.pt``: the training state after that (global) epoch."""
    return f"checkpoint.{epoch}.pt"


def average_name(n: int) -> str:
    """``avg<n>.pt``: the mean model of the last ``n`` epoch checkpoints."""
    return f"avg{n}.pt"


def train_log_name(rank: int = 0) -> str:
    """``train.log`` for rank 0, ``train.rank<r>.log`` for the other data-parallel ranks."""
    return TRAIN_LOG if rank == 0 else f"train.rank{rank}.log"


def trace_name(rank: int | None = None) -> str:
    """``trace.jsonl`` (one process) or ``trace.rank<r>.jsonl`` (data parallel)."""
    return "trace.jsonl" if rank is None else f"trace.rank{rank}.jsonl"


def decode_dir(exp_dir: str | Path, dtag: str) -> Path:
    """``<exp>/decode_<dtag>``: one decoding run (its options in ``decode.yaml``)."""
    return Path(exp_dir) / f"decode_{dtag}"


def hyp_path(exp_dir: str | Path, dtag: str, set_name: str, task: str) -> Path:
    """``<exp>/decode_<dtag>/<set>/hyp.<task>``: hypotheses of one head on one data set."""
    return decode_dir(exp_dir, dtag) / set_name / f"hyp.{task}"


def written_by(name: str) -> str:
    """The command (and recipe stage) that writes the experiment file ``name``."""
    if name in _WRITERS:
        return _WRITERS[name]
    if _EPOCH_RE.match(name) or _AVG_RE.match(name) or _RANK_FILE_RE.match(name):
        return _TRAIN
    if name.startswith("hyp."):
        return _WRITERS[DECODE_CONF]
    return "no osoup stage (not a file of the experiment layout)"


def require_file(path: str | Path) -> Path:
    """``path`` if it is a file, else a DataError naming it and the stage that writes it."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: not found (written by {written_by(path.name)})")
    return path


# -- discovery -----------------------------------------------------------------------------
@dataclass(frozen=True)
class HypFile:
    """One hypothesis file: decode tag, data set, task (``hyp.<task>``) and path."""

    dtag: str
    set_name: str
    task: str
    path: Path


def hyp_files(exp_dir: str | Path) -> list[HypFile]:
    """Every ``decode_<dtag>/<set>/hyp.<task>`` of the experiment, sorted by path. The task is
    not checked here (``HYP_TASKS`` holds the known ones; a scorer reports the others)."""
    out = []
    for p in sorted(Path(exp_dir).glob("decode_*/*/hyp.*")):
        out.append(HypFile(p.parent.parent.name[len("decode_"):], p.parent.name, p.name.split(".", 1)[1], p))
    return out


def epoch_checkpoints(exp_dir: str | Path) -> list[Path]:
    """The ``checkpoint.<N>.pt`` files of the experiment, sorted by N."""
    found = [(int(m.group(1)), p) for p in Path(exp_dir).glob("checkpoint.*.pt") if (m := _EPOCH_RE.match(p.name))]
    return [p for _, p in sorted(found)]


def model_files(exp_dir: str | Path) -> list[str]:
    """Names of the model files present: ``best.pt``, ``avg<N>.pt`` (by N), ``latest.pt``, the
    epoch checkpoints from the newest down, then ``pretrain.pt``."""
    exp_dir = Path(exp_dir)
    avg = sorted((int(m.group(1)), p.name) for p in exp_dir.glob("avg*.pt") if (m := _AVG_RE.match(p.name)))
    fixed = [[n] if (exp_dir / n).is_file() else [] for n in (BEST, LATEST, PRETRAIN)]
    epochs = [p.name for p in reversed(epoch_checkpoints(exp_dir))]
    return fixed[0] + [n for _, n in avg] + fixed[1] + epochs + fixed[2]


def _others(path: Path) -> str:
    """Which other model files the experiment dir of ``path`` holds (for error messages)."""
    others = [n for n in model_files(path.parent) if n != path.name]
    if not others:
        return f"no other model file in {path.parent}"
    return f"other model files in {path.parent}: {', '.join(others)} (choose one with --model)"
