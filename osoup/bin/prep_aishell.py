"""Prepare AISHELL-1 data dirs: data/{train,dev,test}_zh/ (stage 1).

Unpacks the per-speaker tarballs in data_aishell/wav/ first (once; marked *.tar.gz.unpacked).

Example:
    osoup-prep-aishell --root /db/aishell --out data
"""
from __future__ import annotations

import sys

import configargparse

from osoup.data.corpora.aishell import prepare_aishell
from osoup.data.corpora.common import DEFAULT_MAX_BAD_FRAC, DEFAULT_NJ
from osoup.fileio import run_command, setup_logging


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(
        description=__doc__,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        config_file_parser_class=configargparse.YAMLConfigFileParser,
    )
    p.add_argument("--config", is_config_file=True, help="YAML file with any of these options")
    p.add_argument("--root", required=True, help="directory holding data_aishell/")
    p.add_argument("--lang", default="zh", help="language code of the data dir names")
    p.add_argument("--out", required=True, help="output directory for the data dirs (e.g. data)")
    p.add_argument("--max-bad-frac", type=float, default=DEFAULT_MAX_BAD_FRAC,
                   help="fail when more than this fraction of a data dir's input is bad")
    p.add_argument("--nj", type=int, default=DEFAULT_NJ,
                   help="threads decoding every audio file (its length; whether it is cut short)")
    p.add_argument("--verbose", "-v", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    return p


def _run(args) -> None:
    counts = prepare_aishell(args.root, args.out, lang=args.lang,
                             max_bad_frac=args.max_bad_frac, nj=args.nj)
    for name, n in sorted(counts.items()):
        print(f"{name} {n}")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
