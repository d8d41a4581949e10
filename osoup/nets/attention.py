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


def fast_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Inverted dropout with the law of ``F.dropout`` (keep with probability 1-p, scale by
    1/(1-p)). On CPU the keep mask comes from ``torch.rand``, about twice as fast there as the
    Bernoulli sampler of ``F.dropout`` (``bench/bench_encoder.py``); a seed therefore gives
    other masks than ``F.dropout`` would, with the same distribution. Other devices keep
    ``F.dropout`` and its fused kernels. The mask is drawn in float32 so that its keep
    probability does not depend on x's precision (``test/test_encoder_speedpath.py``)."""
    if not training or p == 0.0 or p >= 1.0 or x.device.type != "cpu":
        return F.dropout(x, p, training)
    keep = torch.rand(x.shape, device=x.device).ge_(p).to(x.dtype).div_(1.0 - p)
    return x * keep


class FastDropout(nn.Dropout):
    """``nn.Dropout`` (same ``p``, train/eval switch and state) through :func:`fast_dropout`."""

    def forward(self, x: Tensor) -> Tensor:
        return fast_dropout(x, self.p, self.training)


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
    """Self-attention with relative positions; ``mask`` [B, 1 or T, T] is True where allowed.

    Heads are laid out head-major ([H*B, T, d_head]) so that the positional term is one
    batched matmul of every utterance's queries against the shared [H, d_head, 2T-1]
    projections (no per-utterance copy of them), and the 1/sqrt(d_head) scale is applied to the
    small query tensors, not to the [H*B, T, T] scores. Two ways to finish, same formula
    (``test/test_encoder_speedpath.py``):

    * explicit (default in CPU training): the shifted positional scores are the input of one
      ``baddbmm`` that adds the content scores, then mask, softmax, dropout, matmul with V.
      In CPU training (attention dropout) ``F.scaled_dot_product_attention`` runs the same
      unfused math with more passes over the [H*B, T, T] scores (``bench/bench_encoder.py``).
    * SDPA (default otherwise): ``F.scaled_dot_product_attention`` with the positional term
      as an additive float ``attn_mask``, which lets CUDA pick a fused kernel; in CPU
      inference it is slightly faster than the explicit path as well.

    ``use_sdpa`` forces one (None: by device and mode). The q, k, v projections run as one matmul
    over their concatenated weights; the parameters stay ``linear_q``/``linear_k``/
    ``linear_v``, so checkpoints are unchanged.
    """

    def __init__(self, d_model: int, n_heads: int, dropout: float = 0.0,
                 use_sdpa: bool | None = None) -> None:
        super().__init__()
        if d_model % n_heads:
            raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads}")
        self.n_heads = n_heads
        self.d_head = d_model // n_heads
        self.dropout = dropout
        self.use_sdpa = use_sdpa
        self.linear_q = nn.Linear(d_model, d_model)
        self.linear_k = nn.Linear(d_model, d_model)
        self.linear_v = nn.Linear(d_model, d_model)
        self.linear_out = nn.Linear(d_model, d_model)
        self.linear_pos = nn.Linear(d_model, d_model, bias=False)
        self.pos_bias_u = nn.Parameter(torch.empty(n_heads, self.d_head))
        self.pos_bias_v = nn.Parameter(torch.empty(n_heads, self.d_head))
        nn.init.xavier_uniform_(self.pos_bias_u)
        nn.init.xavier_uniform_(self.pos_bias_v)

    def _qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """x [B, T, d] -> q, k, v, each [H, B, T, d_head] (one matmul, one layout copy)."""
        b, t, _ = x.shape
        weight = torch.cat([self.linear_q.weight, self.linear_k.weight, self.linear_v.weight])
        bias = torch.cat([self.linear_q.bias, self.linear_k.bias, self.linear_v.bias])
        qkv = F.linear(x, weight, bias).view(b, t, 3, self.n_heads, self.d_head)
        return qkv.permute(2, 3, 0, 1, 4).contiguous().unbind(0)

    def forward(self, x: Tensor, pos_emb: Tensor, mask: Tensor) -> Tensor:
        """x [B, T, d], pos_emb [2T-1, d], mask bool [B, 1|T, T] -> [B, T, d]."""
        b, t, d = x.shape
        h, dh = self.n_heads, self.d_head
        q, k, v = self._qkv(x)
        scale = 1.0 / math.sqrt(dh)
        p = self.linear_pos(pos_emb).to(q.dtype).view(2 * t - 1, h, dh).permute(1, 2, 0)
        # Biases cast to q's dtype so that q, k, v and the scores agree under autocast.
        q_v = (q + self.pos_bias_v.to(q.dtype)[:, None, None, :]) * scale
        pos_scores = rel_shift(torch.matmul(q_v.view(h, b * t, dh), p).view(h * b, t, 2 * t - 1))
        q_u = q + self.pos_bias_u.to(q.dtype)[:, None, None, :]
        use_sdpa = self.use_sdpa
        if use_sdpa is None:
            use_sdpa = x.device.type != "cpu" or not self.training
        if use_sdpa:
            out = self._sdpa(q_u, k, v, pos_scores.view(h, b, t, t), mask)
        else:
            out = self._explicit(q_u * scale, k, v, pos_scores, mask)
        return self.linear_out(out.permute(1, 2, 0, 3).reshape(b, t, d))

    def _explicit(self, q_u: Tensor, k: Tensor, v: Tensor, pos_scores: Tensor,
                  mask: Tensor) -> Tensor:
        """Scaled q_u, k, v [H, B, T, dh], pos_scores [H*B, T, T] -> [H, B, T, dh]."""
        h, b, t, dh = q_u.shape
        k_t = k.view(h * b, t, dh).transpose(1, 2)
        scores = torch.baddbmm(pos_scores, q_u.view(h * b, t, dh), k_t)  # position + content
        # In place: baddbmm's backward needs its inputs only, not its output.
        scores.view(h, b, t, t).masked_fill_(~mask[None], float("-inf"))
        weights = fast_dropout(torch.softmax(scores, dim=-1), self.dropout, self.training)
        return torch.bmm(weights, v.view(h * b, t, dh)).view(h, b, t, dh)

    def _sdpa(self, q_u: Tensor, k: Tensor, v: Tensor, pos_scores: Tensor, mask: Tensor) -> Tensor:
        """q_u, k, v [H, B, T, dh], scaled pos_scores [H, B, T, T] -> [H, B, T, dh]."""
        bias = pos_scores.masked_fill(~mask[None], float("-inf")).transpose(0, 1)
        out = F.scaled_dot_product_attention(
            q_u.transpose(0, 1), k.transpose(0, 1), v.transpose(0, 1), attn_mask=bias,
            dropout_p=self.dropout if self.training else 0.0)
        return out.transpose(0, 1)
