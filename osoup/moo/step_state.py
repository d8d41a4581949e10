"""What a soup gathers between two steps, in one object that each new step replaces."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
from torch import Tensor

from osoup.moo.buffers import ProbeBuffer


@dataclass
class StepState:
    """The step being assembled.

    ``counts[m][h]``/``losses[m][h]``: backwards taken and their summed (detached) losses per
    objective and half; ``epoch``: announced by ``begin_step`` (None: not yet); ``scales``:
    0.5 × each objective's weight for its direct gradients, once known; ``grad_fresh``: θ's
    ``.grad`` not yet reset this step; ``acc_written``: lower levels whose accumulator holds
    gradients of this step; ``probe``: a probe step's other-layer gradients (None: not a probe
    step).
    """

    counts: list[list[int]]
    losses: list[list[Tensor | None]]
    probe: ProbeBuffer | None = None
    epoch: float | None = None
    scales: Tensor | None = None
    grad_fresh: bool = True
    acc_written: set[int] = field(default_factory=set)

    @classmethod
    def new(cls, n_objectives: int, probe: ProbeBuffer | None = None) -> "StepState":
        """An empty step of ``n_objectives`` objectives."""
        return cls([[0, 0] for _ in range(n_objectives)], [[None, None] for _ in range(n_objectives)], probe)

    @property
    def started(self) -> bool:
        """Whether any backward of this step was taken."""
        return any(c[0] or c[1] for c in self.counts)

    def record(self, m: int, half: int, loss: Tensor) -> None:
        """Count one backward of objective m's ``half`` and add its loss."""
        self.counts[m][half] += 1
        prev = self.losses[m][half]
        value = loss.detach().reshape(()).float()
        self.losses[m][half] = value if prev is None else prev + value

    def check_complete(self, names: Sequence[str]) -> None:
        """Every objective has both halves, or a ValueError naming what is missing."""
        missing = [f"{n!r} half {h}" for n, c in zip(names, self.counts) for h in (0, 1) if c[h] == 0]
        if missing:
            raise ValueError(
                "Soup.step: no soup.backward(name, half, loss) call for " + ", ".join(missing)
                + "; every objective needs both halves of its minibatch before step()"
            )

    def loss_pairs(self) -> Tensor:
        """Both halves' losses ``[M, 2]`` (a new tensor)."""
        return torch.stack([torch.stack([l0, l1]) for l0, l1 in self.losses])  # type: ignore[misc]

    def set_loss_pairs(self, losses: Tensor) -> None:
        """Replace the losses by the rows of ``losses`` ``[M, 2]`` (e.g. after a reduction)."""
        self.losses = [[losses[m, 0], losses[m, 1]] for m in range(len(self.losses))]

    def mean_losses(self) -> Tensor:
        """The mean of the two halves' losses per objective ``[M]``."""
        return torch.stack([(l0 + l1) * 0.5 for l0, l1 in self.losses])  # type: ignore[operator]
