"""Audio loading, resampling, Kaldi fbank, and the stage 2-4 commands on tiny data."""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import kaldiio
import numpy as np
import pytest
import soundfile as sf

from osoup.data.audio import load_audio, resample
from osoup.data.cmvn import StatsAccumulator, compute_global_cmvn
from osoup.data.datadir import read_scp, write_scp
from osoup.data.features import FbankOptions, compute_fbank, fbank, num_frames
from osoup.data.filter import filter_data
from osoup.data.speed import perturb_data_dir, speed_perturb
from osoup.fileio import DataError


@pytest.fixture(autouse=True)
def _drop_log_handlers():
    """Commands install a stderr log handler; remove it so it does not outlive pytest's capture."""
    yield
    root = logging.getLogger()
    for h in list(root.handlers):
        if type(h) in (logging.StreamHandler, logging.FileHandler):
            root.removeHandler(h)

SR = 16000
# Max abs difference to kaldi-native-fbank measured at ~1e-4 on noise (float32 FFT round-off on
# log-mel values of 5..25); 1e-3 leaves margin without hiding a wrong window or mel edge (>0.01).
KNF_TOL = 1e-3


def knf_fbank(x: np.ndarray) -> np.ndarray:
    """Reference: kaldi-native-fbank configured like our defaults."""
    import kaldi_native_fbank as knf

    o = knf.FbankOptions()
    o.frame_opts.samp_freq = SR
    o.frame_opts.dither = 0.0
    o.frame_opts.snip_edges = True
    o.frame_opts.window_type = "povey"
    o.frame_opts.preemph_coeff = 0.97
    o.frame_opts.remove_dc_offset = True
    o.mel_opts.num_bins = 80
    o.mel_opts.low_freq = 20.0
    o.mel_opts.high_freq = 0.0
    o.use_energy = False
    o.use_log_fbank = True
    o.use_power = True
    o.energy_floor = 0.0
    f = knf.OnlineFbank(o)
    f.accept_waveform(SR, (x * 32768.0).astype(np.float32).tolist())
    f.input_finished()
    return np.array([f.get_frame(i) for i in range(f.num_frames_ready)], dtype=np.float32).reshape(-1, 80)


@pytest.mark.parametrize("length", [0, 100, 399, 400, 401, 559, 560, 1234, 16000, 48111])
def test_fbank_matches_kaldi_native_fbank(length):
    rng = np.random.default_rng(length)
    x = (rng.standard_normal(length) * rng.uniform(0.01, 0.5)).astype(np.float32)
    ours, ref = fbank(x), knf_fbank(x)
    assert ours.dtype == np.float32
    assert ours.shape == ref.shape == (num_frames(length), 80)
    if length >= 400:
        assert np.abs(ours - ref).max() < KNF_TOL


def test_fbank_speechlike_and_silence():
    rng = np.random.default_rng(1)
    t = np.arange(2 * SR) / SR
    # harmonics with a slow envelope plus noise: a wide dynamic range over the mel bins
    x = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    x = (0.1 * x + 0.003 * rng.standard_normal(len(t))).astype(np.float32)
    assert np.abs(fbank(x) - knf_fbank(x)).max() < KNF_TOL
    # digital silence: every mel energy sits on the float32-epsilon floor
    sil = fbank(np.zeros(SR, dtype=np.float32))
    assert np.allclose(sil, math.log(np.finfo(np.float32).eps))
    assert np.allclose(sil, knf_fbank(np.zeros(SR, dtype=np.float32)))


def test_num_frames_snip_edges():
    assert [num_frames(n) for n in (0, 399, 400, 559, 560, 16000)] == [0, 0, 1, 1, 2, 98]
    assert num_frames(16000) == 1 + (16000 - 400) // 160


def test_fbank_dither_is_seeded():
    x = np.zeros(4000, dtype=np.float32)
    opts = FbankOptions(dither=1.0)
    a, b = fbank(x, opts, seed=3), fbank(x, opts, seed=3)
    assert np.array_equal(a, b) and not np.allclose(a, fbank(x))


@pytest.mark.parametrize("orig,new,n", [(48000, 16000, 48000), (44100, 16000, 4410), (14400, 16000, 1440),
                                        (17600, 16000, 1760), (8000, 16000, 7), (48000, 16000, 2)])
def test_resample_matches_torchaudio(orig, new, n):
    import torch
    import torchaudio.functional as F

    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    ours = resample(x, orig, new)
    ref = F.resample(torch.from_numpy(x), orig, new).numpy()
    assert ours.shape == ref.shape == (math.ceil(n * new / orig),)
    assert np.abs(ours - ref).max() < 1e-4


