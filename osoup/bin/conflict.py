"""osoup-conflict: gradient-conflict analysis of a trained experiment (paper appendix C).

    osoup-conflict --exp-dir exp/vm_asr-st-ssl --num-batches 20 --suggest-levels
    -> exp/vm_asr-st-ssl/conflict/{conflict.json, conflict.md, cosine_heatmap.png,
       layer_heatmaps.png, cluster_scatter.png, suggested_levels.txt}

For every objective (by default those of <exp-dir>/objectives.json) and N batches of its own
data, the gradient of its normalised loss w.r.t. the shared backbone is taken per layer group
(model in eval mode). Reported: the cosine matrix of the gradients averaged over the N batches
(the paper's eq. 30; mode "averaged") and the mean of the per-batch cosine matrices (mode
"per-batch"), for the whole backbone and per layer, with per-layer conflict scores (mean
pairwise cosine, most negative = most conflicting) and gradient norms.

--suggest-levels clusters the supervised objectives (average linkage on 1 - cos; clusters
whose mean cross-cosine is below --threshold stay apart, at most --max-groups), and writes a
--levels spec for every order of the clusters to suggested_levels.txt, the recommended one
first (the cluster richest in the --favour task first; SSL always last), e.g.

    ./run.sh --recipe vm --levels "$(head -1 exp/X/conflict/suggested_levels.txt)"

Data options (--dump-dir, --token-dir, --ssl-sets, split names, batch sizes) default to the
experiment's config.yaml; run from the recipe directory (feature paths are relative to it).
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import configargparse

from osoup.fileio import run_command, setup_logging
from osoup.train.experiment import BEST, CONFLICT_DIR

log = logging.getLogger("osoup-conflict")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(
        description=__doc__,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        config_file_parser_class=configargparse.YAMLConfigFileParser,
    )
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--exp-dir", required=True, help="trained experiment dir (objectives.json + checkpoint)")
    p.add_argument("--model", default=BEST,
                   help="model file inside --exp-dir (best.pt, avgN.pt, latest.pt, checkpoint.N.pt)")
    p.add_argument("--out", default=None, help="output dir (default: <exp-dir>/conflict)")
    g = p.add_argument_group("objectives and data (defaults: the experiment's)")
    g.add_argument("--dump-dir", default=None, help="root of dumped features (default: config.yaml's, else dump)")
    g.add_argument("--token-dir", default=None, help="root of tokenizers (default: config.yaml's, else data/token)")
    g.add_argument("--asr-langs", default=None, help="space-separated ASR languages (default: objectives.json)")
    g.add_argument("--st-langs", default=None, help="space-separated translation languages (default: objectives.json)")
    g.add_argument("--ssl", default=None, choices=["cpc", "bestrq", "w2v2", "none"], help="SSL objective (default: the experiment's)")
    g.add_argument("--ssl-sets", default=None, help="data sets under <dump-dir>/fbank for SSL (default: config.yaml's)")
    g.add_argument("--split", default="train", choices=["train", "dev"], help="analyse training or validation data")
    g.add_argument("--train-split", default=None, help="name of the training split (default: config.yaml's, else train)")
    g.add_argument("--dev-split", default=None, help="name of the validation split (default: config.yaml's, else dev)")
    g.add_argument("--max-frames", type=int, default=None, help="padded frames per batch (default: config.yaml's, else 12000)")
    g.add_argument("--max-utts", type=int, default=None, help="utterances per batch (default: config.yaml's, else 64)")
    g = p.add_argument_group("analysis")
    g.add_argument("--num-batches", type=int, default=20, help="batches per objective")
    g.add_argument("--mode", default="both", choices=["averaged", "per-batch", "both"],
                   help="averaged: cosine of batch-averaged gradients (paper eq. 30); per-batch: mean of per-batch cosines")
    g.add_argument("--suggest-levels", action="store_true", help="cluster objectives and write suggested_levels.txt")
    g.add_argument("--threshold", type=float, default=0.0, help="clusters with mean cross-cosine below this stay on different levels")
    g.add_argument("--max-groups", type=int, default=3, help="at most this many supervised levels")
    g.add_argument("--favour", default="asr", choices=["asr", "st"], help="task whose cluster goes first in the recommended order")
    g.add_argument("--max-bad-frac", type=float, default=0.05, help="fail above this fraction of batches with non-finite gradients")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--device", default="cpu")
    g.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    g.add_argument("--verbose", type=int, default=1)
    return p


def run(args) -> None:
    """The analysis of parsed ``args``: report files into the output dir, suggestions printed."""
    from osoup.conflict.report import (SUGGESTED_LEVELS, ConflictRequest, analyse_experiment, suggestions_text,
                                       summary_lines, write_report)

    if args.threads > 0:
        import torch

        torch.set_num_threads(args.threads)
    req = ConflictRequest.from_options(vars(args))
    report = analyse_experiment(req)
    out = req.out_dir
    write_report(report, out, {k: v for k, v in vars(args).items() if k != "config"}, args.suggest_levels)
    for line in summary_lines(report):
        log.info("%s", line)
    if args.suggest_levels:
        sys.stdout.write(suggestions_text(report))
        log.info("wrote %s", out / SUGGESTED_LEVELS)
    log.info("wrote %s/{conflict.json,conflict.md,cosine_heatmap.png,layer_heatmaps.png,cluster_scatter.png}", out)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out = Path(args.out) if args.out else Path(args.exp_dir) / CONFLICT_DIR
    # No log file (and no output dir) inside an experiment dir that does not exist.
    setup_logging(args.verbose, out / "conflict.log" if Path(args.exp_dir).is_dir() else None)
    log.info("command: %s", " ".join(sys.argv if argv is None else ["osoup-conflict", *argv]))
    return run_command(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())
