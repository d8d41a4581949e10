"""Stage 5: keep utterances whose targets fit CTC after the encoder's subsampling.

An utterance of T feature frames fits when tokens + repeated consecutive tokens <=
subsampled_length(T, --subsampling). --task asr reads `text`, st reads `text.en`.
"""
from __future__ import annotations

import logging
import sys

import configargparse

from osoup.data.filter import filter_ctc
from osoup.fileio import DataError, run_command, setup_logging
from osoup.text.tokenizer import Tokenizer

logger = logging.getLogger("filter_ctc")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--in", dest="in_dir", required=True, help="input data dir (dump/fbank/<set>)")
    p.add_argument("--out", dest="out_dir", required=True, help="output data dir (dump/<task>/<set>)")
    p.add_argument("--token-dir", required=True, help="token dir from osoup-train-spm")
    p.add_argument("--task", choices=["asr", "st"], default=None, help="default: the token dir's kind")
    p.add_argument("--subsampling", type=int, default=4)
    p.add_argument("--verbose", type=int, default=1)
    return p


def _run(args) -> None:
    if args.subsampling < 1 or args.subsampling & (args.subsampling - 1):
        raise DataError(f"--subsampling {args.subsampling}: must be 1 or a power of two")
    tok = Tokenizer(args.token_dir)
    task = args.task or tok.kind
    if task != tok.kind:
        raise DataError(f"--task {task} but {args.token_dir} holds a {tok.kind} tokenizer")
    filter_ctc(args.in_dir, args.out_dir, tok, task, args.subsampling)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    logger.info("config: %s", vars(args))
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
