"""Prepare LibriSpeech data dirs: data/<split>_<lang>/ and optional data/ssl_<part>_<lang>/ (stage 1).

Example:
    osoup-prep-librispeech --root /db/librispeech \\
        --parts "train-clean-100:train dev-clean:dev test-clean:test" \\
        --ssl-parts "train-clean-360 train-other-500" --out data
"""
from __future__ import annotations

import sys

import configargparse

from osoup.data.corpora.common import DEFAULT_MAX_BAD_FRAC, DEFAULT_NJ
from osoup.data.corpora.librispeech import prepare_librispeech
from osoup.fileio import DataError, run_command, setup_logging


def parse_parts(value: str) -> dict[str, str]:
    """``"train-clean-100:train dev-clean:dev"`` -> ``{"train-clean-100": "train", ...}``."""
    parts: dict[str, str] = {}
    for token in value.replace(",", " ").split():
        part, sep, split = token.partition(":")
        if not sep or not part or not split or ":" in split:
            raise DataError(f"--parts: expected PART:SPLIT, got {token!r}")
        if part in parts:
            raise DataError(f"--parts: part {part!r} given twice")
        parts[part] = split
    return parts


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(
        description=__doc__,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        config_file_parser_class=configargparse.YAMLConfigFileParser,
    )
    p.add_argument("--config", is_config_file=True, help="YAML file with any of these options")
    p.add_argument("--root", required=True, help="directory holding LibriSpeech/<part>/")
    p.add_argument("--parts", default="train-clean-100:train dev-clean:dev test-clean:test",
                   help="PART:SPLIT pairs; several parts may share a split")
    p.add_argument("--ssl-parts", default="", help="parts written as ssl_<part>_<lang> (no transcript needed)")
    p.add_argument("--lang", default="en", help="language code of the data dir names")
    p.add_argument("--out", required=True, help="output directory for the data dirs (e.g. data)")
    p.add_argument("--max-bad-frac", type=float, default=DEFAULT_MAX_BAD_FRAC,
                   help="fail when more than this fraction of a data dir's input is bad")
    p.add_argument("--nj", type=int, default=DEFAULT_NJ,
                   help="threads decoding every audio file (its length; whether it is cut short)")
    p.add_argument("--verbose", "-v", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    return p


def _run(args) -> None:
    counts = prepare_librispeech(
        args.root, args.out, parse_parts(args.parts), lang=args.lang,
        ssl_parts=args.ssl_parts.replace(",", " ").split(),
        max_bad_frac=args.max_bad_frac, nj=args.nj,
    )
    for name, n in sorted(counts.items()):
        print(f"{name} {n}")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
