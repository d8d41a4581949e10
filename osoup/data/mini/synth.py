"""Speech for the mini corpus: espeak-ng through ctypes, speaker variation, noise, 48 kHz mp3.

espeak-ng comes from the ``espeakng-loader`` wheel (shared library + voice data, no system
install). It keeps global state and is not thread safe, so each worker process initialises it
once (:func:`init_worker`) and synthesises one utterance at a time in synchronous mode, with a
callback that collects the 22.05 kHz int16 samples.

A speaker is an espeak voice (language base voice, optionally a regional variant such as
``en-us`` or ``ca-va``, plus a voice variant ``+m1``..``+f5`` from ``espeak-ng-data/voices/!v``)
with its own rate, pitch and pitch range. Each clip then gets silence padding, coloured noise at
a random SNR and a random gain, and is resampled to 48 kHz like Common Voice mp3s.
"""
from __future__ import annotations

import ctypes
import hashlib
import math
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from osoup.fileio import DataError, atomic_write

ESPEAK_RATE = 22050
OUT_RATE = 48000

# espeak-ng API constants (speak_lib.h)
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_PARAM_RATE, _PARAM_PITCH, _PARAM_RANGE = 1, 3, 4

# Base voice per language and regional voices a speaker may use instead, with the Common
# Voice "accent" label recorded for it.
LANG_VOICES: dict[str, list[tuple[str, str]]] = {
    "en": [("en", "england"), ("en-us", "us"), ("en-gb-scotland", "scotland"), ("en-029", "bermuda")],
    "fr": [("fr", "france"), ("fr-be", "belgium"), ("fr-ch", "switzerland")],
    "de": [("de", "germany")],
    "es": [("es", "nortepeninsular"), ("es-419", "americacentral")],
    "ca": [("ca", "central"), ("ca-ba", "balear"), ("ca-nw", "nord-occidental"), ("ca-va", "valencia")],
    "zh": [("cmn", "")],
}

_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


def espeak_paths() -> tuple[str, str]:
    """(shared library, data dir) of the espeakng-loader wheel."""
    try:
        import espeakng_loader
    except ImportError as e:  # pragma: no cover - dependency of the package
        raise DataError("espeakng-loader is not installed (pip install espeakng-loader)") from e
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def voice_variants() -> list[str]:
    """Names of the numbered male/female variants shipped in espeak-ng-data/voices/!v."""
    _, data = espeak_paths()
    vdir = Path(data) / "voices" / "!v"
    names = [p.name for p in vdir.iterdir() if re.fullmatch(r"[mf]\d+", p.name)] if vdir.is_dir() else []
    return sorted(names, key=lambda s: (s[0], int(s[1:])))


