"""Audio reading and band-limited resampling, in numpy (no torch import, no FFmpeg).

Everything goes through soundfile (libsndfile reads wav, flac, ogg and mp3); torchaudio 2.11's
load/save need torchcodec and FFmpeg, which we do not want as a dependency. Resampling is a
windowed-sinc polyphase filter (Hann window, 6 zero crossings, roll-off 0.99: the same design
as torchaudio's default ``sinc_interp_hann``), so 48 kHz Common Voice mp3 becomes 16 kHz
without aliasing, and speed perturbation can reuse it with arbitrary rational ratios.

Reading checks the whole file: a clip cut short (an interrupted download, ``truncate``) keeps
the duration of the complete clip in its header, so a header-only probe would pair half the
audio with the full transcript. :func:`check_audio` and :func:`load_audio` decode every sample
and raise :class:`AudioError`, whose ``reason`` names the kind of damage (the bad-item
categories of the corpus parsers) and whose message names the file (test/test_audio_errors.py).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
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


REASON_MISSING = "missing audio file"
REASON_UNDECODABLE = "unreadable or corrupt audio"
REASON_EMPTY = "zero-length audio"
REASON_TRUNCATED = "truncated audio"
REASON_NONFINITE = "NaN or infinite samples"

# Decoded audio may fall this much short of its header before it counts as truncated: mp3
# decoders differ by an encoder delay (~50 ms at 48 kHz) when a file lacks gapless info.
TRUNCATION_TOLERANCE_SEC = 0.1
TRUNCATION_TOLERANCE_FRAC = 0.01
BLOCK_FRAMES = 1 << 16
# WAV writers streaming to a pipe put a placeholder (0 or ~4 GiB) as the data chunk size.
_UNKNOWN_RIFF_SIZES = (0, 0xFFFFFFFF)
_RIFF_MAX_CHUNKS = 64


class AudioError(DataError):
    """An unusable audio file. ``reason`` is one of the ``REASON_*`` categories (how the corpus
    parsers count bad items); the message is ``"<path>: <detail>"``."""

    def __init__(self, path: str | Path, reason: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path, self.reason, self.detail = str(path), reason, detail


@dataclass(frozen=True)
class AudioInfo:
    """A fully decoded file: its sample rate, decoded frames and the frames its header declares."""

    samplerate: int
    frames: int
    header_frames: int

    @property
    def duration(self) -> float:
        return self.frames / self.samplerate


def _libsndfile_message(e: Exception) -> str:
    """libsndfile's reason without the "Error opening '<path>': " prefix; its "File does not
    exist or is not a regular file" for an mp3 it cannot parse is replaced by what it means."""
    msg = (str(e).splitlines() or [""])[0]
    if msg.startswith("Error opening ") and "': " in msg:
        msg = msg.split("': ", 1)[1]
    msg = msg.removeprefix("Error : ")
    if "does not exist or is not a regular file" in msg or "Format not recognised" in msg:
        return "not a recognised audio format (damaged, or not audio at all)"
    return msg.strip() or type(e).__name__


def _riff_declared_frames(path: str) -> int | None:
    """Frames the data chunk of a RIFF/WAVE file declares (libsndfile silently clamps its frame
    count to the bytes present, so a truncated wav looks complete); None when not a plain WAV
    or the size is a streaming placeholder."""
    with open(path, "rb") as fh:
        head = fh.read(12)
        if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
            return None
        block_align = 0
        for _ in range(_RIFF_MAX_CHUNKS):
            chunk = fh.read(8)
            if len(chunk) < 8:
                return None
            cid, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if cid == b"data":
                if block_align <= 0 or size in _UNKNOWN_RIFF_SIZES:
                    return None
                return size // block_align
            if cid == b"fmt ":
                body = fh.read(size + size % 2)
                block_align = int.from_bytes(body[12:14], "little") if len(body) >= 14 else 0
            else:
                fh.seek(size + size % 2, os.SEEK_CUR)
    return None


