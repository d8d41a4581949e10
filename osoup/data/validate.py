"""Check and repair Kaldi data directories.

Kaldi's ``utils/validate_data_dir.sh`` and ``utils/fix_data_dir.sh`` are the specification:
every utterance-keyed file (wav.scp, text, text.en, utt2spk, utt2dur, feats.scp,
utt2num_frames) is sorted by key in C-locale byte order, has unique keys and exactly the
key set of utt2spk; spk2utt agrees with utt2spk; every speaker id is a prefix of its
utterance ids; transcripts are not empty; durations and frame counts are well-formed. Beyond
Kaldi, the audio files wav.scp names must exist and be non-empty (checked by default for dirs of
up to ``CHECK_FILES_MAX_UTTS`` entries; piped commands and ``ark:``/``scp:`` specifiers are
skipped and said so).

:func:`validate_data_dir` only reports (a list of problems, empty when the dir is valid;
:func:`check_data_dir` adds notes on what was not checked);
:func:`fix_data_dir` rewrites the dir so that it validates, backing the originals up and
counting every utterance it removes, by reason.
"""
from __future__ import annotations

import logging
import math
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from osoup.data.datadir import UTT_FILES, spk2utt_from_utt2spk, write_scp
from osoup.fileio import DataError, atomic_write, read_text_lines

logger = logging.getLogger(__name__)

MAX_EXAMPLES = 5  # examples quoted per kind of problem; the count is always complete
TEXT_FILES = ("text", "text.en")
_INT_RE = re.compile(r"[0-9]+")
# Audio files are checked by default up to this many wav.scp entries (one stat each; on a
# network file system 100k stats take a few seconds); larger dirs need check_files="yes".
CHECK_FILES_MAX_UTTS = 100_000
CHECK_FILES_CHOICES = ("auto", "yes", "no")
# Kaldi rspecifiers ("ark:foo.ark", "scp,p:foo.scp") and extended filenames with a byte offset
# into an archive ("foo.ark:1234", optionally "[...]" ranges after it).
_RSPECIFIER_RE = re.compile(r"(ark|scp)(,[a-z]+)*:")
_ARK_OFFSET_RE = re.compile(r"(.+):[0-9]+(\[[^\]]*\])?")


class _Problems:
    """Collects problems grouped by (file, kind) so that a dir with 100k bad lines gives a
    readable report: one line per kind, with the full count and the first few examples."""

    def __init__(self) -> None:
        self._groups: dict[tuple[str, str], list[str]] = defaultdict(list)

    def add(self, where: str, kind: str, example: str = "") -> None:
        self._groups[(where, kind)].append(example)

    def messages(self) -> list[str]:
        out = []
        for (where, kind), examples in self._groups.items():
            shown = [e for e in examples if e][:MAX_EXAMPLES]
            msg = f"{where}: {kind}" if len(examples) == 1 else f"{where}: {kind} ({len(examples)} times)"
            if shown:
                more = ", ..." if len([e for e in examples if e]) > len(shown) else ""
                msg += ": " + ", ".join(shown) + more
            out.append(msg)
        return out


def _split_line(line: str) -> tuple[str, str] | None:
    """``key value`` split at the first space; None for a line with no key."""
    if not line.strip() or line[0].isspace():
        return None
    key, _, value = line.partition(" ")
    return key, value.strip()


def _check_value(name: str, value: str) -> str | None:
    """Why ``value`` is not a well-formed entry of file ``name`` (None when it is)."""
    if name in TEXT_FILES:
        return "empty transcript" if not value else None
    if not value:
        return "no value"
    if name == "utt2dur":
        try:
            dur = float(value)
        except ValueError:
            return "duration is not a number"
        return None if math.isfinite(dur) and dur > 0 else "duration is not a positive number"
    if name == "utt2num_frames":
        if not _INT_RE.fullmatch(value) or int(value) <= 0:
            return "frame count is not a positive integer"
    return None


