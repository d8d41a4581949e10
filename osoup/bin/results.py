"""osoup-results: gather scored experiments into paper-style tables and plots.

    osoup-results --exps exp/vs exp/vc exp/vm_uas_seed1 exp/vm_uas_seed2 --out exp/RESULTS_compare \
        [--labels "VS VC VM-UAS VM-UAS"] [--split test] [--decode-tag beam10]

Reads each ``<exp>/results.json`` (written by ``osoup-score --exp``). Experiments sharing a
label (``--labels``, else results.json's label, else the dir name without ``_seedN``) are
seed replicas and are reported as mean ± std. Writes into ``--out``: ``RESULTS.md`` (ASR
WER/CER and S2TT BLEU tables: languages + Ave. by methods, as the paper's Tables 1, 2, 5),
``results.json``, ``radar.png`` (Fig. 1 shape) and ``tradeoff.png`` (average error vs BLEU).
"""
from __future__ import annotations

import logging
import sys

import configargparse

from osoup.fileio import run_command, setup_logging

log = logging.getLogger("osoup-results")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter,
                                      config_file_parser_class=configargparse.YAMLConfigFileParser)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--exps", nargs="+", required=True, help="experiment dirs (or their results.json)")
    p.add_argument("--labels", nargs="+", default=None,
                   help="one column label per experiment; equal labels are seed replicas "
                        "(one space-separated string is split)")
    p.add_argument("--out", required=True, help="output dir for RESULTS.md, results.json and the PNGs")
    p.add_argument("--split", default="test", help="which split's sets to compare")
    p.add_argument("--decode-tag", default=None, help="decode tag to use when an experiment has several")
    p.add_argument("--verbose", type=int, default=1)
    return p


def _run(args) -> None:
    from osoup.score.comparison import gather
    from osoup.score.resultfiles import load_results, write_comparison

    labels = args.labels
    if labels is not None and len(labels) == 1 and len(args.exps) > 1:
        labels = labels[0].split()
    results = [load_results(e) for e in args.exps]
    methods = gather(results, labels=labels, split=args.split, decode_tag=args.decode_tag)
    written = write_comparison(methods, args.out, split=args.split)
    for kind, path in written.items():
        log.info("wrote %s (%s)", path, kind)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
