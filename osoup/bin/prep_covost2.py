"""Prepare CoVoST 2 / Common Voice 4 data dirs: data/{train,dev,test}_<lang>/ (stage 1).

Example:
    osoup-prep-covost2 --cv-root /db/cv4 --covost-root /db/covost2 \\
        --asr-langs "en fr de es ca" --st-langs "fr de es ca" --out data
"""
from __future__ import annotations

import sys

import configargparse

from osoup.data.corpora.common import DEFAULT_MAX_BAD_FRAC, DEFAULT_NJ
from osoup.data.corpora.covost2 import prepare_covost2
from osoup.fileio import run_command, setup_logging


def split_list(value: str) -> list[str]:
    """``"en fr,de"`` -> ``["en", "fr", "de"]`` (spaces or commas separate items)."""
    return value.replace(",", " ").split()


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(
        description=__doc__,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        config_file_parser_class=configargparse.YAMLConfigFileParser,
    )
    p.add_argument("--config", is_config_file=True, help="YAML file with any of these options")
    p.add_argument("--cv-root", required=True, help="Common Voice 4 root: <lang>/validated.tsv, <lang>/clips/")
    p.add_argument("--covost-root", required=True, help="directory holding covost_v2.<src>_<tgt>.tsv")
    p.add_argument("--asr-langs", default="", help="languages for ASR, e.g. \"en fr de es ca\"")
    p.add_argument("--st-langs", default="", help="languages translated into English, e.g. \"fr de es ca\"")
    p.add_argument("--out", required=True, help="output directory for the data dirs (e.g. data)")
    p.add_argument("--en-split-tsv", default="covost_v2.en_de.tsv",
                   help="CoVoST file giving the English splits (name under --covost-root, or a path)")
    p.add_argument("--max-bad-frac", type=float, default=DEFAULT_MAX_BAD_FRAC,
                   help="fail when more than this fraction of a data dir's rows is bad")
    p.add_argument("--nj", type=int, default=DEFAULT_NJ,
                   help="threads decoding every audio file (its length; whether it is cut short)")
    p.add_argument("--verbose", "-v", type=int, default=1, help="0: warnings, 1: info, 2: debug")
    return p


def _run(args) -> None:
    counts = prepare_covost2(
        args.cv_root, args.covost_root, args.out,
        asr_langs=split_list(args.asr_langs), st_langs=split_list(args.st_langs),
        en_split_tsv=args.en_split_tsv, max_bad_frac=args.max_bad_frac, nj=args.nj,
    )
    for name, n in sorted(counts.items()):
        print(f"{name} {n}")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
