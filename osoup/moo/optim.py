"""Separate optimizers for the shared backbone θ and the heads φ.

The paper steps θ with rate α on the combined direction and every head with rate β on its own
gradient (eq. 13-14). With ONE AdamW over both, a head-only step still moves θ: AdamW's weight
decay shrinks every parameter it holds, and its momentum keeps pushing θ along old gradients
(the authors' code had this bug). Two optimizers over disjoint sets make that impossible.

Gradient clipping belongs after :meth:`osoup.moo.Soup.step`, on the combined ``.grad`` of θ
(clipping per-objective gradients would change the Gramian and the weights)::

    stats = soup.step(epoch)
    torch.nn.utils.clip_grad_norm_(shared_params, max_norm)   # θ: the combined direction
    torch.nn.utils.clip_grad_norm_(head_params, max_norm)     # heads, separately if wanted
    opt_shared.step(); opt_heads.step()
"""
from __future__ import annotations

from typing import Iterable, Mapping, Sequence

import torch
from torch.nn import Parameter


def _flatten(params: Iterable[Parameter] | Mapping[str, Sequence[Parameter]]) -> list[Parameter]:
    if isinstance(params, Mapping):
        return [p for group in params.values() for p in group]
    return list(params)


def split_optimizers(
    shared_params: Iterable[Parameter],
    head_params: Iterable[Parameter] | Mapping[str, Sequence[Parameter]],
    lr_shared: float,
    lr_heads: float,
    weight_decay: float = 0.01,
    betas: tuple[float, float] = (0.9, 0.98),
) -> tuple[torch.optim.AdamW, torch.optim.AdamW]:
    """Two AdamW optimizers (θ with ``lr_shared`` = α, heads with ``lr_heads`` = β).

    ``head_params`` may be a flat list or the ``{objective: params}`` mapping given to the
    soup. The two sets must be disjoint and non-empty.
    """
    shared = _flatten(shared_params)
    heads = _flatten(head_params)
    if not shared:
        raise ValueError("split_optimizers: no shared parameters")
    if not heads:
        raise ValueError("split_optimizers: no head parameters")
    ids = [id(p) for p in shared + heads]
    if len(set(ids)) != len(ids):
        both = sum(1 for p in heads if any(p is q for q in shared))
        raise ValueError(
            f"split_optimizers: parameters listed twice ({both} head parameter(s) also in the shared set, "
            "or duplicates inside a set); a head step would move θ"
        )
    opt_shared = torch.optim.AdamW(shared, lr=lr_shared, betas=betas, weight_decay=weight_decay)
    opt_heads = torch.optim.AdamW(heads, lr=lr_heads, betas=betas, weight_decay=weight_decay)
    return opt_shared, opt_heads
