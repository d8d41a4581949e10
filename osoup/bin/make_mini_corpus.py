"""osoup-make-mini-corpus: synthesise the offline multilingual mini corpus (mini recipe stage 0).

    osoup-make-mini-corpus --out DIR --langs "en fr de es ca zh" --utts-per-lang 600 --seed 0 --nj 2

Writes the Common Voice 4 + CoVoST 2 layout (see osoup.data.mini.corpus), so stage 1 runs the
same CoVoST 2 parser as on the real corpus. A complete corpus with the same parameters is not
regenerated; a partial one (killed run) is completed.
"""
from __future__ import annotations

import json
import sys

import configargparse

from osoup.fileio import run_command, setup_logging


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter,
                                      config_file_parser_class=configargparse.YAMLConfigFileParser)
    p.add_argument("--config", is_config_file=True, help="YAML file with any of these options")
    p.add_argument("--out", required=True, help="output corpus root (CV language dirs + CoVoST TSVs)")
    p.add_argument("--langs", default="en fr de es ca zh", help="space-separated languages (en fr de es ca zh)")
    p.add_argument("--utts-per-lang", type=int, default=600, help="clips per language, all splits together")
    p.add_argument("--seed", type=int, default=0, help="seed of texts, speakers, splits and noise")
    p.add_argument("--nj", type=int, default=2, help="synthesis worker processes")
    p.add_argument("--max-speech-sec", type=float, default=4.6,
                   help="longest planned sentence, in estimated seconds of speech (shorter: cheaper training)")
    p.add_argument("--snr", type=float, nargs=2, default=[10.0, 30.0], metavar=("LOW", "HIGH"),
                   help="noise SNR range in dB, drawn uniformly per clip")
    p.add_argument("--verbose", type=int, default=1, help="0 warnings, 1 info, 2 debug")
    return p


def _run(args) -> None:
    from osoup.data.mini.corpus import make_mini_corpus

    summary = make_mini_corpus(args.out, args.langs.split(), args.utts_per_lang, args.seed, args.nj,
                               max_speech_sec=args.max_speech_sec, snr=tuple(args.snr))
    print(json.dumps(summary, indent=1, ensure_ascii=False))


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
