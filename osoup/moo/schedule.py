"""Penalty schedules η(e) for the constrained (vc, joint) and multilevel (vm) methods.

The paper grows each penalty linearly per EPOCH up to a cap: η(e) = min(init + rate·e, cap).
The epoch is fractional (step / steps_per_epoch), so η moves smoothly inside an epoch but its
rate is per epoch, never per batch (the authors' code applied it per batch).
"""
from __future__ import annotations

import math
from dataclasses import dataclass


def _finite(name: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ValueError(f"PenaltySchedule {name} must be a finite number, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class PenaltySchedule:
    """η(e) = min(init + rate·e, cap), e the fractional epoch (0 at the start of training)."""

    init: float
    rate: float
    cap: float

    def __post_init__(self) -> None:
        init, rate, cap = _finite("init", self.init), _finite("rate", self.rate), _finite("cap", self.cap)
        if init < 0 or rate < 0:
            raise ValueError(f"PenaltySchedule init and rate must be >= 0, got init={init}, rate={rate}")
        if cap < init:
            raise ValueError(f"PenaltySchedule cap ({cap}) is below init ({init})")
        object.__setattr__(self, "init", init)
        object.__setattr__(self, "rate", rate)
        object.__setattr__(self, "cap", cap)

    def value(self, epoch: float) -> float:
        """η at fractional epoch ``epoch`` (>= 0)."""
        if not math.isfinite(epoch) or epoch < 0:
            raise ValueError(f"PenaltySchedule.value: epoch must be finite and >= 0, got {epoch!r}")
        return min(self.init + self.rate * epoch, self.cap)

    def epochs_to_cap(self) -> float:
        """First epoch at which η reaches its cap (inf when it never grows)."""
        if self.cap == self.init:
            return 0.0
        return math.inf if self.rate == 0 else (self.cap - self.init) / self.rate

    def scaled_to(self, total_epochs: float, paper_epochs: float = 200.0) -> "PenaltySchedule":
        """Same schedule for a run of ``total_epochs``: the cap is reached at the same FRACTION
        of training as in a ``paper_epochs`` run (rate' = rate · paper_epochs / total_epochs).

        Without this a short run (the mini recipe) keeps η ≈ init and every penalised method
        degenerates into its unpenalised part.
        """
        if not math.isfinite(total_epochs) or total_epochs <= 0:
            raise ValueError(f"scaled_to: total_epochs must be > 0, got {total_epochs!r}")
        if not math.isfinite(paper_epochs) or paper_epochs <= 0:
            raise ValueError(f"scaled_to: paper_epochs must be > 0, got {paper_epochs!r}")
        return PenaltySchedule(self.init, self.rate * paper_epochs / total_epochs, self.cap)
