"""Backbone registry: the shared encoder θ of a SoupModel, by name (``docs/backbones.md``).

``make_backbone(name, **conf)`` builds one. Every backbone has ``forward(feats, lengths) ->``
an object with ``.out [B, T', d]`` and ``.lengths [B]``, ``d_model``, ``input_kind`` ("fbank"
or "raw"), ``layer_groups()`` (name -> parameters, bottom to top, covering every trainable
parameter once; what ``--moo-layers``, conflict analysis and layer-wise lr decay work on) and
``set_trainable(flag)``.

- ``conformer``: osoup's Conformer on fbank (``osoup.nets.conformer``), unchanged.
- ``hf_wav2vec2``: a wav2vec 2.0 / XLS-R, HuBERT or WavLM checkpoint from a local dir, on raw
  16 kHz waveforms (needs ``pip install -e '.[hf]'``).

A SoupModel's ``encoder_conf`` names its backbone under ``"backbone"`` (absent: conformer).
"""
from __future__ import annotations

from typing import Any, Callable

from torch import nn

from osoup.nets.backbones.hf_checkpoint import frames_for_samples, hf_frames_for_samples
from osoup.nets.backbones.lr_decay import layer_lr_scales

DEFAULT_BACKBONE = "conformer"


def _conformer(**conf: Any) -> nn.Module:
    from osoup.nets.backbones.conformer import ConformerBackbone

    return ConformerBackbone(**conf)


def _hf_wav2vec2(**conf: Any) -> nn.Module:
    from osoup.nets.backbones.hf_wav2vec2 import HFWav2Vec2Backbone

    return HFWav2Vec2Backbone(**conf)


BACKBONES: dict[str, Callable[..., nn.Module]] = {"conformer": _conformer, "hf_wav2vec2": _hf_wav2vec2}
INPUT_KINDS = {"conformer": "fbank", "hf_wav2vec2": "raw"}
"""What each backbone reads: 80-dim fbank, or raw 16 kHz waveforms stored as [num_samples, 1]."""


def input_kind(encoder_conf: dict) -> str:
    """"fbank" or "raw": the input of the backbone an ``encoder_conf`` names."""
    name = encoder_conf.get("backbone", DEFAULT_BACKBONE)
    if name not in INPUT_KINDS:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return INPUT_KINDS[name]


def make_backbone(name: str, **conf: Any) -> nn.Module:
    """The backbone ``name`` built with ``conf`` (its constructor's keyword arguments)."""
    if name not in BACKBONES:
        raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(BACKBONES)}")
    return BACKBONES[name](**conf)


def backbone_from_conf(encoder_conf: dict) -> nn.Module:
    """The backbone of a SoupModel's ``encoder_conf`` (``"backbone"`` key; default conformer)."""
    conf = dict(encoder_conf)
    return make_backbone(conf.pop("backbone", DEFAULT_BACKBONE), **conf)


def architecture_only(encoder_conf: dict) -> dict:
    """``encoder_conf`` that rebuilds the same architecture without reading pretrained weights
    (a saved model loads its own state dict, and its checkpoint dir may be gone)."""
    conf = dict(encoder_conf)
    if conf.get("backbone", DEFAULT_BACKBONE) == "hf_wav2vec2":
        conf["pretrained"] = False
    return conf


def hf_encoder_conf(backbone_dir: str, freeze_feature_encoder: bool = True, grad_checkpointing: bool = False) -> dict:
    """The ``encoder_conf`` of an hf_wav2vec2 backbone (see :mod:`osoup.nets.backbones.hf_wav2vec2`)."""
    from osoup.nets.backbones.hf_wav2vec2 import hf_encoder_conf as conf

    return conf(backbone_dir, freeze_feature_encoder, grad_checkpointing)


__all__ = ["BACKBONES", "DEFAULT_BACKBONE", "INPUT_KINDS", "architecture_only", "backbone_from_conf", "frames_for_samples",
           "hf_encoder_conf", "hf_frames_for_samples", "input_kind", "layer_lr_scales", "make_backbone"]
