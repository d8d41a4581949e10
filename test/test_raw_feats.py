"""Raw-waveform features for pretrained backbones (paper appendix F.2, Table 8): stage 3 with
--feats-type raw, the stage 4/5 filters on sample counts, the decoder's frame arithmetic, the
errors for a missing backbone dir, and the mini recipe end to end on a tiny wav2vec 2.0
(``run.sh --backbone tiny_w2v2``; this file holds the only such end-to-end test)."""
from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile
from conftest import copy_recipe, recipe_env, run_recipe
from test_stages import STAGE6, _calls, fake_recipe  # noqa: F401 - fake_recipe: the stand-in recipe fixture

from osoup.data.audio import load_audio
from osoup.data.datadir import read_scp, write_scp
from osoup.data.feats_type import read_feats_type
from osoup.data.filter import ctc_min_frames, filter_ctc, filter_data, subsampled_length
from osoup.decode.chunked import Frontend, chunked_log_probs, output_frames, plan_windows

LANGS = ("en", "es")
LANG_OPTS = ("--tiny", "true", "--asr-langs", "en es", "--st-langs", "es")
W2V2_KERNELS = (10, 3, 3, 3, 3, 2, 2)
W2V2_STRIDES = (5, 2, 2, 2, 2, 2, 2)


def _w2v2_frames(n: int) -> int:
    """transformers' own count of wav2vec 2.0's CNN frames (an independent reference; it goes
    negative below the receptive field, where no frame exists)."""
    import torch
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    global _W2V2_REF
    if _W2V2_REF is None:
        conf = Wav2Vec2Config(hidden_size=8, num_hidden_layers=1, num_attention_heads=1, intermediate_size=8,
                              conv_dim=(4,) * 7, conv_kernel=W2V2_KERNELS, conv_stride=W2V2_STRIDES,
                              num_conv_pos_embeddings=2, num_conv_pos_embedding_groups=1)
        _W2V2_REF = Wav2Vec2Model(conf)
    return max(0, int(_W2V2_REF._get_feat_extract_output_lengths(torch.tensor(n))))


_W2V2_REF = None


def _recipe_with_data(tmp: Path, prepared: Path) -> Path:
    """A fresh copy of the mini recipe holding the prepared recipe's data/ (stages 0-2 done;
    wav.scp names the prepared corpus by absolute path)."""
    recipe = copy_recipe(tmp)
    shutil.copytree(prepared / "data", recipe / "data", symlinks=True,
                    ignore=shutil.ignore_patterns(".lock", "token"))
    return recipe


@pytest.fixture(scope="module")
def raw_recipe(mini_recipe: Path, tmp_path_factory) -> Path:
    """The tiny corpus (en, es) after stages 3-4 with --feats-type raw."""
    recipe = _recipe_with_data(tmp_path_factory.mktemp("raw"), mini_recipe)
    run_recipe(recipe, *LANG_OPTS, "--stage", "3", "--stop-stage", "4", "--feats-type", "raw", timeout=600)
    return recipe


def _sets() -> list[str]:
    return [f"{split}_{lang}" for lang in LANGS for split in ("train", "dev", "test")]


def test_stage3_raw_dumps_the_16k_waveforms(raw_recipe: Path) -> None:
    for s in _sets():
        d = raw_recipe / "dump" / "raw" / s
        assert read_feats_type(d) == "raw" and (d / "feats_type").read_text(encoding="utf-8") == "raw\n"
        wavs = read_scp(d / "wav.scp")
        samples = read_scp(d / "utt2num_samples")
        assert samples == read_scp(d / "utt2num_frames") and set(samples) == set(wavs)
        feats = read_scp(d / "feats.scp")
        for utt, path in wavs.items():
            info = soundfile.info(path)  # 48 kHz mp3: resampled to ceil(frames / 3) samples
            assert int(samples[utt]) == math.ceil(info.frames * 16000 / info.samplerate), utt
            mat = kaldiio.load_mat(f"{raw_recipe}/{feats[utt]}")
            assert mat.dtype == np.float32 and mat.shape == (int(samples[utt]), 1)
        utt = sorted(wavs)[0]
        np.testing.assert_array_equal(kaldiio.load_mat(f"{raw_recipe}/{feats[utt]}")[:, 0], load_audio(wavs[utt]))


