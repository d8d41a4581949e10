"""Checks of the arguments of :class:`osoup.moo.soup.Soup` and of its ``backward``: each bad
argument gets one error that names the level, objective or parameter at fault."""
from __future__ import annotations

from typing import Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import Parameter

from osoup.moo.lambdas import Level, check_levels
from osoup.moo.layout import ObjectiveLayout

GRAM_PARAMS = ("shared", "all")


def layout_of(shared: Sequence[Tensor], levels: Sequence[Level], gram_params: str, fold: bool) -> ObjectiveLayout:
    """The objectives' layout, after checking the soup arguments that shape it."""
    if not shared:
        raise ValueError("Soup: no shared parameters")
    if not levels:
        raise ValueError("Soup: no levels")
    if gram_params not in GRAM_PARAMS:
        raise ValueError(f"Soup: gram_params must be one of {GRAM_PARAMS}, got {gram_params!r}")
    check_levels(levels)
    needs_gram = tuple(lv.weighting.needs_gram for lv in levels)
    return ObjectiveLayout(tuple(tuple(lv.names) for lv in levels), needs_gram, fold)


def heads_of(heads: Mapping[str, Sequence[Parameter]], names: Sequence[str]) -> list[list[Parameter]]:
    """Every objective's head parameters, in objective order (none for a missing name)."""
    unknown = [k for k in heads if k not in names]
    if unknown:
        raise ValueError(f"Soup: heads given for unknown objectives {unknown}; objectives are {list(names)}")
    return [list(heads.get(n, ())) for n in names]


def check_params(shared: Sequence[Tensor], heads: Sequence[Sequence[Tensor]], names: Sequence[str]) -> None:
    """Every parameter requires grad, sits on θ's device and is listed once."""
    device = shared[0].device
    owner: dict[int, str] = {}
    groups = [("shared", shared)] + [(f"head of {n!r}", hp) for n, hp in zip(names, heads)]
    for what, params in groups:
        for j, p in enumerate(params):
            if not isinstance(p, torch.Tensor) or not p.requires_grad:
                raise ValueError(f"Soup: {what} parameter {j} is not a tensor that requires grad")
            if p.device != device:
                raise ValueError(f"Soup: {what} parameter {j} is on {p.device}, shared parameters on {device}")
            if id(p) in owner:
                raise ValueError(f"Soup: {what} parameter {j} is also listed as {owner[id(p)]}")
            owner[id(p)] = f"{what} parameter {j}"


def objective_of(index: Mapping[str, int], name: str, half: int, loss: Tensor) -> int:
    """The number of objective ``name``, after checking the arguments of ``Soup.backward``."""
    m = index.get(name)
    if m is None:
        raise ValueError(f"Soup.backward: unknown objective {name!r}; objectives are {list(index)}")
    if half not in (0, 1):
        raise ValueError(f"Soup.backward: half must be 0 or 1, got {half!r} (objective {name!r})")
    if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
        raise ValueError(f"Soup.backward: loss of {name!r} half {half} must be a scalar tensor")
    if not loss.requires_grad:
        raise ValueError(f"Soup.backward: loss of {name!r} half {half} does not require grad")
    return m

