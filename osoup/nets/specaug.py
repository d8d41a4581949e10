"""SpecAugment (Park et al., 2019) frequency and time masking for supervised batches.

Only active in train mode; eval mode returns the input unchanged. Masked values are set to 0,
the global mean once features are normalised by GlobalCMVN. Time masks stay inside each
utterance's length and padded frames are never touched. All random draws use the torch RNG on
the features' device (no host synchronisation). Time warping is not implemented.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def _band_mask(n_masks: int, max_width: Tensor, extent: Tensor, size: int) -> Tensor:
    """Bool [B, size]: union of ``n_masks`` bands per row, width ~ U{0..max_width},
    start ~ U{0..extent-width}; max_width and extent are [B] tensors."""
    b = extent.size(0)
    device = extent.device
    u_w = torch.rand(b, n_masks, device=device)
    u_s = torch.rand(b, n_masks, device=device)
    width = (u_w * (max_width[:, None] + 1).float()).long()
    width = torch.minimum(width, extent[:, None])
    start = (u_s * (extent[:, None] - width + 1).float()).long()
    pos = torch.arange(size, device=device)[None, None, :]
    bands = (pos >= start[..., None]) & (pos < (start + width)[..., None])
    return bands.any(dim=1)


class SpecAugment(nn.Module):
    """Random frequency and time masks.

    Args:
        freq_masks: number of frequency masks per utterance.
        freq_width: maximum frequency mask width in bins (27 is the LD policy for 80 bins).
        time_masks: number of time masks per utterance.
        time_width: maximum time mask width as a fraction of the utterance's length.
    """

    def __init__(self, freq_masks: int = 2, freq_width: int = 27, time_masks: int = 2,
                 time_width: float = 0.05) -> None:
        super().__init__()
        if min(freq_masks, freq_width, time_masks) < 0 or not 0.0 <= time_width <= 1.0:
            raise ValueError("SpecAugment: counts and widths must be >= 0, time_width in [0, 1]")
        self.freq_masks = freq_masks
        self.freq_width = freq_width
        self.time_masks = time_masks
        self.time_width = time_width

    def forward(self, feats: Tensor, lengths: Tensor) -> Tensor:
        """feats [B, T, F], lengths [B] -> masked copy (train mode) or ``feats`` (eval)."""
        if not self.training:
            return feats
        b, t, f = feats.shape
        lengths = lengths.to(feats.device)
        mask = torch.zeros(b, t, f, dtype=torch.bool, device=feats.device)
        if self.freq_masks:
            n_bins = torch.full((b,), f, dtype=torch.long, device=feats.device)
            fmask = _band_mask(self.freq_masks, torch.clamp(n_bins, max=self.freq_width), n_bins, f)
            mask |= fmask[:, None, :]
        if self.time_masks:
            max_w = (lengths.float() * self.time_width).long()
            mask |= _band_mask(self.time_masks, max_w, lengths, t)[:, :, None]
        valid = torch.arange(t, device=feats.device)[None, :] < lengths[:, None]
        return feats.masked_fill(mask & valid[:, :, None], 0.0)
