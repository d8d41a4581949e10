"""AISHELL-1 (Mandarin) -> Kaldi data dirs.

Raw layout, as downloaded (openslr 33)::

    <root>/data_aishell/wav/S0002.tar.gz        one tarball per speaker, holding
        train/S0002/BAC009S0002W0122.wav        (or dev/<SPK>/..., test/<SPK>/...), 16 kHz wav
    <root>/data_aishell/transcript/aishell_transcript_v0.8.txt
        BAC009S0002W0122 而 对 楼市 成交 抑制 作用 最 大 的 限 购
        BAC009S0002W0123 也 成为 地方 政府 的 眼中 钉

Tarballs are unpacked in place (members with absolute paths, ``..`` or links are refused) and
marked with ``<tarball>.unpacked`` so reruns skip them; after that the audio sits in
``data_aishell/wav/{train,dev,test}/<SPK>/<UTT>.wav``. Some wavs have no transcript line: they
are skipped and counted (normal for this corpus, not "bad"). Output:
``<out_dir>/{train,dev,test}_<lang>/`` with wav.scp text utt2spk spk2utt utt2dur; speaker id
``<SPK>``, utterance id ``<SPK>-<UTT>`` (``S0002-BAC009S0002W0122``) unless UTT already starts
with the speaker id; ``text`` keeps the corpus words and their spaces verbatim.
"""
from __future__ import annotations

import logging
import os
import tarfile
from pathlib import Path, PurePosixPath

from osoup.data.corpora.common import (
    DEFAULT_MAX_BAD_FRAC,
    DEFAULT_NJ,
    BadItems,
    check_max_bad_frac,
    has_whitespace,
    item_name,
    probe_audio,
)
from osoup.data.datadir import Utterance, write_data_dir
from osoup.fileio import DataError, atomic_write_text, read_text_lines

logger = logging.getLogger(__name__)

SPLITS = ("train", "dev", "test")
TRANSCRIPT = Path("transcript") / "aishell_transcript_v0.8.txt"
MARKER_SUFFIX = ".unpacked"


def find_corpus_dir(root: Path) -> Path:
    """``<root>/data_aishell``, or ``root`` itself when it is that directory."""
    if not root.is_dir():
        raise DataError(f"{root} does not exist; expected the AISHELL-1 root (holding data_aishell/)")
    for cand in (root / "data_aishell", root):
        if (cand / "wav").is_dir() and (cand / "transcript").is_dir():
            return cand
    raise DataError(f"{root}: expected data_aishell/wav/ and data_aishell/transcript/ in it")


def safe_extract(tar_path: Path, dest: Path) -> int:
    """Extract a tarball under ``dest``, refusing members that could land outside it (absolute
    paths, ``..``) and links or device files; return the number of files extracted."""
    try:
        with tarfile.open(tar_path) as tf:
            members = tf.getmembers()
            for m in members:
                parts = PurePosixPath(m.name).parts
                if m.name.startswith(("/", "\\")) or ".." in parts or (parts and ":" in parts[0]):
                    raise DataError(f"{tar_path}: refusing to extract member {m.name!r} "
                                    f"(absolute path or '..' component)")
                if not (m.isfile() or m.isdir()):
                    raise DataError(f"{tar_path}: refusing to extract member {m.name!r} "
                                    f"(links and special files are not expected in AISHELL)")
            tf.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as e:
        raise DataError(f"{tar_path}: cannot unpack ({e}); the download may be incomplete") from None
    return sum(1 for m in members if m.isfile())


def unpack_speaker_tarballs(wav_dir: Path) -> int:
    """Unpack every ``wav_dir/*.tar.gz`` not yet marked as unpacked; return how many were."""
    tarballs = sorted(wav_dir.glob("*.tar.gz"))
    todo = [t for t in tarballs if not t.with_name(t.name + MARKER_SUFFIX).exists()]
    if tarballs:
        logger.info("%s: %d speaker tarballs, %d already unpacked", wav_dir, len(tarballs),
                    len(tarballs) - len(todo))
    for i, tar in enumerate(todo, 1):
        n = safe_extract(tar, wav_dir)
        atomic_write_text(tar.with_name(tar.name + MARKER_SUFFIX), f"{n} files\n")
        if i % 50 == 0 or i == len(todo):
            logger.info("unpacked %d/%d tarballs", i, len(todo))
    return len(todo)