def test_stage4_raw_keeps_samples_and_writes_identity_cmvn(raw_recipe: Path) -> None:
    for s in _sets():
        d = raw_recipe / "dump" / "fbank" / s
        assert read_feats_type(d) == "raw"
        assert read_scp(d / "utt2num_samples") == read_scp(d / "utt2num_frames")
        assert set(read_scp(d / "utt2num_samples")) == set(read_scp(d / "feats.scp"))
    cmvn = json.loads((raw_recipe / "dump" / "fbank" / "global_cmvn.json").read_text(encoding="utf-8"))
    assert cmvn["mean"] == [0.0] and cmvn["std"] == [1.0]


def test_length_filter_counts_seconds_in_samples(raw_recipe: Path, tmp_path: Path) -> None:
    src = raw_recipe / "dump" / "raw" / "train_en"
    samples = {u: int(n) for u, n in read_scp(src / "utt2num_samples").items()}
    lengths = sorted(samples.values())
    lo, hi = (lengths[2] + lengths[3]) / 2 / 16000, (lengths[-3] + lengths[-2]) / 2 / 16000
    counts = filter_data(src, tmp_path / "out", min_sec=lo, max_sec=hi)
    kept = set(read_scp(tmp_path / "out" / "feats.scp"))
    assert kept == {u for u, n in samples.items() if lo <= n / 16000 <= hi}
    assert counts["too_short"] == sum(n / 16000 < lo for n in lengths) >= 3
    assert counts["too_long"] == sum(n / 16000 > hi for n in lengths) >= 2
    assert read_feats_type(tmp_path / "out") == "raw"
    assert set(read_scp(tmp_path / "out" / "utt2num_samples")) == kept


def _raw_dir(d: Path, samples: dict[str, int], text: dict[str, str]) -> Path:
    """A minimal raw data dir (feature paths are never read by the filters)."""
    d.mkdir(parents=True)
    write_scp(d / "feats.scp", {u: f"x.ark:{i}" for i, u in enumerate(samples)})
    for name in ("utt2num_frames", "utt2num_samples"):
        write_scp(d / name, {u: str(n) for u, n in samples.items()})
    write_scp(d / "text", text)
    write_scp(d / "utt2spk", {u: u.split("-")[0] for u in samples})
    (d / "feats_type").write_text("raw\n", encoding="utf-8")
    return d


class _CharTokenizer:
    kind = "asr"

    def encode(self, text: str) -> list[int]:
        return [ord(c) for c in text]


def _backbone_dir(tmp: Path) -> Path:
    d = tmp / "w2v2"
    d.mkdir()
    (d / "config.json").write_text(json.dumps({"model_type": "wav2vec2", "conv_kernel": list(W2V2_KERNELS),
                                              "conv_stride": list(W2V2_STRIDES)}), encoding="utf-8")
    return d


def test_ctc_filter_uses_the_backbone_cnn_frames(tmp_path: Path) -> None:
    from osoup.bin.filter_ctc import _frames_of

    # "abc" needs 3 frames (1040 samples), "aab" 4 (a blank between the two a's: 1360 samples)
    samples = {"s1-a": 1039, "s1-b": 1040, "s1-c": 1359, "s1-d": 1360}
    text = {"s1-a": "abc", "s1-b": "abc", "s1-c": "aab", "s1-d": "aab"}
    src = _raw_dir(tmp_path / "in", samples, text)
    frames_of = _frames_of(str(src), str(_backbone_dir(tmp_path)))
    assert [frames_of(n) for n in samples.values()] == [_w2v2_frames(n) for n in samples.values()] == [2, 3, 3, 4]
    counts = filter_ctc(src, tmp_path / "out", _CharTokenizer(), "asr", frames_of=frames_of)
    assert set(read_scp(tmp_path / "out" / "utt2num_frames")) == {"s1-b", "s1-d"}
    assert counts["too_many_tokens"] == 2
    # the fbank front-end's formula on the same counts would have kept every utterance
    assert all(ctc_min_frames(_CharTokenizer().encode(text[u])) <= subsampled_length(n) for u, n in samples.items())


def _cli(module: str, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, cwd=cwd,
                          env=recipe_env(), timeout=300)


def _error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if "ERROR" in line]


def test_filter_ctc_names_a_missing_backbone_dir(mini_recipe: Path, tmp_path: Path) -> None:
    src = _raw_dir(tmp_path / "in", {"s1-a": 20000}, {"s1-a": "abc"})
    tok = str(mini_recipe / "data" / "token" / "asr_en")
    missing = tmp_path / "no_such_xlsr"
    r = _cli("osoup.bin.filter_ctc", "--in", str(src), "--out", str(tmp_path / "out"), "--token-dir", tok,
             "--task", "asr", "--backbone-dir", str(missing))
    assert r.returncode == 1 and _error_lines(r.stderr) == [f"ERROR: --backbone-dir {missing}: no such directory"]
    r = _cli("osoup.bin.filter_ctc", "--in", str(src), "--out", str(tmp_path / "out"), "--token-dir", tok)
    assert r.returncode == 1 and len(_error_lines(r.stderr)) == 1 and "--backbone-dir" in r.stderr
    assert not (tmp_path / "out").exists()