def _open(path: str | Path):
    """``soundfile.SoundFile`` of ``path``; AudioError for a missing, empty or unparsable file."""
    import soundfile

    path = str(path)
    if not os.path.exists(path):
        raise AudioError(path, REASON_MISSING, "audio file not found")
    if not os.path.isfile(path):
        raise AudioError(path, REASON_MISSING, "not a regular file (a directory?)")
    if os.path.getsize(path) == 0:
        raise AudioError(path, REASON_EMPTY, "empty file (0 bytes)")
    try:
        return soundfile.SoundFile(path)
    except Exception as e:  # libsndfile raises LibsndfileError/RuntimeError on corrupt data
        raise AudioError(path, REASON_UNDECODABLE, f"cannot decode audio: {_libsndfile_message(e)}") from None


def _check_length(path: str, decoded: int, header: int, sr: int) -> None:
    """AudioError when fewer frames decode than the header declares (beyond the tolerance)."""
    tolerance = max(TRUNCATION_TOLERANCE_SEC * sr, TRUNCATION_TOLERANCE_FRAC * header)
    if header - decoded > tolerance:
        raise AudioError(path, REASON_TRUNCATED,
                         f"truncated: decodes to {decoded / sr:.3f} s but its header says "
                         f"{header / sr:.3f} s (incomplete copy or download?)")
    if decoded == 0:
        raise AudioError(path, REASON_EMPTY, "audio file has no samples")


def _position(f) -> int:
    """Frames decoded so far (libsndfile keeps counting inside a block that then fails)."""
    try:
        return int(f.tell())
    except Exception:
        return 0


def _decode(path: str | Path, keep: bool) -> tuple[AudioInfo, np.ndarray | None]:
    """Decode every frame of ``path`` block by block (float32, [frames, channels] when kept);
    raise AudioError for anything that makes the file unusable."""
    path = str(path)
    with _open(path) as f:
        sr = f.samplerate
        declared = _riff_declared_frames(path) if f.format.startswith("WAV") else None
        header = max(f.frames, declared or 0)
        buf = np.empty((BLOCK_FRAMES, f.channels), dtype=np.float32)
        blocks: list[np.ndarray] = []
        n = 0
        try:
            while True:
                got = f.read(dtype="float32", out=buf)
                if len(got) == 0:
                    break
                if not np.isfinite(got).all():
                    raise AudioError(path, REASON_NONFINITE, "audio contains NaN or infinite samples")
                n += len(got)
                if keep:
                    blocks.append(got.copy())
        except AudioError:
            raise
        except Exception as e:  # the header was fine, the stream stops early
            n = max(n, _position(f))
            if header == 0:
                raise AudioError(path, REASON_UNDECODABLE,
                                 f"cannot decode audio: {_libsndfile_message(e)}") from None
            raise AudioError(path, REASON_TRUNCATED,
                             f"truncated or damaged: decoding stopped after {n / sr:.3f} s of the "
                             f"{header / sr:.3f} s its header says ({_libsndfile_message(e)})") from None
    _check_length(path, n, header, sr)
    data = None
    if keep:
        data = np.concatenate(blocks) if len(blocks) != 1 else blocks[0]
    return AudioInfo(sr, n, header), data


def check_audio(path: str | Path) -> AudioInfo:
    """Decode the whole file without keeping it and return its decoded length; AudioError
    (missing, empty, undecodable, truncated, non-finite) names the file and the reason."""
    return _decode(path, keep=False)[0]


def load_audio(path: str | Path, target_sr: int = 16000) -> np.ndarray:
    """Read an audio file as float32 mono in [-1, 1] at ``target_sr``.

    Multi-channel audio is averaged. Missing, empty, undecodable or truncated files raise
    AudioError (a DataError) naming the file, so callers can count them as bad utterances.
    """
    info, data = _decode(path, keep=True)
    wav = data[:, 0] if data.shape[1] == 1 else data.mean(axis=1)
    if info.samplerate != target_sr:
        wav = resample(wav, info.samplerate, target_sr)
    return np.ascontiguousarray(wav, dtype=np.float32)


def audio_duration(path: str | Path) -> float:
    """Duration in seconds from the file header (no decoding): for files this program wrote
    itself; AudioError if unreadable."""
    with _open(path) as f:
        return f.frames / f.samplerate
