"""Every option of ``osoup-train``, declared once: name, type, default, valid range or choices,
help text, and which training methods use it.

From this one table come the :class:`TrainConfig` dataclass (the options the training loop
reads), the command's configargparse parser (``osoup-train --help``), and the conversion and
range checks of :mod:`osoup.train.check_options`. The parser keeps every value as the string the
user wrote (command line or YAML config); conversion happens in one place, so that a bad value
gets one error naming the option, the value and where it came from.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Callable

import configargparse

from osoup.moo import WEIGHTINGS
from osoup.train.phases import PHASED_METHODS, TRAIN_METHODS

PAPER_STATIC_WEIGHTS = {"en": 0.18, "fr": 0.19, "de": 0.27, "es": 0.16, "ca": 0.20}
"""two_stage_static's fixed per-language weights μ (paper appendix D.2)."""

MODO_METHODS = ("vs", "vc", "vm")
PENALISED = ("vc", "vm", "joint")


@dataclass(frozen=True)
class Option:
    """One option. ``kind``: int float str bool flag floats kv_floats kv_any (see
    :func:`convert`). Bounds apply to a number or to each number of a list or mapping;
    ``above`` is strict. ``methods``: the training methods that use it (None: all).
    ``config``: a :class:`TrainConfig` field (else a command-level option)."""

    name: str
    kind: str
    default: Any
    help: str
    group: str
    at_least: float | None = None
    above: float | None = None
    below: float | None = None
    choices: tuple | None = None
    methods: tuple[str, ...] | None = None
    config: bool = True
    aliases: tuple[str, ...] = ()
    optional: bool = False  # None allowed (and the default)

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def allowed(self) -> str:
        """What the option accepts, in words."""
        if self.choices is not None:
            return "one of " + ", ".join(str(c) for c in self.choices)
        parts = []
        if self.at_least is not None:
            parts.append(f">= {self.at_least:g}")
        if self.above is not None:
            parts.append(f"> {self.above:g}")
        if self.below is not None:
            parts.append(f"< {self.below:g}")
        what = {"int": "an integer", "float": "a number", "floats": "numbers", "kv_floats": "lang:number pairs",
                "kv_any": "name:value pairs", "bool": "true or false", "str": "a string", "flag": "a flag"}[self.kind]
        return what + (" " + " and ".join(parts) if parts else "")


def _o(name: str, kind: str, default: Any, help: str, group: str, **kw: Any) -> Option:
    return Option(name, kind, default, help, group, **kw)


SCHEDULERS = ("plateau", "step", "cosine", "none")