def _read_keyed(path: Path, problems: _Problems, name: str) -> dict[str, str] | None:
    """Read a key-value file for validation, reporting every malformed line; None when the
    file cannot be decoded at all."""
    try:
        lines = read_text_lines(path)
    except DataError as e:
        msg = str(e)
        problems.add(str(path), "not a valid UTF-8 text file",
                     "line " + msg[len(f"{path}:"):] if msg.startswith(f"{path}:") else msg)
        return None
    entries: dict[str, str] = {}
    prev: str | None = None
    for i, line in enumerate(lines, 1):
        parsed = _split_line(line)
        if parsed is None:
            problems.add(str(path), "empty line or line starting with whitespace", f"line {i}")
            continue
        key, value = parsed
        if "\t" in key:
            problems.add(str(path), "tab inside a key (separate key and value by a space)", f"line {i}")
        if key in entries:
            problems.add(str(path), "duplicate key", f"line {i} {key!r}")
            continue
        if prev is not None and key < prev:
            problems.add(str(path), "not sorted by key in C-locale byte order (LC_ALL=C sort)",
                         f"line {i} {key!r} after {prev!r}")
        prev = key
        why = _check_value(name, value)
        if why is not None:
            problems.add(str(path), why, f"line {i} {key!r}")
        entries[key] = value
    return entries


def _key_set_problems(path: Path, keys: set[str], ref: set[str], problems: _Problems) -> None:
    missing = sorted(ref - keys)
    extra = sorted(keys - ref)
    for utt in missing:
        problems.add(str(path), "utterance of utt2spk missing", repr(utt))
    for utt in extra:
        problems.add(str(path), "utterance not in utt2spk", repr(utt))


@dataclass
class Validation:
    """What :func:`check_data_dir` found: ``problems`` (empty: valid) and ``notes`` on what it
    did not check (e.g. audio behind piped commands)."""

    problems: list[str]
    notes: list[str] = field(default_factory=list)


def _audio_path(value: str) -> str | None:
    """The file a wav.scp value reads, or None for a piped command or an rspecifier."""
    if value.endswith("|") or _RSPECIFIER_RE.match(value):
        return None
    m = _ARK_OFFSET_RE.fullmatch(value)
    if m and not os.path.exists(value):
        return m.group(1)
    return value


def _check_audio_files(path: Path, wav_scp: dict[str, str], mode: str, problems: _Problems,
                       notes: list[str]) -> None:
    """Each wav.scp entry's file exists and is not empty (paths relative to the current
    directory, as Kaldi reads them); commands and rspecifiers are skipped with a note."""
    if mode == "no":
        return
    if mode == "auto" and len(wav_scp) > CHECK_FILES_MAX_UTTS:
        notes.append(f"{path}: {len(wav_scp)} entries (more than {CHECK_FILES_MAX_UTTS}): audio files "
                     f"not checked; check_files='yes' (--check-files yes) checks them")
        return
    skipped = 0
    for utt, value in wav_scp.items():
        audio = _audio_path(value)
        if audio is None:
            skipped += 1
        elif not os.path.exists(audio):
            problems.add(str(path), "audio file does not exist", f"{utt!r} {audio}")
        elif not os.path.isfile(audio):
            problems.add(str(path), "audio path is not a regular file", f"{utt!r} {audio}")
        elif os.path.getsize(audio) == 0:
            problems.add(str(path), "audio file is empty (0 bytes)", f"{utt!r} {audio}")
    if skipped:
        notes.append(f"{path}: {skipped} entries are piped commands ('... |') or ark:/scp: "
                     f"specifiers; their audio was not checked")


def validate_data_dir(data_dir: str | Path, need_text: bool = True, check_files: str = "auto") -> list[str]:
    """Problems of a data dir, each naming the file, the kind of problem and examples.

    An empty list means the dir is valid. ``need_text=False`` (Kaldi's ``--no-text``) accepts a
    dir without ``text`` (SSL-only audio); a present ``text`` is still checked. ``check_files``:
    "auto" checks that wav.scp's audio files exist for dirs of up to ``CHECK_FILES_MAX_UTTS``
    entries, "yes" always, "no" never.
    """
    return check_data_dir(data_dir, need_text, check_files).problems


