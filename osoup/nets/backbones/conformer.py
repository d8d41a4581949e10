"""osoup's own Conformer on 80-dim fbank as a registry backbone (``docs/design.md``, "Model").

:class:`ConformerBackbone` is :class:`osoup.nets.conformer.ConformerEncoder` unchanged (same
parameters, names, initialisation and outputs) with the few attributes every backbone has."""
from __future__ import annotations

from osoup.nets.conformer import ConformerEncoder


class ConformerBackbone(ConformerEncoder):
    """The Conformer encoder; ``forward(feats, lengths, causal=False) -> EncoderOutput``."""

    input_kind = "fbank"

    def set_trainable(self, flag: bool) -> None:
        """Train (or freeze) every encoder parameter."""
        for p in self.parameters():
            p.requires_grad_(flag)
