"""Model soups (osoup.train.model_soup, osoup.score.front, osoup-soup): the weighted average,
the compatibility and initialisation checks, the weight grid and vectors, the Pareto marking,
and a sweep whose (1, 0) soup reproduces experiment A's tensors and hypotheses."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from osoup.fileio import DataError
from osoup.nets.model import SoupModel
from osoup.score.front import FrontPoint, dominates, pareto_flags
from osoup.train import experiment as E
from osoup.train import model_soup as S
from test_conflict import _fake_experiment


def _perturbed(state: dict, scale: float, seed: int) -> dict:
    """A copy of ``state`` with noise of ``scale`` times each weight tensor's std (a run that
    moved away from the same start); CMVN statistics and integer buffers kept."""
    gen = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        if torch.is_floating_point(v) and not k.startswith("cmvn.") and v.numel() > 1:
            out[k] = v + scale * float(v.std()) * torch.randn(v.shape, generator=gen)
        else:
            out[k] = v.clone()
    return out


def _second_experiment(exp_a: Path, name: str, state: dict, conf: dict | None = None) -> Path:
    """An experiment next to ``exp_a`` with its objectives.json and config.yaml and ``state``."""
    obj = torch.load(exp_a / E.BEST, weights_only=False)
    exp_b = exp_a.parent / name
    exp_b.mkdir()
    torch.save({"model": state, "model_conf": conf or obj["model_conf"]}, exp_b / E.BEST)
    for f in (E.OBJECTIVES, E.CONFIG):
        shutil.copy(exp_a / f, exp_b / f)
    return exp_b


def _pair(root: Path) -> tuple[Path, Path]:
    """Experiment A (exp/vm) and B (exp/other): B is A moved by noise, with another BatchNorm
    counter so that the integer buffers' source shows."""
    exp_a, _ = _fake_experiment(root)
    state_b = _perturbed(torch.load(exp_a / E.BEST, weights_only=False)["model"], 0.3, seed=1)
    for k in state_b:
        if k.endswith("num_batches_tracked"):
            state_b[k] = state_b[k] + 7
    return exp_a, _second_experiment(exp_a, "other", state_b)


def _state(seed: int) -> dict:
    enc = dict(idim=80, d_model=16, n_heads=2, n_blocks=1, ff_mult=2, conv_kernel=3, conv_norm="batch",
               dropout=0.0, subsampling_channels=4)
    torch.manual_seed(seed)
    return SoupModel(enc, {"asr_en": 7, "st_fr": 5}, ssl="cpc").state_dict()


# -- averaging ------------------------------------------------------------------------------
def test_average_is_the_weighted_sum_and_one_hot_weights_reproduce_a_model():
    a, b = _state(0), _state(1)
    b = {k: v + 3 if not torch.is_floating_point(v) else v for k, v in b.items()}
    ints = [k for k, v in a.items() if not torch.is_floating_point(v)]
    assert ints and all(k.endswith("num_batches_tracked") for k in ints)
    mix = S.average_states([a, b], [0.3, 0.7])
    assert set(mix) == set(a)
    for k, v in a.items():
        assert mix[k].dtype == v.dtype and mix[k].shape == v.shape
        if k in ints:
            assert torch.equal(mix[k], a[k]) and not torch.equal(mix[k], b[k])  # from the first
        else:
            assert torch.allclose(mix[k], 0.3 * a[k] + 0.7 * b[k], rtol=1e-6, atol=1e-7), k
    moved = [k for k in a if k not in ints and not torch.equal(a[k], b[k])]
    assert moved and not any(torch.equal(mix[k], a[k]) for k in moved)
    for w, ref in (([1.0, 0.0], a), ([0.0, 1.0], b)):
        got = S.average_states([a, b], w)
        assert all(torch.equal(got[k], ref[k]) for k in a if k not in ints)
    assert all(torch.equal(S.average_states([a, b], [1.0, 0.0])[k], a[k]) for k in a)
    three = S.average_states([a, b, a], [0.25, 0.5, 0.25])
    assert all(torch.allclose(three[k], 0.5 * a[k] + 0.5 * b[k], atol=1e-7) for k in a if k not in ints)


