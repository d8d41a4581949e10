"""A pretrained wav2vec 2.0 / XLS-R, HuBERT or WavLM encoder from a local checkpoint dir, as the
shared backbone θ (paper appendix F.2, Table 8: XLS-R 300M with one linear CTC head per language
and task). See ``docs/backbones.md``.

Input: raw 16 kHz waveforms as features [B, T, 1] (the last dim is squeezed). Each utterance is
normalised to zero mean and unit variance over its valid samples when the checkpoint's feature
extractor says ``do_normalize``; padding stays 0. The transformer always gets the attention mask
of the valid frames, so padding never changes a valid frame's output through attention.
SpecAugment-like masking is the checkpoint's own (``mask_time_prob``, ``mask_feature_prob`` of its
config, in train mode only); osoup's fbank SpecAugment is not used on raw input.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import torch
from torch import Tensor, nn

from osoup.fileio import DataError
from osoup.nets.backbones.hf_checkpoint import (
    check_checkpoint_dir, config_frames, hf_config_object, read_config, read_do_normalize, require_transformers)

MODEL_TYPES = ("wav2vec2", "hubert", "wavlm")
"""Model families whose layout (feature_extractor, feature_projection, encoder.layers) this
module knows; XLS-R checkpoints are model_type wav2vec2."""


class BackboneOutput(NamedTuple):
    """out [B, T', d]; lengths [B] valid frames; extract: the normalised CNN features [B, T', C]
    that wav2vec 2.0's quantizer reads (None for families that do not return them)."""

    out: Tensor
    lengths: Tensor
    extract: Tensor | None


def hf_encoder_conf(backbone_dir: str, freeze_feature_encoder: bool = True,
                    grad_checkpointing: bool = False) -> dict[str, Any]:
    """The ``encoder_conf`` of a SoupModel on the checkpoint in ``backbone_dir``: the dir (its
    weights are loaded when the model is built) and its config, so that a saved model can be
    rebuilt without the dir (:func:`architecture_only`)."""
    d = check_checkpoint_dir(backbone_dir)
    return {"backbone": "hf_wav2vec2", "backbone_dir": str(d.resolve()), "hf_config": read_config(d),
            "do_normalize": read_do_normalize(d), "freeze_feature_encoder": bool(freeze_feature_encoder),
            "grad_checkpointing": bool(grad_checkpointing), "pretrained": True}


def _build_hf_model(hf_config: dict, backbone_dir: str | None, pretrained: bool) -> nn.Module:
    """The transformers base model (Wav2Vec2Model, HubertModel, WavLMModel) in fp32: the dir's
    weights, or random ones from ``hf_config`` (--amp decides the compute precision, not the
    checkpoint's storage type)."""
    transformers = require_transformers()
    model_type = hf_config.get("model_type")
    if model_type not in MODEL_TYPES:
        raise DataError(f"backbone {backbone_dir or 'config'}: model_type {model_type!r} is not supported "
                        f"(supported: {', '.join(MODEL_TYPES)})")
    if pretrained:
        d = check_checkpoint_dir(backbone_dir or "")
        log = transformers.utils.logging
        level, bar = log.get_verbosity(), log.is_progress_bar_enabled()
        log.set_verbosity_error()  # its load report lists the quantizer, which the SSL module loads itself
        log.disable_progress_bar()
        try:
            return transformers.AutoModel.from_pretrained(str(d), local_files_only=True, dtype=torch.float32)
        finally:
            log.set_verbosity(level)
            if bar:
                log.enable_progress_bar()
    return transformers.AutoModel.from_config(hf_config_object(hf_config), dtype=torch.float32)


def normalize_waveforms(x: Tensor, lengths: Tensor, eps: float = 1e-7) -> Tensor:
    """Per-utterance zero mean / unit variance over the valid samples of x [B, T]; padding 0
    (what the checkpoints' feature extractor does with ``do_normalize``)."""
    valid = (torch.arange(x.size(1), device=x.device)[None] < lengths[:, None]).to(x.dtype)
    n = valid.sum(1, keepdim=True).clamp(min=1.0)
    mean = (x * valid).sum(1, keepdim=True) / n
    var = (((x - mean) * valid) ** 2).sum(1, keepdim=True) / n
    return (x - mean) / torch.sqrt(var + eps) * valid