OPTIONS: tuple[Option, ...] = (
    # -- data ----------------------------------------------------------------------------------
    _o("dump_dir", "str", "dump", "root of dumped features (dump/asr, dump/st, dump/fbank)", "data", config=False),
    _o("token_dir", "str", "data/token", "root of tokenizers (asr_<lang>, st_en)", "data", config=False),
    _o("asr_langs", "str", "", "space-separated ASR languages", "data", config=False),
    _o("st_langs", "str", "", "space-separated translation source languages (→ en)", "data", config=False),
    _o("ssl", "str", "cpc", "self-supervised objective (cpc: conformer only; w2v2: wav2vec 2.0's contrastive loss, "
       "hf_wav2vec2 with a wav2vec2 checkpoint; docs/backbones.md)", "data", choices=("cpc", "bestrq", "w2v2", "none"),
       config=False),
    _o("st_units", "str", "", "units of the translation targets: read dump/st_<UNITS> and <token-dir>/st_en_<UNITS> "
       "(asr.sh --st-units-phase2 writes them, e.g. unigram300); empty: dump/st and st_en", "data", config=False),
    _o("ssl_sets", "str", "", "data sets (under dump/fbank) for SSL; default: every train set", "data", config=False),
    _o("train_split", "str", "train", "name of the training split of the data dirs", "data", config=False),
    _o("dev_split", "str", "dev", "name of the validation split of the data dirs", "data", config=False),
    _o("max_frames", "int", 12000, "padded feature frames per objective batch", "data", at_least=1),
    _o("max_utts", "int", 64, "utterances per objective batch (double sampling needs 2)", "data", at_least=2),
    _o("upsample", "kv_floats", {}, "per-language upsampling for the epoch length, e.g. ca:4,es:4,fr:2,de:2",
       "data", above=0),
    _o("cache_feats", "bool", True, "keep features in memory", "data"),
    # -- model ---------------------------------------------------------------------------------
    _o("model_size", "str", "tiny", "encoder size (osoup.nets.configs)", "model", choices=("tiny", "58m", "100m"),
       config=False),
    _o("conv_norm", "str", None, "norm in the convolution module (default: the model size's)", "model",
       choices=("batch", "layer"), config=False, optional=True),
    _o("dropout", "float", None, "dropout of the encoder (default: the model size's)", "model", at_least=0, below=1,
       config=False, optional=True),
    _o("st_head_layers", "int", 0, "Transformer layers of each translation head before its CTC projection (0: the "
       "paper's linear head)", "model", at_least=0, config=False),
    _o("specaug", "bool", True, "SpecAugment on supervised batches", "model", config=False),
    _o("cmvn", "str", None, "global CMVN json (default: <dump-dir>/fbank/global_cmvn.json)", "model", config=False,
       optional=True),
    _o("backbone", "str", "conformer", "shared encoder: osoup's Conformer on fbank, or a pretrained wav2vec 2.0 / "
       "XLS-R / HuBERT / WavLM checkpoint on raw 16 kHz waveforms (docs/backbones.md)", "model",
       choices=("conformer", "hf_wav2vec2"), config=False),
    _o("backbone_dir", "str", None, "hf_wav2vec2: local checkpoint dir (config.json and model.safetensors or "
       "pytorch_model.bin)", "model", config=False, optional=True),
    _o("freeze_feature_encoder", "bool", True, "hf_wav2vec2: keep the CNN feature encoder fixed", "model",
       config=False),
    _o("grad_checkpointing", "bool", False, "hf_wav2vec2: recompute transformer activations in backward (less "
       "memory, about a third more compute)", "model", config=False),
    _o("layer_lr_decay", "float", 1.0, "layer-wise learning-rate decay of the backbone: the top layer group gets "
       "the backbone's rate, each group below this factor times the one above (1: off)", "model", above=0),
    # -- optimisation --------------------------------------------------------------------------
    _o("method", "str", "vm", "training method: how the objectives are combined (docs/design.md)", "optimisation",
       choices=TRAIN_METHODS, aliases=("recipe",)),
    _o("levels", "str", "asr>st>ssl", "vm hierarchy, highest priority first, e.g. 'asr>st>ssl', 'en>zh>ssl'",
       "optimisation", methods=("vm",)),
    _o("epochs", "int", 200, "training epochs (two_stage/peft: fine-tuning epochs unless --finetune-epochs)",
       "optimisation", at_least=1),
    _o("pretrain_epochs", "int", 100, "two_stage/peft: SSL pre-training epochs", "optimisation", at_least=0,
       methods=PHASED_METHODS),
    _o("finetune_epochs", "int", 0, "two_stage/peft: fine-tuning epochs (0: --epochs)", "optimisation", at_least=0,
       methods=PHASED_METHODS),
    _o("steps_per_epoch", "int", 0, "steps per epoch; 0: enough for the largest objective's data", "optimisation",
       at_least=0),
    _o("lr_backbone", "float", 5e-4, "α, learning rate of the shared backbone", "optimisation", above=0),
    _o("lr_heads", "float", 5e-5, "β, learning rate of the heads (and of the backbone when fine-tuning)",
       "optimisation", above=0),
    _o("weight_decay", "float", 0.01, "AdamW weight decay", "optimisation", at_least=0),
    _o("warmup_steps", "int", 0, "linear learning-rate warm-up over the first steps of each phase", "optimisation",
       at_least=0),
    _o("scheduler", "str", "plateau", "learning-rate schedule (MOO methods and fine-tuning)", "optimisation",
       choices=SCHEDULERS),
    _o("pretrain_scheduler", "str", "step", "learning-rate schedule of SSL pre-training", "optimisation",
       choices=SCHEDULERS, methods=PHASED_METHODS),
    _o("step_size", "int", 20, "step schedule: ×0.1 every this many epochs", "optimisation", at_least=1),
    _o("plateau_patience", "int", 10, "plateau schedule: epochs without dev improvement before ×0.1",
       "optimisation", at_least=0),
    _o("grad_clip", "float", 5.0, "clip the backbone's combined gradient and each head's gradient to this norm "
       "(0: no clipping)", "optimisation", at_least=0),
    _o("accum_grad", "int", 1, "minibatches per objective accumulated into one step", "optimisation", at_least=1),
    _o("gamma", "float", 0.01, "MoDo λ step size", "optimisation", above=0, methods=MODO_METHODS),
    _o("rho", "float", 0.0, "MoDo regulariser (0 = the paper)", "optimisation", at_least=0, methods=MODO_METHODS),
    _o("gram_normalize", "str", "none", "Gramian normalisation before the λ step", "optimisation",
       choices=("none", "mean-diag"), methods=MODO_METHODS),
    _o("gram_params", "str", "shared", "parameters of the Gramian: the backbone, or all (adds the heads)",
       "optimisation", choices=("shared", "all"), methods=MODO_METHODS),
    _o("weighting", "str", "modo", "weighting inside each multi-objective level", "optimisation",
       choices=WEIGHTINGS, methods=MODO_METHODS),
    _o("weighting_opts", "kv_any", {}, "options of the weighting, e.g. 'temperature:2,window:50'", "optimisation",
       methods=MODO_METHODS),
    _o("moo_layers", "float", 0.0, "layer selection: the k most conflicting layer groups (k >= 1) or a fraction "
       "(< 1); 0 = all layers", "optimisation", at_least=0, methods=MODO_METHODS),
    _o("conflict_interval", "int", 50, "steps between conflict probes (layer selection)", "optimisation",
       at_least=1, methods=MODO_METHODS),
    _o("probe_coords", "int", 0, "layer selection: a probe scores the other layer groups on CountSketches of this "
       "many buckets per group (see bench/probe_fidelity.py); 0 = every coordinate", "optimisation", at_least=0,
       methods=MODO_METHODS),
    _o("moo_buffer_dtype", "str", "fp32", "storage of the per-objective gradient buffers (bf16 halves their memory; "
       "Gramians and λ stay fp32)", "optimisation", choices=("fp32", "bf16"), methods=MODO_METHODS),
    _o("penalty_init", "floats", [], "η init per penalised level (defaults per method)", "optimisation",
       at_least=0, methods=PENALISED),
    _o("penalty_rate", "floats", [], "η rate per epoch per level (paper: 0.02)", "optimisation", at_least=0,
       methods=PENALISED),
    _o("penalty_cap", "floats", [], "η cap per level (paper: 1.5)", "optimisation", at_least=0, methods=PENALISED),
    _o("penalty_scale_epochs", "int", 200, "rates are multiplied by this / epochs, so caps are reached at the "
       "paper's fraction of training", "optimisation", at_least=1, methods=PENALISED),
    _o("static_weights", "kv_floats", dict(PAPER_STATIC_WEIGHTS), "two_stage_static: μ per language",
       "optimisation", at_least=0, methods=("two_stage_static",)),
    _o("task_weights", "kv_floats", {}, "joint with fixed task-group weights instead of mean + η·SSL, e.g. "
       "asr:0.5,st:0.3,ssl:0.2: loss = Σ_group weight × mean of the group's losses (groups: asr st ssl; the "
       "static baseline, egs/TEMPLATE/asr.sh --methods static_sweep)", "optimisation", at_least=0,
       methods=("joint",)),
    _o("peft_sets", "str", "asr>st", "peft: head sets fine-tuned one after another", "optimisation",
       methods=("peft",)),
    # -- initialisation ------------------------------------------------------------------------
    _o("init_from", "str", None, "initialise a fresh run from this model file of another experiment (best.pt, "
       "latest.pt, checkpoint.N.pt, pretrain.pt: any file with 'model'): the backbone and the SSL module, the "
       "CTC heads too with --init-heads; recorded resolved in config.yaml; ignored on --resume with a "
       "checkpoint", "initialisation", optional=True),
    _o("init_heads", "bool", False, "with --init-from: also load the CTC heads this run shares with it",
       "initialisation"),
    _o("init_new_heads", "str", "", "with --init-from --init-heads true: heads that start fresh all the same, by "
       "objective (st_es) or task (st), comma-separated; e.g. a translation head whose units changed (char -> "
       "unigram), which would otherwise be refused for its shape", "initialisation"),
    # -- run -----------------------------------------------------------------------------------
    _o("seed", "int", 1, "random seed (model, batches, SSL draws)", "run", at_least=0),
    _o("keep_last", "int", 5, "epoch checkpoints kept", "run", at_least=0),
    _o("average_last", "int", 0, "average the last N epoch checkpoints into avgN.pt (0/1: none)", "run", at_least=0),
    _o("log_interval", "int", 10, "steps between progress lines", "run", at_least=1),
    _o("max_skips", "int", 10, "a step with a non-finite loss or gradient is skipped; stop after this many in a row",
       "run", at_least=1),
    _o("dev_every", "int", 1, "evaluate the dev set every N epochs of a phase and after its last epoch (0: after "
       "the last epoch only); best.pt is chosen among the evaluated epochs, and --scheduler plateau needs 1",
       "run", at_least=0),
    _o("save_every_steps", "int", 0, "also write latest.pt every N steps (0: at the end of each epoch only)", "run",
       at_least=0),
    _o("device", "str", "auto", "auto (cuda if available), cpu, cuda, cuda:1 ...", "run"),
    _o("amp", "str", "none", "mixed precision of the forward passes (fp16: with a dynamic loss scale); "
       "per-objective gradients (unless --moo-buffer-dtype bf16), Gramians and λ stay fp32", "run", choices=("none", "bf16", "fp16")),
    _o("threads", "int", 0, "torch threads (0: torch default)", "run", at_least=0),
    _o("num_workers", "str", "auto", "loader worker processes that read and pad batches ahead of the steps "
       "(0: in the training process); auto: 0 on CPU, 2 on CUDA; with --cache-feats each worker caches what it "
       "reads, so feature memory grows with the workers", "run"),
    _o("prefetch", "int", 2, "with --num-workers > 0: steps of input prepared ahead (at least one per worker)",
       "run", at_least=0),
    _o("verbose", "int", 1, "log level: 0 warnings, 1 info, 2 debug", "run", config=False),
    # -- data parallelism ----------------------------------------------------------------------
    _o("dist_timeout", "float", 1800.0, "under torchrun: seconds a collective may wait for the other ranks before "
       "the job fails", "data parallelism (docs/distributed.md)", above=0, config=False),
    _o("simulate_ranks", "int", 0, "single process: each step draws what N torchrun ranks would draw together "
       "(their halves concatenated rank by rank); a reference for checking a multi-process run",
       "data parallelism (docs/distributed.md)", at_least=0),
    _o("trace", "flag", False, "write per-step losses and λ to <exp-dir>/trace*.jsonl",
       "data parallelism (docs/distributed.md)"),
)
BY_NAME: dict[str, Option] = {o.name: o for o in OPTIONS}

