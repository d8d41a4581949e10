"""``osoup-train --init-from FILE``: start a fresh run from another experiment's weights.

The backbone θ (``encoder.*``) and the SSL module (``ssl.*``: CPC predictors or BEST-RQ's
output layer and frozen quantizer, which pre-training trains together with θ) come from the
file; the CTC heads (``heads.<name>.*``) too with ``--init-heads true``, for the heads both
models have, except those named by ``--init-new-heads`` (objective ``st_es`` or task ``st``),
which start fresh: e.g. a translation head whose units changed. The CMVN statistics stay this
run's own (they come from its recipe's data). A tensor whose shape differs is refused (one
error naming the file and the tensor); a backbone tensor absent from the file is refused too
(the backbone would be half initialised). Every other difference is reported, not hidden:
``test/test_baselines.py``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import torch

from osoup.fileio import DataError
from osoup.train.experiment import load_torch_file
from osoup.train.phases import task_group

log = logging.getLogger(__name__)

BACKBONE_PREFIXES = ("encoder.", "ssl.")
HEAD_PREFIX = "heads."


@dataclass
class InitReport:
    """What :func:`init_model` did with each tensor name."""

    loaded: list[str] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)  # name -> why

    def log(self, path: str | Path) -> None:
        """One summary line per part, then each skipped tensor (debug level for many)."""
        parts: dict[str, int] = {}
        for k in self.loaded:
            part = _head_of(k) if k.startswith(HEAD_PREFIX) else k.split(".", 1)[0]
            parts[part] = parts.get(part, 0) + 1
        log.info("--init-from %s: loaded %d tensors (%s); skipped %d", path, len(self.loaded),
                 ", ".join(f"{p}: {n}" for p, n in parts.items()) or "none", len(self.skipped))
        reasons: dict[str, list[str]] = {}
        for k, why in self.skipped.items():
            reasons.setdefault(why, []).append(k)
        for why, names in reasons.items():
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            log.info("--init-from: skipped %d tensor(s), %s: %s", len(names), why, shown)


def parse_new_heads(spec: str | Sequence[str]) -> set[str]:
    """``"st_es,asr"`` (or a list) -> {"st_es", "asr"}: objective or task names."""
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    return {s.strip() for s in items if s.strip()}


def _head_of(key: str) -> str:
    """``heads.st_es.proj.weight`` -> ``st_es``."""
    return key.split(".", 2)[1]


def _fresh(head: str, new_heads: set[str]) -> bool:
    """Whether head ``st_es`` is named by ``new_heads``, as itself or by its task (``st``)."""
    return head in new_heads or task_group(head) in new_heads


def _wanted(name: str, heads: bool, new_heads: set[str]) -> str | None:
    """None when ``name`` is to be loaded, else why it is not."""
    if name.startswith(BACKBONE_PREFIXES):
        return None
    if name.startswith(HEAD_PREFIX):
        if not heads:
            return "CTC heads (not loaded without --init-heads true)"
        return "named by --init-new-heads (starts fresh)" if _fresh(_head_of(name), new_heads) else None
    return "this run's own (CMVN statistics of its data)"


def plan_init(own: dict[str, torch.Tensor], source: dict[str, torch.Tensor], heads: bool,
              path: str | Path, new_heads: str | Sequence[str] = "") -> InitReport:
    """Which of the model's tensors ``own`` to take from ``source``; raises DataError on a
    shape mismatch, a backbone tensor the file lacks, or a ``new_heads`` name that is no
    head of this model."""
    fresh = parse_new_heads(new_heads)
    own_heads = {_head_of(k) for k in own if k.startswith(HEAD_PREFIX)}
    unknown = sorted(n for n in fresh if not any(_fresh(h, {n}) for h in own_heads))
    if unknown:
        raise DataError(f"--init-new-heads {','.join(unknown)}: no such head in this model (its heads: "
                        f"{', '.join(sorted(own_heads)) or 'none'}; a task name like 'st' names all of its heads)")
    report = InitReport()
    for name, t in own.items():
        why = _wanted(name, heads, fresh)
        if why is None and name not in source:
            if name.startswith("encoder."):
                raise DataError(f"--init-from {path}: the file has no backbone tensor {name} (another model size "
                                f"or not an osoup model)")
            why = "absent from the file (this run has a part the source lacks)"
        if why is not None:
            report.skipped[name] = why
            continue
        if tuple(source[name].shape) != tuple(t.shape):
            raise DataError(f"--init-from {path}: tensor {name} has shape {tuple(source[name].shape)} there but "
                            f"{tuple(t.shape)} in this model")
        report.loaded.append(name)
    for name in source:
        if name not in own:
            report.skipped[name] = "in the file only (a head or module this run does not have)"
    return report


def init_model(model: torch.nn.Module, path: str | Path, heads: bool = False,
               new_heads: str | Sequence[str] = "") -> InitReport:
    """Copy the backbone (and SSL module, and with ``heads`` the shared CTC heads but those of
    ``new_heads``) of the model file ``path`` into ``model`` in place, log what was loaded and
    skipped, and return it."""
    obj = load_torch_file(path, "model file", ("model",), "give a best.pt, latest.pt, checkpoint.N.pt or pretrain.pt")
    source = obj["model"]
    if not isinstance(source, dict):
        raise DataError(f"--init-from {path}: its 'model' is not a state dict")
    own = model.state_dict()
    report = plan_init(own, source, heads, path, new_heads)
    with torch.no_grad():
        for name in report.loaded:
            own[name].copy_(source[name].to(own[name].device, own[name].dtype))
    report.log(path)
    return report
