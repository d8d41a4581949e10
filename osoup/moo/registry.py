"""One registry of every level weighting: ``make_weighting(name, k, **kwargs)``.

A user compares methods by changing one name (``make_soup(..., weighting="pcgrad")``); the
engine does not know which method runs inside a level.

=============  ===================================================  =======================
name           method                                               options
=============  ===================================================  =======================
modo           MoDo, double-sampled (Chen et al. 2023), G1 G2ᵀ      gamma, rho, normalize
mgda           MGDA, Frank-Wolfe (Sener & Koltun 2018), torchjd     epsilon, max_iters
pcgrad         PCGrad (Yu et al. 2020), torchjd                     -
cagrad         CAGrad (Liu et al. 2021), torchjd + cvxpy            c, norm_eps
imtl_g         IMTL-G (Liu et al. 2021), torchjd                    -
aligned_mtl    Aligned-MTL (Senushkin et al. 2023), torchjd         scale_mode, pref_vector
upgrad         UPGrad (Quinton & Rey 2024), torchjd + quadprog      pref_vector, norm_eps, reg_eps
nash_mtl       Nash-MTL (Navon et al. 2022), torchjd + cvxpy        max_norm, update_weights_every, optim_niter
uncertainty    Kendall et al. 2018, learnt log-variances            lr, init, betas, eps
dwa            Dynamic Weight Average (Liu et al. 2019)             temperature, window
static         fixed weights                                        weights (list of k)
mean           1/k each                                             -
=============  ===================================================  =======================
"""
from __future__ import annotations

from typing import Any

from osoup.moo.jd import JD_METHODS, JDWeighting
from osoup.moo.loss_weighting import DWA, UncertaintyWeighting
from osoup.moo.weighting import MeanWeighting, MoDo, StaticWeighting, Weighting

WEIGHTINGS = ("modo", "mgda", "pcgrad", "cagrad", "imtl_g", "aligned_mtl", "upgrad", "nash_mtl",
              "uncertainty", "dwa", "static", "mean")


def make_weighting(name: str, k: int, **kwargs: Any) -> Weighting:
    """Build the weighting ``name`` for a level of ``k`` objectives (options: see the table).

    Raises ValueError for an unknown name or option, and
    :class:`osoup.moo.jd.MissingDependencyError` (an ImportError) when the method's optional
    solver is not installed; its message names the pip extra.
    """
    if name not in WEIGHTINGS:
        raise ValueError(f"unknown weighting {name!r}; valid weightings: {', '.join(WEIGHTINGS)}")
    try:
        if name == "modo":
            return MoDo(k, **kwargs)
        if name in JD_METHODS:
            return JDWeighting(name, k, **kwargs)
        if name == "uncertainty":
            return UncertaintyWeighting(k, **kwargs)
        if name == "dwa":
            return DWA(k, **kwargs)
        if name == "static":
            if "weights" not in kwargs:
                raise ValueError("weighting 'static' needs weights=[w_1, ..., w_k]")
            w = StaticWeighting(kwargs.pop("weights"))
            if kwargs:
                raise TypeError(f"unexpected options {sorted(kwargs)}")
            if w.k != k:
                raise ValueError(f"weighting 'static' got {w.k} weights for {k} objectives")
            return w
        if kwargs:
            raise TypeError(f"unexpected options {sorted(kwargs)}")
        return MeanWeighting(k)
    except TypeError as e:
        raise ValueError(f"weighting {name!r}: bad options {sorted(kwargs)}: {e}") from e
