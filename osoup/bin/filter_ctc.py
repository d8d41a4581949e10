"""Stage 5: keep utterances whose targets fit CTC after the encoder's subsampling.

An utterance of T feature frames fits when tokens + repeated consecutive tokens <=
subsampled_length(T, --subsampling). --task asr reads `text`, st reads `text.en`.
A raw-waveform dump (feats_type raw, for a pretrained wav2vec 2.0-style backbone) needs
--backbone-dir: its config.json gives the CNN's frames for T samples (about one per 320).
"""
from __future__ import annotations

import logging
import sys

import configargparse

from pathlib import Path
from typing import Callable

from osoup.data.feats_type import read_feats_type
from osoup.data.filter import filter_ctc
from osoup.fileio import DataError, run_command, setup_logging
from osoup.text.tokenizer import Tokenizer

logger = logging.getLogger("filter_ctc")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--in", dest="in_dir", required=True, help="input data dir (dump/fbank/<set>)")
    p.add_argument("--out", dest="out_dir", required=True, help="output data dir (dump/<task>/<set>)")
    p.add_argument("--token-dir", required=True, help="token dir from osoup-train-spm")
    p.add_argument("--task", choices=["asr", "st"], default=None, help="default: the token dir's kind")
    p.add_argument("--subsampling", type=int, default=4, help="Conv2d front-end factor (fbank dumps)")
    p.add_argument("--backbone-dir", help="pretrained backbone dir (raw dumps): frames from its config.json")
    p.add_argument("--verbose", type=int, default=1)
    return p


def _run(args) -> None:
    if args.subsampling < 1 or args.subsampling & (args.subsampling - 1):
        raise DataError(f"--subsampling {args.subsampling}: must be 1 or a power of two")
    tok = Tokenizer(args.token_dir)
    task = args.task or tok.kind
    if task != tok.kind:
        raise DataError(f"--task {task} but {args.token_dir} holds a {tok.kind} tokenizer")
    filter_ctc(args.in_dir, args.out_dir, tok, task, args.subsampling, _frames_of(args.in_dir, args.backbone_dir))


def _frames_of(in_dir: str, backbone_dir: str | None) -> Callable[[int], int] | None:
    """Encoder frames per row count for a raw dump (the backbone's CNN); None for fbank."""
    kind = read_feats_type(in_dir)
    if kind == "fbank":
        if backbone_dir:
            raise DataError(f"--backbone-dir {backbone_dir}: {in_dir} holds fbank features, not raw waveforms "
                            "(run stage 3 with --feats-type raw)")
        return None
    if not backbone_dir:
        raise DataError(f"{in_dir} holds raw waveforms: give --backbone-dir (the pretrained backbone's directory)")
    if not Path(backbone_dir).is_dir():
        raise DataError(f"--backbone-dir {backbone_dir}: no such directory")
    from osoup.nets.backbones.hf_checkpoint import config_frames, read_config

    config = read_config(backbone_dir)  # once: what hf_frames_for_samples reads for every call
    return lambda n: config_frames(config, n)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    logger.info("config: %s", vars(args))
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