# -- weights --------------------------------------------------------------------------------
def test_grid_of_two_and_more_experiments():
    two = S.weight_grid(2)
    assert len(two) == 11
    assert [w[0] for w in two] == pytest.approx([i / 10 for i in range(11)])
    assert all(sum(w) == pytest.approx(1.0) and len(w) == 2 for w in two)
    assert S.weight_grid(2, 0.5) == [(0.0, 1.0), (0.5, 0.5), (1.0, 0.0)]
    assert sorted(S.weight_grid(3, 0.5)) == sorted([(0.0, 0.0, 1.0), (0.0, 0.5, 0.5), (0.0, 1.0, 0.0),
                                                    (0.5, 0.0, 0.5), (0.5, 0.5, 0.0), (1.0, 0.0, 0.0)])
    three = S.weight_grid(3)  # default step 0.25: C(6, 2) points of the simplex
    assert len(three) == 15 and len(set(three)) == 15
    assert all(sum(w) == pytest.approx(1.0) and min(w) >= 0 for w in three)
    assert len(S.weight_grid(4)) == 35
    for bad in (0.3, 0.0, -0.1, 1.5):
        with pytest.raises(DataError, match=rf"--grid-step {bad}: must be 1/n"):
            S.weight_grid(2, bad)
    assert S.parse_weights("grid", 2, 0.25) == S.weight_grid(2, 0.25)
    assert [S.mix_name(w) for w in S.weight_grid(2, 0.25)] == ["mix_0_1", "mix_0.25_0.75", "mix_0.5_0.5",
                                                               "mix_0.75_0.25", "mix_1_0"]


def test_weight_vectors_and_bad_ones():
    assert S.parse_weights("0.2 0.8; 0.5,0.5", 2) == [(0.2, 0.8), (0.5, 0.5)]
    assert S.parse_weights(" 1 0 0 ", 3) == [(1.0, 0.0, 0.0)]
    cases = [
        ("0.2 0.8; 0.2 0.7", 2, "--weights: vector 2 '0.2 0.7' sums to 0.9, not 1"),
        ("0.2 0.3 0.5", 2, "--weights: vector 1 '0.2 0.3 0.5' has 3 weight(s) for 2 experiments"),
        ("1.5 -0.5", 2, "--weights: vector 1 '1.5 -0.5' has a negative or non-finite weight"),
        ("0.5 half", 2, "--weights: vector 1 '0.5 half' is not a list of numbers"),
        ("0.5 0.5;", 2, "--weights: vector 2 '' has 0 weight(s) for 2 experiments"),
        ("0.5 0.5; 0.50 0.50", 2, "--weights: vector 2 '0.50 0.50' repeats vector 1"),
    ]
    for spec, k, msg in cases:
        with pytest.raises(DataError) as e:
            S.parse_weights(spec, k)
        assert str(e.value) == msg


# -- Pareto front ----------------------------------------------------------------------------
def test_pareto_marking_on_a_hand_example():
    def pt(label, asr, bleu):
        return FrontPoint(label, "soup", f"exp/{label}", asr, bleu)

    points = [pt("a", 10.0, 20.0), pt("b", 12.0, 25.0), pt("c", 11.0, 19.0), pt("d", 10.0, 20.0),
              pt("e", 15.0, 25.0), pt("f", 9.0, 10.0), pt("g", None, 30.0), pt("h", 12.0, 22.0)]
    # c: a is better on both; e: b has the same BLEU with less error; h: b has the same error and more BLEU;
    # a and d tie (neither dominates); g has no ASR average and is never on the front.
    assert pareto_flags(points) == [True, True, False, True, False, True, False, False]
    assert dominates(points[0], points[2]) and not dominates(points[0], points[3])
    assert dominates(points[1], points[7]) and not dominates(points[7], points[1])
    assert not dominates(points[6], points[2]) and not dominates(points[2], points[6])


# -- compatibility and initialisation -------------------------------------------------------
def _only_error_line(err: str) -> str:
    lines = [l for l in err.splitlines() if l.strip() and "WARNING" not in l and " INFO: " not in l]
    assert len(lines) == 1 and lines[0].startswith("ERROR: ") and "Traceback" not in err, err
    return lines[0]