def test_resample_keeps_a_tone_and_removes_aliases():
    t = np.arange(48000) / 48000
    tone = np.sin(2 * np.pi * 1000 * t)
    y = resample(tone + np.sin(2 * np.pi * 12000 * t), 48000, 16000)  # 12 kHz is above the new Nyquist
    expect = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000)
    mid = slice(200, -200)  # away from the zero-padded edges
    assert np.abs(y[mid] - expect[mid]).max() < 0.01


def _tone(sr: int, sec: float, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(sr * sec)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


@pytest.mark.parametrize("fmt,sr", [("wav", 16000), ("flac", 16000), ("wav", 8000), ("mp3", 48000)])
def test_load_audio_formats(tmp_path, fmt, sr):
    x = _tone(sr, 1.0)
    path = tmp_path / f"a.{fmt}"
    sf.write(path, np.stack([x, x], axis=1), sr)  # stereo: averaged to mono
    y = load_audio(path)
    assert y.dtype == np.float32 and y.ndim == 1
    assert abs(len(y) - SR) <= (SR // 100 if fmt == "mp3" else 0)
    spectrum = np.abs(np.fft.rfft(y[: SR // 2]))
    assert abs(np.argmax(spectrum) * 2 - 440) <= 2  # rfft bin spacing of 0.5 s is 2 Hz
    if fmt != "mp3":
        ref = resample(x, sr, SR) if sr != SR else x
        assert np.abs(y - ref).max() < 1e-3


def test_load_audio_errors_name_the_file(tmp_path):
    with pytest.raises(DataError, match="missing.wav: audio file not found"):
        load_audio(tmp_path / "missing.wav")
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunk" * 4)
    with pytest.raises(DataError, match="corrupt.wav: cannot decode"):
        load_audio(bad)
    empty = tmp_path / "empty.wav"
    sf.write(empty, np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(DataError, match="empty.wav: audio file has no samples"):
        load_audio(empty)


def _make_wavs(tmp_path: Path, n_good: int, n_missing: int) -> tuple[Path, dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    scp, audio = {}, {}
    for i in range(n_good):
        utt = f"spk1-utt{i}"
        x = (0.1 * rng.standard_normal(int(SR * (0.5 + 0.3 * i)))).astype(np.float32)
        path = tmp_path / "wav" / f"{utt}.flac"
        path.parent.mkdir(exist_ok=True)
        sf.write(path, x, SR, subtype="PCM_16")
        scp[utt], audio[utt] = str(path), load_audio(path)
    for i in range(n_missing):
        scp[f"spk2-bad{i}"] = str(tmp_path / "wav" / f"nothere{i}.wav")
    write_scp(tmp_path / "wav.scp", scp)
    return tmp_path / "wav.scp", audio


def test_compute_fbank_command(tmp_path, capsys):
    from osoup.bin.compute_fbank import main

    wav_scp, audio = _make_wavs(tmp_path, 3, 1)
    out = tmp_path / "dump"
    args = ["--wav-scp", str(wav_scp), "--out-ark", str(out / "feats.1.ark"), "--out-scp", str(out / "feats.1.scp"),
            "--out-num-frames", str(out / "utt2num_frames.1")]
    # 1 bad of 4 is over the default 5%: fails, names the cause, leaves no output behind
    assert main(args) == 1
    err = capsys.readouterr().err
    assert "ERROR:" in err and "1 of 4 utterances have bad audio" in err
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    assert main(args + ["--max-bad-frac", "0.3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["feats.1.ark", "feats.1.scp", "utt2num_frames.1"]
    feats = dict(kaldiio.load_scp_sequential(str(out / "feats.1.scp")))
    nframes = read_scp(out / "utt2num_frames.1")
    assert sorted(feats) == sorted(nframes) == sorted(audio)
    for utt, wav in audio.items():
        assert feats[utt].dtype == np.float32
        assert feats[utt].shape == (num_frames(len(wav)), 80) == (int(nframes[utt]), 80)
        np.testing.assert_array_equal(feats[utt], compute_fbank(wav))  # what decoding of raw audio uses


def _raw_dump(tmp_path: Path) -> Path:
    """A dump/raw-like dir: 6 utterances, one without features, one with punctuation-only text."""
    d = tmp_path / "raw"
    frames = {"s1-a": 200, "s1-b": 20, "s1-c": 2500, "s2-d": 150, "s2-e": 300}
    rng = np.random.default_rng(0)
    d.mkdir()
    with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
        for utt, n in sorted(frames.items()):
            w(utt, rng.standard_normal((n, 80)).astype(np.float32))
    write_scp(d / "utt2num_frames", {u: str(n) for u, n in frames.items()})
    utts = sorted(frames) + ["s2-f"]  # s2-f: bad audio, no features
    write_scp(d / "wav.scp", {u: f"/x/{u}.wav" for u in utts})
    text = {u: "bonjour" for u in utts} | {"s2-d": " ?! … "}
    write_scp(d / "text", text)
    write_scp(d / "text.en", {u: "Hello." for u in utts})
    write_scp(d / "utt2spk", {u: u[:2] for u in utts})
    return d


def test_filter_data(tmp_path):
    d = _raw_dump(tmp_path)
    counts = filter_data(d, tmp_path / "out", min_sec=0.3, max_sec=20, max_bad_frac=0.5)
    assert counts == {"kept": 2, "too_short": 1, "too_long": 1, "empty_text": 1, "no_features": 1}
    out = tmp_path / "out"
    assert sorted(read_scp(out / "feats.scp")) == ["s1-a", "s2-e"]
    for name in ("wav.scp", "text", "text.en", "utt2spk", "utt2num_frames"):
        assert sorted(read_scp(out / name)) == ["s1-a", "s2-e"]
    assert read_scp(out / "spk2utt") == {"s1": "s1-a", "s2": "s2-e"}
    # test sets: lengths kept, bad data still removed
    counts = filter_data(d, tmp_path / "test", keep_all_lengths=True, max_bad_frac=0.5)
    assert counts == {"kept": 4, "empty_text": 1, "no_features": 1}
    # 2 bad of 6 utterances is above 5%; length removals do not count as bad
    with pytest.raises(DataError, match="2 of 6 utterances"):
        filter_data(d, tmp_path / "fail")


def test_filter_data_audio_only_set(tmp_path):
    """SSL-only sets have no transcripts: with need_text=False only features and lengths count."""
    d = _raw_dump(tmp_path)
    (d / "text").unlink()
    (d / "text.en").unlink()
    with pytest.raises(DataError, match="no_text"):
        filter_data(d, tmp_path / "strict")
    counts = filter_data(d, tmp_path / "ssl", need_text=False, max_bad_frac=0.5)
    assert counts == {"kept": 3, "too_short": 1, "too_long": 1, "no_features": 1}
    assert sorted(read_scp(tmp_path / "ssl" / "feats.scp")) == ["s1-a", "s2-d", "s2-e"]


def test_filter_data_command_fails_cleanly(tmp_path, capsys):
    from osoup.bin.filter_data import main

    d = _raw_dump(tmp_path)
    assert main(["--in", str(d), "--out", str(tmp_path / "o")]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("ERROR: ") and "2 of 6 utterances" in last
    assert main(["--in", str(d), "--out", str(tmp_path / "o"), "--max-bad-frac", "0.4"]) == 0


def test_cmvn_matches_numpy(tmp_path):
    from osoup.bin.compute_cmvn import main

    rng = np.random.default_rng(0)
    mats = []
    for k, n_utts in enumerate((3, 2)):
        d = tmp_path / f"set{k}"
        d.mkdir()
        with kaldiio.WriteHelper(f"ark,scp:{d}/feats.ark,{d}/feats.scp") as w:
            for i in range(n_utts):
                m = (10 + 3 * rng.standard_normal((50 + 17 * i, 80))).astype(np.float32)
                m[:, 5] = 7.0  # a constant dimension: std hits the floor
                w(f"u{i}", m)
                mats.append(m)
    out = tmp_path / "cmvn.json"
    assert main(["--out", str(out), str(tmp_path / "set0"), str(tmp_path / "set1")]) == 0
    stats = json.loads(out.read_text(encoding="utf-8"))
    allf = np.concatenate(mats).astype(np.float64)
    assert stats["count"] == allf.shape[0]
    np.testing.assert_allclose(stats["mean"], allf.mean(0), rtol=1e-10, atol=1e-10)
    expect_std = np.maximum(allf.std(0), 1e-5)
    np.testing.assert_allclose(stats["std"], expect_std, rtol=1e-8)
    assert stats["std"][5] == 1e-5
    assert set(stats) == {"count", "mean", "std"}


def test_stats_accumulator_large_offset():
    # Chan's merge keeps precision where sum/sum-of-squares would cancel catastrophically
    rng = np.random.default_rng(0)
    x = 1e6 + rng.standard_normal((3000, 4))
    acc = StatsAccumulator()
    for chunk in np.array_split(x, 7):
        acc.add(chunk)
    np.testing.assert_allclose(acc.result()["std"], x.std(0), rtol=1e-9)


def test_compute_cmvn_missing_scp(tmp_path):
    with pytest.raises(DataError, match="feats.scp not found"):
        compute_global_cmvn([tmp_path / "feats.scp"])


@pytest.mark.parametrize("factor", [0.9, 1.0, 1.1])
def test_speed_perturb_length_and_pitch(factor):
    x = _tone(SR, 1.0, 500.0)
    y = speed_perturb(x, factor)
    src = round(SR * factor)
    assert len(y) == math.ceil(len(x) * SR / src)
    spectrum = np.abs(np.fft.rfft(y, n=SR))  # 1 Hz bins
    assert abs(np.argmax(spectrum) - 500 * factor) <= 1  # pitch moves with tempo


def test_perturb_data_dir(tmp_path):
    from osoup.bin.speed_perturb import main

    src = tmp_path / "train_fr"
    src.mkdir()
    wavs = {}
    for utt, sec in (("spkA-u1", 1.0), ("spkB-u2", 0.5)):
        p = tmp_path / f"{utt}.flac"
        sf.write(p, _tone(SR, sec), SR)
        wavs[utt] = str(p)
    write_scp(src / "wav.scp", wavs)
    write_scp(src / "text", {"spkA-u1": "Un.", "spkB-u2": "Deux."})
    write_scp(src / "text.en", {"spkA-u1": "One.", "spkB-u2": "Two."})
    write_scp(src / "utt2spk", {"spkA-u1": "spkA", "spkB-u2": "spkB"})
    write_scp(src / "utt2dur", {"spkA-u1": "1.000", "spkB-u2": "0.500"})
    out = tmp_path / "train_sp_fr"
    assert main(["--in", str(src), "--out", str(out), "--factors", "0.9 1.0 1.1"]) == 0
    scp = read_scp(out / "wav.scp")
    assert sorted(scp) == sorted(f"{p}{u}" for p in ("", "sp0.9-", "sp1.1-") for u in wavs)
    assert scp["spkA-u1"] == wavs["spkA-u1"]  # factor 1.0: original audio
    utt2spk = read_scp(out / "utt2spk")
    assert all(u.startswith(s) for u, s in utt2spk.items()) and utt2spk["sp0.9-spkB-u2"] == "sp0.9-spkB"
    assert read_scp(out / "text")["sp1.1-spkA-u1"] == "Un."
    assert read_scp(out / "text.en")["sp0.9-spkA-u1"] == "One."
    assert read_scp(out / "spk2utt")["sp1.1-spkA"] == "sp1.1-spkA-u1"
    dur = {u: float(v) for u, v in read_scp(out / "utt2dur").items()}
    assert dur["sp0.9-spkA-u1"] == pytest.approx(1 / 0.9, abs=1e-3) and dur["sp1.1-spkB-u2"] == pytest.approx(0.5 / 1.1, abs=1e-3)
    info = sf.info(scp["sp0.9-spkA-u1"])
    assert info.samplerate == SR and info.format == "FLAC" and info.frames == math.ceil(SR * SR / 14400)
    # idempotent: a second run reuses the flac files and writes identical data files
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "wav").iterdir()}
    before = {n: (out / n).read_text(encoding="utf-8") for n in ("wav.scp", "utt2dur", "utt2spk", "spk2utt")}
    assert main(["--in", str(src), "--out", str(out), "--factors", "0.9 1.0 1.1"]) == 0
    assert {p: p.stat().st_mtime_ns for p in (out / "wav").iterdir()} == mtimes
    assert before == {n: (out / n).read_text(encoding="utf-8") for n in before}


def test_perturb_bad_audio_counted(tmp_path):
    src = tmp_path / "d"
    src.mkdir()
    write_scp(src / "wav.scp", {"s-1": str(tmp_path / "none.wav")})
    write_scp(src / "text", {"s-1": "a"})
    write_scp(src / "utt2spk", {"s-1": "s"})
    with pytest.raises(DataError, match="1 of 1 audio files unreadable"):
        perturb_data_dir(src, tmp_path / "o", [0.9, 1.0])
