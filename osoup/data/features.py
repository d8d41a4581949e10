"""Kaldi-compatible log-mel filterbank features, vectorised in numpy over all frames.

Matches ``compute-fbank-feats`` with: 25 ms Povey window every 10 ms, ``snip_edges=true``
(only whole frames; a signal shorter than one window gives zero frames), DC offset removal,
pre-emphasis 0.97 (first sample pre-emphasised against itself), zero-padding to a power of two,
power spectrum, triangular mel filters on Kaldi's mel scale (1127 ln(1 + f/700)) from 20 Hz to
Nyquist, and log with the mel energies floored at float32 machine epsilon. Dither is 0 by
default (deterministic features); set ``dither`` and ``seed`` to mimic Kaldi's training-time
dither.

Kaldi reads 16-bit wav as integer-valued floats, so waveforms in [-1, 1] are multiplied by
32768 first (``scale``); this only shifts the log-mel values by a constant, except where the
energy floor applies (digital silence).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

FLOAT_EPS = float(np.finfo(np.float32).eps)


@dataclass(frozen=True)
class FbankOptions:
    """Frame and filterbank settings (Kaldi option names in comments)."""

    sample_rate: int = 16000  # --sample-frequency
    frame_length_ms: float = 25.0  # --frame-length
    frame_shift_ms: float = 10.0  # --frame-shift
    num_mel_bins: int = 80  # --num-mel-bins
    low_freq: float = 20.0  # --low-freq
    high_freq: float = 0.0  # --high-freq (<= 0: offset from Nyquist)
    preemph: float = 0.97  # --preemphasis-coefficient
    remove_dc: bool = True  # --remove-dc-offset
    dither: float = 0.0  # --dither
    scale: float = 32768.0  # float [-1, 1] -> int16 range, as Kaldi sees wav files

    @property
    def window_size(self) -> int:
        return int(self.sample_rate * self.frame_length_ms / 1000)

    @property
    def window_shift(self) -> int:
        return int(self.sample_rate * self.frame_shift_ms / 1000)

    @property
    def fft_size(self) -> int:
        return 1 << (self.window_size - 1).bit_length()


def num_frames(num_samples: int, opts: FbankOptions = FbankOptions()) -> int:
    """Frames produced by ``snip_edges=true``: only windows that fit entirely."""
    if num_samples < opts.window_size:
        return 0
    return 1 + (num_samples - opts.window_size) // opts.window_shift


def _mel(f: np.ndarray | float) -> np.ndarray | float:
    return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)


@lru_cache(maxsize=8)
def mel_filterbank(opts: FbankOptions = FbankOptions()) -> np.ndarray:
    """Triangular mel weights [fft_size//2 + 1, num_mel_bins], float32.

    Triangles are linear in mel, with equally spaced edges between mel(low_freq) and
    mel(high_freq); the Nyquist bin gets no weight (as in Kaldi, whose banks cover bins
    0 .. fft_size/2 - 1).
    """
    nyquist = opts.sample_rate / 2
    high = opts.high_freq if opts.high_freq > 0 else nyquist + opts.high_freq
    if not (0 <= opts.low_freq < high <= nyquist):
        raise ValueError(f"bad mel range: low {opts.low_freq} Hz, high {high} Hz, Nyquist {nyquist} Hz")
    n_fft_bins = opts.fft_size // 2
    mel_lo, mel_hi = _mel(opts.low_freq), _mel(high)
    delta = (mel_hi - mel_lo) / (opts.num_mel_bins + 1)
    left = mel_lo + delta * np.arange(opts.num_mel_bins)
    center, right = left + delta, left + 2 * delta
    bin_mel = _mel(np.arange(n_fft_bins) * opts.sample_rate / opts.fft_size)[:, None]
    up = (bin_mel - left) / (center - left)
    down = (right - bin_mel) / (right - center)
    w = np.where(bin_mel <= center, up, down)
    w = np.where((bin_mel > left) & (bin_mel < right), w, 0.0)
    out = np.zeros((n_fft_bins + 1, opts.num_mel_bins), dtype=np.float32)
    out[:n_fft_bins] = w
    return out


@lru_cache(maxsize=8)
def povey_window(size: int) -> np.ndarray:
    """Kaldi's Povey window: a Hann window raised to the power 0.85 (float32)."""
    n = np.arange(size, dtype=np.float64)
    return ((0.5 - 0.5 * np.cos(2 * math.pi * n / (size - 1))) ** 0.85).astype(np.float32)


def fbank(
    wav: np.ndarray,
    opts: FbankOptions = FbankOptions(),
    seed: int | None = None,
) -> np.ndarray:
    """Log-mel filterbank of one utterance: float32 [num_frames, num_mel_bins].

    ``wav`` is mono float audio at ``opts.sample_rate`` in [-1, 1] (multiplied by ``opts.scale``).
    All frames are processed at once: strided frame view, per-frame DC removal and
    pre-emphasis, window, one batched real FFT, one matrix product with the mel weights.
    """
    wav = np.asarray(wav)
    if wav.ndim != 1:
        raise ValueError(f"fbank expects a 1-D waveform, got shape {wav.shape}")
    n = num_frames(len(wav), opts)
    if n == 0:
        return np.zeros((0, opts.num_mel_bins), dtype=np.float32)
    size, shift = opts.window_size, opts.window_shift
    x = wav.astype(np.float32, copy=False)
    if opts.scale != 1.0:
        x = x * np.float32(opts.scale)
    view = np.lib.stride_tricks.sliding_window_view(x, size)[: (n - 1) * shift + 1 : shift]
    frames = np.array(view, dtype=np.float32)  # [n, size] copy, as we modify it
    if opts.dither > 0:
        rng = np.random.default_rng(seed)
        frames += np.float32(opts.dither) * rng.standard_normal(frames.shape, dtype=np.float32)
    if opts.remove_dc:
        frames -= frames.mean(axis=1, keepdims=True)
    if opts.preemph != 0.0:
        coef = np.float32(opts.preemph)
        frames[:, 1:] -= coef * frames[:, :-1]
        frames[:, 0] -= coef * frames[:, 0]
    frames *= povey_window(size)
    spec = np.fft.rfft(frames, n=opts.fft_size, axis=1)
    power = spec.real**2 + spec.imag**2
    mel = power.astype(np.float32, copy=False) @ mel_filterbank(opts)
    np.maximum(mel, np.float32(FLOAT_EPS), out=mel)
    return np.log(mel, out=mel)


def compute_fbank(wav: np.ndarray, opts: FbankOptions = FbankOptions()) -> np.ndarray:
    """The stage-3 features of one 16 kHz waveform (no dither), for callers outside the recipe
    such as decoding raw audio files; same values as osoup-compute-fbank writes."""
    return fbank(wav, opts)
