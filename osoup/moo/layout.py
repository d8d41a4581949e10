"""The shape of a soup's objectives: a frozen description built from plain names and levels.

Objectives are numbered level by level (level 1's first). Gradients of θ are *buffered* per
objective (one row each) only where a Gramian needs them: for the objectives of levels whose
weighting asks for one, and for the objective folded into such a level's rows (``vc``: row_m =
g_m + η g_ssl, paper eq. 9/12). Everything here is derived from the names, the levels and
which levels need a Gramian; nothing holds a tensor, so the layout is tested on names alone
(``test/test_moo_layout.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
import torch
from torch import Tensor


@dataclass(frozen=True)
class ObjectiveLayout:
    """Objectives by level (highest priority first) and where their gradients go.

    Args:
        levels: objective names of each level, level 1 first.
        needs_gram: per level, whether its weighting uses a Gramian of per-objective gradients.
        fold_lower: fold the single objective of level p+1 into the rows of each Gramian-using
            level p with η_p (``vc``'s penalised Gramian, eq. 12).
    """

    levels: tuple[tuple[str, ...], ...]
    needs_gram: tuple[bool, ...]
    fold_lower: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "levels", tuple(tuple(lv) for lv in self.levels))
        object.__setattr__(self, "needs_gram", tuple(bool(g) for g in self.needs_gram))
        object.__setattr__(self, "fold_lower", bool(self.fold_lower))
        if len(self.needs_gram) != len(self.levels):
            raise ValueError(f"ObjectiveLayout: {len(self.levels)} levels but {len(self.needs_gram)} needs_gram flags")
        seen: set[str] = set()
        for p, names in enumerate(self.levels, start=1):
            if not names:
                raise ValueError(f"Soup: level {p} has no objectives")
            for n in names:
                if n in seen:
                    raise ValueError(f"Soup: objective {n!r} appears in more than one level")
                seen.add(n)
        for p in self.fold:
            if len(self.levels[p + 1]) != 1:
                raise ValueError(
                    f"Soup: penalize_lower_in_gram folds a single lower objective into level {p + 1}, "
                    f"but level {p + 2} has {list(self.levels[p + 1])}"
                )

    @cached_property
    def names(self) -> tuple[str, ...]:
        """Every objective, level 1's first."""
        return tuple(n for lv in self.levels for n in lv)

    @cached_property
    def index(self) -> dict[str, int]:
        """Objective name -> its number m."""
        return {n: m for m, n in enumerate(self.names)}

    @cached_property
    def level_of(self) -> tuple[int, ...]:
        """Level (0-based) of every objective."""
        return tuple(p for p, lv in enumerate(self.levels) for _ in lv)

    @cached_property
    def bounds(self) -> tuple[tuple[int, int], ...]:
        """Objective range ``[lo, hi)`` of every level."""
        out, start = [], 0
        for lv in self.levels:
            out.append((start, start + len(lv)))
            start += len(lv)
        return tuple(out)

    @cached_property
    def gram_levels(self) -> tuple[int, ...]:
        """Levels (0-based) whose weighting uses a Gramian."""
        return tuple(p for p, g in enumerate(self.needs_gram) if g)

    @cached_property
    def fold(self) -> dict[int, int]:
        """Level p -> the objective of level p+1 folded into p's Gramian rows with η_p."""
        if not self.fold_lower:
            return {}
        return {p: self.bounds[p + 1][0] for p in self.gram_levels if p + 1 < len(self.levels)}

    @cached_property
    def rows(self) -> tuple[int, ...]:
        """Buffered objectives, in objective order: those of Gramian-using levels and those
        folded into them. The others' gradients go straight into ``.grad``."""
        keep = set(self.gram_levels) | {self.level_of[u] for u in self.fold.values()}
        return tuple(m for m in range(len(self.names)) if self.level_of[m] in keep)

    @cached_property
    def row_of(self) -> dict[int, int]:
        """Buffered objective m -> its row."""
        return {m: r for r, m in enumerate(self.rows)}

    @cached_property
    def pairs(self) -> tuple[tuple[int, int], ...]:
        """Row pairs (i < j) whose cosine enters the conflict score: pairs inside each
        Gramian-using level."""
        out = []
        for p in self.gram_levels:
            lo, hi = self.bounds[p]
            out += [(self.row_of[i], self.row_of[j]) for i in range(lo, hi) for j in range(i + 1, hi)]
        return tuple(out)

    def level_rows(self, p: int) -> tuple[int, int]:
        """Row range ``[lo, hi)`` of the objectives of a buffered level ``p``."""
        lo, hi = self.bounds[p]
        return self.row_of[lo], self.row_of[hi - 1] + 1

    def pair_mask(self, device: torch.device | str | None = None) -> Tensor:
        """``[R, R]`` boolean mask of :attr:`pairs` (upper triangle)."""
        r = len(self.rows)
        mask = torch.zeros(r, r, dtype=torch.bool)
        for i, j in self.pairs:
            mask[i, j] = True
        return mask.to(device)

