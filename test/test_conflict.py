"""Gradient-conflict analysis: cosine/averaging math against direct numpy, per-layer scores,
clustering of a planted structure into parseable --levels, and osoup-conflict end to end on a
tiny fabricated experiment."""
from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from osoup.conflict.analysis import WHOLE, GradientAccumulator, conflict_score, cosine_from_gram
from osoup.conflict.plots import mds_2d
from osoup.conflict.suggest import average_linkage, group_tokens, levels_spec, suggest_levels
from osoup.moo.levels import parse_levels


def _cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _grads(vectors: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, torch.Tensor]]:
    return {o: {l: torch.tensor(v) for l, v in d.items()} for o, d in vectors.items()}


# -- cosine and averaging ---------------------------------------------------------------------
def test_averaged_and_per_batch_differ_on_constructed_example():
    # Batch 1: a and b agree (cos 1) with large gradients; batch 2: they are opposed (cos -1)
    # with small ones. Per-batch mean: 0. Averaged: a=(5, .5), b=(5, -.5): cos = 24.75/25.25.
    acc = GradientAccumulator(["a", "b"], ["L"])
    acc.add_batch(_grads({"a": {"L": np.array([10.0, 0.0])}, "b": {"L": np.array([10.0, 0.0])}}))
    acc.add_batch(_grads({"a": {"L": np.array([0.0, 1.0])}, "b": {"L": np.array([0.0, -1.0])}}))
    res = acc.result()
    assert res.cos["per-batch"][WHOLE][0, 1] == pytest.approx(0.0, abs=1e-12)
    assert res.cos["averaged"][WHOLE][0, 1] == pytest.approx(24.75 / 25.25)
    assert res.cos["averaged"][WHOLE][0, 0] == pytest.approx(1.0)
    # Norms: of the averaged gradient, and the mean per-batch norm.
    assert res.norms["averaged"][WHOLE] == pytest.approx([np.hypot(5, 0.5)] * 2)
    assert res.norms["per-batch"][WHOLE] == pytest.approx([5.5, 5.5])
    assert res.primary == "averaged"


def test_accumulator_matches_direct_numpy_whole_and_per_layer():
    rng = np.random.default_rng(0)
    objs, layers, sizes, n = ["asr_en", "asr_fr", "st_fr", "ssl"], ["frontend", "block0", "block1"], [7, 5, 3], 6
    batches = [{o: {l: rng.normal(size=s) + (1.5 if o.startswith("asr") else -1.0) * (l == "block1")
                    for l, s in zip(layers, sizes)} for o in objs} for _ in range(n)]
    acc = GradientAccumulator(objs, layers)
    for b in batches:
        acc.add_batch(_grads(b))
    res = acc.result()
    assert res.num_batches == n and res.layer_sizes == dict(zip(layers, sizes))

    def mean_vec(o, ls):
        return np.mean([np.concatenate([b[o][l] for l in ls]) for b in batches], axis=0)

    for i, oi in enumerate(objs):
        for j, oj in enumerate(objs):
            # averaged: cosine of batch-mean gradients; whole = all layers concatenated
            assert res.cos["averaged"][WHOLE][i, j] == pytest.approx(_cos(mean_vec(oi, layers), mean_vec(oj, layers)))
            whole_pb = np.mean([_cos(np.concatenate([b[oi][l] for l in layers]), np.concatenate([b[oj][l] for l in layers]))
                                for b in batches])
            assert res.cos["per-batch"][WHOLE][i, j] == pytest.approx(whole_pb)
            for l in layers:
                assert res.cos["averaged"][l][i, j] == pytest.approx(_cos(mean_vec(oi, [l]), mean_vec(oj, [l])))
                pb = np.mean([_cos(b[oi][l], b[oj][l]) for b in batches])
                assert res.cos["per-batch"][l][i, j] == pytest.approx(pb)
    for i, o in enumerate(objs):
        assert res.norms["averaged"]["block0"][i] == pytest.approx(np.linalg.norm(mean_vec(o, ["block0"])))
    # Layer score = mean of the upper-triangle cosines; ranking ascending by score.
    for mode in ("averaged", "per-batch"):
        scores = res.layer_scores(mode)
        for l in layers:
            c = res.cos[mode][l]
            direct = np.mean([c[i, j] for i in range(4) for j in range(i + 1, 4)])
            assert scores[l] == pytest.approx(direct)
        assert [scores[l] for l in res.layer_ranking(mode)] == sorted(scores.values())
    # block1 has the planted asr-vs-rest conflict: it ranks first.
    assert res.layer_ranking("averaged")[0] == "block1"
    assert res.pair_table()[0][2] == min(res.cos["averaged"][WHOLE][i, j] for i in range(4) for j in range(i + 1, 4))


