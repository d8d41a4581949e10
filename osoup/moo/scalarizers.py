"""Loss-based weightings from ``torchjd.scalarization``: one backward per step, no Gramian.

A torchjd scalarizer S turns the K losses into one scalar whose backward gives the update
``∇θ S(l) = Σ_m ∂S/∂l_m ∇θ l_m``: its weights are the partial derivatives ``λ = ∂S/∂l``. Our
engine needs the weights before the step's backward (``needs_gram = False``: the gradients go
straight into ``.grad``, the cost of ``joint``), so each class here takes the step's losses in
``update(None, losses)`` and returns ``∂S/∂l`` at those losses as the weights of the NEXT step:
the weights of step t come from the losses of step t-1, as in :class:`osoup.moo.loss_weighting.DWA`.
torchjd instead differentiates S at the current step's own losses; the difference is one step
of lag in the losses that set the weights, never in the gradients they weigh
(``docs/weightings.md``). Before the first update λ is ``∂S/∂l`` at unit losses (all equal).

The weights are torchjd's derivatives, unnormalised (STCH's sum to at most max(pref), PBI's and
COSMOS's may be negative), written in closed form on the losses' device, with no read-back to the
host. A step whose losses are not all valid (non-finite, or non-positive for the geometric mean)
leaves λ as it was. ``test/test_moo_scalarizers.py`` checks every class against torchjd's
autograd derivative of its scalarizer.
"""
from __future__ import annotations

import math
from abc import abstractmethod
from typing import Any

import torch
from torch import Tensor

from osoup.moo.loss_weighting import check_losses
from osoup.moo.weighting import Weighting

_PBI_EPS = 1e-12  # torchjd's constant under PBI's square root


def _vector(name: str, k: int, value: Any, default: float | None) -> Tensor | None:
    """An option of k finite numbers (pref_vector, reference) as float64, or the default."""
    if value is None:
        return None if default is None else torch.full((k,), default, dtype=torch.float64)
    t = torch.as_tensor(value, dtype=torch.float64).detach().clone()
    if t.shape != (k,) or not bool(torch.isfinite(t).all()):
        raise ValueError(f"{name} must be {k} finite numbers (one per objective), got {value!r}")
    return t


def _nonneg(name: str, value: Any, positive: bool = False) -> float:
    ok = isinstance(value, (int, float)) and math.isfinite(value) and (value > 0 if positive else value >= 0)
    if not ok:
        raise ValueError(f"{name} must be a {'positive' if positive else 'non-negative'} finite number, got {value!r}")
    return float(value)


class LossScalarizer(Weighting):
    """A weighting given by a scalarisation S of the losses: ``λ = ∂S/∂l`` at the last valid losses.

    Subclasses set their option tensors in ``self._consts`` (moved by :meth:`to`) and write
    :meth:`gradient`; they call :meth:`_start` at the end of ``__init__``.
    """

    needs_gram = False

    def __init__(self, k: int) -> None:
        super().__init__(k)
        self._consts: dict[str, Tensor | None] = {}

    def _start(self) -> None:
        self._lambda = self.gradient(torch.ones(self.k, dtype=torch.float64))

    def _c(self, key: str, like: Tensor) -> Tensor | None:
        t = self._consts[key]
        return None if t is None else t.to(like)

    @abstractmethod
    def gradient(self, losses: Tensor) -> Tensor:
        """``∂S/∂l`` at ``losses`` [k] (valid losses)."""

    def valid(self, losses: Tensor) -> Tensor:
        """0-dim bool tensor: may these losses set the weights? (on device, no host sync)."""
        return torch.isfinite(losses).all()

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> "LossScalarizer":
        super().to(device, dtype)
        self._consts = {key: None if t is None else t.to(device=device, dtype=dtype) for key, t in self._consts.items()}
        return self

    def update(self, gram12: Tensor | None = None, losses: Tensor | None = None) -> Tensor:
        loss = check_losses(type(self).__name__, self.k, losses).to(self._lambda)
        ok = self.valid(loss)
        new = self.gradient(torch.where(ok, loss, torch.ones_like(loss)))
        self._lambda = torch.where(ok, new, self._lambda)
        return self._lambda


class STCH(LossScalarizer):
    """Smooth Tchebycheff scalarisation (Lin et al. 2024): ``S = μ log Σ exp(p_m (l_m − z_m) / μ)``.

    ``∂S/∂l = p ⊙ softmax(p ⊙ (l − z) / μ)``: a smooth maximum that weighs the worst objective
    most. ``pref_vector`` p (default 1/K each), ``reference`` z, the ideal point (default 0),
    ``mu`` the smoothing (smaller: closer to the max; the STCH paper finds no single best).
    """

    def __init__(self, k: int, mu: float = 0.1, pref_vector: Any = None, reference: Any = None) -> None:
        super().__init__(k)
        self.mu = _nonneg("STCH mu", mu, positive=True)
        self._consts = {"pref": _vector("STCH pref_vector", k, pref_vector, 1.0 / k),
                        "ref": _vector("STCH reference", k, reference, None)}
        self._start()

    def gradient(self, losses: Tensor) -> Tensor:
        pref, ref = self._c("pref", losses), self._c("ref", losses)
        shifted = losses if ref is None else losses - ref
        return pref * torch.softmax(pref * shifted / self.mu, dim=-1)

    def __repr__(self) -> str:
        return f"STCH(k={self.k}, mu={self.mu})"


