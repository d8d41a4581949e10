"""Unusable audio is never silent: a file cut short (``truncate -s 50%``), an empty file and
random bytes are bad items under their own reason, in every corpus format, with a message that
names the file (stage 1 parsers on the layouts of corpus_fixtures.py, and stage 3 features)."""
from __future__ import annotations

import logging
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus_fixtures as cf  # noqa: E402

from osoup.bin import compute_fbank as fbank_cli  # noqa: E402
from osoup.bin import prep_aishell, prep_covost2, prep_librispeech  # noqa: E402
from osoup.data.audio import (  # noqa: E402
    REASON_EMPTY,
    REASON_MISSING,
    REASON_NONFINITE,
    REASON_TRUNCATED,
    REASON_UNDECODABLE,
    AudioError,
    check_audio,
    load_audio,
)
from osoup.data.corpora import prepare_aishell, prepare_covost2  # noqa: E402
from osoup.data.datadir import read_data_dir, read_scp  # noqa: E402
from osoup.data.validate import validate_data_dir  # noqa: E402
from osoup.fileio import DataError  # noqa: E402

FORMATS = [("MP3", 48000), ("FLAC", 16000), ("WAV", 16000)]
MISLEADING = "does not exist or is not a regular file"


# ---------------------------------------------------------------------------------------------
# One file


@pytest.mark.parametrize("fmt,sr", FORMATS)
def test_truncated_file_is_an_error_naming_it(tmp_path, fmt, sr):
    path = tmp_path / f"clip.{fmt.lower()}"
    cf.write_audio(path, 2.357, sr, fmt)
    assert check_audio(path).duration == pytest.approx(2.357, abs=1e-3)
    cf.truncate_file(path, 0.5)
    with pytest.raises(AudioError) as err:
        check_audio(path)
    assert err.value.reason == REASON_TRUNCATED
    assert str(err.value).startswith(f"{path}: truncated")
    assert "2.357 s its header says" in str(err.value) or "header says 2.357 s" in str(err.value)
    with pytest.raises(AudioError, match=f"{path.name}: truncated") as err:
        load_audio(path)
    assert err.value.reason == REASON_TRUNCATED


@pytest.mark.parametrize("fmt,sr", FORMATS)
@pytest.mark.parametrize("seconds", [0.12, 0.3, 0.77, 2.357, 4.1])
def test_complete_files_are_not_flagged(tmp_path, fmt, sr, seconds):
    path = tmp_path / f"clip.{fmt.lower()}"
    cf.write_audio(path, seconds, sr, fmt)
    info = check_audio(path)
    assert info.duration == pytest.approx(seconds, abs=1e-3)
    assert len(load_audio(path)) == pytest.approx(seconds * 16000, abs=2)


@pytest.mark.parametrize("ext", ["mp3", "flac", "wav"])
def test_empty_and_random_bytes_say_what_is_wrong(tmp_path, ext):
    empty, noise, missing = tmp_path / f"empty.{ext}", tmp_path / f"noise.{ext}", tmp_path / f"none.{ext}"
    empty.write_bytes(b"")
    noise.write_bytes(np.random.default_rng(7).bytes(3000))
    for path, reason, says in [(empty, REASON_EMPTY, "empty file (0 bytes)"),
                               (noise, REASON_UNDECODABLE, "cannot decode audio: not a recognised audio format"),
                               (missing, REASON_MISSING, "audio file not found")]:
        for read in (check_audio, load_audio):
            with pytest.raises(AudioError) as err:
                read(path)
            assert err.value.reason == reason
            assert str(err.value).startswith(f"{path}: {says}")
            assert MISLEADING not in str(err.value)


