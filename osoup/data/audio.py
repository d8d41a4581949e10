"""Audio reading and band-limited resampling, in numpy (no torch import, no FFmpeg).

Everything goes through soundfile (libsndfile reads wav, flac, ogg and mp3); torchaudio 2.11's
load/save need torchcodec and FFmpeg, which we do not want as a dependency. Resampling is a
windowed-sinc polyphase filter (Hann window, 6 zero crossings, roll-off 0.99: the same design
as torchaudio's default ``sinc_interp_hann``), so 48 kHz Common Voice mp3 becomes 16 kHz
without aliasing, and speed perturbation can reuse it with arbitrary rational ratios.
"""
from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

import numpy as np

from osoup.fileio import DataError

LOWPASS_ZEROS = 6
ROLLOFF = 0.99


@lru_cache(maxsize=32)
def _polyphase_filters(up: int, down: int) -> tuple[np.ndarray, int]:
    """Filters for resampling by ``up/down`` (already reduced by their gcd).

    Output sample j sits at input time j*down/up. Writing j = q*up + p, its filter only depends
    on the phase p, and it reads the input window starting at q*down - half, so one matrix
    product over strided windows computes every output sample of phase p at once.
    Returns (filters[up, taps], half) with taps = 2*half + down.
    """
    cutoff = min(up, down) * ROLLOFF  # in units of the reduced input rate `down`
    half = math.ceil(LOWPASS_ZEROS * down / cutoff)
    offsets = np.arange(-half, half + down, dtype=np.float64)  # input index relative to q*down
    phase_time = np.arange(up, dtype=np.float64)[:, None] * down / up  # in input samples
    t = (offsets[None, :] - phase_time) / down * cutoff  # time in units of the cutoff period
    t = np.clip(t, -LOWPASS_ZEROS, LOWPASS_ZEROS)
    window = np.cos(t * math.pi / LOWPASS_ZEROS / 2) ** 2
    filters = np.sinc(t) * window * (cutoff / down)
    return filters.astype(np.float32), half


def resample(x: np.ndarray, orig_sr: int, new_sr: int) -> np.ndarray:
    """Resample a 1-D signal from ``orig_sr`` to ``new_sr`` (integers; any rational ratio).

    Output length is ceil(len(x) * new_sr / orig_sr). Returns float32.
    """
    x = np.asarray(x, dtype=np.float32)
    if x.ndim != 1:
        raise ValueError(f"resample expects a 1-D signal, got shape {x.shape}")
    orig_sr, new_sr = int(orig_sr), int(new_sr)
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"sample rates must be positive, got {orig_sr} -> {new_sr}")
    if orig_sr == new_sr:
        return x.copy()
    g = math.gcd(orig_sr, new_sr)
    down, up = orig_sr // g, new_sr // g
    filters, half = _polyphase_filters(up, down)
    n_out = -(-len(x) * up // down)
    if n_out == 0:
        return np.zeros(0, dtype=np.float32)
    n_blocks = -(-n_out // up)  # values of q needed
    taps = filters.shape[1]
    # Pad so that every window [q*down - half, q*down - half + taps) is inside the buffer.
    need = (n_blocks - 1) * down + taps
    padded = np.zeros(max(need, half + len(x)), dtype=np.float32)
    padded[half : half + len(x)] = x
    windows = np.lib.stride_tricks.sliding_window_view(padded, taps)[: (n_blocks - 1) * down + 1 : down]
    out = windows @ filters.T  # [n_blocks, up]: row q, column p -> output q*up + p
    return np.ascontiguousarray(out.reshape(-1)[:n_out])


def load_audio(path: str | Path, target_sr: int = 16000) -> np.ndarray:
    """Read an audio file as float32 mono in [-1, 1] at ``target_sr``.

    Multi-channel audio is averaged. Missing, unreadable or empty files raise DataError naming
    the file, so callers can count them as bad utterances.
    """
    import soundfile

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: audio file not found")
    try:
        data, sr = soundfile.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError on corrupt data
        raise DataError(f"{path}: cannot decode audio ({e})") from None
    if data.shape[0] == 0:
        raise DataError(f"{path}: audio file has no samples")
    wav = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if not np.all(np.isfinite(wav)):
        raise DataError(f"{path}: audio contains NaN or infinite samples")
    if sr != target_sr:
        wav = resample(wav, sr, target_sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding); DataError if unreadable."""
    import soundfile

    try:
        info = soundfile.info(str(path))
    except Exception as e:
        raise DataError(f"{path}: cannot read audio header ({e})") from None
    return info.frames / info.samplerate
