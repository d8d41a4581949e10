"""The training methods the core knows, the paper's default penalty schedules, and
:func:`make_soup`, which builds the :class:`~osoup.moo.soup.Soup` of a method.

A *method* is how the shared parameters' update combines the objectives (paper §3-4):
``vs`` (flat MoDo), ``vc`` (SSL as a penalised lower level), ``vm`` (multilevel), and the
single-level combinations ``joint``, ``mean``, ``static`` and ``ssl``. (A *recipe* is a
directory under ``egs/``.)
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import torch
from torch.nn import Parameter

from osoup.moo.lambdas import Level
from osoup.moo.levels import parse_levels
from osoup.moo.registry import WEIGHTINGS, make_weighting
from osoup.moo.schedule import PenaltySchedule
from osoup.moo.soup import Soup
from osoup.moo.weighting import MeanWeighting, StaticWeighting, Weighting

METHODS = ("vs", "vc", "vm", "joint", "mean", "static", "ssl")
PENALISED_METHODS = ("vc", "vm", "joint")
MODO_OPTIONS = ("gamma", "rho", "normalize")

# The paper's schedules (appendix E): η(e) = min(init + rate·e, cap) per epoch e.
VC_PENALTY = PenaltySchedule(0.0, 0.02, 1.5)  # vc and joint: the SSL level's η
VM_PENALTY_FIRST = PenaltySchedule(0.1, 0.02, 1.5)  # vm: η_1, between levels 1 and 2
VM_PENALTY_REST = PenaltySchedule(0.0, 0.02, 1.5)  # vm: η_2, η_3, ...


def default_penalties(method: str, n_levels: int = 2) -> list[PenaltySchedule]:
    """The paper's penalty schedules of ``method`` with ``n_levels`` levels (one per level
    below the first); empty for methods without penalties."""
    if method in ("vc", "joint"):
        return [VC_PENALTY]
    if method == "vm":
        return [VM_PENALTY_FIRST] + [VM_PENALTY_REST] * max(0, n_levels - 2)
    return []


def make_soup(
    method: str,
    shared_params: Sequence[Parameter],
    heads: Mapping[str, Sequence[Parameter]],
    objectives: list[str],
    ssl: str | None,
    levels: str | None = None,
    penalties: list[PenaltySchedule] | None = None,
    modo: dict | None = None,
    static_weights: dict[str, float] | None = None,
    gram_params: str = "shared",
    weighting: str = "modo",
    weighting_kwargs: dict | None = None,
    layer_groups: Mapping[str, Sequence[Parameter]] | None = None,
    moo_layers: int | float | None = None,
    conflict_interval: int = 50,
    probe_coords: int | None = None,
    buffer_dtype: torch.dtype | str = torch.float32,
) -> Soup:
    """Build the :class:`~osoup.moo.soup.Soup` of one training method (paper §3-4, appendix D).

    ``vs``: one level, every objective incl. SSL, MoDo. ``vc``: supervised objectives with MoDo
    on the penalised Gramian, SSL below with η (default 0 + 0.02/epoch, cap 1.5). ``vm``: levels
    from ``levels`` (see :func:`parse_levels`), MoDo inside each; η_1 default 0.1 + 0.02/epoch,
    η_2.. 0 + 0.02/epoch, caps 1.5. ``joint``: mean of supervised + η SSL (vc's η), no MoDo.
    ``mean``: equal-weight mean of ``objectives``. ``static``: fixed ``static_weights``.
    ``ssl``: the SSL objective alone. ``modo`` holds MoDo's keyword arguments (gamma, rho,
    normalize) and is ignored by methods without MoDo. Single-objective levels use weight 1.

    ``weighting`` (see :data:`osoup.moo.registry.WEIGHTINGS`) chooses the method inside every
    multi-objective level of vs/vc/vm, with ``weighting_kwargs`` as its options (for ``modo``
    they override ``modo``'s). ``layer_groups``/``moo_layers``/``conflict_interval``/
    ``probe_coords``: layer selection; ``buffer_dtype``: fp32 or bf16 buffers; see :class:`~osoup.moo.soup.Soup`.
    """
    objectives = _check_request(method, heads, objectives, ssl, levels, static_weights, penalties)
    dynamic = _dynamic(weighting, modo, weighting_kwargs)
    _check_ssl(method, objectives, ssl)
    supervised = [o for o in objectives if o != ssl]
    fold = method == "vc"
    if method == "vs":
        lv = [Level(objectives, dynamic(len(objectives)))]
    elif method in ("vc", "joint"):
        lv = _constrained_levels(method, supervised, ssl, penalties, dynamic)  # type: ignore[arg-type]
    elif method == "vm":
        lv = _multilevel_levels(objectives, ssl, levels, penalties, dynamic)
    else:
        lv = _single_level(method, objectives, supervised, ssl, static_weights)
    used = {n for level in lv for n in level.names}
    return Soup(
        shared_params,
        {k: v for k, v in heads.items() if k in used},
        lv,
        gram_params=gram_params,
        penalize_lower_in_gram=fold,
        layer_groups=layer_groups,
        moo_layers=moo_layers,
        conflict_interval=conflict_interval,
        probe_coords=probe_coords,
        buffer_dtype=buffer_dtype,
    )


def _check_request(
    method: str,
    heads: Mapping[str, Sequence[Parameter]],
    objectives: Sequence[str],
    ssl: str | None,
    levels: str | None,
    static_weights: dict[str, float] | None,
    penalties: list[PenaltySchedule] | None,
) -> list[str]:
    """Check :func:`make_soup`'s method, objectives, heads and method-specific options."""
    if method not in METHODS:
        raise ValueError(f"make_soup: unknown method {method!r}; valid methods: {', '.join(METHODS)}")
    objectives = list(objectives)
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"make_soup: duplicate objectives in {objectives}")
    if not objectives:
        raise ValueError("make_soup: no objectives")
    unknown = [k for k in heads if k not in objectives]
    if unknown:
        raise ValueError(f"make_soup: heads given for {unknown}, which are not among the objectives {objectives}")
    if levels is not None and method != "vm":
        raise ValueError(f"make_soup: levels are only for method 'vm', got levels={levels!r} for {method!r}")
    if static_weights is not None and method != "static":
        raise ValueError(f"make_soup: static_weights are only for method 'static', not {method!r}")
    if penalties and method not in PENALISED_METHODS:
        raise ValueError(f"make_soup: method {method!r} has no penalty schedule, got {penalties}")
    return objectives


