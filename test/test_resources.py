"""The resource table (paper Table 9) measured on tiny experiments: parameter counts against
the models, sizes against the packed files, sums over the models of one deployment, seed
replicas measured once, the Markdown rows, and ``osoup-results --resources`` end to end."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from osoup.bin import results as results_cli
from osoup.fileio import DataError
from osoup.score.resource_table import ROWS, method_totals, plan_deployments, write_resources
from osoup.train import resources as R
from test_score import _results_json

ENC = dict(idim=80, d_model=32, n_heads=2, n_blocks=2, ff_mult=2, conv_kernel=5, conv_norm="batch",
           dropout=0.1, subsampling_channels=8)
N_UTTS = 3


def _tokens(root: Path) -> dict[str, str]:
    """Token dirs of the heads asr_fr (French) and st_fr (English targets)."""
    from osoup.text.spm import train_spm

    fr = ["le chat dort", "un chien court vite", "la maison est grande", "il pleut sur la ville"]
    en = ["the cat sleeps", "a dog runs fast", "the house is big", "it rains on the town"]
    train_spm(fr, root / "token/asr_fr", "asr", "fr", 30)
    train_spm(en, root / "token/st_en", "st", "en", 30)
    return {"asr_fr": str(root / "token/asr_fr"), "st_fr": str(root / "token/st_en")}


def _test_set(root: Path) -> dict[str, int]:
    """``dump/fbank/test_fr``: a too-short utterance first (never decoded), then five others;
    returns utterance -> frames."""
    import kaldiio

    rng = np.random.default_rng(0)
    lens = [5, 120, 90, 150, 110, 100]
    feats = {f"frspk-{i:03d}": rng.normal(size=(n, 80)).astype(np.float32) for i, n in enumerate(lens)}
    d = root / "dump/fbank/test_fr"
    d.mkdir(parents=True)
    kaldiio.save_ark(str(d / "feats.ark"), feats, scp=str(d / "feats.scp"))
    return {u: m.shape[0] for u, m in feats.items()}


def _experiment(root: Path, name: str, heads: list[str], toks: dict[str, str], ssl: str | None, seed: int) -> Path:
    """A trained-looking experiment: best.pt and objectives.json as osoup-train writes them."""
    from osoup.nets.model import SoupModel
    from osoup.text.tokenizer import Tokenizer

    conf = {"encoder_conf": ENC, "head_vocab": {h: Tokenizer(toks[h]).vocab_size for h in heads}, "ssl": ssl,
            "ssl_conf": {"n_predict": 3, "n_negatives": 4} if ssl else None,
            "cmvn": (torch.zeros(80), torch.ones(80)), "specaug_conf": {}}
    torch.manual_seed(seed)
    exp = root / "exp" / name
    exp.mkdir(parents=True)
    torch.save({"model": SoupModel(**conf).state_dict(), "model_conf": conf}, exp / "best.pt")
    meta = {"objectives": heads + (["ssl"] if ssl else []), "token_dirs": {h: toks[h] for h in heads},
            "encoder_conf": ENC, "ssl": ssl}
    (exp / "objectives.json").write_text(json.dumps(meta), encoding="utf-8")
    return exp


@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One multi-objective model (two seeds) against two single-objective models, measured."""
    root = tmp_path_factory.mktemp("res")
    toks, frames = _tokens(root), _test_set(root)
    exps = [_experiment(root, "moo_seed1", ["asr_fr", "st_fr"], toks, "cpc", 1),
            _experiment(root, "moo_seed2", ["asr_fr", "st_fr"], toks, "cpc", 2),
            _experiment(root, "single_asr_fr", ["asr_fr"], toks, None, 3),
            _experiment(root, "single_st_fr", ["st_fr"], toks, None, 4)]
    deps = plan_deployments([str(e) for e in exps], ["MOO", "MOO", "single", "single"],
                            [R.output_heads(e) for e in exps])
    models = {e: R.measure_experiment(e, data_dir=root / "dump/fbank", n_utts=N_UTTS,
                                      n_loads=2 if e == str(exps[0]) else 1)
              for d in deps for e in d.parts}
    md, js = write_resources(root / "cmp", deps, models, n_loads=2, n_utts=N_UTTS, split="test")
    return {"root": root, "exps": exps, "frames": frames, "deps": deps, "models": models,
            "md": md.read_text(encoding="utf-8"), "json": json.loads(js.read_text(encoding="utf-8"))}


