"""osoup-make-tiny-w2v2: write a small randomly initialised wav2vec 2.0 checkpoint (with its
quantizer: ``Wav2Vec2ForPreTraining``) and a 16 kHz feature-extractor config into OUTDIR.

    osoup-make-tiny-w2v2 exp/tiny_w2v2 --hidden 64 --layers 2 --seed 0

The mini recipe fine-tunes it with ``--backbone hf_wav2vec2 --backbone-dir OUTDIR`` where a real
run would use XLS-R (docs/backbones.md). Needs ``pip install -e '.[hf]'``. The directory is
written next to OUTDIR and renamed into place, so an interrupted run leaves no partial checkpoint.
"""
from __future__ import annotations

import os
import shutil
import sys
import tempfile
from pathlib import Path

import configargparse

from osoup.fileio import DataError, run_command


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("outdir", help="checkpoint directory to create (config.json, model.safetensors, "
                   "preprocessor_config.json)")
    p.add_argument("--hidden", type=int, default=64, help="transformer width (a multiple of 4: 4 attention heads)")
    p.add_argument("--layers", type=int, default=2, help="transformer layers")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights")
    return p


def tiny_config(hidden: int = 64, layers: int = 2) -> dict:
    """A small Wav2Vec2Config (as keyword arguments): wav2vec 2.0's 7-layer CNN (320 samples per
    frame, so frame counts match the real models) with 32 channels, ``layers`` pre-norm
    transformer layers of width ``hidden``, a 2 x 16 codebook; no dropout or LayerDrop."""
    if hidden < 4 or hidden % 4:
        raise DataError(f"--hidden {hidden}: must be a positive multiple of 4")
    if layers < 1:
        raise DataError(f"--layers {layers}: must be at least 1")
    return dict(
        hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4, intermediate_size=2 * hidden,
        conv_dim=(32,) * 7, conv_kernel=(10, 3, 3, 3, 3, 2, 2), conv_stride=(5, 2, 2, 2, 2, 2, 2),
        feat_extract_norm="layer", do_stable_layer_norm=True, conv_bias=True,
        num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=4,
        num_codevector_groups=2, num_codevectors_per_group=16, codevector_dim=32, proj_codevector_dim=16,
        num_negatives=10, mask_time_prob=0.05, mask_time_length=5, layerdrop=0.0, hidden_dropout=0.0,
        attention_dropout=0.0, activation_dropout=0.0, feat_proj_dropout=0.0, feat_quantizer_dropout=0.0,
        final_dropout=0.0, vocab_size=8)


def write_tiny_w2v2(outdir: str | Path, hidden: int = 64, layers: int = 2, seed: int = 0) -> Path:
    """Write the checkpoint into ``outdir`` (replaced if it exists) and return its path."""
    from osoup.nets.backbones.hf_checkpoint import require_transformers

    transformers = require_transformers()
    import torch

    conf = tiny_config(hidden, layers)
    out = Path(outdir)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    model = transformers.Wav2Vec2ForPreTraining(transformers.Wav2Vec2Config(**conf))
    extractor = transformers.Wav2Vec2FeatureExtractor(feature_size=1, sampling_rate=16000, padding_value=0.0,
                                                      do_normalize=True, return_attention_mask=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    tmp.chmod(0o777 & ~umask)  # mkdtemp makes it private; the checkpoint is an ordinary directory
    try:
        model.save_pretrained(str(tmp))
        extractor.save_pretrained(str(tmp))
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return out


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(sys.argv[1:] if argv is None else argv)

    def body() -> None:
        write_tiny_w2v2(args.outdir, args.hidden, args.layers, args.seed)

    return run_command(body)


if __name__ == "__main__":
    sys.exit(main())
