"""Weighting methods: how one optimisation level turns its K objectives into K weights λ.

All methods share one small interface (:class:`Weighting`), so a level can switch between MoDo,
a fixed vector and a plain mean without the engine (:mod:`osoup.moo.soup`) knowing which:

* ``needs_gram`` says whether :meth:`Weighting.update` wants a K×K Gramian of the level's
  per-objective gradients; ``gram_kind`` says which one: ``"cross"`` is the double-sampled
  ``G1 G2ᵀ`` (MoDo), ``"mean"`` the symmetric ``Ḡ Ḡᵀ`` of the mean of the two halves
  ``Ḡ = (G1 + G2) / 2`` (the gradient-based methods of :mod:`osoup.moo.jd`). When no level of a
  method needs a Gramian, the engine keeps no per-objective gradients at all and training costs
  what plain training costs.
* A Gramian weighting's :meth:`Weighting.update` returns the NEW weights, which steer the step.
  A weighting without Gramian (static, mean, loss-based) is used with the weights it holds
  BEFORE the step (``weights``: they must be known at backward time); its ``update(None,
  losses)`` then takes the step's losses and returns the weights of the next step.
* ``weights`` is the current λ; ``state_dict``/``load_state_dict`` checkpoint it.
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Sequence

import torch
from torch import Tensor

from osoup.moo.simplex import project_simplex

NORMALIZE_CHOICES = ("none", "mean-diag")


def entropy(lam: Tensor) -> Tensor:
    """Shannon entropy ``-Σ λ log λ`` (nats, 0 log 0 = 0) of the last dimension, on λ's device.

    ``log K`` means uniform weights, 0 means λ collapsed onto one objective; logged per level.
    """
    return -torch.special.xlogy(lam, lam).sum(dim=-1)


class Weighting(ABC):
    """Common interface of the weighting methods of one level with ``k`` objectives."""

    needs_gram: bool = False
    gram_kind: str = "cross"

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"a weighting needs k >= 1 objectives, got {k!r}")
        self.k = k
        # float64 on the CPU until the first update or .to(): a Gramian in any dtype then gets
        # 1/k rounded once, to its own precision.
        self._lambda = torch.full((k,), 1.0 / k, dtype=torch.float64)

    @property
    def weights(self) -> Tensor:
        """Current weights λ (shape [k]); the tensor itself, do not modify it in place."""
        return self._lambda

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "Weighting":
        """Move λ to ``device``/``dtype`` keeping its value (never a reset)."""
        self._lambda = self._lambda.to(device=device, dtype=dtype)
        return self

    @abstractmethod
    def update(self, gram12: Tensor | None, losses: Tensor | None = None) -> Tensor:
        """Take the step's Gramian (``gram_kind``; None when ``needs_gram`` is False) and the
        level's losses [k] (detached, mean of the two halves); return the new weights."""

    def state_dict(self) -> dict[str, Any]:
        """Checkpoint state: λ (a detached copy)."""
        return {"lambda": self._lambda.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore λ, keeping the current device/dtype; the shape must match ``k``."""
        lam = torch.as_tensor(state["lambda"])
        if lam.shape != (self.k,):
            raise ValueError(f"{type(self).__name__}: checkpoint λ has shape {tuple(lam.shape)}, expected ({self.k},)")
        self._lambda = lam.detach().to(device=self._lambda.device, dtype=self._lambda.dtype).clone()

    def __repr__(self) -> str:
        return f"{type(self).__name__}(k={self.k})"


class MoDo(Weighting):
    """MoDo (Chen et al. 2023): stochastic MGDA with double sampling.

    ``update(G12)`` does ``λ ← Π_Δ(λ − γ (G12 λ + ρ λ))`` with ``G12 = G1 G2ᵀ`` built from two
    independent halves of each objective's minibatch, and returns the NEW λ, which steers the
    step (MoDo's order). ρ = 0 is the paper's eq. 12. ``normalize="mean-diag"`` divides G12 by
    the mean absolute value of its diagonal first, which makes γ independent of the loss scale.

    Same λ sequence as ``torchjd.aggregation.MoDoWeighting(gamma, rho)`` fed the same G12, but
    the projection never synchronises with the host and λ is never reset when the Gramian
    changes device or dtype (λ follows it, value kept).
    """

    needs_gram = True

    def __init__(self, k: int, gamma: float = 0.01, rho: float = 0.0, normalize: str = "none") -> None:
        super().__init__(k)
        if not (isinstance(gamma, (int, float)) and math.isfinite(gamma) and gamma > 0):
            raise ValueError(f"MoDo gamma must be a positive finite number, got {gamma!r}")
        if not (isinstance(rho, (int, float)) and math.isfinite(rho) and rho >= 0):
            raise ValueError(f"MoDo rho must be a non-negative finite number, got {rho!r}")
        if normalize not in NORMALIZE_CHOICES:
            raise ValueError(f"MoDo normalize must be one of {NORMALIZE_CHOICES}, got {normalize!r}")
        self.gamma = float(gamma)
        self.rho = float(rho)
        self.normalize = normalize

    def update(self, gram12: Tensor | None, losses: Tensor | None = None) -> Tensor:
        if gram12 is None:
            raise ValueError("MoDo.update needs the Gramian G1 G2ᵀ, got None")
        if gram12.shape != (self.k, self.k):
            raise ValueError(f"MoDo.update: Gramian has shape {tuple(gram12.shape)}, expected ({self.k}, {self.k})")
        gram = gram12.detach()
        if self.normalize == "mean-diag":
            # G1G2ᵀ's diagonal can be negative (two noisy halves): scale by its mean magnitude.
            scale = gram.diagonal().abs().mean().clamp_min(torch.finfo(gram.dtype).tiny)
            gram = gram / scale
        lam = self._lambda
        if lam.device != gram.device or lam.dtype != gram.dtype:
            lam = lam.to(device=gram.device, dtype=gram.dtype)
        lam = project_simplex(lam - self.gamma * (gram @ lam + self.rho * lam))
        self._lambda = lam
        return lam

    def __repr__(self) -> str:
        return f"MoDo(k={self.k}, gamma={self.gamma}, rho={self.rho}, normalize={self.normalize!r})"


class StaticWeighting(Weighting):
    """Fixed weights μ (e.g. the paper's per-language weights of two_stage_static)."""

    def __init__(self, weights: Sequence[float] | Tensor) -> None:
        w = torch.as_tensor(weights, dtype=torch.float64).detach().clone()
        if w.dim() != 1 or w.numel() == 0:
            raise ValueError(f"StaticWeighting needs a non-empty 1-D list of weights, got shape {tuple(w.shape)}")
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError(f"StaticWeighting weights must be finite and >= 0, got {w.tolist()}")
        super().__init__(int(w.numel()))
        self._lambda = w

    def update(self, gram12: Tensor | None = None, losses: Tensor | None = None) -> Tensor:
        return self._lambda


class MeanWeighting(StaticWeighting):
    """Equal weights 1/k: the plain mean of the level's objectives."""

    def __init__(self, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"a weighting needs k >= 1 objectives, got {k!r}")
        super().__init__([1.0 / k] * k)
