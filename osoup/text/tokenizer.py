"""Text <-> CTC indices with a trained token dir (see osoup.text.spm for its layout)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

from osoup.fileio import DataError, read_text_lines
from osoup.text.spm import BLANK, normalize_for


class Tokenizer:
    """SentencePiece tokenizer whose ids are CTC output indices (0 = blank, spm id + 1 otherwise).

    ``encode`` normalises first (ASR: :func:`normalize_asr`; ST: :func:`normalize_st`), so callers
    pass corpus text verbatim. Characters the model does not know map to ``<unk>`` (index 1).
    """

    def __init__(self, token_dir: str | Path):
        import sentencepiece as spm

        self.dir = Path(token_dir)
        for name in ("spm.model", "tokens.txt", "info.json"):
            if not (self.dir / name).is_file():
                raise DataError(f"{self.dir / name}: missing (run osoup-train-spm first)")
        with open(self.dir / "info.json", encoding="utf-8") as f:
            info = json.load(f)
        self.kind: str = info["kind"]
        self.lang: str = info["lang"]
        self.sp = spm.SentencePieceProcessor(model_file=str(self.dir / "spm.model"))
        self.tokens: list[str] = read_text_lines(self.dir / "tokens.txt")
        if self.tokens[:1] != [BLANK] or len(self.tokens) != self.sp.get_piece_size() + 1:
            raise DataError(
                f"{self.dir / 'tokens.txt'}: expected {BLANK} then {self.sp.get_piece_size()} pieces, "
                f"found {len(self.tokens)} lines"
            )
        self.vocab_size: int = len(self.tokens)

    def normalize(self, text: str) -> str:
        return normalize_for(self.kind, self.lang, text)

    def encode(self, text: str) -> list[int]:
        """CTC indices of the normalised text."""
        return [i + 1 for i in self.sp.encode(self.normalize(text), out_type=int)]

    def decode(self, ids: Sequence[int]) -> str:
        """Text of CTC indices: blanks dropped, pieces joined (no spaces for Chinese)."""
        spm_ids = [int(i) - 1 for i in ids if int(i) != 0]
        bad = [i for i in spm_ids if not 0 <= i < self.vocab_size - 1]
        if bad:
            raise ValueError(f"token index {bad[0] + 1} out of range for vocabulary of {self.vocab_size}")
        text = self.sp.decode(spm_ids)
        if self.lang == "zh":
            text = "".join(text.split())
        return text

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.dir)!r}, kind={self.kind!r}, lang={self.lang!r}, vocab_size={self.vocab_size})"
