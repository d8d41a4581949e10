"""Layer selection: which groups of shared parameters are MOO layers (the later paper's
efficiency mechanism, ``docs/design.md`` "MOO core").

Every ``conflict_interval`` steps a probe step scores every layer group by the conflict of the
objectives' gradients restricted to it (:func:`osoup.moo.conflict_score.conflict_scores`) and
the k most conflicting groups become the MOO layers. Only they keep per-objective gradients;
the others are trained with the weights known before the step. The result of a selection is a
:class:`Plan`, an immutable object that a re-selection replaces.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property
from typing import Mapping, Sequence

import torch
from torch import Tensor
from torch.nn import Parameter

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


@dataclass(frozen=True)
class LayerGroups:
    """Named groups of shared parameters (by index) that together hold each exactly once."""

    names: tuple[str, ...]
    params: tuple[tuple[int, ...], ...]
    numels: tuple[int, ...]  # of every shared parameter

    @classmethod
    def build(cls, shared: Sequence[Parameter], groups: Mapping[str, Sequence[Parameter]] | None) -> "LayerGroups":
        """Groups from name -> parameters (``None``: one group ``"all"``); checks the cover."""
        numels = tuple(p.numel() for p in shared)
        if groups is None:
            return cls(("all",), (tuple(range(len(shared))),), numels)
        pos = {id(p): j for j, p in enumerate(shared)}
        owner: dict[int, str] = {}
        names, params = [], []
        for name, ps in groups.items():
            idx = []
            for p in ps:
                j = pos.get(id(p))
                if j is None:
                    raise ValueError(f"Soup: layer group {name!r} holds a parameter that is not a shared parameter")
                if j in owner:
                    raise ValueError(f"Soup: shared parameter {j} is in layer groups {owner[j]!r} and {name!r}")
                owner[j] = name
                idx.append(j)
            if not idx:
                raise ValueError(f"Soup: layer group {name!r} is empty")
            names.append(str(name))
            params.append(tuple(idx))
        missing = [j for j in range(len(shared)) if j not in owner]
        if missing:
            raise ValueError(f"Soup: shared parameters {missing[:10]} are in no layer group; the groups must cover θ")
        return cls(tuple(names), tuple(params), numels)

    @cached_property
    def sizes(self) -> tuple[int, ...]:
        """Number of coordinates of every group."""
        return tuple(sum(self.numels[j] for j in ps) for ps in self.params)

    @cached_property
    def place(self) -> dict[int, tuple[int, int]]:
        """Shared parameter j -> (its group, its offset inside the group)."""
        out = {}
        for g, ps in enumerate(self.params):
            off = 0
            for j in ps:
                out[j] = (g, off)
                off += self.numels[j]
        return out


@dataclass(frozen=True)
class Plan:
    """The MOO layers of the moment and where every group sits in the buffers.

    ``sel_bounds[i]``: flat range of ``selected[i]`` in the per-objective buffer (width
    ``dim_sel``); ``rest_bounds[i]``: range of ``rest[i]`` in a probe's buffer (width
    ``dim_probe``), which holds every coordinate or, where ``sketched[i]``, a CountSketch.
    """

    selected: tuple[int, ...]
    rest: tuple[int, ...]
    sel_idx: tuple[int, ...]  # shared parameters of the selected groups, in buffer order
    rest_idx: tuple[int, ...]  # shared parameters of the other groups
    sel_bounds: tuple[tuple[int, int], ...]
    rest_bounds: tuple[tuple[int, int], ...]
    sketched: tuple[bool, ...]  # per rest group

    @property
    def dim_sel(self) -> int:
        return self.sel_bounds[-1][1] if self.sel_bounds else 0

    @property
    def dim_probe(self) -> int:
        return self.rest_bounds[-1][1] if self.rest_bounds else 0


def make_plan(groups: LayerGroups, selected: Sequence[int], probe_coords: int | None) -> Plan:
    """The plan with ``selected`` as MOO layers; ``probe_coords`` buckets sketch any other
    group larger than that (``None``: probes keep every coordinate)."""
    sel = sorted(selected)
    rest = [g for g in range(len(groups.names)) if g not in set(sel)]
    sketched = [probe_coords is not None and probe_coords < groups.sizes[g] for g in rest]
    widths = [probe_coords if sk else groups.sizes[g] for g, sk in zip(rest, sketched)]
    return Plan(
        selected=tuple(sel),
        rest=tuple(rest),
        sel_idx=tuple(j for g in sel for j in groups.params[g]),
        rest_idx=tuple(j for g in rest for j in groups.params[g]),
        sel_bounds=_consecutive([groups.sizes[g] for g in sel]),
        rest_bounds=_consecutive(widths),  # type: ignore[arg-type]
        sketched=tuple(sketched),
    )


def _consecutive(widths: Sequence[int]) -> tuple[tuple[int, int], ...]:
    out, off = [], 0
    for w in widths:
        out.append((off, off + w))
        off += w
    return tuple(out)


def count_of(moo_layers: int | float | None, names: Sequence[str]) -> int:
    """k, the number of MOO layers: all groups (``None``), an int k, or a fraction in (0, 1]
    of the groups, rounded up."""
    n = len(names)
    if moo_layers is None:
        return n
    if isinstance(moo_layers, bool) or not isinstance(moo_layers, (int, float)):
        raise ValueError(f"Soup: moo_layers must be an int k or a fraction in (0, 1], got {moo_layers!r}")
    if isinstance(moo_layers, int):
        if not 1 <= moo_layers <= n:
            raise ValueError(f"Soup: moo_layers={moo_layers} but there are {n} layer groups {list(names)}")
        return moo_layers
    if not (0 < moo_layers <= 1):
        raise ValueError(f"Soup: a fractional moo_layers must lie in (0, 1], got {moo_layers!r}")
    return max(1, math.ceil(moo_layers * n - 1e-9))


def most_conflicting(scores: Tensor, k: int) -> list[int]:
    """The k groups with the lowest scores, ascending by group (ties: the first groups);
    NaN scores (no defined pair) rank last. Reads the scores back: the probe's host sync."""
    ranked = torch.nan_to_num(scores, nan=math.inf, posinf=math.inf)
    return sorted(torch.argsort(ranked, stable=True)[:k].tolist())


