"""BEST-RQ (paper appendix F.1) on a raw-waveform backbone without a quantizer of its own
(HuBERT, WavLM; ``--ssl bestrq`` with ``--backbone hf_wav2vec2``).

:class:`osoup.nets.bestrq.BestRQ` stacks 4 fbank frames per Conformer output frame. Raw input
needs a framing step instead: the waveform is cut into non-overlapping frames of the CNN's total
stride (320 samples = 20 ms for wav2vec 2.0), one per output frame, and each frame is quantized
by the same frozen random projection and codebook (per-frame standardisation makes the waveform's
scale irrelevant). Masking does not add noise to the samples (the CNN's receptive field spans
neighbouring frames, so a masked frame would leak through them); the backbone replaces the
masked frames' features by its learnt mask embedding, as HuBERT does. Spans, in 20 ms frames:
start probability 0.02 per frame, 20 frames (400 ms) long, about a third of the frames masked,
the same density as BEST-RQ's 10 ms defaults.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from osoup.nets.backbones.hf_wav2vec2 import HFWav2Vec2Backbone
from osoup.nets.bestrq import BestRQ


class RawBestRQ(BestRQ):
    """BEST-RQ targets of waveform frames; masked prediction through the backbone's mask embedding."""

    def __init__(self, frame_samples: int, d_model: int, codebook_size: int = 1024, code_dim: int = 16,
                 mask_prob: float = 0.02, mask_span: int = 20, seed: int = 0) -> None:
        super().__init__(idim=frame_samples, d_model=d_model, codebook_size=codebook_size, code_dim=code_dim,
                         stack=1, mask_prob=mask_prob, mask_span=mask_span, seed=seed)

    def loss(self, backbone: HFWav2Vec2Backbone, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Summed cross entropy over masked frames and their number (feats [B, T, 1])."""
        b, t, _ = feats.shape
        n_out = min(backbone.n_frames(t), t // self.idim)
        out_lengths = backbone.output_lengths(lengths.to(feats.device)).clamp(max=n_out)
        frames = feats[:, : n_out * self.idim, 0].reshape(b, n_out, self.idim)
        target = self.targets(frames, n_out)
        masked = self.sample_mask(out_lengths, n_out)
        full = F.pad(masked, (0, backbone.n_frames(t) - n_out))
        enc = backbone(feats, lengths, mask_time_indices=full)
        logits = self.out(enc.out[:, :n_out]).float()
        ce = F.cross_entropy(logits.reshape(-1, logits.size(-1)), target.reshape(-1), reduction="none").view(b, n_out)
        return ce.masked_fill(~masked, 0.0).sum(), masked.sum()
