"""The loss of one objective on one batch: the single definition that training, dev
evaluation and conflict analysis all use.

CTC objectives: the batch's CTC loss sum ÷ its number of target tokens; the SSL objective:
its loss sum ÷ its number of prediction terms (paper appendix E; ``docs/design.md``). Under
data parallelism the divisor is the global count, summed over ranks, so that the ranks'
losses (and gradients) add up to the loss of the union of their batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import torch

from osoup.data.dataset import FeatureSet, make_batches
from osoup.nets.model import SSL_OBJECTIVE, SoupModel
from osoup.train.batch import ReadyHalf, assemble_half
from osoup.train.distributed import global_count


@dataclass
class BatchLoss:
    """``loss_sum`` (float32 scalar tensor), the ``count`` it is normalised by, and the
    batch's feature frames (for throughput)."""

    loss_sum: torch.Tensor
    count: torch.Tensor
    frames: int

    def normalised(self, global_count: torch.Tensor | None = None) -> torch.Tensor:
        """``loss_sum / count`` (or ``/ global_count``), with the count clamped to at least 1."""
        count = self.count if global_count is None else global_count
        return self.loss_sum / count.clamp_min(1)


def batch_loss(
    model: SoupModel, name: str, fset: FeatureSet | ReadyHalf, idx: Sequence[int], device: torch.device | str
) -> BatchLoss:
    """Loss sum and normaliser of objective ``name`` on the examples ``idx`` of ``fset``
    (a :class:`~osoup.train.batch.ReadyHalf`: those examples already read and padded, by a
    loader worker or the step itself; :mod:`osoup.train.prefetch`).

    The forward runs under whatever autocast context the caller set; the sum is returned
    in float32."""
    hb = (fset.take(idx) if isinstance(fset, ReadyHalf) else assemble_half(fset, idx)).to(device)
    if name == SSL_OBJECTIVE:
        loss_sum, count = model.ssl_loss(hb.feats, hb.lengths)
    else:
        loss_sum = model.supervised_loss(name, hb.feats, hb.lengths, hb.targets, hb.target_lengths)
        count = sum(len(fset.examples[i].target) for i in idx)
    loss_sum = loss_sum.float()
    count_t = torch.as_tensor(count, device=loss_sum.device).to(torch.float32).reshape(())
    return BatchLoss(loss_sum, count_t, hb.frames)


def half_loss(
    model: SoupModel, name: str, fset: FeatureSet | ReadyHalf, idx: Sequence[int], device: torch.device | str,
    distributed: bool = False,
) -> tuple[torch.Tensor, int]:
    """The training loss of one half of ``name``'s minibatch and its feature frames. Under
    torchrun (``distributed``) the divisor is the GLOBAL count, summed over ranks, so the
    ranks' losses and gradients add up to the loss of the union of their halves."""
    bl = batch_loss(model, name, fset, idx, device)
    if distributed:
        return bl.normalised(global_count(bl.count, bl.loss_sum.device)), bl.frames
    return bl.normalised(), bl.frames


@torch.no_grad()
def dev_losses(
    model: SoupModel, dev_sets: Mapping[str, FeatureSet], names: Sequence[str], max_frames: int, max_utts: int,
    device: torch.device | str,
) -> dict[str, float]:
    """Each objective's loss over its whole dev set (sum over batches ÷ total count), in eval
    mode and with a fixed seed for the SSL draws; objectives without dev data are left out."""
    model.eval()
    out = {}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(12345)
        for name in names:
            fset = dev_sets.get(name)
            if fset is None:
                continue
            total, count = 0.0, 0.0
            for b in make_batches(fset.examples, max_frames, max_utts, min_utts=1):
                bl = batch_loss(model, name, fset, b, device)
                total += float(bl.loss_sum)
                count += float(bl.count)
            out[name] = total / max(count, 1.0)
    model.train()
    return out
