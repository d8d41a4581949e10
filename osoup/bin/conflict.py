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

import json
import logging
import sys
from pathlib import Path

import configargparse

from osoup.fileio import DataError, atomic_write_text, setup_logging

log = logging.getLogger("osoup-conflict")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(
        description=__doc__,
        formatter_class=configargparse.RawDescriptionHelpFormatter,
        config_file_parser_class=configargparse.YAMLConfigFileParser,
    )
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--exp-dir", required=True, help="trained experiment dir (objectives.json + checkpoint)")
    p.add_argument("--model", default="best.pt", help="checkpoint file inside --exp-dir (best.pt, latest.pt, checkpoint.N.pt)")
    p.add_argument("--out", default=None, help="output dir (default: <exp-dir>/conflict)")
    g = p.add_argument_group("objectives and data (defaults: the experiment's)")
    g.add_argument("--dump-dir", default=None, help="root of dumped features (default: config.yaml's, else dump)")
    g.add_argument("--token-dir", default=None, help="root of tokenizers (default: config.yaml's, else data/token)")
    g.add_argument("--asr-langs", default=None, help="space-separated ASR languages (default: objectives.json)")
    g.add_argument("--st-langs", default=None, help="space-separated translation languages (default: objectives.json)")
    g.add_argument("--ssl", default=None, choices=["cpc", "bestrq", "none"], help="SSL objective (default: the experiment's)")
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


def _exp_config(exp: Path) -> dict:
    path = exp / "config.yaml"
    if not path.is_file():
        return {}
    import yaml

    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML ({e})") from None
    return cfg if isinstance(cfg, dict) else {}


def resolve_objectives(args, meta: dict, model) -> tuple[list[str], list[str], str | None]:
    """ASR languages, ST languages and SSL kind: options where given, else the experiment's;
    every one must exist in the model."""
    names = meta["objectives"]
    asr = args.asr_langs.split() if args.asr_langs is not None else [n[4:] for n in names if n.startswith("asr_")]
    st = args.st_langs.split() if args.st_langs is not None else [n[3:] for n in names if n.startswith("st_")]
    if args.ssl is not None:
        ssl = None if args.ssl == "none" else args.ssl
    else:
        ssl = meta.get("ssl") if "ssl" in names else None
    missing = [n for n in [f"asr_{l}" for l in asr] + [f"st_{l}" for l in st] if n not in model.heads]
    if missing:
        raise DataError(f"{args.exp_dir}: the model has no head for {missing} (heads: {sorted(model.heads)})")
    if ssl is not None and ssl != model.ssl_kind:
        raise DataError(f"{args.exp_dir}: --ssl {ssl} but the model was trained with ssl={model.ssl_kind}")
    if len(asr) + len(st) + (ssl is not None) < 2:
        raise DataError("conflict analysis needs at least two objectives")
    return asr, st, ssl


