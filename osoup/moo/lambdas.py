"""Levels and their weights: the coefficients c_p and the λ update of every level.

Update of θ (paper eq. 13/15/25/28): ``Σ_p c_p Σ_{m ∈ level p} λ^p_m ḡ_m`` with c_1 = 1 and
c_p = Π_{q<p} η_q(epoch). Each level's λ comes from its own weighting: from the level's
Gramian for Gramian methods (MoDo on G1 G2ᵀ, eq. 12; with ``vc``'s folded lower objective the
rows are g_m + η g_u, eq. 9), from the losses or fixed otherwise.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor

from osoup.moo.buffers import GRAM_KINDS
from osoup.moo.layout import ObjectiveLayout
from osoup.moo.schedule import PenaltySchedule
from osoup.moo.weighting import Weighting, entropy


@dataclass
class Level:
    """One optimisation level: its objectives, how they are weighted, and its penalty.

    ``penalty`` of level p (p >= 2, 1-based) is η_{p-1}; level 1 has none. A lower level's
    coefficient is the product of the penalties of every level down to it (c_p = Π_{q<p} η_q).
    ``None`` below level 1 means a constant 1.
    """

    names: list[str]
    weighting: Weighting
    penalty: PenaltySchedule | None = None


def check_levels(levels: Sequence[Level]) -> None:
    """Each level's weighting has one weight per objective; level 1 has no penalty; every
    Gramian weighting asks for a known kind of Gramian."""
    for p, lv in enumerate(levels, start=1):
        if lv.names and lv.weighting.k != len(lv.names):
            raise ValueError(
                f"Soup: level {p} has {len(lv.names)} objectives {lv.names} but its weighting "
                f"{lv.weighting!r} has k={lv.weighting.k}"
            )
        if p == 1 and lv.penalty is not None:
            raise ValueError("Soup: level 1 cannot have a penalty (its coefficient is 1)")
    bad = {lv.weighting.gram_kind for lv in levels if lv.weighting.needs_gram} - set(GRAM_KINDS)
    if bad:
        raise ValueError(f"Soup: unknown gram_kind {sorted(bad)} (expected 'cross' or 'mean')")


def gram_kinds(levels: Sequence[Level]) -> set[str]:
    """The kinds of Gramian the levels ask for."""
    return {lv.weighting.gram_kind for lv in levels if lv.weighting.needs_gram}


def penalties(levels: Sequence[Level], epoch: float) -> list[float]:
    """η_q(epoch) of every level below the first (1.0 where a level has no schedule)."""
    return [lv.penalty.value(epoch) if lv.penalty is not None else 1.0 for lv in levels[1:]]


def coefficients(levels: Sequence[Level], epoch: float) -> list[float]:
    """c_p per level: c_1 = 1, c_p = Π_{q<p} η_q(epoch)."""
    coeffs = [1.0]
    for eta in penalties(levels, epoch):
        coeffs.append(coeffs[-1] * eta)
    return coeffs


def weights(coeffs: Sequence[float], lams: Sequence[Tensor], device: torch.device) -> Tensor:
    """Every objective's weight c_p λ^p_m [M], float32 on ``device``."""
    return torch.cat([c * lam.to(device=device, dtype=torch.float32) for c, lam in zip(coeffs, lams)])


def direct_scales(levels: Sequence[Level], epoch: float | None, device: torch.device) -> Tensor:
    """0.5 × each objective's weight c_p λ^k_m for gradients that go straight into ``.grad``
    (the current λ; c_p = 1 while the epoch is unknown: lower levels then wait in an
    accumulator and get c_p at the step)."""
    coeffs = coefficients(levels, epoch) if epoch is not None else [1.0] * len(levels)
    return 0.5 * weights(coeffs, [lv.weighting.weights for lv in levels], device)


def level_gram(full: Tensor, layout: ObjectiveLayout, p: int, etas: Sequence[float]) -> Tensor:
    """Level p's Gramian cut from the rows' Gramian ``full``; with a folded objective u it is
    the Gramian of the rows g_m + η_p g_u (eq. 9/12)."""
    rlo, rhi = layout.level_rows(p)
    gram = full[rlo:rhi, rlo:rhi]
    if p in layout.fold:
        u, eta = layout.row_of[layout.fold[p]], etas[p]
        gram = gram + eta * (full[rlo:rhi, u : u + 1] + full[u : u + 1, rlo:rhi]) + (eta * eta) * full[u, u]
    return gram


def update_lambdas(
    levels: Sequence[Level], layout: ObjectiveLayout, grams: Mapping[str, Tensor] | None, losses: Tensor, etas: Sequence[float]
) -> list[Tensor]:
    """Update every level's weighting and return the λ that steers this step per level.

    Gramian levels return their NEW λ (MoDo's order); the others keep the λ known before the
    backwards and take the losses for the next step. ``grams`` None (no MOO layer yet, before
    a layer selection's first probe): Gramian levels keep their λ.
    """
    lams: list[Tensor] = []
    for p, lv in enumerate(levels):
        lo, hi = layout.bounds[p]
        before = lv.weighting.weights
        if not lv.weighting.needs_gram:
            lams.append(before)
            lv.weighting.update(None, losses[lo:hi])
        elif grams is None:
            lams.append(before)
        else:
            gram = level_gram(grams[lv.weighting.gram_kind], layout, p, etas)
            lams.append(lv.weighting.update(gram, losses[lo:hi]))
    return lams


def step_stats(names: Sequence[str], lams: Sequence[Tensor], etas: Sequence[float], w: Tensor, losses: Tensor) -> dict[str, Any]:
    """What :meth:`osoup.moo.soup.Soup.step` returns for logging (levels 1-based)."""
    stats: dict[str, Any] = {}
    for p, lam in enumerate(lams, start=1):
        stats[f"lambda/{p}"] = lam
        stats[f"entropy/{p}"] = entropy_of_weights(lam)
    for q, eta in enumerate(etas, start=1):
        stats[f"eta/{q}"] = eta
    for i, n in enumerate(names):
        stats[f"weight/{n}"] = w[i]
    stats["losses"] = losses
    return stats


def entropy_of_weights(lam: Tensor) -> Tensor:
    """Entropy of |λ| / Σ|λ|: λ's entropy for simplex weightings; defined for any weights."""
    a = lam.abs()
    return entropy(a / a.sum().clamp_min(torch.finfo(a.dtype).tiny))
