"""End to end: the mini recipe's stages from shell, on a copy of the recipe in a temp dir.

Stages 0-5 run at tiny size; then one method is trained from ``run.sh`` to overfit the
training utterances, decoded and scored, and the test asserts that it learned.
"""
from __future__ import annotations

import json
from pathlib import Path

import kaldiio
import pytest
from conftest import run_recipe

from osoup.data.datadir import read_scp
from osoup.data.validate import validate_data_dir

LANGS = ["en", "fr", "de", "es", "ca", "zh"]
ST_LANGS = ["fr", "de", "es", "ca"]

pytestmark = pytest.mark.slow


_run = run_recipe


@pytest.fixture(scope="module")
def prepared(mini_recipe: Path) -> Path:
    """The session's tiny mini recipe after stages 0-5 (test/conftest.py)."""
    return mini_recipe


def test_stages_0_to_5_outputs(prepared: Path) -> None:
    r = prepared
    for lang in LANGS:
        for split in ("train", "dev", "test"):
            d = r / "data" / f"{split}_{lang}"
            assert validate_data_dir(d) == [], d
            assert (d / "text.en").is_file() == (lang != "en")
            text = read_scp(d / "text", allow_empty_value=True)
            assert text and all(t.strip() for t in text.values())
            # features for every kept utterance, 80-dimensional
            f = r / "dump" / "fbank" / f"{split}_{lang}"
            feats = read_scp(f / "feats.scp")
            nfr = read_scp(f / "utt2num_frames")
            assert set(feats) == set(nfr) and set(feats) <= set(text)
            if split == "test":
                assert set(feats) == set(text), "test sets must not be filtered"
            for utt in list(feats)[:3]:
                mat = kaldiio.load_mat(f"{r}/{feats[utt]}")  # ark paths are relative to the recipe dir
                assert mat.shape == (int(nfr[utt]), 80)
        assert (r / "data" / "token" / f"asr_{lang}" / "spm.model").is_file()
        assert (r / "dump" / "asr" / f"train_{lang}" / "feats.scp").is_file()
    assert (r / "data" / "token" / "st_en" / "spm.model").is_file()
    for lang in ST_LANGS:
        assert (r / "dump" / "st" / f"train_{lang}" / "text.en").is_file()
    tokens = (r / "data" / "token" / "asr_fr" / "tokens.txt").read_text(encoding="utf-8").split("\n")
    assert tokens[0] == "<blank>"
    cmvn = json.loads((r / "dump" / "fbank" / "global_cmvn.json").read_text(encoding="utf-8"))
    assert len(cmvn["mean"]) == 80 and cmvn["count"] > 0


def test_rerun_skips_finished_stages(prepared: Path) -> None:
    before = (prepared / "dump" / "fbank" / "train_fr" / "feats.scp").stat().st_mtime_ns
    proc = _run(prepared, "--tiny", "true", "--stop-stage", "5", timeout=300)
    assert "already" in proc.stderr
    assert (prepared / "dump" / "fbank" / "train_fr" / "feats.scp").stat().st_mtime_ns == before


def test_train_decode_score_learns(prepared: Path) -> None:
    """vs on asr_fr + st_fr (no SSL) overfits the ~16 training utterances of the tiny corpus:
    greedy decoding of those same utterances reaches CER <= 10% within 120 steps (training
    losses were about 0.02 per token at step 120 in a measured run)."""
    conf = prepared / "conf" / "overfit.yaml"
    conf.write_text(
        "model-size: tiny\nssl: none\nspecaug: false\ndropout: 0.0\nepochs: 4\nsteps-per-epoch: 30\n"
        "max-frames: 100000\nmax-utts: 32\nlr-backbone: 2.0e-3\nlr-heads: 2.0e-3\nwarmup-steps: 20\n"
        "scheduler: none\ngamma: 0.05\ngram-normalize: mean-diag\nlog-interval: 50\nthreads: 2\n",
        encoding="utf-8",
    )
    _run(prepared, "--tiny", "true", "--stage", "6", "--recipe", "vs", "--train-config", "conf/overfit.yaml",
         "--asr-langs", "fr", "--st-langs", "fr", "--test-sets", "train", "--decode-model", "latest.pt")
    exp = prepared / "exp" / "vs"
    # run.sh's two phases: characters in exp/vs_phase1, then exp/vs with a fresh unigram translation head
    import yaml

    conf2 = yaml.safe_load((exp / "config.yaml").read_text(encoding="utf-8"))
    assert (prepared / "exp" / "vs_phase1" / "latest.pt").is_file()
    assert conf2["st_units"] == "unigram60" and conf2["init_new_heads"] == "st"
    assert conf2["init_from"].endswith("exp/vs_phase1/latest.pt")
    objectives = json.loads((exp / "objectives.json").read_text(encoding="utf-8"))
    assert objectives["token_dirs"]["st_fr"].endswith("st_en_unigram60")
    res = json.loads((exp / "results.json").read_text(encoding="utf-8"))
    text = json.dumps(res)
    assert (exp / "RESULTS.md").is_file() and (prepared / "exp" / "RESULTS_compare" / "RESULTS.md").is_file()
    hyp = read_scp(exp / "decode_greedy" / "train_fr" / "hyp.asr", allow_empty_value=True)
    assert len(hyp) == len(read_scp(prepared / "dump" / "fbank" / "train_fr" / "feats.scp"))
    # the word error rate of the ASR head on its own training data
    from osoup.score.metrics import cer
    from osoup.text.normalize import normalize_asr

    ref = read_scp(prepared / "data" / "train_fr" / "text")
    keys = sorted(hyp)
    c = cer([normalize_asr(ref[k], "fr") for k in keys], [normalize_asr(hyp[k], "fr") for k in keys])
    assert c["cer"] <= 10.0, (c, text[:2000])
