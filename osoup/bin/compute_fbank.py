"""Stage 3: 80-dim log-mel fbank of every utterance in a wav.scp, into a kaldiio ark/scp.

With ``--feats-type raw`` (pretrained wav2vec 2.0-style backbones, paper appendix F.2) each
utterance is stored instead as its 16 kHz waveform, a float32 matrix [num_samples, 1] (resampled
when the file has another rate), and ``--out-num-samples`` receives the sample counts
(``osoup.data.feats_type``).

One process per job (utils/run.pl JOB=1:nj ...). The ark is written under a temporary name and
renamed when complete; feats.scp and utt2num_frames are written (atomically) after it, so a
killed job never leaves outputs that look finished. Unreadable audio is logged by utterance and
file and left out; the job fails if more than --max-bad-frac of its utterances are bad.
"""
from __future__ import annotations

import os

# One job = one core (parallelism comes from nj jobs). Set before numpy loads OpenBLAS, whose
# threads would otherwise spin on the small mel matrix product and cost ~3x the CPU time.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import contextlib  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import configargparse  # noqa: E402
import numpy as np  # noqa: E402

from osoup.data.audio import load_audio  # noqa: E402
from osoup.data.datadir import read_scp, write_scp  # noqa: E402
from osoup.data.feats_type import FEATS_TYPES, RAW_SAMPLE_RATE  # noqa: E402
from osoup.data.features import FbankOptions, fbank  # noqa: E402
from osoup.fileio import DataError, run_command, setup_logging  # noqa: E402

logger = logging.getLogger("compute_fbank")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", is_config_file=True, help="YAML config file")
    p.add_argument("--wav-scp", required=True, help="input wav.scp (utt-id audio-path)")
    p.add_argument("--out-ark", required=True, help="output ark")
    p.add_argument("--out-scp", required=True, help="output feats.scp (points into --out-ark)")
    p.add_argument("--out-num-frames", required=True, help="output utt2num_frames (rows of each matrix)")
    p.add_argument("--feats-type", choices=FEATS_TYPES, default="fbank",
                   help="fbank: log-mel frames; raw: the 16 kHz waveform as a [num_samples, 1] matrix")
    p.add_argument("--out-num-samples", help="output utt2num_samples (--feats-type raw)")
    p.add_argument("--sample-rate", type=int, default=16000)
    p.add_argument("--num-mel-bins", type=int, default=80)
    p.add_argument("--dither", type=float, default=0.0)
    p.add_argument("--max-bad-frac", type=float, default=0.05, help="fail above this fraction of bad utterances")
    p.add_argument("--log-interval", type=float, default=5.0, help="seconds between progress lines")
    p.add_argument("--verbose", type=int, default=1)
    return p


def _check_raw(feats_type: str, opts: FbankOptions, out_num_samples: str | Path | None) -> None:
    """Raw dumps are 16 kHz waveforms with a utt2num_samples (``osoup.data.feats_type``)."""
    if feats_type != "raw":
        return
    if opts.sample_rate != RAW_SAMPLE_RATE:
        raise DataError(f"--feats-type raw stores {RAW_SAMPLE_RATE} Hz waveforms, not --sample-rate {opts.sample_rate}")
    if out_num_samples is None:
        raise DataError("--feats-type raw needs --out-num-samples (the utt2num_samples to write)")


def _features(path: str, opts: FbankOptions, feats_type: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(waveform, feature matrix) of one audio file; DataError names the file when unusable."""
    if path.endswith("|"):
        raise DataError(f"{path}: piped commands in wav.scp are not supported")
    wav = load_audio(path, opts.sample_rate)
    feats = wav[:, None] if feats_type == "raw" else fbank(wav, opts, seed=seed)
    if feats.shape[0] == 0:
        raise DataError(f"{path}: {len(wav)} samples, shorter than one 25 ms frame")
    return wav, feats


def compute_fbank_job(
    wav_scp: str | Path,
    out_ark: str | Path,
    out_scp: str | Path,
    out_num_frames: str | Path,
    opts: FbankOptions = FbankOptions(),
    max_bad_frac: float = 0.05,
    log_interval: float = 5.0,
    feats_type: str = "fbank",
    out_num_samples: str | Path | None = None,
) -> dict:
    """Run one job; returns {"utts", "bad", "frames", "audio_sec", "wall_sec"}. ``feats_type``
    "raw" stores waveforms (frames then count samples) and writes ``out_num_samples`` too."""
    import kaldiio

    entries = read_scp(wav_scp)
    if not entries:
        raise DataError(f"{wav_scp}: empty wav.scp")
    out_ark = Path(out_ark)
    _check_raw(feats_type, opts, out_num_samples)
    for stale in (out_scp, out_num_frames, out_num_samples):
        if stale is not None:
            Path(stale).unlink(missing_ok=True)
    out_ark.parent.mkdir(parents=True, exist_ok=True)
    tmp_ark = out_ark.with_name(f".{out_ark.name}.{os.getpid()}.tmp")
    offsets: dict[str, str] = {}
    nframes: dict[str, str] = {}
    bad: list[str] = []
    audio_sec = 0.0
    t0 = last = time.time()
    try:
        with open(tmp_ark, "wb") as f:
            for i, (utt, path) in enumerate(entries.items(), 1):
                try:
                    wav, feats = _features(path, opts, feats_type, seed=i)
                except DataError as e:
                    bad.append(utt)
                    logger.warning("bad utterance %s: %s", utt, e)
                else:
                    start = f.tell()
                    kaldiio.save_ark(f, {utt: feats})
                    offsets[utt] = f"{out_ark}:{start + len(utt.encode('utf-8')) + 1}"
                    nframes[utt] = str(feats.shape[0])
                    audio_sec += len(wav) / opts.sample_rate
                now = time.time()
                if now - last >= log_interval:
                    rate = i / (now - t0)
                    logger.info("%d/%d utterances, %.1f utt/s, %.0fx real time, ETA %.0f s",
                                i, len(entries), rate, audio_sec / (now - t0), (len(entries) - i) / rate)
                    last = now
        if len(bad) / len(entries) > max_bad_frac:
            raise DataError(
                f"{wav_scp}: {len(bad)} of {len(entries)} utterances have bad audio "
                f"({len(bad) / len(entries):.1%} > --max-bad-frac {max_bad_frac}); first: {bad[0]}"
            )
        os.replace(tmp_ark, out_ark)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_ark)
    write_scp(out_scp, offsets)
    write_scp(out_num_frames, nframes)
    if feats_type == "raw":
        write_scp(out_num_samples, nframes)
    wall = time.time() - t0
    frames = sum(int(n) for n in nframes.values())
    logger.info("done: %d utterances (%d bad), %d frames, %.1f s audio in %.1f s (%.0fx real time)",
                len(entries), len(bad), frames, audio_sec, wall, audio_sec / max(wall, 1e-9))
    return {"utts": len(entries), "bad": len(bad), "frames": frames, "audio_sec": audio_sec, "wall_sec": wall}


def _run(args, opts: FbankOptions) -> None:
    compute_fbank_job(args.wav_scp, args.out_ark, args.out_scp, args.out_num_frames, opts,
                      args.max_bad_frac, args.log_interval, args.feats_type, args.out_num_samples)


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    logger.info("config: %s", vars(args))
    opts = FbankOptions(sample_rate=args.sample_rate, num_mel_bins=args.num_mel_bins, dither=args.dither)
    return run_command(lambda: _run(args, opts))


if __name__ == "__main__":
    sys.exit(main())