class HFWav2Vec2Backbone(nn.Module):
    """A Hugging Face speech encoder behind osoup's backbone interface.

    Args:
        hf_config: the checkpoint's config.json as a dict (its architecture).
        backbone_dir: the local checkpoint dir (``from_pretrained(..., local_files_only=True)``).
        pretrained: load the dir's weights; False builds the architecture from ``hf_config`` with
            random weights (a saved SoupModel then loads its own state dict).
        do_normalize: per-utterance waveform normalisation (the feature extractor's setting).
        freeze_feature_encoder: keep the CNN feature encoder fixed (its parameters leave θ).
        grad_checkpointing: recompute the transformer layers' activations in backward.
    """

    input_kind = "raw"

    def __init__(self, hf_config: dict, backbone_dir: str | None = None, pretrained: bool = True,
                 do_normalize: bool = True, freeze_feature_encoder: bool = True,
                 grad_checkpointing: bool = False) -> None:
        super().__init__()
        self.hf_config = dict(hf_config)
        self.pretrained_dir = backbone_dir if pretrained else None
        self.model = _build_hf_model(self.hf_config, backbone_dir, pretrained)
        self.d_model = int(self.model.config.hidden_size)
        self.do_normalize = do_normalize
        self.freeze_feature_encoder = freeze_feature_encoder
        self.samples_per_frame = 1
        for s in self.hf_config["conv_stride"]:
            self.samples_per_frame *= int(s)
        if grad_checkpointing:
            enable = getattr(self.model, "activation_checkpointing_enable", None)
            (enable or self.model.gradient_checkpointing_enable)()
        self.set_trainable(True)

    @property
    def model_type(self) -> str:
        return str(self.hf_config["model_type"])

    def n_frames(self, n_samples: int) -> int:
        """Frames of an input of ``n_samples`` (:func:`osoup.nets.backbones.frames_for_samples`)."""
        return config_frames(self.hf_config, n_samples)

    def output_lengths(self, lengths: Tensor) -> Tensor:
        """Valid frames [B] of inputs with ``lengths`` valid samples."""
        return self.model._get_feat_extract_output_lengths(lengths).long()

    def set_trainable(self, flag: bool) -> None:
        """Train (or freeze) θ; the CNN feature encoder stays frozen with ``freeze_feature_encoder``."""
        for p in self.parameters():
            p.requires_grad_(flag)
        fe = self.model.feature_extractor
        fe._requires_grad = flag and not self.freeze_feature_encoder
        if self.freeze_feature_encoder:
            for p in fe.parameters():
                p.requires_grad_(False)

    def forward(self, feats: Tensor, lengths: Tensor, mask_time_indices: Tensor | None = None) -> BackboneOutput:
        """feats [B, T, 1] raw samples, lengths [B] -> BackboneOutput with T' = n_frames(T).
        ``mask_time_indices`` [B, T'] (bool): frames replaced by the learnt mask embedding (SSL)."""
        if feats.dim() != 3 or feats.size(-1) != 1:
            raise ValueError(f"{self.model_type} backbone expects raw waveforms [B, T, 1], got {tuple(feats.shape)}")
        lengths = lengths.to(feats.device)
        x = feats[..., 0]
        if self.do_normalize:
            x = normalize_waveforms(x, lengths)
        attention = (torch.arange(x.size(1), device=x.device)[None] < lengths[:, None]).long()
        out = self.model(x, attention_mask=attention, mask_time_indices=mask_time_indices)
        return BackboneOutput(out.last_hidden_state, self.output_lengths(lengths),
                              getattr(out, "extract_features", None))

    def layer_groups(self) -> dict[str, list[nn.Parameter]]:
        """Natural units of θ, bottom to top: the CNN feature encoder (absent while frozen), the
        feature projection (with the mask embedding and the convolutional position embedding),
        then each transformer layer (the last one with the final LayerNorm of pre-norm models).
        Every trainable parameter appears in exactly one group (test/test_backbones.py)."""
        m = self.model
        layers = list(m.encoder.layers)
        groups: dict[str, list[nn.Parameter]] = {"feature_encoder": list(m.feature_extractor.parameters())}
        low = list(m.feature_projection.parameters()) + list(m.encoder.pos_conv_embed.parameters())
        groups["feature_projection"] = low + ([m.masked_spec_embed] if hasattr(m, "masked_spec_embed") else [])
        for i, layer in enumerate(layers):
            groups[f"layer{i}"] = list(layer.parameters())
        final_norm = list(m.encoder.layer_norm.parameters())
        stable = bool(self.hf_config.get("do_stable_layer_norm", False))
        groups[f"layer{len(layers) - 1}" if stable else "feature_projection"] += final_norm
        seen = {id(p) for ps in groups.values() for p in ps}
        rest = [p for p in self.parameters() if id(p) not in seen]
        if rest:  # e.g. an adapter on top: it belongs with the last layer
            groups[f"layer{len(layers) - 1}"] += rest
        trainable = {n: [p for p in ps if p.requires_grad] for n, ps in groups.items()}
        return {n: ps for n, ps in trainable.items() if ps}
