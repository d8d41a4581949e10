"""Conformer encoder (Gulati et al., 2020) with a causal mode for CPC.

One set of weights, two ways to run it:

* ``causal=False`` (CTC, BEST-RQ, decoding): full self-attention over the valid frames,
  centred depthwise convolution, "valid" Conv2d subsampling.
* ``causal=True`` (CPC): attention mask that hides later frames, depthwise convolution
  left-padded with kernel-1 zeros (none on the right), Conv2d subsampling left-padded in time
  (see :mod:`osoup.nets.subsampling`). Output frame t then depends on no input frame after
  time 4t, which is what lets CPC predict z_{t+k} from c_t without seeing it.

Padding never changes a valid frame's output (keys past the length are masked, padded frames
are zeroed before the depthwise convolution, batch-norm statistics use valid frames only).

Batch norm and causality: batch statistics pool over time, so in a training pass frame t would
be normalised with a mean that includes later frames. In a causal pass
:class:`MaskedBatchNorm1d` therefore normalises with its *running* statistics (a fixed affine
map per frame, so nothing leaks), in train and eval mode alike. In training it still updates the
running statistics from the valid frames of the causal pass afterwards, so they stay current
when CPC is the only objective (pre-training); those updates only affect later steps.
``conv_norm="layer"`` (LayerNorm over channels) avoids the question entirely.
"""
from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from osoup.nets.attention import FastDropout, RelPositionMultiHeadAttention, rel_sinusoids
from osoup.nets.subsampling import Conv2dSubsampling4


class EncoderOutput(NamedTuple):
    """out: encoder output [B, T', d]; lengths: valid frames [B]; frontend: z [B, T', d]."""

    out: Tensor
    lengths: Tensor
    frontend: Tensor


def valid_mask(lengths: Tensor, n_frames: int) -> Tensor:
    """Bool [B, n_frames], True at frames before each length."""
    return torch.arange(n_frames, device=lengths.device)[None, :] < lengths[:, None]


class MaskedBatchNorm1d(nn.Module):
    """BatchNorm over channels of [B, C, T] whose statistics use valid frames only.

    Non-causal training pass: normalise with the batch statistics of the valid frames and update
    the running statistics (momentum, unbiased variance, like ``nn.BatchNorm1d``). Eval, or any
    causal pass: normalise with the running statistics (see the module docstring for why); a
    causal training pass updates them afterwards without gradient.
    """

    def __init__(self, channels: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps = eps
        self.momentum = momentum
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))
        self.register_buffer("num_batches_tracked", torch.tensor(0, dtype=torch.long))

    def _batch_stats(self, x: Tensor, valid: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Mean and biased variance per channel over the valid frames, and their count.

        The sums over (batch, time) are matrix-vector products with the 0/1 frame mask, which
        read x once and build no masked copy of it; autocast is off so that they stay in x's
        precision (float32 at least)."""
        m = valid.to(x.dtype)[:, :, None]  # [B, T, 1]
        n = m.sum().clamp(min=1.0)
        with torch.autocast(x.device.type, enabled=False):
            mean = torch.matmul(x, m).sum(0).squeeze(-1) / n
            centred = x - mean[None, :, None]
            var = torch.matmul(centred * centred, m).sum(0).squeeze(-1) / n
        return mean, var, n

    def _update_running(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        with torch.no_grad():
            unbiased = var * n / (n - 1).clamp(min=1.0)
            self.running_mean.lerp_(mean.detach().to(self.running_mean.dtype), self.momentum)
            self.running_var.lerp_(unbiased.detach().to(self.running_var.dtype), self.momentum)
            self.num_batches_tracked += 1

    def forward(self, x: Tensor, valid: Tensor, causal: bool = False) -> Tensor:
        """x [B, C, T], valid bool [B, T] -> [B, C, T] (computed in float32 at least: half
        precision is upcast, float64 stays float64).

        The normalisation (x - mean) / sqrt(var + eps) * weight + bias is applied as one
        per-channel affine map x * scale + shift."""
        dtype = x.dtype
        x = x.to(torch.promote_types(dtype, torch.float32))
        if self.training and not causal:
            mean, var, n = self._batch_stats(x, valid)
            self._update_running(mean, var, n)
        else:
            # Clones: the causal training pass below updates the running statistics in place.
            mean, var = self.running_mean.to(x.dtype).clone(), self.running_var.to(x.dtype).clone()
            if self.training:  # causal training pass: normalise with old stats, then update.
                with torch.no_grad():
                    self._update_running(*self._batch_stats(x.detach(), valid))
        scale = self.weight * torch.rsqrt(var + self.eps)
        shift = self.bias - mean * scale
        return torch.addcmul(shift[None, :, None], x, scale[None, :, None]).to(dtype)


class FeedForward(nn.Module):
    """Pre-norm feed-forward module: LayerNorm, Linear, Swish, dropout, Linear, dropout."""

    def __init__(self, d_model: int, d_ff: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.w1 = nn.Linear(d_model, d_ff)
        self.w2 = nn.Linear(d_ff, d_model)
        self.dropout = FastDropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.dropout(self.w2(self.dropout(F.silu(self.w1(self.norm(x))))))


class ConvModule(nn.Module):
    """Pointwise conv -> GLU -> depthwise conv -> norm -> Swish -> pointwise conv -> dropout."""

    def __init__(self, d_model: int, kernel: int, norm: str, dropout: float) -> None:
        super().__init__()
        if kernel % 2 != 1:
            raise ValueError(f"conv_kernel must be odd, got {kernel}")
        if norm not in ("batch", "layer"):
            raise ValueError(f"conv_norm must be 'batch' or 'layer', got {norm!r}")
        self.kernel = kernel
        self.norm_type = norm
        self.pointwise1 = nn.Conv1d(d_model, 2 * d_model, 1)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.norm = MaskedBatchNorm1d(d_model) if norm == "batch" else nn.LayerNorm(d_model)
        self.pointwise2 = nn.Conv1d(d_model, d_model, 1)
        self.dropout = FastDropout(dropout)

    def forward(self, x: Tensor, valid: Tensor, causal: bool) -> Tensor:
        """x [B, T, d] (already layer-normed), valid [B, T] -> [B, T, d].

        The pointwise convolutions run as linear layers on [B, T, d] (the same weights viewed
        without their kernel axis), so only the depthwise convolution and the norm see the
        [B, d, T] layout, and that only as a transposed view."""
        y = F.glu(F.linear(x, self.pointwise1.weight[:, :, 0], self.pointwise1.bias), dim=-1)
        y = y.masked_fill(~valid[:, :, None], 0.0).transpose(1, 2)  # [B, d, T]
        pad = (self.kernel - 1) // 2
        if causal:
            y, pad = F.pad(y, (self.kernel - 1, 0)), 0
        y = F.conv1d(y, self.depthwise.weight, self.depthwise.bias, padding=pad,
                     groups=self.depthwise.groups)
        if self.norm_type == "batch":
            y = self.norm(y, valid, causal).transpose(1, 2)
        else:
            y = self.norm(y.transpose(1, 2))
        y = F.linear(F.silu(y), self.pointwise2.weight[:, :, 0], self.pointwise2.bias)
        return self.dropout(y)


class ConformerBlock(nn.Module):
    """Macaron block: x + FFN/2, + MHSA (rel-pos), + conv module, + FFN/2, LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, ff_mult: int, conv_kernel: int,
                 conv_norm: str, dropout: float) -> None:
        super().__init__()
        self.ff1 = FeedForward(d_model, ff_mult * d_model, dropout)
        self.norm_att = nn.LayerNorm(d_model)
        self.att = RelPositionMultiHeadAttention(d_model, n_heads, dropout)
        self.norm_conv = nn.LayerNorm(d_model)
        self.conv = ConvModule(d_model, conv_kernel, conv_norm, dropout)
        self.ff2 = FeedForward(d_model, ff_mult * d_model, dropout)
        self.norm_out = nn.LayerNorm(d_model)
        self.dropout = FastDropout(dropout)

    def forward(self, x: Tensor, pos_emb: Tensor, att_mask: Tensor, valid: Tensor,
                causal: bool) -> Tensor:
        x = torch.add(x, self.ff1(x), alpha=0.5)
        x = x + self.dropout(self.att(self.norm_att(x), pos_emb, att_mask))
        x = x + self.conv(self.norm_conv(x), valid, causal)
        x = torch.add(x, self.ff2(x), alpha=0.5)
        return self.norm_out(x)


