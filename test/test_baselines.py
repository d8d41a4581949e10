"""Baselines next to the MOO methods: ``single`` (one model per supervised objective, compared as
one method), the static sweep (joint with fixed task-group weights, the point chosen on dev),
and ``osoup-train --init-from`` (fine-tuning several methods from one pre-trained model)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch
import yaml
from conftest import copy_prepared, copy_recipe, run_recipe

from osoup.bin import results as results_cli
from osoup.bin import train as train_bin
from osoup.fileio import DataError
from osoup.score.comparison import gather, select_on_dev
from osoup.score.resultfiles import load_results
from osoup.train.init_from import plan_init
from osoup.train.phases import task_group_weights

BASE = ["--dump-dir", "dump", "--token-dir", "data/token", "--max-frames", "4000", "--max-utts", "8",
        "--threads", "1", "--dropout", "0", "--specaug", "false", "--scheduler", "none",
        "--steps-per-epoch", "1", "--epochs", "1", "--log-interval", "1",
        "--lr-backbone", "1e-3", "--lr-heads", "1e-3", "--verbose", "0"]


def _args(exp: Path, *extra: str):
    args, _ = train_bin.parse_args(["--exp-dir", str(exp), *BASE, *extra])
    return args


def _state(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=False)["model"]


def _equal(a: dict, b: dict, prefix: str) -> bool:
    keys = [k for k in a if k.startswith(prefix)]
    assert keys, prefix
    return all(torch.equal(a[k], b[k]) for k in keys)


# -- --task-weights and joint without SSL -------------------------------------------------------
def test_task_group_weights_share_each_group_weight():
    w = task_group_weights({"asr": 0.6, "st": 0.3, "ssl": 0.1}, ["asr_en", "asr_fr", "st_fr", "ssl"])
    assert w == pytest.approx({"asr_en": 0.3, "asr_fr": 0.3, "st_fr": 0.3, "ssl": 0.1})
    assert task_group_weights({"asr": 1.0, "st": 0.5}, ["asr_en"]) == {"asr_en": 1.0}  # st: no objective
    with pytest.raises(DataError, match="no weight for task group 'st'"):
        task_group_weights({"asr": 1.0}, ["asr_en", "st_fr"])
    with pytest.raises(DataError, match="unknown task group 'mt'"):
        task_group_weights({"asr": 1.0, "mt": 1.0}, ["asr_en"])
    with pytest.raises(DataError, match="every supervised group has weight 0"):
        task_group_weights({"asr": 0.0, "ssl": 1.0}, ["asr_en", "ssl"])


@pytest.mark.slow
def test_joint_with_task_weights_and_without_ssl(mini_recipe, tmp_path, monkeypatch):
    monkeypatch.chdir(mini_recipe)
    tr = train_bin.build_trainer(_args(tmp_path / "w", "--method", "joint", "--asr-langs", "fr", "--st-langs", "fr",
                                       "--ssl", "bestrq", "--task-weights", "asr:0.5,st:0.3,ssl:0.2"))
    (phase,) = tr.phases
    assert (phase.name, phase.method) == ("joint-static", "static")
    assert phase.weights == pytest.approx({"asr_fr": 0.5, "st_fr": 0.3, "ssl": 0.2})
    from osoup.train.phase_setup import make_update

    soup = make_update(tr.cfg, phase, tr.model, tr.specs)
    (level,) = soup.levels
    assert level.names == ["asr_fr", "st_fr", "ssl"]
    assert level.weighting.update().tolist() == pytest.approx([0.5, 0.3, 0.2])
    # a single supervised objective without SSL: plain training of that objective
    exp = tmp_path / "alone"
    summary = train_bin.build_trainer(_args(exp, "--method", "joint", "--asr-langs", "fr", "--st-langs", "",
                                            "--ssl", "none")).run()
    assert summary["phases"] == ["joint"] and list(summary["history"][0]["dev"]) == ["asr_fr"]
    assert set(torch.load(exp / "best.pt", weights_only=False)["model_conf"]["head_vocab"]) == {"asr_fr"}


# -- --init-from -----------------------------------------------------------------------------
@pytest.fixture(scope="module")
def pretrained(mini_recipe, tmp_path_factory) -> Path:
    """A two_stage run (1 pre-training + 1 fine-tuning epoch) on asr_fr + st_fr + CPC."""
    exp = tmp_path_factory.mktemp("pre") / "two_stage"
    cwd = os.getcwd()
    os.chdir(mini_recipe)
    try:
        train_bin.build_trainer(_args(exp, "--method", "two_stage", "--asr-langs", "fr", "--st-langs", "fr",
                                      "--ssl", "cpc", "--pretrain-epochs", "1", "--finetune-epochs", "1",
                                      "--pretrain-scheduler", "none")).run()
    finally:
        os.chdir(cwd)
    return exp


@pytest.mark.slow
def test_two_stage_saves_its_pretrained_model(pretrained):
    pre = torch.load(pretrained / "pretrain.pt", weights_only=False)
    assert set(pre) == {"model", "model_conf", "epoch"} and pre["epoch"] == 1
    assert _equal(pre["model"], _state(pretrained / "checkpoint.1.pt"), "")  # the model after pre-training
    assert not _equal(pre["model"], _state(pretrained / "checkpoint.2.pt"), "encoder.")


@pytest.mark.slow
@pytest.mark.parametrize("heads", [False, True])
def test_init_from_loads_backbone_and_optionally_heads(mini_recipe, pretrained, tmp_path, monkeypatch, caplog,
                                                       heads):
    monkeypatch.chdir(mini_recipe)
    src = pretrained / "latest.pt"  # after fine-tuning: its heads are trained
    rel = os.path.relpath(src, mini_recipe)
    exp = tmp_path / "ft"
    tr = train_bin.build_trainer(_args(exp, "--method", "vm", "--levels", "asr>st>ssl", "--asr-langs", "fr",
                                       "--st-langs", "fr", "--ssl", "cpc", "--seed", "2", "--init-from", rel,
                                       "--init-heads", str(heads).lower()))
    fresh = {k: v.clone() for k, v in tr.model.state_dict().items()}
    with caplog.at_level("INFO", logger="osoup.train.init_from"):
        tr.initialise(None)
    now, source = tr.model.state_dict(), _state(src)
    assert _equal(now, source, "encoder.") and _equal(now, source, "ssl.")
    assert _equal(now, source, "heads.") == heads and _equal(now, fresh, "heads.") != heads
    assert _equal(now, fresh, "cmvn.")
    n_loaded = sum(1 for k in now if k.startswith(("encoder.", "ssl.") + (("heads.",) if heads else ())))
    assert f"loaded {n_loaded} tensors" in caplog.text
    assert ("CTC heads (not loaded without --init-heads true)" in caplog.text) != heads
    config = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    assert config["init_from"] == str(src.resolve()) and config["init_heads"] is heads


def test_init_new_heads_leaves_the_named_heads_fresh():
    """Units changed for translation (char -> unigram): its head has another shape; naming it
    (or its task) in --init-new-heads keeps it fresh, while the other heads still load."""
    own = {"encoder.w": torch.zeros(3), "heads.asr_fr.proj.weight": torch.zeros(5, 4),
           "heads.st_fr.proj.weight": torch.zeros(300, 4), "heads.st_es.proj.weight": torch.zeros(300, 4),
           "cmvn.mean": torch.zeros(2)}
    source = {"encoder.w": torch.ones(3), "heads.asr_fr.proj.weight": torch.ones(5, 4),
              "heads.st_fr.proj.weight": torch.ones(30, 4), "heads.st_es.proj.weight": torch.ones(30, 4)}
    with pytest.raises(DataError, match=r"heads\.st_fr\.proj\.weight has shape \(30, 4\) there but \(300, 4\)"):
        plan_init(own, source, True, "src.pt")
    for spec in ("st", "st_fr, st_es", ["st_es", "st_fr"]):
        report = plan_init(own, source, True, "src.pt", spec)
        assert sorted(report.loaded) == ["encoder.w", "heads.asr_fr.proj.weight"]
        assert report.skipped["heads.st_fr.proj.weight"] == "named by --init-new-heads (starts fresh)"
    with pytest.raises(DataError, match=r"heads\.st_fr\.proj\.weight has shape"):  # only st_es named
        plan_init(own, source, True, "src.pt", "st_es")
    report = plan_init(own, source, False, "src.pt", "st")  # without --init-heads no head loads anyway
    assert report.loaded == ["encoder.w"]
    with pytest.raises(DataError, match=r"--init-new-heads mt: no such head in this model \(its heads: asr_fr, st_es, st_fr"):
        plan_init(own, source, True, "src.pt", "mt")


@pytest.mark.slow
def test_init_from_is_ignored_on_resume(mini_recipe, pretrained, tmp_path, monkeypatch, caplog):
    monkeypatch.chdir(mini_recipe)
    exp = tmp_path / "ft"
    opts = ["--method", "joint", "--asr-langs", "fr", "--st-langs", "", "--ssl", "cpc", "--seed", "3"]
    train_bin.build_trainer(_args(exp, *opts, "--init-from", str(pretrained / "pretrain.pt"))).run()
    trained = _state(exp / "latest.pt")
    tr = train_bin.build_trainer(_args(exp, *opts, "--init-from", str(pretrained / "latest.pt"), "--epochs", "1",
                                       "--resume"))
    with caplog.at_level("INFO", logger="osoup.train.trainer"):
        tr.run(resume=True)  # nothing left to train: the model stays the checkpoint's
    assert "ignored: resuming from" in caplog.text and "(the checkpoint wins)" in caplog.text
    assert _equal(tr.model.state_dict(), trained, "")


@pytest.mark.slow
def test_init_from_refuses_a_shape_mismatch(mini_recipe, pretrained, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(mini_recipe)
    state = torch.load(pretrained / "pretrain.pt", weights_only=False)
    name = next(k for k in state["model"] if k.startswith("encoder.") and state["model"][k].dim() == 2)
    state["model"][name] = torch.zeros(3, 3)
    bad = tmp_path / "bad.pt"
    torch.save(state, bad)
    opts = ["--exp-dir", str(tmp_path / "x"), *BASE, "--method", "joint", "--asr-langs", "fr", "--ssl", "cpc"]
    assert train_bin.main([*opts, "--init-from", str(bad)]) == 1
    errors = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("ERROR: ")]
    assert errors == [f"ERROR: --init-from {bad}: tensor {name} has shape (3, 3) there but "
                      f"{tuple(_state(pretrained / 'pretrain.pt')[name].shape)} in this model"]
    assert train_bin.main([*opts, "--init-from", str(tmp_path / "none.pt")]) == 1
    assert f"--init-from {tmp_path / 'none.pt'} (command line): file not found" in capsys.readouterr().err


# -- the comparison: single as one method, the static sweep chosen on dev -------------------------
def _results(path: Path, seed: int | None, asr: dict, st: dict, dev: float | None = None,
             weights: dict | None = None) -> Path:
    sets = [{"set": f"test_{k}", "split": "test", "lang": k, "task": "asr", "metric": "wer", "value": v}
            for k, v in asr.items()]
    sets += [{"set": f"test_{k}", "split": "test", "lang": k, "task": "st", "metric": "bleu", "value": v}
             for k, v in st.items()]
    path.mkdir(parents=True, exist_ok=True)
    (path / "results.json").write_text(json.dumps({"exp": str(path), "tag": path.name, "seed": seed,
                                                   "decodes": {"greedy": {"sets": sets}}}), encoding="utf-8")
    if dev is not None:
        (path / "train_summary.json").write_text(json.dumps({"best_dev": dev}), encoding="utf-8")
        (path / "config.yaml").write_text(yaml.safe_dump({"method": "joint", "task_weights": weights}),
                                          encoding="utf-8")
    return path


def test_single_objective_models_form_one_method(tmp_path):
    """Disjoint outputs under one label: one deployment, seed s = the join of each model's seed s."""
    paths = [_results(tmp_path / "single_asr_en_seed1", 1, {"en": 30.0}, {}),
             _results(tmp_path / "single_asr_fr_seed1", 1, {"fr": 20.0}, {}),
             _results(tmp_path / "single_st_fr_seed1", 1, {}, {"fr": 10.0}),
             _results(tmp_path / "single_asr_en_seed2", 2, {"en": 26.0}, {}),
             _results(tmp_path / "single_asr_fr_seed2", 2, {"fr": 22.0}, {}),
             _results(tmp_path / "single_st_fr_seed2", 2, {}, {"fr": 12.0})]
    (m,) = gather([load_results(p) for p in paths], labels=["single"] * 6)
    assert m.seeds == [1, 2] and m.asr == {"en": [30.0, 26.0], "fr": [20.0, 22.0]} and m.st == {"fr": [10.0, 12.0]}
    assert m.averages("asr") == [25.0, 24.0] and m.averages("st") == [10.0, 12.0]
    assert len(m.exps) == 6
    with pytest.raises(DataError, match="each with the same seeds"):
        gather([load_results(p) for p in paths[:5]], labels=["single"] * 5)
    with pytest.raises(DataError, match="already has a model for asr_en"):  # overlapping outputs
        gather([load_results(paths[0]), load_results(_results(tmp_path / "enfr", 1, {"en": 1.0, "fr": 1.0}, {})),
                load_results(paths[1])], labels=["x"] * 3)
    out = tmp_path / "cmp"
    vm = _results(tmp_path / "vm", 1, {"en": 25.0, "fr": 19.0}, {"fr": 13.0})
    assert results_cli.main(["--exps", str(vm), *map(str, paths[:3]), "--labels", "vm single single single",
                             "--out", str(out)]) == 0
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "| Lang | vm | single |" in md and "| En | 25.0 | 30.0 |" in md and "| Fr→En | 13.0 | 10.0 |" in md
    single = json.loads((out / "results.json").read_text(encoding="utf-8"))["methods"][1]
    assert single["models"] == [{"seed": 1, "exps": [str(p / "results.json") for p in paths[:3]]}]


