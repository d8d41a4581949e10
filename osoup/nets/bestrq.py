"""BEST-RQ masked prediction (Chiu et al., 2022; paper appendix F.1).

Targets come from a frozen random-projection quantizer: ``stack`` consecutive input frames
(4, one output frame's worth: output frame u gets input frames 4u..4u+3) are concatenated,
standardised per vector (zero mean, unit variance over its stack*idim values), projected by a
fixed random matrix to ``code_dim`` and l2-normalised; the target id is the code of the fixed,
l2-normalised random codebook with the highest cosine. Projection and codebook are buffers
(saved in checkpoints, never trained), drawn from their own generator seeded by ``seed``.

Masking, in BEST-RQ's units: every 10 ms input frame starts a span with probability
``mask_prob``; spans are snapped to the 4-frame output grid, so an output frame starts a span
with probability 1 - (1 - mask_prob)^stack, and a span covers ``mask_span`` OUTPUT frames
(10 x 40 ms = 400 ms, as in BEST-RQ). With the defaults about a third of the frames are masked.
Every utterance gets at least one span. Masked input frames are replaced by noise N(0, noise_std^2)
(0.1), which assumes globally normalised features (apply GlobalCMVN before). The (non-causal)
encoder runs on the masked features, a linear layer (SSL-only parameter) predicts the target ids,
and cross entropy is summed over masked valid output frames.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from osoup.nets.conformer import EncoderOutput, valid_mask
from osoup.nets.subsampling import _output_length, output_lengths


class BestRQ(nn.Module):
    """Random-projection quantizer (frozen buffers) + output layer (trained) + masked CE loss."""

    def __init__(self, idim: int = 80, d_model: int = 256, codebook_size: int = 1024,
                 code_dim: int = 16, stack: int = 4, mask_prob: float = 0.01,
                 mask_span: int = 10, noise_std: float = 0.1, seed: int = 0) -> None:
        super().__init__()
        if not 0.0 < mask_prob < 1.0 or mask_span < 1:
            raise ValueError(f"need 0 < mask_prob < 1 and mask_span >= 1, got {mask_prob}, {mask_span}")
        self.idim = idim
        self.stack = stack
        self.mask_prob = mask_prob
        self.mask_span = mask_span
        self.noise_std = noise_std
        gen = torch.Generator().manual_seed(seed)
        proj = torch.empty(idim * stack, code_dim)
        bound = (6.0 / (idim * stack + code_dim)) ** 0.5  # Xavier uniform, as BEST-RQ
        proj.uniform_(-bound, bound, generator=gen)
        codebook = F.normalize(torch.randn(codebook_size, code_dim, generator=gen), dim=-1)
        self.register_buffer("projection", proj)
        self.register_buffer("codebook", codebook)
        self.out = nn.Linear(d_model, codebook_size)

    @torch.no_grad()
    def targets(self, feats: Tensor, n_out: int) -> Tensor:
        """Quantizer ids [B, n_out] of the stacked (unmasked) input frames."""
        b = feats.size(0)
        dim = self.stack * self.idim
        x = feats[:, : n_out * self.stack].float().reshape(b, n_out, dim)
        x = F.layer_norm(x, (dim,))
        codes = F.normalize(x @ self.projection.float(), dim=-1)
        return (codes @ self.codebook.float().t()).argmax(dim=-1)

    def sample_mask(self, out_lengths: Tensor, n_out: int) -> Tensor:
        """Bool [B, n_out]: masked valid output frames (torch RNG, on the lengths' device)."""
        device = out_lengths.device
        b = out_lengths.size(0)
        valid = valid_mask(out_lengths, n_out)
        p_start = 1.0 - (1.0 - self.mask_prob) ** self.stack
        starts = (torch.rand(b, n_out, device=device) < p_start) & valid
        # Utterances that drew no start get one at a uniform valid position.
        forced = (torch.rand(b, device=device) * out_lengths).long()
        none = ~starts.any(dim=1) & (out_lengths > 0)
        starts = starts | (none[:, None] & (torch.arange(n_out, device=device)[None] == forced[:, None]))
        spans = F.max_pool1d(F.pad(starts[:, None].float(), (self.mask_span - 1, 0)),
                             self.mask_span, stride=1)[:, 0]
        return (spans > 0) & valid

    def loss(self, encoder: Callable[[Tensor, Tensor], EncoderOutput], feats: Tensor,
             lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Summed cross entropy over masked output frames and their number.

        Args:
            encoder: ``encoder(feats, lengths) -> EncoderOutput`` (non-causal pass).
            feats: normalised features [B, T, idim]; lengths [B].
        Returns:
            (loss_sum, count): 0-dim float and long tensors on the features' device.
        """
        b, t, _ = feats.shape
        n_out = _output_length(t)
        out_lengths = output_lengths(lengths.to(feats.device))
        target = self.targets(feats, n_out)
        masked = self.sample_mask(out_lengths, n_out)
        frame_mask = masked.repeat_interleave(self.stack, dim=1)
        frame_mask = F.pad(frame_mask, (0, t - frame_mask.size(1)))
        noise = torch.randn_like(feats) * self.noise_std
        enc = encoder(torch.where(frame_mask[..., None], noise, feats), lengths)
        logits = self.out(enc.out).float()
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1),
                             reduction="none").view(b, n_out)
        return torch.where(masked, ce, torch.zeros_like(ce)).sum(), masked.sum()
