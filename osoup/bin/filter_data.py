"""Stage 4: filtered copy of dump/raw/<set> into dump/fbank/<set>.

Removes utterances without features (bad audio), with missing/empty transcript or translation
(after normalisation) and, unless --keep-all-lengths (test sets), those outside
[--min-sec, --max-sec]. Counts per reason are logged; more than --max-bad-frac bad data fails.
"""
from __future__ import annotations

import logging
import sys

import configargparse

from osoup.data.filter import filter_data
from osoup.fileio import run_command, setup_logging

logger = logging.getLogger("filter_data")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--in", dest="in_dir", required=True, help="input data dir with feats.scp and utt2num_frames")
    p.add_argument("--out", dest="out_dir", required=True, help="output data dir")
    p.add_argument("--min-sec", type=float, default=0.3)
    p.add_argument("--max-sec", type=float, default=20.0)
    p.add_argument("--keep-all-lengths", action="store_true", help="no length filter (test sets)")
    p.add_argument("--max-bad-frac", type=float, default=0.05)
    p.add_argument("--no-text", action="store_true", help="audio-only set (SSL): check features and lengths only")
    p.add_argument("--verbose", type=int, default=1)
    return p


def _run(args) -> None:
    filter_data(args.in_dir, args.out_dir, args.min_sec, args.max_sec, args.keep_all_lengths, args.max_bad_frac,
                need_text=not args.no_text)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    logger.info("config: %s", vars(args))
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
