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

Cost (issue 4): no forward or backward pass beyond the plain joint step (every objective
has its own batch, so its backward is needed anyway). Per-objective gradients of θ are kept,
in one fp32 buffer ``[2, R, D_MOO]``, only for the R objectives of levels that need a Gramian
and only over the MOO layers (all of θ, or the selected layers with ``moo_layers``); every other
gradient goes straight into ``.grad`` with its weight, which is known before the backward.
Recipes without Gramian (joint/mean/static/ssl, loss-based weightings) cost what plain
training costs. Gramians are built on the device; nothing in :meth:`Soup.step` reads a value
back to the host (except a probe step's choice of layers, and torchjd's own solvers).
Call :meth:`Soup.begin_step` (epoch) before the backwards to let lower levels' direct
gradients use their coefficient at once; without it they wait in a θ-sized accumulator.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import Parameter

from osoup.moo.levels import parse_levels
from osoup.moo.schedule import PenaltySchedule
from osoup.moo.registry import WEIGHTINGS, make_weighting
from osoup.moo.weighting import MeanWeighting, StaticWeighting, Weighting, entropy

from osoup.moo.methods import METHODS, VC_PENALTY, VM_PENALTY_FIRST, VM_PENALTY_REST

RECIPES = METHODS  # old name, kept for callers
GRAM_PARAMS = ("shared", "all")


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


_HASH_P = 2_147_483_647  # 2^31 - 1; coordinates times the multipliers stay below 2^62


