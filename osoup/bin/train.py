"""osoup-train: train a multi-head Conformer with one of the objective-soup recipes.

    osoup-train --config conf/train_vm.yaml --exp-dir exp/vm_uas --recipe vm --levels "asr>st>ssl"

Options can come from a YAML config (``--config``); the resolved configuration is written to
``<exp-dir>/config.yaml``. ``--resume`` continues from ``<exp-dir>/latest.pt``.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import fields
from pathlib import Path

import configargparse

from osoup.fileio import DataError, atomic_write_text, setup_logging


def _kv_floats(s: str) -> dict[str, float]:
    """``"en:0.18,fr:0.19"`` -> {"en": 0.18, "fr": 0.19}."""
    out = {}
    for item in filter(None, (x.strip() for x in s.replace(" ", ",").split(","))):
        k, sep, v = item.partition(":")
        if not sep:
            raise configargparse.ArgumentTypeError(f"expected lang:value, got {item!r}")
        out[k] = float(v)
    return out


def _kv_any(s: str) -> dict:
    """``"temperature:2,window:50"`` -> {"temperature": 2, "window": 50} (YAML scalars)."""
    import yaml

    out = {}
    for item in filter(None, (x.strip() for x in s.split(","))):
        k, sep, v = item.partition(":")
        if not sep:
            raise configargparse.ArgumentTypeError(f"expected name:value, got {item!r}")
        out[k] = yaml.safe_load(v)
    return out


def _floats(s: str) -> list[float]:
    return [float(x) for x in s.replace(",", " ").split()]


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(
        description=__doc__,
        config_file_parser_class=configargparse.YAMLConfigFileParser,
        formatter_class=configargparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--exp-dir", required=True, help="experiment directory")
    p.add_argument("--resume", action="store_true",
                   help="continue from <exp-dir>/latest.pt if present (an unreadable one: the newest readable checkpoint)")
    g = p.add_argument_group("data")
    g.add_argument("--dump-dir", default="dump", help="root of dumped features (dump/asr, dump/st, dump/fbank)")
    g.add_argument("--token-dir", default="data/token", help="root of tokenizers (asr_<lang>, st_en)")
    g.add_argument("--asr-langs", default="", help="space-separated ASR languages")
    g.add_argument("--st-langs", default="", help="space-separated translation source languages (→ en)")
    g.add_argument("--ssl", default="cpc", choices=["cpc", "bestrq", "none"], help="self-supervised objective")
    g.add_argument("--ssl-sets", default="", help="data sets (under dump/fbank) for SSL; default: every train set")
    g.add_argument("--train-split", default="train")
    g.add_argument("--dev-split", default="dev")
    g.add_argument("--max-frames", type=int, default=12000, help="padded feature frames per objective batch")
    g.add_argument("--max-utts", type=int, default=64, help="utterances per objective batch")
    g.add_argument("--upsample", type=_kv_floats, default={}, help="per-language upsampling for the epoch length, e.g. ca:4,es:4,fr:2,de:2")
    g.add_argument("--cache-feats", type=lambda s: s.lower() in ("1", "true", "yes"), default=True, help="keep features in memory")
    g = p.add_argument_group("model")
    g.add_argument("--model-size", default="tiny", help="tiny | 58m | 100m (osoup.nets.configs)")
    g.add_argument("--conv-norm", default=None, choices=[None, "batch", "layer"], help="norm in the convolution module")
    g.add_argument("--dropout", type=float, default=None)
    g.add_argument("--specaug", type=lambda s: s.lower() in ("1", "true", "yes"), default=True, help="SpecAugment on supervised batches")
    g.add_argument("--cmvn", default=None, help="global CMVN json (default: <dump-dir>/fbank/global_cmvn.json)")
    g = p.add_argument_group("optimisation")
    g.add_argument("--recipe", default="vm", help="vs | vc | vm | joint | two_stage | two_stage_static | peft")
    g.add_argument("--levels", default="asr>st>ssl", help="vm hierarchy, highest priority first, e.g. 'asr>st>ssl', 'en>zh>ssl'")
    g.add_argument("--epochs", type=int, default=200)
    g.add_argument("--pretrain-epochs", type=int, default=100, help="two_stage/peft: SSL pre-training epochs")
    g.add_argument("--finetune-epochs", type=int, default=0, help="two_stage/peft: fine-tuning epochs (0: --epochs)")
    g.add_argument("--steps-per-epoch", type=int, default=0, help="0: enough for the largest objective's data")
    g.add_argument("--lr-backbone", type=float, default=5e-4, help="α")
    g.add_argument("--lr-heads", type=float, default=5e-5, help="β")
    g.add_argument("--weight-decay", type=float, default=0.01)
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument("--scheduler", default="plateau", choices=["plateau", "step", "none"])
    g.add_argument("--pretrain-scheduler", default="step", choices=["plateau", "step", "none"])
    g.add_argument("--step-size", type=int, default=20)
    g.add_argument("--plateau-patience", type=int, default=10)
    g.add_argument("--grad-clip", type=float, default=5.0)
    g.add_argument("--accum-grad", type=int, default=1)
    g.add_argument("--gamma", type=float, default=0.01, help="MoDo λ step size")
    g.add_argument("--rho", type=float, default=0.0, help="MoDo regulariser (0 = the paper)")
    g.add_argument("--gram-normalize", default="none", choices=["none", "mean-diag"])
    g.add_argument("--gram-params", default="shared", choices=["shared", "all"])
    g.add_argument("--weighting", default="modo",
                   help="weighting inside each multi-objective level: modo mgda pcgrad cagrad imtl_g aligned_mtl "
                        "upgrad nash_mtl uncertainty dwa")
    g.add_argument("--weighting-opts", type=_kv_any, default={}, help="its options, e.g. 'temperature:2,window:50'")
    g.add_argument("--moo-layers", type=float, default=0,
                   help="layer selection: the k most conflicting layers (k >= 1) or a fraction (< 1); 0 = all layers")
    g.add_argument("--conflict-interval", type=int, default=50, help="steps between conflict probes (layer selection)")
    g.add_argument("--probe-coords", type=int, default=0,
                   help="layer selection: a probe scores the other layer groups on CountSketches of this many "
                        "buckets per group (less probe memory; see bench/probe_fidelity.py); 0 = every coordinate")
    g.add_argument("--penalty-init", type=_floats, default=[], help="η init per penalised level (defaults per recipe)")
    g.add_argument("--penalty-rate", type=_floats, default=[], help="η rate per epoch per level (paper: 0.02)")
    g.add_argument("--penalty-cap", type=_floats, default=[], help="η cap per level (paper: 1.5)")
    g.add_argument("--penalty-scale-epochs", type=int, default=200,
                   help="rates are multiplied by this / epochs, so caps are reached at the paper's fraction of training")
    g.add_argument("--static-weights", type=_kv_floats, default=None, help="two_stage_static μ per language")
    g.add_argument("--peft-sets", default="asr>st", help="peft: head sets fine-tuned one after another")
    g = p.add_argument_group("run")
    g.add_argument("--seed", type=int, default=1)
    g.add_argument("--keep-last", type=int, default=5)
    g.add_argument("--average-last", type=int, default=0)
    g.add_argument("--log-interval", type=int, default=10)
    g.add_argument("--max-skips", type=int, default=10,
                   help="a step with a non-finite loss or gradient is skipped; stop after this many in a row")
    g.add_argument("--save-every-steps", type=int, default=0,
                   help="also write latest.pt every N steps (0: at the end of each epoch only)")
    g.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    g.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                   help="mixed precision of the forward passes (fp16: with a dynamic loss scale); per-objective "
                        "gradients, Gramians and λ stay fp32")
    g.add_argument("--threads", type=int, default=0, help="torch threads (0: torch default)")
    g.add_argument("--verbose", type=int, default=1)
    g = p.add_argument_group("data parallelism (docs/distributed.md)")
    g.add_argument("--dist-timeout", type=float, default=1800.0,
                   help="under torchrun: seconds a collective may wait for the other ranks before the job fails")
    g.add_argument("--simulate-ranks", type=int, default=0,
                   help="single process: each step draws what N torchrun ranks would draw together (their halves "
                        "concatenated rank by rank); a reference for checking a multi-process run")
    g.add_argument("--trace", action="store_true", help="write per-step losses and λ to <exp-dir>/trace*.jsonl")
    return p


def build_model_conf(args, specs) -> dict:
    import torch

    from osoup.nets.configs import MODEL_CONFIGS
    from osoup.text.tokenizer import Tokenizer

    if args.model_size not in MODEL_CONFIGS:
        raise DataError(f"unknown --model-size {args.model_size!r}; choose one of {', '.join(MODEL_CONFIGS)}")
    enc = dict(MODEL_CONFIGS[args.model_size])
    if args.conv_norm:
        enc["conv_norm"] = args.conv_norm
    if args.dropout is not None:
        enc["dropout"] = args.dropout
    heads = {s.name: Tokenizer(s.token_dir).vocab_size for s in specs if s.task != "ssl"}
    cmvn_path = Path(args.cmvn) if args.cmvn else Path(args.dump_dir) / "fbank" / "global_cmvn.json"
    if not cmvn_path.is_file():
        raise DataError(f"{cmvn_path}: global CMVN statistics not found (stage 4 writes them)")
    stats = json.loads(cmvn_path.read_text(encoding="utf-8"))
    cmvn = (torch.tensor(stats["mean"], dtype=torch.float32), torch.tensor(stats["std"], dtype=torch.float32))
    ssl = None if args.ssl == "none" else args.ssl
    return {
        "encoder_conf": enc,
        "head_vocab": heads,
        "ssl": ssl,
        "ssl_conf": None,
        "cmvn": cmvn,
        "specaug_conf": {} if args.specaug else None,
        "token_dirs": {s.name: str(Path(s.token_dir).resolve()) for s in specs if s.token_dir is not None},
    }


def build_trainer(args, dist=None):
    """The :class:`~osoup.train.trainer.Trainer` of parsed ``args`` (objectives, model config,
    resolved config written to the experiment dir). Tests call it to train in-process."""
    import yaml

    from osoup.data.objectives import build_objectives
    from osoup.train.trainer import TrainConfig, Trainer

    exp = Path(args.exp_dir)
    specs = build_objectives(
        args.dump_dir, args.token_dir, args.asr_langs.split(), args.st_langs.split(),
        None if args.ssl == "none" else args.ssl, args.ssl_sets.split() or None, args.train_split, args.dev_split,
    )
    names = {f.name for f in fields(TrainConfig)}
    cfg_kwargs = {k: v for k, v in vars(args).items() if k in names and v is not None}
    cfg = TrainConfig(**cfg_kwargs)
    model_conf = build_model_conf(args, specs)
    token_dirs = model_conf.pop("token_dirs")
    resolved = {k: v for k, v in vars(args).items() if k != "config"}
    if dist is None or dist.is_main:
        atomic_write_text(exp / "config.yaml", yaml.safe_dump(resolved, sort_keys=True, allow_unicode=True))
        atomic_write_text(exp / "objectives.json", json.dumps(
            {"objectives": [s.name for s in specs], "token_dirs": token_dirs,
             "encoder_conf": model_conf["encoder_conf"], "ssl": model_conf["ssl"]}, indent=1))
    return Trainer(cfg, specs, model_conf, exp, dist=dist)


def main(argv: list[str] | None = None) -> int:
    parser = get_parser()
    args = parser.parse_args(argv)
    exp = Path(args.exp_dir)
    exp.mkdir(parents=True, exist_ok=True)
    from osoup.train.distributed import init_distributed, launched_by_torchrun, shutdown

    rank = int(os.environ.get("RANK", "0")) if launched_by_torchrun() else 0
    # under torchrun: rank 0 logs to train.log (and the console), the others to train.rank<r>.log
    setup_logging(args.verbose if rank == 0 else min(args.verbose, 0), exp / ("train.log" if rank == 0 else f"train.rank{rank}.log"))
    log = logging.getLogger("osoup-train")
    log.info("command: %s", " ".join(sys.argv if argv is None else ["osoup-train", *argv]))
    dist = None
    try:
        dist, args.device = init_distributed(args.device, args.dist_timeout)
        trainer = build_trainer(args, dist)
        summary = trainer.run(resume=args.resume)
        log.info("done: %d epochs, best dev score %.4f, %d skipped steps", summary["epochs"], summary["best_dev"], summary["skipped_steps"])
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    except RuntimeError as e:
        from osoup.train.trainer import TrainingStopped

        if not isinstance(e, TrainingStopped):
            raise
        log.error("%s", e)
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    finally:
        if dist is not None:
            shutdown(dist)
    return 0


if __name__ == "__main__":
    sys.exit(main())