def make_selection(
    shared: Sequence[Parameter],
    layer_groups: Mapping[str, Sequence[Parameter]] | None,
    moo_layers: int | float | None,
    interval: int,
    probe_coords: int | None,
    buffered: bool,
) -> "LayerSelection":
    """The :class:`LayerSelection` of a soup's arguments (see :class:`osoup.moo.soup.Soup`)."""
    if layer_groups is None and moo_layers is not None:
        raise ValueError("Soup: moo_layers needs layer_groups (name -> parameters covering θ)")
    return LayerSelection(LayerGroups.build(shared, layer_groups), moo_layers, interval, probe_coords, buffered)


class LayerSelection:
    """Groups, the probe schedule and the current :class:`Plan`.

    Args:
        groups: the layer groups.
        moo_layers: see :func:`count_of`; selection is on when it names fewer than all groups
            and ``buffered`` (some level keeps per-objective gradients).
        interval: a probe every this many steps, from step 0.
        probe_coords: CountSketch buckets per group on probes (``None``: every coordinate).
    """

    def __init__(
        self, groups: LayerGroups, moo_layers: int | float | None, interval: int, probe_coords: int | None, buffered: bool
    ) -> None:
        self.k = count_of(moo_layers, groups.names)
        if not isinstance(interval, int) or interval < 1:
            raise ValueError(f"Soup: conflict_interval must be a positive integer, got {interval!r}")
        if probe_coords is not None and (isinstance(probe_coords, bool) or not isinstance(probe_coords, int) or probe_coords < 1):
            raise ValueError(f"Soup: probe_coords must be a positive integer or None, got {probe_coords!r}")
        self.groups = groups
        self.interval = interval
        self.probe_coords = probe_coords
        self.enabled = self.k < len(groups.names) and buffered
        self.plan = make_plan(groups, [] if self.enabled else range(len(groups.names)), probe_coords)
        self.scores: Tensor | None = None

    def probes_at(self, step: int) -> bool:
        """Whether step number ``step`` (0-based) is a probe step."""
        return self.enabled and step % self.interval == 0

    @property
    def selected_names(self) -> list[str]:
        return [self.groups.names[g] for g in self.plan.selected]

    def reselect(self, scores: Tensor) -> bool:
        """Keep the probe's ``scores`` and select the k most conflicting groups; True when the
        plan changed (the caller then lays out its buffers again)."""
        self.scores = scores
        return self._select(most_conflicting(scores, self.k))

    def restore(self, names: Sequence[str]) -> bool:
        """Select the groups ``names`` (a checkpoint's MOO layers); True when the plan changed."""
        names = list(names)
        unknown = [n for n in names if n not in self.groups.names]
        if unknown or len(names) not in (0, self.k):
            raise ValueError(
                f"Soup.load_state_dict: checkpoint MOO layers {names} do not fit this soup "
                f"({self.k} of {list(self.groups.names)})"
            )
        return self._select([self.groups.names.index(n) for n in names])

    def _select(self, chosen: Sequence[int]) -> bool:
        if sorted(chosen) == list(self.plan.selected):
            return False
        self.plan = make_plan(self.groups, chosen, self.probe_coords)
        return True