class GeometricMean(LossScalarizer):
    """Geometric loss strategy (Chennupati et al. 2019): ``S = (Π l_m)^(1/K)``.

    ``∂S/∂l_m = S / (K l_m)``: each objective weighted by the inverse of its loss, so every
    objective's relative decrease counts the same. Needs positive losses (else λ is kept).
    """

    def __init__(self, k: int) -> None:
        super().__init__(k)
        self._start()

    def valid(self, losses: Tensor) -> Tensor:
        return (torch.isfinite(losses) & (losses > 0)).all()

    def gradient(self, losses: Tensor) -> Tensor:
        gm = torch.exp(torch.log(losses).mean())
        return gm / (self.k * losses)


class COSMOS(LossScalarizer):
    """COSMOS's loss (Ruchte & Grabocka 2021): ``S = rᵀl − λ_c cos(r, l)``.

    ``∂S/∂l = r − λ_c (r / (‖r‖‖l‖) − (rᵀl) l / (‖r‖‖l‖³))``: a linear scalarisation pulled towards
    losses proportional to the preference r (``pref_vector``, default 1/K each). COSMOS also feeds
    r to the network and samples a new r per batch to learn the whole Pareto front; our models
    take no preference input, so r is fixed (one training per trade-off).
    """

    def __init__(self, k: int, lambda_: float = 1.0, pref_vector: Any = None) -> None:
        super().__init__(k)
        self.lambda_ = _nonneg("COSMOS lambda_", lambda_)
        self._consts = {"pref": _vector("COSMOS pref_vector", k, pref_vector, 1.0 / k)}
        self._start()

    def gradient(self, losses: Tensor) -> Tensor:
        r = self._c("pref", losses)
        tiny = torch.finfo(losses.dtype).tiny
        rn, ln = r.norm(), losses.norm().clamp_min(tiny)
        d_cos = r / (rn * ln) - (r @ losses) * losses / (rn * ln**3)
        return r - self.lambda_ * d_cos

    def __repr__(self) -> str:
        return f"COSMOS(k={self.k}, lambda_={self.lambda_})"


class PBI(LossScalarizer):
    """Penalty-based boundary intersection (Zhang & Li 2007, MOEA/D): ``S = d1 + θ d2``.

    With ``f = l − z`` and the unit preference direction ``d``: ``d1 = fᵀd``, ``p = f − d1 d``,
    ``d2 = ‖p‖``; ``∂S/∂l = d + θ (I − d dᵀ) p / d2``: descend along the preference and towards
    its line. ``theta`` (default 5, MOEA/D's), ``pref_vector`` (default 1/K each), ``reference``
    z (default 0). Preference-conditioned like COSMOS: here one fixed preference per training.
    """

    def __init__(self, k: int, theta: float = 5.0, pref_vector: Any = None, reference: Any = None) -> None:
        super().__init__(k)
        self.theta = _nonneg("PBI theta", theta)
        pref = _vector("PBI pref_vector", k, pref_vector, 1.0 / k)
        if not bool((pref >= 0).all()) or float(pref.norm()) == 0.0:
            raise ValueError(f"PBI pref_vector must be non-negative and not all zero, got {pref.tolist()}")
        self._consts = {"pref": pref, "ref": _vector("PBI reference", k, reference, None)}
        self._start()

    def gradient(self, losses: Tensor) -> Tensor:
        pref, ref = self._c("pref", losses), self._c("ref", losses)
        f = losses if ref is None else losses - ref
        d = pref / pref.norm()
        perp = f - (f @ d) * d
        d2 = torch.sqrt(perp @ perp + _PBI_EPS)
        return d + self.theta * (perp - (perp @ d) * d) / d2

    def __repr__(self) -> str:
        return f"PBI(k={self.k}, theta={self.theta})"


class RandomLossWeighting(Weighting):
    """Random loss weighting (RLW, Lin et al. 2022): ``λ = softmax(ε)``, ``ε ~ N(0, I)``, new each step.

    The weights do not depend on the losses, so drawing them before the step is exactly the
    method. Draws come from the weighting's own generator (float64 on the CPU, then moved to
    λ's device), seeded by ``seed`` (default: one draw from torch's global RNG at construction);
    its state is checkpointed, so a resumed run draws the same weights.
    """

    needs_gram = False

    def __init__(self, k: int, seed: int | None = None) -> None:
        super().__init__(k)
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        if not isinstance(seed, int) or seed < 0:
            raise ValueError(f"RLW seed must be a non-negative integer, got {seed!r}")
        self.seed = seed
        self._gen = torch.Generator().manual_seed(seed)
        self._lambda = self._draw()

    def _draw(self) -> Tensor:
        eps = torch.randn(self.k, generator=self._gen, dtype=torch.float64)
        return torch.softmax(eps, dim=-1).to(self._lambda)

    def update(self, gram12: Tensor | None = None, losses: Tensor | None = None) -> Tensor:
        check_losses("RandomLossWeighting", self.k, losses)
        self._lambda = self._draw()
        return self._lambda

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "generator": self._gen.get_state()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        self._gen.set_state(state["generator"])

    def __repr__(self) -> str:
        return f"RandomLossWeighting(k={self.k}, seed={self.seed})"
