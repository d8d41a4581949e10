"""Which objectives a run trains, and where their data and tokenizers live.

Objective names: ``asr_<lang>`` (source-language CTC), ``st_<lang>`` (translation into English,
CTC over the shared English model ``st_en``, or ``st_en_<units>`` with ``st_units``) and
``ssl`` (CPC or BEST-RQ on untranscribed audio).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from osoup.fileio import DataError
from osoup.nets.model import SSL_OBJECTIVE


@dataclass
class ObjectiveSpec:
    name: str
    task: str  # asr | st | ssl
    lang: str | None
    train_dirs: list[Path]
    dev_dirs: list[Path]
    text_file: str | None  # text (asr) | text.en (st) | None (ssl)
    token_dir: Path | None
    extra: dict = field(default_factory=dict)


def objective_names(asr_langs: list[str], st_langs: list[str], ssl: str | None) -> list[str]:
    """The objective names of a run, in :func:`build_objectives`' order, without looking at any
    data (options are checked against them before data is read)."""
    names = [f"asr_{lang}" for lang in asr_langs] + [f"st_{lang}" for lang in st_langs]
    return names + ([SSL_OBJECTIVE] if ssl else [])


def build_objectives(
    dump_dir: str | Path,
    token_root: str | Path,
    asr_langs: list[str],
    st_langs: list[str],
    ssl: str | None,
    ssl_sets: list[str] | None = None,
    train_split: str = "train",
    dev_split: str = "dev",
    st_units: str = "",
) -> list[ObjectiveSpec]:
    """Objective specs in a fixed order (asr by language, st by language, ssl last), checking
    that every objective has its data and tokenizer before any training starts. ``st_units``
    names another set of translation targets: ``dump/st_<units>`` and ``st_en_<units>``."""
    dump_dir, token_root = Path(dump_dir), Path(token_root)
    if st_units and not re.fullmatch(r"[A-Za-z0-9.-]+", st_units):
        raise DataError(f"--st-units {st_units!r}: give a name of letters, digits, '.' or '-' (e.g. unigram300)")
    st_dump, st_tok = ("st", "st_en") if not st_units else (f"st_{st_units}", f"st_en_{st_units}")
    specs: list[ObjectiveSpec] = []
    problems: list[str] = []

    def need_dir(p: Path, what: str) -> None:
        if not (p / "feats.scp").is_file():
            problems.append(f"{what}: {p}/feats.scp not found (run the data stages first)")

    for lang in asr_langs:
        tr, dv, tok = dump_dir / "asr" / f"{train_split}_{lang}", dump_dir / "asr" / f"{dev_split}_{lang}", token_root / f"asr_{lang}"
        need_dir(tr, f"objective asr_{lang}")
        if not (tok / "spm.model").is_file():
            problems.append(f"objective asr_{lang}: no tokenizer at {tok}/spm.model (stage 5)")
        specs.append(ObjectiveSpec(f"asr_{lang}", "asr", lang, [tr], [dv] if (dv / "feats.scp").is_file() else [], "text", tok))
    for lang in st_langs:
        tr, dv, tok = dump_dir / st_dump / f"{train_split}_{lang}", dump_dir / st_dump / f"{dev_split}_{lang}", token_root / st_tok
        need_dir(tr, f"objective st_{lang}")
        if not (tok / "spm.model").is_file():
            problems.append(f"objective st_{lang}: no English translation tokenizer at {tok}/spm.model (stage 5)")
        specs.append(ObjectiveSpec(f"st_{lang}", "st", lang, [tr], [dv] if (dv / "feats.scp").is_file() else [], "text.en", tok))
    if ssl:
        if ssl not in ("cpc", "bestrq", "w2v2"):
            raise DataError(f"unknown --ssl {ssl!r}: choose cpc, bestrq, w2v2 or none")
        sets = ssl_sets or [f"{train_split}_{lang}" for lang in dict.fromkeys(asr_langs + st_langs)]
        dirs = [dump_dir / "fbank" / s for s in sets]
        for d in dirs:
            need_dir(d, f"objective {SSL_OBJECTIVE}")
        dev = [dump_dir / "fbank" / f"{dev_split}_{lang}" for lang in dict.fromkeys(asr_langs + st_langs)]
        specs.append(ObjectiveSpec(SSL_OBJECTIVE, "ssl", None, dirs, [d for d in dev if (d / "feats.scp").is_file()], None, None, {"kind": ssl}))
    if not specs:
        problems.append("no objectives: give --asr-langs, --st-langs or --ssl")
    if problems:
        raise DataError("configuration problems:\n  " + "\n  ".join(problems))
    return specs
