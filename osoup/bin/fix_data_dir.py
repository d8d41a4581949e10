"""osoup-fix-data-dir: make a Kaldi data dir valid (Kaldi's fix_data_dir.sh as the spec).

    osoup-fix-data-dir data/train_fr [--max-bad-frac 0.05]

Sorts every file, keeps only the utterances present (and well-formed) in all utterance files,
regenerates spk2utt, backs the originals up to DIR/.backup/ and logs how many utterances were
removed and why. Fails, changing nothing, if more than --max-bad-frac would be removed.
"""
from __future__ import annotations

import json
import sys

import configargparse

from osoup.data.validate import fix_data_dir, validate_data_dir
from osoup.fileio import DataError, run_command, setup_logging


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__,
                                      formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("dir", metavar="DIR", help="data directory to fix in place")
    p.add_argument("--max-bad-frac", type=float, default=0.05,
                   help="fail if more than this fraction of utterances would be removed")
    p.add_argument("--no-text", action="store_true",
                   help="the dir need not have a text file (SSL-only audio)")
    p.add_argument("--verbose", type=int, default=1)
    return p


def _run(args) -> None:
    result = fix_data_dir(args.dir, max_bad_frac=args.max_bad_frac)
    print(json.dumps(result, sort_keys=True))
    problems = validate_data_dir(args.dir, need_text=not args.no_text)
    if problems:
        raise DataError(f"{args.dir}: still invalid after fixing: " + "; ".join(problems))


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
