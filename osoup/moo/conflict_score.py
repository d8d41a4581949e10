"""The conflict score of a set of objective gradients: their mean pairwise cosine.

One definition, used by layer selection (:mod:`osoup.moo.selection`) and by the conflict
analysis of whole models (the paper's appendix C, Fig. 3-4): the more negative the score of a
layer, the more its objectives pull it in opposite directions.
"""
from __future__ import annotations

import torch
from torch import Tensor


def conflict_scores(gram: Tensor, pair_mask: Tensor) -> Tensor:
    """Mean pairwise cosine of gradients, from their Gramian(s).

    Args:
        gram: ``[..., R, R]`` Gramians ``G Gᵀ`` of R gradients (any leading batch dims, e.g.
            one per layer group).
        pair_mask: ``[R, R]`` boolean, True for the pairs (i, j) that count; mark each pair
            once (e.g. the upper triangle), or it counts twice.

    Returns ``[...]``: per Gramian, the mean of cos_ij = G_ij / sqrt(G_ii G_jj) (clipped to
    [-1, 1]) over the masked pairs. A pair in which either gradient is exactly zero
    (G_ii = 0) has no cosine and is left out of the mean; with no defined pair the score is
    NaN. Runs on the Gramian's device with no host synchronisation.
    """
    if gram.dim() < 2 or gram.shape[-1] != gram.shape[-2]:
        raise ValueError(f"conflict_scores: gram must be [..., R, R], got shape {tuple(gram.shape)}")
    if pair_mask.shape != gram.shape[-2:] or pair_mask.dtype != torch.bool:
        raise ValueError(
            f"conflict_scores: pair_mask must be a boolean [R, R] = {tuple(gram.shape[-2:])} mask, "
            f"got {pair_mask.dtype} {tuple(pair_mask.shape)}"
        )
    sq = gram.diagonal(dim1=-2, dim2=-1)
    norms = sq.clamp_min(0).sqrt()
    denom = (norms.unsqueeze(-1) * norms.unsqueeze(-2)).clamp_min(torch.finfo(gram.dtype).tiny)
    cos = (gram / denom).clamp(-1.0, 1.0)
    nonzero = sq > 0
    defined = pair_mask.to(gram.device) & nonzero.unsqueeze(-1) & nonzero.unsqueeze(-2)
    total = torch.where(defined, cos, torch.zeros((), dtype=cos.dtype, device=cos.device)).sum(dim=(-2, -1))
    return total / defined.sum(dim=(-2, -1), dtype=gram.dtype)
