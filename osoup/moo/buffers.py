"""Per-objective gradient buffers of one step and the Gramians built from them.

The soup keeps per-objective gradients only where a Gramian needs them (``docs/design.md``,
"MOO core"): the MOO layers of θ in one buffer ``[2, R, D]`` (half, row, coordinate; fp32, or
bf16 to halve its memory, see :func:`buffer_dtype_of`),
the heads' gradients with ``gram_params="all"`` (they add ``diag(⟨∇φ_m l_m^(0), ∇φ_m
l_m^(1)⟩)``, paper eq. 11-12), a lower level's direct gradients while its coefficient is not
known yet (:class:`LevelAccumulators`), and a probe step's other-layer gradients
(:class:`ProbeBuffer`).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor

from osoup.moo.selection import LayerGroups, Plan, count_sketch_into

GRAM_KINDS = ("cross", "mean")
BUFFER_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
"""Storage types of the per-objective buffers, by the name ``--moo-buffer-dtype`` takes."""
UPCAST_CHUNK = 1 << 24
"""fp32 elements of one upcast slice of a bf16 buffer (64 MiB): Gramians and directions read a
bf16 buffer slice by slice, so no fp32 copy of the whole buffer is ever made."""


def buffer_dtype_of(value: torch.dtype | str) -> torch.dtype:
    """The torch dtype of ``value`` (``"fp32"``, ``"bf16"`` or one of their dtypes)."""
    dtype = BUFFER_DTYPES.get(value, value) if isinstance(value, str) else value
    if dtype not in BUFFER_DTYPES.values():
        raise ValueError(f"per-objective buffer dtype must be one of {', '.join(BUFFER_DTYPES)}, got {value!r}")
    return dtype


def gram_fp32(a: Tensor, b: Tensor) -> Tensor:
    """``a @ bᵀ`` accumulated in fp32 ([Ra, D] x [Rb, D] -> [Ra, Rb]); fp32 inputs take the plain
    matmul, others are upcast slice by slice (test/test_moo_buffers.py)."""
    if a.dtype == torch.float32 and b.dtype == torch.float32:
        return a @ b.T
    out = torch.zeros(a.shape[0], b.shape[0], device=a.device, dtype=torch.float32)
    step = max(1, UPCAST_CHUNK // max(1, a.shape[0] + b.shape[0]))
    for s in range(0, a.shape[1], step):
        sa = a[:, s : s + step].float()
        out.addmm_(sa, sa.T if b is a else b[:, s : s + step].float().T)
    return out


def combine_rows_fp32(w: Tensor, flat: Tensor) -> Tensor:
    """``w @ flat`` in fp32 ([R] x [R, D] -> [D]), upcasting a low-precision ``flat`` by slices."""
    if flat.dtype == torch.float32:
        return w @ flat
    out = torch.empty(flat.shape[1], device=flat.device, dtype=torch.float32)
    step = max(1, UPCAST_CHUNK // max(1, flat.shape[0]))
    for s in range(0, flat.shape[1], step):
        torch.mv(flat[:, s : s + step].float().T, w, out=out[s : s + step])
    return out


def split_views(flat: Tensor, params: Sequence[Tensor]) -> list[Tensor]:
    """Views of consecutive pieces of ``flat`` shaped like ``params``."""
    views, off = [], 0
    for p in params:
        views.append(flat[off : off + p.numel()].view(p.shape))
        off += p.numel()
    return views


def write_views(views: Sequence[Tensor], grads: Sequence[Tensor | None], first: bool) -> None:
    """Copy ``grads`` into ``views`` (``first``: a missing gradient zeroes its view) or add them."""
    have = [(v, g) for v, g in zip(views, grads) if g is not None]
    if first:
        for v, g in zip(views, grads):
            if g is None:
                v.zero_()
        if have:
            torch._foreach_copy_([v for v, _ in have], [g for _, g in have])
    elif have:
        torch._foreach_add_([v for v, _ in have], [g for _, g in have])


class ObjectiveBuffers:
    """Both halves' gradients of the R buffered objectives: θ's MOO layers and, optionally, heads.

    Args:
        rows: the buffered objectives (row r holds objective ``rows[r]``).
        shared: θ.
        heads: every objective's head parameters; buffered when ``with_heads``.
        plan: the MOO layers now (:meth:`relayout` replaces it).
        dtype: storage of the buffers (:func:`buffer_dtype_of`); Gramians and directions are
            always computed in fp32.
    """

    def __init__(
        self, rows: Sequence[int], shared: Sequence[Tensor], heads: Sequence[Sequence[Tensor]], with_heads: bool, plan: Plan,
        dtype: torch.dtype | str = torch.float32,
    ) -> None:
        self.dtype = buffer_dtype_of(dtype)
        self._shared = list(shared)
        self._device = self._shared[0].device
        self._r = len(rows)
        self._rows_t = torch.tensor(list(rows), dtype=torch.long, device=self._device)
        self.heads: list[list[Tensor]] | None = None
        if rows and with_heads:
            sizes = [sum(p.numel() for p in heads[m]) for m in rows]
            self.heads = [[torch.zeros(s, device=self._device, dtype=self.dtype) for s in sizes] for _ in range(2)]
            self._head_views = [[split_views(self.heads[h][r], heads[m]) for r, m in enumerate(rows)] for h in range(2)]
        self.theta: Tensor | None = None
        self.relayout(plan)

    def relayout(self, plan: Plan) -> None:
        """Allocate the θ buffer ``[2, R, plan.dim_sel]`` of the plan's MOO layers."""
        self.plan = plan
        self.theta = None  # free the old buffer before allocating the new one
        self._views: list[list[list[Tensor]]] = []
        if self._r:
            self.theta = torch.zeros(2, self._r, plan.dim_sel, device=self._device, dtype=self.dtype)
            params = [self._shared[j] for j in plan.sel_idx]
            self._views = [[split_views(self.theta[h, i], params) for i in range(self._r)] for h in range(2)]

    def write(self, half: int, row: int, g_shared: Sequence[Tensor | None], g_head: Sequence[Tensor | None], first: bool) -> None:
        """Take in one backward of a buffered objective: θ's gradients (all of θ, in order) and
        its head's. The half's first backward copies, later ones add."""
        write_views(self._views[half][row], [g_shared[j] for j in self.plan.sel_idx], first)
        if self.heads is not None:
            write_views(self._head_views[half][row], g_head, first)

    @property
    def has_gram(self) -> bool:
        """Whether there is anything to build a Gramian from (before the first probe of a
        layer selection there is no MOO layer and, without buffered heads, nothing)."""
        return bool(self._r) and (self.plan.dim_sel > 0 or self.heads is not None)

    def grams(self, kinds: set[str]) -> dict[str, Tensor]:
        """The Gramians ``kinds`` asks for, ``[R, R]``: ``cross`` = G1 G2ᵀ, ``mean`` = Ḡ Ḡᵀ with
        Ḡ = (G1 + G2) / 2; over the MOO layers, plus the heads' diagonal with heads buffered."""
        r, d = self._r, self.plan.dim_sel
        out: dict[str, Tensor] = {}
        if "mean" in kinds:
            flat = self.theta.view(2 * r, d)
            full = gram_fp32(flat, flat)
            g00, g01, g11 = full[:r, :r], full[:r, r:], full[r:, r:]
            out["cross"] = g01
            out["mean"] = (g00 + g01 + g01.T + g11) * 0.25
        else:
            out["cross"] = gram_fp32(self.theta[0], self.theta[1])
        if self.heads is not None:
            h0, h1 = self.heads
            d01 = torch.stack([_dot(a, b) for a, b in zip(h0, h1)])
            out["cross"] = out["cross"] + torch.diag(d01)
            if "mean" in out:
                d00 = torch.stack([_dot(a, a) for a in h0])
                d11 = torch.stack([_dot(b, b) for b in h1])
                out["mean"] = out["mean"] + torch.diag((d00 + 2 * d01 + d11) * 0.25)
        return out

    def add_direction(self, weights: Tensor) -> None:
        """Add ``Σ_r w_r (g_r^(0) + g_r^(1)) / 2`` to ``.grad`` of the MOO layers; ``weights``
        holds every objective's weight [M]."""
        if not self._r or self.plan.dim_sel == 0:
            return
        wr = weights.index_select(0, self._rows_t)
        flat = self.theta.view(2 * self._r, self.plan.dim_sel)
        direction = combine_rows_fp32(wr.repeat(2), flat) * 0.5
        params = [self._shared[j] for j in self.plan.sel_idx]
        torch._foreach_add_([p.grad for p in params], split_views(direction, params))

    def pending(self) -> list[Tensor]:
        """The buffers :meth:`grams` and :meth:`add_direction` read."""
        out = [self.theta] if self.theta is not None and self.theta.numel() > 0 else []
        if self.heads is not None:
            out += [t for half in self.heads for t in half]
        return out

    def group_grams(self, probe: "ProbeBuffer | None", groups: int) -> Tensor:
        """``[groups, R, R]``: per layer group, the Gramian of the objectives' gradients (sum of
        the halves) restricted to it; MOO layers from the θ buffer, the others from ``probe``."""
        grams: list[Tensor | None] = [None] * groups
        for g, (a, b) in zip(self.plan.selected, self.plan.sel_bounds):
            seg = self.theta[0, :, a:b].float() + self.theta[1, :, a:b].float()
            grams[g] = seg @ seg.T
        if self.plan.rest:
            if probe is None or probe.data is None:
                raise RuntimeError("Soup: a probe step without the other layers' gradients")
            for g, (a, b) in zip(self.plan.rest, self.plan.rest_bounds):
                seg = probe.data[:, a:b]
                grams[g] = seg @ seg.T
        return torch.stack(grams)  # type: ignore[arg-type]