def test_non_finite_samples_and_streamed_wav_header(tmp_path):
    x = np.zeros(16000, dtype=np.float32)
    x[100] = np.nan
    nan_wav = tmp_path / "nan.wav"
    sf.write(nan_wav, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio contains NaN or infinite samples") as err:
        check_audio(nan_wav)
    assert err.value.reason == REASON_NONFINITE
    # A wav written to a pipe declares an unknown data size (0xFFFFFFFF): not "truncated".
    streamed = tmp_path / "streamed.wav"
    sf.write(streamed, np.zeros(16000, dtype=np.float32), 16000, subtype="PCM_16")
    data = bytearray(streamed.read_bytes())
    at = data.index(b"data") + 4
    data[at:at + 4] = struct.pack("<I", 0xFFFFFFFF)
    streamed.write_bytes(bytes(data))
    assert check_audio(streamed).frames == 16000


# ---------------------------------------------------------------------------------------------
# Stage 1: the corpus parsers


def _covost_cmd(cv_root: Path, covost_root: Path, out: Path, *extra: str) -> list[str]:
    return ["--cv-root", str(cv_root), "--covost-root", str(covost_root), "--asr-langs", "en",
            "--out", str(out), "-v", "0", *extra]


def test_covost2_truncated_mp3(tmp_path, caplog, capsys):
    cv_root, covost_root = cf.build_covost(tmp_path / "corpus")
    clip = cv_root / "en" / "clips" / "common_voice_en_1.mp3"
    original = cf.truncate_file(clip, 0.5)
    out = tmp_path / "data"

    assert prep_covost2.main(_covost_cmd(cv_root, covost_root, out)) == 1
    err = capsys.readouterr().err
    assert "ERROR: train_en: 1 of 2 input items are bad" in err
    assert "truncated audio: 1" in err and f"{clip} (truncated: decodes to" in err
    assert "Traceback" not in err
    assert not out.exists()  # refused before anything was written

    # Under a looser limit the clip is left out, counted under its reason and named in the log
    # (the command above installed a stderr log handler, which capsys sees).
    with caplog.at_level(logging.INFO):
        counts = prepare_covost2(cv_root, covost_root, out, ["en"], [], max_bad_frac=0.5)
    assert counts["train_en"] == 1
    assert list(read_data_dir(out / "train_en")["text"]) == ["ee55-common_voice_en_2"]
    log = capsys.readouterr().err
    assert "skipped 1 (truncated audio: 1)" in log
    assert f"truncated audio: {clip} (truncated: decodes to" in log

    # The repaired clip comes back, with the duration it decodes to.
    clip.write_bytes(original)
    assert prep_covost2.main(_covost_cmd(cv_root, covost_root, out)) == 0
    durs = {k: float(v) for k, v in read_scp(out / "train_en" / "utt2dur").items()}
    assert durs == pytest.approx({"dd44-common_voice_en_1": cf.clip_seconds("common_voice_en_1"),
                                  "ee55-common_voice_en_2": cf.clip_seconds("common_voice_en_2")}, abs=0.01)
    assert validate_data_dir(out / "train_en") == []


def test_covost2_empty_and_random_bytes_mp3(tmp_path, capsys):
    cv_root, covost_root = cf.build_covost(tmp_path / "corpus")
    empty = cv_root / "en" / "clips" / "common_voice_en_1.mp3"
    noise = cv_root / "en" / "clips" / "common_voice_en_2.mp3"
    empty.write_bytes(b"")
    noise.write_bytes(np.random.default_rng(3).bytes(5000))
    assert prep_covost2.main(_covost_cmd(cv_root, covost_root, tmp_path / "data")) == 1
    err = capsys.readouterr().err
    assert "ERROR: train_en: 2 of 2 input items are bad" in err
    assert "unreadable or corrupt audio: 1, zero-length audio: 1" in err
    assert f"{noise} (cannot decode audio: not a recognised audio format" in err
    assert f"{empty} (empty file (0 bytes))" in err
    assert MISLEADING not in err
    assert not (tmp_path / "data").exists()


def test_librispeech_truncated_flac(tmp_path, capsys):
    root = cf.build_librispeech(tmp_path / "corpus")
    flac = root / "LibriSpeech/dev-clean/1272/128104/1272-128104-0000.flac"
    original = cf.truncate_file(flac, 0.5)
    out = tmp_path / "data"
    cmd = ["--root", str(root), "--parts", "dev-clean:dev", "--out", str(out), "-v", "0"]
    assert prep_librispeech.main(cmd) == 1
    err = capsys.readouterr().err
    assert "ERROR: dev_en: 1 of 1 input items are bad" in err
    assert "truncated audio: 1" in err and f"{flac} (truncated" in err
    assert not out.exists()
    flac.write_bytes(original)
    assert prep_librispeech.main(cmd) == 0
    assert capsys.readouterr().out == "dev_en 1\n"
    assert validate_data_dir(out / "dev_en") == []


def test_aishell_truncated_wav(tmp_path, capsys):
    root = cf.build_aishell(tmp_path / "corpus")
    wav = root / "data_aishell/wav/test/S0764/S0764W0500.wav"
    original = cf.truncate_file(wav, 0.5)
    out = tmp_path / "data"
    with pytest.raises(DataError, match=r"test_zh: 1 of 2 input items are bad .*truncated audio: 1") as err:
        prepare_aishell(root, out)
    assert f"{wav} (truncated: decodes to 0.749 s but its header says 1.500 s" in str(err.value)
    assert not out.exists()
    assert prep_aishell.main(["--root", str(root), "--out", str(out), "-v", "0"]) == 1
    assert f"{wav} (truncated" in capsys.readouterr().err
    wav.write_bytes(original)
    assert prepare_aishell(root, out) == {"train_zh": 2, "dev_zh": 1, "test_zh": 2}
    assert float(read_scp(out / "test_zh" / "utt2dur")["S0764W0500"]) == 1.5


# ---------------------------------------------------------------------------------------------
# Stage 3: features


def test_compute_fbank_counts_truncated_audio(tmp_path, caplog):
    wavs = {}
    for i, (fmt, sr) in enumerate(FORMATS):
        path = tmp_path / "audio" / f"u{i}.{fmt.lower()}"
        cf.write_audio(path, 1.5, sr, fmt, seed=i)
        wavs[f"s-u{i}"] = path
    cf.truncate_file(wavs["s-u0"], 0.5)
    scp = tmp_path / "wav.scp"
    scp.write_text("".join(f"{u} {p}\n" for u, p in wavs.items()), encoding="utf-8")
    outs = [tmp_path / "out" / n for n in ("feats.ark", "feats.scp", "utt2num_frames")]
    with pytest.raises(DataError, match=r"wav.scp: 1 of 3 utterances have bad audio .*first: s-u0"):
        fbank_cli.compute_fbank_job(scp, *outs, max_bad_frac=0.0)
    assert not any(p.exists() for p in outs)
    assert list((tmp_path / "out").iterdir()) == []  # no temporary ark left behind
    with caplog.at_level(logging.WARNING):
        stats = fbank_cli.compute_fbank_job(scp, *outs, max_bad_frac=0.5)
    assert stats["bad"] == 1 and set(read_scp(outs[2])) == {"s-u1", "s-u2"}
    assert f"bad utterance s-u0: {wavs['s-u0']}: truncated" in caplog.text
