"""osoup-results: gather scored experiments into paper-style tables and plots.

    osoup-results --exps exp/vs exp/vc exp/vm_uas_seed1 exp/vm_uas_seed2 --out exp/RESULTS_compare \
        [--labels "VS VC VM-UAS VM-UAS"] [--split test] [--decode-tag beam10]

Reads each ``<exp>/results.json`` (written by ``osoup-score --exp``). Experiments sharing a
label (``--labels``, else results.json's label, else the dir name without ``_seedN``) are
seed replicas and are reported as mean ± std. Writes into ``--out``: ``RESULTS.md`` (ASR
WER/CER and S2TT BLEU tables: languages + Ave. by methods, as the paper's Tables 1, 2, 5),
``results.json``, ``radar.png`` (Fig. 1 shape) and ``tradeoff.png`` (average error vs BLEU).

With ``--resources`` it also measures what deploying each method costs (the paper's Table 9:
parameters, packed size, load time, decoding real-time factor) and writes ``RESOURCES.md`` and
``resources.json``. Under one label, experiments with the same heads are seed replicas (the
first is measured); experiments with disjoint heads are the models of one deployment (summed),
e.g. one single-objective model per objective::

    osoup-results --exps exp/vm exp/single_asr_en exp/single_st_fr --labels "VM single single" \
        --out exp/RESULTS_compare --resources --resources-data-dir dump/fbank
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import configargparse

from osoup import expdir
from osoup.fileio import DataError, run_command, setup_logging

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
    g = p.add_argument_group("resources (Table 9)")
    g.add_argument("--resources", action="store_true",
                   help="also measure parameters, packed size, load time and decoding RTF of each method")
    g.add_argument("--resources-model", default=expdir.BEST,
                   help="model file to pack into <exp>/model.pack.pt where that is absent")
    g.add_argument("--resources-data-dir", default="dump/fbank",
                   help="dir of the dumped <split>_<lang> sets decoded for the RTF")
    g.add_argument("--resources-utts", type=int, default=20,
                   help="decode the first N utterances of each language's test set for the RTF")
    g.add_argument("--resources-loads", type=int, default=5,
                   help="fresh-process loads per model; the table shows their median")
    p.add_argument("--verbose", type=int, default=1)
    return p


def _labels(args) -> list[str] | None:
    labels = args.labels
    if labels is not None and len(labels) == 1 and len(args.exps) > 1:
        labels = labels[0].split()
    return labels


def _run(args) -> None:
    from osoup.score.comparison import default_label, gather
    from osoup.score.resultfiles import load_results, write_comparison

    labels = _labels(args)
    for opt in ("resources_utts", "resources_loads"):
        if args.resources and getattr(args, opt) < 1:
            raise DataError(f"--{opt.replace('_', '-')} must be >= 1, got {getattr(args, opt)}")
    results = [load_results(e) for e in args.exps]
    methods = gather(results, labels=labels, split=args.split, decode_tag=args.decode_tag)
    written = write_comparison(methods, args.out, split=args.split)
    for kind, path in written.items():
        log.info("wrote %s (%s)", path, kind)
    if args.resources:
        _resources(args, labels or [default_label(r) for r in results],
                   [str(Path(r["_path"]).parent) for r in results])


def _resources(args, labels: list[str], exp_dirs: list[str]) -> None:
    """Measure each deployment's models and write RESOURCES.md / resources.json."""
    from osoup.score.resource_table import plan_deployments, write_resources
    from osoup.train.resources import measure_experiment, output_heads

    deployments = plan_deployments(exp_dirs, labels, [output_heads(e) for e in exp_dirs])
    models = {exp: measure_experiment(exp, args.resources_model, args.resources_data_dir, args.split,
                                      args.resources_utts, args.resources_loads)
              for d in deployments for exp in d.parts}
    for path in write_resources(args.out, deployments, models, args.resources_loads, args.resources_utts,
                                args.split):
        log.info("wrote %s (resources)", path)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