def test_mismatched_architecture_is_one_error_naming_both_and_the_key(tmp_path, monkeypatch, capsys):
    from osoup.bin.model_soup import main

    exp_a, _ = _fake_experiment(tmp_path)
    obj = torch.load(exp_a / E.BEST, weights_only=False)
    conf3 = dict(obj["model_conf"], encoder_conf=dict(obj["model_conf"]["encoder_conf"], n_blocks=3))
    _second_experiment(exp_a, "deep", SoupModel(**conf3).state_dict(), conf3)
    heads = dict(obj["model_conf"]["head_vocab"], st_fr=obj["model_conf"]["head_vocab"]["st_fr"] + 1)
    conf_h = dict(obj["model_conf"], head_vocab=heads)
    _second_experiment(exp_a, "wide", SoupModel(**conf_h).state_dict(), conf_h)
    monkeypatch.chdir(tmp_path)
    common = ["--sets", "train_en", "--weights", "0.5 0.5", "--out", "exp/soup", "--verbose", "0"]
    assert main(["--exps", "exp/vm", "exp/deep", *common]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert line == ("ERROR: exp/vm/best.pt and exp/deep/best.pt cannot be averaged (not one architecture): "
                    "first difference at model_conf['encoder_conf']['n_blocks']: 2 vs 3")
    assert main(["--exps", "exp/vm", "exp/wide", *common]) == 1
    line = _only_error_line(capsys.readouterr().err)
    assert "exp/vm/best.pt and exp/wide/best.pt cannot be averaged" in line
    assert "model_conf['head_vocab']['st_fr']" in line
    assert not (tmp_path / "exp/soup").exists()
    a, b = S.load_source("exp/vm"), S.load_source("exp/wide")
    b.model_conf = a.model_conf  # same config, weights of another shape: the state dict says where
    assert S.first_difference(a, b).startswith("state-dict key 'heads.st_fr.")


def test_initialisation_check(tmp_path):
    exp_a, exp_b = _pair(tmp_path)
    srcs = [S.load_source(exp_a), S.load_source(exp_b)]
    unknown = S.check_initialisation(srcs)
    assert unknown.shared is None and f"{exp_a}, {exp_b}" in unknown.message
    for exp in (exp_a, exp_b):  # the earliest checkpoints: B moved away from A's weights by ~30%
        shutil.copy(exp / E.BEST, exp / "checkpoint.3.pt")
        torch.save({"model": _state(5)}, exp / "checkpoint.9.pt")  # later ones are not compared
    near = S.check_initialisation(srcs)
    assert near.shared is True and near.method == "distance" and 0.1 < near.distance < S.INIT_DISTANCE_THRESHOLD
    assert "checkpoint.3.pt" in near.message and "threshold 0.5" in near.message
    other = SoupModel(**torch.load(exp_a / E.BEST, weights_only=False)["model_conf"]).state_dict()
    torch.save({"model": other}, exp_b / "checkpoint.3.pt")  # torch's default seed differs from A's init
    far = S.check_initialisation(srcs)
    assert far.shared is False and far.distance == pytest.approx(1.41, abs=0.05)
    assert "probably did NOT start from one initialisation" in far.message
    for s in srcs:
        s.config["init_from"] = str(tmp_path / "pre/checkpoint.20.pt")
    same = S.check_initialisation(srcs)
    assert same.shared is True and same.method == "init_from" and "pre/checkpoint.20.pt" in same.message
    srcs[1].config["init_from"] = "other.pt"
    assert S.check_initialisation(srcs).method == "distance"


# -- the command -----------------------------------------------------------------------------
def test_soup_sweep_reproduces_a_and_writes_the_front(tmp_path, monkeypatch, capsys):
    from osoup.bin.decode import main as decode
    from osoup.bin.model_soup import main
    from osoup.bin.score import main as score

    exp_a, exp_b = _pair(tmp_path)
    monkeypatch.chdir(tmp_path)
    sets = "train_en train_fr"
    assert decode(["--exp-dir", "exp/vm", "--sets", sets, "--verbose", "0"]) == 0
    assert score(["--exp", "exp/vm", "--label", "vm_uas", "--verbose", "0"]) == 0
    rc = main(["--exps", "exp/vm", "exp/other", "--weights", "1 0; 0.5 0.5; 0 1", "--sets", sets,
               "--split", "train", "--out", "exp/soup", "--batch-frames", "3000", "--verbose", "1"])
    err = capsys.readouterr().err
    assert rc == 0, err
    assert "individual point of exp/other not drawn" in err and "cannot tell whether" in err
    out = tmp_path / "exp/soup"
    one = out / "mix_1_0"
    saved_a = torch.load(exp_a / E.BEST, weights_only=False)["model"]
    soup = torch.load(one / E.BEST, weights_only=False)
    assert set(soup["model"]) == set(saved_a) and all(torch.equal(soup["model"][k], saved_a[k]) for k in saved_a)
    assert soup["soup"]["weights"] == [1.0, 0.0] and soup["soup"]["integer_buffers_from"] == "exp/vm/best.pt"
    half = torch.load(out / "mix_0.5_0.5" / E.BEST, weights_only=False)["model"]
    saved_b = torch.load(exp_b / E.BEST, weights_only=False)["model"]
    k = "encoder.blocks.0.conv.pointwise1.weight" if "encoder.blocks.0.conv.pointwise1.weight" in half else next(
        k for k in half if k.startswith("encoder.") and half[k].dim() == 2)
    assert torch.allclose(half[k], 0.5 * saved_a[k] + 0.5 * saved_b[k], atol=1e-7)
    for s in ("train_en", "train_fr"):
        for task in (("asr",) if s == "train_en" else ("asr", "st")):
            hyp_a = E.hyp_path("exp/vm", "greedy", s, task).read_text(encoding="utf-8")
            assert hyp_a.strip() and E.hyp_path(one, "greedy", s, task).read_text(encoding="utf-8") == hyp_a
            assert E.hyp_path(out / "mix_0_1", "greedy", s, task).read_text(encoding="utf-8") != hyp_a
    _check_front_files(out)


def _check_front_files(out: Path) -> None:
    doc = json.loads((out / "soup.json").read_text(encoding="utf-8"))
    assert [p["label"] for p in doc["points"]] == ["vm_uas", "soup 1/0", "soup 0.5/0.5", "soup 0/1"]
    assert doc["weights"] == [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]] and doc["decode_tag"] == "greedy"
    assert doc["init_check"]["shared"] is None and doc["integer_buffers_from"] == "exp/vm/best.pt"
    assert doc["decode_options"]["batch_frames"] == 3000 and doc["decode_options"]["search"] == "greedy"
    method, a_soup = doc["points"][0], doc["points"][1]
    assert method["kind"] == "method" and a_soup["kind"] == "soup"
    assert (a_soup["asr"], a_soup["st"], a_soup["asr_ave"], a_soup["bleu_ave"]) == \
        (method["asr"], method["st"], method["asr_ave"], method["bleu_ave"])  # (1, 0) scores as A
    assert set(a_soup["asr"]) == {"en", "fr"} and set(a_soup["st"]) == {"fr"}
    pts = [FrontPoint(p["label"], p["kind"], p["exp"], p["asr_ave"], p["bleu_ave"]) for p in doc["points"]]
    assert [p["pareto"] for p in doc["points"]] == pareto_flags(pts) and any(pareto_flags(pts))
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "| model | kind | ASR en | ASR fr | ASR ave. | BLEU fr | BLEU ave. | front |" in md
    assert "| soup 0.5/0.5 | soup |" in md and "num_batches_tracked" in md
    assert (out / "soup_front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    mix = out / "mix_0.5_0.5"
    assert json.loads((mix / "soup.json").read_text(encoding="utf-8"))["weights"] == [0.5, 0.5]
    assert E.read_config(mix)["soup"]["sources"][1]["exp"] == "exp/other"
    assert E.read_objectives(mix) == E.read_objectives("exp/vm")
    model, toks = E.load_experiment(mix)  # the existing tools read a soup like any experiment
    assert sorted(toks) == sorted(model.heads)
    assert json.loads((mix / "results.json").read_text(encoding="utf-8"))["decodes"]["greedy"]["sets"]


def test_command_rejects_bad_weights_and_options_before_writing(tmp_path, monkeypatch, capsys):
    from osoup.bin.model_soup import main

    _pair(tmp_path)
    monkeypatch.chdir(tmp_path)
    base = ["--exps", "exp/vm", "exp/other", "--sets", "train_en", "--out", "exp/soup", "--verbose", "0"]
    cases = [
        (["--weights", "0.5 0.5; 0.6 0.6"], "ERROR: --weights: vector 2 '0.6 0.6' sums to 1.2, not 1"),
        (["--weights", "grid", "--grid-step", "0.3"], "ERROR: --grid-step 0.3: must be 1/n for a whole number n"),
        (["--bogus", "1"], "ERROR: osoup-soup: unknown option(s) --bogus (neither"),
        (["--head", "asr_en"], "ERROR: osoup-soup: option(s) not allowed here: head"),
    ]
    for extra, start in cases:
        assert main(base + extra) == 1
        assert _only_error_line(capsys.readouterr().err).startswith(start)
    assert main(["--exps", "exp/vm", "exp/vm/", "--sets", "train_en", "--out", "exp/soup", "--verbose", "0"]) == 1
    assert "--exps names one experiment twice" in _only_error_line(capsys.readouterr().err)
    assert not (tmp_path / "exp/soup").exists()
