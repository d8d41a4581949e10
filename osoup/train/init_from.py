"""``osoup-train --init-from FILE``: start a fresh run from another experiment's weights.

The backbone θ (``encoder.*``) and the SSL module (``ssl.*``: CPC predictors or BEST-RQ's
output layer and frozen quantizer, which pre-training trains together with θ) come from the
file; the CTC heads (``heads.<name>.*``) too with ``--init-heads true``, for the heads both
models have. The CMVN statistics stay this run's own (they come from its recipe's data). A
tensor whose shape differs is refused (one error naming the file and the tensor); a backbone
tensor absent from the file is refused too (the backbone would be half initialised). Every
other difference is reported, not hidden: ``test/test_baselines.py``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from osoup.fileio import DataError
from osoup.train.experiment import load_torch_file

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
            part = k.split(".", 2)[1] if k.startswith(HEAD_PREFIX) else k.split(".", 1)[0]
            parts[part] = parts.get(part, 0) + 1
        log.info("--init-from %s: loaded %d tensors (%s); skipped %d", path, len(self.loaded),
                 ", ".join(f"{p}: {n}" for p, n in parts.items()) or "none", len(self.skipped))
        reasons: dict[str, list[str]] = {}
        for k, why in self.skipped.items():
            reasons.setdefault(why, []).append(k)
        for why, names in reasons.items():
            shown = ", ".join(names[:6]) + (f" and {len(names) - 6} more" if len(names) > 6 else "")
            log.info("--init-from: skipped %d tensor(s), %s: %s", len(names), why, shown)


def _wanted(name: str, heads: bool) -> str | None:
    """None when ``name`` is to be loaded, else why it is not."""
    if name.startswith(BACKBONE_PREFIXES):
        return None
    if name.startswith(HEAD_PREFIX):
        return None if heads else "CTC heads (not loaded without --init-heads true)"
    return "this run's own (CMVN statistics of its data)"


def plan_init(own: dict[str, torch.Tensor], source: dict[str, torch.Tensor], heads: bool,
              path: str | Path) -> InitReport:
    """Which of the model's tensors ``own`` to take from ``source``; raises DataError on a
    shape mismatch or a backbone tensor the file lacks."""
    report = InitReport()
    for name, t in own.items():
        why = _wanted(name, heads)
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


def init_model(model: torch.nn.Module, path: str | Path, heads: bool = False) -> InitReport:
    """Copy the backbone (and SSL module, and with ``heads`` the shared CTC heads) of the model
    file ``path`` into ``model`` in place, log what was loaded and skipped, and return it."""
    obj = load_torch_file(path, "model file", ("model",), "give a best.pt, latest.pt, checkpoint.N.pt or pretrain.pt")
    source = obj["model"]
    if not isinstance(source, dict):
        raise DataError(f"--init-from {path}: its 'model' is not a state dict")
    own = model.state_dict()
    report = plan_init(own, source, heads, path)
    with torch.no_grad():
        for name in report.loaded:
            own[name].copy_(source[name].to(own[name].device, own[name].dtype))
    report.log(path)
    return report
