"""Named encoder sizes: ``ConformerEncoder(**MODEL_CONFIGS[name])``.

"58m" and "100m" are the paper's two Conformers (appendix E: 8 blocks / d 512 / 8 heads and
10 blocks / d 612 / 12 heads, kernel 31); with ff_mult 4 and the Conv2d front-end their encoders
have 57,935,872 and 100,770,696 parameters. "tiny" (2.2M) is for CPU runs (the mini recipe and
tests); its front-end uses 64 conv channels, which halves its cost on CPU.
``BESTRQ_CODEBOOK_SIZE`` gives a matching BEST-RQ codebook size per config.
"""
from __future__ import annotations

from typing import Any

MODEL_CONFIGS: dict[str, dict[str, Any]] = {
    "tiny": dict(idim=80, d_model=144, n_heads=4, n_blocks=4, ff_mult=4, conv_kernel=15,
                 conv_norm="batch", dropout=0.1, subsampling_channels=64),
    "58m": dict(idim=80, d_model=512, n_heads=8, n_blocks=8, ff_mult=4, conv_kernel=31,
                conv_norm="batch", dropout=0.1),
    "100m": dict(idim=80, d_model=612, n_heads=12, n_blocks=10, ff_mult=4, conv_kernel=31,
                 conv_norm="batch", dropout=0.1),
}

BESTRQ_CODEBOOK_SIZE: dict[str, int] = {"tiny": 256, "58m": 1024, "100m": 1024}