def test_replicas_are_measured_once_and_parts_are_grouped(measured):
    moo, moo2, asr, st = (str(e) for e in measured["exps"])
    deps = measured["deps"]
    assert [(d.label, d.parts) for d in deps] == [("MOO", [moo]), ("single", [asr, st])]
    assert deps[0].replicas == {moo: [moo2]}
    assert sorted(measured["models"]) == sorted([moo, asr, st])
    assert not (measured["exps"][1] / "model.pack.pt").exists()


def test_parameter_counts_and_sizes_match_the_files(measured):
    from osoup.train.experiment import load_experiment_model

    for exp in measured["exps"][:1] + measured["exps"][2:]:
        m = measured["models"][str(exp)]
        model, _ = load_experiment_model(exp)
        p = m["params"]
        assert p["encoder"] == sum(x.numel() for x in model.encoder.parameters())
        assert p["per_head"] == {h: sum(x.numel() for x in model.heads[h].parameters()) for h in model.heads}
        assert p["heads"] == sum(p["per_head"].values())
        ssl = sum(x.numel() for x in model.ssl.parameters()) if model.ssl is not None else 0
        assert p["ssl"] == ssl and (ssl > 0) == exp.name.startswith("moo")
        assert p["total"] == sum(x.numel() for x in model.parameters()) == p["encoder"] + p["heads"] + ssl
        pack = exp / "model.pack.pt"
        assert m["packed"] == str(pack) and m["packed_now"] and m["packed_from"] == "best.pt"
        assert m["size_bytes"] == os.stat(pack).st_size > 0


def test_existing_packed_model_is_used_as_it_is(measured):
    pack = measured["exps"][0] / "model.pack.pt"
    before = pack.stat().st_mtime_ns
    assert R.ensure_packed(measured["exps"][0]) == (pack, False)
    assert pack.stat().st_mtime_ns == before


def test_load_times_and_decoding_are_positive_and_cover_the_first_utterances(measured):
    frames = measured["frames"]
    decodable = [n for n in frames.values() if n >= 7][:N_UTTS]  # the 5-frame utterance is skipped
    for m in measured["models"].values():
        assert len(m["load_sec"]["values"]) in (1, 2)
        assert all(t > 0 for t in m["load_sec"]["values"])
        assert m["load_sec"]["median"] == pytest.approx(float(np.median(m["load_sec"]["values"])))
        s = m["decode"]["sets"]["test_fr"]
        assert s["heads"] == m["heads"] and s["utts"] == N_UTTS and s["compute_sec"] > 0
        assert s["audio_sec"] == pytest.approx(sum(decodable) * 0.01)


def test_a_deployment_sums_its_models(measured):
    moo, _, asr, st = (str(e) for e in measured["exps"])
    models = measured["models"]
    by_label = {t["label"]: t for t in measured["json"]["methods"]}
    single, one = by_label["single"], by_label["MOO"]
    assert single["models"] == 2 and one["models"] == 1
    assert single["outputs"] == one["outputs"] == ["asr_fr", "st_fr"]
    for k in ("encoder", "heads", "ssl", "total"):
        assert single["params"][k] == models[asr]["params"][k] + models[st]["params"][k]
        assert one["params"][k] == models[moo]["params"][k]
    assert single["params"]["encoder"] == 2 * one["params"]["encoder"]  # same encoder size, twice
    assert single["size_bytes"] == models[asr]["size_bytes"] + models[st]["size_bytes"]
    assert single["load_sec"] == pytest.approx(models[asr]["load_sec"]["median"] + models[st]["load_sec"]["median"])
    # the audio is counted once: both models decode the same utterances for their own outputs
    audio = models[moo]["decode"]["sets"]["test_fr"]["audio_sec"]
    assert single["decode"]["audio_sec"] == pytest.approx(audio) == one["decode"]["audio_sec"]
    compute = sum(models[e]["decode"]["sets"]["test_fr"]["compute_sec"] for e in (asr, st))
    assert single["decode"]["rtf"] == pytest.approx(compute / audio) and single["decode"]["rtf"] > 0
    assert [m["exp"] for m in measured["json"]["models"]] == [moo, asr, st]


