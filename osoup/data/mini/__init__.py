"""Offline multilingual mini corpus: grammar-generated parallel text, espeak-ng speech, written
in the Common Voice 4 + CoVoST 2 layout (stage 0 of egs/mini_soup)."""
from osoup.data.mini.corpus import CV_DIR, make_mini_corpus, plan_language
from osoup.data.mini.grammar import LANGS, NP, Frame, generate_sentences, render, sample_frames

__all__ = ["CV_DIR", "LANGS", "NP", "Frame", "generate_sentences", "make_mini_corpus", "plan_language",
           "render", "sample_frames"]
