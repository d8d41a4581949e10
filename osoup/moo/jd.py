"""Gradient-based weightings from ``torchjd.aggregation`` behind our level interface.

Each torchjd Gramian weighting maps the K×K Gramian of K gradients to K weights. Here it is fed
the symmetric Gramian of the MEAN of the two halves, ``Ḡ Ḡᵀ`` with ``Ḡ = (G1 + G2) / 2``
(``gram_kind = "mean"``), and the engine applies the returned weights to ``Ḡ``: the level's
direction is exactly what torchjd's aggregator would return for the Jacobian ``Ḡ``. The weights
are torchjd's, unnormalised (PCGrad's sum to about K, IMTL-G's may be negative). SDMGrad is the
exception: like MoDo it is fed the double-sampled ``G1 G2ᵀ`` (``gram_kind = "cross"``), the
unbiased estimate its λ update is designed for. :mod:`osoup.moo.jd_methods` lists the methods
and how each is built; ``docs/weightings.md`` compares them.

Optional solvers: CAGrad and Nash-MTL need cvxpy (+ clarabel / ecos), UPGrad's and DualProj's
default projector needs qpsolvers + quadprog, FairGrad needs scipy. Without them,
:class:`JDWeighting` raises :class:`MissingDependencyError` naming the pip extra. The others run
on torch alone. Note that torchjd's solvers read values back to the host (Python loops with
data-dependent branches, numpy solvers): unlike MoDo, these methods synchronise once or more per
step.

Stateful methods (GradVac's EMA of cosine targets, SDMGrad's inner λ) run on a float64 CPU copy
of the Gramian, so torchjd never resets their state when training changes device or dtype, and
their state is part of :meth:`JDWeighting.state_dict`. GradVac also draws a random visiting
order from torch's global RNG at every step (as torchjd does).
"""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from osoup.moo.jd_methods import CROSS_GRAM, JD_METHODS, MATRIX_INPUT, NOT_WRAPPED, STATEFUL, build_jd
from osoup.moo.weighting import Weighting

__all__ = ["JD_METHODS", "NOT_WRAPPED", "JDWeighting", "MissingDependencyError"]


class MissingDependencyError(ImportError):
    """A weighting needs an optional solver package that is not installed."""


def _gram_factor(gram: Tensor) -> Tensor:
    """A K×K matrix R with R Rᵀ = gram (negative eigenvalues from rounding clipped to 0)."""
    evals, evecs = torch.linalg.eigh(gram)
    return evecs * evals.clamp_min(0).sqrt()


class JDWeighting(Weighting):
    """One torchjd Gramian weighting as a level weighting (see the module docstring).

    λ before the first update (used by layers outside the layer selection on the first step) is
    the method's answer for K orthogonal unit gradients (identity Gramian): 1/K for MGDA,
    IMTL-G, Aligned-MTL, UPGrad, DualProj and SDMGrad, 1 for PCGrad, GradVac, FairGrad and ConFIG;
    Krum breaks the tie by selecting the first objective(s). Nash-MTL starts at 1/K.
    """

    needs_gram = True
    gram_kind = "mean"

    def __init__(self, name: str, k: int, **kwargs: Any) -> None:
        super().__init__(k)
        if name not in JD_METHODS:
            raise ValueError(f"unknown torchjd weighting {name!r}; known: {', '.join(JD_METHODS)}")
        self.name = name
        self.kwargs = dict(kwargs)
        self.gram_kind = "cross" if name in CROSS_GRAM else "mean"
        self._stateful = name in STATEFUL
        self._matrix_input = name in MATRIX_INPUT
        try:
            self._fn = build_jd(name, k, self.kwargs)
        except ImportError as e:
            extra = JD_METHODS[name]
            raise MissingDependencyError(
                f"weighting {name!r} needs optional solver packages that are not installed ({e}); "
                f"install them with: tools/venv/bin/pip install -e '.[solvers]' (or pip install 'torchjd[{extra}]')"
            ) from e
        except (TypeError, ValueError) as e:
            raise ValueError(f"weighting {name!r}: bad options {self.kwargs}: {e}") from e
        if not self._matrix_input:
            self._lambda = self._identity_answer()

    def _identity_answer(self) -> Tensor:
        """The weights for an identity Gramian, without touching the RNG or the method's state."""
        with torch.random.fork_rng(devices=[]):
            lam = self._fn(torch.eye(self.k, dtype=torch.float64)).detach().to(torch.float64)
        if self._stateful:
            self._fn.reset()
        return lam

    def update(self, gram12: Tensor | None, losses: Tensor | None = None) -> Tensor:
        if gram12 is None:
            raise ValueError(f"weighting {self.name!r} needs the Gramian ({self.gram_kind}), got None")
        if gram12.shape != (self.k, self.k):
            raise ValueError(f"weighting {self.name!r}: Gramian has shape {tuple(gram12.shape)}, expected ({self.k}, {self.k})")
        gram = gram12.detach()
        if self.gram_kind == "mean":
            gram = (gram + gram.T) * 0.5
        stat = gram.to(device="cpu", dtype=torch.float64) if self._stateful else gram
        with torch.no_grad():
            lam = self._fn(_gram_factor(stat) if self._matrix_input else stat)
        self._lambda = lam.detach().to(device=gram.device, dtype=gram.dtype)
        return self._lambda

    def state_dict(self) -> dict[str, Any]:
        """λ, and for GradVac/SDMGrad torchjd's own state (its module buffers, CPU float64)."""
        state = super().state_dict()
        if self._stateful:
            state["torchjd"] = {key: t.detach().clone() for key, t in self._fn.state_dict().items()}
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        super().load_state_dict(state)
        if not self._stateful:
            return
        saved = state.get("torchjd") or {}
        self._fn.reset()
        if saved:
            # torchjd allocates its buffers on the first call: make one (its result is then
            # overwritten, RNG untouched), then copy the checkpoint into them.
            with torch.random.fork_rng(devices=[]):
                self._fn(torch.eye(self.k, dtype=torch.float64))
            self._fn.load_state_dict(saved)

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"JDWeighting({self.name!r}, k={self.k}{opts})"