def _check_ssl(method: str, objectives: list[str], ssl: str | None) -> None:
    """vc, joint and ssl train the SSL objective; vc and joint also a supervised one."""
    if method in ("vc", "joint", "ssl") and not (ssl is not None and ssl in objectives):
        raise ValueError(f"make_soup: method {method!r} needs the SSL objective {ssl!r} among the objectives {objectives}")
    if method in ("vc", "joint") and not [o for o in objectives if o != ssl]:
        raise ValueError(f"make_soup: method {method!r} needs at least one supervised objective besides {ssl!r}")


def _dynamic(weighting: str, modo: dict | None, weighting_kwargs: dict | None) -> Callable[[int], Weighting]:
    """The weighting of a multi-objective level of vs/vc/vm (weight 1 for a single objective)."""
    modo_kw = dict(modo or {})
    bad_keys = sorted(set(modo_kw) - set(MODO_OPTIONS))
    if bad_keys:
        raise ValueError(f"make_soup: unknown MoDo options {bad_keys}; valid: {', '.join(MODO_OPTIONS)}")
    if weighting not in WEIGHTINGS:
        raise ValueError(f"make_soup: unknown weighting {weighting!r}; valid weightings: {', '.join(WEIGHTINGS)}")
    w_kw = dict(weighting_kwargs or {})
    if weighting == "modo":
        w_kw = {**modo_kw, **w_kw}

    def dynamic(k: int) -> Weighting:
        return make_weighting(weighting, k, **w_kw) if k > 1 else MeanWeighting(1)

    return dynamic


def _penalties(method: str, given: list[PenaltySchedule] | None, n_levels: int) -> list[PenaltySchedule]:
    """``given`` (one schedule per level below the first) or the paper's defaults."""
    default = default_penalties(method, n_levels)
    if given is None:
        return default
    given = list(given)
    if len(given) != len(default):
        raise ValueError(f"make_soup: method {method!r} needs {len(default)} penalty schedule(s) here, got {len(given)}")
    return given


def _constrained_levels(
    method: str, supervised: list[str], ssl: str, penalties: list[PenaltySchedule] | None, dynamic: Callable[[int], Weighting]
) -> list[Level]:
    """vc / joint: the supervised objectives (MoDo for vc, their mean for joint), SSL below with η."""
    (eta,) = _penalties(method, penalties, 2)
    top = dynamic(len(supervised)) if method == "vc" else MeanWeighting(len(supervised))
    return [Level(supervised, top), Level([ssl], MeanWeighting(1), eta)]


def _multilevel_levels(
    objectives: list[str],
    ssl: str | None,
    levels: str | None,
    penalties: list[PenaltySchedule] | None,
    dynamic: Callable[[int], Weighting],
) -> list[Level]:
    """vm: the ``levels`` hierarchy, the weighting inside each level, η between them."""
    if levels is None:
        raise ValueError("make_soup: method 'vm' needs levels, e.g. 'asr>st>ssl'")
    groups = parse_levels(levels, objectives, ssl)
    etas = _penalties("vm", penalties, len(groups))
    return [Level(g, dynamic(len(g)), None if p == 0 else etas[p - 1]) for p, g in enumerate(groups)]


def _single_level(
    method: str, objectives: list[str], supervised: list[str], ssl: str | None, static_weights: dict[str, float] | None
) -> list[Level]:
    """mean / static / ssl: one level with fixed weights."""
    if method == "mean":
        return [Level(objectives, MeanWeighting(len(objectives)))]
    if method == "static":
        if static_weights is None:
            raise ValueError("make_soup: method 'static' needs static_weights {objective: weight}")
        missing = [o for o in objectives if o not in static_weights]
        extra = [o for o in static_weights if o not in objectives]
        if missing or extra:
            raise ValueError(f"make_soup: static_weights must name every objective once: missing {missing}, unknown {extra}")
        return [Level(objectives, StaticWeighting([float(static_weights[o]) for o in objectives]))]
    if supervised:
        raise ValueError(f"make_soup: method 'ssl' trains the SSL objective {ssl!r} only, got also {supervised}")
    return [Level([ssl], MeanWeighting(1))]  # type: ignore[list-item]
