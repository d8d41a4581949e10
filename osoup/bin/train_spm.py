"""Stage 5: train a SentencePiece tokenizer on Kaldi text files (key + text lines).

--kind asr: text normalised with normalize_asr(text, --lang) (model per source language);
--kind st: normalize_st (case and punctuation kept; one English model for all S2TT heads).
Writes spm.model, spm.vocab, tokens.txt (<blank> first) and info.json into --out.
"""
from __future__ import annotations

import logging
import sys

import configargparse

from osoup.data.datadir import read_scp
from osoup.fileio import DataError, run_command, setup_logging
from osoup.text.spm import normalize_for, train_spm

logger = logging.getLogger("train_spm")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--kind", required=True, choices=["asr", "st"])
    p.add_argument("--lang", required=True, help="language of the text (st: the target language, en)")
    p.add_argument("--out", required=True, help="output token dir")
    p.add_argument("--vocab-size", type=int, default=1000, help="upper bound; reduced to what the data supports")
    p.add_argument("--model-type", choices=["unigram", "char", "bpe"], default=None,
                   help="default: char for zh, unigram otherwise")
    p.add_argument("--num-threads", type=int, default=1, help="more threads may change the model")
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("texts", nargs="+", help="Kaldi text files (utt-id text)")
    return p


def _run(args) -> None:
    if args.vocab_size < 2:
        raise DataError(f"--vocab-size {args.vocab_size}: must be at least 2")
    sentences: list[str] = []
    empty = 0
    for path in args.texts:
        for key, text in read_scp(path, allow_empty_value=True).items():
            s = normalize_for(args.kind, args.lang, text)
            if s:
                sentences.append(s)
            else:
                empty += 1
    if empty:
        logger.warning("%d of %d lines are empty after normalisation; not used for training",
                       empty, empty + len(sentences))
    info = train_spm(sentences, args.out, args.kind, args.lang, args.vocab_size, args.model_type,
                     args.num_threads)
    logger.info("final vocabulary: %d pieces + <blank> (%s)", info["vocab_size"], info["model_type"])


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    logger.info("config: %s", vars(args))
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
