"""Languages in scoring: which metric scores a language, how a set name carries it, and how
tables and figures order and name languages (rows of the paper's Tables 1, 2 and 5).

The measures named here are the three things the comparison reports per language: ``asr``
(WER, or CER for languages without word spaces), ``asr_cer`` (character error rate of every
language) and ``st`` (BLEU of the translation into English).
"""
from __future__ import annotations

from typing import Iterable

from osoup.fileio import DataError

TASKS = ("asr", "st")
CER_LANGS = ("zh", "ja")  # scored by character
LANG_ORDER = ("en", "fr", "de", "es", "ca", "zh")  # the paper's row order; others follow sorted


def asr_metric(lang: str) -> str:
    """``cer`` for languages written without word spaces, else ``wer``."""
    return "cer" if lang in CER_LANGS else "wer"


def parse_set_name(name: str) -> tuple[str, str]:
    """``test_fr`` -> (``test``, ``fr``); the language is the part after the last underscore."""
    split, sep, lang = name.rpartition("_")
    if not sep or not split or not lang:
        raise DataError(f"set name {name!r} is not <split>_<lang>")
    return split, lang


def lang_sort_key(lang: str) -> tuple[int, str]:
    """The paper's languages in its order first, then any other language alphabetically."""
    return (LANG_ORDER.index(lang), "") if lang in LANG_ORDER else (len(LANG_ORDER), lang)


def sort_langs(langs: Iterable[str]) -> list[str]:
    """Distinct languages in table order (:func:`lang_sort_key`)."""
    return sorted(set(langs), key=lang_sort_key)


def lang_label(lang: str, measure: str, title: bool = True) -> str:
    """How a language is named in a row or on an axis.

    ``title``: the comparison's style (``Fr``, ``Zh (CER)`` in the ASR table whose metric
    differs by language, ``Fr→En`` for translation); otherwise the per-experiment RESULTS.md
    style (``fr``, ``fr→en``).
    """
    if not title:
        return f"{lang}→en" if measure == "st" else lang
    name = lang.capitalize()
    if measure == "asr" and lang in CER_LANGS:
        return name + " (CER)"
    return name + "→En" if measure == "st" else name
