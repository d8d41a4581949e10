"""wav2vec 2.0's own self-supervised objective (Baevski et al., 2020, eq. 2-4) on a pretrained
wav2vec2-family backbone: ``--ssl w2v2`` (``docs/backbones.md``).

Time spans of the CNN features are replaced by the backbone's learnt mask embedding; the
transformer output at each masked frame, projected by ``project_hid``, must pick the quantized
(Gumbel codebook) CNN feature of that frame, projected by ``project_q``, among sampled negatives
of the same utterance (cosine / temperature, cross entropy summed over masked frames), plus the
codebook diversity term ((G·V − perplexity) / (G·V) × number of masked frames) weighted by the
config's ``diversity_loss_weight``. Masks and negatives come from transformers' own
``_compute_mask_indices`` and ``_sample_negative_indices``; on the same masks and negatives the
loss equals ``Wav2Vec2ForPreTraining``'s (test/test_backbones.py). The quantizer and the two
projections are SSL-only parameters (trained like heads), loaded from the checkpoint when it
has them (a Wav2Vec2ForPreTraining checkpoint does).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from osoup.fileio import DataError
from osoup.nets.backbones.hf_checkpoint import hf_config_object, read_weights
from osoup.nets.backbones.hf_wav2vec2 import HFWav2Vec2Backbone

PRETRAINING_PARTS = ("quantizer.", "project_hid.", "project_q.")


class Wav2Vec2Contrastive(nn.Module):
    """Quantizer + projections (SSL-only parameters) and the contrastive + diversity loss.

    Args:
        backbone: the wav2vec2 backbone (its config sizes the quantizer; its dir may hold weights).
        mask_prob, mask_length, min_masks: span masking (``_compute_mask_indices``; defaults as
            wav2vec 2.0 pre-training: about half of the frames masked).
        num_negatives: negatives per masked frame (default: the config's).
    """

    def __init__(self, backbone: HFWav2Vec2Backbone, mask_prob: float = 0.65, mask_length: int | None = None,
                 min_masks: int = 2, num_negatives: int | None = None) -> None:
        super().__init__()
        from transformers.models.wav2vec2.modeling_wav2vec2 import Wav2Vec2GumbelVectorQuantizer

        if backbone.model_type != "wav2vec2":
            raise DataError(f"--ssl w2v2 needs a wav2vec2-family checkpoint with a quantizer; this backbone is "
                            f"{backbone.model_type} (use --ssl bestrq)")
        config = hf_config_object(backbone.hf_config)
        self.config = config
        self.mask_prob = mask_prob
        self.mask_length = int(mask_length or config.mask_time_length)
        self.min_masks = min_masks
        self.num_negatives = int(num_negatives or config.num_negatives)
        self.dropout_features = nn.Dropout(config.feat_quantizer_dropout)
        self.quantizer = Wav2Vec2GumbelVectorQuantizer(config)
        self.project_hid = nn.Linear(config.hidden_size, config.proj_codevector_dim)
        self.project_q = nn.Linear(config.codevector_dim, config.proj_codevector_dim)
        weights = read_weights(backbone.pretrained_dir, PRETRAINING_PARTS) if backbone.pretrained_dir else {}
        if weights:
            self.load_state_dict(weights, strict=True)
        else:
            self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """wav2vec 2.0's initialisation of the quantizer (codebook logits N(0, 1), codevectors
        U(0, 1)) and the projections, for a checkpoint without them or a rebuilt model (whose
        state dict then overwrites them); the quantizer's own constructor leaves them unset."""
        nn.init.normal_(self.quantizer.weight_proj.weight, mean=0.0, std=1.0)
        nn.init.zeros_(self.quantizer.weight_proj.bias)
        nn.init.uniform_(self.quantizer.codevectors)
        self.project_hid.reset_parameters()
        self.project_q.reset_parameters()

    def sample(self, out_lengths: Tensor, n_frames: int) -> tuple[Tensor, Tensor]:
        """Masked frames [B, T'] (bool) and negative indices [B, T', K] into the flattened
        [B·T'] frames, on the lengths' device. transformers draws them with numpy's global RNG;
        it is seeded here from torch's RNG (and restored after), so ``--seed`` and a resumed
        checkpoint fix the draws like every other random choice of training."""
        from transformers.models.wav2vec2.modeling_wav2vec2 import _compute_mask_indices, _sample_negative_indices

        lengths = out_lengths.cpu()
        valid = (torch.arange(n_frames)[None] < lengths[:, None])
        saved = np.random.get_state()
        np.random.seed(int(torch.randint(0, 2**31 - 1, (1,))))
        try:
            mask = _compute_mask_indices((lengths.numel(), n_frames), self.mask_prob, self.mask_length,
                                         attention_mask=valid.long(), min_masks=self.min_masks)
            negatives = _sample_negative_indices((lengths.numel(), n_frames), self.num_negatives, valid.numpy())
        finally:
            np.random.set_state(saved)
        mask = torch.from_numpy(mask) & valid
        device = out_lengths.device
        return mask.to(device), torch.from_numpy(negatives).long().to(device)

    def loss(self, backbone: HFWav2Vec2Backbone, feats: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """Summed loss over masked frames and their number, with freshly drawn masks and negatives."""
        mask, negatives = self.sample(backbone.output_lengths(lengths), backbone.n_frames(feats.size(1)))
        return self.loss_with(backbone, feats, lengths, mask, negatives)

    def loss_with(self, backbone: HFWav2Vec2Backbone, feats: Tensor, lengths: Tensor, mask: Tensor,
                  negatives: Tensor) -> tuple[Tensor, Tensor]:
        """The loss for given masks [B, T'] and negative indices [B, T', K] (see the module doc)."""
        enc = backbone(feats, lengths, mask_time_indices=mask)
        predicted = self.project_hid(enc.out)
        extract = self.dropout_features(enc.extract)
        quantized, perplexity = self.quantizer(extract, mask_time_indices=mask)
        quantized = self.project_q(quantized.to(self.project_q.weight.dtype))
        b, t, h = quantized.shape
        neg = quantized.reshape(-1, h)[negatives.reshape(-1)].view(b, t, -1, h).permute(2, 0, 1, 3)
        targets = torch.cat([quantized[None], neg], dim=0)
        logits = torch.cosine_similarity(predicted.float(), targets.float(), dim=-1)
        logits = logits / self.config.contrastive_logits_temperature
        neg_is_pos = (quantized == neg).all(-1)
        logits = torch.cat([logits[:1], logits[1:].masked_fill(neg_is_pos, float("-inf"))], dim=0)
        target = torch.where(mask.reshape(-1), 0, -100)  # the positive is class 0; unmasked frames ignored
        contrastive = F.cross_entropy(logits.permute(1, 2, 0).reshape(b * t, -1), target, reduction="sum")
        n_codes = self.config.num_codevectors_per_group * self.config.num_codevector_groups
        count = mask.sum()
        diversity = (n_codes - perplexity) / n_codes * count
        return contrastive + self.config.diversity_loss_weight * diversity, count
