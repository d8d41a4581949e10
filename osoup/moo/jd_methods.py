"""Which ``torchjd.aggregation`` methods a level can use, and how each one is built.

:class:`osoup.moo.jd.JDWeighting` feeds every method here a K×K matrix and gets K weights back.
The table :data:`JD_METHODS` names the torchjd extra that provides a method's solver; the sets
below say what the method is fed:

* ``mean`` Gramian ``Ḡ Ḡᵀ`` of the mean gradients (default), or the double-sampled ``G1 G2ᵀ``
  (:data:`CROSS_GRAM`, SDMGrad's input ``A = J1 J2ᵀ``);
* a square factor R with ``R Rᵀ = Ḡ Ḡᵀ`` instead of the Gramian (:data:`MATRIX_INPUT`: torchjd
  only exposes Nash-MTL as an aggregator on the matrix, which reads nothing but ``J Jᵀ``);
* stateful methods (:data:`STATEFUL`) get the Gramian as float64 on the CPU, so that torchjd's
  state never resets when training moves device or dtype; :class:`JDWeighting` checkpoints it.

ConFIG (Liu et al. 2024) is a torchjd aggregator on the matrix only, but its result lies in the
span of the gradients and depends on them only through their Gramian:
:class:`ConFIGGramWeighting` computes its weights from ``Ḡ Ḡᵀ`` (``test/test_moo_weightings.py``
checks them against ``torchjd.aggregation.ConFIG`` applied to the matrix).

Two torchjd methods cannot be a level weighting (:data:`NOT_WRAPPED` says why).
"""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import Tensor

# Our name -> (torchjd extra that provides the solver, or None when torch suffices).
JD_METHODS: dict[str, str | None] = {
    "mgda": None,
    "pcgrad": None,
    "cagrad": "cagrad",
    "imtl_g": None,
    "aligned_mtl": None,
    "upgrad": "quadprog_projector",
    "nash_mtl": "nash_mtl",
    "fairgrad": "fairgrad",
    "gradvac": None,
    "sdmgrad": None,
    "dualproj": "quadprog_projector",
    "config": None,
    "krum": None,
}
CROSS_GRAM = frozenset({"sdmgrad"})
MATRIX_INPUT = frozenset({"nash_mtl"})
STATEFUL = frozenset({"gradvac", "sdmgrad"})

NOT_WRAPPED: dict[str, str] = {
    "excess_mtl": "torchjd's ExcessMTLWeighting reads the per-coordinate gradient matrix (it keeps a K×D "
    "sum of squared gradients, a second copy of every per-objective gradient), not a Gramian",
    "trimmed_mean": "torchjd's TrimmedMean trims each coordinate separately: its result is not one weighted "
    "sum of the objectives' gradients, so it has no weights",
}


def _tensor(value: Any, dtype: torch.dtype = torch.float32) -> Tensor | None:
    return None if value is None else torch.as_tensor(value, dtype=dtype)


def _with_pref(kw: dict[str, Any], dtype: torch.dtype = torch.float32) -> dict[str, Any]:
    """Options with ``pref_vector`` (a list in configs) as a tensor."""
    kw = dict(kw)
    if kw.get("pref_vector") is not None:
        kw["pref_vector"] = _tensor(kw["pref_vector"], dtype)
    return kw


def _with_projector(kw: dict[str, Any]) -> dict[str, Any]:
    """Options with ``norm_eps``/``reg_eps`` turned into torchjd's quadprog dual-cone projector."""
    kw = _with_pref(kw)
    proj = {key: kw.pop(key) for key in ("norm_eps", "reg_eps") if key in kw}
    if proj:
        from torchjd.linalg import QuadprogProjector

        kw["projector"] = QuadprogProjector(**proj)
    return kw


def _krum(k: int, kw: dict[str, Any]) -> Callable[[Tensor], Tensor]:
    from torchjd.aggregation import KrumWeighting

    kw = {"n_byzantine": 0, **kw}
    if k < kw["n_byzantine"] + 3:
        raise ValueError(f"Krum needs at least n_byzantine + 3 = {kw['n_byzantine'] + 3} objectives in a level, got {k}")
    return KrumWeighting(**kw)


