"""What a local Hugging Face speech checkpoint directory holds, read without building a model.

A checkpoint dir (``save_pretrained`` output, e.g. XLS-R 300M downloaded once) has
``config.json``, the weights (``model.safetensors`` or ``pytorch_model.bin``) and usually a
``preprocessor_config.json`` (the feature extractor: sampling rate, ``do_normalize``). This module
checks such a dir, reads those configs and computes the CNN feature encoder's exact frame count
(``docs/backbones.md``). It is the only place of ``osoup.nets`` that reads files.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

from osoup.fileio import DataError

CONFIG = "config.json"
WEIGHTS = ("model.safetensors", "pytorch_model.bin")
PREPROCESSOR = "preprocessor_config.json"
INSTALL_HINT = "pip install -e '.[hf]'"


def require_transformers() -> Any:
    """The ``transformers`` module, or a DataError saying how to install the optional extra."""
    try:
        import transformers
    except ImportError:
        raise DataError(f"the hf_wav2vec2 backbone needs the transformers package: {INSTALL_HINT}") from None
    return transformers


def check_checkpoint_dir(backbone_dir: str | Path, need_weights: bool = True) -> Path:
    """``backbone_dir`` as a Path; a missing dir, config or weights file is one DataError naming
    the directory and the missing file."""
    d = Path(backbone_dir)
    if not d.is_dir():
        raise DataError(f"backbone dir {d}: not found (a local checkpoint dir with {CONFIG} and "
                        f"{' or '.join(WEIGHTS)})")
    if not (d / CONFIG).is_file():
        raise DataError(f"backbone dir {d}: missing {CONFIG}")
    if need_weights and not any((d / w).is_file() for w in WEIGHTS):
        raise DataError(f"backbone dir {d}: missing the weights ({' or '.join(WEIGHTS)})")
    return d


def read_json(path: Path) -> dict:
    """A JSON object from ``path``; an unreadable one is a DataError naming the file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read this JSON file ({e})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object")
    return data


def read_config(backbone_dir: str | Path) -> dict:
    """The model config (``config.json``) of a checkpoint dir."""
    return read_json(check_checkpoint_dir(backbone_dir, need_weights=False) / CONFIG)


def read_do_normalize(backbone_dir: str | Path) -> bool:
    """Whether inputs are normalised per utterance (zero mean, unit variance): the feature
    extractor's ``do_normalize`` from ``preprocessor_config.json``, True without that file."""
    path = Path(backbone_dir) / PREPROCESSOR
    if not path.is_file():
        return True
    return bool(read_json(path).get("do_normalize", True))


def frames_for_samples(n_samples: int, conv_kernel: Sequence[int], conv_stride: Sequence[int]) -> int:
    """Exact number of frames a stack of 1-D "valid" convolutions makes of ``n_samples``
    (each layer: floor((n - kernel) / stride) + 1; 0 when the input is too short)."""
    if len(conv_kernel) != len(conv_stride):
        raise ValueError(f"conv_kernel and conv_stride differ in length: {len(conv_kernel)} vs {len(conv_stride)}")
    n = int(n_samples)
    for k, s in zip(conv_kernel, conv_stride):
        if n < k:
            return 0
        n = (n - k) // s + 1
    return n


def config_frames(config: dict, n_samples: int) -> int:
    """:func:`frames_for_samples` with the kernels and strides of a model config dict (and its
    adapter's strided layers when ``add_adapter`` is set)."""
    kernels, strides = list(config["conv_kernel"]), list(config["conv_stride"])
    if config.get("add_adapter"):
        n_adapter = int(config.get("num_adapter_layers", 3))
        kernels += [1] * n_adapter
        strides += [int(config.get("adapter_stride", 2))] * n_adapter
    return frames_for_samples(n_samples, kernels, strides)


def hf_frames_for_samples(backbone_dir: str | Path, n_samples: int) -> int:
    """Frames the checkpoint in ``backbone_dir`` makes of ``n_samples`` (reads its config.json)."""
    return config_frames(read_config(backbone_dir), n_samples)


def read_weights(backbone_dir: str | Path, prefixes: Sequence[str]) -> dict:
    """The tensors of the checkpoint whose names start with one of ``prefixes`` (e.g. the
    quantizer of a Wav2Vec2ForPreTraining checkpoint), read without loading the rest."""
    import torch

    d = check_checkpoint_dir(backbone_dir)
    safetensors_file = d / WEIGHTS[0]
    if safetensors_file.is_file():
        from safetensors import safe_open

        with safe_open(str(safetensors_file), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys() if k.startswith(tuple(prefixes))}
    state = torch.load(d / WEIGHTS[1], map_location="cpu", mmap=True, weights_only=True)
    return {k: v.clone() for k, v in state.items() if k.startswith(tuple(prefixes))}


def hf_config_object(hf_config: dict) -> Any:
    """The transformers config object of a config.json dict."""
    transformers = require_transformers()
    cls = type(transformers.AutoConfig.for_model(hf_config["model_type"]))
    return cls.from_dict(hf_config)
