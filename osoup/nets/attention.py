"""Multi-head self-attention with relative positional encoding (Transformer-XL / Conformer).

The score of query i for key j is

    ((q_i + u) . k_j + (q_i + v) . W_pos r_{i-j}) / sqrt(d_head)

where r_{i-j} is a sinusoidal embedding of the relative offset i - j, W_pos a learned
projection and u, v learned per-head biases (``pos_bias_u``, ``pos_bias_v``). Nothing absolute
enters the model, so a frame's output does not depend on how much padding or (in causal mode)
how much history precedes it except through the content itself.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def rel_sinusoids(n_frames: int, d_model: int, device: torch.device | None = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Sinusoidal embeddings of offsets n_frames-1, n_frames-2, ..., -(n_frames-1): [2T-1, d]."""
    pos = torch.arange(n_frames - 1, -n_frames, -1, device=device, dtype=torch.float32)
    n_freq = (d_model + 1) // 2
    inv_freq = torch.exp(torch.arange(n_freq, device=device, dtype=torch.float32)
                         * (-2.0 * math.log(10000.0) / d_model))
    angles = pos[:, None] * inv_freq[None, :]
    pe = torch.stack([torch.sin(angles), torch.cos(angles)], dim=-1).reshape(len(pos), 2 * n_freq)
    return pe[:, :d_model].to(dtype)


def rel_shift(scores: Tensor) -> Tensor:
    """[..., T, 2T-1] scores against offsets (T-1 .. -(T-1)) -> [..., T, T] query x key.

    Entry (i, j) of the result is column (T-1) - (i-j) of row i, i.e. the score for offset
    i - j. Done with a strided view (no copy of the large tensor).
    """
    *lead, t, two_t = scores.shape
    if two_t != 2 * t - 1:
        raise ValueError(f"rel_shift expects [..., T, 2T-1], got {tuple(scores.shape)}")
    scores = scores.contiguous()
    strides = list(scores.stride())
    new_strides = strides[:-2] + [two_t - 1, 1]
    return scores.as_strided((*lead, t, t), new_strides, scores.storage_offset() + t - 1)


class RelPositionMultiHeadAttention(nn.Module):
    """Self-attention with relative positions; ``mask`` [B, 1 or T, T] is True where allowed."""

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(n_heads, self.d_head))
        self.pos_bias_v = nn.Parameter(torch.empty(n_heads, self.d_head))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def forward(self, x: Tensor, pos_emb: Tensor, mask: Tensor) -> Tensor:
        """x [B, T, d], pos_emb [2T-1, d], mask bool [B, 1|T, T] -> [B, T, d]."""
        b, t, d = x.shape
        h, dh = self.n_heads, self.d_head
        q = self.linear_q(x).view(b, t, h, dh).transpose(1, 2)  # [B, H, T, dh]
        k = self.linear_k(x).view(b, t, h, dh).transpose(1, 2)
        v = self.linear_v(x).view(b, t, h, dh).transpose(1, 2)
        p = self.linear_pos(pos_emb).view(2 * t - 1, h, dh).permute(1, 2, 0)  # [H, dh, 2T-1]
        # Biases cast to q's dtype so that q, k, v and the mask agree under autocast.
        u = self.pos_bias_u.to(q.dtype)[:, None, :]
        v_bias = self.pos_bias_v.to(q.dtype)[:, None, :]
        pos_scores = rel_shift(torch.matmul(q + v_bias, p.to(q.dtype)))  # [B, H, T, T]
        bias = (pos_scores / math.sqrt(dh)).masked_fill(~mask[:, None], float("-inf"))
        out = F.scaled_dot_product_attention(
            q + u, k, v.to(q.dtype), attn_mask=bias.to(q.dtype),
            dropout_p=self.dropout if self.training else 0.0)
        return self.linear_out(out.transpose(1, 2).reshape(b, t, d))
