"""make_soup and the method table (osoup.moo.methods): one place for the method names, the
paper's default penalties and the level structure of every method; checkpoints keep loading."""
from __future__ import annotations

import pytest
import torch

import osoup.moo.soup
from osoup.moo import METHODS, PenaltySchedule, default_penalties, make_soup
from osoup.moo.methods import make_soup as make_soup_in_methods
from osoup.moo.selection import count_sketch_into

OBJ = ["asr_en", "asr_fr", "st_fr", "ssl"]


def params():
    torch.manual_seed(0)
    shared = [torch.nn.Parameter(torch.randn(3))]
    heads = {n: [torch.nn.Parameter(torch.randn(3))] for n in OBJ if n != "ssl"}
    return shared, heads


def test_one_factory_and_older_import_paths():
    assert make_soup is make_soup_in_methods
    assert osoup.moo.soup.count_sketch_into is count_sketch_into  # bench/probe_fidelity.py imports it there
    assert METHODS == ("vs", "vc", "vm", "joint", "mean", "static", "ssl")


@pytest.mark.parametrize(
    "method,kw,levels,folded",
    [
        ("vs", {}, [OBJ], False),
        ("vc", {}, [OBJ[:3], ["ssl"]], True),
        ("joint", {}, [OBJ[:3], ["ssl"]], False),
        ("vm", {"levels": "asr>st>ssl"}, [["asr_en", "asr_fr"], ["st_fr"], ["ssl"]], False),
        ("mean", {}, [OBJ], False),
        ("static", {"static_weights": {n: 0.25 for n in OBJ}}, [OBJ], False),
    ],
)
def test_levels_and_default_penalties_of_each_method(method, kw, levels, folded):
    shared, heads = params()
    soup = make_soup(method, shared, heads, OBJ, "ssl", **kw)
    assert [lv.names for lv in soup.levels] == levels
    assert soup.penalize_lower_in_gram == folded
    defaults = default_penalties(method, len(levels))
    assert [lv.penalty for lv in soup.levels[1:]] == defaults
    epoch = 7.5
    expected, c = [1.0], 1.0
    for s in defaults:
        c *= s.value(epoch)
        expected.append(c)
    assert soup.coefficients(epoch) == pytest.approx(expected)


def test_method_errors_name_the_method():
    shared, heads = params()
    with pytest.raises(ValueError, match="unknown method 'pcgrad'; valid methods: vs, vc, vm"):
        make_soup("pcgrad", shared, heads, OBJ, "ssl")
    with pytest.raises(ValueError, match="levels are only for method 'vm'"):
        make_soup("vs", shared, heads, OBJ, "ssl", levels="asr>st>ssl")
    with pytest.raises(ValueError, match="method 'mean' has no penalty schedule"):
        make_soup("mean", shared, heads, OBJ, "ssl", penalties=[PenaltySchedule(0, 0, 0)])
    with pytest.raises(ValueError, match="method 'vc' needs 1 penalty schedule"):
        make_soup("vc", shared, heads, OBJ, "ssl", penalties=[PenaltySchedule(0, 0, 0)] * 2)
    with pytest.raises(ValueError, match="method 'ssl' trains the SSL objective 'ssl' only"):
        make_soup("ssl", shared, heads, OBJ, "ssl")
    with pytest.raises(ValueError, match="unknown MoDo options"):
        make_soup("vs", shared, heads, OBJ, "ssl", modo={"lr": 1})


def test_checkpoint_formats_load():
    shared, heads = params()
    soup = make_soup("vs", shared, heads, OBJ, None, modo={"gamma": 0.3})
    state = soup.state_dict()
    assert sorted(state) == ["levels", "selected_layers", "step_count", "weightings"]
    lam = torch.tensor([0.1, 0.2, 0.3, 0.4])
    old = {"levels": [OBJ], "weightings": [{"lambda": lam}]}  # before layer selection existed
    soup.load_state_dict(old)
    torch.testing.assert_close(soup.levels[0].weighting.weights, lam)
    soup.load_state_dict({**old, "selected_layers": ["all"], "step_count": 5})
    assert soup._step_count == 5 and soup.selected_layers == ["all"]
