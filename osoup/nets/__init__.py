"""Model pieces: Conformer encoder (with a causal mode), the backbone registry (the Conformer or a
pretrained wav2vec 2.0-family encoder: :mod:`osoup.nets.backbones`), CTC heads, CPC and BEST-RQ
losses, global CMVN, SpecAugment and named sizes. Knows no optimizer; the only files it reads are
a pretrained backbone's checkpoint dir (``osoup.nets.backbones.hf_checkpoint``)."""
from osoup.nets.backbones import BACKBONES, frames_for_samples, hf_frames_for_samples, make_backbone
from osoup.nets.bestrq import BestRQ
from osoup.nets.cmvn import GlobalCMVN
from osoup.nets.configs import BESTRQ_CODEBOOK_SIZE, MODEL_CONFIGS
from osoup.nets.conformer import ConformerEncoder, EncoderOutput
from osoup.nets.cpc import CPC
from osoup.nets.heads import CTCHead, ctc_loss_sum
from osoup.nets.specaug import SpecAugment

__all__ = [
    "BACKBONES", "BESTRQ_CODEBOOK_SIZE", "BestRQ", "CPC", "CTCHead", "ConformerEncoder", "EncoderOutput",
    "GlobalCMVN", "MODEL_CONFIGS", "SpecAugment", "ctc_loss_sum", "frames_for_samples", "hf_frames_for_samples",
    "make_backbone",
]