def check_data_dir(data_dir: str | Path, need_text: bool = True, check_files: str = "auto") -> Validation:
    """:func:`validate_data_dir` with notes on what was left unchecked."""
    if check_files not in CHECK_FILES_CHOICES:
        raise DataError(f"check_files must be one of {', '.join(CHECK_FILES_CHOICES)}, got {check_files!r}")
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        return Validation([f"{data_dir}: not a directory"])
    problems = _Problems()
    notes: list[str] = []
    required = ["utt2spk", "spk2utt"] + (["text"] if need_text else [])
    for name in required:
        if not (data_dir / name).is_file():
            problems.add(str(data_dir / name), "required file is missing")
    if not (data_dir / "wav.scp").is_file() and not (data_dir / "feats.scp").is_file():
        problems.add(str(data_dir), "neither wav.scp nor feats.scp exists")

    files: dict[str, dict[str, str]] = {}
    for name in UTT_FILES:
        if (data_dir / name).is_file():
            entries = _read_keyed(data_dir / name, problems, name)
            if entries is not None:
                files[name] = entries

    utt2spk = files.get("utt2spk")
    if utt2spk is not None:
        if not utt2spk:
            problems.add(str(data_dir / "utt2spk"), "no utterances")
        ref = set(utt2spk)
        for name, entries in files.items():
            if name != "utt2spk":
                _key_set_problems(data_dir / name, set(entries), ref, problems)
        for utt, spk in utt2spk.items():
            if spk and not utt.startswith(spk):
                problems.add(str(data_dir / "utt2spk"), "speaker id is not a prefix of the utterance id",
                             f"{utt!r} {spk!r}")
        # Kaldi requires that sorting by speaker and by utterance give the same order, so
        # that per-speaker splits of a sorted file stay contiguous.
        by_utt = sorted(utt2spk)
        by_spk = sorted(utt2spk, key=lambda u: (utt2spk[u], u))
        if by_utt != by_spk:
            first = next(a for a, b in zip(by_utt, by_spk) if a != b)
            problems.add(str(data_dir / "utt2spk"),
                         "order by speaker differs from order by utterance (speaker ids must be "
                         "prefixes that sort with their utterances)", f"first at {first!r}")
        _check_spk2utt(data_dir / "spk2utt", utt2spk, problems)
        _check_spk2gender(data_dir / "spk2gender", set(utt2spk.values()), problems)
    if "wav.scp" in files:
        _check_audio_files(data_dir / "wav.scp", files["wav.scp"], check_files, problems, notes)
    return Validation(problems.messages(), notes)


def _check_spk2gender(path: Path, speakers: set[str], problems: _Problems) -> None:
    """Optional spk2gender: one ``m`` or ``f`` per speaker of utt2spk (as Kaldi checks it)."""
    if not path.is_file():
        return
    spk2gender = _read_keyed(path, problems, "spk2gender")
    if spk2gender is None:
        return
    for spk in sorted(speakers - set(spk2gender)):
        problems.add(str(path), "speaker of utt2spk missing", repr(spk))
    for spk in sorted(set(spk2gender) - speakers):
        problems.add(str(path), "speaker not in utt2spk", repr(spk))
    for spk, gender in spk2gender.items():
        if gender not in ("m", "f"):
            problems.add(str(path), "gender is not m or f", f"{spk!r} {gender!r}")


def _check_spk2utt(path: Path, utt2spk: dict[str, str], problems: _Problems) -> None:
    if not path.is_file():
        return
    spk2utt = _read_keyed(path, problems, "spk2utt")
    if spk2utt is None:
        return
    expected = spk2utt_from_utt2spk(utt2spk)
    for spk in sorted(set(expected) - set(spk2utt)):
        problems.add(str(path), "speaker of utt2spk missing", repr(spk))
    for spk in sorted(set(spk2utt) - set(expected)):
        problems.add(str(path), "speaker not in utt2spk", repr(spk))
    for spk in sorted(set(spk2utt) & set(expected)):
        if spk2utt[spk].split() != expected[spk].split():
            problems.add(str(path), "utterance list differs from utt2spk (or is not sorted)", repr(spk))


# --------------------------------------------------------------------------------------------
# Fixing


