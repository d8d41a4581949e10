"""Utterance filters of recipe stages 4 and 5, and the encoder's subsampled length.

Every removed utterance is counted under a reason and logged; removals for bad data (no
features, missing or empty text) fail the stage above ``max_bad_frac``, removals for length are
a choice, not an error, and are only reported. Both filters read fbank and raw-waveform dumps
(``osoup.data.feats_type``): durations come from the row counts of the dir's kind, and the CTC
filter takes the encoder's output length as a function of the row count.
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Callable

from osoup.data.datadir import UTT_FILES, read_data_dir, read_scp, spk2utt_from_utt2spk, write_scp
from osoup.data.feats_type import FEATS_TYPE_FILE, NUM_SAMPLES_FILE, read_feats_type, rows_to_seconds, write_feats_type
from osoup.fileio import DataError
from osoup.text.normalize import normalize_asr, normalize_st

logger = logging.getLogger(__name__)

# Utterance-keyed files of raw dumps beyond the Kaldi ones, subset along with them.
EXTRA_UTT_FILES = (NUM_SAMPLES_FILE,)


def subsampled_length(num_frames: int, factor: int = 4) -> int:
    """Frames left after the Conv2d subsampling front-end.

    factor 4 (8, ...) is two (three, ...) Conv2d layers with kernel 3 and stride 2 and no padding,
    each mapping T -> (T - 3) // 2 + 1 = (T - 1) // 2; factor 4 gives ((T - 1) // 2 - 1) // 2.
    factor 1 means no subsampling. Never negative.
    """
    if factor < 1 or factor & (factor - 1):
        raise ValueError(f"subsampling factor must be 1 or a power of two, got {factor}")
    t = int(num_frames)
    while factor > 1:
        t = (t - 1) // 2
        factor //= 2
    return max(t, 0)


def ctc_min_frames(tokens: list[int]) -> int:
    """Fewest CTC output frames that can emit ``tokens``: one per token plus a blank between
    every pair of equal consecutive tokens."""
    return len(tokens) + sum(1 for a, b in zip(tokens, tokens[1:]) if a == b)


def subset_data_dir(in_dir: str | Path, out_dir: str | Path, keep: set[str]) -> int:
    """Write every utterance-keyed file of ``in_dir`` restricted to ``keep`` into ``out_dir``
    (spk2utt regenerated). Feature paths in feats.scp are copied unchanged. Returns #kept."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    files = read_data_dir(in_dir)
    extra = {n: read_scp(in_dir / n) for n in EXTRA_UTT_FILES if (in_dir / n).is_file()}
    known = set(UTT_FILES) | set(EXTRA_UTT_FILES) | {"spk2utt", FEATS_TYPE_FILE}
    others = sorted(p.name for p in in_dir.iterdir() if p.is_file() and p.name not in known and not p.name.startswith("."))
    if others:
        logger.warning("%s: files not copied (unknown to the data dir format): %s", in_dir, " ".join(others))
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in UTT_FILES + EXTRA_UTT_FILES + ("spk2utt", FEATS_TYPE_FILE):
        (out_dir / name).unlink(missing_ok=True)
    for name, table in {**files, **extra}.items():
        write_scp(out_dir / name, {k: v for k, v in table.items() if k in keep})
    if (in_dir / FEATS_TYPE_FILE).is_file():
        write_feats_type(out_dir, read_feats_type(in_dir))
    if "utt2spk" in files:
        utt2spk = {k: v for k, v in files["utt2spk"].items() if k in keep}
        write_scp(out_dir / "spk2utt", spk2utt_from_utt2spk(utt2spk))
    return len(keep)


def _check_bad(in_dir: Path, total: int, counts: Counter, bad_reasons: tuple[str, ...], max_bad_frac: float) -> None:
    bad = sum(counts[r] for r in bad_reasons)
    if total and bad / total > max_bad_frac:
        detail = ", ".join(f"{r}: {counts[r]}" for r in bad_reasons if counts[r])
        raise DataError(
            f"{in_dir}: {bad} of {total} utterances ({bad / total:.1%}) have bad data ({detail}), "
            f"more than --max-bad-frac {max_bad_frac}"
        )


def _log_counts(what: str, total: int, kept: int, counts: Counter, examples: dict[str, str]) -> None:
    logger.info("%s: kept %d of %d utterances", what, kept, total)
    for reason, n in sorted(counts.items()):
        logger.info("%s: removed %d (%s), e.g. %s", what, n, reason, examples[reason])


def _lengths(in_dir: Path, files: dict[str, dict[str, str]]) -> tuple[str, str, dict[str, str]]:
    """(feature kind, name, table) of the row counts stage 4 filters on: utt2num_frames of an
    fbank dump, utt2num_samples of a raw one; DataError when it or feats.scp is missing."""
    kind = read_feats_type(in_dir)
    name = NUM_SAMPLES_FILE if kind == "raw" else "utt2num_frames"
    table = files[name] if name in files else read_scp(in_dir / name) if (in_dir / name).is_file() else None
    for need, present in (("feats.scp", "feats.scp" in files), (name, table is not None)):
        if not present:
            raise DataError(f"{in_dir}/{need}: missing (run the feature stage first)")
    return kind, name, table


