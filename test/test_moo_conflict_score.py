"""The conflict score (osoup.moo.conflict_score): mean pairwise cosine over masked pairs, with
zero gradients left out; layer selection ranks undefined (NaN) groups last."""
from __future__ import annotations

import math

import pytest
import torch

from osoup.moo import conflict_scores, make_soup
from osoup.moo.selection import LayerGroups, make_plan, most_conflicting
from test_moo import NoHostSync


def direct_score(g: torch.Tensor, pairs: list[tuple[int, int]]) -> float:
    """Mean of cosine_similarity(g_i, g_j) over the pairs where neither gradient is zero."""
    cos = [
        float(torch.nn.functional.cosine_similarity(g[i], g[j], dim=0))
        for i, j in pairs
        if bool(g[i].any()) and bool(g[j].any())
    ]
    return sum(cos) / len(cos) if cos else math.nan


def mask_of(pairs: list[tuple[int, int]], r: int) -> torch.Tensor:
    mask = torch.zeros(r, r, dtype=torch.bool)
    for i, j in pairs:
        mask[i, j] = True
    return mask


def test_matches_direct_cosines_with_batch_dims_and_zero_gradients():
    gen = torch.Generator().manual_seed(0)
    g = torch.randn(2, 3, 5, 40, generator=gen, dtype=torch.float64)  # [2, 3] groups, R = 5
    g[0, 1, 2] = 0.0  # one objective has no gradient in this group: its pairs are left out
    g[1, 2, :4] = 0.0  # only objective 4 has a gradient: no pair is defined
    pairs = [(0, 1), (0, 2), (1, 2), (2, 4), (3, 4)]
    got = conflict_scores(g @ g.transpose(-1, -2), mask_of(pairs, 5))
    assert got.shape == (2, 3) and got.dtype == torch.float64
    for a in range(2):
        for b in range(3):
            want = direct_score(g[a, b], pairs)
            if math.isnan(want):
                assert math.isnan(float(got[a, b]))
            else:
                assert float(got[a, b]) == pytest.approx(want, abs=1e-12)
    assert not math.isnan(float(got[0, 1]))  # the zero row did not poison the other pairs


def test_single_gram_anticorrelated_and_no_pairs():
    g = torch.tensor([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0]])
    gram = g @ g.T
    assert float(conflict_scores(gram, mask_of([(0, 1)], 3))) == pytest.approx(-1.0)
    assert float(conflict_scores(gram, mask_of([(0, 1), (0, 2), (1, 2)], 3))) == pytest.approx(-1 / 3)
    assert math.isnan(float(conflict_scores(gram, torch.zeros(3, 3, dtype=torch.bool))))
    with NoHostSync():
        conflict_scores(gram, mask_of([(0, 1)], 3))
    with pytest.raises(ValueError, match="pair_mask"):
        conflict_scores(gram, torch.ones(2, 2, dtype=torch.bool))
    with pytest.raises(ValueError, match="pair_mask"):
        conflict_scores(gram, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"\[\.\.\., R, R\]"):
        conflict_scores(torch.ones(3, 2), torch.ones(3, 2, dtype=torch.bool))


def test_ranking_puts_undefined_groups_last():
    scores = torch.tensor([0.2, math.nan, -0.5, math.nan, 0.1])
    assert most_conflicting(scores, 3) == [0, 2, 4]
    assert most_conflicting(scores, 4) == [0, 1, 2, 4]  # ties among NaN: the first group
    assert most_conflicting(torch.tensor([0.3, -0.3, -0.3]), 1) == [1]


def test_plan_bounds_and_sketches():
    shared = [torch.nn.Parameter(torch.zeros(n)) for n in (3, 4, 10, 2)]
    groups = LayerGroups.build(shared, {"a": shared[:2], "b": shared[2:3], "c": shared[3:]})
    assert groups.sizes == (7, 10, 2)
    assert groups.place == {0: (0, 0), 1: (0, 3), 2: (1, 0), 3: (2, 0)}
    plan = make_plan(groups, [2], probe_coords=5)
    assert plan.selected == (2,) and plan.rest == (0, 1)
    assert plan.sel_idx == (3,) and plan.rest_idx == (0, 1, 2)
    assert plan.sel_bounds == ((0, 2),) and plan.dim_sel == 2
    assert plan.sketched == (True, True) and plan.rest_bounds == ((0, 5), (5, 10)) and plan.dim_probe == 10
    exact = make_plan(groups, [], probe_coords=8)  # group a (7 coordinates) fits: kept exactly
    assert exact.sketched == (False, True, False) and exact.rest_bounds == ((0, 7), (7, 15), (15, 17))
    assert make_plan(groups, [0, 1, 2], None).rest == () and make_plan(groups, [0, 1, 2], None).dim_sel == 19


def test_probe_scores_a_dead_group_nan_and_never_selects_it():
    torch.manual_seed(0)
    live = torch.nn.Linear(3, 3)
    dead = torch.nn.Linear(3, 3)  # no loss depends on it: every objective's gradient is zero
    heads = {n: [torch.nn.Parameter(torch.randn(3))] for n in ("a_x", "b_x", "c_x")}
    x = {(n, h): torch.randn(4, 3) for n in heads for h in (0, 1)}
    groups = {"live": list(live.parameters()), "dead": list(dead.parameters())}
    shared = list(live.parameters()) + list(dead.parameters())
    soup = make_soup("vs", shared, heads, list(heads), None, layer_groups=groups, moo_layers=1, conflict_interval=1)
    for _ in range(2):
        for n in soup.objectives:
            for h in (0, 1):
                soup.backward(n, h, (torch.tanh(live(x[n, h])) @ heads[n][0]).pow(2).mean())
        stats = soup.step(0.0)
        assert math.isnan(float(stats["conflict/dead"])) and not math.isnan(float(stats["conflict/live"]))
        assert soup.selected_layers == ["live"]
        soup.zero_grad()
