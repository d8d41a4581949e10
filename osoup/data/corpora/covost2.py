"""CoVoST 2 (X -> En speech translation) on Common Voice 4 -> Kaldi data dirs.

Raw layout (tabs shown as ``<TAB>``)::

    <cv_root>/fr/clips/common_voice_fr_17299399.mp3          48 kHz mp3
    <cv_root>/fr/validated.tsv
        client_id<TAB>path<TAB>sentence<TAB>up_votes<TAB>down_votes<TAB>age<TAB>gender<TAB>accent
        5b9e...c1f0<TAB>common_voice_fr_17299399.mp3<TAB>Il a dit "non".<TAB>2<TAB>0<TAB><TAB><TAB>
    <cv_root>/zh-CN/...                                       Chinese lives in zh-CN
    <covost_root>/covost_v2.fr_en.tsv
        path<TAB>sentence<TAB>translation<TAB>client_id<TAB>split
        common_voice_fr_17299399.mp3<TAB>Il a dit "non".<TAB>He said "no".<TAB>5b9e...c1f0<TAB>train
    <covost_root>/covost_v2.en_de.tsv                         gives the English splits

``path`` may come with or without ``.mp3``. The TSVs are read with no quoting: quote characters
are part of the text. Columns are found by name. The ``split`` values ``train`` and
``train_covost`` become ``train``; ``dev`` and ``test`` are kept; other values are counted and
logged. Output, per language (``zh-CN`` written as ``zh``)::

    <out_dir>/{train,dev,test}_<lang>/ wav.scp text [text.en] utt2spk spk2utt utt2dur

with utterance id ``<client_id>-<clip stem>`` and speaker ``<client_id>``; ``text`` is the
validated.tsv sentence verbatim, ``text.en`` the CoVoST translation (every language but English).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from osoup.data.corpora.common import (
    DEFAULT_MAX_BAD_FRAC,
    DEFAULT_NJ,
    BadItems,
    check_max_bad_frac,
    has_whitespace,
    item_name,
    probe_audio,
    read_tsv,
)
from osoup.data.datadir import Utterance, write_data_dir
from osoup.fileio import DataError

logger = logging.getLogger(__name__)

# Common Voice directory (and CoVoST file) names of languages that carry a region suffix.
CV_CODES = {"zh": "zh-CN", "sv": "sv-SE"}
DATA_CODES = {v: k for k, v in CV_CODES.items()}
SPLIT_MAP = {"train": "train", "train_covost": "train", "dev": "dev", "test": "test"}
SPLITS = ("train", "dev", "test")


def cv_code(lang: str) -> str:
    """Common Voice directory name of a language: ``zh`` -> ``zh-CN``; others unchanged."""
    return CV_CODES.get(lang, lang)


def data_code(lang: str) -> str:
    """Language code used in data dir names: ``zh-CN`` -> ``zh``; others unchanged."""
    return DATA_CODES.get(lang, lang)


def clip_stem(path_field: str) -> str:
    """Join key of a clip: the ``path`` column without a trailing ``.mp3``."""
    return path_field[:-4] if path_field.endswith(".mp3") else path_field


@dataclass
class _Clip:
    line: int
    client_id: str
    sentence: str


def _languages_found(cv_root: Path) -> str:
    found = sorted(p.name for p in cv_root.iterdir() if (p / "validated.tsv").is_file())
    return ", ".join(found) if found else "none"


def _read_validated(path: Path) -> dict[str, _Clip]:
    """validated.tsv rows by clip stem; a repeated path is an error."""
    table = read_tsv(path, ("client_id", "path", "sentence"))
    clips: dict[str, _Clip] = {}
    for line, row in table.rows:
        stem = clip_stem(row["path"])
        if stem in clips:
            raise DataError(f"{path}:{line}: duplicate path {row['path']!r} (first on line {clips[stem].line})")
        clips[stem] = _Clip(line, row["client_id"].strip(), row["sentence"].strip())
    return clips


def _covost_tsv(covost_root: Path, name: str, lang: str) -> Path:
    path = Path(name) if Path(name).is_absolute() else covost_root / name
    if path.is_file():
        return path
    hint = ""
    if path.with_name(path.name + ".tar.gz").is_file():
        hint = f" (found {path.name}.tar.gz: unpack it in {path.parent})"
    else:
        found = sorted(p.name for p in covost_root.glob("covost_v2.*.tsv"))
        hint = f"; CoVoST files found: {', '.join(found) if found else 'none'}"
    raise DataError(f"requested language {lang!r} but {path} does not exist{hint}")


@dataclass
class _LangPlan:
    lang: str  # data-dir code (zh)
    clips_dir: Path
    validated: Path
    covost: Path
    with_translation: bool


def _plan(cv_root: Path, covost_root: Path, lang: str, en_split_tsv: str) -> _LangPlan:
    """Check that everything a language needs exists, before any slow work."""
    code = cv_code(lang)
    lang_dir = cv_root / code
    validated = lang_dir / "validated.tsv"
    if not validated.is_file():
        what = validated if lang_dir.is_dir() else lang_dir
        raise DataError(
            f"requested language {lang!r} but {what} does not exist; "
            f"languages found in {cv_root}: {_languages_found(cv_root)}"
        )
    if lang == "en":
        covost = _covost_tsv(covost_root, en_split_tsv, lang)
    else:
        covost = _covost_tsv(covost_root, f"covost_v2.{code}_en.tsv", lang)
    return _LangPlan(data_code(lang), lang_dir / "clips", validated, covost, lang != "en")


def _prepare_language(plan: _LangPlan, out_dir: Path, max_bad_frac: float, nj: int) -> dict[str, int]:
    clips = _read_validated(plan.validated)
    needed = ("path", "split", "translation") if plan.with_translation else ("path", "split")
    table = read_tsv(plan.covost, needed)
    logger.info("%s: %d clips in %s, %d rows in %s", plan.lang, len(clips), plan.validated,
                len(table.rows), plan.covost)

    bad = {s: BadItems(f"{s}_{plan.lang}") for s in SPLITS}
    n_input = {s: 0 for s in SPLITS}
    other_splits: dict[str, int] = {}
    seen: dict[str, int] = {}
    pending: list[tuple[str, Utterance]] = []  # (split, utterance still lacking its duration)
    for line, row in table.rows:
        where = f"{plan.covost}:{line}"
        stem = clip_stem(row["path"])
        if stem in seen:
            raise DataError(f"{where}: duplicate path {row['path']!r} (first on line {seen[stem]})")
        seen[stem] = line
        split = SPLIT_MAP.get(row["split"].strip())
        if split is None:
            other_splits[row["split"]] = other_splits.get(row["split"], 0) + 1
            continue
        n_input[split] += 1
        clip = clips.get(stem)
        if clip is None:
            bad[split].add("not in validated.tsv", f"{where} ({row['path']})")
            continue
        if not clip.sentence:
            bad[split].add("empty sentence", f"{plan.validated}:{clip.line} ({row['path']})")
            continue
        if not clip.client_id or has_whitespace(clip.client_id) or has_whitespace(stem) or not stem:
            bad[split].add("bad client_id or path", f"{plan.validated}:{clip.line}")
            continue
        text_en = None
        if plan.with_translation:
            text_en = row["translation"].strip()
            if not text_en:
                bad[split].add("empty translation", f"{where} ({row['path']})")
                continue
        audio = str(plan.clips_dir / f"{stem}.mp3")
        utt = Utterance(f"{clip.client_id}-{stem}", clip.client_id, audio, clip.sentence, text_en)
        pending.append((split, utt))
    if other_splits:
        logger.warning("%s: ignored %d row(s) with other split values: %s", plan.covost,
                       sum(other_splits.values()),
                       ", ".join(f"{k!r}: {v}" for k, v in sorted(other_splits.items())))

    probes = probe_audio([u.audio for _, u in pending], nj=nj, desc=f"probing {plan.lang} clips")
    by_split: dict[str, list[Utterance]] = {s: [] for s in SPLITS}
    for (split, utt), probe in zip(pending, probes):
        if probe.problem is not None:
            bad[split].add(probe.problem, item_name(probe))
            continue
        utt.dur = probe.dur
        by_split[split].append(utt)

    for split in SPLITS:
        name = f"{split}_{plan.lang}"
        if n_input[split] == 0:
            raise DataError(f"{plan.covost}: no rows with split {split!r} (needed for {name})")
        bad[split].check(n_input[split], max_bad_frac)
    counts = {}
    for split in SPLITS:
        name = f"{split}_{plan.lang}"
        write_data_dir(out_dir / name, by_split[split])
        counts[name] = len(by_split[split])
        logger.info("wrote %s: %d utterances (%d rows, skipped %s)", out_dir / name,
                    counts[name], n_input[split], bad[split].describe())
    return counts


def _dedup(langs: Iterable[str]) -> list[str]:
    out: list[str] = []
    for lang in langs:
        lang = data_code(lang)
        if lang not in out:
            out.append(lang)
    return out


def prepare_covost2(
    cv_root: str | Path,
    covost_root: str | Path,
    out_dir: str | Path,
    asr_langs: Iterable[str],
    st_langs: Iterable[str],
    en_split_tsv: str = "covost_v2.en_de.tsv",
    max_bad_frac: float = DEFAULT_MAX_BAD_FRAC,
    nj: int = DEFAULT_NJ,
) -> dict[str, int]:
    """Write ``<out_dir>/{train,dev,test}_<lang>`` for every language of ``asr_langs`` and
    ``st_langs`` and return the number of utterances per data dir name.

    ``st_langs`` translate into English, so English cannot be one of them. English ASR takes its
    splits from ``en_split_tsv`` (a file name under ``covost_root``, or an absolute path).
    Every clip is decoded whole (its duration; truncated clips are bad items), with ``nj`` threads.
    """
    # Absolute (not symlink-resolved) paths, so wav.scp works from any directory.
    cv_root, covost_root = Path(os.path.abspath(cv_root)), Path(os.path.abspath(covost_root))
    out_dir = Path(out_dir)
    check_max_bad_frac(max_bad_frac)
    st = _dedup(st_langs)
    langs = _dedup(list(asr_langs) + st)
    if not langs:
        raise DataError("no languages requested (asr_langs and st_langs are both empty)")
    if "en" in st:
        raise DataError("st_langs contains 'en', but English is the translation target (X -> en)")
    for root, what in ((cv_root, "Common Voice 4 root (<lang>/validated.tsv, <lang>/clips/)"),
                       (covost_root, "CoVoST 2 root (covost_v2.<src>_<tgt>.tsv)")):
        if not root.is_dir():
            raise DataError(f"{root} does not exist; expected the {what}")
    plans = [_plan(cv_root, covost_root, lang, en_split_tsv) for lang in langs]
    counts: dict[str, int] = {}
    for plan in plans:
        counts.update(_prepare_language(plan, out_dir, max_bad_frac, nj))
    return counts
