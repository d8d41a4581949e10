"""Text normalisation for ASR targets/scoring and for translation targets.

Data dirs keep corpus strings verbatim; these functions are applied when tokenising targets and
when scoring, so training and evaluation see the same text.
"""
from __future__ import annotations

import unicodedata

# Typographic apostrophes become the ASCII one, so "l’homme" and "l'homme" are the same word.
_APOSTROPHES = {"\u2019": "'", "\u02bc": "'", "\uff07": "'"}


def _is_word_char(c: str) -> bool:
    return unicodedata.category(c)[0] in "LNM"


def normalize_asr(text: str, lang: str) -> str:
    """ASR normalisation: NFKC, lowercase, punctuation and symbols -> space, spaces collapsed.

    Apostrophes between two word characters are kept ("aujourd'hui", "don't"); every other
    character of Unicode category P* or S* becomes a space. Letters with accents are kept.
    For ``zh`` all spaces are then removed (characters are the units).
    """
    s = unicodedata.normalize("NFKC", text).lower()
    chars = [_APOSTROPHES.get(c, c) for c in s]
    out = []
    for i, c in enumerate(chars):
        cat = unicodedata.category(c)
        if cat[0] in "PS":
            inside_word = (
                c == "'" and 0 < i < len(chars) - 1 and _is_word_char(chars[i - 1]) and _is_word_char(chars[i + 1])
            )
            out.append(c if inside_word else " ")
        elif cat[0] in "CZ":  # separators and control characters (tabs, NBSP, ZWSP...) -> space
            out.append(" ")
        else:
            out.append(c)
    words = "".join(out).split()
    return "".join(words) if lang == "zh" else " ".join(words)


def normalize_st(text: str) -> str:
    """Translation targets: only surrounding whitespace stripped and inner runs collapsed."""
    return " ".join(text.split())