def test_compute_fbank_raw_needs_the_samples_file(tmp_path: Path) -> None:
    write_scp(tmp_path / "wav.scp", {"u1": str(tmp_path / "x.wav")})
    soundfile.write(tmp_path / "x.wav", np.zeros(800, dtype=np.float32), 8000)
    r = _cli("osoup.bin.compute_fbank", "--wav-scp", str(tmp_path / "wav.scp"), "--out-ark", str(tmp_path / "a.ark"),
             "--out-scp", str(tmp_path / "a.scp"), "--out-num-frames", str(tmp_path / "n"), "--feats-type", "raw")
    assert r.returncode == 1 and _error_lines(r.stderr) == [
        "ERROR: --feats-type raw needs --out-num-samples (the utt2num_samples to write)"]
    r = _cli("osoup.bin.compute_fbank", "--wav-scp", str(tmp_path / "wav.scp"), "--out-ark", str(tmp_path / "a.ark"),
             "--out-scp", str(tmp_path / "a.scp"), "--out-num-frames", str(tmp_path / "n"), "--feats-type", "raw",
             "--out-num-samples", str(tmp_path / "s"))
    assert r.returncode == 0, r.stderr
    assert read_scp(tmp_path / "s") == read_scp(tmp_path / "n") == {"u1": "1600"}  # 8 kHz resampled to 16 kHz