class Espeak:
    """espeak-ng driven through ctypes, one utterance at a time.

    espeak-ng keeps synthesis state in C statics that survive between utterances and even
    ``espeak_Terminate``/``espeak_Initialize`` (pitch-flutter phase, filter memories), so the
    same text comes out a few samples different depending on what was said before. To make a
    clip a pure function of its inputs (whatever the worker, --nj or a resumed run), every
    utterance gets a freshly loaded library (dlopen, initialise, seed its random generators,
    synthesise, dlclose), which costs a few milliseconds. The library is global state, so use
    one instance per process.
    """

    def __init__(self) -> None:
        self._lib_path, data_path = espeak_paths()
        self._data = data_path.encode()
        self._libc = ctypes.CDLL(None)
        self._libc.srand.argtypes = [ctypes.c_uint]
        self._chunks: list[np.ndarray] = []

        def collect(wav, n, _events):  # noqa: ANN001 - ctypes callback
            if n > 0 and wav:
                self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
            return 0

        self._callback = _CALLBACK(collect)  # keep a reference: espeak holds a raw pointer
        lib = self._open()  # fail early on a broken install
        self._close(lib)

    def _open(self) -> ctypes.CDLL:
        lib = ctypes.CDLL(self._lib_path)
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int,
                                     ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p, ctypes.c_void_p]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, self._data, _INITIALIZE_DONT_EXIT)
        if rate != ESPEAK_RATE:
            self._close(lib)
            raise DataError(f"espeak-ng initialisation with data {self._data.decode()} failed (returned {rate})")
        lib.espeak_SetSynthCallback(self._callback)
        return lib

    @staticmethod
    def _close(lib: ctypes.CDLL) -> None:
        import _ctypes

        lib.espeak_Terminate()
        _ctypes.dlclose(lib._handle)

    def synth(self, text: str, voice: str, rate: int, pitch: int, pitch_range: int, seed: int = 0) -> np.ndarray:
        """int16 samples at 22050 Hz of ``text`` spoken by ``voice`` (e.g. "fr+m3"); the same
        arguments always give the same samples."""
        lib = self._open()
        try:
            if lib.espeak_SetVoiceByName(voice.encode()) != 0:
                raise DataError(f"espeak-ng has no voice {voice!r}")
            lib.espeak_SetParameter(_PARAM_RATE, int(rate), 0)
            lib.espeak_SetParameter(_PARAM_PITCH, int(pitch), 0)
            lib.espeak_SetParameter(_PARAM_RANGE, int(pitch_range), 0)
            # Noise (frication, breath) comes from espeak's own generator, seeded from the clock
            # at initialisation, and from libc rand(): seed both.
            if hasattr(lib, "espeak_ng_SetRandSeed"):
                lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
            self._libc.srand(seed & 0xFFFFFFFF)
            self._chunks = []
            data = text.encode("utf-8") + b"\0"
            err = lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
            if err != 0:
                raise DataError(f"espeak-ng failed ({err}) on {text!r}")
            lib.espeak_Synchronize()
        finally:
            self._close(lib)
        if not self._chunks:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate(self._chunks)


# ---------------------------------------------------------------------------------------------
# Speakers


@dataclass(frozen=True)
class Speaker:
    """One synthetic speaker: a voice and its prosody, plus Common Voice demographic fields."""

    client_id: str
    lang: str
    voice: str
    rate: int
    pitch: int
    pitch_range: int
    gender: str
    age: str
    accent: str


_AGES = ("", "", "teens", "twenties", "twenties", "thirties", "thirties", "fourties", "fifties", "sixties")


def make_speakers(lang: str, n: int, seed: int) -> list[Speaker]:
    """``n`` distinct speakers of ``lang``; ids are 64-hex sha256 digests of (seed, lang, index)."""
    if lang not in LANG_VOICES:
        raise DataError(f"no espeak-ng voice for language {lang!r}; known: {' '.join(LANG_VOICES)}")
    variants = voice_variants()
    rng = random.Random(f"speakers-{seed}-{lang}")
    speakers = []
    for i in range(n):
        base, accent = LANG_VOICES[lang][0] if rng.random() < 0.5 else rng.choice(LANG_VOICES[lang])
        variant = rng.choice(variants + [""])
        female = variant.startswith("f")
        pitch = rng.randint(55, 85) if female else rng.randint(20, 60)
        client_id = hashlib.sha256(f"osoup-mini/{seed}/{lang}/{i}".encode()).hexdigest()
        speakers.append(Speaker(
            client_id=client_id, lang=lang, voice=f"{base}+{variant}" if variant else base,
            rate=rng.randint(135, 205), pitch=pitch, pitch_range=rng.randint(25, 80),
            gender=("female" if female else "male") if rng.random() < 0.8 else "",
            age=rng.choice(_AGES), accent=accent if rng.random() < 0.7 else ""))
    return speakers


# ---------------------------------------------------------------------------------------------
# Signal processing


