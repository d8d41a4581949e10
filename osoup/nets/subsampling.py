"""Conv2d front-end that subsamples fbank frames by 4 in time (the encoder's z).

Two 3x3 convolutions with stride 2 (each followed by ReLU) see the features as a one-channel
image [time, mel]; a linear layer maps the flattened channels x remaining mel bins to d_model.

Frame alignment, with T input frames and L = ((T - 1) // 2 - 1) // 2 output frames:

* non-causal ("valid" convolutions, no padding): output frame u reads input frames
  4u .. 4u+6;
* causal: each convolution is left-padded in time by kernel-1 = 2 zero frames, so output frame
  u reads input frames 4u-6 .. 4u (frames before 0 are zeros) and never anything after its own
  time 4u. The causal pass would give ceil(ceil(T/2)/2) frames; it is cut to the same L so that
  both modes share one length formula (the few dropped frames read only the last ~6 input
  frames, which the non-causal pass ignores as well).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

_KERNEL = 3
_STRIDE = 2


def _output_length(n_frames: int) -> int:
    """Number of output frames for ``n_frames`` input frames (0 when too short)."""
    return max(((n_frames - 1) // 2 - 1) // 2, 0)


def output_lengths(lengths: Tensor) -> Tensor:
    """Vectorised :func:`_output_length` for a LongTensor of input lengths."""
    return torch.clamp(torch.div(torch.div(lengths - 1, 2, rounding_mode="floor") - 1, 2,
                                 rounding_mode="floor"), min=0)


def _pad_time(x: Tensor, causal: bool) -> Tensor:
    """Causal mode: kernel-1 zero frames before time 0 of x [B, C, T, F]; else x itself."""
    return F.pad(x, (0, 0, _KERNEL - 1, 0)) if causal else x


class Conv2dSubsampling4(nn.Module):
    """Two stride-2 3x3 convolutions + ReLU, then a linear layer to ``d_model``.

    Args:
        idim: feature dimension (mel bins).
        d_model: output dimension.
        channels: conv channels; None means d_model (as in ESPnet). The second convolution
            costs ~channels^2, so small models use fewer channels to keep CPU runs fast.
    """

    def __init__(self, idim: int, d_model: int, channels: int | None = None) -> None:
        super().__init__()
        self.idim = idim
        channels = channels or d_model
        self.conv1 = nn.Conv2d(1, channels, _KERNEL, _STRIDE)
        self.conv2 = nn.Conv2d(channels, channels, _KERNEL, _STRIDE)
        f_out = ((idim - 1) // 2 - 1) // 2
        if f_out < 1:
            raise ValueError(f"idim={idim} is too small for two stride-2 3x3 convolutions")
        self.out = nn.Linear(channels * f_out, d_model)

    def forward(self, feats: Tensor, lengths: Tensor, causal: bool = False) -> tuple[Tensor, Tensor]:
        """feats [B, T, idim], lengths [B] -> (z [B, L, d_model], out_lengths [B])."""
        if feats.dim() != 3 or feats.size(2) != self.idim:
            raise ValueError(f"expected features [B, T, {self.idim}], got {tuple(feats.shape)}")
        n_frames = feats.size(1)
        n_out = _output_length(n_frames)
        if n_out < 1:
            raise ValueError(f"input has {n_frames} frames; Conv2d subsampling needs at least 7")
        x = feats.unsqueeze(1)  # [B, 1, T, F]
        # ReLU in place: a convolution's backward needs its input, not its output. The padding
        # copy is made in causal mode only (the conv2 input is the largest tensor of the model).
        x = torch.relu_(self.conv1(_pad_time(x, causal)))
        x = torch.relu_(self.conv2(_pad_time(x, causal)))
        x = x[:, :, :n_out]
        b, c, t, f = x.shape
        z = self.out(x.transpose(1, 2).reshape(b, t, c * f))
        return z, output_lengths(lengths)
