"""LibriSpeech -> Kaldi data dirs.

Raw layout::

    <root>/LibriSpeech/SPEAKERS.TXT
        ;ID  |SEX| SUBSET           |MINUTES| NAME
        14   | F | train-clean-360  | 25.03 | Kristin LeMoine
        60   | M | train-clean-100  | 20.18 | |CBW|Simon          (names may contain '|')
    <root>/LibriSpeech/dev-clean/1272/128104/1272-128104-0000.flac   16 kHz flac
    <root>/LibriSpeech/dev-clean/1272/128104/1272-128104.trans.txt
        1272-128104-0000 MISTER QUILTER IS THE APOSTLE OF THE MIDDLE CLASSES AND WE ARE GLAD TO ...
        1272-128104-0001 NOR IS MISTER QUILTER'S MANNER LESS INTERESTING THAN HIS MATTER

``parts`` maps corpus parts to splits (``{"train-clean-100": "train", "dev-clean": "dev"}``;
several parts may feed one split). Output: ``<out_dir>/<split>_<lang>/`` with wav.scp text
utt2spk spk2utt utt2dur (and spk2gender from SPEAKERS.TXT); speaker id ``<spk>``, a prefix of
the corpus utterance id. ``ssl_parts`` are written as ``<out_dir>/ssl_<part>_<lang>/`` for
self-supervised training: there a flac needs no transcript (``text`` is written only when every
utterance has one).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

from osoup.data.corpora.common import (
    DEFAULT_MAX_BAD_FRAC,
    DEFAULT_NJ,
    PROBLEM_MISSING,
    BadItems,
    check_max_bad_frac,
    item_name,
    probe_audio,
    write_audio_only_dir,
)
from osoup.data.datadir import Utterance, write_data_dir, write_scp
from osoup.fileio import DataError, read_text_lines

logger = logging.getLogger(__name__)


def find_corpus_dir(root: Path) -> Path:
    """``<root>/LibriSpeech`` if it exists, else ``root`` itself when it looks like that dir."""
    if not root.is_dir():
        raise DataError(f"{root} does not exist; expected the LibriSpeech root (holding LibriSpeech/<part>/)")
    if (root / "LibriSpeech").is_dir():
        return root / "LibriSpeech"
    if (root / "SPEAKERS.TXT").is_file():
        return root
    raise DataError(f"{root}: no LibriSpeech/ directory (nor SPEAKERS.TXT) found in it")


def read_speakers(path: Path) -> dict[str, str]:
    """Speaker id -> gender (``m``/``f``) from SPEAKERS.TXT; malformed lines raise DataError."""
    genders: dict[str, str] = {}
    for i, line in enumerate(read_text_lines(path), 1):
        if not line.strip() or line.startswith(";"):
            continue
        fields = [f.strip() for f in line.split("|", 4)]
        if len(fields) < 4 or not fields[0] or fields[1].upper() not in ("M", "F"):
            raise DataError(f"{path}:{i}: expected 'ID | SEX | SUBSET | MINUTES | NAME', got {line!r}")
        genders[fields[0]] = fields[1].lower()
    return genders


@dataclass
class _Item:
    utt_id: str
    spk: str
    audio: str
    text: str | None  # None: no transcript line for this flac
    where: str  # transcript file:line, or the flac path


def _scan_part(part_dir: Path) -> list[_Item]:
    """All flacs and transcript lines of one part, matched by utterance id."""
    items: list[_Item] = []
    for spk_dir in sorted(p for p in part_dir.iterdir() if p.is_dir()):
        spk = spk_dir.name
        for chap_dir in sorted(p for p in spk_dir.iterdir() if p.is_dir()):
            prefix = f"{spk}-{chap_dir.name}-"
            texts: dict[str, tuple[str, str]] = {}
            trans = chap_dir / f"{spk}-{chap_dir.name}.trans.txt"
            if trans.is_file():
                for i, line in enumerate(read_text_lines(trans), 1):
                    utt, _, text = line.partition(" ")
                    if not utt.startswith(prefix):
                        raise DataError(f"{trans}:{i}: utterance id {utt!r} does not start with {prefix!r}")
                    if utt in texts:
                        raise DataError(f"{trans}:{i}: duplicate utterance id {utt!r}")
                    texts[utt] = (text.strip(), f"{trans}:{i}")
            flacs = {p.stem: p for p in chap_dir.glob("*.flac")}
            for utt in sorted(set(texts) | set(flacs)):
                audio = str(flacs[utt]) if utt in flacs else str(chap_dir / f"{utt}.flac")
                text, where = texts.get(utt, (None, audio))
                items.append(_Item(utt, spk, audio, text, where))
    return items


def _build(name: str, part_dirs: Sequence[Path], need_text: bool, nj: int,
           max_bad_frac: float) -> list[Utterance]:
    """Utterances of one output data dir from its parts, bad items counted and checked."""
    bad = BadItems(name)
    items = [it for d in part_dirs for it in _scan_part(d)]
    if not items:
        raise DataError(f"{name}: no audio or transcripts found under {', '.join(map(str, part_dirs))}")
    kept: list[_Item] = []
    for it in items:
        if need_text and it.text is None:
            bad.add("audio without transcript", it.audio)
        elif need_text and not it.text:
            bad.add("empty transcript", it.where)
        else:
            kept.append(it)
    probes = probe_audio([it.audio for it in kept], nj=nj, desc=f"probing {name} audio")
    utts = []
    for it, probe in zip(kept, probes):
        if probe.problem is not None:
            bad.add(probe.problem, f"{it.where} ({probe.path})" if probe.problem == PROBLEM_MISSING
                    else item_name(probe))
            continue
        # An empty text only survives in SSL sets, where it means "no transcript".
        utts.append(Utterance(it.utt_id, it.spk, it.audio, it.text or "", dur=probe.dur))
    bad.check(len(items), max_bad_frac)
    logger.info("%s: %d utterances from %d items (skipped %s)", name, len(utts), len(items), bad.describe())
    return utts


def _write(out: Path, utts: list[Utterance], genders: dict[str, str] | None) -> None:
    if all(u.text for u in utts):
        write_data_dir(out, utts)
    else:
        logger.info("%s: some audio has no transcript; writing it without a text file", out)
        write_audio_only_dir(out, utts)
    spk2gender = out / "spk2gender"
    spk2gender.unlink(missing_ok=True)
    if genders is not None:
        spks = sorted({u.spk for u in utts})
        unknown = [s for s in spks if s not in genders]
        if unknown:
            logger.warning("%s: %d speaker(s) not in SPEAKERS.TXT (e.g. %s); no spk2gender written",
                           out, len(unknown), unknown[0])
        else:
            write_scp(spk2gender, {s: genders[s] for s in spks})


def prepare_librispeech(
    root: str | Path,
    out_dir: str | Path,
    parts: Mapping[str, str],
    lang: str = "en",
    ssl_parts: Sequence[str] = (),
    max_bad_frac: float = DEFAULT_MAX_BAD_FRAC,
    nj: int = DEFAULT_NJ,
) -> dict[str, int]:
    """Write ``<out_dir>/<split>_<lang>`` for the parts in ``parts`` (part name -> split name) and
    ``<out_dir>/ssl_<part>_<lang>`` for each of ``ssl_parts``; return utterances per data dir."""
    check_max_bad_frac(max_bad_frac)
    corpus = find_corpus_dir(Path(os.path.abspath(root)))
    out_dir = Path(out_dir)
    if not parts and not ssl_parts:
        raise DataError("no LibriSpeech parts requested")
    for part in list(parts) + list(ssl_parts):
        if not (corpus / part).is_dir():
            found = sorted(p.name for p in corpus.iterdir() if p.is_dir())
            raise DataError(f"requested part {part!r} but {corpus / part} does not exist; "
                            f"parts found: {', '.join(found) if found else 'none'}")
    speakers_txt = corpus / "SPEAKERS.TXT"
    genders = read_speakers(speakers_txt) if speakers_txt.is_file() else None
    if genders is None:
        logger.warning("%s not found; no spk2gender will be written", speakers_txt)

    outputs: dict[str, tuple[list[Path], bool]] = {}
    for part, split in parts.items():
        outputs.setdefault(f"{split}_{lang}", ([], True))[0].append(corpus / part)
    for part in ssl_parts:
        outputs[f"ssl_{part}_{lang}"] = ([corpus / part], False)
    counts: dict[str, int] = {}
    for name, (part_dirs, need_text) in outputs.items():
        utts = _build(name, part_dirs, need_text, nj, max_bad_frac)
        _write(out_dir / name, utts, genders)
        counts[name] = len(utts)
        logger.info("wrote %s: %d utterances", out_dir / name, len(utts))
    return counts
