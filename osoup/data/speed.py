"""Kaldi-style speed perturbation (stage 2): resampling changes tempo and pitch together.

Like ``sox speed f``: the signal is reinterpreted as sampled at ``f * sr`` and resampled back to
``sr``, so it lasts ``1/f`` as long. Factor 1.0 keeps the original utterances (ids and audio);
other factors get ``sp<f>-`` prefixed utterance and speaker ids and new 16 kHz flac files under
``<out>/wav/``.
"""
from __future__ import annotations

import logging
import os
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from osoup.data.audio import audio_duration, load_audio, resample
from osoup.data.datadir import read_data_dir, spk2utt_from_utt2spk, write_scp
from osoup.fileio import DataError

logger = logging.getLogger(__name__)


def speed_perturb(wav: np.ndarray, factor: float, sr: int = 16000) -> np.ndarray:
    """The waveform played ``factor`` times faster (length about len/factor)."""
    if factor <= 0:
        raise ValueError(f"speed factor must be positive, got {factor}")
    src = int(round(sr * factor))
    return wav.astype(np.float32, copy=True) if src == sr else resample(wav, src, sr)


def prefix(factor: float) -> str:
    """Utterance/speaker id prefix, e.g. ``sp0.9-``; empty for factor 1."""
    return "" if factor == 1.0 else f"sp{factor:g}-"


def _perturb_one(args: tuple[str, str, tuple[tuple[float, str], ...], int]) -> tuple[str, dict[float, float] | str]:
    """Worker: write every perturbed copy of one utterance that is not there yet.
    Returns (utt, {factor: duration}) or (utt, error message)."""
    import soundfile

    utt, audio, outputs, sr = args
    durs: dict[float, float] = {}
    wav = None
    try:
        for factor, out in outputs:
            if os.path.exists(out):  # finished by an earlier run: written by rename only
                durs[factor] = audio_duration(out)
                continue
            if wav is None:
                wav = load_audio(audio, sr)
            y = speed_perturb(wav, factor, sr)
            tmp = f"{out}.{os.getpid()}.tmp"
            soundfile.write(tmp, np.clip(y, -1.0, 1.0), sr, format="FLAC", subtype="PCM_16")
            os.replace(tmp, out)
            durs[factor] = len(y) / sr
    except DataError as e:
        return utt, str(e)
    return utt, durs


def perturb_data_dir(
    in_dir: str | Path,
    out_dir: str | Path,
    factors: list[float],
    sr: int = 16000,
    nj: int = 1,
    max_bad_frac: float = 0.05,
) -> Counter:
    """Write the speed-perturbed copy of a data dir. Idempotent: finished flac files are reused.

    Utterances whose audio cannot be read are left out of the perturbed copies (counted and
    logged; the factor-1.0 copy keeps them for the feature stage to judge); more than
    ``max_bad_frac`` of them fails. utt2dur holds the durations of the written audio.
    """
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if (in_dir / "segments").exists():
        raise DataError(f"{in_dir}/segments: segmented data dirs are not supported by speed perturbation")
    files = read_data_dir(in_dir)
    for need in ("wav.scp", "utt2spk", "text"):
        if need not in files:
            raise DataError(f"{in_dir}/{need}: missing")
    if len(set(factors)) != len(factors) or any(f <= 0 for f in factors):
        raise ValueError(f"speed factors must be distinct and positive: {factors}")
    wav_scp = files["wav.scp"]
    wav_dir = (out_dir / "wav").resolve()
    wav_dir.mkdir(parents=True, exist_ok=True)
    perturbed = [f for f in factors if f != 1.0]
    jobs = []
    for utt, audio in wav_scp.items():
        if audio.endswith("|"):
            raise DataError(f"{in_dir}/wav.scp: {utt}: piped commands are not supported")
        outs = tuple((f, str(wav_dir / f"{prefix(f)}{utt}.flac")) for f in perturbed)
        jobs.append((utt, audio, outs, sr))
    results: dict[str, dict[float, float] | str] = {}
    t0 = last = time.time()
    if perturbed:
        with ProcessPoolExecutor(max_workers=nj) if nj > 1 else _Serial() as pool:
            for i, (utt, res) in enumerate(pool.map(_perturb_one, jobs, chunksize=8), 1):
                results[utt] = res
                now = time.time()
                if now - last > 10 or i == len(jobs):
                    rate = i / max(now - t0, 1e-9)
                    logger.info("speed perturbation: %d/%d utterances, %.1f utt/s, ETA %.0f s",
                                i, len(jobs), rate, (len(jobs) - i) / rate)
                    last = now
    bad = {u: r for u, r in results.items() if isinstance(r, str)}
    for u, msg in list(bad.items())[:20]:
        logger.warning("bad audio, not perturbed: %s", msg)
    counts = Counter(bad_audio=len(bad))
    if wav_scp and len(bad) / len(wav_scp) > max_bad_frac:
        raise DataError(
            f"{in_dir}: {len(bad)} of {len(wav_scp)} audio files unreadable ({len(bad) / len(wav_scp):.1%}), "
            f"more than --max-bad-frac {max_bad_frac}; first: {next(iter(bad.values()))}"
        )
    utt2dur = files.get("utt2dur", {})
    out: dict[str, dict[str, str]] = {name: {} for name in ("wav.scp", "utt2spk", "utt2dur", "text", "text.en")}
    for factor in factors:
        p = prefix(factor)
        for utt in wav_scp:
            if factor != 1.0 and not isinstance(results.get(utt), dict):
                continue  # bad audio: counted above
            new = p + utt
            if factor == 1.0:
                out["wav.scp"][new] = wav_scp[utt]
                if utt in utt2dur:
                    out["utt2dur"][new] = utt2dur[utt]
            else:
                out["wav.scp"][new] = str(wav_dir / f"{new}.flac")
                out["utt2dur"][new] = f"{results[utt][factor]:.3f}"
            for name in ("utt2spk", "text", "text.en"):
                if name in files:
                    if utt not in files[name]:
                        raise DataError(f"{in_dir}/{name}: no line for utterance {utt}")
                    out[name][new] = (p if name == "utt2spk" else "") + files[name][utt]
        counts[f"sp{factor:g}"] = sum(1 for u in out["wav.scp"] if u.startswith(p)) if p else len(wav_scp)
    for name, table in out.items():
        path = out_dir / name
        # A partial utt2dur (the input had none for the 1.0 copies) would be worse than none.
        if table and (name != "utt2dur" or len(table) == len(out["wav.scp"])):
            write_scp(path, table)
        else:
            path.unlink(missing_ok=True)
    write_scp(out_dir / "spk2utt", spk2utt_from_utt2spk(out["utt2spk"]))
    counts["utts"] = len(out["wav.scp"])
    logger.info("%s: wrote %d utterances (factors %s, %d bad audio files)", out_dir, len(out["wav.scp"]),
                " ".join(f"{f:g}" for f in factors), len(bad))
    return counts


class _Serial:
    """Stand-in for a process pool when nj == 1 (no fork, easier debugging)."""

    def __enter__(self) -> "_Serial":
        return self

    def __exit__(self, *exc) -> None:
        return None

    def map(self, fn, items, chunksize: int = 1):
        return map(fn, items)