def _resample_filters(sr_in: int, sr_out: int, half_width: int, rolloff: float):
    """Polyphase windowed-sinc filter bank laid out as a [down + taps, up] matrix (see resample)."""
    g = math.gcd(sr_in, sr_out)
    up, down = sr_out // g, sr_in // g
    scale = min(1.0, up / down)  # when decimating, the filter widens and lowers its cutoff
    cutoff = rolloff * scale
    width = int(math.ceil(half_width / scale))
    phases = np.arange(up)
    taps = np.arange(-width + 1, width + 1)
    frac = ((phases * down) % up) / up  # fractional input position of each output phase
    tau = frac[:, None] - taps[None, :]  # distance (input samples) from tap to output instant
    beta = 8.6
    window = np.i0(beta * np.sqrt(np.clip(1 - (tau / (width + 1)) ** 2, 0, None))) / np.i0(beta)
    filt = cutoff * np.sinc(cutoff * tau) * window  # [up, 2*width]
    # Output m = j*up + phi sits at input time j*down + (phi*down)/up; its first tap is input
    # j*down + (phi*down)//up - width + 1. Put the taps of phase phi at rows offset from j*down.
    offset = (phases * down) // up
    bank = np.zeros((down + 2 * width, up))
    for phi in range(up):
        bank[offset[phi]: offset[phi] + 2 * width, phi] = filt[phi]
    return up, down, width, bank