def test_zero_gradient_is_undefined_not_zero():
    cos = cosine_from_gram(np.array([[4.0, 0.0, 2.0], [0.0, 0.0, 0.0], [2.0, 0.0, 1.0]]))
    assert np.isnan(cos[0, 1]) and np.isnan(cos[1, 1]) and cos[0, 2] == pytest.approx(1.0)
    assert conflict_score(cos) == pytest.approx(1.0)  # only the defined pair counts
    acc = GradientAccumulator(["a", "b"], ["L", "M"], modes=("per-batch",))
    acc.add_batch(_grads({"a": {"L": np.zeros(2), "M": np.ones(2)}, "b": {"L": np.ones(2), "M": np.ones(2)}}))
    acc.add_batch(_grads({"a": {"L": np.ones(2), "M": np.ones(2)}, "b": {"L": -np.ones(2), "M": np.ones(2)}}))
    res = acc.result()
    assert res.cos["per-batch"]["L"][0, 1] == pytest.approx(-1.0)  # mean over the one defined batch
    assert "averaged" not in res.cos and res.primary == "per-batch"
    with pytest.raises(ValueError, match="layer 'M'"):
        acc.add_batch(_grads({"a": {"L": np.ones(2)}, "b": {"L": np.ones(2), "M": np.ones(2)}}))


def test_mds_preserves_distances_of_planar_directions():
    angles = np.array([0.0, 0.5, 2.0, 3.0])
    u = np.stack([np.cos(angles), np.sin(angles)], axis=1)
    coords, share = mds_2d(u @ u.T)
    d_true = np.linalg.norm(u[:, None] - u[None], axis=-1)
    d_mds = np.linalg.norm(coords[:, None] - coords[None], axis=-1)
    assert np.allclose(d_true, d_mds, atol=1e-8) and share == pytest.approx(1.0)


# -- clustering and suggested levels ----------------------------------------------------------
def _planted_cos(rng) -> tuple[list[str], np.ndarray]:
    names = ["asr_en", "asr_fr", "asr_de", "st_fr", "st_de", "ssl"]
    u = rng.normal(size=200)
    v = -0.6 * u + rng.normal(size=200)  # the two task directions conflict
    base = {"asr": u, "st": v}
    vecs = [base[n.split("_")[0]] + 0.5 * rng.normal(size=200) if n != "ssl" else u + v + rng.normal(size=200)
            for n in names]
    m = np.stack(vecs)
    m /= np.linalg.norm(m, axis=1, keepdims=True)
    return names, m @ m.T


def test_clustering_recovers_planted_groups_and_levels_parse():
    names, cos = _planted_cos(np.random.default_rng(3))
    assert cos[0, 3] < 0 and cos[0, 1] > 0
    clustering, sugg = suggest_levels(cos, names, "ssl", threshold=0.0, max_groups=3, favour="asr")
    assert clustering.clusters == [["asr_en", "asr_fr", "asr_de"], ["st_fr", "st_de"]]
    assert clustering.between[(0, 1)] < 0
    assert [s.spec for s in sugg] == ["asr>st>ssl", "st>asr>ssl"]
    assert "UAS" in sugg[0].note and "USA" in sugg[1].note
    for s in sugg:
        assert parse_levels(s.spec, names) == [*s.groups, ["ssl"]]
    # favouring translation flips the recommendation
    _, sugg_st = suggest_levels(cos, names, "ssl", favour="st")
    assert sugg_st[0].spec == "st>asr>ssl"
    # a threshold below every cross-cosine merges everything into one level
    cl1, s1 = suggest_levels(cos, names, "ssl", threshold=-1.0)
    assert len(cl1.clusters) == 1 and len(s1) == 1 and parse_levels(s1[0].spec, names)[-1] == ["ssl"]