def count_sketch_into(out: Tensor, seed: int, offset: int, flat: Tensor) -> None:
    """Add the CountSketch of ``flat`` (coordinates ``offset, offset+1, ..`` of a vector) to the
    buckets ``out``: coordinate i goes to bucket h(i) with sign s(i), two hashes of i and
    ``seed``, so nothing per coordinate is stored and every process agrees. Sketched inner
    products are unbiased, with an error of about ‖a‖‖b‖/√len(out)."""
    i = torch.arange(offset, offset + flat.numel(), device=flat.device, dtype=torch.int64)
    bucket = ((i * 1_103_515_245 + 12_345 + seed) % _HASH_P) % out.numel()
    sign = 1.0 - 2.0 * (((i * 48_271 + 11 + 7 * seed) % _HASH_P) % 2).to(flat.dtype)
    out.index_add_(0, bucket, flat * sign)


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
        layer_groups: name -> parameters, natural units of θ (e.g. ``encoder.layer_groups()``);
            together they must hold every shared parameter exactly once. Needed for
            ``moo_layers``.
        moo_layers: layer selection (SPEC §4). ``None``: every layer is a MOO layer (full
            MOO). An int k: the k most conflicting groups; a float in (0, 1]: that fraction of
            the groups (rounded up). Only the MOO layers keep per-objective gradients; the
            others get ``Σ_m c_p λ^k_m g_m`` straight into ``.grad`` with the weights known
            before the step. λ is one vector per level, computed from the MOO layers' Gramian.
        conflict_interval: every this many steps (from step 0) a probe step also keeps the
            other layers' per-objective gradients (sum of the halves), scores every group by
            the mean pairwise cosine of the objectives' gradients restricted to it (pairs inside
            each Gramian-using level) and selects the most negative. Before the first probe
            nothing is selected: step 0 trains every layer with λ⁰, and λ's first update is at
            step 1. Reading the scores back to choose the groups is the probe's one host sync.
        probe_coords: ``None``: a probe keeps every coordinate of the other layers'
            per-objective gradients (R × |θ_rest| floats). An int n: it keeps a CountSketch of
            n buckets per layer group instead (every coordinate i is added, with a hashed sign,
            to a hashed bucket; the hashes are fixed functions of i, so every rank agrees and
            nothing per coordinate is stored), and those groups' cosines are computed on the
            sketches (R × n floats per group). Sketched inner products are unbiased with an
            error of about ‖a‖‖b‖/√n; a group of at most n coordinates is kept exactly.
    """

    def __init__(
        self,
        shared_params: Sequence[Parameter],
        heads: Mapping[str, Sequence[Parameter]],
        levels: list[Level],
        gram_params: str = "shared",
        penalize_lower_in_gram: bool = False,
        layer_groups: Mapping[str, Sequence[Parameter]] | None = None,
        moo_layers: int | float | None = None,
        conflict_interval: int = 50,
        probe_coords: int | None = None,
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

        # Rows of the per-objective buffers: objectives of Gramian-using levels and the
        # objectives folded into them (vc's SSL). Everything else goes straight into .grad.
        gram_levels = [p for p, lv in enumerate(self._levels) if lv.weighting.needs_gram]
        keep = [p for p in range(len(self._levels)) if p in gram_levels or p in {self._level_of[u] for u in self._fold.values()}]
        self._rows = [m for m in range(len(self._names)) if self._level_of[m] in keep]
        self._row_of = {m: r for r, m in enumerate(self._rows)}
        self._rows_t = torch.tensor(self._rows, dtype=torch.long, device=self._device)
        self._kinds = {self._levels[p].weighting.gram_kind for p in gram_levels}
        bad_kind = self._kinds - {"cross", "mean"}
        if bad_kind:
            raise ValueError(f"Soup: unknown gram_kind {sorted(bad_kind)} (expected 'cross' or 'mean')")
        r = len(self._rows)
        mask = torch.zeros(r, r, dtype=torch.bool)
        for p in gram_levels:
            lo, hi = self._bounds[p]
            for i in range(lo, hi):
                for j in range(i + 1, hi):
                    mask[self._row_of[i], self._row_of[j]] = True
        self._pair_count = int(mask.sum())
        self._pair_mask = mask.to(self._device)

        self._setup_groups(layer_groups, moo_layers, conflict_interval)
        self._setup_probe_sample(probe_coords)
        self._head_buf: list[list[Tensor]] | None = None
        if self._rows and gram_params == "all":
            sizes = [sum(p.numel() for p in self._heads[m]) for m in self._rows]
            self._head_buf = [[torch.zeros(s, device=self._device, dtype=torch.float32) for s in sizes] for _ in range(2)]
            self._head_views = [
                [self._split(self._head_buf[h][r], self._heads[m]) for r, m in enumerate(self._rows)] for h in range(2)
            ]
        self._acc: dict[int, Tensor] = {}
        self._acc_views: dict[int, list[Tensor]] = {}
        self._step_count = 0
        self._last_epoch = 0.0
        self._layout()
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
        """Level p -> index of the single objective of level p+1 to fold into its Gramian."""
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

    def _setup_groups(
        self, layer_groups: Mapping[str, Sequence[Parameter]] | None, moo_layers: int | float | None, interval: int
    ) -> None:
        pos = {id(p): j for j, p in enumerate(self._shared)}
        if layer_groups is None:
            if moo_layers is not None:
                raise ValueError("Soup: moo_layers needs layer_groups (name -> parameters covering θ)")
            self._group_names = ["all"]
            self._group_params = [list(range(len(self._shared)))]
        else:
            self._group_names, self._group_params = [], []
            owner: dict[int, str] = {}
            for name, params in layer_groups.items():
                idx = []
                for p in params:
                    j = pos.get(id(p))
                    if j is None:
                        raise ValueError(f"Soup: layer group {name!r} holds a parameter that is not a shared parameter")
                    if j in owner:
                        raise ValueError(f"Soup: shared parameter {j} is in layer groups {owner[j]!r} and {name!r}")
                    owner[j] = name
                    idx.append(j)
                if not idx:
                    raise ValueError(f"Soup: layer group {name!r} is empty")
                self._group_names.append(str(name))
                self._group_params.append(idx)
            missing = [j for j in range(len(self._shared)) if j not in owner]
            if missing:
                raise ValueError(f"Soup: shared parameters {missing[:10]} are in no layer group; the groups must cover θ")
        n = len(self._group_names)
        if moo_layers is None:
            k = n
        elif isinstance(moo_layers, bool) or not isinstance(moo_layers, (int, float)):
            raise ValueError(f"Soup: moo_layers must be an int k or a fraction in (0, 1], got {moo_layers!r}")
        elif isinstance(moo_layers, int):
            if not 1 <= moo_layers <= n:
                raise ValueError(f"Soup: moo_layers={moo_layers} but there are {n} layer groups {self._group_names}")
            k = moo_layers
        else:
            if not (0 < moo_layers <= 1):
                raise ValueError(f"Soup: a fractional moo_layers must lie in (0, 1], got {moo_layers!r}")
            k = max(1, math.ceil(moo_layers * n - 1e-9))
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"Soup: conflict_interval must be a positive integer, got {interval!r}")
        self._k_sel = k
        self._interval = interval
        self._selection_on = k < n and bool(self._rows)
        self._selected = [] if self._selection_on else list(range(n))
        self._scores: Tensor | None = None

    def _setup_probe_sample(self, n: int | None) -> None:
        """Sketch size per layer group (None: every coordinate) and each parameter's offset
        inside its group."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise ValueError(f"Soup: probe_coords must be a positive integer or None, got {n!r}")
        self._probe_n = n
        self._group_size = [sum(self._numels[j] for j in params) for params in self._group_params]
        self._offset_in_group = [0] * len(self._shared)
        self._group_of = [0] * len(self._shared)
        for g, params in enumerate(self._group_params):
            off = 0
            for j in params:
                self._offset_in_group[j], self._group_of[j] = off, g
                off += self._numels[j]

    def _sketched(self, g: int) -> bool:
        return self._probe_n is not None and self._probe_n < self._group_size[g]

    def _probe_width(self, g: int) -> int:
        return self._probe_n if self._sketched(g) else self._group_size[g]  # type: ignore[return-value]

    @staticmethod
    def _split(flat: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
        views, off = [], 0
        for p in params:
            views.append(flat[off : off + p.numel()].view(p.shape))
            off += p.numel()
        return views

    def _layout(self) -> None:
        """(Re)build the per-objective buffer of the selected groups and the index lists."""
        sel = sorted(self._selected)
        self._sel_idx = [j for g in sel for j in self._group_params[g]]
        rest = [g for g in range(len(self._group_names)) if g not in set(sel)]
        self._rest_idx = [j for g in rest for j in self._group_params[g]]
        self._rest_groups = rest
        self._sel_groups = sel

        def bounds(groups: list[int], size_of: Callable[[int], int]) -> list[tuple[int, int]]:
            out, off = [], 0
            for g in groups:
                size = sum(size_of(j) for j in self._group_params[g])
                out.append((off, off + size))
                off += size
            return out

        self._sel_bounds = bounds(sel, self._numels.__getitem__)
        self._rest_bounds = []  # of each other group in the probe buffer
        off = 0
        for g in rest:
            self._rest_bounds.append((off, off + self._probe_width(g)))
            off += self._probe_width(g)
        self._dim_sel = sum(self._numels[j] for j in self._sel_idx)
        self._dim_probe = off
        self._buf = None  # free the old buffer before allocating the new one
        self._views: list[list[list[Tensor]]] = []
        r = len(self._rows)
        if r:
            self._buf = torch.zeros(2, r, self._dim_sel, device=self._device, dtype=torch.float32)
            params = [self._shared[j] for j in self._sel_idx]
            self._views = [[self._split(self._buf[h, i], params) for i in range(r)] for h in range(2)]

    def _reset_step(self) -> None:
        m = len(self._names)
        self._count = [[0, 0] for _ in range(m)]
        self._loss: list[list[Tensor | None]] = [[None, None] for _ in range(m)]
        self._grad_fresh = True
        self._acc_fresh = {p: True for p in self._acc}
        self._epoch_now: float | None = None
        self._scales: Tensor | None = None
        self._probe = self._selection_on and self._step_count % self._interval == 0
        self._probe_buf: Tensor | None = None

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
        return bool(self._rows)

    @property
    def layer_groups(self) -> list[str]:
        """Names of the layer groups (``["all"]`` without ``layer_groups``)."""
        return list(self._group_names)

    @property
    def selected_layers(self) -> list[str]:
        """The MOO layers now (all groups without layer selection; none before the first probe)."""
        return [self._group_names[g] for g in sorted(self._selected)]

    @property
    def conflict_scores(self) -> dict[str, Tensor]:
        """Scores of the last probe per group (device tensors; empty before the first probe)."""
        if self._scores is None:
            return {}
        return {n: self._scores[g] for g, n in enumerate(self._group_names)}

    @property
    def probe_step(self) -> bool:
        """True when the step now being assembled is a probe step."""
        return self._probe

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

    def begin_step(self, epoch: float) -> None:
        """Announce the (fractional) epoch of the step about to be assembled.

        Call it after :meth:`zero_grad` and before the step's first :meth:`backward`. The
        weights c_p(epoch)·λ^k_m of gradients that go straight into ``.grad`` are then known at
        backward time. Without it the engine is still exact: lower levels' direct gradients
        wait in one θ-sized accumulator per level until :meth:`step` knows the epoch (memory).
        """
        if any(c[0] or c[1] for c in self._count):
            raise ValueError("Soup.begin_step must come before the step's first backward()")
        if not math.isfinite(epoch) or epoch < 0:
            raise ValueError(f"Soup.begin_step: epoch must be finite and >= 0, got {epoch!r}")
        self._epoch_now = float(epoch)
        self._scales = None

    def _step_scales(self) -> Tensor:
        """0.5 × weight of each objective's direct gradients this step (float32, on device)."""
        if self._scales is None:
            known = self._epoch_now is not None
            coeffs = self.coefficients(self._epoch_now) if known else [1.0] * len(self._levels)
            self._scales = 0.5 * torch.cat(
                [c * lv.weighting.weights.to(device=self._device, dtype=torch.float32) for c, lv in zip(coeffs, self._levels)]
            )
        return self._scales

    def backward(self, name: str, half: int, loss: Tensor, retain_graph: bool = False) -> None:
        """Take in the loss of one half (0 or 1) of objective ``name``'s minibatch.

        Gradients of the MOO layers of θ are stored for :meth:`step` when the objective's level
        needs a Gramian; every other gradient of θ is added to ``.grad`` (or to a lower level's
        accumulator) with its already known weight; head gradients are added to ``.grad`` times
        0.5. Calling it again for the same objective and half adds up (gradient accumulation:
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

        if self._grad_fresh:
            for p in self._shared:
                if p.grad is None:
                    p.grad = torch.zeros_like(p)
                else:
                    p.grad.zero_()
            self._grad_fresh = False
        level = self._level_of[m]
        r = self._row_of.get(m)
        if r is None:
            self._direct(level, m, range(len(self._shared)), g_shared)
        else:
            self._write(self._views[half][r], [g_shared[j] for j in self._sel_idx], first)
            if self._head_buf is not None:
                self._write(self._head_views[half][r], g_head, first)
            if self._rest_idx:
                rest = [g_shared[j] for j in self._rest_idx]
                self._direct(level, m, self._rest_idx, rest)
                if self._probe:
                    self._probe_write(r, m, rest)

        self._count[m][half] += 1
        prev = self._loss[m][half]
        value = loss.detach().reshape(()).float()
        self._loss[m][half] = value if prev is None else prev + value

    def _direct(self, level: int, m: int, idx: Sequence[int], grads: Sequence[Tensor | None]) -> None:
        """Add 0.5 w_m g to .grad (level 1 or epoch known) or to the level's accumulator."""
        scale = self._step_scales()[m]
        pairs = [(j, g) for j, g in zip(idx, grads) if g is not None]
        if not pairs:
            return
        gs = [g if g.dtype == torch.float32 else g.float() for _, g in pairs]
        if level == 0 or self._epoch_now is not None:
            targets = [self._shared[j].grad for j, _ in pairs]
        else:
            if level not in self._acc:
                self._acc[level] = torch.zeros(self._dim, device=self._device, dtype=torch.float32)
                self._acc_views[level] = self._split(self._acc[level], self._shared)
                self._acc_fresh[level] = True
            if self._acc_fresh[level]:
                self._acc[level].zero_()
                self._acc_fresh[level] = False
            targets = [self._acc_views[level][j] for j, _ in pairs]
        torch._foreach_add_(targets, torch._foreach_mul(gs, scale))

    def _probe_write(self, r: int, m: int, grads: list[Tensor | None]) -> None:
        """Add objective m's gradient on the non-MOO layers (or its sketch) to its probe row;
        the rows start at zero, so both halves add up."""
        if self._probe_buf is None:
            self._probe_buf = torch.zeros(len(self._rows), self._dim_probe, device=self._device, dtype=torch.float32)
            self._probe_start = {g: a for g, (a, _) in zip(self._rest_groups, self._rest_bounds)}
        row = self._probe_buf[r]
        for j, grad in zip(self._rest_idx, grads):
            if grad is None:
                continue
            g, off = self._group_of[j], self._offset_in_group[j]
            a, flat = self._probe_start[g], grad.reshape(-1).float()
            if self._sketched(g):
                count_sketch_into(row[a : a + self._probe_n], g, off, flat)
            else:
                row[a + off : a + off + flat.numel()].add_(flat)

    @staticmethod
    def _write(views: list[Tensor], grads: Sequence[Tensor | None], first: bool) -> None:
        have = [(v, g) for v, g in zip(views, grads) if g is not None]
        if first:
            for v, g in zip(views, grads):
                if g is None:
                    v.zero_()
            if have:
                torch._foreach_copy_([v for v, _ in have], [g for _, g in have])
        elif have:
            torch._foreach_add_([v for v, _ in have], [g for _, g in have])

    def pending_buffers(self) -> list[Tensor]:
        """The gradient buffers of the step being assembled that :meth:`step` reads besides
        ``.grad``: the per-objective gradients of the MOO layers ``[2, R, D]`` (and of the heads
        with ``gram_params="all"``), lower levels' accumulators, a probe step's other-layer
        gradients. Valid between the last :meth:`backward` and :meth:`step`; a caller may check
        them (e.g. for non-finite values) or reduce them in place (see :meth:`reduce_pending`)."""
        out: list[Tensor] = []
        if self._buf is not None and self._buf.numel() > 0:
            out.append(self._buf)
        if self._head_buf is not None:
            out += [t for half in self._head_buf for t in half]
        out += [acc for level, acc in self._acc.items() if not self._acc_fresh.get(level, True)]
        if self._probe and self._probe_buf is not None:
            out.append(self._probe_buf)
        return out

    def direct_params(self) -> list[Parameter]:
        """Shared parameters whose ``.grad`` the backwards wrote (gradients with weights known
        in advance); the others' ``.grad`` stays zero until :meth:`step` writes the combined
        direction from :meth:`pending_buffers`. A data-parallel caller reduces these ``.grad``
        (and the heads') and the pending buffers, nothing else."""
        if any(self._row_of.get(m) is None for m in range(len(self._names))):
            return list(self._shared)
        return [self._shared[j] for j in self._rest_idx]

    def reduce_pending(self, fn: Callable[[list[Tensor]], None]) -> None:
        """Data parallelism: call ``fn`` once with every tensor :meth:`step` will read besides
        ``.grad`` (:meth:`pending_buffers`, then the per-objective losses ``[M, 2]`` of both
        halves); ``fn`` reduces them in place, e.g. one fused all-reduce (sum) across workers.
        :meth:`step` then sees the summed gradients and losses, so every worker computes the
        same λ. ``.grad`` of θ and of the heads is the caller's to reduce, as in plain training.
        Call after every :meth:`backward` of the step and before :meth:`step`."""
        self._check_complete()
        losses = torch.stack([torch.stack([l0, l1]) for l0, l1 in self._loss])
        fn(self.pending_buffers() + [losses])
        self._loss = [[losses[m, 0], losses[m, 1]] for m in range(len(self._names))]

    def _check_complete(self) -> None:
        missing = [f"{n!r} half {h}" for n, c in zip(self._names, self._count) for h in (0, 1) if c[h] == 0]
        if missing:
            raise ValueError(
                "Soup.step: no soup.backward(name, half, loss) call for " + ", ".join(missing)
                + "; every objective needs both halves of its minibatch before step()"
            )

    def _grams(self) -> dict[str, Tensor]:
        """The Gramians the levels ask for, over the MOO layers (+ heads with gram_params all)."""
        r, d = len(self._rows), self._dim_sel
        out: dict[str, Tensor] = {}
        if "mean" in self._kinds:
            flat = self._buf.view(2 * r, d)
            full = flat @ flat.T
            g00, g01, g11 = full[:r, :r], full[:r, r:], full[r:, r:]
            out["cross"] = g01
            out["mean"] = (g00 + g01 + g01.T + g11) * 0.25
        else:
            out["cross"] = self._buf[0] @ self._buf[1].T
        if self._head_buf is not None:
            h0, h1 = self._head_buf
            d01 = torch.stack([torch.dot(a, b) for a, b in zip(h0, h1)])
            out["cross"] = out["cross"] + torch.diag(d01)
            if "mean" in out:
                d00 = torch.stack([torch.dot(a, a) for a in h0])
                d11 = torch.stack([torch.dot(b, b) for b in h1])
                out["mean"] = out["mean"] + torch.diag((d00 + 2 * d01 + d11) * 0.25)
        return out

    def step(self, epoch: float) -> dict[str, Any]:
        """Update λ of every level and write the combined direction into θ's ``.grad``.

        ``.grad`` of each shared parameter is ASSIGNED at the step's first backward (created
        when None, earlier contents dropped). MOO layers get ``Σ_m c_p λ^{k+1}_m ḡ_m``; other
        layers got ``Σ_m c_p λ^k_m ḡ_m`` during the backwards (λ^k = λ^{k+1} for levels without
        Gramian). Returns device tensors / floats for logging: ``lambda/<p>``, ``entropy/<p>``,
        ``eta/<q>`` (η_q, the penalty of level q+1), ``weight/<name>`` (the MOO layers'
        weight), ``losses``; on probe steps also ``conflict/<group>``. Levels are 1-based.
        """
        self._check_complete()
        if self._epoch_now is not None and not math.isclose(epoch, self._epoch_now, rel_tol=1e-12, abs_tol=1e-12):
            raise ValueError(f"Soup.step: epoch {epoch!r} differs from begin_step's {self._epoch_now!r}")
        coeffs = self.coefficients(epoch)
        etas = [lv.penalty.value(epoch) if lv.penalty is not None else 1.0 for lv in self._levels[1:]]
        losses = torch.stack([(l0 + l1) * 0.5 for l0, l1 in self._loss])
        before = [lv.weighting.weights for lv in self._levels]

        have_sel = bool(self._rows) and (self._dim_sel > 0 or self._head_buf is not None)
        grams = self._grams() if have_sel else {}
        lams: list[Tensor] = []
        for p, lv in enumerate(self._levels):
            lo, hi = self._bounds[p]
            if not lv.weighting.needs_gram:
                lams.append(before[p])
                lv.weighting.update(None, losses[lo:hi])
            elif not have_sel:  # first probe: no MOO layer yet, λ keeps its value
                lams.append(before[p])
            else:
                full = grams[lv.weighting.gram_kind]
                rlo, rhi = self._row_of[lo], self._row_of[hi - 1] + 1
                gram = full[rlo:rhi, rlo:rhi]
                if p in self._fold:
                    u, eta = self._row_of[self._fold[p]], etas[p]
                    gram = gram + eta * (full[rlo:rhi, u : u + 1] + full[u : u + 1, rlo:rhi]) + (eta * eta) * full[u, u]
                lams.append(lv.weighting.update(gram, losses[lo:hi]))
        w = torch.cat([c * lam.to(device=self._device, dtype=torch.float32) for c, lam in zip(coeffs, lams)])

        if self._rows and self._dim_sel > 0:
            wr = w.index_select(0, self._rows_t)
            direction = (wr.repeat(2) @ self._buf.view(2 * len(self._rows), self._dim_sel)) * 0.5
            params = [self._shared[j] for j in self._sel_idx]
            torch._foreach_add_([p.grad for p in params], self._split(direction, params))
        for level, acc in self._acc.items():
            if not self._acc_fresh.get(level, True):
                torch._foreach_add_([p.grad for p in self._shared], self._acc_views[level], alpha=coeffs[level])

        stats: dict[str, Any] = {}
        for p, lam in enumerate(lams, start=1):
            stats[f"lambda/{p}"] = lam
            stats[f"entropy/{p}"] = _entropy_of_weights(lam)
        for q, eta in enumerate(etas, start=1):
            stats[f"eta/{q}"] = eta
        for i, n in enumerate(self._names):
            stats[f"weight/{n}"] = w[i]
        stats["losses"] = losses
        if self._probe:
            self._scores = self._conflict_scores()
            for g, n in enumerate(self._group_names):
                stats[f"conflict/{n}"] = self._scores[g]
            self._reselect()
        self._step_count += 1
        self._last_epoch = float(epoch)
        self._reset_step()
        return stats

    def _conflict_scores(self) -> Tensor:
        """Mean pairwise cosine, per layer group, of the objectives' gradients (sum of halves)."""
        grams: list[Tensor | None] = [None] * len(self._group_names)
        for g, (a, b) in zip(self._sel_groups, self._sel_bounds):
            seg = self._buf[0, :, a:b] + self._buf[1, :, a:b]
            grams[g] = seg @ seg.T
        for g, (a, b) in zip(self._rest_groups, self._rest_bounds):
            seg = self._probe_buf[:, a:b]
            grams[g] = seg @ seg.T
        gram = torch.stack(grams)  # [groups, R, R]
        norms = gram.diagonal(dim1=-2, dim2=-1).clamp_min(0).sqrt()
        cos = gram / (norms.unsqueeze(-1) * norms.unsqueeze(-2)).clamp_min(torch.finfo(gram.dtype).tiny)
        if self._pair_count == 0:
            return torch.zeros(len(self._group_names), device=self._device)
        return (cos * self._pair_mask).sum(dim=(-2, -1)) / self._pair_count

    def _reselect(self) -> None:
        order = torch.argsort(self._scores, stable=True)[: self._k_sel].tolist()  # the probe's host sync
        self._probe_buf = None
        if sorted(order) != sorted(self._selected):
            self._selected = sorted(order)
            self._layout()

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
        """λ of every level (and the level layout, checked on load), the layer selection and
        the step counter that schedules the probes."""
        return {
            "levels": [list(lv.names) for lv in self._levels],
            "weightings": [lv.weighting.state_dict() for lv in self._levels],
            "selected_layers": self.selected_layers,
            "step_count": self._step_count,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        layout = [list(lv.names) for lv in self._levels]
        if list(map(list, state["levels"])) != layout:
            raise ValueError(f"Soup.load_state_dict: checkpoint levels {state['levels']} differ from this soup's {layout}")
        for lv, sd in zip(self._levels, state["weightings"]):
            lv.weighting.load_state_dict(sd)
        if "step_count" in state:
            self._step_count = int(state["step_count"])
        if self._selection_on and "selected_layers" in state:
            names = list(state["selected_layers"])
            unknown = [n for n in names if n not in self._group_names]
            if unknown or len(names) not in (0, self._k_sel):
                raise ValueError(
                    f"Soup.load_state_dict: checkpoint MOO layers {names} do not fit this soup "
                    f"({self._k_sel} of {self._group_names})"
                )
            self._selected = sorted(self._group_names.index(n) for n in names)
            self._layout()
        self._reset_step()

    def __repr__(self) -> str:
        inner = " > ".join(f"[{', '.join(lv.names)}]:{lv.weighting!r}" for lv in self._levels)
        sel = f", moo_layers={self._k_sel}/{len(self._group_names)}" if self._selection_on else ""
        return f"Soup({inner}, gram_params={self.gram_params!r}, buffered={self.buffered}{sel})"


def _entropy_of_weights(lam: Tensor) -> Tensor:
    """Entropy of |λ| / Σ|λ|: λ's entropy for simplex weightings; defined for any weights."""
    a = lam.abs()
    return entropy(a / a.sum().clamp_min(torch.finfo(a.dtype).tiny))


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
    weighting: str = "modo",
    weighting_kwargs: dict | None = None,
    layer_groups: Mapping[str, Sequence[Parameter]] | None = None,
    moo_layers: int | float | None = None,
    conflict_interval: int = 50,
    probe_coords: int | None = None,
) -> Soup:
    """Build the :class:`Soup` of one recipe (SPEC §2).

    ``vs``: one level, every objective incl. SSL, MoDo. ``vc``: supervised objectives with MoDo
    on the penalised Gramian, SSL below with η (default 0 + 0.02/epoch, cap 1.5). ``vm``: levels
    from ``levels`` (see :func:`parse_levels`), MoDo inside each; η_1 default 0.1 + 0.02/epoch,
    η_2.. 0 + 0.02/epoch, caps 1.5. ``joint``: mean of supervised + η SSL (vc's η), no MoDo.
    ``mean``: equal-weight mean of ``objectives``. ``static``: fixed ``static_weights``.
    ``ssl``: the SSL objective alone. ``modo`` holds MoDo's keyword arguments (gamma, rho,
    normalize) and is ignored by recipes without MoDo. Single-objective levels use weight 1.

    ``weighting`` (see :data:`osoup.moo.registry.WEIGHTINGS`) chooses the method inside every
    multi-objective level of vs/vc/vm, with ``weighting_kwargs`` as its options (for ``modo``
    they override ``modo``'s). ``layer_groups``/``moo_layers``/``conflict_interval``/
    ``probe_coords``: layer selection, see :class:`Soup`.
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
    if weighting not in WEIGHTINGS:
        raise ValueError(f"make_soup: unknown weighting {weighting!r}; valid weightings: {', '.join(WEIGHTINGS)}")
    w_kw = dict(weighting_kwargs or {})
    if weighting == "modo":
        w_kw = {**modo_kw, **w_kw}
    has_ssl = ssl is not None and ssl in objectives
    supervised = [o for o in objectives if o != ssl]
    if recipe in ("vc", "joint", "ssl") and not has_ssl:
        raise ValueError(f"make_soup: recipe {recipe!r} needs the SSL objective {ssl!r} among the objectives {objectives}")
    if recipe in ("vc", "joint") and not supervised:
        raise ValueError(f"make_soup: recipe {recipe!r} needs at least one supervised objective besides {ssl!r}")

    def dynamic(k: int) -> Weighting:
        return make_weighting(weighting, k, **w_kw) if k > 1 else MeanWeighting(1)

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
        layer_groups=layer_groups,
        moo_layers=moo_layers,
        conflict_interval=conflict_interval,
        probe_coords=probe_coords,
    )