def _dot(a: Tensor, b: Tensor) -> Tensor:
    """``⟨a, b⟩`` in fp32."""
    return torch.dot(a, b) if a.dtype == torch.float32 else torch.dot(a.float(), b.float())


class LevelAccumulators:
    """θ-sized accumulators of lower levels' direct gradients, used while a step's epoch (so
    the level's coefficient c_p) is unknown; :meth:`flush` adds them with c_p at the step."""

    def __init__(self, shared: Sequence[Tensor]) -> None:
        self._shared = list(shared)
        self._dim = sum(p.numel() for p in self._shared)
        self._acc: dict[int, Tensor] = {}
        self._views: dict[int, list[Tensor]] = {}

    def views(self, level: int, written: set[int]) -> list[Tensor]:
        """Per-parameter views of ``level``'s accumulator; zeroed at its first use in a step
        (``level`` not yet in ``written``, the step's set of used accumulators)."""
        if level not in self._acc:
            self._acc[level] = torch.zeros(self._dim, device=self._shared[0].device, dtype=torch.float32)
            self._views[level] = split_views(self._acc[level], self._shared)
        if level not in written:
            self._acc[level].zero_()
            written.add(level)
        return self._views[level]

    def pending(self, written: set[int]) -> list[Tensor]:
        """The accumulators used in this step."""
        return [acc for level, acc in self._acc.items() if level in written]

    def flush(self, coeffs: Sequence[float], written: set[int]) -> None:
        """Add each used accumulator times its level's coefficient to ``.grad`` of θ."""
        for level in self._acc:
            if level in written:
                torch._foreach_add_([p.grad for p in self._shared], self._views[level], alpha=coeffs[level])