def test_average_linkage_against_hand_example_and_max_groups():
    # a-b close (0.9), c-d close (0.8), cross pairs strongly negative except a-c mildly.
    names = ["a", "b", "c", "d"]
    cos = np.array([[1, .9, -.1, -.5], [.9, 1, -.6, -.7], [-.1, -.6, 1, .8], [-.5, -.7, .8, 1]], dtype=float)
    cl = average_linkage(cos, names, threshold=0.0, max_groups=3)
    assert cl.clusters == [["a", "b"], ["c", "d"]]
    assert [m[2] for m in cl.merges] == pytest.approx([0.9, 0.8])
    assert cl.between[(0, 1)] == pytest.approx(np.mean([-.1, -.5, -.6, -.7]))
    # max_groups=1 forces the last merge even though it conflicts
    cl1 = average_linkage(cos, names, threshold=0.0, max_groups=1)
    assert cl1.clusters == [names] and cl1.merges[-1][2] == pytest.approx(-0.475)
    # all pairwise conflicting, 4 singletons, max 3 groups: the least conflicting pair merges
    cos2 = np.full((4, 4), -0.3) + np.diag([1.3] * 4)
    cos2[0, 2] = cos2[2, 0] = -0.1
    assert average_linkage(cos2, names, threshold=0.0, max_groups=3).clusters == [["a", "c"], ["b"], ["d"]]


def test_group_tokens_and_language_levels():
    objs = ["asr_en", "asr_fr", "st_fr", "st_de", "ssl"]
    assert group_tokens(["asr_en", "asr_fr", "st_fr"], objs) == "asr,st_fr"
    assert group_tokens(["asr_fr", "st_fr"], objs) == "fr"
    assert group_tokens(["st_de"], objs) == "de"
    assert group_tokens(["asr_en", "st_de"], objs) == "asr_en,st_de"  # one-objective selectors: names
    spec = levels_spec([["asr_en", "asr_fr", "st_fr"], ["st_de"]], objs)
    assert parse_levels(spec, objs) == [["asr_en", "asr_fr", "st_fr"], ["st_de"], ["ssl"]]
    # UEC / UCE style: language selectors, no SSL in the run
    objs2 = ["asr_en", "asr_zh"]
    names, cos = objs2, np.array([[1.0, -0.4], [-0.4, 1.0]])
    _, sugg = suggest_levels(cos, names, ssl=None)
    assert sorted(s.spec for s in sugg) == ["en>zh", "zh>en"]
    assert all("UEC" in s.note for s in sugg)
    for s in sugg:
        parse_levels(s.spec, objs2, ssl=None)


# -- end to end -------------------------------------------------------------------------------
WORDS = "the cat sat on a mat le chat est sur un tapis bleu rouge vert grand petit".split()