def read_transcript(path: Path) -> dict[str, tuple[str, int]]:
    """Utterance id -> (words as in the corpus, line number); a repeated id raises DataError."""
    out: dict[str, tuple[str, int]] = {}
    for i, line in enumerate(read_text_lines(path), 1):
        fields = line.strip().split(maxsplit=1)
        if not fields:
            continue
        utt = fields[0]
        if utt in out:
            raise DataError(f"{path}:{i}: duplicate utterance id {utt!r} (first on line {out[utt][1]})")
        out[utt] = (fields[1].strip() if len(fields) > 1 else "", i)
    return out


def prepare_aishell(
    root: str | Path,
    out_dir: str | Path,
    lang: str = "zh",
    max_bad_frac: float = DEFAULT_MAX_BAD_FRAC,
    nj: int = DEFAULT_NJ,
) -> dict[str, int]:
    """Write ``<out_dir>/{train,dev,test}_<lang>`` from an AISHELL-1 root (unpacking its speaker
    tarballs first) and return the number of utterances per data dir."""
    check_max_bad_frac(max_bad_frac)
    corpus = find_corpus_dir(Path(os.path.abspath(root)))
    out_dir = Path(out_dir)
    wav_dir = corpus / "wav"
    transcript_path = corpus / TRANSCRIPT
    transcripts = read_transcript(transcript_path)
    unpack_speaker_tarballs(wav_dir)
    for split in SPLITS:
        if not (wav_dir / split).is_dir():
            raise DataError(f"{wav_dir / split} does not exist; expected the {split} audio there "
                            f"(as <SPK>/<UTT>.wav, or unpacked from wav/<SPK>.tar.gz)")

    used: set[str] = set()
    counts: dict[str, int] = {}
    pending: dict[str, tuple[list[Utterance], BadItems, int]] = {}
    for split in SPLITS:
        name = f"{split}_{lang}"
        bad = BadItems(name)
        no_transcript: list[str] = []
        cands: list[Utterance] = []
        for spk_dir in sorted(p for p in (wav_dir / split).iterdir() if p.is_dir()):
            spk = spk_dir.name
            for wav in sorted(spk_dir.glob("*.wav")):
                utt = wav.stem
                if utt not in transcripts:
                    no_transcript.append(str(wav))
                    continue
                used.add(utt)
                text, line = transcripts[utt]
                if not text:
                    bad.add("empty transcript", f"{transcript_path}:{line}")
                    continue
                if has_whitespace(spk) or has_whitespace(utt):
                    bad.add("whitespace in file name", str(wav))
                    continue
                utt_id = utt if utt.startswith(spk) else f"{spk}-{utt}"
                cands.append(Utterance(utt_id, spk, str(wav), text))
        if no_transcript:
            logger.info("%s: %d wav file(s) have no transcript and are skipped (normal for AISHELL), "
                        "e.g. %s", name, len(no_transcript), ", ".join(no_transcript[:3]))
        n_input = len(cands) + bad.total
        if n_input == 0:
            raise DataError(f"{wav_dir / split}: no wav file with a transcript in {transcript_path}")
        probes = probe_audio([u.audio for u in cands], nj=nj, desc=f"probing {name} audio")
        utts = []
        for u, probe in zip(cands, probes):
            if probe.problem is not None:
                bad.add(probe.problem, item_name(probe))
                continue
            u.dur = probe.dur
            utts.append(u)
        bad.check(n_input, max_bad_frac)
        pending[name] = (utts, bad, n_input)
    unused = len(transcripts) - len(used)
    if unused:
        logger.info("%s: %d transcript line(s) have no wav file in any split", transcript_path, unused)
    for name, (utts, bad, n_input) in pending.items():
        write_data_dir(out_dir / name, utts)
        counts[name] = len(utts)
        logger.info("wrote %s: %d utterances (%d with transcripts, skipped %s)", out_dir / name,
                    len(utts), n_input, bad.describe())
    return counts
