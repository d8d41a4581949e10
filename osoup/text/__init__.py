"""Text: normalisation for ASR/ST targets and SentencePiece tokenizers (CTC indices)."""
from osoup.text.normalize import normalize_asr, normalize_st

__all__ = ["normalize_asr", "normalize_st"]
