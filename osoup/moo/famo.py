"""FAMO (Liu et al. 2023, "Fast Adaptive Multitask Optimization") as a level weighting.

torchjd's ``scalarization.FAMO`` scalarises the losses as ``c Σ_m z_m log(l_m − b_m + ε)`` with
``z = softmax(w)`` and the constant ``c = 1 / Σ_m z_m / (l_m − b_m + ε)``; its gradient weights are
``λ_m = c z_m / (l_m − b_m + ε)`` (a convex combination). After the model step, ``update`` takes
the losses recomputed ON THE SAME BATCH and makes one Adam step on the logits w along
``δ = log(l_before − b + ε) − log(l_after − b + ε)`` through the softmax.

Here (``needs_gram = False``, one backward per step, no extra forward): ``update(None, l_t)``
first makes that Adam step with ``l_before = l_{t-1}`` and ``l_after = l_t``, the losses of the
previous and of this step (two different batches: the same estimate of the loss change, one
batch noisier), then returns the weights of step t+1, ``λ = c z / (l_t − b + ε)`` with the new
logits. Feeding torchjd's FAMO ``update(l_t)`` then ``FAMO(l_t)`` gives the same weights
(``test/test_moo_scalarizers.py``). Before any loss λ is 1/K. A step whose losses are not all
finite and above ``min_losses`` changes nothing (no Adam step, λ kept), on device, with no host
synchronisation; the Adam state is part of ``state_dict``.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from osoup.moo.loss_weighting import check_losses
from osoup.moo.weighting import Weighting

_EPS = 1e-8  # torchjd's ε inside the logarithm


class FAMO(Weighting):
    """FAMO's task weights from the losses of consecutive steps (see the module docstring).

    Options: ``lr`` (0.025, the FAMO paper's) and ``weight_decay`` (1e-3, its Algorithm 2) of the
    Adam step on the logits, ``min_losses`` b (default 0: losses must be positive), Adam's
    ``betas`` and ``eps`` (torch's defaults, as torchjd's internal Adam).
    """

    needs_gram = False

    def __init__(self, k: int, lr: float = 0.025, weight_decay: float = 1e-3, min_losses: Any = None,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8) -> None:
        super().__init__(k)
        for name, value in (("lr", lr), ("weight_decay", weight_decay), ("eps", eps)):
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"FAMO {name} must be a non-negative finite number, got {value!r}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"FAMO betas must lie in [0, 1), got {betas!r}")
        self.lr, self.weight_decay, self.betas, self.eps = float(lr), float(weight_decay), (float(b1), float(b2)), float(eps)
        base = torch.zeros(k, dtype=torch.float64) if min_losses is None else torch.as_tensor(min_losses, dtype=torch.float64)
        if base.shape != (k,) or not bool(torch.isfinite(base).all()):
            raise ValueError(f"FAMO min_losses must be {k} finite numbers, got {min_losses!r}")
        zeros = torch.zeros(k, dtype=torch.float64)
        self._state: dict[str, Tensor] = {
            "min_losses": base.clone(), "logits": zeros.clone(), "adam_m": zeros.clone(), "adam_v": zeros.clone(),
            "t": torch.zeros((), dtype=torch.float64), "prev": torch.ones(k, dtype=torch.float64),
            "has_prev": torch.zeros((), dtype=torch.bool),
        }

    @property
    def logits(self) -> Tensor:
        """FAMO's task logits w (z = softmax(w))."""
        return self._state["logits"]

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "FAMO":
        super().to(device, dtype)
        self._state = {key: t.to(device=device, dtype=None if t.dtype == torch.bool else dtype) for key, t in self._state.items()}
        return self

    def _adam(self, delta: Tensor, take: Tensor) -> None:
        """One Adam step on the logits along ``Jᵀ_softmax δ`` (+ L2 weight decay), where ``take``."""
        st, (b1, b2) = self._state, self.betas
        w = st["logits"]
        z = torch.softmax(w, dim=-1)
        grad = z * (delta - (z * delta).sum()) + self.weight_decay * w
        t = st["t"] + 1
        m = b1 * st["adam_m"] + (1 - b1) * grad
        v = b2 * st["adam_v"] + (1 - b2) * grad * grad
        step = self.lr * (m / (1 - b1**t)) / ((v / (1 - b2**t)).sqrt() + self.eps)
        for key, new in (("logits", w - step), ("adam_m", m), ("adam_v", v), ("t", t)):
            st[key] = torch.where(take, new, st[key])

    def update(self, gram12: Tensor | None = None, losses: Tensor | None = None) -> Tensor:
        st = self._state
        loss = check_losses("FAMO", self.k, losses).to(st["logits"])
        shifted = loss - st["min_losses"] + _EPS
        ok = (torch.isfinite(loss) & (shifted > 0)).all()
        shifted = torch.where(ok, shifted, torch.ones_like(shifted))
        self._adam(torch.log(st["prev"]) - torch.log(shifted), ok & st["has_prev"])
        z = torch.softmax(st["logits"], dim=-1) / shifted
        self._lambda = torch.where(ok, z / z.sum(), self._lambda)
        st["prev"] = torch.where(ok, shifted, st["prev"])
        st["has_prev"] = st["has_prev"] | ok
        return self._lambda

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), **{key: t.detach().clone() for key, t in self._state.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        like = self._state["logits"]
        for key, t in self._state.items():
            self._state[key] = torch.as_tensor(state[key]).to(device=like.device, dtype=t.dtype).clone()

    def __repr__(self) -> str:
        return f"FAMO(k={self.k}, lr={self.lr}, weight_decay={self.weight_decay})"
