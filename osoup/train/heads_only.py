"""The update of a heads-only phase (peft after pre-training): θ is frozen, so there is nothing
to combine; every head gets the plain gradient of its own loss (eq. 14), as in every method.

:class:`HeadsOnly` answers the part of :class:`osoup.moo.Soup`'s interface the training step
calls, so one step function serves every phase.
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import torch
from torch.nn import Parameter


class HeadsOnly:
    """Backward of each half straight into the heads' ``.grad``: 0.5 × each half, i.e. the
    gradient of the mean of the two halves, as the Soup gives heads."""

    def __init__(self, heads: Mapping[str, Sequence[Parameter]]):
        self.heads = {n: list(ps) for n, ps in heads.items()}
        if not any(self.heads.values()):
            raise ValueError("HeadsOnly: no head parameters to train")
        self.selected_layers: list[str] = []

    def zero_grad(self) -> None:
        for ps in self.heads.values():
            for p in ps:
                p.grad = None

    def begin_step(self, epoch: float) -> None:
        """Nothing to prepare (no penalties, no λ)."""

    def backward(self, name: str, half: int, loss: torch.Tensor) -> None:
        if name not in self.heads:
            raise ValueError(f"HeadsOnly.backward: unknown objective {name!r}; objectives are {list(self.heads)}")
        (0.5 * loss).backward()

    def pending_buffers(self) -> list[torch.Tensor]:
        return []

    def direct_params(self) -> list[Parameter]:
        return []

    def reduce_pending(self, fn: Callable[[list[torch.Tensor]], None]) -> None:
        """Nothing is pending: the heads' gradients are reduced with the other direct ones."""

    def step(self, epoch: float) -> dict[str, Any]:
        return {}

    def state_dict(self) -> dict[str, Any]:
        return {"heads_only": sorted(self.heads)}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        if sorted(state.get("heads_only", [])) != sorted(self.heads):
            raise ValueError(f"HeadsOnly.load_state_dict: checkpoint trains heads {state.get('heads_only')}, "
                             f"this phase {sorted(self.heads)}")