def test_markdown_has_the_rows_of_table_9(measured):
    md, (one, single) = measured["md"], measured["json"]["methods"]
    assert "| | MOO | single |" in md
    rows = {line.split(" | ")[0].lstrip("| "): line for line in md.splitlines() if line.startswith("| ")}
    for name, cell in ROWS:
        assert rows[name] == f"| {name} | {cell(one)} | {cell(single)} |"
    assert rows["Models"] == "| Models | 1 | 2 |"
    assert f"| Packed size (MB) | {one['size_bytes'] / 1e6:.3f} |" in md  # under 1 MB: 3 decimals
    assert f"| Encoder parameters | {one['params']['encoder']:,} | {single['params']['encoder']:,} |" in md
    assert re.search(r"median of 2 loads, each in a fresh Python process", md)
    assert "file cache warm" in md and "imports excluded" in md and "1 CPU thread" in md
    moo2 = measured["exps"][1]
    assert f"seed replicas not measured: `{moo2}`" in md and "different outputs" not in md


def test_overlapping_heads_in_one_method_are_an_error():
    with pytest.raises(DataError, match=r"exp/b: method 'x' already has a model for st_fr \(exp/a\)"):
        plan_deployments(["exp/a", "exp/b"], ["x", "x"], [["asr_fr", "st_fr"], ["st_fr"]])
    deps = plan_deployments(["exp/a", "exp/b"], ["x", "y"], [["asr_fr", "st_fr"], ["st_fr"]])
    assert [d.parts for d in deps] == [["exp/a"], ["exp/b"]]
    with pytest.raises(DataError, match="exp/c: no supervised objective"):
        plan_deployments(["exp/c"], ["z"], [[]])


def test_method_totals_arithmetic_on_known_numbers():
    def model(heads, enc, size, load, sets):
        return {"heads": heads, "params": {"encoder": enc, "heads": 10, "ssl": 0, "total": enc + 10},
                "size_bytes": size, "load_sec": {"median": load},
                "decode": {"sets": {s: {"audio_sec": a, "compute_sec": c} for s, (a, c) in sets.items()}}}

    models = {"a": model(["asr_en"], 100, 1000, 0.5, {"test_en": (10.0, 1.0)}),
              "b": model(["asr_fr", "st_fr"], 200, 3000, 0.25, {"test_fr": (20.0, 4.0)}),
              "c": model(["st_en2"], 50, 500, 0.125, {"test_en": (10.0, 1.0)})}
    dep = plan_deployments(["a", "b", "c"], ["m"] * 3, [models[e]["heads"] for e in "abc"])[0]
    t = method_totals(dep, models)
    assert t["params"] == {"encoder": 350, "heads": 30, "ssl": 0, "total": 380}
    assert (t["size_bytes"], t["load_sec"]) == (4500, 0.875)
    assert t["decode"]["audio_sec"] == 30.0 and t["decode"]["compute_sec"] == 6.0
    assert t["decode"]["rtf"] == pytest.approx(0.2)


def test_results_command_writes_the_resource_table(measured, capsys):
    root = measured["root"]
    exps = [_results_json(root / "exp" / n, "x", s, {"fr": 20.0}, {"fr": 10.0}) for n, s in
            (("moo_seed1", 1), ("moo_seed2", 2))]
    out = root / "cmp_cli"
    argv = ["--exps", *map(str, exps), "--out", str(out), "--resources", "--resources-data-dir",
            str(root / "dump/fbank"), "--resources-utts", "2", "--resources-loads", "1"]
    assert results_cli.main(argv) == 0
    data = json.loads((out / "resources.json").read_text(encoding="utf-8"))
    (moo,) = data["methods"]
    assert moo["label"] == "moo" and moo["exps"] == [str(exps[0])]
    assert moo["replicas_not_measured"] == {str(exps[0]): [str(exps[1])]}
    assert data["models"][0]["decode"]["sets"]["test_fr"]["utts"] == 2 and not data["models"][0]["packed_now"]
    assert "| Models | 1 |" in (out / "RESOURCES.md").read_text(encoding="utf-8")
    assert (out / "RESULTS.md").is_file()
    (out / "RESULTS.md").unlink()
    capsys.readouterr()
    assert results_cli.main(argv[:-1] + ["0"]) == 1
    assert capsys.readouterr().err == "ERROR: --resources-loads must be >= 1, got 0\n"
    assert not (out / "RESULTS.md").exists()  # options are checked before anything is written
    with pytest.raises(DataError, match=f"{root / 'none/test_fr/feats.scp'}: not found; --resources-data-dir must "):
        R.first_utterances(root / "none/test_fr", 2)


def test_parameter_counts_are_exact_with_millions_from_one_million():
    from osoup.score.resource_table import _count

    assert _count(999_999) == "999,999"
    assert _count(100_770_696) == "100,770,696 (100.8M)"
