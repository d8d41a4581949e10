"""osoup-train: train a multi-head Conformer with one of the training methods (vs vc vm joint
two_stage two_stage_static peft).

    osoup-train --config conf/train.yaml --exp-dir exp/vm_uas --method vm --levels "asr>st>ssl"

Options can come from a YAML config (``--config``); ``--recipe`` is an old name of
``--method``. Every option is checked (type, range, method) before anything is read or
written; the resolved configuration is written to ``<exp-dir>/config.yaml``. ``--resume``
continues from ``<exp-dir>/latest.pt``. ``--init-from FILE`` starts a fresh run from another
experiment's model file (``osoup.train.init_from``), e.g. the ``pretrain.pt`` that two_stage
writes when its SSL pre-training ends::

    osoup-train --config conf/train.yaml --exp-dir exp/ft_vm_uas --method vm --init-from exp/two_stage/pretrain.pt
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

import configargparse

from osoup import expdir
from osoup.fileio import DataError, atomic_write_text, setup_logging


def get_parser() -> configargparse.ArgumentParser:
    """The command's parser: ``--config``/``--exp-dir``/``--resume`` and every option of
    :data:`osoup.train.options.OPTIONS` (values stay strings until :func:`parse_args` checks them)."""
    from osoup.train.options import add_options

    p = configargparse.ArgumentParser(
        description=__doc__,
        config_file_parser_class=configargparse.YAMLConfigFileParser,
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", is_config_file=True, help="YAML config file (keys: the long options below)")
    p.add_argument("--exp-dir", required=True, help="experiment directory")
    p.add_argument("--resume", action="store_true",
                   help="continue from <exp-dir>/latest.pt if present (an unreadable one: the newest readable checkpoint)")
    add_options(p)
    return p


def parse_args(argv: list[str]) -> tuple[configargparse.Namespace, list[str]]:
    """Parsed, converted and checked options of ``argv``, and warnings to log. Raises
    DataError (naming the option, its value and its source) before any data is read."""
    from osoup.train.check_options import check_options, config_file_options

    config_file_options(argv)  # unknown config keys: our message, not argparse's
    args = get_parser().parse_args(argv)
    return args, check_options(args, argv)


def _global_cmvn(args: configargparse.Namespace) -> tuple:
    """Global CMVN (mean, std) tensors of --cmvn or <dump-dir>/fbank/global_cmvn.json."""
    import torch

    cmvn_path = Path(args.cmvn) if args.cmvn else Path(args.dump_dir) / "fbank" / "global_cmvn.json"
    if not cmvn_path.is_file():
        raise DataError(f"{cmvn_path}: global CMVN statistics not found (stage 4 writes them)")
    stats = json.loads(cmvn_path.read_text(encoding="utf-8"))
    return torch.tensor(stats["mean"], dtype=torch.float32), torch.tensor(stats["std"], dtype=torch.float32)


def build_model_conf(args: configargparse.Namespace, specs: list) -> dict:
    """The SoupModel keyword arguments of ``args``: encoder size, one head per supervised
    objective (its tokenizer's vocabulary), the SSL module, global CMVN, SpecAugment."""
    from osoup.nets.configs import MODEL_CONFIGS
    from osoup.nets.model import SSL_OBJECTIVE
    from osoup.text.tokenizer import Tokenizer

    heads = {s.name: Tokenizer(s.token_dir).vocab_size for s in specs if s.name != SSL_OBJECTIVE}
    if args.backbone == "hf_wav2vec2":  # raw waveforms: per-utterance normalisation, no global CMVN
        from osoup.nets.backbones import hf_encoder_conf

        enc = hf_encoder_conf(args.backbone_dir, args.freeze_feature_encoder, args.grad_checkpointing)
        cmvn = None
    else:
        if args.model_size not in MODEL_CONFIGS:
            raise DataError(f"unknown --model-size {args.model_size!r}; choose one of {', '.join(MODEL_CONFIGS)}")
        enc = dict(MODEL_CONFIGS[args.model_size])
        if args.conv_norm:
            enc["conv_norm"] = args.conv_norm
        if args.dropout is not None:
            enc["dropout"] = args.dropout
        cmvn = _global_cmvn(args)
    return {
        "encoder_conf": enc,
        "head_vocab": heads,
        "ssl": None if args.ssl == "none" else args.ssl,
        "ssl_conf": None,
        "cmvn": cmvn,
        "specaug_conf": {} if args.specaug else None,
        "head_layers": {s.name: args.st_head_layers for s in specs if s.task == "st" and args.st_head_layers},
        "token_dirs": {s.name: str(Path(s.token_dir).resolve()) for s in specs if s.token_dir is not None},
    }


def build_trainer(args: configargparse.Namespace, dist=None):
    """The :class:`~osoup.train.trainer.Trainer` of parsed ``args`` (objectives, model config,
    resolved config written to the experiment dir). Tests call it to train in-process; options
    that are still strings (``get_parser().parse_args``) are converted and checked here."""
    import yaml

    from osoup.data.objectives import build_objectives
    from osoup.train.check_options import check_options
    from osoup.train.trainer import TrainConfig, Trainer

    check_options(args, [])  # a no-op on options parse_args already converted
    exp = Path(args.exp_dir)
    specs = build_objectives(
        args.dump_dir, args.token_dir, args.asr_langs.split(), args.st_langs.split(),
        None if args.ssl == "none" else args.ssl, args.ssl_sets.split() or None, args.train_split, args.dev_split,
        args.st_units,
    )
    cfg = TrainConfig(**{f.name: getattr(args, f.name) for f in fields(TrainConfig)})
    model_conf = build_model_conf(args, specs)
    token_dirs = model_conf.pop("token_dirs")
    resolved = {k: v for k, v in vars(args).items() if k != "config"}
    if dist is None or dist.is_main:
        exp.mkdir(parents=True, exist_ok=True)
        atomic_write_text(exp / expdir.CONFIG, yaml.safe_dump(resolved, sort_keys=True, allow_unicode=True))
        atomic_write_text(exp / expdir.OBJECTIVES, json.dumps(
            {"objectives": [s.name for s in specs], "token_dirs": token_dirs,
             "encoder_conf": model_conf["encoder_conf"], "ssl": model_conf["ssl"]}, indent=1))
    return Trainer(cfg, specs, model_conf, exp, dist=dist)


def _train(args: configargparse.Namespace, warnings: list[str], argv: list[str]) -> int:
    from osoup.fileio import os_error_message
    from osoup.train.distributed import init_distributed, launched_by_torchrun, shutdown
    from osoup.train.trainer import TrainingStopped

    exp = Path(args.exp_dir)
    rank = int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0
    try:
        exp.mkdir(parents=True, exist_ok=True)
        # under torchrun: rank 0 logs to train.log (and the console), the others to train.rank<r>.log
        setup_logging(args.verbose if rank == 0 else min(args.verbose, 0), exp / expdir.train_log_name(rank))
    except OSError as e:
        print(f"ERROR: {os_error_message(e)}", file=sys.stderr)
        return 1
    log = logging.getLogger("osoup-train")
    log.info("command: %s", " ".join(["osoup-train", *argv]))
    for w in warnings:
        log.warning("%s", w)
    dist = None
    try:
        dist, args.device = init_distributed(args.device, args.dist_timeout)
        summary = build_trainer(args, dist).run(resume=args.resume)
        log.info("done: %d epochs, best dev score %.4f, %d skipped steps", summary["epochs"], summary["best_dev"],
                 summary["skipped_steps"])
    except (DataError, TrainingStopped, OSError) as e:
        msg = os_error_message(e) if isinstance(e, OSError) else str(e)
        if not isinstance(e, DataError):
            log.error("%s", msg)
        print(f"ERROR: {msg}", file=sys.stderr)
        return 1
    finally:
        if dist is not None:
            shutdown(dist)
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # every option is checked before the experiment dir is created or any data is read
        args, warnings = parse_args(argv)
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return _train(args, warnings, argv)


if __name__ == "__main__":
    sys.exit(main())
