"""Loss-based weightings with their own state updates: uncertainty weighting, IMTL-L and DWA.

Both decide the weights of a step from losses already seen, so the weights are known before the
step's backward passes and the engine never keeps per-objective gradients for them
(``needs_gram = False``). ``update(None, losses)`` takes the step's losses (mean of the two
halves, detached) and returns the weights of the NEXT step. Everything stays on the losses'
device; non-finite losses are ignored (the trainer skips such steps, so they must not poison
the state), without reading anything back to the host.

torchjd has these as scalarizers whose learnt parameters the user's optimiser steps
(``UW``, ``IMTLL``) or whose history the user rolls per epoch (``DWA``); here each weighting
steps its own state. The other torchjd scalarizers are in :mod:`osoup.moo.scalarizers` and
:mod:`osoup.moo.famo`.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from osoup.moo.weighting import Weighting


def check_losses(name: str, k: int, losses: Tensor | None) -> Tensor:
    """The level's losses [k], detached; a clear error for None or a wrong shape."""
    if losses is None:
        raise ValueError(f"{name}.update needs the level's losses, got None")
    if losses.shape != (k,):
        raise ValueError(f"{name}.update: losses have shape {tuple(losses.shape)}, expected ({k},)")
    return losses.detach()


class UncertaintyWeighting(Weighting):
    """Homoscedastic uncertainty weighting (Kendall, Gal and Cipolla 2018).

    Each objective has a learnable log-variance ``s_m``; the weight is ``exp(-s_m)`` and ``s`` is
    learnt by minimising ``Σ_m exp(-s_m) l_m + s_m`` (optimum ``s_m = log l_m``, i.e. every
    weighted loss is pulled towards 1). Instead of asking the trainer to optimise ``s``, the
    weighting takes its own Adam step on it in :meth:`update` with the closed-form gradient
    ``1 - exp(-s_m) l_m``; ``log_vars`` exposes ``s`` (checkpointed in ``state_dict``).
    """

    def __init__(
        self,
        k: int,
        lr: float = 1e-2,
        init: float = 0.0,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        super().__init__(k)
        if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
            raise ValueError(f"UncertaintyWeighting lr must be a positive finite number, got {lr!r}")
        if not (isinstance(init, (int, float)) and math.isfinite(init)):
            raise ValueError(f"UncertaintyWeighting init must be finite, got {init!r}")
        b1, b2 = betas
        if not (0 <= b1 < 1 and 0 <= b2 < 1):
            raise ValueError(f"UncertaintyWeighting betas must lie in [0, 1), got {betas!r}")
        self.lr, self.betas, self.eps = float(lr), (float(b1), float(b2)), float(eps)
        self.log_vars = torch.full((k,), float(init), dtype=torch.float64)
        self._m = torch.zeros(k, dtype=torch.float64)
        self._v = torch.zeros(k, dtype=torch.float64)
        self._t = 0
        self._lambda = torch.exp(-self.log_vars)

    def to(self, device=None, dtype=None) -> "UncertaintyWeighting":
        super().to(device, dtype)
        self.log_vars = self.log_vars.to(device=device, dtype=dtype)
        self._m = self._m.to(device=device, dtype=dtype)
        self._v = self._v.to(device=device, dtype=dtype)
        return self

    def update(self, gram12: Tensor | None = None, losses: Tensor | None = None) -> Tensor:
        loss = check_losses("UncertaintyWeighting", self.k, losses).to(self.log_vars)
        s = self.log_vars
        finite = torch.isfinite(loss)
        grad = torch.where(finite, 1.0 - torch.exp(-s) * torch.nan_to_num(loss), torch.zeros_like(s))
        self._t += 1
        b1, b2 = self.betas
        m = torch.where(finite, b1 * self._m + (1 - b1) * grad, self._m)
        v = torch.where(finite, b2 * self._v + (1 - b2) * grad * grad, self._v)
        step = self.lr * (m / (1 - b1**self._t)) / ((v / (1 - b2**self._t)).sqrt() + self.eps)
        self.log_vars = torch.where(finite, s - step, s)
        self._m, self._v = m, v
        self._lambda = torch.exp(-self.log_vars)
        return self._lambda

    def state_dict(self) -> dict[str, Any]:
        return {
            "lambda": self._lambda.detach().clone(),
            "log_vars": self.log_vars.detach().clone(),
            "adam_m": self._m.detach().clone(),
            "adam_v": self._v.detach().clone(),
            "t": self._t,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        like = self.log_vars
        self.log_vars = torch.as_tensor(state["log_vars"]).to(like).clone()
        self._m = torch.as_tensor(state["adam_m"]).to(like).clone()
        self._v = torch.as_tensor(state["adam_v"]).to(like).clone()
        self._t = int(state["t"])

    def __repr__(self) -> str:
        return f"UncertaintyWeighting(k={self.k}, lr={self.lr})"


class DWA(Weighting):
    """Dynamic Weight Average (Liu, Johns and Davison 2019).

    ``λ = softmax(r / T)`` with ``r_m = L_m(t-1) / L_m(t-2)``, the ratio of objective m's mean
    loss over the last two complete windows of ``window`` steps (``window = 1``: the last two
    steps; ``window = steps_per_epoch``: the last two epochs, as in the paper). Uniform until
    two windows are complete. The paper multiplies by K; here λ stays on the simplex like every
    other level weighting, so a level's scale matches the plain mean.
    """

    def __init__(self, k: int, temperature: float = 2.0, window: int = 1) -> None:
        super().__init__(k)
        if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
            raise ValueError(f"DWA temperature must be a positive finite number, got {temperature!r}")
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"DWA window must be a positive integer (steps), got {window!r}")
        self.temperature, self.window = float(temperature), window
        self._sum = torch.zeros(k, dtype=torch.float64)
        self._cnt = torch.zeros(k, dtype=torch.float64)
        self._n = 0
        self._prev: Tensor | None = None
        self._prev2: Tensor | None = None

    def to(self, device=None, dtype=None) -> "DWA":
        super().to(device, dtype)
        mv = lambda t: None if t is None else t.to(device=device, dtype=dtype)  # noqa: E731
        self._sum, self._cnt = mv(self._sum), mv(self._cnt)
        self._prev, self._prev2 = mv(self._prev), mv(self._prev2)
        return self

    def update(self, gram12: Tensor | None = None, losses: Tensor | None = None) -> Tensor:
        loss = check_losses("DWA", self.k, losses).to(self._sum)
        finite = torch.isfinite(loss)
        self._sum = self._sum + torch.where(finite, loss, torch.zeros_like(loss))
        self._cnt = self._cnt + finite.to(self._cnt.dtype)
        self._n += 1
        if self._n == self.window:
            mean = self._sum / self._cnt.clamp_min(1.0)
            if self._prev is not None:
                # An objective with no finite loss in this window keeps its previous mean.
                mean = torch.where(self._cnt > 0, mean, self._prev)
            self._prev2, self._prev = self._prev, mean
            self._sum, self._cnt, self._n = torch.zeros_like(self._sum), torch.zeros_like(self._cnt), 0
            if self._prev2 is not None:
                ratio = self._prev / self._prev2.clamp_min(torch.finfo(self._prev2.dtype).tiny)
                self._lambda = torch.softmax(ratio / self.temperature, dim=-1).to(self._lambda.dtype)
        return self._lambda

    def state_dict(self) -> dict[str, Any]:
        cp = lambda t: None if t is None else t.detach().clone()  # noqa: E731
        return {"lambda": cp(self._lambda), "sum": cp(self._sum), "cnt": cp(self._cnt), "n": self._n,
                "prev": cp(self._prev), "prev2": cp(self._prev2)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        like = self._sum
        mv = lambda t: None if t is None else torch.as_tensor(t).to(like).clone()  # noqa: E731
        self._sum, self._cnt = mv(state["sum"]), mv(state["cnt"])
        self._prev, self._prev2 = mv(state["prev"]), mv(state["prev2"])
        self._n = int(state["n"])

    def __repr__(self) -> str:
        return f"DWA(k={self.k}, temperature={self.temperature}, window={self.window})"


class IMTLL(UncertaintyWeighting):
    """IMTL-L, the loss-balancing half of Impartial MTL (Liu et al. 2021): ``S = Σ_m e^{s_m} l_m − s_m``.

    The weight of objective m is ``e^{s_m}`` and the scales ``s`` are learnt with the gradient
    ``e^{s_m} l_m − 1`` (optimum ``s_m = −log l_m``: every scaled loss pulled to 1). torchjd's
    ``scalarization.IMTLL`` leaves ``s`` to the user's optimiser; here the weighting takes its own
    Adam step in :meth:`update` (``lr``, ``betas``, ``eps``), as :class:`UncertaintyWeighting`
    does. With ``s = −log_vars`` the two are the same method: Adam is odd in the gradient, so
    the weights are equal step for step (``test/test_moo_scalarizers.py`` checks this class
    against torchjd's IMTLL driven by ``torch.optim.Adam``). ``init`` is the initial ``s``.
    """

    def __init__(self, k: int, lr: float = 1e-2, init: float = 0.0, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8) -> None:
        if not (isinstance(init, (int, float)) and math.isfinite(init)):
            raise ValueError(f"IMTLL init must be finite, got {init!r}")
        super().__init__(k, lr=lr, init=-float(init), betas=betas, eps=eps)

    @property
    def log_scales(self) -> Tensor:
        """The learnt log-scales ``s`` (weights ``e^s``)."""
        return -self.log_vars

    def __repr__(self) -> str:
        return f"IMTLL(k={self.k}, lr={self.lr})"
