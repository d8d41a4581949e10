"""The combining engine (:class:`Soup`) and the recipe factory (:func:`make_soup`).

A plain PyTorch loop trains any recipe the same way::

    soup = make_soup("vm", shared, heads, objectives, ssl="ssl", levels="asr>st>ssl")
    for step in ...:
        for name in soup.objectives:
            for half in (0, 1):                       # two disjoint halves of name's minibatch
                soup.backward(name, half, loss_of(name, half))
        stats = soup.step(epoch=step / steps_per_epoch)   # writes the combined .grad of θ
        opt_shared.step(); opt_heads.step(); soup.zero_grad()

Update of the shared parameters θ (paper eq. 13/15/25/28, SPEC §2):
    .grad(θ) = Σ_p c_p Σ_{m ∈ level p} λ^p_m (g_m^(0) + g_m^(1)) / 2,
    c_1 = 1, c_p = Π_{q<p} η_q(epoch),
with λ^p from the level's weighting (MoDo on ``G1 G2ᵀ`` of the level's rows, or fixed). Heads
get ``0.5 ×`` each half's gradient accumulated into ``.grad``: the plain gradient of the mean of
the halves, never scaled by λ or η (eq. 14).

Gradients of θ are kept per objective and per half in one fp32 buffer ``[2, M, D]`` only when
some level needs a Gramian; otherwise the weights are known before the backward and each
gradient goes straight into ``.grad`` (recipes joint/mean/static/ssl cost what plain training
costs). Nothing in :meth:`Soup.step` reads a value back to the host.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import Parameter

from osoup.moo.levels import parse_levels
from osoup.moo.schedule import PenaltySchedule
from osoup.moo.weighting import MeanWeighting, MoDo, StaticWeighting, Weighting, entropy

RECIPES = ("vs", "vc", "vm", "joint", "mean", "static", "ssl")
GRAM_PARAMS = ("shared", "all")

# Paper defaults (SPEC §2): vc/joint η; vm η_1 and η_2 (η_3... like η_2).
VC_PENALTY = PenaltySchedule(0.0, 0.02, 1.5)
VM_PENALTY_FIRST = PenaltySchedule(0.1, 0.02, 1.5)
VM_PENALTY_REST = PenaltySchedule(0.0, 0.02, 1.5)


@dataclass
class Level:
    """One optimisation level: its objectives, how they are weighted, and its penalty.

    ``penalty`` of level p (p >= 2, 1-based) is η_{p-1}; level 1 has none. A lower level's
    coefficient is the product of the penalties of every level down to it (c_p = Π_{q<p} η_q).
    ``None`` below level 1 means a constant 1.
    """

    names: list[str]
    weighting: Weighting
    penalty: PenaltySchedule | None = None


class Soup:
    """Combine per-objective, double-sampled gradients into one update of the shared parameters.

    Args:
        shared_params: θ, the backbone shared by every objective (all on one device).
        heads: objective name -> its own parameters φ_m (missing name: no head).
        levels: priority levels, highest first; every objective in exactly one level.
        gram_params: ``"shared"``: Gramians over θ only; ``"all"``: also the heads, which adds
            ``⟨∇φ_m l_m^(0), ∇φ_m l_m^(1)⟩`` to the diagonal (eq. 11-12).
        penalize_lower_in_gram: fold the next level's single objective u into each row of a
            Gramian-using level with that level's η: row_m = g_m + η g_u (vc, eq. 9/12).
    """

    def __init__(
        self,
        shared_params: Sequence[Parameter],
        heads: Mapping[str, Sequence[Parameter]],
        levels: list[Level],
        gram_params: str = "shared",
        penalize_lower_in_gram: bool = False,
    ) -> None:
        self._shared = list(shared_params)
        if not self._shared:
            raise ValueError("Soup: no shared parameters")
        if not levels:
            raise ValueError("Soup: no levels")
        if gram_params not in GRAM_PARAMS:
            raise ValueError(f"Soup: gram_params must be one of {GRAM_PARAMS}, got {gram_params!r}")
        self._levels = list(levels)
        self._names = [n for lv in self._levels for n in lv.names]
        self._check_levels()
        self._index = {n: i for i, n in enumerate(self._names)}
        self._bounds: list[tuple[int, int]] = []
        start = 0
        for lv in self._levels:
            self._bounds.append((start, start + len(lv.names)))
            start += len(lv.names)
        self._level_of = [p for p, lv in enumerate(self._levels) for _ in lv.names]

        self._device = self._shared[0].device
        unknown = [k for k in heads if k not in self._index]
        if unknown:
            raise ValueError(f"Soup: heads given for unknown objectives {unknown}; objectives are {self._names}")
        self._heads = [list(heads.get(n, ())) for n in self._names]
        self._check_params()
        self._numels = [p.numel() for p in self._shared]
        self._dim = sum(self._numels)
        self.gram_params = gram_params
        self.penalize_lower_in_gram = bool(penalize_lower_in_gram)
        self._fold = self._fold_targets()
        for lv in self._levels:
            lv.weighting.to(self._device, torch.float32)

        m = len(self._names)
        self._buffered = any(lv.weighting.needs_gram for lv in self._levels)
        if self._buffered:
            self._buf = torch.zeros(2, m, self._dim, device=self._device, dtype=torch.float32)
            self._views = [[self._split(self._buf[h, i], self._shared) for i in range(m)] for h in range(2)]
            self._head_buf: list[list[Tensor]] | None = None
            self._head_views: list[list[list[Tensor]]] = []
            if gram_params == "all":
                sizes = [sum(p.numel() for p in hp) for hp in self._heads]
                self._head_buf = [
                    [torch.zeros(sizes[i], device=self._device, dtype=torch.float32) for i in range(m)] for _ in range(2)
                ]
                self._head_views = [
                    [self._split(self._head_buf[h][i], self._heads[i]) for i in range(m)] for h in range(2)
                ]
        else:
            # Fast path: level 1 (c = 1) goes straight into .grad; each lower level into one
            # accumulator, scaled by its coefficient in step() once the epoch is known.
            self._acc = [None] + [
                torch.zeros(self._dim, device=self._device, dtype=torch.float32) for _ in self._levels[1:]
            ]
            self._acc_views = [None] + [self._split(a, self._shared) for a in self._acc[1:]]
        self._reset_step()

    # ----------------------------------------------------------------- construction checks
    def _check_levels(self) -> None:
        seen: set[str] = set()
        for p, lv in enumerate(self._levels, start=1):
            if not lv.names:
                raise ValueError(f"Soup: level {p} has no objectives")
            if lv.weighting.k != len(lv.names):
                raise ValueError(
                    f"Soup: level {p} has {len(lv.names)} objectives {lv.names} but its weighting "
                    f"{lv.weighting!r} has k={lv.weighting.k}"
                )
            if p == 1 and lv.penalty is not None:
                raise ValueError("Soup: level 1 cannot have a penalty (its coefficient is 1)")
            for n in lv.names:
                if n in seen:
                    raise ValueError(f"Soup: objective {n!r} appears in more than one level")
                seen.add(n)

    def _check_params(self) -> None:
        owner: dict[int, str] = {}
        groups = [("shared", self._shared)] + [(f"head of {n!r}", hp) for n, hp in zip(self._names, self._heads)]
        for what, params in groups:
            for j, p in enumerate(params):
                if not isinstance(p, torch.Tensor) or not p.requires_grad:
                    raise ValueError(f"Soup: {what} parameter {j} is not a tensor that requires grad")
                if p.device != self._device:
                    raise ValueError(f"Soup: {what} parameter {j} is on {p.device}, shared parameters on {self._device}")
                if id(p) in owner:
                    raise ValueError(f"Soup: {what} parameter {j} is also listed as {owner[id(p)]}")
                owner[id(p)] = f"{what} parameter {j}"

    def _fold_targets(self) -> dict[int, int]:
        """Level p -> row of the single objective of level p+1 to fold into its Gramian."""
        if not self.penalize_lower_in_gram:
            return {}
        fold = {}
        for p, lv in enumerate(self._levels[:-1]):
            if not lv.weighting.needs_gram:
                continue
            nxt = self._levels[p + 1]
            if len(nxt.names) != 1:
                raise ValueError(
                    f"Soup: penalize_lower_in_gram folds a single lower objective into level {p + 1}, "
                    f"but level {p + 2} has {nxt.names}"
                )
            fold[p] = self._bounds[p + 1][0]
        return fold

    @staticmethod
    def _split(flat: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
        views, off = [], 0
        for p in params:
            views.append(flat[off : off + p.numel()].view(p.shape))
            off += p.numel()
        return views

    def _reset_step(self) -> None:
        m = len(self._names)
        self._count = [[0, 0] for _ in range(m)]
        self._loss: list[list[Tensor | None]] = [[None, None] for _ in range(m)]
        self._grad_fresh = True
        self._acc_fresh = [True] * len(self._levels)

    # ----------------------------------------------------------------- public API
    @property
    def objectives(self) -> list[str]:
        """Objective names in the soup's order: level 1's objectives first, then level 2's, ..."""
        return list(self._names)

    @property
    def levels(self) -> list[Level]:
        return list(self._levels)

    @property
    def buffered(self) -> bool:
        """True when per-objective gradients of θ are kept (some level needs a Gramian)."""
        return self._buffered

    def coefficients(self, epoch: float) -> list[float]:
        """c_p per level: c_1 = 1, c_p = Π_{q<p} η_q(epoch)."""
        coeffs = [1.0]
        for lv in self._levels[1:]:
            coeffs.append(coeffs[-1] * (lv.penalty.value(epoch) if lv.penalty is not None else 1.0))
        return coeffs

    def weights_now(self, epoch: float) -> dict[str, Tensor]:
        """Per-objective weight w_m = c_p λ^p_m with the current λ (no update), on device."""
        coeffs = self.coefficients(epoch)
        out = {}
        for p, lv in enumerate(self._levels):
            lam = lv.weighting.weights
            for i, n in enumerate(lv.names):
                out[n] = coeffs[p] * lam[i]
        return out

    def backward(self, name: str, half: int, loss: Tensor, retain_graph: bool = False) -> None:
        """Take in the loss of one half (0 or 1) of objective ``name``'s minibatch.

        Gradients of θ are stored for :meth:`step` (or, on the fast path, added to ``.grad``
        with the already known weight); head gradients are added to ``.grad`` times 0.5.
        Calling it again for the same objective and half adds up (gradient accumulation:
        scale the losses yourself).
        """
        m = self._index.get(name)
        if m is None:
            raise ValueError(f"Soup.backward: unknown objective {name!r}; objectives are {self._names}")
        if half not in (0, 1):
            raise ValueError(f"Soup.backward: half must be 0 or 1, got {half!r} (objective {name!r})")
        if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
            raise ValueError(f"Soup.backward: loss of {name!r} half {half} must be a scalar tensor")
        if not loss.requires_grad:
            raise ValueError(f"Soup.backward: loss of {name!r} half {half} does not require grad")
        heads = self._heads[m]
        grads = torch.autograd.grad(loss.reshape(()), self._shared + heads, allow_unused=True, retain_graph=retain_graph)
        g_shared, g_head = grads[: len(self._shared)], grads[len(self._shared) :]
        first = self._count[m][half] == 0

        for p, g in zip(heads, g_head):
            if g is None:
                continue
            if p.grad is None:
                p.grad = g.mul(0.5)
            else:
                p.grad.add_(g, alpha=0.5)

        if self._buffered:
            self._write(self._views[half][m], g_shared, first)
            if self._head_buf is not None:
                self._write(self._head_views[half][m], g_head, first)
        else:
            level = self._level_of[m]
            start = self._bounds[level][0]
            scale = 0.5 * self._levels[level].weighting.weights[m - start]
            if self._grad_fresh:
                for p in self._shared:
                    if p.grad is not None:
                        p.grad.zero_()
                self._grad_fresh = False
            if level == 0:
                for p, g in zip(self._shared, g_shared):
                    if g is None:
                        continue
                    if p.grad is None:
                        p.grad = g * scale.to(g.dtype)
                    else:
                        p.grad.addcmul_(g, scale)
            else:
                if self._acc_fresh[level]:
                    self._acc[level].zero_()
                    self._acc_fresh[level] = False
                for v, g in zip(self._acc_views[level], g_shared):
                    if g is not None:
                        v.addcmul_(g, scale)

        self._count[m][half] += 1
        prev = self._loss[m][half]
        value = loss.detach().reshape(()).float()
        self._loss[m][half] = value if prev is None else prev + value

    @staticmethod
    def _write(views: list[Tensor], grads: Sequence[Tensor | None], first: bool) -> None:
        for v, g in zip(views, grads):
            if g is None:
                if first:
                    v.zero_()
            elif first:
                v.copy_(g)
            else:
                v.add_(g)

    def _check_complete(self) -> None:
        missing = [f"{n!r} half {h}" for n, c in zip(self._names, self._count) for h in (0, 1) if c[h] == 0]
        if missing:
            raise ValueError(
                "Soup.step: no soup.backward(name, half, loss) call for " + ", ".join(missing)
                + "; every objective needs both halves of its minibatch before step()"
            )

    def step(self, epoch: float) -> dict[str, Any]:
        """Update λ of every level and write the combined direction into θ's ``.grad``.

        ``.grad`` of each shared parameter is ASSIGNED (created when None): earlier contents are
        replaced. Returns device tensors / floats for logging: ``lambda/<p>``, ``entropy/<p>``,
        ``eta/<q>`` (η_q, the penalty of level q+1) and ``weight/<name>``; levels 1-based.
        """
        self._check_complete()
        coeffs = self.coefficients(epoch)
        etas = [lv.penalty.value(epoch) if lv.penalty is not None else 1.0 for lv in self._levels[1:]]
        losses = torch.stack([(l0 + l1) * 0.5 for l0, l1 in self._loss])

        lams: list[Tensor] = []
        if self._buffered:
            full = self._buf[0] @ self._buf[1].T
            if self._head_buf is not None:
                diag = torch.stack([torch.dot(a, b) for a, b in zip(self._head_buf[0], self._head_buf[1])])
                full = full + torch.diag(diag)
            for p, lv in enumerate(self._levels):
                lo, hi = self._bounds[p]
                if lv.weighting.needs_gram:
                    gram = full[lo:hi, lo:hi]
                    if p in self._fold:
                        u, eta = self._fold[p], etas[p]
                        gram = gram + eta * (full[lo:hi, u : u + 1] + full[u : u + 1, lo:hi]) + (eta * eta) * full[u, u]
                    lams.append(lv.weighting.update(gram, losses[lo:hi]))
                else:
                    lams.append(lv.weighting.update(None, losses[lo:hi]))
            w = torch.cat([c * lam.to(torch.float32) for c, lam in zip(coeffs, lams)])
            direction = (w.repeat(2) @ self._buf.view(2 * len(self._names), self._dim)) * 0.5
            for p, src in zip(self._shared, self._split(direction, self._shared)):
                if p.grad is None:
                    p.grad = torch.empty_like(p)
                p.grad.copy_(src)
        else:
            # The weights were used at backward time; update() is for the weighting's bookkeeping.
            used = [lv.weighting.weights for lv in self._levels]
            for p, lv in enumerate(self._levels):
                lo, hi = self._bounds[p]
                lv.weighting.update(None, losses[lo:hi])
            lams = used
            w = torch.cat([c * lam.to(torch.float32) for c, lam in zip(coeffs, lams)])
            for p, param in enumerate(self._shared):
                if param.grad is None:
                    param.grad = torch.zeros_like(param)
            for level in range(1, len(self._levels)):
                grads = [param.grad for param in self._shared]
                for g, v in zip(grads, self._acc_views[level]):
                    g.add_(v, alpha=coeffs[level])

        self._reset_step()
        stats: dict[str, Any] = {}
        for p, lam in enumerate(lams, start=1):
            stats[f"lambda/{p}"] = lam
            stats[f"entropy/{p}"] = entropy(lam)
        for q, eta in enumerate(etas, start=1):
            stats[f"eta/{q}"] = eta
        for i, n in enumerate(self._names):
            stats[f"weight/{n}"] = w[i]
        stats["losses"] = losses
        return stats

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients taken in since the last step and clear ``.grad`` of θ and heads."""
        self._reset_step()
        for p in self._shared + [q for hp in self._heads for q in hp]:
            if p.grad is None:
                continue
            if set_to_none:
                p.grad = None
            else:
                p.grad.zero_()

    def state_dict(self) -> dict[str, Any]:
        """λ of every level (and the level layout, checked on load)."""
        return {
            "levels": [list(lv.names) for lv in self._levels],
            "weightings": [lv.weighting.state_dict() for lv in self._levels],
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        layout = [list(lv.names) for lv in self._levels]
        if list(map(list, state["levels"])) != layout:
            raise ValueError(f"Soup.load_state_dict: checkpoint levels {state['levels']} differ from this soup's {layout}")
        for lv, sd in zip(self._levels, state["weightings"]):
            lv.weighting.load_state_dict(sd)

    def __repr__(self) -> str:
        inner = " > ".join(f"[{', '.join(lv.names)}]:{lv.weighting!r}" for lv in self._levels)
        return f"Soup({inner}, gram_params={self.gram_params!r}, buffered={self._buffered})"


def _penalties(recipe: str, given: list[PenaltySchedule] | None, default: list[PenaltySchedule]) -> list[PenaltySchedule]:
    if given is None:
        return default
    given = list(given)
    if len(given) != len(default):
        raise ValueError(f"make_soup: recipe {recipe!r} needs {len(default)} penalty schedule(s) here, got {len(given)}")
    return given


def make_soup(
    recipe: str,
    shared_params: Sequence[Parameter],
    heads: Mapping[str, Sequence[Parameter]],
    objectives: list[str],
    ssl: str | None,
    levels: str | None = None,
    penalties: list[PenaltySchedule] | None = None,
    modo: dict | None = None,
    static_weights: dict[str, float] | None = None,
    gram_params: str = "shared",
) -> Soup:
    """Build the :class:`Soup` of one recipe (SPEC §2).

    ``vs``: one level, every objective incl. SSL, MoDo. ``vc``: supervised objectives with MoDo
    on the penalised Gramian, SSL below with η (default 0 + 0.02/epoch, cap 1.5). ``vm``: levels
    from ``levels`` (see :func:`parse_levels`), MoDo inside each; η_1 default 0.1 + 0.02/epoch,
    η_2.. 0 + 0.02/epoch, caps 1.5. ``joint``: mean of supervised + η SSL (vc's η), no MoDo.
    ``mean``: equal-weight mean of ``objectives``. ``static``: fixed ``static_weights``.
    ``ssl``: the SSL objective alone. ``modo`` holds MoDo's keyword arguments (gamma, rho,
    normalize) and is ignored by recipes without MoDo. Single-objective levels use weight 1.
    """
    if recipe not in RECIPES:
        raise ValueError(f"make_soup: unknown recipe {recipe!r}; valid recipes: {', '.join(RECIPES)}")
    objectives = list(objectives)
    if len(set(objectives)) != len(objectives):
        raise ValueError(f"make_soup: duplicate objectives in {objectives}")
    if not objectives:
        raise ValueError("make_soup: no objectives")
    unknown = [k for k in heads if k not in objectives]
    if unknown:
        raise ValueError(f"make_soup: heads given for {unknown}, which are not among the objectives {objectives}")
    if levels is not None and recipe != "vm":
        raise ValueError(f"make_soup: levels are only for recipe 'vm', got levels={levels!r} for {recipe!r}")
    if static_weights is not None and recipe != "static":
        raise ValueError(f"make_soup: static_weights are only for recipe 'static', not {recipe!r}")
    if penalties and recipe not in ("vc", "vm", "joint"):
        raise ValueError(f"make_soup: recipe {recipe!r} has no penalty schedule, got {penalties}")
    modo_kw = dict(modo or {})
    bad_keys = sorted(set(modo_kw) - {"gamma", "rho", "normalize"})
    if bad_keys:
        raise ValueError(f"make_soup: unknown MoDo options {bad_keys}; valid: gamma, rho, normalize")
    has_ssl = ssl is not None and ssl in objectives
    supervised = [o for o in objectives if o != ssl]
    if recipe in ("vc", "joint", "ssl") and not has_ssl:
        raise ValueError(f"make_soup: recipe {recipe!r} needs the SSL objective {ssl!r} among the objectives {objectives}")
    if recipe in ("vc", "joint") and not supervised:
        raise ValueError(f"make_soup: recipe {recipe!r} needs at least one supervised objective besides {ssl!r}")

    def dynamic(k: int) -> Weighting:
        return MoDo(k, **modo_kw) if k > 1 else MeanWeighting(1)

    fold = False
    if recipe == "vs":
        lv = [Level(objectives, dynamic(len(objectives)))]
    elif recipe in ("vc", "joint"):
        (eta,) = _penalties(recipe, penalties, [VC_PENALTY])
        top = dynamic(len(supervised)) if recipe == "vc" else MeanWeighting(len(supervised))
        lv = [Level(supervised, top), Level([ssl], MeanWeighting(1), eta)]
        fold = recipe == "vc"
    elif recipe == "vm":
        if levels is None:
            raise ValueError("make_soup: recipe 'vm' needs levels, e.g. 'asr>st>ssl'")
        groups = parse_levels(levels, objectives, ssl)
        etas = _penalties(recipe, penalties, [VM_PENALTY_FIRST] + [VM_PENALTY_REST] * (len(groups) - 2))
        lv = [Level(g, dynamic(len(g)), None if p == 0 else etas[p - 1]) for p, g in enumerate(groups)]
    elif recipe == "mean":
        lv = [Level(objectives, MeanWeighting(len(objectives)))]
    elif recipe == "static":
        if static_weights is None:
            raise ValueError("make_soup: recipe 'static' needs static_weights {objective: weight}")
        missing = [o for o in objectives if o not in static_weights]
        extra = [o for o in static_weights if o not in objectives]
        if missing or extra:
            raise ValueError(
                f"make_soup: static_weights must name every objective once: missing {missing}, unknown {extra}"
            )
        lv = [Level(objectives, StaticWeighting([float(static_weights[o]) for o in objectives]))]
    else:  # ssl
        if supervised:
            raise ValueError(f"make_soup: recipe 'ssl' trains the SSL objective {ssl!r} only, got also {supervised}")
        lv = [Level([ssl], MeanWeighting(1))]
    used = {n for level in lv for n in level.names}
    return Soup(
        shared_params,
        {k: v for k, v in heads.items() if k in used},
        lv,
        gram_params=gram_params,
        penalize_lower_in_gram=fold,
    )
