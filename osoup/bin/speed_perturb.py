"""Stage 2: Kaldi-style speed perturbation of a data dir (e.g. factors 0.9 1.0 1.1).

Perturbed audio is written as 16 kHz flac under <out>/wav/; ids and speakers get an sp<f>-
prefix, factor 1.0 keeps the original ids and audio. Re-running reuses finished audio files.
"""
from __future__ import annotations

import os

# One job = one core (parallelism comes from nj jobs). Set before numpy loads OpenBLAS, whose
# threads would otherwise spin on the small mel matrix product and cost ~3x the CPU time.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import logging  # noqa: E402
import sys  # noqa: E402

import configargparse  # noqa: E402

from osoup.data.speed import perturb_data_dir  # noqa: E402
from osoup.fileio import DataError, run_command, setup_logging  # noqa: E402

logger = logging.getLogger("speed_perturb")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--in", dest="in_dir", required=True, help="input data dir")
    p.add_argument("--out", dest="out_dir", required=True, help="output data dir")
    p.add_argument("--factors", default="0.9 1.0 1.1", help="space-separated speed factors")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--nj", type=int, default=1, help="parallel worker processes")
    p.add_argument("--max-bad-frac", type=float, default=0.05)
    p.add_argument("--verbose", type=int, default=1)
    return p


def _run(args) -> None:
    try:
        factors = [float(f) for f in args.factors.split()]
    except ValueError:
        raise DataError(f"--factors {args.factors!r}: expected numbers separated by spaces") from None
    if not factors or any(f <= 0 for f in factors) or len(set(factors)) != len(factors):
        raise DataError(f"--factors {args.factors!r}: need distinct positive numbers")
    perturb_data_dir(args.in_dir, args.out_dir, factors, args.sample_rate, args.nj, args.max_bad_frac)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    logger.info("config: %s", vars(args))
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
