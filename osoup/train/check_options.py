"""Check the options of ``osoup-train`` before any data is read.

Each problem is one DataError naming the option, its value, where the value came from (the
command line or the YAML config file) and what is allowed: unknown keys of the config file, a
value of the wrong type or out of range (:data:`osoup.train.options.OPTIONS`), a ``--levels``
or ``--peft-sets`` token that selects no objective, ``--moo-layers`` beyond the model's layer
groups, a backbone checkpoint dir that is missing or incomplete, an SSL objective the backbone
cannot run, and an option the chosen method does not use (an error when given on the command line;
a warning when it comes from a config file, since recipes share one config between methods).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from osoup.data.objectives import objective_names
from osoup.fileio import DataError
from osoup.moo import parse_levels
from osoup.nets.model import SSL_OBJECTIVE
from osoup.train.options import BY_NAME, OPTIONS, Option, add_options, config_keys, convert, violates
from osoup.train.phases import plan_phases, task_group


def _config_path(argv: Sequence[str]) -> str | None:
    pre = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    pre.add_argument("--config")
    return pre.parse_known_args(list(argv))[0].config


def config_file_options(argv: Sequence[str]) -> tuple[str | None, set[str]]:
    """The ``--config`` file named in ``argv`` and the options it sets; an unknown key or a
    file that is not a YAML mapping is a DataError naming the file."""
    import yaml

    path = _config_path(argv)
    if path is None:
        return None, set()
    if not Path(path).is_file():
        raise DataError(f"--config {path}: file not found")
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as e:
        raise DataError(f"config file {path}: not valid YAML: {e}") from None
    if not isinstance(data, dict):
        raise DataError(f"config file {path}: expected a mapping of option: value, got {type(data).__name__}")
    keys = config_keys()
    unknown = [str(k) for k in data if str(k) not in keys]
    if unknown:
        raise DataError(f"config file {path}: unknown option {unknown[0]!r} (the keys are the long options of "
                        f"osoup-train --help, e.g. lr-backbone)")
    return path, {keys[str(k)] for k in data}


def command_line_options(argv: Sequence[str]) -> set[str]:
    """The options that ``argv`` itself sets (whatever spelling or alias)."""
    p = argparse.ArgumentParser(add_help=False, argument_default=argparse.SUPPRESS)
    p.add_argument("--config")
    p.add_argument("--exp-dir")
    p.add_argument("--resume", action="store_true")
    add_options(p, suppress_defaults=True)
    return set(vars(p.parse_known_args(list(argv))[0]))


class Origins:
    """Where each option's value came from, for messages."""

    def __init__(self, argv: Sequence[str]):
        self.config_path, self.from_config = config_file_options(argv)
        self.from_command_line = command_line_options(argv)

    def of(self, name: str) -> str:
        if name in self.from_command_line:
            return "command line"
        if name in self.from_config:
            return f"config file {self.config_path}"
        return "default"

    def explicit(self, name: str) -> bool:
        return name in self.from_command_line or name in self.from_config


def _bad(o: Option, value: Any, origin: str, why: str) -> DataError:
    shown = value if isinstance(value, str) and value and not any(c.isspace() for c in value) else repr(value)
    return DataError(f"{o.flag} {shown} ({origin}): {why}")


def convert_all(args: argparse.Namespace, origins: Origins) -> None:
    """Convert every option of ``args`` in place to its type, checking ranges and choices."""
    for o in OPTIONS:
        raw = getattr(args, o.name, o.default)
        try:
            value = convert(o, raw)
        except ValueError as e:
            raise _bad(o, raw, origins.of(o.name), f"{e}; expected {o.allowed()}") from None
        if violates(o, value):
            raise _bad(o, raw, origins.of(o.name), f"must be {o.allowed()}")
        setattr(args, o.name, value)


def _unused_by_method(args: argparse.Namespace, origins: Origins) -> list[str]:
    warnings = []
    for o in OPTIONS:
        if o.methods is None or args.method in o.methods or not origins.explicit(o.name):
            continue
        msg = f"{o.flag} ({origins.of(o.name)}) is not used by method {args.method} (only by {', '.join(o.methods)})"
        if o.name in origins.from_command_line:
            raise DataError(msg + "; remove it")
        warnings.append(msg + "; ignored")
    return warnings


def _layer_groups(args: argparse.Namespace) -> tuple[int, str]:
    """Number of layer groups of the backbone (``layer_groups()``) and what they are, in words."""
    if args.backbone == "hf_wav2vec2":
        from osoup.nets.backbones.hf_checkpoint import read_config

        n_layers = int(read_config(args.backbone_dir)["num_hidden_layers"])
        low = "feature projection" if args.freeze_feature_encoder else "feature encoder + feature projection"
        return n_layers + (1 if args.freeze_feature_encoder else 2), f"{low} + {n_layers} transformer layers"
    from osoup.nets.configs import MODEL_CONFIGS

    n_blocks = MODEL_CONFIGS[args.model_size]["n_blocks"]
    return n_blocks + 1, f"model size {args.model_size}: front-end + {n_blocks} blocks"


def _check_moo_layers(args: argparse.Namespace, origins: Origins) -> None:
    k = args.moo_layers
    n_groups, what = _layer_groups(args)
    if k >= 1 and (k != int(k) or k > n_groups):
        raise _bad(BY_NAME["moo_layers"], f"{k:g}", origins.of("moo_layers"),
                   f"must be 0, a fraction in (0, 1), or a whole number of layer groups from 1 to {n_groups} "
                   f"({what})")