class ConFIGGramWeighting:
    """ConFIG's weights (Liu et al. 2024, eq. 2) from the Gramian ``G = J Jᵀ`` alone.

    ConFIG returns ``d = (1ᵀ J u) u`` with ``u`` the unit vector of ``pinv(U) w``, U the rows of J
    scaled to unit norm and w the preference (ones by default). With ``N = diag(1/‖g_i‖)``,
    ``pinv(U) = Uᵀ pinv(U Uᵀ)`` and ``U Uᵀ = N G N``, so ``pinv(U) w = Jᵀ c`` with
    ``c = N pinv(N G N) w``, and ``d = Jᵀ c (1ᵀ G c) / (cᵀ G c)``. A zero gradient gets weight 0
    (torchjd sets its unit row to 0). Cost: a K×K pseudo-inverse instead of torchjd's SVD of K×D.
    """

    def __init__(self, pref_vector: Any = None) -> None:
        self.pref_vector = _tensor(pref_vector, torch.float64)

    def __call__(self, gram: Tensor) -> Tensor:
        k, g = gram.shape[0], gram.double()  # K×K: float64 costs nothing and keeps the pinv accurate
        w = torch.ones(k, dtype=g.dtype, device=g.device) if self.pref_vector is None else self.pref_vector.to(g)
        if w.shape != (k,):
            raise ValueError(f"ConFIG pref_vector has {w.numel()} entries for {k} objectives")
        tiny = torch.finfo(g.dtype).tiny
        norms = g.diagonal().clamp_min(0).sqrt()
        inv = torch.where(norms > 0, 1.0 / norms.clamp_min(tiny), torch.zeros_like(norms))
        unit_gram = inv[:, None] * g * inv[None, :]
        c = inv * (torch.linalg.pinv(unit_gram, hermitian=True) @ w)
        gc = g @ c
        return (c * gc.sum() / (c @ gc).clamp_min(tiny)).to(gram.dtype)


def _builders() -> dict[str, Callable[[int, dict[str, Any]], Callable[[Tensor], Tensor]]]:
    from torchjd import aggregation as agg

    return {
        "mgda": lambda k, kw: agg.MGDAWeighting(**kw),
        "pcgrad": lambda k, kw: agg.PCGradWeighting(**kw),
        "cagrad": lambda k, kw: agg.CAGradWeighting(**{"c": 0.5, **kw}),  # c = 0.5: the CAGrad paper's default
        "imtl_g": lambda k, kw: agg.IMTLGWeighting(**kw),
        "aligned_mtl": lambda k, kw: agg.AlignedMTLWeighting(**_with_pref(kw)),
        "upgrad": lambda k, kw: agg.UPGradWeighting(**_with_projector(kw)),
        # Only the aggregator is public; its weighting reads the matrix J (Gramian J Jᵀ, and
        # ‖Jᵀw‖ for max_norm). A square factor R with R Rᵀ = Ḡ Ḡᵀ gives it the same numbers.
        "nash_mtl": lambda k, kw: agg.NashMTL(n_tasks=k, **kw).weighting,
        "fairgrad": lambda k, kw: agg.FairGradWeighting(**{"alpha": 1.0, **kw}),  # α = 1: proportional fairness
        "gradvac": lambda k, kw: agg.GradVacWeighting(**kw),
        "sdmgrad": lambda k, kw: agg.SDMGradWeighting(**_with_pref(kw, torch.float64)),
        "dualproj": lambda k, kw: agg.DualProjWeighting(**_with_projector(kw)),
        "config": lambda k, kw: ConFIGGramWeighting(**kw),
        "krum": _krum,
    }


def build_jd(name: str, k: int, kwargs: dict[str, Any]) -> Callable[[Tensor], Tensor]:
    """The callable (K×K matrix -> K weights) of method ``name`` for a level of ``k`` objectives.

    Raises ImportError when the method's optional solver is missing, TypeError/ValueError for
    bad options.
    """
    if name not in JD_METHODS:
        raise ValueError(f"unknown torchjd weighting {name!r}; known: {', '.join(JD_METHODS)}")
    return _builders()[name](k, dict(kwargs))
