"""osoup-results: gather scored experiments into paper-style tables and plots.

    osoup-results --exps exp/vs exp/vc exp/vm_uas_seed1 exp/vm_uas_seed2 --out exp/RESULTS_compare \
        [--labels "VS VC VM-UAS VM-UAS"] [--split test] [--decode-tag beam10]

Reads each ``<exp>/results.json`` (written by ``osoup-score --exp``). Experiments sharing a
label (``--labels``, else results.json's label, else the dir name without ``_seedN``) are
seed replicas and are reported as mean ± std. Writes into ``--out``: ``RESULTS.md`` (ASR
WER/CER and S2TT BLEU tables: languages + Ave. by methods, as the paper's Tables 1, 2, 5),
``results.json``, ``radar.png`` (Fig. 1 shape) and ``tradeoff.png`` (average error vs BLEU).

Paired significance (``--bootstrap 1000``, the default; 0: off): every method is compared with
the method labelled ``--bootstrap-ref`` (default ``joint``, when there is one) by paired bootstrap
resampling of the test utterances, read back from the hypothesis and reference files each
results.json names. RESULTS.md marks significantly better (*) and worse (‡) cells and lists each
difference with its 95% interval; the plots draw significant points filled
(``osoup.score.significance``, ``docs/results.md``). When the reference and another method both
have two seeds or more, RESULTS.md also gives Welch's t-test of their per-seed values
(``osoup.score.seeds``): whether training again would differ, which the bootstrap does not ask.

With ``--resources`` it also measures what deploying each method costs (the paper's Table 9:
parameters, packed size, load time, decoding real-time factor) and writes ``RESOURCES.md`` and
``resources.json``. Under one label, experiments with the same heads are seed replicas (the
first is measured); experiments with disjoint heads are the models of one deployment (summed),
e.g. one single-objective model per objective::

    osoup-results --exps exp/vm exp/single_asr_en exp/single_st_fr --labels "VM single single" \
        --out exp/RESULTS_compare --resources --resources-data-dir dump/fbank

The same rule groups the comparison: under one label, experiments with the same outputs are seed
replicas, experiments with disjoint outputs are the models of one deployment, reported as one
column whose numbers come from each output's own model (the ``single`` baseline).

``--sweep-labels static_sweep``: the experiments under that label are the grid points of a
static sweep (``osoup-train --method joint --task-weights ...``; seeds of one point share its
weights). The point with the lowest dev loss (``train_summary.json`` best_dev: the mean dev CTC
loss of the supervised objectives at best.pt, mean over seeds) is reported; the choice is made
on dev only, and every point's dev number is listed in RESULTS.md and results.json.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import configargparse

from osoup import expdir
from osoup.fileio import DataError, run_command, setup_logging
from osoup.score.significance import DEFAULT_REFERENCE, DEFAULT_RESAMPLES, DEFAULT_SEED

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
    p.add_argument("--sweep-labels", nargs="*", default=[],
                   help="labels whose experiments are the grid points of one static sweep: the point with the "
                        "lowest dev loss is reported (one space-separated string is split)")
    g = p.add_argument_group("paired significance (bootstrap of test utterances)")
    g.add_argument("--bootstrap", type=int, default=DEFAULT_RESAMPLES,
                   help="resamples of the paired bootstrap against --bootstrap-ref (0: no significance test)")
    g.add_argument("--bootstrap-seed", type=int, default=DEFAULT_SEED, help="seed of the resampling (reported)")
    g.add_argument("--bootstrap-ref", default=None,
                   help=f"label of the reference method (default: {DEFAULT_REFERENCE!r} when a method has that label)")
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
    labels = labels or [default_label(r) for r in results]
    if len(labels) != len(results):
        raise DataError(f"{len(labels)} labels for {len(results)} experiments")
    results, labels, selections = _select_sweeps(results, labels, _sweep_labels(args, labels))
    methods = gather(results, labels=labels, split=args.split, decode_tag=args.decode_tag)
    for m in methods:
        m.selection = selections.get(m.label)
    written = write_comparison(methods, args.out, split=args.split, significance=_significance(args, methods))
    for kind, path in written.items():
        log.info("wrote %s (%s)", path, kind)
    if args.resources:
        _resources(args, labels, [str(Path(r["_path"]).parent) for r in results])


def _significance(args, methods):
    """The paired bootstrap of every method against the reference method; None when off."""
    from osoup.score.significance import paired_significance

    if args.bootstrap < 0:
        raise DataError(f"--bootstrap must be >= 0 (0: off), got {args.bootstrap}")
    if args.bootstrap == 0:
        return None
    return paired_significance(methods, reference=args.bootstrap_ref or DEFAULT_REFERENCE, resamples=args.bootstrap,
                               seed=args.bootstrap_seed, required=args.bootstrap_ref is not None)


def _sweep_labels(args, labels: list[str]) -> list[str]:
    named = [w for item in args.sweep_labels for w in item.split()]
    unknown = [s for s in named if s not in labels]
    if unknown:
        raise DataError(f"--sweep-labels: no experiment has the label {unknown[0]!r} (labels: {' '.join(labels)})")
    return named


def _grid_point(exp_dir: Path) -> tuple[str, float]:
    """A sweep experiment's grid point (its --task-weights, from config.yaml) and dev number
    (best_dev of train_summary.json)."""
    import json

    from osoup.train.experiment import read_config
    from osoup.train.phases import TASK_GROUPS

    weights = read_config(exp_dir).get("task_weights") or {}
    if isinstance(weights, dict):  # config.yaml sorts its keys: name the point in the groups' order
        order = sorted(weights, key=lambda k: (TASK_GROUPS.index(k) if k in TASK_GROUPS else len(TASK_GROUPS), k))
        point = ",".join(f"{k}:{weights[k]:g}" for k in order)
    else:
        point = str(weights)
    path = expdir.require_file(exp_dir / expdir.TRAIN_SUMMARY)
    try:
        dev = float(json.loads(path.read_text(encoding="utf-8"))["best_dev"])
    except (ValueError, KeyError, TypeError) as e:
        raise DataError(f"{path}: no readable best_dev ({e})") from None
    return point or "(no --task-weights)", dev


def _select_sweeps(results: list[dict], labels: list[str], sweeps: list[str]) -> tuple[list[dict], list[str], dict]:
    """Keep, for each sweep label, only the experiments of the grid point chosen on dev."""
    from osoup.score.comparison import select_on_dev

    selections, drop = {}, set()
    for label in sweeps:
        idx = [i for i, lab in enumerate(labels) if lab == label]
        dirs = [Path(results[i]["_path"]).parent for i in idx]
        points = [_grid_point(d) for d in dirs]
        chosen, selections[label] = select_on_dev(label, [str(d) for d in dirs], [p for p, _ in points],
                                                   [dev for _, dev in points])
        drop |= {i for i, d in zip(idx, dirs) if str(d) not in chosen}
        log.info("sweep %s: grid point %s chosen on dev (%s)", label, selections[label]["chosen"],
                 ", ".join(f"{p['point']}={p['dev']:.4f}" for p in selections[label]["points"]))
    keep = [i for i in range(len(results)) if i not in drop]
    return [results[i] for i in keep], [labels[i] for i in keep], selections


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
