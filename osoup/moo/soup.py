"""The combining engine :class:`Soup`; build one per training method with
:func:`osoup.moo.methods.make_soup`.

A plain PyTorch loop trains any method the same way::

    soup = make_soup("vm", shared, heads, objectives, ssl="ssl", levels="asr>st>ssl")
    for step in ...:
        soup.begin_step(epoch)                        # optional: weights known at backward time
        for name in soup.objectives:
            for half in (0, 1):                       # two disjoint halves of name's minibatch
                soup.backward(name, half, loss_of(name, half))
        stats = soup.step(epoch=step / steps_per_epoch)   # writes the combined .grad of θ
        opt_shared.step(); opt_heads.step(); soup.zero_grad()

Update of the shared parameters θ (paper eq. 13/15/25/28, see :mod:`osoup.moo.lambdas`):
    .grad(θ) = Σ_p c_p Σ_{m ∈ level p} λ^p_m (g_m^(0) + g_m^(1)) / 2,   c_1 = 1, c_p = Π_{q<p} η_q.
Heads get ``0.5 ×`` each half's gradient in ``.grad``: the plain gradient of the mean of the
halves, never scaled by λ or η (eq. 14).

Cost (``docs/design.md``, "MOO core"): no forward or backward beyond the plain joint step.
Per-objective gradients of θ are kept (:mod:`osoup.moo.buffers`) only for the objectives of
levels that need a Gramian (:mod:`osoup.moo.layout`) and only over the MOO layers (all of θ,
or the layers :mod:`osoup.moo.selection` picks); every other gradient goes straight into
``.grad`` with its weight, known before the backward. Nothing in :meth:`Soup.step` reads a
value back to the host (except a probe step's choice of layers, and torchjd's own solvers).
"""
from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import Parameter

from osoup.moo.buffers import LevelAccumulators, ObjectiveBuffers, ProbeBuffer
from osoup.moo.checks import GRAM_PARAMS, check_params, heads_of, layout_of, objective_of
from osoup.moo.conflict_score import conflict_scores
from osoup.moo.lambdas import Level, coefficients, direct_scales, gram_kinds, penalties, step_stats, update_lambdas, weights
from osoup.moo.selection import count_sketch_into, make_selection
from osoup.moo.step_state import StepState

