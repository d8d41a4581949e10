"""Tiny corpora in the exact on-disk layouts of Common Voice 4 + CoVoST 2, LibriSpeech and
AISHELL-1, with synthesised audio, for the parser tests (test_corpora.py).

Each builder returns the corpus root(s) and documents the defects it plants, so the tests can
assert exactly which items are kept and which are counted as bad.
"""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import numpy as np
import soundfile as sf


def write_audio(path: Path, seconds: float, sr: int, fmt: str, seed: int = 0) -> None:
    """A quiet sine plus noise, so every file decodes to ``seconds`` of audio."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(round(seconds * sr))) / sr
    x = 0.2 * np.sin(2 * np.pi * (200 + 50 * seed) * t) + 0.01 * rng.standard_normal(t.size)
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), x.astype(np.float32), sr, format=fmt)


def truncate_file(path: Path, fraction: float = 0.5) -> bytes:
    """Cut a file to ``fraction`` of its bytes, as ``truncate -s 50%`` does to an interrupted
    copy (the header still declares the full length); returns the original bytes."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return data


def write_tsv(path: Path, header: list[str], rows: list[dict[str, str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(row.get(c, "") for c in header) + "\n")


CV_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent"]
# Fields of validated.tsv per clip: (client_id, path as written, sentence).
CV_CLIPS = {
    "fr": [  # deliberately unsorted
        ("cc33", "common_voice_fr_4.mp3", "Au revoir."),
        ("aa11", "common_voice_fr_3.mp3", 'Il a dit "non".'),
        ("bb22", "common_voice_fr_1", "Bonjour à tous."),  # path without .mp3
        ("aa11", "common_voice_fr_2.mp3", "Merci."),
        ("bb22", "common_voice_fr_5.mp3", "Texte sans traduction."),
        ("cc33", "common_voice_fr_6.mp3", "Clip manquant."),
        ("aa11", "common_voice_fr_7.mp3", "Corrompu."),
        ("cc33", "common_voice_fr_8.mp3", "Pas dans CoVoST."),
        ("bb22", "common_voice_fr_9.mp3", ""),
        ("aa11", "common_voice_fr_10.mp3", "Autre split."),
    ],
    "en": [
        ("ee55", "common_voice_en_2.mp3", "Hello there."),
        ("dd44", "common_voice_en_1.mp3", "It's \"quoted\" text."),
        ("dd44", "common_voice_en_3.mp3", "Good night."),
        ("ee55", "common_voice_en_4.mp3", "See you."),
    ],
    "zh-CN": [
        ("ff66", "common_voice_zh-CN_2.mp3", "谢谢。"),
        ("ff66", "common_voice_zh-CN_1.mp3", "你好，世界。"),
        ("ab12", "common_voice_zh-CN_3.mp3", "再见！"),
    ],
}
# CoVoST rows: (path, translation, split).
COVOST_ROWS = {
    "covost_v2.fr_en.tsv": [
        ("common_voice_fr_3.mp3", 'He said "no".', "train"),
        ("common_voice_fr_1.mp3", "Hello everyone.", "train_covost"),
        ("common_voice_fr_2.mp3", "Thanks.", "dev"),
        ("common_voice_fr_4.mp3", "Goodbye.", "test"),
        ("common_voice_fr_5.mp3", "", "train"),  # empty translation
        ("common_voice_fr_6.mp3", "Missing clip.", "train"),  # clip file absent
        ("common_voice_fr_7.mp3", "Corrupt.", "dev"),  # clip is random bytes
        ("common_voice_fr_9.mp3", "Empty sentence.", "train"),  # empty sentence in validated.tsv
        ("common_voice_fr_10.mp3", "Other split.", "extra"),  # unknown split value
    ],
    "covost_v2.en_de.tsv": [
        ("common_voice_en_1.mp3", "Es ist Text.", "train"),
        ("common_voice_en_2.mp3", "Hallo.", "train"),
        ("common_voice_en_3.mp3", "Gute Nacht.", "dev"),
        ("common_voice_en_4.mp3", "Bis bald.", "test"),
    ],
    "covost_v2.zh-CN_en.tsv": [
        ("common_voice_zh-CN_1.mp3", "Hello, world.", "train"),
        ("common_voice_zh-CN_2.mp3", "Thank you.", "dev"),
        ("common_voice_zh-CN_3.mp3", "Goodbye!", "test"),
    ],
}
# Column orders differ between files on purpose: columns must be found by name.
COVOST_HEADERS = {
    "covost_v2.fr_en.tsv": ["path", "sentence", "translation", "client_id", "split"],
    "covost_v2.en_de.tsv": ["path", "sentence", "translation", "client_id", "split"],
    "covost_v2.zh-CN_en.tsv": ["split", "translation", "path"],
}
MISSING_CLIPS = {"common_voice_fr_6"}
CORRUPT_CLIPS = {"common_voice_fr_7"}


def clip_seconds(stem: str) -> float:
    """Duration planted for a clip: 1.0 s plus 0.25 s per its number."""
    return 1.0 + 0.25 * int(stem.rsplit("_", 1)[1])


def build_covost(root: Path) -> tuple[Path, Path]:
    """Common Voice 4 (en, fr, zh-CN) and CoVoST 2 roots under ``root``."""
    cv_root, covost_root = root / "cv4", root / "covost2"
    for lang, clips in CV_CLIPS.items():
        rows = []
        for i, (client, path, sentence) in enumerate(clips):
            rows.append({"client_id": client, "path": path, "sentence": sentence,
                         "up_votes": "2", "down_votes": "0"})
            stem = path[:-4] if path.endswith(".mp3") else path
            mp3 = cv_root / lang / "clips" / f"{stem}.mp3"
            if stem in MISSING_CLIPS:
                continue
            if stem in CORRUPT_CLIPS:
                mp3.write_bytes(np.random.default_rng(7).bytes(3000))
                continue
            write_audio(mp3, clip_seconds(stem), 48000, "MP3", seed=i)
        write_tsv(cv_root / lang / "validated.tsv", CV_HEADER, rows)
    for name, rows in COVOST_ROWS.items():
        header = COVOST_HEADERS[name]
        write_tsv(covost_root / name, header,
                  [{"path": p, "translation": t, "split": s, "sentence": "x", "client_id": "y"}
                   for p, t, s in rows])
    return cv_root, covost_root


SPEAKERS_TXT = """\
; Some comment lines as in the real file
;ID  |SEX| SUBSET           |MINUTES| NAME
14   | F | train-clean-360  | 25.03 | Kristin LeMoine
60   | M | train-clean-100  | 20.18 | |CBW|Simon
103  | F | train-clean-100  | 22.94 | Jen Stimpfle
1272 | M | dev-clean        |  8.08 | John Rose
2830 | M | test-clean       |  8.08 | Some Reader
"""
LIBRI_TRANS = {
    # part -> {(spk, chap): [(utt, text)]}; lines unsorted on purpose
    "train-clean-100": {
        ("103", "1240"): [("103-1240-0001", "WHERE THE BROOK RAN"), ("103-1240-0000", "CHAPTER ONE MISSUS RACHEL")],
        ("60", "121082"): [("60-121082-0000", "THE SEA WAS CALM"),
                           ("60-121082-0001", "NO AUDIO FOR THIS ONE")],  # flac missing
    },
    "dev-clean": {("1272", "128104"): [("1272-128104-0000", "MISTER QUILTER IS THE APOSTLE")]},
    "test-clean": {("2830", "3980"): [("2830-3980-0000", "IN WRITING TO THE CHURCHES")]},
    "train-clean-360": {("14", "208"): []},  # flacs but no trans.txt: SSL only
}
LIBRI_NO_FLAC = {"60-121082-0001"}
LIBRI_EXTRA_FLACS = {"103-1240-0002": "train-clean-100", "14-208-0000": "train-clean-360",
                     "14-208-0001": "train-clean-360"}  # flacs without a transcript line


def libri_seconds(utt: str) -> float:
    return 0.5 + 0.1 * int(utt.rsplit("-", 1)[1])


def build_librispeech(root: Path) -> Path:
    """``root/LibriSpeech`` with parts train-clean-100, dev-clean, test-clean, train-clean-360."""
    corpus = root / "LibriSpeech"
    corpus.mkdir(parents=True)
    (corpus / "SPEAKERS.TXT").write_text(SPEAKERS_TXT, encoding="utf-8")
    for part, chapters in LIBRI_TRANS.items():
        for (spk, chap), lines in chapters.items():
            d = corpus / part / spk / chap
            d.mkdir(parents=True)
            if lines:
                with open(d / f"{spk}-{chap}.trans.txt", "w", encoding="utf-8") as f:
                    f.writelines(f"{u} {t}\n" for u, t in lines)
            for u, _ in lines:
                if u not in LIBRI_NO_FLAC:
                    write_audio(d / f"{u}.flac", libri_seconds(u), 16000, "FLAC")
    for utt, part in LIBRI_EXTRA_FLACS.items():
        spk, chap, _ = utt.split("-")
        write_audio(corpus / part / spk / chap / f"{utt}.flac", libri_seconds(utt), 16000, "FLAC")
    return root


AISHELL_TRANSCRIPT = """\
BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉
BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购
BAC009S0724W0121 甚至 出现 交易 几乎 停滞 的 情况
BAC009S0764W0121 一 是 按照 现行 政策
S0764W0500 已有 说话人 前缀
BAC009S0999W0001 这 句 没有 音频
"""
# split -> speaker -> utterances; the train and dev speakers are shipped as tarballs, the test
# speaker already unpacked. BAC009S0002W0124 has no transcript line (normal in AISHELL).
AISHELL_WAVS = {
    "train": {"S0002": ["BAC009S0002W0122", "BAC009S0002W0123", "BAC009S0002W0124"]},
    "dev": {"S0724": ["BAC009S0724W0121"]},
    "test": {"S0764": ["BAC009S0764W0121", "S0764W0500"]},
}
AISHELL_TARRED = {"S0002", "S0724"}


def wav_bytes(seconds: float, seed: int = 0) -> bytes:
    buf = io.BytesIO()
    rng = np.random.default_rng(seed)
    sf.write(buf, (0.1 * rng.standard_normal(int(seconds * 16000))).astype(np.float32), 16000,
             format="WAV", subtype="PCM_16")
    return buf.getvalue()


def add_tar_member(tf: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def build_aishell(root: Path) -> Path:
    """``root/data_aishell`` with speaker tarballs (train, dev) and an unpacked speaker (test)."""
    corpus = root / "data_aishell"
    (corpus / "transcript").mkdir(parents=True)
    (corpus / "transcript" / "aishell_transcript_v0.8.txt").write_text(AISHELL_TRANSCRIPT, encoding="utf-8")
    wav_dir = corpus / "wav"
    wav_dir.mkdir()
    for split, speakers in AISHELL_WAVS.items():
        for spk, utts in speakers.items():
            if spk in AISHELL_TARRED:
                with tarfile.open(wav_dir / f"{spk}.tar.gz", "w:gz") as tf:
                    for i, u in enumerate(utts):
                        add_tar_member(tf, f"{split}/{spk}/{u}.wav", wav_bytes(1.0 + 0.5 * i, i))
            else:
                for i, u in enumerate(utts):
                    p = wav_dir / split / spk / f"{u}.wav"
                    p.parent.mkdir(parents=True, exist_ok=True)
                    p.write_bytes(wav_bytes(1.0 + 0.5 * i, i))
    return root
