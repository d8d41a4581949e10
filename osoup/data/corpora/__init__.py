"""Corpus parsers: one function per corpus, from its root directory to Kaldi data dirs.

Each module shows the raw layout it expects in its docstring. Bad items (missing, corrupt,
empty or truncated audio, empty transcripts) are skipped, counted and logged; a data dir with
more than ``max_bad_frac`` bad input is refused with a DataError.
"""
from osoup.data.corpora.aishell import prepare_aishell
from osoup.data.corpora.covost2 import prepare_covost2
from osoup.data.corpora.librispeech import prepare_librispeech

__all__ = ["prepare_aishell", "prepare_covost2", "prepare_librispeech"]