def _read_for_fix(path: Path, stats: dict[str, int]) -> tuple[dict[str, str], set[str]]:
    """Entries of a file, plus the keys whose duplicate lines disagree. Blank lines and exact
    duplicate lines are dropped and counted; undecodable files raise DataError."""
    entries: dict[str, str] = {}
    conflicting: set[str] = set()
    for line in read_text_lines(path):
        parsed = _split_line(line)
        if parsed is None:
            stats["blank_or_malformed_lines"] += 1
            continue
        key, value = parsed
        if key in entries:
            stats["duplicate_lines"] += 1
            if entries[key] != value:
                conflicting.add(key)
            continue
        entries[key] = value
    return entries, conflicting


def fix_data_dir(data_dir: str | Path, max_bad_frac: float | None = 0.05) -> dict:
    """Make a data dir valid the way Kaldi's fix_data_dir.sh does, and say what it removed.

    Every utterance file is sorted and restricted to the utterances present in all of them and
    well-formed (no empty transcript, no conflicting duplicate lines, valid duration/frame
    count, speaker id a prefix); spk2utt is regenerated from utt2spk. The originals are copied
    to ``<dir>/.backup/`` first. If more than ``max_bad_frac`` of the utterances would be
    removed, DataError is raised and nothing is changed (None: no limit).

    Returns ``{"utts_in", "utts_kept", "removed": {reason: count}, "blank_or_malformed_lines",
    "duplicate_lines", "backup"}``.
    """
    data_dir = Path(data_dir)
    if not (data_dir / "utt2spk").is_file():
        raise DataError(f"{data_dir}: no utt2spk, cannot fix this data dir")
    stats: dict[str, int] = defaultdict(int)
    files: dict[str, dict[str, str]] = {}
    conflicts: dict[str, set[str]] = {}
    for name in UTT_FILES:
        if (data_dir / name).is_file():
            files[name], conflicts[name] = _read_for_fix(data_dir / name, stats)

    universe: set[str] = set().union(*(set(e) for e in files.values()))
    utt2spk = files["utt2spk"]
    removed: dict[str, int] = defaultdict(int)
    keep: list[str] = []
    for utt in sorted(universe):
        reason = None
        for name, entries in files.items():
            if utt not in entries:
                reason = f"missing from {name}"
            elif utt in conflicts[name]:
                reason = f"conflicting duplicate lines in {name}"
            else:
                why = _check_value(name, entries[utt])
                if why is not None:
                    reason = f"{why} in {name}"
            if reason:
                break
        if reason is None and not utt.startswith(utt2spk[utt]):
            reason = "speaker id not a prefix of utterance id"
        if reason is None:
            keep.append(utt)
        else:
            removed[reason] += 1
            logger.debug("%s: removing %s (%s)", data_dir, utt, reason)

    n_removed = len(universe) - len(keep)
    if max_bad_frac is not None and universe and n_removed > max_bad_frac * len(universe):
        raise DataError(
            f"{data_dir}: fixing would remove {n_removed} of {len(universe)} utterances "
            f"(more than max-bad-frac {max_bad_frac}): {dict(removed)}; nothing was changed")

    backup = data_dir / ".backup"
    for name in UTT_FILES + ("spk2utt", "spk2gender"):
        if (data_dir / name).is_file():
            with atomic_write(backup / name, "wb") as f:
                f.write((data_dir / name).read_bytes())
    keep_set = set(keep)
    for name, entries in files.items():
        write_scp(data_dir / name, {k: v for k, v in entries.items() if k in keep_set})
    write_scp(data_dir / "spk2utt", spk2utt_from_utt2spk({u: utt2spk[u] for u in keep}))
    if (data_dir / "spk2gender").is_file():
        speakers = {utt2spk[u] for u in keep}
        spk2gender, _ = _read_for_fix(data_dir / "spk2gender", stats)
        write_scp(data_dir / "spk2gender", {k: v for k, v in spk2gender.items() if k in speakers})

    result = {
        "utts_in": len(universe),
        "utts_kept": len(keep),
        "removed": dict(sorted(removed.items())),
        "blank_or_malformed_lines": stats["blank_or_malformed_lines"],
        "duplicate_lines": stats["duplicate_lines"],
        "backup": str(backup),
    }
    level = logging.WARNING if n_removed else logging.INFO
    logger.log(level, "%s: kept %d of %d utterances; removed %s; originals in %s",
               data_dir, len(keep), len(universe), dict(removed) or "none", backup)
    return result