HF_ONLY = ("backbone_dir", "grad_checkpointing")
"""Options that only the hf_wav2vec2 backbone uses (an error with the conformer)."""


def _check_backbone(args: argparse.Namespace, origins: Origins) -> None:
    """--backbone-dir must be a complete checkpoint dir for hf_wav2vec2 (and transformers
    installed); the SSL objective must suit the backbone; --layer-lr-decay in (0, 1]."""
    if args.layer_lr_decay > 1:
        raise _bad(BY_NAME["layer_lr_decay"], f"{args.layer_lr_decay:g}", origins.of("layer_lr_decay"),
                   "must be in (0, 1] (1: off)")

    def bad_ssl(why: str) -> DataError:
        return _bad(BY_NAME["ssl"], args.ssl, origins.of("ssl"), why)

    if args.backbone == "conformer":
        for name in HF_ONLY:
            if origins.explicit(name) and getattr(args, name):
                raise _bad(BY_NAME[name], getattr(args, name), origins.of(name), "only used with --backbone hf_wav2vec2")
        if args.ssl == "w2v2":
            raise bad_ssl("w2v2 needs --backbone hf_wav2vec2 (a wav2vec2 checkpoint with a quantizer)")
        return
    from osoup.nets.backbones.hf_checkpoint import check_checkpoint_dir, read_config, require_transformers

    o = BY_NAME["backbone_dir"]
    if not args.backbone_dir:
        raise _bad(o, args.backbone_dir, origins.of("backbone_dir"), "required with --backbone hf_wav2vec2")
    try:
        require_transformers()
        model_type = read_config(check_checkpoint_dir(args.backbone_dir)).get("model_type")
    except DataError as e:
        raise _bad(o, args.backbone_dir, origins.of("backbone_dir"), str(e)) from None
    if args.ssl == "cpc":
        raise bad_ssl("cpc needs the conformer's causal mode; with hf_wav2vec2 use w2v2 (wav2vec2 checkpoints) "
                      "or bestrq")
    if args.ssl == "w2v2" and model_type != "wav2vec2":
        raise bad_ssl(f"w2v2 needs a wav2vec2 checkpoint with a quantizer; {args.backbone_dir} is {model_type} "
                      f"(use bestrq)")


def _check_objectives(args: argparse.Namespace, origins: Origins) -> list[str]:
    """--levels against the objectives, the method's phases; warnings for --task-weights
    groups without objectives."""
    names = objective_names(args.asr_langs.split(), args.st_langs.split(), None if args.ssl == "none" else args.ssl)
    if args.method == "vm" and len(names) >= 2:
        try:
            parse_levels(args.levels, names, SSL_OBJECTIVE)
        except ValueError as e:
            raise _bad(BY_NAME["levels"], args.levels, origins.of("levels"), str(e)) from None
    if names:
        plan_phases(args, names)
    idle = [g for g in args.task_weights if args.method == "joint" and g not in {task_group(n) for n in names}]
    return [f"--task-weights ({origins.of('task_weights')}): task group {g} has no objective in this run; its "
            f"weight is not used" for g in idle]


def _check_init_from(args: argparse.Namespace, origins: Origins) -> None:
    """--init-from must name an existing file; it is kept resolved (config.yaml records that
    path, which osoup-soup compares to tell whether runs share an initialisation).
    --init-new-heads only means something with --init-from and --init-heads true."""
    if args.init_new_heads and not (args.init_from is not None and args.init_heads):
        raise _bad(BY_NAME["init_new_heads"], args.init_new_heads, origins.of("init_new_heads"),
                   "needs --init-from FILE and --init-heads true (it names heads NOT to load)")
    if args.init_from is None:
        return
    path = Path(args.init_from).expanduser()
    if not path.is_file():
        raise _bad(BY_NAME["init_from"], args.init_from, origins.of("init_from"),
                   "file not found (a model file of another experiment, e.g. exp/two_stage/pretrain.pt)")
    args.init_from = str(path.resolve())


def _check_num_workers(args: argparse.Namespace, origins: Origins) -> None:
    """--num-workers: ``auto`` (resolved by device when training starts) or a count >= 0."""
    from osoup.train.prefetch import parse_num_workers

    try:
        args.num_workers = parse_num_workers(args.num_workers)
    except ValueError as e:
        raise _bad(BY_NAME["num_workers"], args.num_workers, origins.of("num_workers"), str(e)) from None


def _check_dev_every(args: argparse.Namespace, origins: Origins) -> None:
    """The plateau schedule steps on every epoch's dev score: it needs --dev-every 1."""
    plateau = [n for n in ("scheduler", "pretrain_scheduler") if getattr(args, n) == "plateau"
               and (BY_NAME[n].methods is None or args.method in BY_NAME[n].methods)]
    if args.dev_every != 1 and plateau:
        raise _bad(BY_NAME["dev_every"], args.dev_every, origins.of("dev_every"),
                   f"--{plateau[0].replace('_', '-')} plateau ({origins.of(plateau[0])}) reads the dev score "
                   f"after every epoch: use --dev-every 1 or another schedule")


def check_options(args: argparse.Namespace, argv: Sequence[str]) -> list[str]:
    """Convert and check the parsed ``args`` of ``argv`` in place (before any data is read).
    Returns warnings to log; raises DataError on the first problem."""
    origins = Origins(argv)
    convert_all(args, origins)
    _check_num_workers(args, origins)
    warnings = _unused_by_method(args, origins)
    _check_backbone(args, origins)
    _check_moo_layers(args, origins)
    warnings += _check_objectives(args, origins)
    _check_init_from(args, origins)
    _check_dev_every(args, origins)
    return warnings
