"""Global mean/variance normalisation of features with train-set statistics."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn


class GlobalCMVN(nn.Module):
    """y = (x - mean) / std over the last (feature) dimension; identity if built with None.

    The statistics are buffers, so they travel with the model's state_dict and device. ``std``
    is floored at ``min_std`` so that a constant feature cannot divide by zero.
    """

    def __init__(self, mean: Tensor | Sequence[float] | None = None,
                 std: Tensor | Sequence[float] | None = None, min_std: float = 1e-5) -> None:
        super().__init__()
        if (mean is None) != (std is None):
            raise ValueError("GlobalCMVN needs both mean and std, or neither")
        self.identity = mean is None
        if mean is not None and std is not None:
            mean_t = torch.as_tensor(mean, dtype=torch.float32)
            std_t = torch.as_tensor(std, dtype=torch.float32)
            if mean_t.dim() != 1 or mean_t.shape != std_t.shape:
                raise ValueError(f"mean {tuple(mean_t.shape)} and std {tuple(std_t.shape)} "
                                 "must be 1-D of the same size")
            self.register_buffer("mean", mean_t)
            self.register_buffer("std", std_t.clamp(min=min_std))

    def forward(self, feats: Tensor) -> Tensor:
        """feats [..., D] -> normalised feats (same dtype)."""
        if self.identity:
            return feats
        if feats.size(-1) != self.mean.numel():
            raise ValueError(f"features have dim {feats.size(-1)}, CMVN stats have {self.mean.numel()}")
        return ((feats - self.mean) / self.std).to(feats.dtype)
