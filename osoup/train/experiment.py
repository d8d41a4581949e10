"""What an experiment directory ``exp/<tag>/`` holds, how its model is loaded, and the packed model.

One module owns the layout (``docs/design.md``, "Experiment directory"): code that reads or
writes an experiment dir names its files through it, and decoding and conflict analysis load
models only through it. In brackets: the ``egs/TEMPLATE/asr.sh`` stage and command that write
each file::

    config.yaml                 resolved training options                      [6 osoup-train]
    objectives.json             objectives, token dirs, encoder conf, SSL kind [6 osoup-train]
    train.log                   log (train.rank<r>.log for ranks r > 0)        [6 osoup-train]
    latest.pt                   full training state, read by --resume          [6 osoup-train]
    checkpoint.<N>.pt           full training state after epoch N (last few)   [6 osoup-train]
    best.pt                     {model, model_conf, epoch} of the best dev     [6 osoup-train]
    pretrain.pt                 {model, model_conf, epoch} at the end of SSL pre-training
                                (two_stage, two_stage_static, peft; for --init-from) [6 osoup-train]
    avg<N>.pt                   {model, model_conf, averaged}: last N epochs   [6 osoup-train]
    train_summary.json          best dev score, epochs, skipped steps, history [6 osoup-train]
    trace.jsonl                 per-step losses, λ (--trace; trace.rank<r>)    [6 osoup-train]
    tensorboard/                TensorBoard events                             [6 osoup-train]
    .train.done                 stage marker                                   [6 asr.sh]
    decode_<dtag>/decode.yaml   decoding options                               [7 osoup-decode]
    decode_<dtag>/<set>/hyp.<task>  ``utt-id text`` lines; task asr or st      [7 osoup-decode]
    RESULTS.md, results.json    scores of every decode dir                     [8 osoup-score --exp]
    conflict/                   gradient-conflict report                       [10 osoup-conflict]
    model.pack.pt               packed model (conventional name)               [osoup-decode --pack-out]

Every model file (``best.pt``, ``avg<N>.pt``, ``latest.pt``, ``checkpoint.<N>.pt``) holds at
least ``model`` (a state dict) and ``model_conf`` (the ``SoupModel`` keyword arguments). A
packed model holds ``model``, ``model_conf`` and ``tokenizers`` (head name -> {file name:
bytes} of its token dir), so that it decodes without the recipe's files.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from osoup.fileio import DataError

if TYPE_CHECKING:
    from osoup.nets.model import SoupModel
    from osoup.text.tokenizer import Tokenizer

from osoup.expdir import (  # noqa: F401 - the layout's names, re-exported
    CONFIG,
    OBJECTIVES,
    TRAIN_LOG,
    LATEST,
    BEST,
    TRAIN_SUMMARY,
    TENSORBOARD,
    TRAIN_DONE,
    DECODE_CONF,
    RESULTS_MD,
    RESULTS_JSON,
    CONFLICT_DIR,
    PACKED,
    HYP_TASKS,
    PACKED_KEYS,
    epoch_checkpoint_name,
    average_name,
    train_log_name,
    trace_name,
    decode_dir,
    hyp_path,
    written_by,
    require_file,
    HypFile,
    hyp_files,
    epoch_checkpoints,
    model_files,
)
from osoup.expdir import _others


# -- reading -------------------------------------------------------------------------------
def read_objectives(exp_dir: str | Path) -> dict:
    """``objectives.json``: at least a non-empty ``objectives`` list (and ``token_dirs``)."""
    path = require_file(Path(exp_dir) / OBJECTIVES)
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("objectives"), list) or not meta["objectives"]:
        raise DataError(f"{path}: no 'objectives' list")
    return meta


def read_config(exp_dir: str | Path) -> dict:
    """The experiment's resolved training options (``config.yaml``); ``{}`` if there is none."""
    import yaml

    path = Path(exp_dir) / CONFIG
    if not path.is_file():
        return {}
    try:
        cfg = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise DataError(f"{path}: not valid YAML ({' '.join(str(e).split())})") from None
    return cfg if isinstance(cfg, dict) else {}


def _first_line(e: BaseException) -> str:
    """The first sentence of an exception's message (torch appends paragraphs of advice)."""
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    text = lines[0].split(". ", 1)[0].rstrip(".") if lines else ""
    return text or type(e).__name__


def load_torch_file(path: str | Path, what: str, keys: tuple[str, ...], hint: str) -> dict:
    """``torch.load`` (on the CPU) of a file that must be a dict with ``keys``; an unreadable
    (truncated, corrupt) file is one DataError naming it, the reason and ``hint``."""
    import torch

    path = Path(path)
    try:
        obj = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # noqa: BLE001 - zip, pickle, EOF errors: all mean an unreadable file
        raise DataError(f"{path}: cannot read this {what} ({_first_line(e)}): the file is truncated or corrupt; "
                        f"{hint}") from None
    missing = [k for k in keys if not isinstance(obj, dict) or k not in obj]
    if missing:
        raise DataError(f"{path}: not a {what} (no {', '.join(repr(k) for k in missing)}); {hint}")
    return obj


