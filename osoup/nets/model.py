"""The multi-head model: one shared Conformer backbone θ, one CTC head φ per (language, task),
and the SSL module's own parameters (trained like heads). Also batch padding helpers."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from osoup.nets.cmvn import GlobalCMVN
from osoup.nets.conformer import ConformerEncoder
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
    ):
        super().__init__()
        self.encoder_conf = dict(encoder_conf)
        self.cmvn = GlobalCMVN(*cmvn) if cmvn is not None else GlobalCMVN(None, None)
        self.encoder = ConformerEncoder(**encoder_conf)
        d = encoder_conf.get("d_model", 256)
        self.heads = nn.ModuleDict({name: CTCHead(d, v) for name, v in head_vocab.items()})
        self.specaug = SpecAugment(**specaug_conf) if specaug_conf is not None else None
        self.ssl_kind = ssl
        self.ssl: nn.Module | None = None
        if ssl == "cpc":
            from osoup.nets.cpc import CPC

            self.ssl = CPC(d, **(ssl_conf or {}))
        elif ssl == "bestrq":
            from osoup.nets.bestrq import BestRQ

            self.ssl = BestRQ(idim=encoder_conf.get("idim", 80), d_model=d, **(ssl_conf or {}))

    # -- parameter groups -------------------------------------------------------------------
    def shared_parameters(self) -> list[nn.Parameter]:
        """θ: CMVN has no parameters; the encoder is the whole backbone."""
        return [p for p in self.encoder.parameters() if p.requires_grad]

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
        logits = self.heads[name](enc.out)
        return ctc_loss_sum(logits, enc.lengths, targets, target_lengths)

    def ssl_loss(self, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.cmvn(feats)
        if self.ssl_kind == "cpc":
            enc = self.encoder(x, lengths, causal=True)
            return self.ssl.loss(enc.frontend, enc.out, enc.lengths)
        if self.ssl_kind == "bestrq":
            return self.ssl.loss(lambda f, l: self.encoder(f, l), x, lengths)
        raise RuntimeError("model has no SSL objective")

    @torch.no_grad()
    def log_probs(self, name: str, feats: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        enc = self.encoder(self.cmvn(feats), lengths)
        return torch.log_softmax(self.heads[name](enc.out).float(), dim=-1), enc.lengths


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
