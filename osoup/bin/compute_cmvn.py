"""Stage 4: global mean/std of features over all frames of the given data dirs' feats.scp.

Writes {"count": N, "mean": [D], "std": [D]} (std floored) for the model's GlobalCMVN.
Raw-waveform dumps (feats_type raw) are not normalised globally (a pretrained backbone brings
its own per-utterance normalisation): their file holds the identity, mean 0 and std 1 of the
waveform's one column, so training reads the same file for either kind.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

import configargparse

from osoup.data.cmvn import STD_FLOOR, compute_global_cmvn, write_cmvn
from osoup.data.feats_type import read_feats_type
from osoup.fileio import DataError, run_command, setup_logging

logger = logging.getLogger("compute_cmvn")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--out", required=True, help="output JSON, e.g. dump/fbank/global_cmvn.json")
    p.add_argument("--std-floor", type=float, default=STD_FLOOR)
    p.add_argument("--verbose", type=int, default=1)
    p.add_argument("dirs", nargs="+", help="data dirs holding feats.scp")
    return p


IDENTITY_RAW = {"count": 0, "mean": [0.0], "std": [1.0], "identity": True}


def _run(args) -> None:
    kinds = {d: read_feats_type(d) for d in args.dirs}
    if set(kinds.values()) == {"raw"}:
        write_cmvn(args.out, IDENTITY_RAW)
        logger.info("wrote %s: identity (raw waveforms are not normalised globally)", args.out)
        return
    if "raw" in kinds.values():
        raise DataError("cannot pool raw waveforms and fbank features: " + ", ".join(f"{d} ({k})" for d, k in kinds.items()))
    stats = compute_global_cmvn([Path(d) / "feats.scp" for d in args.dirs], args.std_floor)
    write_cmvn(args.out, stats)
    logger.info("wrote %s (%d frames)", args.out, stats["count"])


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    logger.info("config: %s", vars(args))
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