__all__ = ["GRAM_PARAMS", "Level", "Soup", "count_sketch_into"]  # count_sketch_into: for older callers


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
        moo_layers: layer selection (:mod:`osoup.moo.selection`). ``None``: every layer is a
            MOO layer (full MOO). An int k: the k most conflicting groups; a float in (0, 1]:
            that fraction of the groups (rounded up). Only the MOO layers keep per-objective
            gradients; the others get ``Σ_m c_p λ^k_m g_m`` straight into ``.grad`` with the
            weights known before the step. λ is one vector per level, from the MOO layers'
            Gramian.
        conflict_interval: every this many steps (from step 0) a probe step also keeps the
            other layers' per-objective gradients and re-selects the most conflicting groups
            (:func:`osoup.moo.conflict_score.conflict_scores`, pairs inside each Gramian-using
            level). Before the first probe nothing is selected: λ's first update is at step 1.
        probe_coords: ``None``: a probe keeps every coordinate of the other layers; an int n:
            an n-bucket CountSketch per layer group (exact for groups of at most n coordinates).
        buffer_dtype: storage of the per-objective gradients (``torch.float32`` or ``"fp32"``;
            ``torch.bfloat16`` or ``"bf16"`` halves it); Gramians and λ stay fp32.
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
        buffer_dtype: torch.dtype | str = torch.float32,
    ) -> None:
        self._shared, self._levels = list(shared_params), list(levels)
        self._layout = layout_of(self._shared, self._levels, gram_params, penalize_lower_in_gram)
        self._heads = heads_of(heads, self._layout.names)
        check_params(self._shared, self._heads, self._layout.names)
        self.gram_params = gram_params
        for lv in self._levels:
            lv.weighting.to(self._device, torch.float32)
        rows = self._layout.rows
        self._selection = make_selection(self._shared, layer_groups, moo_layers, conflict_interval, probe_coords, bool(rows))
        self._buffers = ObjectiveBuffers(rows, self._shared, self._heads, gram_params == "all", self._selection.plan,
                                         buffer_dtype)
        self._accumulators = LevelAccumulators(self._shared)
        self._step_count = 0
        self._step = self._new_step()

    @property
    def _device(self) -> torch.device:
        return self._shared[0].device

    @property
    def penalize_lower_in_gram(self) -> bool:
        """Whether lower objectives are folded into Gramian rows (vc, eq. 9/12)."""
        return self._layout.fold_lower

    def _new_step(self) -> StepState:
        probe = None
        if self._selection.probes_at(self._step_count):
            probe = ProbeBuffer(len(self._layout.rows), self._selection.plan, self._selection.groups, self._device)
        return StepState.new(len(self._layout.names), probe)

    # ----------------------------------------------------------------- read-only views
    @property
    def objectives(self) -> list[str]:
        """Objective names in the soup's order: level 1's objectives first, then level 2's, ..."""
        return list(self._layout.names)

    @property
    def levels(self) -> list[Level]:
        return list(self._levels)

    @property
    def buffered(self) -> bool:
        """True when per-objective gradients of θ are kept (some level needs a Gramian)."""
        return bool(self._layout.rows)

    @property
    def layer_groups(self) -> list[str]:
        """Names of the layer groups (``["all"]`` without ``layer_groups``)."""
        return list(self._selection.groups.names)

    @property
    def selected_layers(self) -> list[str]:
        """The MOO layers now (all groups without layer selection; none before the first probe)."""
        return self._selection.selected_names

    @property
    def conflict_scores(self) -> dict[str, Tensor]:
        """Scores of the last probe per group (device tensors; empty before the first probe)."""
        scores = self._selection.scores
        return {} if scores is None else {n: scores[g] for g, n in enumerate(self._selection.groups.names)}

    @property
    def probe_step(self) -> bool:
        """True when the step now being assembled is a probe step."""
        return self._step.probe is not None

    def coefficients(self, epoch: float) -> list[float]:
        """c_p per level: c_1 = 1, c_p = Π_{q<p} η_q(epoch)."""
        return coefficients(self._levels, epoch)

    def weights_now(self, epoch: float) -> dict[str, Tensor]:
        """Per-objective weight w_m = c_p λ^p_m with the current λ (no update), on device."""
        coeffs = self.coefficients(epoch)
        return {n: coeffs[p] * lv.weighting.weights[i] for p, lv in enumerate(self._levels) for i, n in enumerate(lv.names)}

    # ----------------------------------------------------------------- one step
    def begin_step(self, epoch: float) -> None:
        """Announce the (fractional) epoch of the step about to be assembled.

        Call it after :meth:`zero_grad` and before the step's first :meth:`backward`. The
        weights c_p(epoch)·λ^k_m of gradients that go straight into ``.grad`` are then known at
        backward time. Without it the engine is still exact: lower levels' direct gradients
        wait in one θ-sized accumulator per level until :meth:`step` knows the epoch (memory).
        """
        if self._step.started:
            raise ValueError("Soup.begin_step must come before the step's first backward()")
        if not math.isfinite(epoch) or epoch < 0:
            raise ValueError(f"Soup.begin_step: epoch must be finite and >= 0, got {epoch!r}")
        self._step.epoch = float(epoch)
        self._step.scales = None

    def backward(self, name: str, half: int, loss: Tensor, retain_graph: bool = False) -> None:
        """Take in the loss of one half (0 or 1) of objective ``name``'s minibatch.

        Gradients of the MOO layers of θ are stored for :meth:`step` when the objective's level
        needs a Gramian; every other gradient of θ is added to ``.grad`` (or to a lower level's
        accumulator) with its already known weight; head gradients are added to ``.grad`` times
        0.5. Calling it again for the same objective and half adds up (gradient accumulation:
        scale the losses yourself).
        """
        m = objective_of(self._layout.index, name, half, loss)
        heads = self._heads[m]
        grads = torch.autograd.grad(loss.reshape(()), self._shared + heads, allow_unused=True, retain_graph=retain_graph)
        g_shared, g_head = grads[: len(self._shared)], grads[len(self._shared) :]
        _add_half(heads, g_head)
        if self._step.grad_fresh:
            _zeroed_grads(self._shared)
            self._step.grad_fresh = False
        self._route(m, half, g_shared, g_head)
        self._step.record(m, half, loss)

    def _route(self, m: int, half: int, g_shared: Sequence[Tensor | None], g_head: Sequence[Tensor | None]) -> None:
        """Buffer what the step's Gramian needs; send every other θ gradient on with its weight."""
        level, r = self._layout.level_of[m], self._layout.row_of.get(m)
        if r is None:
            self._direct(level, m, range(len(self._shared)), g_shared)
            return
        self._buffers.write(half, r, g_shared, g_head, first=self._step.counts[m][half] == 0)
        rest_idx = self._selection.plan.rest_idx
        if rest_idx:
            rest = [g_shared[j] for j in rest_idx]
            self._direct(level, m, rest_idx, rest)
            if self._step.probe is not None:
                self._step.probe.add(r, rest)

    def _direct(self, level: int, m: int, idx: Sequence[int], grads: Sequence[Tensor | None]) -> None:
        """Add 0.5 w_m g to .grad (level 1 or epoch known) or to the level's accumulator."""
        scale = self._step_scales()[m]
        pairs = [(j, g) for j, g in zip(idx, grads) if g is not None]
        if not pairs:
            return
        gs = [g if g.dtype == torch.float32 else g.float() for _, g in pairs]
        if level == 0 or self._step.epoch is not None:
            targets = [self._shared[j].grad for j, _ in pairs]
        else:
            views = self._accumulators.views(level, self._step.acc_written)
            targets = [views[j] for j, _ in pairs]
        torch._foreach_add_(targets, torch._foreach_mul(gs, scale))

    def _step_scales(self) -> Tensor:
        if self._step.scales is None:
            self._step.scales = direct_scales(self._levels, self._step.epoch, self._device)
        return self._step.scales

    def step(self, epoch: float) -> dict[str, Any]:
        """Update λ of every level and write the combined direction into θ's ``.grad``.

        ``.grad`` of each shared parameter is ASSIGNED at the step's first backward (created
        when None, earlier contents dropped). MOO layers get ``Σ_m c_p λ^{k+1}_m ḡ_m``; other
        layers got ``Σ_m c_p λ^k_m ḡ_m`` during the backwards (λ^k = λ^{k+1} for levels without
        Gramian). Returns device tensors / floats for logging: ``lambda/<p>``, ``entropy/<p>``,
        ``eta/<q>`` (η_q, the penalty of level q+1), ``weight/<name>`` (the MOO layers'
        weight), ``losses``; on probe steps also ``conflict/<group>``. Levels are 1-based.
        """
        st = self._step
        st.check_complete(self._layout.names)
        if st.epoch is not None and not math.isclose(epoch, st.epoch, rel_tol=1e-12, abs_tol=1e-12):
            raise ValueError(f"Soup.step: epoch {epoch!r} differs from begin_step's {st.epoch!r}")
        coeffs, etas, losses = self.coefficients(epoch), penalties(self._levels, epoch), st.mean_losses()
        grams = self._buffers.grams(gram_kinds(self._levels)) if self._buffers.has_gram else None
        lams = update_lambdas(self._levels, self._layout, grams, losses, etas)
        w = weights(coeffs, lams, self._device)
        self._buffers.add_direction(w)
        self._accumulators.flush(coeffs, st.acc_written)
        stats = step_stats(self._layout.names, lams, etas, w, losses)
        if st.probe is not None:
            stats.update(self._probe(st))
        self._step_count += 1
        self._step = self._new_step()
        return stats

    def _probe(self, st: StepState) -> dict[str, Tensor]:
        """Score every layer group and re-select the MOO layers (the probe's one host sync)."""
        groups = self._selection.groups.names
        gram = self._buffers.group_grams(st.probe, len(groups))
        scores = conflict_scores(gram, self._layout.pair_mask(self._device))
        st.probe = None  # free the other layers' gradients before a new layout
        if self._selection.reselect(scores):
            self._buffers.relayout(self._selection.plan)
        return {f"conflict/{n}": scores[g] for g, n in enumerate(groups)}

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the gradients taken in since the last step and clear ``.grad`` of θ and heads."""
        self._step = self._new_step()
        for p in self._shared + [q for hp in self._heads for q in hp]:
            if p.grad is not None and set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    # ----------------------------------------------------------------- data parallelism
    def pending_buffers(self) -> list[Tensor]:
        """The gradient buffers of the step being assembled that :meth:`step` reads besides
        ``.grad``: the per-objective gradients of the MOO layers ``[2, R, D]`` (and of the heads
        with ``gram_params="all"``), lower levels' accumulators, a probe step's other-layer
        gradients. Valid between the last :meth:`backward` and :meth:`step`; a caller may check
        them (e.g. for non-finite values) or reduce them in place (see :meth:`reduce_pending`)."""
        probe = self._step.probe
        extra = [probe.data] if probe is not None and probe.data is not None else []
        return self._buffers.pending() + self._accumulators.pending(self._step.acc_written) + extra

    def direct_params(self) -> list[Parameter]:
        """Shared parameters whose ``.grad`` the backwards wrote (gradients with weights known
        in advance); the others' ``.grad`` stays zero until :meth:`step` writes the combined
        direction from :meth:`pending_buffers`. A data-parallel caller reduces these ``.grad``
        (and the heads') and the pending buffers, nothing else."""
        if len(self._layout.rows) < len(self._layout.names):
            return list(self._shared)
        return [self._shared[j] for j in self._selection.plan.rest_idx]

    def reduce_pending(self, fn: Callable[[list[Tensor]], None]) -> None:
        """Data parallelism: call ``fn`` once with every tensor :meth:`step` will read besides
        ``.grad`` (:meth:`pending_buffers`, then the per-objective losses ``[M, 2]`` of both
        halves); ``fn`` reduces them in place, e.g. one fused all-reduce (sum) across workers.
        :meth:`step` then sees the summed gradients and losses, so every worker computes the
        same λ. ``.grad`` of θ and of the heads is the caller's to reduce, as in plain training.
        Call after every :meth:`backward` of the step and before :meth:`step`."""
        self._step.check_complete(self._layout.names)
        losses = self._step.loss_pairs()
        fn(self.pending_buffers() + [losses])
        self._step.set_loss_pairs(losses)

    # ----------------------------------------------------------------- checkpoints
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
        if self._selection.enabled and "selected_layers" in state:
            if self._selection.restore(state["selected_layers"]):
                self._buffers.relayout(self._selection.plan)
        self._step = self._new_step()

    def __repr__(self) -> str:
        inner = " > ".join(f"[{', '.join(lv.names)}]:{lv.weighting!r}" for lv in self._levels)
        sel = self._selection
        moo = f", moo_layers={sel.k}/{len(sel.groups.names)}" if sel.enabled else ""
        return f"Soup({inner}, gram_params={self.gram_params!r}, buffered={self.buffered}{moo})"


def _add_half(params: Sequence[Tensor], grads: Sequence[Tensor | None]) -> None:
    """``.grad += 0.5 g`` (created when None): a head's gradient of the mean of the halves."""
    for p, g in zip(params, grads):
        if g is None:
            continue
        if p.grad is None:
            p.grad = g.mul(0.5)
        else:
            p.grad.add_(g, alpha=0.5)


def _zeroed_grads(params: Sequence[Tensor]) -> None:
    """Give every parameter a zero ``.grad`` (kept tensors are zeroed in place)."""
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        else:
            p.grad.zero_()