_PY_TYPES = {"int": int, "float": float, "str": str, "bool": bool, "flag": bool, "floats": list,
             "kv_floats": dict, "kv_any": dict}


def _field(o: Option) -> tuple[str, Any, dataclasses.Field]:
    typ = _PY_TYPES[o.kind] | None if o.optional else _PY_TYPES[o.kind]
    default = o.default
    if isinstance(default, (list, dict)):
        return o.name, typ, dataclasses.field(default_factory=lambda d=default: type(d)(d))
    return o.name, typ, dataclasses.field(default=default)


TrainConfig = dataclasses.make_dataclass("TrainConfig", [_field(o) for o in OPTIONS if o.config])
TrainConfig.__module__ = __name__
TrainConfig.__doc__ = ("Every knob of the training loop, one field per option of :data:`OPTIONS` "
                       "(``osoup-train --help`` documents each).")


# -- conversion ------------------------------------------------------------------------------
def _kv(s: str, value: Callable[[str], Any], what: str) -> dict:
    out = {}
    for item in filter(None, (x.strip() for x in s.replace(" ", ",").split(","))):
        k, sep, v = item.partition(":")
        if not sep or not k:
            raise ValueError(f"expected {what}, got {item!r}")
        out[k] = value(v)
    return out


def _yaml_scalar(s: str) -> Any:
    import yaml

    return yaml.safe_load(s)


