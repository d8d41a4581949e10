"""Training SentencePiece models for CTC targets (one per ASR language, one English for S2TT).

Output directory layout (docs/design.md, "Token ids")::

    spm.model   SentencePiece model (unk_id=0, no bos/eos/pad)
    spm.vocab   piece<TAB>score, one line per spm id
    tokens.txt  CTC output symbols: <blank>, then the pieces in spm id order (CTC index = id + 1)
    info.json   {"kind", "lang", "vocab_size" (spm pieces, without blank), "model_type", ...}
"""
from __future__ import annotations

import io
import json
import logging
import re
from pathlib import Path
from typing import Iterable

from osoup.fileio import DataError, atomic_write
from osoup.text.normalize import normalize_asr, normalize_st

logger = logging.getLogger(__name__)

BLANK = "<blank>"
SEED = 1234
_MAX_VOCAB_RE = re.compile(r"value <= (\d+)")


def normalize_for(kind: str, lang: str, text: str) -> str:
    """The normalisation a tokenizer of this kind applies before encoding."""
    if kind == "asr":
        return normalize_asr(text, lang)
    if kind == "st":
        return normalize_st(text)
    raise ValueError(f"unknown tokenizer kind {kind!r} (expected 'asr' or 'st')")


def default_model_type(lang: str) -> str:
    """Character units for Chinese, unigram pieces for alphabetic languages (paper appendix E)."""
    return "char" if lang == "zh" else "unigram"


def _train_once(sentences: list[str], vocab_size: int, model_type: str, lang: str, num_threads: int) -> bytes:
    import sentencepiece as spm

    spm.set_random_generator_seed(SEED)
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(sentences),
        model_writer=model,
        vocab_size=vocab_size,
        model_type=model_type,
        character_coverage=0.9995 if lang == "zh" else 1.0,
        unk_id=0,
        bos_id=-1,
        eos_id=-1,
        pad_id=-1,
        # Text is already normalised by normalize_asr/normalize_st; spm must not change it again,
        # so that decode(encode(x)) gives back x.
        normalization_rule_name="identity",
        # Chinese has no spaces: without this every utterance would start with a lone "▁" token.
        add_dummy_prefix=lang != "zh",
        num_threads=num_threads,
        minloglevel=2,
    )
    return model.getvalue()


def train_spm(
    sentences: Iterable[str],
    out_dir: str | Path,
    kind: str,
    lang: str,
    vocab_size: int = 1000,
    model_type: str | None = None,
    num_threads: int = 1,
) -> dict:
    """Train on already-normalised sentences and write the token dir; returns info.json's dict.

    A vocabulary larger than the data supports is reduced to the maximum SentencePiece reports
    (logged), instead of failing. Training is deterministic (fixed seed; one thread by default).
    """
    import sentencepiece as spm

    sents = [s for s in sentences if s]
    if not sents:
        raise DataError(f"{out_dir}: no non-empty training sentences for the {kind} {lang} tokenizer")
    model_type = model_type or default_model_type(lang)
    requested = vocab_size
    for _ in range(3):
        try:
            proto = _train_once(sents, vocab_size, model_type, lang, num_threads)
            break
        except RuntimeError as e:
            m = _MAX_VOCAB_RE.search(str(e))
            if not m or int(m.group(1)) >= vocab_size:
                raise DataError(f"{out_dir}: SentencePiece training failed: {e}") from None
            logger.warning(
                "%s: vocabulary size %d is more than the data supports; using %d",
                out_dir, vocab_size, int(m.group(1)),
            )
            vocab_size = int(m.group(1))
    else:
        raise DataError(f"{out_dir}: SentencePiece training kept failing to find a valid vocabulary size")
    sp = spm.SentencePieceProcessor(model_proto=proto)
    n = sp.get_piece_size()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_write(out_dir / "spm.model", "wb") as f:
        f.write(proto)
    with atomic_write(out_dir / "spm.vocab") as f:
        for i in range(n):
            f.write(f"{sp.id_to_piece(i)}\t{sp.get_score(i):g}\n")
    with atomic_write(out_dir / "tokens.txt") as f:
        f.write(BLANK + "\n")
        for i in range(n):
            f.write(sp.id_to_piece(i) + "\n")
    info = {
        "kind": kind,
        "lang": lang,
        "vocab_size": n,
        "model_type": model_type,
        "requested_vocab_size": requested,
        "num_sentences": len(sents),
    }
    with atomic_write(out_dir / "info.json") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    logger.info("%s: trained %s SentencePiece model for %s %s: %d pieces (+ blank) from %d sentences",
                out_dir, model_type, kind, lang, n, len(sents))
    return info