def _fake_experiment(root: Path, seed: int = 0) -> tuple[Path, dict]:
    """A recipe dir with dumped features for asr_en, asr_fr, st_fr (+ CPC audio), tokenizers,
    a small SoupModel checkpoint and objectives.json/config.yaml as osoup-train writes them."""
    import kaldiio

    from osoup.data.datadir import write_scp
    from osoup.nets.model import SoupModel
    from osoup.text.normalize import normalize_asr, normalize_st
    from osoup.text.spm import train_spm
    from osoup.text.tokenizer import Tokenizer

    rng = np.random.default_rng(seed)
    pyr = random.Random(seed)

    def sent() -> str:
        return " ".join(pyr.choice(WORDS) for _ in range(pyr.randint(2, 4)))

    texts = {lang: {f"{lang}spk-{i:03d}": sent().capitalize() + "." for i in range(12)} for lang in ("en", "fr")}
    trans = {u: sent() for u in texts["fr"]}
    for lang in ("en", "fr"):
        train_spm([normalize_asr(t, lang) for t in texts[lang].values()], root / "data/token" / f"asr_{lang}", "asr", lang, 40)
    train_spm([normalize_st(t) for t in trans.values()], root / "data/token/st_en", "st", "en", 40)
    for lang in ("en", "fr"):
        feats = {u: rng.normal(size=(rng.integers(90, 140), 80)).astype(np.float32) for u in texts[lang]}
        src = root / "dump/fbank" / f"train_{lang}"
        src.mkdir(parents=True)
        kaldiio.save_ark(str(src / "feats.ark"), feats, scp=str(src / "feats.scp.abs"))
        # feats.scp paths relative to the recipe dir, as the recipe writes them
        write_scp(src / "feats.scp", {u: f"dump/fbank/train_{lang}/feats.ark:{v.rsplit(':', 1)[1]}"
                                      for u, v in (l.split(" ", 1) for l in (src / "feats.scp.abs").read_text(encoding="utf-8").splitlines())})
        write_scp(src / "utt2num_frames", {u: str(m.shape[0]) for u, m in feats.items()})
        write_scp(src / "text", texts[lang])
        if lang == "fr":
            write_scp(src / "text.en", trans)
        tasks = ["asr"] + (["st"] if lang == "fr" else [])
        for task in tasks:
            d = root / "dump" / task / f"train_{lang}"
            d.mkdir(parents=True)
            for f in ("feats.scp", "utt2num_frames", "text") + (("text.en",) if lang == "fr" else ()):
                (d / f).write_text((src / f).read_text(encoding="utf-8"), encoding="utf-8")
    enc = dict(idim=80, d_model=32, n_heads=2, n_blocks=2, ff_mult=2, conv_kernel=5, conv_norm="batch",
               dropout=0.1, subsampling_channels=8)
    token_dirs = {"asr_en": "data/token/asr_en", "asr_fr": "data/token/asr_fr", "st_fr": "data/token/st_en"}
    heads = {n: Tokenizer(root / d).vocab_size for n, d in token_dirs.items()}
    conf = {"encoder_conf": enc, "head_vocab": heads, "ssl": "cpc", "ssl_conf": {"n_predict": 3, "n_negatives": 4},
            "cmvn": (torch.zeros(80), torch.ones(80)), "specaug_conf": {}}
    torch.manual_seed(seed)
    model = SoupModel(**conf)
    exp = root / "exp/vm"
    exp.mkdir(parents=True)
    torch.save({"model": model.state_dict(), "model_conf": conf}, exp / "best.pt")
    meta = {"objectives": ["asr_en", "asr_fr", "st_fr", "ssl"],
            "token_dirs": {n: str((root / d).resolve()) for n, d in token_dirs.items()}, "encoder_conf": enc, "ssl": "cpc"}
    (exp / "objectives.json").write_text(json.dumps(meta), encoding="utf-8")
    (exp / "config.yaml").write_text("dump_dir: dump\ntoken_dir: data/token\nmax_frames: 600\nmax_utts: 4\n"
                                     "train_split: train\ndev_split: dev\nssl_sets: ''\n", encoding="utf-8")
    return exp, meta


