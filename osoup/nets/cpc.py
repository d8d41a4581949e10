"""Contrastive Predictive Coding loss (van den Oord et al., 2018) on the Conformer.

Context c_t is the CAUSAL encoder output at frame t and z the front-end output of the same
causal pass (:class:`osoup.nets.conformer.EncoderOutput`). For each step k = 1..n_predict a
linear predictor W_k scores candidates by (W_k c_t) . z_x; InfoNCE picks the positive
x = t + k against ``n_negatives`` frames drawn uniformly from the other valid frames of the same
utterance (with replacement, never the positive). Only pairs with t + k < length count, so
padding is never a context, positive or negative.

Stated deviation: the paper runs CPC on the raw waveform; here it runs on the fbank
front-end frames (40 ms per frame after subsampling), so k = 12 predicts 480 ms ahead. The
front-end's receptive field (7 input frames at stride 4) makes z_{t+1} share 3 input frames
with what c_t has seen; the other 4 are unseen, so the task stays a prediction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class CPC(nn.Module):
    """CPC predictors W_1..W_K (SSL-only parameters, trained like heads) and the InfoNCE loss."""

    def __init__(self, d_model: int, n_predict: int = 12, n_negatives: int = 12) -> None:
        super().__init__()
        if n_predict < 1 or n_negatives < 1:
            raise ValueError("n_predict and n_negatives must be >= 1")
        self.n_predict = n_predict
        self.n_negatives = n_negatives
        self.predictors = nn.ModuleList(nn.Linear(d_model, d_model) for _ in range(n_predict))

    def loss(self, z: Tensor, c: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Summed InfoNCE over all valid (t, k) terms and their number.

        Args:
            z: front-end output of the causal pass [B, T, d] (targets).
            c: causal encoder output [B, T, d] (contexts).
            lengths: valid frames per utterance [B].
        Returns:
            (loss_sum, count): 0-dim float tensor and 0-dim long tensor on the input's device
            (no host synchronisation); the caller divides.
        """
        device = z.device
        with torch.autocast(device_type=device.type, enabled=False):
            # Scores in float32 at least: bf16 dot products of large vectors would blur InfoNCE logits.
            dtype = torch.promote_types(z.dtype, torch.float32)
            return self._loss(z.to(dtype), c.to(dtype), lengths.to(device))

    def _loss(self, z: Tensor, c: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        b, t, _ = z.shape
        device = z.device
        total = z.new_zeros(())
        count = torch.zeros((), dtype=torch.long, device=device)
        # Uniform over the len-1 frames other than the positive: r in [0, len-2], skip pos.
        n_other = (lengths - 1).clamp(min=1)[:, None, None]
        for k in range(1, min(self.n_predict, t - 1) + 1):
            n_ctx = t - k
            pred = self.predictors[k - 1](c[:, :n_ctx])  # [B, n_ctx, d]
            scores = torch.bmm(pred, z.transpose(1, 2))  # [B, n_ctx, T]
            pos = torch.arange(k, t, device=device)[None, :, None].expand(b, n_ctx, 1)
            r = (torch.rand(b, n_ctx, self.n_negatives, device=device) * n_other).long()
            r = torch.minimum(r, n_other - 1)
            neg = r + (r >= pos).long()
            logits = scores.gather(2, torch.cat([pos, neg], dim=2))
            nll = -F.log_softmax(logits, dim=-1)[..., 0]  # [B, n_ctx]
            ok = torch.arange(n_ctx, device=device)[None, :] < (lengths - k)[:, None]
            total = total + torch.where(ok, nll, torch.zeros_like(nll)).sum()
            count = count + ok.sum()
        return total, count
