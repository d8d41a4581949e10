"""Corpus-level WER, CER (jiwer) and BLEU (sacrebleu).

Error rates are corpus-level: total edits over total reference units, not a mean of
per-utterance rates. They are returned in percent, as in the paper's tables. Texts must
already be normalised by the caller (``osoup.text.normalize``); these functions only split.
"""
from __future__ import annotations

from typing import Sequence

import jiwer
import sacrebleu


def _check_pair(refs: Sequence[str], hyps: Sequence[str], ids: Sequence[str] | None) -> None:
    if len(refs) != len(hyps):
        raise ValueError(f"{len(refs)} references but {len(hyps)} hypotheses")
    if ids is not None and len(ids) != len(refs):
        raise ValueError(f"{len(ids)} ids for {len(refs)} references")


def _name(i: int, ids: Sequence[str] | None) -> str:
    return f"utterance {ids[i]!r}" if ids is not None else f"reference #{i}"


def _edit_counts(refs: list[str], hyps: list[str]) -> dict[str, int]:
    out = jiwer.process_words(refs, hyps)
    ref_units = out.hits + out.substitutions + out.deletions
    return {"sub": out.substitutions, "del": out.deletions, "ins": out.insertions,
            "errors": out.substitutions + out.deletions + out.insertions, "ref_units": ref_units}


def wer(refs: Sequence[str], hyps: Sequence[str], ids: Sequence[str] | None = None) -> dict:
    """Word error rate over the corpus: ``{"errors", "ref_words", "wer" (percent), "sub",
    "del", "ins", "n_utts"}``. An empty hypothesis is all deletions; an empty reference is a
    data error (ValueError naming the utterance)."""
    _check_pair(refs, hyps, ids)
    words_r = [" ".join(r.split()) for r in refs]
    words_h = [" ".join(h.split()) for h in hyps]
    for i, r in enumerate(words_r):
        if not r:
            raise ValueError(f"{_name(i, ids)}: empty reference transcript")
    if not refs:
        raise ValueError("no references to score")
    c = _edit_counts(words_r, words_h)
    return {"errors": c["errors"], "ref_words": c["ref_units"], "wer": 100.0 * c["errors"] / c["ref_units"],
            "sub": c["sub"], "del": c["del"], "ins": c["ins"], "n_utts": len(refs)}


def cer(refs: Sequence[str], hyps: Sequence[str], ids: Sequence[str] | None = None) -> dict:
    """Character error rate with all whitespace removed (the unit for Chinese):
    ``{"errors", "ref_chars", "cer" (percent), "sub", "del", "ins", "n_utts"}``."""
    _check_pair(refs, hyps, ids)
    chars_r = [" ".join("".join(r.split())) for r in refs]
    chars_h = [" ".join("".join(h.split())) for h in hyps]
    for i, r in enumerate(chars_r):
        if not r:
            raise ValueError(f"{_name(i, ids)}: empty reference transcript")
    if not refs:
        raise ValueError("no references to score")
    c = _edit_counts(chars_r, chars_h)
    return {"errors": c["errors"], "ref_chars": c["ref_units"], "cer": 100.0 * c["errors"] / c["ref_units"],
            "sub": c["sub"], "del": c["del"], "ins": c["ins"], "n_utts": len(refs)}


def bleu_details(refs: Sequence[str], hyps: Sequence[str]) -> dict:
    """sacrebleu corpus BLEU (one reference, tokenize 13a, exp smoothing) with its parts:
    ``{"bleu", "signature", "precisions", "bp", "sys_len", "ref_len", "n_utts"}``."""
    _check_pair(refs, hyps, None)
    if not refs:
        raise ValueError("no references to score")
    metric = sacrebleu.BLEU(tokenize="13a")
    res = metric.corpus_score(list(hyps), [list(refs)])
    return {"bleu": float(res.score), "signature": str(metric.get_signature()),
            "precisions": [float(p) for p in res.precisions], "bp": float(res.bp),
            "sys_len": int(res.sys_len), "ref_len": int(res.ref_len), "n_utts": len(refs)}


def bleu(refs: Sequence[str], hyps: Sequence[str]) -> tuple[float, str]:
    """Corpus BLEU (0-100) and the sacrebleu signature string that makes it reproducible."""
    d = bleu_details(refs, hyps)
    return d["bleu"], d["signature"]
