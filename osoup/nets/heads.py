"""CTC classification heads (one per language and task) and the summed CTC loss.

The paper's head is a linear projection per (language, task) (appendix E). A head may also own
a few Transformer layers before its projection (``layers > 0``): CTC translation must emit the
target language's word order from monotonic frames, and private layers give that re-ordering
capacity to the translation head alone, as in CTC speech-translation systems (e.g. OWSM-CTC's
task-specific layers). Those layers are head parameters φ, not shared θ.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BLANK = 0


class CTCHead(nn.Module):
    """[Pre-norm Transformer layers] + dropout + linear projection to CTC logits (0 is blank).

    Returns raw logits; :func:`ctc_loss_sum` and the decoders apply log_softmax themselves.
    With ``layers > 0`` the attention masks frames at or past each utterance's length, so a
    valid frame's logits do not depend on padding (``lengths`` is then required).
    """

    def __init__(self, d_model: int, vocab_size: int, dropout: float = 0.0, layers: int = 0,
                 n_heads: int = 4) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(d_model, n_heads, 4 * d_model, dropout, batch_first=True, norm_first=True)
            for _ in range(layers))
        self.norm = nn.LayerNorm(d_model) if layers else None
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, vocab_size)

    def forward(self, enc_out: Tensor, lengths: Tensor | None = None) -> Tensor:
        """enc_out [B, T', d] (valid frames ``lengths`` [B]) -> logits [B, T', V]."""
        x = enc_out
        if self.norm is not None:
            if lengths is None:
                raise ValueError("a CTC head with Transformer layers needs the frame lengths")
            pad = torch.arange(x.shape[1], device=x.device)[None, :] >= lengths.to(x.device)[:, None]
            for layer in self.layers:
                x = layer(x, src_key_padding_mask=pad)
            x = self.norm(x)
        return self.proj(self.dropout(x))


def ctc_loss_sum(logits: Tensor, lengths: Tensor, targets: Tensor,
                 target_lengths: Tensor) -> Tensor:
    """Sum over the batch of per-utterance CTC negative log-likelihoods (blank = 0).

    ``targets`` is either padded [B, S] or the concatenation of all targets (1-D).
    log_softmax runs in float32 whatever the logits' dtype. Infeasible utterances (more
    targets than frames allow) contribute 0 rather than inf (``zero_infinity``); the data
    pipeline filters them beforehand. The trainer divides by the total number of target tokens.
    """
    log_probs = F.log_softmax(logits.float(), dim=-1).transpose(0, 1)  # [T', B, V]
    return F.ctc_loss(log_probs, targets, lengths, target_lengths, blank=BLANK,
                      reduction="sum", zero_infinity=True)
