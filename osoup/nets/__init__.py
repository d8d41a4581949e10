"""Model pieces: Conformer encoder (with a causal mode), CTC heads, CPC and BEST-RQ losses,
global CMVN, SpecAugment and named sizes. Knows no optimizer and no files."""
from osoup.nets.bestrq import BestRQ
from osoup.nets.cmvn import GlobalCMVN
from osoup.nets.configs import BESTRQ_CODEBOOK_SIZE, MODEL_CONFIGS
from osoup.nets.conformer import ConformerEncoder, EncoderOutput
from osoup.nets.cpc import CPC
from osoup.nets.heads import CTCHead, ctc_loss_sum
from osoup.nets.specaug import SpecAugment

__all__ = [
    "BESTRQ_CODEBOOK_SIZE", "BestRQ", "CPC", "CTCHead", "ConformerEncoder", "EncoderOutput",
    "GlobalCMVN", "MODEL_CONFIGS", "SpecAugment", "ctc_loss_sum",
]