def run(args) -> int:
    import numpy as np
    import torch

    from osoup.conflict.analysis import MODES, WHOLE, markdown_summary, to_json_dict
    from osoup.conflict.gradients import collect_gradients, load_experiment_model, load_objective_data
    from osoup.conflict.plots import MODE_TITLES, plot_cluster_scatter, plot_cosine_heatmap, plot_layer_heatmap
    from osoup.conflict.suggest import suggest_levels
    from osoup.data.objectives import build_objectives

    if args.num_batches < 1:
        raise DataError("--num-batches must be >= 1")
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    exp = Path(args.exp_dir)
    out = Path(args.out) if args.out else exp / "conflict"
    cfg = _exp_config(exp)
    dump_dir = args.dump_dir or cfg.get("dump_dir") or "dump"
    token_dir = args.token_dir or cfg.get("token_dir") or "data/token"
    ssl_sets = (args.ssl_sets if args.ssl_sets is not None else cfg.get("ssl_sets") or "").split()
    train_split = args.train_split or cfg.get("train_split") or "train"
    dev_split = args.dev_split or cfg.get("dev_split") or "dev"
    max_frames = args.max_frames or int(cfg.get("max_frames") or 12000)
    max_utts = args.max_utts or int(cfg.get("max_utts") or 64)

    model, meta = load_experiment_model(exp, args.model, args.device)
    asr, st, ssl = resolve_objectives(args, meta, model)
    specs = build_objectives(dump_dir, token_dir, asr, st, ssl, ssl_sets or None, train_split, dev_split)
    names = [s.name for s in specs]
    log.info("objectives: %s; %s split; %d batches each (max %d frames / %d utts)", " ".join(names), args.split,
             args.num_batches, max_frames, max_utts)
    head_vocab = {n: h.vocab_size for n, h in model.heads.items()}
    data = load_objective_data(specs, args.split, meta.get("token_dirs", {}), max_frames, max_utts, head_vocab)
    modes = MODES if args.mode == "both" else (args.mode,)
    result, stats = collect_gradients(model, data, args.num_batches, modes, args.seed, args.device, args.max_bad_frac)
    log.info("gradients of %d objectives over %d batches in %.1f s", len(names), result.num_batches, stats["seconds"])

    primary = result.primary
    ssl_name = "ssl" if ssl is not None else None
    clustering, suggestions = suggest_levels(result.cos[primary][WHOLE], names, ssl_name, args.threshold,
                                             args.max_groups, args.favour) if any(n != "ssl" for n in names) else (None, [])
    settings = {
        "exp_dir": str(exp), "model": args.model, "split": args.split,
        "split_name": train_split if args.split == "train" else dev_split, "num_batches": args.num_batches,
        "max_frames": max_frames, "max_utts": max_utts, "mode": args.mode, "seed": args.seed,
        "dump_dir": str(dump_dir), "device": args.device,
    }
    doc = {"settings": settings, **to_json_dict(result), "run": stats}
    if clustering is not None:
        doc["clustering"] = {
            "method": "average linkage on 1 - cos (of the primary mode, whole backbone), supervised objectives only",
            "rule": (f"merge the closest clusters while their mean cross-cosine >= {args.threshold:g}, and "
                     f"always while more than {args.max_groups} clusters remain"),
            "clusters": clustering.clusters,
            "merges": [{"a": a, "b": b, "mean_cos": float(c)} for a, b, c in clustering.merges],
            "between_cluster_cos": {f"{x + 1}-{y + 1}": v for (x, y), v in clustering.between.items()},
        }
        doc["suggested_levels"] = [{"spec": s.spec, "note": s.note} for s in suggestions]
    out.mkdir(parents=True, exist_ok=True)
    import yaml

    atomic_write_text(out / "config.yaml", yaml.safe_dump({k: v for k, v in vars(args).items() if k != "config"},
                                                         sort_keys=True, allow_unicode=True))
    atomic_write_text(out / "conflict.json", json.dumps(doc, indent=1, ensure_ascii=False) + "\n")
    plot_cosine_heatmap(result, out / "cosine_heatmap.png")
    plot_layer_heatmap(result, out / "layer_heatmaps.png", primary)
    clusters = clustering.clusters if clustering is not None else []
    plot_cluster_scatter(result.cos[primary][WHOLE], names, clusters, out / "cluster_scatter.png",
                         "Objectives by gradient direction: " + MODE_TITLES[primary].format(n=result.num_batches), ssl_name)
    atomic_write_text(out / "conflict.md", markdown_summary(result, settings, clusters or None,
                                                            suggestions if args.suggest_levels else None))
    scores = result.layer_scores(primary)
    ranking = result.layer_ranking(primary)
    log.info("most conflicting layers (%s): %s", primary, ", ".join(f"{l} {scores[l]:+.3f}" for l in ranking[:3]))
    if args.suggest_levels:
        if not suggestions:
            raise DataError("--suggest-levels needs at least one supervised objective")
        atomic_write_text(out / "suggested_levels.txt", "".join(s.spec + "\n" for s in suggestions))
        print(f"clusters of supervised objectives (threshold {args.threshold:g}, at most {args.max_groups}):")
        for i, g in enumerate(clusters, 1):
            print(f"  cluster {i}: {', '.join(g)}")
        for (x, y), v in clustering.between.items():
            print(f"  mean cosine cluster {x + 1} / cluster {y + 1}: {v:+.3f}")
        print("suggested --levels (first = recommended):")
        for s in suggestions:
            print(f"  {s.spec:<40s} # {s.note}")
        log.info("wrote %s", out / "suggested_levels.txt")
    whole = result.cos[primary][WHOLE]
    log.info("whole-backbone cosine (%s):\n%s", primary, "\n".join(
        f"  {n:>10s} " + " ".join(f"{v:+.2f}" if np.isfinite(v) else "  n/a" for v in whole[i]) for i, n in enumerate(names)))
    log.info("wrote %s/{conflict.json,conflict.md,cosine_heatmap.png,layer_heatmaps.png,cluster_scatter.png}", out)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    out = Path(args.out) if args.out else Path(args.exp_dir) / "conflict"
    # No log file (and no output dir) inside an experiment dir that does not exist.
    setup_logging(args.verbose, out / "conflict.log" if Path(args.exp_dir).is_dir() else None)
    log.info("command: %s", " ".join(sys.argv if argv is None else ["osoup-conflict", *argv]))
    try:
        return run(args)
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
