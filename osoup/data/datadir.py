"""Kaldi-style data directories: the contract between recipe stages.

A data dir holds, one ``<utt-id> <value>`` line each, sorted by key under ``LC_ALL=C``
(byte order, which for UTF-8 equals code-point order, i.e. Python's ``sorted``)::

    wav.scp    utt-id -> audio path (wav/flac/mp3, read with soundfile)
    text       utt-id -> source transcript, verbatim from the corpus
    text.en    utt-id -> English translation (only where the corpus has one)
    utt2spk    utt-id -> speaker id (a prefix of the utterance id)
    spk2utt    speaker id -> its utterance ids
    utt2dur    utt-id -> duration in seconds
    feats.scp  utt-id -> kaldiio ark offset (after feature extraction)
    utt2num_frames utt-id -> number of feature frames
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from osoup.fileio import DataError, atomic_write, read_scp

# Files keyed by utterance id; spk2utt is keyed by speaker.
UTT_FILES = ("wav.scp", "text", "text.en", "utt2spk", "utt2dur", "feats.scp", "utt2num_frames")


@dataclass
class Utterance:
    """One utterance as a corpus parser produces it."""

    utt_id: str
    spk: str
    audio: str
    text: str
    text_en: str | None = None
    dur: float | None = None


def write_scp(path: str | Path, entries: dict[str, str] | Iterable[tuple[str, str]]) -> None:
    """Write ``key value`` lines sorted by key (C locale order), atomically."""
    items = entries.items() if isinstance(entries, dict) else entries
    with atomic_write(path) as f:
        for key, value in sorted(items, key=lambda kv: kv[0]):
            f.write(f"{key} {value}\n")


def spk2utt_from_utt2spk(utt2spk: dict[str, str]) -> dict[str, str]:
    spk2utt: dict[str, list[str]] = {}
    for utt in sorted(utt2spk):
        spk2utt.setdefault(utt2spk[utt], []).append(utt)
    return {spk: " ".join(utts) for spk, utts in spk2utt.items()}


def write_data_dir(data_dir: str | Path, utts: list[Utterance]) -> None:
    """Write a complete data dir from parsed utterances. Duplicate ids raise DataError."""
    data_dir = Path(data_dir)
    seen: set[str] = set()
    for u in utts:
        if u.utt_id in seen:
            raise DataError(f"{data_dir}: duplicate utterance id {u.utt_id!r}")
        seen.add(u.utt_id)
        if not u.utt_id.startswith(u.spk):
            raise DataError(f"{data_dir}: speaker {u.spk!r} is not a prefix of utterance {u.utt_id!r}")
        for s in (u.utt_id, u.spk):
            if not s or any(c.isspace() for c in s):
                raise DataError(f"{data_dir}: id {s!r} is empty or contains whitespace")
    data_dir.mkdir(parents=True, exist_ok=True)
    # Remove stale files of an earlier, different run first, so nothing mixes.
    for name in UTT_FILES + ("spk2utt",):
        (data_dir / name).unlink(missing_ok=True)
    write_scp(data_dir / "wav.scp", {u.utt_id: u.audio for u in utts})
    write_scp(data_dir / "text", {u.utt_id: u.text for u in utts})
    utt2spk = {u.utt_id: u.spk for u in utts}
    write_scp(data_dir / "utt2spk", utt2spk)
    write_scp(data_dir / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    if any(u.text_en is not None for u in utts):
        missing = [u.utt_id for u in utts if u.text_en is None]
        if missing:
            raise DataError(f"{data_dir}: {len(missing)} utterances lack a translation, e.g. {missing[0]}")
        write_scp(data_dir / "text.en", {u.utt_id: u.text_en for u in utts})
    if all(u.dur is not None for u in utts):
        write_scp(data_dir / "utt2dur", {u.utt_id: f"{u.dur:.3f}" for u in utts})


def read_data_dir(data_dir: str | Path) -> dict[str, dict[str, str]]:
    """All utterance-keyed files present in a data dir, by file name."""
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise DataError(f"{data_dir}: data directory not found")
    out = {}
    for name in UTT_FILES:
        p = data_dir / name
        if p.exists():
            out[name] = read_scp(p, allow_empty_value=name in ("text", "text.en"))
    return out
