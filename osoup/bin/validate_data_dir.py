"""osoup-validate-data-dir: check Kaldi data dirs (Kaldi's validate_data_dir.sh as the spec).

    osoup-validate-data-dir data/train_fr [more dirs] [--no-text] [--check-files auto|yes|no]

Prints every problem and exits 1 when a dir is invalid; prints a one-line summary otherwise.
Beyond Kaldi's checks, the audio files named in wav.scp must exist and be non-empty; by default
("auto") that is checked for dirs of up to 100k utterances, "yes" checks larger ones too.
Piped commands ("... |") and ark:/scp: specifiers in wav.scp are skipped, with a note.
"""
from __future__ import annotations

import sys

import configargparse

from osoup.data.validate import CHECK_FILES_CHOICES, CHECK_FILES_MAX_UTTS, check_data_dir
from osoup.fileio import DataError


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__,
                                      formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("dirs", nargs="+", metavar="DIR", help="data directories to check")
    p.add_argument("--no-text", action="store_true",
                   help="do not require a text file (SSL-only audio); a present one is still checked")
    p.add_argument("--check-files", choices=CHECK_FILES_CHOICES, default="auto",
                   help=f"check that wav.scp's audio files exist and are not empty: auto (dirs of up "
                        f"to {CHECK_FILES_MAX_UTTS} utterances), yes (always) or no")
    return p


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    try:
        bad = 0
        for d in args.dirs:
            result = check_data_dir(d, need_text=not args.no_text, check_files=args.check_files)
            if result.problems:
                bad += 1
                print(f"ERROR: {d}: {len(result.problems)} problem(s):", file=sys.stderr)
                for msg in result.problems:
                    print(f"  {msg}", file=sys.stderr)
            else:
                print(f"{d}: valid data dir", file=sys.stderr)
            for note in result.notes:
                print(f"NOTE: {note}", file=sys.stderr)
    except DataError as e:
        print(f"ERROR: {e}", file=sys.stderr)
        return 1
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
