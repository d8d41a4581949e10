"""Mixed precision: the autocast context of the forward passes and the fp16 loss scale.

With ``--amp fp16`` the losses are multiplied by a scale before the backward, so small
gradients survive fp16, and the gradients are unscaled before the Gramian (a scaled Gramian
would change MoDo's step size γ). The scale halves on an overflow (that step is dropped) and
doubles after 2000 good steps in a row (torch.amp.GradScaler's default growth interval).
"""
from __future__ import annotations

import torch

GROWTH_INTERVAL = 2000


def autocast(device: torch.device, amp: str) -> torch.autocast:
    """The autocast context of ``--amp`` (none | bf16 | fp16) on ``device``."""
    if amp == "none":
        return torch.autocast(device.type, enabled=False)
    return torch.autocast(device.type, dtype=torch.bfloat16 if amp == "bf16" else torch.float16)


class LossScaler:
    """The dynamic fp16 loss scale (a constant 1 without fp16). Its ``scale`` is saved in
    checkpoints as ``loss_scale``."""

    def __init__(self, enabled: bool, scale: float = 2.0**16):
        self.enabled = enabled
        self.scale = scale if enabled else 1.0
        self.good_steps = 0

    def update(self, overflow: bool) -> None:
        """After a step: halve on an overflow, double after :data:`GROWTH_INTERVAL` good steps."""
        if not self.enabled:
            return
        if overflow:
            self.scale, self.good_steps = self.scale / 2, 0
            return
        self.good_steps += 1
        if self.good_steps >= GROWTH_INTERVAL:
            self.scale, self.good_steps = self.scale * 2, 0

    def state_dict(self) -> dict:
        return {"loss_scale": self.scale, "loss_scale_good_steps": self.good_steps}

    def load_state_dict(self, state: dict) -> None:
        """From a checkpoint (older ones hold ``loss_scale`` only)."""
        self.scale = float(state.get("loss_scale", self.scale))
        self.good_steps = int(state.get("loss_scale_good_steps", 0))
