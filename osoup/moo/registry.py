"""One registry of every level weighting: ``make_weighting(name, k, **kwargs)``.

A user compares methods by changing one name (``make_soup(..., weighting="pcgrad")``, or
``--weighting pcgrad`` with options in ``--weighting-opts``); the engine does not know which
method runs inside a level. ``input`` says what a method reads each step and so what it costs:

* ``G1G2ᵀ``: the double-sampled cross Gramian of the two halves, an unbiased estimate of
  ``∇L ∇Lᵀ`` whose λ update is a stochastic step on a quadratic in the gradients. These are the
  MoDo-like methods (paper §3, eq. 12: the two halves must hold disjoint utterances).
* ``ḠḠᵀ``: the Gramian of the mean of the halves, a biased plug-in estimate; the method solves
  its problem for this one step as if the gradients were exact (MGDA-like).
* ``losses``: the levels' losses only; one backward per step, no per-objective gradients, the
  cost of ``joint``. The weights of a step come from the losses of earlier steps.

``docs/weightings.md`` compares them and says which torchjd methods are not here and why.
UPGrad is the recommended default of the Gramian family (no tuning, never conflicts with any
objective); FAMO the cheapest adaptive one.

===============  ===============================================  =======  ===============================
name             method                                           input    options
===============  ===============================================  =======  ===============================
modo             MoDo (Chen et al. 2023), the paper's             G1G2ᵀ    gamma, rho, normalize
sdmgrad          SDMGrad (Xiao et al. 2023), torchjd              G1G2ᵀ    lr, momentum, n_iter, lambda_, pref_vector
mgda             MGDA, Frank-Wolfe (Sener & Koltun 2018), torchjd ḠḠᵀ      epsilon, max_iters
pcgrad           PCGrad (Yu et al. 2020), torchjd                 ḠḠᵀ      -
cagrad           CAGrad (Liu et al. 2021), torchjd + cvxpy        ḠḠᵀ      c, norm_eps
imtl_g           IMTL-G (Liu et al. 2021), torchjd                ḠḠᵀ      -
aligned_mtl      Aligned-MTL (Senushkin et al. 2023), torchjd     ḠḠᵀ      scale_mode, pref_vector
upgrad           UPGrad (Quinton & Rey 2024), torchjd + quadprog  ḠḠᵀ      pref_vector, norm_eps, reg_eps
nash_mtl         Nash-MTL (Navon et al. 2022), torchjd + cvxpy    ḠḠᵀ      max_norm, update_weights_every, optim_niter
fairgrad         FairGrad (Ban & Ji 2024), torchjd + scipy        ḠḠᵀ      alpha (1), max_iters
gradvac          GradVac (Wang et al. 2021), torchjd, stateful    ḠḠᵀ      beta, eps
dualproj         DualProj (GEM's projection), torchjd + quadprog  ḠḠᵀ      pref_vector, norm_eps, reg_eps
config           ConFIG (Liu et al. 2024), torchjd's, from ḠḠᵀ    ḠḠᵀ      pref_vector
krum             (Multi-)Krum (Blanchard et al. 2017), torchjd    ḠḠᵀ      n_byzantine (0), n_selected
uncertainty      Kendall et al. 2018, learnt log-variances        losses   lr, init, betas, eps
imtl_l           IMTL-L (Liu et al. 2021), learnt log-scales      losses   lr, init, betas, eps
dwa              Dynamic Weight Average (Liu et al. 2019)         losses   temperature, window
famo             FAMO (Liu et al. 2023), torchjd's                losses   lr, weight_decay, min_losses, betas, eps
stch             smooth Tchebycheff (Lin et al. 2024), torchjd's  losses   mu (0.1), pref_vector, reference
geometric_mean   geometric mean of the losses (GLS), torchjd's    losses   -
rlw              random loss weighting (Lin et al. 2022)          losses   seed
cosmos           COSMOS loss (Ruchte & Grabocka 2021), torchjd's  losses   lambda_ (1), pref_vector
pbi              PBI (Zhang & Li 2007), torchjd's                 losses   theta (5), pref_vector, reference
static           fixed weights                                    -        weights (list of k)
mean             1/k each                                         -        -
===============  ===============================================  =======  ===============================
"""
from __future__ import annotations

from typing import Any, Callable

from osoup.moo.famo import FAMO
from osoup.moo.jd import JD_METHODS, NOT_WRAPPED, JDWeighting
from osoup.moo.loss_weighting import DWA, IMTLL, UncertaintyWeighting
from osoup.moo.scalarizers import COSMOS, PBI, STCH, GeometricMean, RandomLossWeighting
from osoup.moo.weighting import MeanWeighting, MoDo, StaticWeighting, Weighting

WEIGHTINGS = ("modo", "mgda", "pcgrad", "cagrad", "imtl_g", "aligned_mtl", "upgrad", "nash_mtl",
              "uncertainty", "dwa", "static", "mean",
              "fairgrad", "gradvac", "sdmgrad", "dualproj", "config", "krum",
              "famo", "stch", "geometric_mean", "imtl_l", "rlw", "cosmos", "pbi")

# Weightings that never need a Gramian (the cost of joint), by name.
LOSS_BASED: dict[str, Callable[..., Weighting]] = {
    "uncertainty": UncertaintyWeighting,
    "imtl_l": IMTLL,
    "dwa": DWA,
    "famo": FAMO,
    "stch": STCH,
    "geometric_mean": GeometricMean,
    "rlw": RandomLossWeighting,
    "cosmos": COSMOS,
    "pbi": PBI,
}
# The MoDo-like ones: their λ update needs the double-sampled, unbiased G1 G2ᵀ.
DOUBLE_SAMPLED = ("modo", "sdmgrad")


def _static(k: int, kwargs: dict[str, Any]) -> Weighting:
    if "weights" not in kwargs:
        raise ValueError("weighting 'static' needs weights=[w_1, ..., w_k]")
    w = StaticWeighting(kwargs.pop("weights"))
    if kwargs:
        raise TypeError(f"unexpected options {sorted(kwargs)}")
    if w.k != k:
        raise ValueError(f"weighting 'static' got {w.k} weights for {k} objectives")
    return w


def make_weighting(name: str, k: int, **kwargs: Any) -> Weighting:
    """Build the weighting ``name`` for a level of ``k`` objectives (options: see the table).

    Raises ValueError for an unknown name or option, and
    :class:`osoup.moo.jd.MissingDependencyError` (an ImportError) when the method's optional
    solver is not installed; its message names the pip extra.
    """
    if name not in WEIGHTINGS:
        why = f" ({name!r} is not available: {NOT_WRAPPED[name]})" if name in NOT_WRAPPED else ""
        raise ValueError(f"unknown weighting {name!r}{why}; valid weightings: {', '.join(WEIGHTINGS)}")
    try:
        if name == "modo":
            return MoDo(k, **kwargs)
        if name in JD_METHODS:
            return JDWeighting(name, k, **kwargs)
        if name in LOSS_BASED:
            return LOSS_BASED[name](k, **kwargs)
        if name == "static":
            return _static(k, dict(kwargs))
        if kwargs:
            raise TypeError(f"unexpected options {sorted(kwargs)}")
        return MeanWeighting(k)
    except TypeError as e:
        raise ValueError(f"weighting {name!r}: bad options {sorted(kwargs)}: {e}") from e