def test_stage5_names_a_missing_backbone_dir(raw_recipe: Path, tmp_path: Path) -> None:
    recipe = _recipe_with_data(tmp_path, raw_recipe)
    shutil.copytree(raw_recipe / "dump", recipe / "dump", symlinks=True)
    missing = tmp_path / "no_such_xlsr"
    proc = subprocess.run(["bash", "run.sh", *LANG_OPTS, "--stage", "5", "--stop-stage", "5", "--feats-type", "raw",
                           "--train-config", "conf/train_tiny_w2v2.yaml", "--backbone-dir", str(missing)],
                          cwd=recipe, env=recipe_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    errors = _error_lines(proc.stderr)
    assert len(errors) == 1 and f"backbone dir {missing} not found" in errors[0], proc.stderr[-2000:]
    assert not (recipe / "dump" / "asr").exists()


def test_stage6_checks_the_features_and_passes_the_backbone_dir(fake_recipe) -> None:  # noqa: F811
    recipe, env = fake_recipe  # osoup-train is a stand-in that records its options
    (recipe / "conf" / "train.yaml").write_text("backbone: hf_wav2vec2\nbackbone-dir: w2v2  # local\n", encoding="utf-8")

    def stage6() -> list[str]:
        r = subprocess.run(["bash", *STAGE6], cwd=recipe, env=env, capture_output=True, text=True, timeout=120)
        return [str(r.returncode), *_error_lines(r.stderr)]

    out = stage6()
    assert out[0] == "1" and len(out) == 2 and "holds fbank features but backbone hf_wav2vec2 reads raw" in out[1]
    (recipe / "dump" / "fbank" / "train_en" / "feats_type").write_text("raw\n", encoding="utf-8")
    out = stage6()
    assert out[0] == "1" and len(out) == 2 and "backbone dir w2v2 not found" in out[1]
    assert _calls(env) == []
    _backbone_dir(recipe)
    assert stage6() == ["0"]
    assert len(_calls(env)) == 1 and "--backbone-dir w2v2 " in _calls(env)[0]


def test_decoder_windows_follow_the_w2v2_cnn() -> None:
    from osoup.nets.backbones import frames_for_samples

    w2v2 = Frontend.of_convs(W2V2_KERNELS, W2V2_STRIDES)
    assert w2v2 == Frontend(320, 400)
    for n in [0, 399, 400, 719, 720, 16000, 16001, 12345, 320 * 50 + 399]:
        assert output_frames(n, *w2v2) == frames_for_samples(n, W2V2_KERNELS, W2V2_STRIDES) == _w2v2_frames(n)
    n = 16000 * 45 + 123  # 45 s in 20 s chunks with 2 s of context, in samples
    windows = plan_windows(n, 16000 * 20, 16000 * 2, *w2v2)
    kept = [u for w in windows for u in range(w.start // 320 + w.keep_from, w.start // 320 + w.keep_to)]
    assert kept == list(range(_w2v2_frames(n))) and len(windows) == 3
    assert all(output_frames(w.end - w.start, *w2v2) >= w.keep_to for w in windows)


def test_chunked_decoding_of_raw_audio_equals_a_full_pass() -> None:
    """A purely local encoder with wav2vec 2.0's CNN geometry: posteriors of 1 s chunks (0.25 s
    of context) concatenate to exactly those of one pass over 3 s of samples."""
    import torch
    from torch import nn

    from osoup.bin.decode import _chunking, model_input

    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for i, (k, s) in enumerate(zip(W2V2_KERNELS, W2V2_STRIDES)):
        layers += [nn.Conv1d(1 if i == 0 else 4, 4, k, s), nn.GELU()]
    cnn = nn.Sequential(*layers[:-1])

    def forward(x, lengths):
        out = cnn(x.transpose(1, 2)).transpose(1, 2)
        return torch.log_softmax(out, dim=-1), torch.tensor([_w2v2_frames(int(n)) for n in lengths])

    hf_config = {"conv_kernel": list(W2V2_KERNELS), "conv_stride": list(W2V2_STRIDES)}
    model = type("M", (), {"encoder": type("E", (), {"input_kind": "raw", "hf_config": hf_config})()})()
    kind, frontend, rate = model_input(model)
    assert (kind, frontend, rate) == ("raw", Frontend(320, 400), 16000)
    opts = _chunking(type("A", (), {"chunk_sec": 1.0, "chunk_context_sec": 0.25})(), rate)
    assert opts == {"chunk": 16000, "context": 4000}
    feats = torch.randn(3 * 16000 + 77, 1)
    with torch.no_grad():
        full = forward(feats[None], torch.tensor([feats.shape[0]]))[0][0]
        chunked = chunked_log_probs(forward, feats, opts["chunk"], opts["context"], frontend)
    assert len(plan_windows(feats.shape[0], opts["chunk"], opts["context"], *frontend)) == 3
    assert chunked.shape == full.shape == (_w2v2_frames(feats.shape[0]), 4)
    assert torch.allclose(chunked, full, atol=1e-5)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tiny_w2v2_recipe_trains_decodes_and_scores(mini_recipe: Path, tmp_path: Path) -> None:
    """run.sh --backbone tiny_w2v2, stages 3-8 (Spanish ASR and es->en S2TT, to stay small): a
    tiny random wav2vec 2.0 written by the recipe, vm UAS for 4 steps on raw waveforms with
    wav2vec 2.0's contrastive loss, greedy decoding and scoring of the test set. The model is
    random and barely trained: the test checks the pipeline, not accuracy."""
    recipe = _recipe_with_data(tmp_path, mini_recipe)
    run_recipe(recipe, "--tiny", "true", "--asr-langs", "es", "--st-langs", "es", "--backbone", "tiny_w2v2",
               "--stage", "3", "--stop-stage", "8", "--method", "vm", "--levels", "asr>st>ssl", "--ngpu", "0",
               "--train-opts", "--epochs 1 --steps-per-epoch 4 --conflict-interval 2 --log-interval 1", timeout=600)
    assert json.loads((recipe / "exp" / "tiny_w2v2" / "config.json").read_text(encoding="utf-8"))["num_hidden_layers"] == 2
    for split in ("train", "dev", "test"):
        assert read_feats_type(recipe / "dump" / "fbank" / f"{split}_es") == "raw"
    exp = recipe / "exp" / "vm_asr-st-ssl"
    assert (exp / ".train.done").is_file()
    config = (exp / "config.yaml").read_text(encoding="utf-8")
    assert "backbone: hf_wav2vec2" in config and "ssl: w2v2" in config
    test = recipe / "dump" / "fbank" / "test_es"
    for task, refs in (("asr", "text"), ("st", "text.en")):
        hyps = read_scp(exp / "decode_greedy" / "test_es" / f"hyp.{task}", allow_empty_value=True)
        assert set(hyps) == set(read_scp(test / refs))
    scored = json.loads((exp / "results.json").read_text(encoding="utf-8"))["decodes"]["greedy"]["sets"]
    assert sorted((x["set"], x["task"], x["metric"]) for x in scored) == [("test_es", "asr", "wer"), ("test_es", "st", "bleu")]
    assert all(x["missing_hyps"] == 0 and x["value"] >= 0 for x in scored)
