"""CTC classification heads (one per language and task) and the summed CTC loss."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

BLANK = 0


class CTCHead(nn.Module):
    """Dropout + linear projection from encoder output to CTC logits (index 0 is blank).

    Returns raw logits; :func:`ctc_loss_sum` and the decoders apply log_softmax themselves.
    """

    def __init__(self, d_model: int, vocab_size: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(d_model, vocab_size)

    def forward(self, enc_out: Tensor) -> Tensor:
        """enc_out [B, T', d] -> logits [B, T', V]."""
        return self.proj(self.dropout(enc_out))


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
