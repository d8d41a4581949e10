"""What a dumped data dir's feature matrices hold: 80-dim fbank frames or the raw waveform.

Stage 3 writes ``feats_type`` (one word, ``fbank`` or ``raw``) beside ``feats.scp``; a dir
without the file holds fbank (dumps made before raw input existed). A ``raw`` dir stores each
utterance as a float32 matrix [num_samples, 1] at :data:`RAW_SAMPLE_RATE`, so readers that only
load matrices (training batches, decoding) treat both kinds alike; its ``utt2num_frames`` counts
rows (= samples) and ``utt2num_samples`` says the same under the name readers of raw dumps expect.
Layout of the dump dirs: ``docs/design.md``.
"""
from __future__ import annotations

from pathlib import Path

from osoup.data.features import FbankOptions
from osoup.fileio import DataError, atomic_write_text

FEATS_TYPES = ("fbank", "raw")
FEATS_TYPE_FILE = "feats_type"
NUM_SAMPLES_FILE = "utt2num_samples"
RAW_SAMPLE_RATE = 16000
FBANK_FRAME_SHIFT_SEC = FbankOptions().frame_shift_ms / 1000


def read_feats_type(data_dir: str | Path) -> str:
    """``fbank`` or ``raw``: the kind of ``data_dir``'s features (no file: ``fbank``)."""
    path = Path(data_dir) / FEATS_TYPE_FILE
    if not path.is_file():
        return "fbank"
    kind = path.read_text(encoding="utf-8").strip()
    if kind not in FEATS_TYPES:
        raise DataError(f"{path}: unknown feature type {kind!r} (expected one of {', '.join(FEATS_TYPES)})")
    return kind


def write_feats_type(data_dir: str | Path, kind: str) -> None:
    """Record ``kind`` in ``data_dir/feats_type`` (atomically)."""
    if kind not in FEATS_TYPES:
        raise ValueError(f"feature type must be one of {FEATS_TYPES}, got {kind!r}")
    atomic_write_text(Path(data_dir) / FEATS_TYPE_FILE, kind + "\n")


def rows_to_seconds(rows: int, kind: str) -> float:
    """Duration of a feature matrix of ``rows`` rows: 10 ms fbank frames or 16 kHz samples."""
    if kind == "raw":
        return rows / RAW_SAMPLE_RATE
    return rows * FBANK_FRAME_SHIFT_SEC