BAD_DATA_REASONS = ("no_features", "no_text", "empty_text", "no_text_en", "empty_text_en")


def filter_data(
    in_dir: str | Path,
    out_dir: str | Path,
    min_sec: float = 0.3,
    max_sec: float = 20.0,
    keep_all_lengths: bool = False,
    max_bad_frac: float = 0.05,
    need_text: bool = True,
) -> Counter:
    """Stage 4: drop utterances without features (bad audio), with missing or empty text
    (after ASR normalisation) or translation, and, unless ``keep_all_lengths``, those shorter
    than ``min_sec`` or longer than ``max_sec`` (num_frames * 10 ms; raw dumps: utt2num_samples
    / 16 kHz). Returns removal counts by reason (plus "kept"); raises DataError when bad data
    exceeds ``max_bad_frac``. ``need_text=False`` (SSL-only audio sets) checks features and
    lengths only."""
    in_dir = Path(in_dir)
    files = read_data_dir(in_dir)
    kind, lengths_file, nframes_tab = _lengths(in_dir, files)
    universe = set(files.get("wav.scp", {})) | set(nframes_tab) | set(files["feats.scp"])
    text = files.get("text", {})
    text_en = files.get("text.en")
    counts: Counter = Counter()
    examples: dict[str, str] = {}
    keep: set[str] = set()
    for utt in sorted(universe):
        reason = None
        if utt not in nframes_tab or utt not in files["feats.scp"]:
            reason = "no_features"
        elif not need_text:
            pass
        elif utt not in text:
            reason = "no_text"
        elif not normalize_asr(text[utt], "xx"):  # emptiness does not depend on the language
            reason = "empty_text"
        elif text_en is not None and utt not in text_en:
            reason = "no_text_en"
        elif text_en is not None and not normalize_st(text_en[utt]):
            reason = "empty_text_en"
        if reason is None:
            try:
                sec = rows_to_seconds(int(nframes_tab[utt]), kind)
            except ValueError:
                raise DataError(f"{in_dir}/{lengths_file}: {utt}: not an integer: {nframes_tab[utt]!r}") from None
            if not keep_all_lengths and sec < min_sec:
                reason = "too_short"
            elif not keep_all_lengths and sec > max_sec:
                reason = "too_long"
        if reason is None:
            keep.add(utt)
        else:
            counts[reason] += 1
            examples.setdefault(reason, utt)
    total = len(universe)
    _log_counts(str(in_dir), total, len(keep), counts, examples)
    for reason in ("empty_text", "empty_text_en", "no_text", "no_text_en"):
        if counts[reason]:
            logger.warning("%s: %d utterances removed for %s (e.g. %s): check the corpus preparation",
                           in_dir, counts[reason], reason, examples[reason])
    _check_bad(in_dir, total, counts, BAD_DATA_REASONS, max_bad_frac)
    if not keep:
        raise DataError(f"{in_dir}: no utterance left after filtering ({dict(counts)})")
    subset_data_dir(in_dir, out_dir, keep)
    counts["kept"] = len(keep)
    return counts


def filter_ctc(
    in_dir: str | Path,
    out_dir: str | Path,
    tokenizer,
    task: str,
    subsampling: int = 4,
    frames_of: Callable[[int], int] | None = None,
) -> Counter:
    """Stage 5: keep utterances whose targets (``text`` for asr, ``text.en`` for st, encoded by
    ``tokenizer``) are non-empty and fit CTC after subsampling. ``frames_of`` maps a row count
    (utt2num_frames) to encoder output frames; default: the Conv2d front-end's
    :func:`subsampled_length` with ``subsampling`` (a wav2vec 2.0 backbone on raw dumps passes
    its CNN's formula). Returns counts (plus "kept")."""
    if frames_of is None:
        def frames_of(n: int) -> int:
            return subsampled_length(n, subsampling)
    in_dir = Path(in_dir)
    if task not in ("asr", "st"):
        raise ValueError(f"task must be 'asr' or 'st', got {task!r}")
    files = read_data_dir(in_dir)
    name = "text" if task == "asr" else "text.en"
    for need in (name, "utt2num_frames"):
        if need not in files:
            raise DataError(f"{in_dir}/{need}: missing, needed to filter {task} targets")
    targets, nframes_tab = files[name], files["utt2num_frames"]
    counts: Counter = Counter()
    examples: dict[str, str] = {}
    keep: set[str] = set()
    for utt in sorted(nframes_tab):
        if utt not in targets:
            raise DataError(f"{in_dir}/{name}: utterance {utt} has features but no line")
        ids = tokenizer.encode(targets[utt])
        t_out = frames_of(int(nframes_tab[utt]))
        if not ids:
            reason = "empty_target"
        elif ctc_min_frames(ids) > t_out:
            reason = "too_many_tokens"
        else:
            keep.add(utt)
            continue
        counts[reason] += 1
        examples.setdefault(reason, f"{utt} ({len(ids)} tokens, {t_out} frames)")
    _log_counts(f"{in_dir} [{task}]", len(nframes_tab), len(keep), counts, examples)
    if not keep:
        raise DataError(f"{in_dir}: no utterance fits CTC for task {task} ({dict(counts)})")
    subset_data_dir(in_dir, out_dir, keep)
    counts["kept"] = len(keep)
    return counts