def test_conflict_command_end_to_end(tmp_path, monkeypatch, capsys):
    from osoup.bin.conflict import main

    exp, meta = _fake_experiment(tmp_path)
    monkeypatch.chdir(tmp_path)
    rc = main(["--exp-dir", "exp/vm", "--num-batches", "3", "--suggest-levels", "--threads", "1", "--verbose", "0"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    out = tmp_path / "exp/vm/conflict"
    doc = json.loads((out / "conflict.json").read_text(encoding="utf-8"))
    names = meta["objectives"]
    assert doc["objectives"] == names
    assert doc["layers"] == ["frontend", "block0", "block1"]
    assert doc["num_batches"] == 3 and doc["run"]["batches_skipped"] == 0
    assert doc["settings"]["max_utts"] == 4  # taken from the experiment's config.yaml
    for mode in ("averaged", "per-batch"):
        m = np.array(doc["modes"][mode]["whole_model"], dtype=float)
        assert m.shape == (4, 4) and np.allclose(m, m.T) and np.allclose(np.diag(m), 1.0)
        assert np.all(np.abs(m) <= 1.0)
        assert set(doc["modes"][mode]["layer_ranking"]) == set(doc["layers"])
        for l in doc["layers"]:
            c = np.array(doc["modes"][mode]["per_layer"][l], dtype=float)
            assert doc["modes"][mode]["layer_score"][l] == pytest.approx(np.mean(c[np.triu_indices(4, 1)]))
        assert all(v > 0 for v in doc["modes"][mode]["grad_norm"]["whole"].values())
    # per-batch and averaged cosines of the same gradients differ (noisy batches)
    assert not np.allclose(doc["modes"]["averaged"]["whole_model"], doc["modes"]["per-batch"]["whole_model"])
    for png in ("cosine_heatmap.png", "layer_heatmaps.png", "cluster_scatter.png"):
        data = (out / png).read_bytes()
        assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 5000
    lines = (out / "suggested_levels.txt").read_text(encoding="utf-8").splitlines()
    assert lines and lines[0] == doc["suggested_levels"][0]["spec"]
    for spec in lines:
        levels = parse_levels(spec, names)
        assert levels[-1] == ["ssl"] and sorted(sum(levels, [])) == sorted(names)
    assert "suggested --levels" in captured.out and lines[0] in captured.out
    md = (out / "conflict.md").read_text(encoding="utf-8")
    assert "eq. 30" in md and "per-batch" in md

    # Direct check of one number: the averaged whole-model cosine of asr_en vs st_fr equals the
    # cosine of the gradients averaged over the same batches, recomputed here.
    from osoup.conflict.gradients import batch_plan, flat_gradients, layer_parameters, load_objective_data, objective_loss
    from osoup.data.objectives import build_objectives
    from osoup.train.experiment import load_experiment_model

    model, _ = load_experiment_model(exp, "best.pt")
    specs = [s for s in build_objectives("dump", "data/token", ["en"], ["fr"], None) if s.name in ("asr_en", "st_fr")]
    data = load_objective_data(specs, "train", meta["token_dirs"], 600, 4)
    groups = layer_parameters(model)
    means = {}
    for n in ("asr_en", "st_fr"):
        plan = batch_plan(len(data[n].batches), 3, 1, n)
        vecs = [torch.cat(list(flat_gradients(objective_loss(model, data[n], data[n].batches[i], "cpu"), groups).values()))
                for i in plan]
        means[n] = torch.stack(vecs).double().mean(0).numpy()
    i, j = names.index("asr_en"), names.index("st_fr")
    assert doc["modes"]["averaged"]["whole_model"][i][j] == pytest.approx(_cos(means["asr_en"], means["st_fr"]), abs=1e-6)


def test_conflict_command_errors(tmp_path, monkeypatch, capsys):
    from osoup.bin.conflict import main

    exp, _ = _fake_experiment(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert main(["--exp-dir", "exp/missing"]) == 1
    assert "exp/missing/objectives.json: not found" in capsys.readouterr().err
    assert not (tmp_path / "exp/missing").exists()
    assert main(["--exp-dir", "exp/vm", "--asr-langs", "de", "--st-langs", ""]) == 1
    assert "no head for ['asr_de']" in capsys.readouterr().err
    assert main(["--exp-dir", "exp/vm", "--ssl", "bestrq"]) == 1
    assert "trained with ssl=cpc" in capsys.readouterr().err
    assert main(["--exp-dir", "exp/vm", "--split", "dev", "--ssl", "none"]) == 1
    assert "no dev data dirs" in capsys.readouterr().err


def test_non_finite_batches_are_skipped_counted_and_bounded(tmp_path, monkeypatch, capsys):
    import osoup.conflict.gradients as G
    from osoup.bin.conflict import main

    _fake_experiment(tmp_path)
    monkeypatch.chdir(tmp_path)
    real = G.objective_loss
    calls = {"n": 0}

    def flaky(model, data, idx, device):
        loss = real(model, data, idx, device)
        if data.name == "st_fr":
            calls["n"] += 1
            if calls["n"] == 2:  # the second batch index of st_fr
                return loss * float("nan")
        return loss

    monkeypatch.setattr(G, "objective_loss", flaky)
    args = ["--exp-dir", "exp/vm", "--num-batches", "3", "--ssl", "none", "--verbose", "0"]
    assert main(args) == 1
    assert "1 of 3 batch indices had non-finite" in capsys.readouterr().err
    calls["n"] = 0
    assert main(args + ["--max-bad-frac", "0.5"]) == 0
    doc = json.loads((tmp_path / "exp/vm/conflict/conflict.json").read_text(encoding="utf-8"))
    assert doc["num_batches"] == 2 and doc["run"]["batches_skipped"] == 1


def test_conflict_truncated_checkpoint_is_one_error_line(tmp_path, monkeypatch, capsys):
    import os
    import shutil

    from osoup.bin.conflict import main

    exp, _ = _fake_experiment(tmp_path)
    shutil.copy(exp / "best.pt", exp / "checkpoint.4.pt")
    os.truncate(exp / "best.pt", (exp / "best.pt").stat().st_size // 3)
    monkeypatch.chdir(tmp_path)
    capsys.readouterr()
    assert main(["--exp-dir", "exp/vm", "--num-batches", "2", "--verbose", "0"]) == 1
    err = capsys.readouterr().err
    lines = [l for l in err.splitlines() if l.strip()]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("ERROR: exp/vm/best.pt: cannot read this model checkpoint (PytorchStreamReader")
    assert "truncated or corrupt" in lines[0] and "other model files in exp/vm: checkpoint.4.pt" in lines[0]
    assert not (exp / "conflict" / "conflict.json").exists()
    # the checkpoint it names works
    assert main(["--exp-dir", "exp/vm", "--model", "checkpoint.4.pt", "--num-batches", "1", "--ssl", "none",
                 "--verbose", "0"]) == 0
    assert json.loads((exp / "conflict" / "conflict.json").read_text(encoding="utf-8"))["settings"]["model"] == "checkpoint.4.pt"


def _gram_score(vectors: list[np.ndarray]) -> float:
    """osoup.moo.conflict_scores of the vectors' Gramian over the pairs i < j."""
    from osoup.moo import conflict_scores

    g = torch.tensor(np.stack(vectors), dtype=torch.float64)
    k = len(vectors)
    return float(conflict_scores(g @ g.T, torch.ones(k, k, dtype=torch.bool).triu(1)))


def test_analysis_scores_agree_with_moo_conflict_scores_including_zero_gradient():
    rng = np.random.default_rng(3)
    names, layers = ["a", "b", "c", "z"], ["l0", "l1"]
    batches = []
    for _ in range(3):
        vec = {n: {l: rng.normal(size=5) for l in layers} for n in names}
        vec["z"] = {"l0": np.zeros(5), "l1": rng.normal(size=5)}  # z never reaches l0
        batches.append(vec)
    acc = GradientAccumulator(names, layers)
    for vec in batches:
        acc.add_batch(_grads(vec))
    res = acc.result()
    scores = res.layer_scores("averaged")
    for l in layers:
        mean = [np.mean([b[n][l] for b in batches], axis=0) for n in names]
        assert scores[l] == pytest.approx(_gram_score(mean), abs=1e-12)
    # the zero gradient is left out: l0's score is that of a, b, c alone (not pulled towards 0)
    assert scores["l0"] == pytest.approx(_gram_score([np.mean([b[n]["l0"] for b in batches], axis=0)
                                                      for n in "abc"]), abs=1e-12)
    whole = [np.mean([np.concatenate([b[n][l] for l in layers]) for b in batches], axis=0) for n in names]
    assert conflict_score(res.cos["averaged"][WHOLE]) == pytest.approx(_gram_score(whole), abs=1e-12)
    # per batch: the wrapper is conflict_scores of that batch's Gramian
    for b in batches:
        one = GradientAccumulator(names, layers, modes=("per-batch",))
        one.add_batch(_grads(b))
        assert one.result().layer_scores()["l0"] == pytest.approx(_gram_score([b[n]["l0"] for n in names]), abs=1e-12)
    # no defined pair: NaN, as conflict_scores says
    assert np.isnan(conflict_score(cosine_from_gram(np.diag([1.0, 0.0]))))
    assert np.isnan(_gram_score([np.ones(3), np.zeros(3)]))


def test_conflict_request_fields_are_the_command_options():
    from dataclasses import MISSING, fields

    from osoup.bin.conflict import get_parser
    from osoup.conflict.report import ConflictRequest

    args = vars(get_parser().parse_args(["--exp-dir", "exp/x"]))
    req = ConflictRequest.from_options(args)
    for f in fields(ConflictRequest):
        assert f.name in args, f"ConflictRequest.{f.name} is no osoup-conflict option"
        if f.default is not MISSING:
            assert f.default == args[f.name], f"default of {f.name} differs from the option's"
    assert req.out_dir == Path("exp/x/conflict") and req.modes == ("averaged", "per-batch")