class ProbeBuffer:
    """A probe step's gradients of the non-MOO layers, one row per buffered objective (both
    halves added): every coordinate, or a CountSketch of the groups the plan sketches.
    Allocated at the first :meth:`add`."""

    def __init__(self, rows: int, plan: Plan, groups: LayerGroups, device: torch.device) -> None:
        self._rows, self._dim, self._device = rows, plan.dim_probe, device
        self._groups = groups
        self._seg = {g: (a, b, sk) for g, (a, b), sk in zip(plan.rest, plan.rest_bounds, plan.sketched)}
        self._idx = plan.rest_idx
        self.data: Tensor | None = None

    def add(self, row: int, grads: Sequence[Tensor | None]) -> None:
        """Add one backward's gradients of the plan's other parameters (``rest_idx`` order)."""
        if self.data is None:
            self.data = torch.zeros(self._rows, self._dim, device=self._device, dtype=torch.float32)
        out = self.data[row]
        for j, grad in zip(self._idx, grads):
            if grad is None:
                continue
            g, off = self._groups.place[j]
            (a, b, sketched), flat = self._seg[g], grad.reshape(-1).float()
            if sketched:
                count_sketch_into(out[a:b], g, off, flat)
            else:
                out[a + off : a + off + flat.numel()].add_(flat)
