"""Gradient-based weightings from ``torchjd.aggregation`` behind our level interface.

Each torchjd Gramian weighting maps the K×K Gramian of K gradients to K weights. Here it is fed
the symmetric Gramian of the MEAN of the two halves, ``Ḡ Ḡᵀ`` with ``Ḡ = (G1 + G2) / 2``
(``gram_kind = "mean"``), and the engine applies the returned weights to ``Ḡ``: the level's
direction is exactly what torchjd's aggregator would return for the Jacobian ``Ḡ``. The weights
are torchjd's, unnormalised (PCGrad's sum to about K, IMTL-G's may be negative).

Optional solvers: CAGrad and Nash-MTL need cvxpy (+ clarabel / ecos), UPGrad's default projector
needs qpsolvers + quadprog. Without them, :func:`make_jd_weighting` raises
:class:`MissingDependencyError` naming the pip extra. MGDA, PCGrad, IMTL-G and Aligned-MTL run on
torch alone. Note that torchjd's solvers read values back to the host (Python loops with
data-dependent branches, numpy solvers): unlike MoDo, these methods synchronise once or more per
step.
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

from osoup.moo.weighting import Weighting

# Our name -> (torchjd extra that provides the solver, or None when torch suffices).
JD_METHODS: dict[str, str | None] = {
    "mgda": None,
    "pcgrad": None,
    "cagrad": "cagrad",
    "imtl_g": None,
    "aligned_mtl": None,
    "upgrad": "quadprog_projector",
    "nash_mtl": "nash_mtl",
}


class MissingDependencyError(ImportError):
    """A weighting needs an optional solver package that is not installed."""


def _gram_factor(gram: Tensor) -> Tensor:
    """A K×K matrix R with R Rᵀ = gram (negative eigenvalues from rounding clipped to 0)."""
    evals, evecs = torch.linalg.eigh(gram)
    return evecs * evals.clamp_min(0).sqrt()


def _build(name: str, k: int, kwargs: dict[str, Any]) -> tuple[Callable[[Tensor], Tensor], bool]:
    """The torchjd callable for ``name`` and whether it wants a matrix instead of a Gramian."""
    from torchjd import aggregation as agg

    if name == "mgda":
        return agg.MGDAWeighting(**kwargs), False
    if name == "pcgrad":
        return agg.PCGradWeighting(**kwargs), False
    if name == "cagrad":
        kw = {"c": 0.5, **kwargs}  # c = 0.5 is the CAGrad paper's default
        return agg.CAGradWeighting(**kw), False
    if name == "imtl_g":
        return agg.IMTLGWeighting(**kwargs), False
    if name == "aligned_mtl":
        kw = dict(kwargs)
        if kw.get("pref_vector") is not None:
            kw["pref_vector"] = torch.as_tensor(kw["pref_vector"], dtype=torch.float32)
        return agg.AlignedMTLWeighting(**kw), False
    if name == "upgrad":
        kw = dict(kwargs)
        proj = {key: kw.pop(key) for key in ("norm_eps", "reg_eps") if key in kw}
        if kw.get("pref_vector") is not None:
            kw["pref_vector"] = torch.as_tensor(kw["pref_vector"], dtype=torch.float32)
        if proj:
            from torchjd.linalg import QuadprogProjector

            kw["projector"] = QuadprogProjector(**proj)
        return agg.UPGradWeighting(**kw), False
    if name == "nash_mtl":
        # Only the aggregator is public; its weighting reads the matrix J (Gramian J Jᵀ, and
        # ‖Jᵀw‖ for max_norm). A square factor R with R Rᵀ = Ḡ Ḡᵀ gives it exactly the same
        # numbers as Ḡ itself.
        return agg.NashMTL(n_tasks=k, **kwargs).weighting, True
    raise ValueError(f"unknown torchjd weighting {name!r}; known: {', '.join(JD_METHODS)}")


class JDWeighting(Weighting):
    """One torchjd Gramian weighting as a level weighting (see the module docstring).

    λ before the first update (used by layers outside the layer selection on the first step) is
    the method's answer for K orthogonal unit gradients (identity Gramian): 1/K for MGDA,
    IMTL-G, Aligned-MTL and UPGrad, 1 for PCGrad.
    """

    needs_gram = True
    gram_kind = "mean"

    def __init__(self, name: str, k: int, **kwargs: Any) -> None:
        super().__init__(k)
        if name not in JD_METHODS:
            raise ValueError(f"unknown torchjd weighting {name!r}; known: {', '.join(JD_METHODS)}")
        self.name = name
        self.kwargs = dict(kwargs)
        try:
            self._fn, self._matrix_input = _build(name, k, self.kwargs)
        except ImportError as e:
            extra = JD_METHODS[name]
            raise MissingDependencyError(
                f"weighting {name!r} needs optional solver packages that are not installed ({e}); "
                f"install them with: tools/venv/bin/pip install -e '.[solvers]' (or pip install 'torchjd[{extra}]')"
            ) from e
        except (TypeError, ValueError) as e:
            raise ValueError(f"weighting {name!r}: bad options {self.kwargs}: {e}") from e
        if not self._matrix_input:  # stateless: ask it about an identity Gramian
            with torch.random.fork_rng(devices=[]):
                self._lambda = self._fn(torch.eye(k, dtype=torch.float64)).detach().to(torch.float64)

    def update(self, gram12: Tensor | None, losses: Tensor | None = None) -> Tensor:
        if gram12 is None:
            raise ValueError(f"weighting {self.name!r} needs the Gramian of the mean gradients, got None")
        if gram12.shape != (self.k, self.k):
            raise ValueError(f"weighting {self.name!r}: Gramian has shape {tuple(gram12.shape)}, expected ({self.k}, {self.k})")
        gram = gram12.detach()
        gram = (gram + gram.T) * 0.5
        with torch.no_grad():
            lam = self._fn(_gram_factor(gram) if self._matrix_input else gram)
        self._lambda = lam.detach().to(device=gram.device, dtype=gram.dtype)
        return self._lambda

    def __repr__(self) -> str:
        opts = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        return f"JDWeighting({self.name!r}, k={self.k}{opts})"