def build_model(obj: dict, path: Path, device: str = "cpu") -> SoupModel:
    """The SoupModel of a checkpoint's ``model_conf`` with its ``model`` weights, in eval mode
    and without SpecAugment (decoding and analysis never augment)."""
    from osoup.nets.backbones import architecture_only
    from osoup.nets.model import SoupModel

    conf = dict(obj["model_conf"])
    conf["specaug_conf"] = None
    conf["encoder_conf"] = architecture_only(conf["encoder_conf"])  # the weights come from the file
    try:
        model = SoupModel(**conf)
        result = model.load_state_dict(obj["model"], strict=False)
    except (TypeError, RuntimeError, ValueError) as e:
        raise DataError(f"{path}: its weights do not fit its model_conf ({_first_line(e)})") from None
    if result.missing_keys or result.unexpected_keys:
        raise DataError(f"{path}: its weights do not fit its model_conf ({len(result.missing_keys)} missing, e.g. "
                        f"{result.missing_keys[:1]}; {len(result.unexpected_keys)} unexpected, e.g. "
                        f"{result.unexpected_keys[:1]})")
    return model.to(device).eval()


def load_model_file(exp_dir: str | Path, model_file: str = BEST) -> tuple[dict, Path]:
    """The contents of the model file ``<exp_dir>/<model_file>`` (on the CPU) and its path; a
    missing or unreadable one is a DataError that lists the experiment's other model files."""
    path = Path(exp_dir) / model_file
    if not path.is_file():
        raise DataError(f"{path}: not found (written by {written_by(model_file)}); {_others(path)}")
    return load_torch_file(path, "model checkpoint", ("model", "model_conf"), _others(path)), path


def load_experiment_model(exp_dir: str | Path, model_file: str = BEST, device: str = "cpu") -> tuple[SoupModel, dict]:
    """The SoupModel of ``<exp_dir>/<model_file>`` (eval mode, no SpecAugment) and the
    experiment's objectives.json."""
    meta = read_objectives(exp_dir)
    obj, path = load_model_file(exp_dir, model_file)
    return build_model(obj, path, device), meta


def load_tokenizers(token_dirs: dict[str, str], model: SoupModel, where: str | Path) -> dict[str, Tokenizer]:
    """One Tokenizer per head of ``token_dirs`` (as objectives.json lists them); each must
    exist and have as many CTC symbols as the model's head of that name."""
    from osoup.text.tokenizer import Tokenizer

    out = {}
    for name, d in token_dirs.items():
        if not Path(d).is_dir():
            raise DataError(f"{where}: token dir {d} of {name} not found (written by osoup-train-spm, recipe stage 5)")
        tok = Tokenizer(d)
        head = model.heads[name] if name in model.heads else None
        if head is not None and head.vocab_size != tok.vocab_size:
            raise DataError(f"{where}: tokenizer {d} of {name} has {tok.vocab_size} CTC symbols but the model's head "
                            f"has {head.vocab_size}")
        out[name] = tok
    return out


def load_experiment(exp_dir: str | Path, model_file: str = BEST,
                    device: str = "cpu") -> tuple[SoupModel, dict[str, Tokenizer]]:
    """The experiment's model (eval mode) and one tokenizer per head (from objectives.json)."""
    model, meta = load_experiment_model(exp_dir, model_file, device)
    return model, load_tokenizers(meta.get("token_dirs", {}), model, Path(exp_dir) / OBJECTIVES)


# -- packed model --------------------------------------------------------------------------
def write_packed(exp_dir: str | Path, model_file: str, out: str | Path) -> None:
    """One file with everything decoding needs: the model's config and weights and the files
    of every head's token dir (written atomically)."""
    from osoup.train.checkpoint import save_atomic

    exp_dir = Path(exp_dir)
    meta = read_objectives(exp_dir)
    obj, path = load_model_file(exp_dir, model_file)
    token_dirs = meta.get("token_dirs", {})
    load_tokenizers(token_dirs, build_model(obj, path), exp_dir / OBJECTIVES)  # all exist and fit their heads
    toks = {name: {f.name: f.read_bytes() for f in sorted(Path(d).iterdir())
                   if f.is_file() and not f.name.startswith(".")}  # not the stage's .done marker
            for name, d in token_dirs.items()}
    save_atomic({"model": obj["model"], "model_conf": obj["model_conf"], "tokenizers": toks}, out)


def read_packed(path: str | Path, device: str = "cpu") -> tuple[SoupModel, dict[str, Tokenizer]]:
    """The model (eval mode) and the tokenizers of a packed model file."""
    from osoup.text.tokenizer import Tokenizer

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: packed model not found (written by {written_by(PACKED)})")
    hint = f"re-create it with {written_by(PACKED)}"
    pack = load_torch_file(path, "packed model", PACKED_KEYS, hint)
    model = build_model(pack, path, device)
    tokenizers = {}
    with tempfile.TemporaryDirectory(prefix="osoup_tok_") as tmp:  # a Tokenizer keeps its model in memory
        for name, files in _packed_token_files(pack, path, hint).items():
            d = Path(tmp) / name
            d.mkdir()
            for fname, data in files.items():
                (d / fname).write_bytes(data)
            tokenizers[name] = Tokenizer(d)
    return model, tokenizers


def _packed_token_files(pack: dict[str, Any], path: Path, hint: str) -> dict[str, dict[str, bytes]]:
    """The packed token dirs, checked: each a {file name: bytes} map with the files a Tokenizer reads."""
    toks = pack["tokenizers"]
    if not isinstance(toks, dict) or not toks:
        raise DataError(f"{path}: the packed model holds no tokenizers; {hint}")
    for name, files in toks.items():
        need = [f for f in ("spm.model", "tokens.txt", "info.json") if not isinstance(files, dict) or f not in files]
        bad = [] if need else [f for f in [name, *files] if "/" in f or f.startswith(".")]
        if need or bad:
            what = f"missing {', '.join(need)}" if need else f"unsafe file names {bad}"
            raise DataError(f"{path}: packed tokenizer {name!r} is incomplete or malformed ({what}); {hint}")
    return toks
