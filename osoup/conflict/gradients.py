"""Per-objective gradients of a trained SoupModel w.r.t. its shared backbone θ, per layer group.

For each of N batch indices b, every objective draws its own b-th batch (from its own data, as
in training), computes its normalised loss (the trainer's :func:`osoup.train.loss.batch_loss`:
CTC sum ÷ target tokens; SSL sum ÷ count) and the gradient w.r.t. θ, split by
``encoder.layer_groups()``. The gradients go straight into a
:class:`~osoup.conflict.analysis.GradientAccumulator`; only the current batch is held.

The model runs in eval mode: no dropout, and BatchNorm uses its running statistics (in train
mode a batch's own statistics would make each objective's gradient depend on its batch
composition, and the running statistics would drift during the analysis). SpecAugment is off.
"""
from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from torch import nn

from osoup.conflict.analysis import MODES, ConflictResult, GradientAccumulator
from osoup.data.dataset import FeatureSet, make_batches
from osoup.fileio import DataError
from osoup.nets.model import SoupModel
from osoup.train.loss import batch_loss

log = logging.getLogger(__name__)


@dataclass
class ObjectiveData:
    """One objective's analysis data: its feature set and length-bucketed batches."""

    name: str
    fset: FeatureSet
    batches: list[list[int]]


def layer_parameters(model: SoupModel) -> dict[str, list[nn.Parameter]]:
    """θ split into the encoder's layer groups; any shared parameter outside them goes to
    ``"other"`` so that the whole-model numbers cover exactly ``model.shared_parameters()``."""
    groups = {n: [p for p in ps if p.requires_grad] for n, ps in model.encoder.layer_groups().items()}
    seen = {id(p) for ps in groups.values() for p in ps}
    rest = [p for p in model.shared_parameters() if id(p) not in seen]
    if rest:
        groups["other"] = rest
    return {n: ps for n, ps in groups.items() if ps}


def objective_loss(model: SoupModel, data: ObjectiveData, idx: list[int], device: str | torch.device) -> torch.Tensor:
    """The normalised loss the trainer uses for this objective on the examples ``idx``
    (:func:`osoup.train.loss.batch_loss`, divided by its own count)."""
    return batch_loss(model, data.name, data.fset, idx, device).normalised()


def flat_gradients(loss: torch.Tensor, groups: dict[str, list[nn.Parameter]]) -> dict[str, torch.Tensor]:
    """∇loss per group as one flat vector each (zeros for parameters the loss does not reach);
    parameters' ``.grad`` are left untouched."""
    params = [p for ps in groups.values() for p in ps]
    grads = torch.autograd.grad(loss, params, allow_unused=True)
    out: dict[str, torch.Tensor] = {}
    k = 0
    for name, ps in groups.items():
        parts = []
        for p in ps:
            g = grads[k]
            parts.append(torch.zeros(p.numel(), device=p.device, dtype=p.dtype) if g is None else g.reshape(-1))
            k += 1
        out[name] = torch.cat(parts)
    return out


def batch_plan(n_available: int, num_batches: int, seed: int, name: str) -> list[int]:
    """``num_batches`` batch indices in a seeded shuffled order, cycling (reshuffled) through the
    available batches when an objective has fewer than asked."""
    if n_available < 1:
        raise ValueError(f"objective {name}: no batches")
    out: list[int] = []
    cycle = 0
    while len(out) < num_batches:
        order = list(range(n_available))
        random.Random(f"{seed}-{name}-{cycle}").shuffle(order)
        out.extend(order)
        cycle += 1
    return out[:num_batches]


def batch_plans(data: dict[str, ObjectiveData], num_batches: int, seed: int) -> dict[str, list[int]]:
    """Each objective's :func:`batch_plan` (a warning where its batches must be reused)."""
    plans = {}
    for n, d in data.items():
        if len(d.batches) < num_batches:
            log.warning("objective %s has %d batches for %d requested: batches are reused", n, len(d.batches), num_batches)
        plans[n] = batch_plan(len(d.batches), num_batches, seed, n)
    return plans


def batch_gradients(
    model: SoupModel, data: dict[str, ObjectiveData], batch: dict[str, list[int]],
    groups: dict[str, list[nn.Parameter]], device: str | torch.device,
) -> tuple[dict[str, dict[str, torch.Tensor]], dict[str, float], str | None]:
    """Every objective's per-group gradient and loss on its examples ``batch[name]``; stops at
    the first non-finite loss or gradient and says which (third value, else None)."""
    grads: dict[str, dict[str, torch.Tensor]] = {}
    losses: dict[str, float] = {}
    for n in data:
        loss = objective_loss(model, data[n], batch[n], device)
        losses[n] = float(loss.detach())
        if not math.isfinite(losses[n]):
            return grads, losses, f"objective {n}: non-finite loss {losses[n]}"
        grads[n] = flat_gradients(loss, groups)
        if not all(bool(torch.isfinite(g).all()) for g in grads[n].values()):
            return grads, losses, f"objective {n}: non-finite gradient"
    return grads, losses, None


