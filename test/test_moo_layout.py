"""The objectives' layout (osoup.moo.layout), built from plain names and levels: which rows are
buffered, the fold map of vc, the pairs that enter the conflict score."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from osoup.moo import ObjectiveLayout


def test_multilevel_with_gramian_in_every_supervised_level():
    lay = ObjectiveLayout((("asr_en", "asr_fr"), ("st_fr", "st_de"), ("ssl",)), (True, True, False))
    assert lay.names == ("asr_en", "asr_fr", "st_fr", "st_de", "ssl")
    assert lay.index["st_de"] == 3
    assert lay.level_of == (0, 0, 1, 1, 2)
    assert lay.bounds == ((0, 2), (2, 4), (4, 5))
    assert lay.gram_levels == (0, 1)
    assert lay.fold == {}
    assert lay.rows == (0, 1, 2, 3)  # ssl goes straight into .grad
    assert lay.row_of == {0: 0, 1: 1, 2: 2, 3: 3}
    assert lay.pairs == ((0, 1), (2, 3))  # pairs inside each level, never across levels
    assert lay.level_rows(1) == (2, 4)


def test_vc_folds_the_ssl_objective_into_the_supervised_rows():
    lay = ObjectiveLayout((("a_x", "b_x", "c_x"), ("ssl",)), (True, False), fold_lower=True)
    assert lay.fold == {0: 3}  # level 1 <- objective 3 (ssl), with η_1
    assert lay.rows == (0, 1, 2, 3)  # ssl is buffered because it is folded
    assert lay.pairs == ((0, 1), (0, 2), (1, 2))  # ssl pairs with nobody
    assert lay.level_rows(0) == (0, 3)
    same_without_fold = ObjectiveLayout((("a_x", "b_x", "c_x"), ("ssl",)), (True, False))
    assert same_without_fold.fold == {} and same_without_fold.rows == (0, 1, 2)


def test_rows_skip_levels_without_gramian():
    lay = ObjectiveLayout((("a_x",), ("b_x", "c_x"), ("ssl",)), (False, True, False))
    assert lay.rows == (1, 2)
    assert lay.row_of == {1: 0, 2: 1}
    assert lay.level_rows(1) == (0, 2)
    assert lay.pairs == ((0, 1),)
    # vm with a single-objective middle level: only level 1 is buffered.
    vm = ObjectiveLayout((("a_x", "b_x"), ("c_x",), ("ssl",)), (True, False, False))
    assert vm.rows == (0, 1) and vm.pairs == ((0, 1),)
    joint = ObjectiveLayout((("a_x", "b_x"), ("ssl",)), (False, False), fold_lower=True)
    assert joint.rows == () and joint.pairs == () and joint.fold == {}


def test_pair_mask_is_the_upper_triangle_of_the_pairs():
    lay = ObjectiveLayout((("a", "b", "c"), ("d", "e"), ("f",)), (True, True, False))
    mask = lay.pair_mask()
    assert mask.dtype == torch.bool and mask.shape == (5, 5)
    assert sorted(map(tuple, mask.nonzero().tolist())) == [(0, 1), (0, 2), (1, 2), (3, 4)]


def test_layout_is_frozen_and_built_from_lists():
    lay = ObjectiveLayout([["a", "b"], ["ssl"]], [True, False])  # type: ignore[arg-type]
    assert lay == ObjectiveLayout((("a", "b"), ("ssl",)), (True, False))
    assert hash(lay) == hash(ObjectiveLayout((("a", "b"), ("ssl",)), (True, False)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        lay.fold_lower = True  # type: ignore[misc]


@pytest.mark.parametrize(
    "levels,needs,fold,pattern",
    [
        ((("a",), ()), (True, False), False, "level 2 has no objectives"),
        ((("a", "b"), ("b",)), (True, False), False, "'b' appears in more than one level"),
        ((("a", "b"), ("c", "d")), (True, False), True, r"level 2 has \['c', 'd'\]"),
        ((("a", "b"), ("c",)), (True,), False, "2 levels but 1 needs_gram"),
    ],
)
def test_layout_errors(levels, needs, fold, pattern):
    with pytest.raises(ValueError, match=pattern):
        ObjectiveLayout(levels, needs, fold)
