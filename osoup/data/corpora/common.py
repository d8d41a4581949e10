"""Helpers shared by the corpus parsers: counting bad items, checking audio, reading TSVs.

Every parser follows the same rule: an input item that cannot be used (missing, corrupt, empty
or truncated audio, empty transcript, ...) is skipped, counted by reason and reported, and the output data
dir is refused when more than ``max_bad_frac`` of its input was bad. :class:`BadItems` holds
that bookkeeping so the parsers all report it the same way.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from osoup.data.audio import (
    REASON_EMPTY,
    REASON_MISSING,
    REASON_NONFINITE,
    REASON_TRUNCATED,
    REASON_UNDECODABLE,
    AudioError,
    check_audio,
)
from osoup.data.datadir import UTT_FILES, Utterance, spk2utt_from_utt2spk, write_scp
from osoup.fileio import DataError, read_text_lines

logger = logging.getLogger(__name__)

DEFAULT_MAX_BAD_FRAC = 0.05
DEFAULT_NJ = 8
# How many offending items per reason are named in the log.
N_EXAMPLES = 5


def check_max_bad_frac(max_bad_frac: float) -> float:
    """Return ``max_bad_frac`` after checking that it is a fraction in [0, 1]."""
    if not 0.0 <= max_bad_frac <= 1.0:
        raise DataError(f"max_bad_frac must lie in [0, 1], got {max_bad_frac}")
    return max_bad_frac


class BadItems:
    """Skipped input items of one output (a data dir), counted by reason.

    ``add`` records an item; ``check`` logs the counts (naming the first few items of each
    reason) and raises DataError when the bad fraction of ``n_input`` exceeds the limit.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, reason: str, item: str) -> None:
        """Count one bad item; ``item`` says which (a file, or file:line) and why in detail."""
        self.counts[reason] = self.counts.get(reason, 0) + 1
        ex = self.examples.setdefault(reason, [])
        if len(ex) < N_EXAMPLES:
            ex.append(item)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def describe(self) -> str:
        """``"3 (missing audio: 1, empty transcript: 2)"`` or ``"0"``."""
        if not self.counts:
            return "0"
        parts = ", ".join(f"{r}: {n}" for r, n in sorted(self.counts.items()))
        return f"{self.total} ({parts})"

    def check(self, n_input: int, max_bad_frac: float) -> None:
        """Log what was skipped; raise DataError if more than ``max_bad_frac`` of ``n_input`` was bad."""
        for reason, n in sorted(self.counts.items()):
            shown = self.examples[reason]
            more = f" (and {n - len(shown)} more)" if n > len(shown) else ""
            logger.info("%s: skipped %d item(s), %s: %s%s", self.name, n, reason, "; ".join(shown), more)
        if n_input == 0:
            return
        frac = self.total / n_input
        if frac > max_bad_frac:
            raise DataError(
                f"{self.name}: {self.total} of {n_input} input items are bad ({frac:.1%} > "
                f"max_bad_frac {max_bad_frac:.1%}); bad by reason: {self.describe()}. "
                f"First examples: {self._first_examples()}"
            )

    def _first_examples(self) -> str:
        return "; ".join(ex[0] for _, ex in sorted(self.examples.items()))


class Progress:
    """Periodic log lines with count, rate and ETA for a loop of known length."""

    def __init__(self, total: int, desc: str, interval_s: float = 15.0) -> None:
        self.total, self.desc, self.interval_s = total, desc, interval_s
        self.done = 0
        self.start = self.last = time.monotonic()

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.interval_s and self.done < self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            logger.info("%s: %d/%d (%.0f/s, ETA %.0f s)", self.desc, self.done, self.total, rate, eta)

    def close(self) -> None:
        elapsed = time.monotonic() - self.start
        if self.total:
            logger.info("%s: %d done in %.1f s (%.0f/s)", self.desc, self.done, elapsed,
                        self.done / max(elapsed, 1e-9))


@dataclass(frozen=True)
class AudioProbe:
    """One audio file after decoding it whole: its duration, or the reason it is unusable."""

    path: str
    dur: float | None = None
    problem: str | None = None  # one of PROBLEM_* below, None when the file is fine
    detail: str = ""