def _bool(s: str) -> bool:
    low = s.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {s!r}")


def _convert_text(kind: str, s: str) -> Any:
    if kind == "int":
        return int(s)
    if kind == "float":
        return float(s)
    if kind == "bool":
        return _bool(s)
    if kind == "floats":
        return [float(x) for x in s.replace(",", " ").split()]
    if kind == "kv_floats":
        return _kv(s, float, "lang:value")
    if kind == "kv_any":
        return _kv(s, _yaml_scalar, "name:value")
    return s


def convert(o: Option, value: Any) -> Any:
    """The typed value of ``o`` from what the parser holds (a string, or the typed default).
    Raises ValueError with the reason."""
    if value is None:
        if o.optional:
            return None
        raise ValueError("a value is required")
    if o.kind == "flag":
        return bool(value)
    if isinstance(value, str):
        if o.optional and value.strip().lower() in ("none", "null", ""):
            return None
        return _convert_text(o.kind, value)
    if o.kind == "float" and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def _numbers(value: Any) -> list[float]:
    if isinstance(value, dict):
        return [float(v) for v in value.values() if isinstance(v, (int, float))]
    if isinstance(value, list):
        return [float(v) for v in value]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return [float(value)]
    return []


def violates(o: Option, value: Any) -> bool:
    """True when the converted ``value`` is outside ``o``'s range or choices."""
    if value is None:
        return False
    if o.choices is not None and value not in o.choices:
        return True
    for x in _numbers(value):
        if not math.isfinite(x):
            return True
        if (o.at_least is not None and x < o.at_least) or (o.above is not None and x <= o.above):
            return True
        if o.below is not None and x >= o.below:
            return True
    return False


