"""Euclidean projection onto the probability simplex, batched and free of host synchronisation.

MoDo projects its weight vector after every step, so this runs once per level per training step.
It must stay on the device: the reference implementations (torchjd, LibMTL) walk the sorted
vector in a Python loop with a data-dependent ``break``, which forces one GPU->CPU round trip per
entry. Here the threshold is found with whole-tensor operations only (sort, cumsum, max, gather).
"""
from __future__ import annotations

import torch
from torch import Tensor


def project_simplex(v: Tensor) -> Tensor:
    """Return ``argmin_x ||x - v||`` over ``{x >= 0, sum(x) = 1}`` along the last dimension.

    Leading dimensions are batch dimensions. The result has ``v``'s device and dtype.

    Method (Held et al. 1974; Duchi et al. 2008): sort ``u = sort(v, descending)``, let
    ``s_j = sum_{i<=j} u_i - 1``; the support size is ``r = max{j : u_j - s_j / j > 0}`` and the
    answer is ``max(v - s_r / r, 0)``. ``r`` is taken as the largest index satisfying the test
    (not the count of indices), so a rounding wobble at the boundary cannot pick a wrong one.
    """
    if not torch.is_floating_point(v):
        raise TypeError(f"project_simplex needs a floating-point tensor, got {v.dtype}")
    if v.dim() == 0 or v.shape[-1] == 0:
        raise ValueError(f"project_simplex needs a non-empty last dimension, got shape {tuple(v.shape)}")
    k = v.shape[-1]
    u, _ = torch.sort(v, dim=-1, descending=True)
    css = torch.cumsum(u, dim=-1) - 1.0
    idx = torch.arange(1, k + 1, device=v.device, dtype=v.dtype)
    positive = (u - css / idx) > 0
    # j = 1 always passes (u_1 - (u_1 - 1) = 1 > 0), so the max below is at least 1.
    support = torch.amax(torch.where(positive, idx, torch.zeros_like(idx)), dim=-1, keepdim=True)
    pos = support.to(torch.long) - 1
    theta = torch.gather(css, -1, pos) / support
    return torch.clamp(v - theta, min=0.0)