def test_static_sweep_reports_the_point_best_on_dev(tmp_path):
    """The lowest mean dev loss wins even where another point is better on test; every point's
    dev number is reported."""
    w1, w2, w3 = {"asr": 0.6, "st": 0.3, "ssl": 0.1}, {"asr": 0.3, "st": 0.6, "ssl": 0.1}, {"asr": 0.4, "st": 0.4, "ssl": 0.2}
    exps = [_results(tmp_path / "s1", 1, {"en": 20.0}, {"fr": 20.0}, dev=1.5, weights=w1),  # best on test
            _results(tmp_path / "s2_seed1", 1, {"en": 30.0}, {"fr": 10.0}, dev=1.0, weights=w2),
            _results(tmp_path / "s2_seed2", 2, {"en": 32.0}, {"fr": 12.0}, dev=1.4, weights=w2),  # mean 1.2
            _results(tmp_path / "s3", 1, {"en": 25.0}, {"fr": 15.0}, dev=1.25, weights=w3)]
    out = tmp_path / "cmp"
    args = ["--exps", *map(str, exps), "--labels", *["static_sweep"] * 4, "--out", str(out),
            "--sweep-labels", "static_sweep"]
    assert results_cli.main(args) == 0
    (m,) = json.loads((out / "results.json").read_text(encoding="utf-8"))["methods"]
    sel = m["selected_on_dev"]
    assert sel["chosen"] == "asr:0.3,st:0.6,ssl:0.1" and m["seeds"] == [1, 2]
    assert m["asr"]["en"]["values"] == [30.0, 32.0]  # the chosen point's test numbers
    assert {p["point"]: p["dev"] for p in sel["points"]} == pytest.approx(
        {"asr:0.6,st:0.3,ssl:0.1": 1.5, "asr:0.3,st:0.6,ssl:0.1": 1.2, "asr:0.4,st:0.4,ssl:0.2": 1.25})
    assert "dev" in sel["criterion"]
    md = (out / "RESULTS.md").read_text(encoding="utf-8")
    assert "| asr:0.3,st:0.6,ssl:0.1 **(chosen)** | 1.2000 |" in md and "| asr:0.6,st:0.3,ssl:0.1 | 1.5000 |" in md
    chosen, _ = select_on_dev("s", ["a", "b"], ["p", "q"], [float("nan"), 2.0])
    assert chosen == ["b"]
    assert results_cli.main([*args[:-1], "nosuch"]) == 1


