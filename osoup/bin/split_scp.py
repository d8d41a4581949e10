"""osoup-split-scp: split an scp (or any key-value file) into N contiguous parts.

    osoup-split-scp wav.scp split/wav.1.scp split/wav.2.scp ... [--utt2spk utt2spk]

Parts are balanced by line count. With --utt2spk a speaker's utterances stay in one part
(they must be contiguous in the input, as they are in a sorted data dir). Like Kaldi's
split_scp.pl, asking for more parts than there are lines (or speakers) is an error.
"""
from __future__ import annotations

import bisect
import sys
from pathlib import Path

import configargparse

from osoup.data.datadir import read_scp
from osoup.fileio import DataError, atomic_write, read_text_lines, run_command


def contiguous_split(sizes: list[int], n_parts: int) -> list[int]:
    """Boundaries ``b_0=0 < b_1 < ... < b_N=len(sizes)`` over groups of the given sizes such
    that every part has at least one group and part totals are close to total/N: each inner
    boundary goes to the group boundary nearest to its ideal cumulative count."""
    n_groups = len(sizes)
    if n_parts < 1:
        raise ValueError("need at least one part")
    if n_parts > n_groups:
        raise ValueError(f"cannot split {n_groups} groups into {n_parts} non-empty parts")
    cum = [0]
    for s in sizes:
        cum.append(cum[-1] + s)
    total = cum[-1]
    bounds = [0]
    for i in range(1, n_parts):
        target = i * total / n_parts
        lo, hi = bounds[-1] + 1, n_groups - (n_parts - i)
        j = bisect.bisect_left(cum, target, lo, hi + 1)
        candidates = [c for c in (j - 1, j) if lo <= c <= hi] or [min(max(j, lo), hi)]
        best = min(candidates, key=lambda c: (abs(cum[c] - target), c))
        bounds.append(best)
    bounds.append(n_groups)
    return bounds


def split_scp(in_path: str | Path, out_paths: list[str | Path], utt2spk: str | Path | None = None) -> list[int]:
    """Write ``in_path``'s lines into ``out_paths`` (contiguous, balanced); returns line counts."""
    lines = read_text_lines(in_path)
    keys = []
    for i, line in enumerate(lines, 1):
        key = line.split(" ", 1)[0]
        if not key:
            raise DataError(f"{in_path}:{i}: empty line or line starting with a space")
        keys.append(key)
    if utt2spk is not None:
        spk_of = read_scp(utt2spk)
        groups: list[list[int]] = []
        seen: set[str] = set()
        prev = None
        for i, key in enumerate(keys):
            if key not in spk_of:
                raise DataError(f"{in_path}:{i + 1}: utterance {key!r} is not in {utt2spk}")
            spk = spk_of[key]
            if spk != prev:
                if spk in seen:
                    raise DataError(f"{in_path}:{i + 1}: utterances of speaker {spk!r} are not "
                                    "contiguous (sort the file by key)")
                seen.add(spk)
                groups.append([])
                prev = spk
            groups[-1].append(i)
        what = "speakers"
    else:
        groups = [[i] for i in range(len(keys))]
        what = "lines"
    if len(out_paths) > len(groups):
        raise DataError(f"{in_path}: cannot split {len(groups)} {what} into {len(out_paths)} "
                        "non-empty parts; use fewer parts")
    bounds = contiguous_split([len(g) for g in groups], len(out_paths))
    counts = []
    for part, out in enumerate(out_paths):
        idx = [i for g in groups[bounds[part]:bounds[part + 1]] for i in g]
        with atomic_write(out) as f:
            for i in idx:
                f.write(lines[i] + "\n")
        counts.append(len(idx))
    return counts


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__,
                                      formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("input", metavar="IN", help="scp file to split")
    p.add_argument("outputs", nargs="+", metavar="OUT", help="one output file per part")
    p.add_argument("--utt2spk", default=None, help="keep each speaker's utterances in one part")
    return p


def _run(args) -> None:
    split_scp(args.input, args.outputs, args.utt2spk)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