def resample(x: np.ndarray, sr_in: int, sr_out: int, half_width: int = 16, rolloff: float = 0.94) -> np.ndarray:
    """Band-limited resampling by a Kaiser-windowed sinc (``half_width`` input samples each side,
    cutoff ``rolloff`` x the lower Nyquist), computed as one matrix product: every block of
    ``up`` outputs reads a window of ``down + 2*width`` inputs through a fixed filter bank."""
    x = np.asarray(x, dtype=np.float64)
    if sr_in == sr_out:
        return x.copy()
    key = (sr_in, sr_out, half_width, rolloff)
    if key not in _FILTER_CACHE:
        _FILTER_CACHE[key] = _resample_filters(sr_in, sr_out, half_width, rolloff)
    up, down, width, bank = _FILTER_CACHE[key]
    n_out = int(math.ceil(len(x) * up / down))
    n_blocks = -(-n_out // up)
    need = (n_blocks - 1) * down + bank.shape[0]
    xp = np.zeros(max(need, len(x) + 2 * width))
    xp[width - 1: width - 1 + len(x)] = x
    frames = np.lib.stride_tricks.as_strided(xp, shape=(n_blocks, bank.shape[0]),
                                             strides=(down * xp.strides[0], xp.strides[0]))
    return (frames @ bank).reshape(-1)[:n_out]


_FILTER_CACHE: dict = {}


def coloured_noise(rng: np.random.Generator, n: int, colour: float) -> np.ndarray:
    """Unit-RMS noise: white (colour 0) to strongly low-passed (colour near 1). The white
    spectrum is shaped by the magnitude response of the one-pole filter y[t] = (1-c) w[t] + c y[t-1]."""
    if colour > 0:
        m = -(-n // 2048) * 2048  # FFT-friendly length (2^11 times a small factor), cut to n
        spec = np.fft.rfft(rng.standard_normal(m))
        z = np.exp(-2j * np.pi * np.fft.rfftfreq(m))
        w = np.fft.irfft(spec * np.abs((1 - colour) / (1 - colour * z)), m)[:n]
    else:
        w = rng.standard_normal(n)
    return w / max(float(np.sqrt(np.mean(w ** 2))), 1e-12)


@dataclass(frozen=True)
class ClipParams:
    """Per-utterance randomness drawn in the parent so results do not depend on --nj."""

    lead_s: float
    trail_s: float
    snr_db: float
    noise_colour: float
    peak_db: float
    noise_seed: int


def draw_clip_params(rng: random.Random, snr: tuple[float, float] = (10.0, 30.0)) -> ClipParams:
    """Silence padding 0.05-0.35 s each side, SNR uniform in ``snr`` dB, white to brown-ish
    noise, peak -12..-1 dBFS."""
    return ClipParams(lead_s=rng.uniform(0.05, 0.35), trail_s=rng.uniform(0.05, 0.35),
                      snr_db=rng.uniform(*snr), noise_colour=rng.choice([0.0, 0.5, 0.9, 0.97]),
                      peak_db=rng.uniform(-12.0, -1.0), noise_seed=rng.getrandbits(63))


def degrade(speech: np.ndarray, sr: int, p: ClipParams, min_s: float, max_s: float) -> np.ndarray:
    """Pad with silence, add noise at ``p.snr_db`` relative to the speech power, set the peak
    level to ``p.peak_db`` dBFS. The result lasts within [min_s, max_s] (padding is shrunk or
    grown; speech itself must fit)."""
    speech = speech.astype(np.float64) / 32768.0
    n_speech = len(speech)
    lead, trail = int(p.lead_s * sr), int(p.trail_s * sr)
    max_n, min_n = int(max_s * sr), int(math.ceil(min_s * sr))
    if n_speech + lead + trail > max_n:
        spare = max(max_n - n_speech, 0)
        lead, trail = spare // 2, spare - spare // 2
    if n_speech + lead + trail < min_n:
        extra = min_n - (n_speech + lead + trail)
        lead, trail = lead + extra // 2, trail + extra - extra // 2
    x = np.concatenate([np.zeros(lead), speech, np.zeros(trail)])
    active = speech[np.abs(speech) > 1e-4]
    p_speech = float(np.mean(active ** 2)) if len(active) else 1e-6
    rng = np.random.default_rng(p.noise_seed)
    noise = coloured_noise(rng, len(x), p.noise_colour)
    x = x + noise * math.sqrt(p_speech / 10 ** (p.snr_db / 10))
    peak = float(np.max(np.abs(x))) or 1.0
    return x * (10 ** (p.peak_db / 20) / peak)


def write_mp3(path: str | Path, x: np.ndarray, sr: int) -> None:
    """Write float samples in [-1, 1] as a mono MPEG-1 layer III file (LAME VBR, about 45 kb/s;
    speech needs no more, and encoding is most of the corpus build time), atomically."""
    import soundfile as sf

    with atomic_write(path, "wb") as f:
        sf.write(f, np.clip(x, -1.0, 1.0).astype(np.float32), sr, format="MP3", subtype="MPEG_LAYER_III",
                 bitrate_mode="VARIABLE", compression_level=0.9)


# ---------------------------------------------------------------------------------------------
# Worker side

_ENGINE: Espeak | None = None


def init_worker() -> None:
    """Pool initialiser: one espeak-ng instance per process."""
    global _ENGINE
    _ENGINE = Espeak()


def engine() -> Espeak:
    """This process's espeak-ng driver (created on first use)."""
    if _ENGINE is None:
        init_worker()
    assert _ENGINE is not None
    return _ENGINE


def render_clip(text: str, spk: Speaker, p: ClipParams, min_s: float = 1.0, max_s: float = 6.0,
                margin_s: float = 0.15) -> tuple[np.ndarray, int]:
    """Samples at 48 kHz of one clip and the espeak rate that was used. If the speech is too
    long for ``max_s`` (less a margin for mp3 framing), it is resynthesised faster."""
    eng = engine()
    rate = spk.rate
    limit = max_s - margin_s - 0.1
    for _ in range(4):
        speech = eng.synth(text, spk.voice, rate, spk.pitch, spk.pitch_range, seed=p.noise_seed % 2**31)
        dur = len(speech) / ESPEAK_RATE
        if dur <= limit:
            break
        rate = min(450, int(math.ceil(rate * dur / limit * 1.05)))
    else:
        raise DataError(f"cannot fit {text!r} into {max_s} s even at rate {rate}")
    if len(speech) == 0:
        raise DataError(f"espeak-ng produced no audio for {text!r} with voice {spk.voice}")
    x = degrade(speech, ESPEAK_RATE, p, min_s + margin_s, max_s - margin_s)
    return resample(x, ESPEAK_RATE, OUT_RATE), rate


def synth_job(job: tuple[str, str, Speaker, ClipParams]) -> tuple[str, float, int]:
    """Worker entry: (mp3 path, text, speaker, clip params) -> (path, seconds, rate used)."""
    path, text, spk, p = job
    y, rate = render_clip(text, spk, p)
    write_mp3(path, y, OUT_RATE)
    return os.path.basename(path), len(y) / OUT_RATE, rate