def collect_gradients(
    model: SoupModel,
    data: dict[str, ObjectiveData],
    num_batches: int,
    modes: tuple[str, ...] = MODES,
    seed: int = 1,
    device: str | torch.device = "cpu",
    max_bad_frac: float = 0.05,
    on_batch: Callable[[int, dict[str, float]], None] | None = None,
) -> tuple[ConflictResult, dict]:
    """Run the analysis: returns the :class:`ConflictResult` and run statistics (mean losses,
    batches used/skipped, distinct batches per objective, seconds).

    A batch index whose loss or gradient is non-finite for any objective is skipped for all
    objectives (the per-batch pairing needs every objective), counted and logged; more than
    ``max_bad_frac`` of skipped indices is a DataError.
    """
    if num_batches < 1:
        raise ValueError("num_batches must be >= 1")
    names = list(data)
    model.eval()
    groups = layer_parameters(model)
    acc = GradientAccumulator(names, list(groups), modes)
    plans = batch_plans(data, num_batches, seed)
    torch.manual_seed(seed)  # CPC negatives / BEST-RQ masks
    loss_sum = {n: 0.0 for n in names}
    skipped: list[str] = []
    t0 = time.time()
    every = max(1, num_batches // 10)
    for b in range(num_batches):
        batch = {n: data[n].batches[plans[n][b]] for n in names}
        grads, losses, bad = batch_gradients(model, data, batch, groups, device)
        if bad is not None:
            n = list(losses)[-1]  # the objective that failed
            utts = [data[n].fset.examples[i].utt_id for i in batch[n]]
            log.warning("batch %d skipped for every objective: %s (utterances %s)", b + 1, bad, ", ".join(utts[:5]))
            skipped.append(bad)
            continue
        acc.add_batch(grads)
        for n in names:
            loss_sum[n] += losses[n]
        if on_batch is not None:
            on_batch(b, losses)
        if (b + 1) % every == 0 or b + 1 == num_batches:
            el = time.time() - t0
            log.info("batch %d/%d (%.2f s/batch, ETA %.0f s): %s", b + 1, num_batches, el / (b + 1),
                     el / (b + 1) * (num_batches - b - 1), " ".join(f"{n}={losses[n]:.3f}" for n in names))
    if len(skipped) > max_bad_frac * num_batches:
        raise DataError(f"{len(skipped)} of {num_batches} batch indices had non-finite losses or gradients "
                        f"(more than --max-bad-frac {max_bad_frac}); first: {skipped[0]}")
    if acc.num_batches == 0:
        raise DataError("no usable batch: every batch had non-finite losses or gradients")
    stats = {
        "batches_used": acc.num_batches,
        "batches_skipped": len(skipped),
        "distinct_batches": {n: len(set(plans[n])) for n in names},
        "available_batches": {n: len(data[n].batches) for n in names},
        "mean_loss": {n: loss_sum[n] / acc.num_batches for n in names},
        "seconds": time.time() - t0,
    }
    return acc.result(), stats


def load_objective_data(
    specs: list,
    split: str,
    token_dirs: dict[str, str],
    max_frames: int,
    max_utts: int,
    head_vocab: dict[str, int] | None = None,
) -> dict[str, ObjectiveData]:
    """FeatureSets and batches of the ``train`` or ``dev`` dirs of each ObjectiveSpec; the
    tokenizer is the experiment's (``token_dirs`` from objectives.json) when it exists, and
    must match the model's head size (``head_vocab``) when given."""
    from osoup.text.tokenizer import Tokenizer

    out: dict[str, ObjectiveData] = {}
    for s in specs:
        dirs = s.train_dirs if split == "train" else s.dev_dirs
        if not dirs:
            raise DataError(f"objective {s.name}: no {split} data dirs (expected under the dump dir)")
        enc = vocab = None
        if s.token_dir is not None:
            tdir = token_dirs.get(s.name)
            tok = Tokenizer(tdir if tdir and Path(tdir, "spm.model").is_file() else s.token_dir)
            enc, vocab = tok.encode, tok.vocab_size
            if head_vocab is not None and head_vocab.get(s.name) != vocab:
                raise DataError(f"objective {s.name}: tokenizer {tok.dir} has {vocab} CTC symbols but the model's "
                                f"head has {head_vocab.get(s.name)}; pass the experiment's --token-dir")
        fset = FeatureSet(dirs, s.text_file, enc, cache=False, vocab_size=vocab)
        batches = make_batches(fset.examples, max_frames, max_utts, min_utts=1)
        log.info("objective %s: %d %s utterances in %d batches from %s", s.name, len(fset), split, len(batches),
                 " ".join(map(str, dirs)))
        out[s.name] = ObjectiveData(s.name, fset, batches)
    return out