# Bad-item reasons of unusable audio (osoup.data.audio decides which applies).
PROBLEM_MISSING = REASON_MISSING
PROBLEM_UNREADABLE = REASON_UNDECODABLE
PROBLEM_EMPTY = REASON_EMPTY
PROBLEM_TRUNCATED = REASON_TRUNCATED
PROBLEM_NONFINITE = REASON_NONFINITE


def probe_one(path: str) -> AudioProbe:
    """Decoded duration of one audio file; never raises. Decoding the whole file (not just its
    header) is what catches a clip cut short, whose header still gives the full length."""
    try:
        info = check_audio(path)
    except AudioError as e:
        return AudioProbe(path, problem=e.reason, detail=e.detail)
    return AudioProbe(path, dur=info.duration)


def probe_audio(paths: Sequence[str], nj: int = DEFAULT_NJ, desc: str = "probing audio") -> list[AudioProbe]:
    """Probe many audio files, in order, with ``nj`` threads (libsndfile releases the GIL while
    it decodes, so threads scale), logging progress on long lists."""
    progress = Progress(len(paths), desc)
    out: list[AudioProbe] = []
    if nj <= 1 or len(paths) < 64:
        for p in paths:
            out.append(probe_one(p))
            progress.update()
    else:
        with ThreadPoolExecutor(max_workers=nj) as pool:
            for probe in pool.map(probe_one, paths, chunksize=32):
                out.append(probe)
                progress.update()
    progress.close()
    return out


def item_name(probe: AudioProbe) -> str:
    """``path`` or ``path (detail)`` for log lines and error messages."""
    return f"{probe.path} ({probe.detail})" if probe.detail else probe.path


@dataclass
class TsvTable:
    """A tab-separated file with a header; ``rows`` holds (line number, fields by column name)."""

    path: Path
    header: list[str]
    rows: list[tuple[int, dict[str, str]]]


def read_tsv(path: str | Path, required: Sequence[str]) -> TsvTable:
    """Read a header + rows TSV with no quoting at all (csv.QUOTE_NONE semantics: quote characters
    are ordinary text). Columns are found by name; a missing required column, or a row whose
    number of fields differs from the header's, raises DataError naming the file and line."""
    path = Path(path)
    lines = read_text_lines(path)
    if not lines:
        raise DataError(f"{path}: empty file, expected a header line with columns {', '.join(required)}")
    header = lines[0].split("\t")
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{path}:1: header lacks column(s) {', '.join(missing)}; header is: {' | '.join(header)}")
    rows = []
    for i, line in enumerate(lines[1:], 2):
        if not line:
            continue
        fields = line.split("\t")
        if len(fields) != len(header):
            raise DataError(f"{path}:{i}: {len(fields)} tab-separated fields, the header has {len(header)}")
        rows.append((i, dict(zip(header, fields))))
    return TsvTable(path, header, rows)


def has_whitespace(s: str) -> bool:
    return any(c.isspace() for c in s)


def write_audio_only_dir(data_dir: str | Path, utts: Sequence[Utterance]) -> None:
    """Write a data dir without ``text`` (for self-supervised sets whose audio lacks transcripts):
    wav.scp, utt2spk, spk2utt and utt2dur, with the same checks as ``write_data_dir``."""
    data_dir = Path(data_dir)
    seen: set[str] = set()
    for u in utts:
        if u.utt_id in seen:
            raise DataError(f"{data_dir}: duplicate utterance id {u.utt_id!r}")
        seen.add(u.utt_id)
        if not u.utt_id.startswith(u.spk) or has_whitespace(u.utt_id) or has_whitespace(u.spk) or not u.spk:
            raise DataError(f"{data_dir}: bad speaker {u.spk!r} for utterance {u.utt_id!r}")
    data_dir.mkdir(parents=True, exist_ok=True)
    for name in UTT_FILES + ("spk2utt",):
        (data_dir / name).unlink(missing_ok=True)
    write_scp(data_dir / "wav.scp", {u.utt_id: u.audio for u in utts})
    utt2spk = {u.utt_id: u.spk for u in utts}
    write_scp(data_dir / "utt2spk", utt2spk)
    write_scp(data_dir / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    if all(u.dur is not None for u in utts):
        write_scp(data_dir / "utt2dur", {u.utt_id: f"{u.dur:.3f}" for u in utts})