class ConformerEncoder(nn.Module):
    """Conv2d x4 subsampling front-end followed by ``n_blocks`` Conformer blocks.

    Args:
        idim: input feature dimension (80 log-mel bins).
        d_model: model width; also the width of the front-end output z.
        n_heads: attention heads (d_model must be divisible by it).
        n_blocks: number of Conformer blocks.
        ff_mult: feed-forward inner width = ff_mult * d_model.
        conv_kernel: depthwise convolution kernel (odd).
        conv_norm: "batch" (masked BatchNorm, the Conformer default) or "layer".
        dropout: dropout of the front-end output, feed-forward, attention weights, residuals.
        subsampling_channels: channels of the Conv2d front-end (None: d_model).
    """

    def __init__(self, idim: int = 80, d_model: int = 256, n_heads: int = 4, n_blocks: int = 12,
                 ff_mult: int = 4, conv_kernel: int = 31, conv_norm: str = "batch",
                 dropout: float = 0.1, subsampling_channels: int | None = None) -> None:
        super().__init__()
        self.idim = idim
        self.d_model = d_model
        self.frontend = Conv2dSubsampling4(idim, d_model, subsampling_channels)
        self.dropout = FastDropout(dropout)
        self.blocks = nn.ModuleList(
            ConformerBlock(d_model, n_heads, ff_mult, conv_kernel, conv_norm, dropout)
            for _ in range(n_blocks))

    def forward(self, feats: Tensor, lengths: Tensor, causal: bool = False) -> EncoderOutput:
        """feats [B, T, idim], lengths [B] -> EncoderOutput with T' = ((T-1)//2-1)//2."""
        z, out_lengths = self.frontend(feats, lengths.to(feats.device), causal)
        n_out = z.size(1)
        valid = valid_mask(out_lengths, n_out)
        # Key 0 stays visible even for an empty utterance so that no softmax row is all -inf.
        keys = valid.clone()
        keys[:, 0] = True
        att_mask = keys[:, None, :]
        if causal:
            tril = torch.ones(n_out, n_out, dtype=torch.bool, device=z.device).tril()
            att_mask = att_mask & tril[None]
        pos_emb = rel_sinusoids(n_out, self.d_model, z.device, z.dtype)
        x = self.dropout(z)
        for block in self.blocks:
            x = block(x, pos_emb, att_mask, valid, causal)
        return EncoderOutput(x, out_lengths, z)

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Natural units for layer selection / conflict analysis: front-end, then each block.

        Every encoder parameter appears in exactly one group.
        """
        groups = {"frontend": list(self.frontend.parameters())}
        for i, block in enumerate(self.blocks):
            groups[f"block{i}"] = list(block.parameters())
        return groups