# -- the parser ------------------------------------------------------------------------------
def _help(o: Option) -> str:
    text = o.help
    if o.choices is not None:
        text += f" ({'|'.join(str(c) for c in o.choices)})"
    if o.methods is not None:
        text += f" [used by: {' '.join(o.methods)}]"
    return text


def add_options(parser: configargparse.ArgumentParser, suppress_defaults: bool = False) -> None:
    """Add every option of :data:`OPTIONS` to ``parser``, grouped as in ``--help``. Values stay
    strings (see :func:`convert`). ``suppress_defaults``: leave unset options out of the
    namespace (to see what the command line itself set)."""
    groups: dict[str, Any] = {}
    for o in OPTIONS:
        g = groups.get(o.group) or groups.setdefault(o.group, parser.add_argument_group(o.group))
        flags = [o.flag] + ["--" + a.replace("_", "-") for a in o.aliases]
        default = configargparse.SUPPRESS if suppress_defaults else o.default
        if o.kind == "flag":
            g.add_argument(*flags, dest=o.name, action="store_true", default=default, help=_help(o))
        else:
            g.add_argument(*flags, dest=o.name, default=default, help=_help(o), metavar=o.name.upper())


def config_keys() -> dict[str, str]:
    """YAML config key (with dashes or underscores, aliases too) -> option name."""
    keys = {}
    for o in OPTIONS:
        for n in (o.name, *o.aliases):
            keys[n] = keys[n.replace("_", "-")] = o.name
    return keys