# -- single end to end through the recipe ------------------------------------------------------
TINY_TRAIN = ("model-size: tiny\nssl: bestrq\nspecaug: false\ndropout: 0.0\nepochs: 1\nsteps-per-epoch: 2\n"
              "max-frames: 4000\nmax-utts: 8\nscheduler: none\nlog-interval: 1\nthreads: 1\n")


@pytest.mark.slow
def test_single_trains_one_model_per_objective_and_compares_as_one_row(mini_recipe, tmp_path):
    recipe = copy_recipe(tmp_path)
    copy_prepared(mini_recipe, recipe)
    (recipe / "conf" / "tiny.yaml").write_text(TINY_TRAIN, encoding="utf-8")
    run_recipe(recipe, "--tiny", "true", "--stage", "6", "--stop-stage", "9", "--asr-langs", "en fr",
               "--st-langs", "fr", "--methods", "single", "--train-config", "conf/tiny.yaml", "--ngpu", "0",
               "--resources", "false", "--decode-model", "latest.pt")
    heads = {"single_asr_en": ["asr_en"], "single_asr_fr": ["asr_fr"], "single_st_fr": ["st_fr"]}
    # run.sh's two phases: each model's first phase in <name>_phase1
    assert sorted(p.name for p in (recipe / "exp").iterdir() if p.name.startswith("single")) == sorted(
        [*heads, *(f"{name}_phase1" for name in heads)])
    for name, own in heads.items():
        exp = recipe / "exp" / name
        meta = json.loads((exp / "objectives.json").read_text(encoding="utf-8"))
        assert meta["objectives"] == [*own, "ssl"] and list(meta["token_dirs"]) == own
        units = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))["st_units"]
        assert units == ("unigram60" if own[0].startswith("st") else "")
        decoded = sorted(str(p.relative_to(exp / "decode_greedy")) for p in (exp / "decode_greedy").glob("*/hyp.*"))
        assert decoded == [f"test_{own[0].split('_')[1]}/hyp.{own[0].split('_')[0]}"]  # its own head and sets
    (single,) = json.loads((recipe / "exp" / "RESULTS_compare" / "results.json").read_text(encoding="utf-8"))["methods"]
    assert single["label"] == "single" and sorted(single["asr"]) == ["en", "fr"] and list(single["st"]) == ["fr"]
    per_model = {name: json.loads((recipe / "exp" / name / "results.json").read_text(encoding="utf-8"))
                 for name in heads}
    assert single["asr"]["en"]["values"] == [per_model["single_asr_en"]["decodes"]["greedy"]["sets"][0]["value"]]
    assert single["st"]["fr"]["values"] == [per_model["single_st_fr"]["decodes"]["greedy"]["sets"][0]["value"]]
    assert len(single["models"][0]["exps"]) == 3
