"""The loss of one objective on one batch: the single definition that training, dev
evaluation and conflict analysis all use.

CTC objectives: the batch's CTC loss sum ÷ its number of target tokens; the SSL objective:
its loss sum ÷ its number of prediction terms (paper appendix E; ``docs/design.md``). Under
data parallelism the divisor is the global count, summed over ranks, so that the ranks'
losses (and gradients) add up to the loss of the union of their batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch

from osoup.data.dataset import FeatureSet
from osoup.nets.model import SSL_OBJECTIVE, SoupModel, pad_batch, pad_targets


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
    model: SoupModel, name: str, fset: FeatureSet, idx: Sequence[int], device: torch.device | str
) -> BatchLoss:
    """Loss sum and normaliser of objective ``name`` on the examples ``idx`` of ``fset``.

    The forward runs under whatever autocast context the caller set; the sum is returned
    in float32."""
    exs = [fset.examples[i] for i in idx]
    feats, lengths = pad_batch([fset.load(e.utt_id) for e in exs], device)
    frames = int(sum(e.num_frames for e in exs))
    if name == SSL_OBJECTIVE:
        loss_sum, count = model.ssl_loss(feats, lengths)
    else:
        targets, tlens = pad_targets([e.target for e in exs], device)
        loss_sum = model.supervised_loss(name, feats, lengths, targets, tlens)
        count = sum(len(e.target) for e in exs)
    loss_sum = loss_sum.float()
    count_t = torch.as_tensor(count, device=loss_sum.device).to(torch.float32).reshape(())
    return BatchLoss(loss_sum, count_t, frames)
