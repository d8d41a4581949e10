"""The multi-head model: one shared backbone θ (osoup's Conformer on fbank, or a pretrained
wav2vec 2.0-family encoder on raw waveforms: :mod:`osoup.nets.backbones`), one CTC head φ per
(language, task), and the SSL module's own parameters (trained like heads). Also batch padding
helpers."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from osoup.nets.cmvn import GlobalCMVN
from osoup.nets.backbones import backbone_from_conf, input_kind
from osoup.nets.heads import CTCHead, ctc_loss_sum
from osoup.nets.specaug import SpecAugment

SSL_OBJECTIVE = "ssl"
"""The name of the self-supervised objective (its head holds the SSL-only parameters)."""


class SoupModel(nn.Module):
    def __init__(
        self,
        encoder_conf: dict,
        head_vocab: dict[str, int],
        ssl: str | None = None,
        ssl_conf: dict | None = None,
        cmvn: tuple[torch.Tensor, torch.Tensor] | None = None,
        specaug_conf: dict | None = None,
        head_layers: dict[str, int] | None = None,
    ):
        super().__init__()
        self.encoder_conf = dict(encoder_conf)
        fbank = input_kind(encoder_conf) == "fbank"  # raw waveforms get neither global CMVN nor SpecAugment
        self.cmvn = GlobalCMVN(*cmvn) if cmvn is not None and fbank else GlobalCMVN(None, None)
        self.encoder = backbone_from_conf(encoder_conf)
        d = self.encoder.d_model
        self.head_layers = {n: int(k) for n, k in (head_layers or {}).items() if k}
        self.heads = nn.ModuleDict({name: CTCHead(d, v, layers=self.head_layers.get(name, 0))
                                    for name, v in head_vocab.items()})
        self.specaug = SpecAugment(**specaug_conf) if specaug_conf is not None and fbank else None
        self.ssl_kind = ssl
        self.ssl: nn.Module | None = make_ssl(ssl, ssl_conf or {}, self.encoder, encoder_conf)

    # -- parameter groups -------------------------------------------------------------------
    def shared_parameters(self) -> list[nn.Parameter]:
        """θ: CMVN has no parameters; the encoder is the whole backbone."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

    def set_backbone_trainable(self, flag: bool) -> None:
        """Train or freeze θ (a frozen CNN feature encoder of a pretrained backbone stays frozen)."""
        self.encoder.set_trainable(flag)

    def objective_head_parameters(self, name: str) -> list[nn.Parameter]:
        if name == SSL_OBJECTIVE:
            return [p for p in self.ssl.parameters() if p.requires_grad] if self.ssl is not None else []
        return list(self.heads[name].parameters())

    # -- losses ----------------------------------------------------------------------------
    def supervised_loss(
        self, name: str, feats: torch.Tensor, lengths: torch.Tensor, targets: torch.Tensor, target_lengths: torch.Tensor
    ) -> torch.Tensor:
        """CTC loss summed over the batch (the caller divides by the token count)."""
        x = self.cmvn(feats)
        if self.specaug is not None and self.training:
            x = self.specaug(x, lengths)
        enc = self.encoder(x, lengths)
        logits = self.heads[name](enc.out, enc.lengths)
        return ctc_loss_sum(logits, enc.lengths, targets, target_lengths)

    def ssl_loss(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.cmvn(feats)
        if self.ssl_kind == "cpc":
            enc = self.encoder(x, lengths, causal=True)
            return self.ssl.loss(enc.frontend, enc.out, enc.lengths)
        if self.ssl_kind == "bestrq" and self.encoder.input_kind == "fbank":
            return self.ssl.loss(lambda f, l: self.encoder(f, l), x, lengths)
        if self.ssl_kind in ("bestrq", "w2v2"):  # raw input: the SSL module drives the backbone's masking
            return self.ssl.loss(self.encoder, feats, lengths)
        raise RuntimeError("model has no SSL objective")

    @torch.no_grad()
    def log_probs(self, name: str, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.encoder(self.cmvn(feats), lengths)
        return torch.log_softmax(self.heads[name](enc.out, enc.lengths).float(), dim=-1), enc.lengths


def make_ssl(kind: str | None, conf: dict, encoder: nn.Module, encoder_conf: dict) -> nn.Module | None:
    """The SSL module of ``kind`` for ``encoder``: CPC (fbank Conformer only: it needs the causal
    mode), BEST-RQ (on fbank, or on waveform frames: :mod:`osoup.nets.backbones.raw_bestrq`), or
    wav2vec 2.0's contrastive loss (``w2v2``: a wav2vec2 checkpoint, :mod:`osoup.nets.backbones.w2v2_ssl`)."""
    if kind is None:
        return None
    fbank = encoder.input_kind == "fbank"
    if kind == "cpc" and fbank:
        from osoup.nets.cpc import CPC

        return CPC(encoder.d_model, **conf)
    if kind == "bestrq" and fbank:
        from osoup.nets.bestrq import BestRQ

        return BestRQ(idim=encoder_conf.get("idim", 80), d_model=encoder.d_model, **conf)
    if kind == "bestrq":
        from osoup.nets.backbones.raw_bestrq import RawBestRQ

        return RawBestRQ(encoder.samples_per_frame, encoder.d_model, **conf)
    if kind == "w2v2" and not fbank:
        from osoup.nets.backbones.w2v2_ssl import Wav2Vec2Contrastive

        return Wav2Vec2Contrastive(encoder, **conf)
    raise ValueError(f"SSL objective {kind!r} does not work with a {encoder.input_kind} backbone "
                     f"(cpc: conformer; w2v2: hf_wav2vec2; bestrq: both)")


def pad_batch(mats: Sequence, device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([m.shape[0] for m in mats], dtype=torch.long)
    out = torch.zeros(len(mats), int(lengths.max()), mats[0].shape[1])
    for i, m in enumerate(mats):
        out[i, : m.shape[0]] = torch.tensor(m)
    return out.to(device), lengths.to(device)


def pad_targets(targets: Sequence[Sequence[int]], device: torch.device | str = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    lengths = torch.tensor([len(t) for t in targets], dtype=torch.long)
    out = torch.zeros(len(targets), int(lengths.max()), dtype=torch.long)
    for i, t in enumerate(targets):
        out[i, : len(t)] = torch.tensor(t, dtype=torch.long)
    return out.to(device), lengths.to(device)
