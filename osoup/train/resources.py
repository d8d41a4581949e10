"""What it costs to deploy an experiment's model: parameters, packed size, load time and
decoding real-time factor (the measurements behind the paper's Table 9, "Resource usage").

Everything is measured on the packed model (``model.pack.pt``, written here from the
experiment's model file when it is absent), the one file a deployment ships:

* parameters: ``numel`` of the encoder, of every CTC head and of the SSL-only module;
* size: ``os.stat`` of the packed file;
* load time: :func:`osoup.train.experiment.read_packed` in a fresh Python process, timed inside
  it after torch and osoup are imported, with the file cache warmed first;
* real-time factor: greedy CTC decoding of the first utterances of each language's test set,
  one utterance at a time on one CPU thread, every head of that language reading one encoder
  pass; seconds of compute over seconds of audio (fbank frames x 10 ms), features excluded.

``osoup-results --resources`` sums these over the models of a method
(:mod:`osoup.score.resource_table`); ``test/test_resources.py`` checks them against the files.
"""
from __future__ import annotations

import logging
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from osoup import expdir
from osoup.fileio import DataError, read_scp
from osoup.train.experiment import read_objectives, read_packed, write_packed

if TYPE_CHECKING:
    from osoup.nets.model import SoupModel
    from osoup.text.tokenizer import Tokenizer

log = logging.getLogger(__name__)


# Run in a fresh interpreter: imports first (not timed), then the load alone.
_LOAD_SNIPPET = """\
import sys, time
import torch
import osoup.nets.model, osoup.nets.cpc, osoup.nets.bestrq, osoup.text.tokenizer
from osoup.train.experiment import read_packed
t0 = time.perf_counter()
read_packed(sys.argv[1])
print(repr(time.perf_counter() - t0))
"""


def output_heads(exp_dir: str | Path) -> list[str]:
    """The experiment's supervised objectives (its CTC heads, the outputs it can produce)."""
    from osoup.nets.model import SSL_OBJECTIVE

    return [o for o in read_objectives(exp_dir)["objectives"] if o != SSL_OBJECTIVE]


def count_parameters(model: SoupModel) -> dict:
    """Parameter counts by part: shared encoder, CTC heads (also per head), SSL-only module
    (CPC predictors or the BEST-RQ output layer: needed for training only) and the total."""
    def n(params) -> int:
        return sum(p.numel() for p in params)

    per_head = {name: n(head.parameters()) for name, head in model.heads.items()}
    return {"encoder": n(model.encoder.parameters()), "heads": sum(per_head.values()),
            "ssl": n(model.ssl.parameters()) if model.ssl is not None else 0,
            "total": n(model.parameters()), "per_head": per_head}


def ensure_packed(exp_dir: str | Path, model_file: str = expdir.BEST) -> tuple[Path, bool]:
    """``<exp>/model.pack.pt`` and whether it was written now (from ``model_file``, because it
    was absent); an existing packed model is used as it is."""
    path = Path(exp_dir) / expdir.PACKED
    if path.is_file():
        return path, False
    log.info("%s: packing %s", path, model_file)
    write_packed(exp_dir, model_file, path)
    return path, True


def warm_file_cache(path: Path, chunk: int = 1 << 24) -> None:
    """Read the file once so that the timed loads find it in the page cache."""
    with open(path, "rb") as f:
        while f.read(chunk):
            pass


def load_times(path: str | Path, n_loads: int = 5) -> list[float]:
    """Seconds of ``n_loads`` loads of a packed model, each in a fresh Python process (one CPU
    thread), timed inside the process after its imports; the file cache is warm."""
    path = Path(path)
    if n_loads < 1:
        raise DataError(f"{path}: the number of loads to time must be >= 1, got {n_loads}")
    warm_file_cache(path)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = []
    for _ in range(n_loads):
        proc = subprocess.run([sys.executable, "-c", _LOAD_SNIPPET, str(path)], capture_output=True,
                              text=True, encoding="utf-8", env=env)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            reason = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
            raise DataError(f"{path}: loading it in a fresh process failed: {reason}")
        out.append(float(lines[-1]))
    return out


def first_utterances(set_dir: Path, n_utts: int, frontend=None) -> list[tuple[str, object]]:
    """The first ``n_utts`` utterances of ``feats.scp`` (file order) long enough to decode with
    ``frontend`` (default: the Conformer's Conv2d ×4), as (utterance id, matrix [T, 80] of fbank
    or [samples, 1] of raw waveform)."""
    import kaldiio
    import numpy as np

    from osoup.decode.chunked import CONV2D_X4, output_frames

    frontend = frontend or CONV2D_X4

    scp = set_dir / "feats.scp"
    if not scp.is_file():
        raise DataError(f"{scp}: not found; --resources-data-dir must hold the test set {set_dir.name} "
                        f"(dumped by recipe stage 4)")
    out = []
    for utt, where in read_scp(scp).items():
        try:
            mat = np.array(kaldiio.load_mat(where), dtype=np.float32)  # a writable copy for torch
        except Exception as e:  # noqa: BLE001 - kaldiio raises many kinds for a bad ark
            raise DataError(f"{scp}: cannot read features of {utt!r}: {e}") from None
        if output_frames(mat.shape[0], *frontend) > 0:
            out.append((utt, mat))
        if len(out) == n_utts:
            break
    if not out:
        raise DataError(f"{scp}: no utterance long enough to decode")
    return out


def _decode_one(model: SoupModel, heads: list[str], tokenizers: dict[str, Tokenizer], mat) -> None:
    """Greedy CTC hypotheses of one utterance with each of ``heads`` (one encoder pass)."""
    import torch

    from osoup.decode.ctc import greedy_search

    feats = torch.from_numpy(mat)[None]
    enc = model.encoder(model.cmvn(feats), torch.tensor([mat.shape[0]]))
    for h in heads:
        logp = torch.log_softmax(model.heads[h](enc.out, enc.lengths).float(), dim=-1)
        ids = greedy_search(logp, enc.lengths)[0]
        if h in tokenizers:
            tokenizers[h].decode(ids)


def time_decoding(model: SoupModel, tokenizers: dict[str, Tokenizer], data_dir: str | Path,
                  split: str = "test", n_utts: int = 20) -> dict:
    """Decoding cost of every head of the model on ``<data_dir>/<split>_<lang>`` (the first
    ``n_utts`` utterances of each language): per set the heads, utterances, audio seconds and
    compute seconds (one thread, greedy, after one untimed warm-up utterance)."""
    import torch

    from osoup.decode.chunked import model_input

    _, frontend, rows_per_sec = model_input(model)
    by_lang: dict[str, list[str]] = {}
    for h in model.heads:
        by_lang.setdefault(h.split("_", 1)[-1], []).append(h)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    sets = {}
    try:
        with torch.inference_mode():
            for lang, heads in by_lang.items():
                set_name = f"{split}_{lang}"
                utts = first_utterances(Path(data_dir) / set_name, n_utts, frontend)
                _decode_one(model, heads, tokenizers, utts[0][1])  # warm-up, not timed
                t0 = time.perf_counter()
                for _, mat in utts:
                    _decode_one(model, heads, tokenizers, mat)
                sets[set_name] = {"heads": heads, "utts": len(utts), "compute_sec": time.perf_counter() - t0,
                                  "audio_sec": sum(m.shape[0] for _, m in utts) / rows_per_sec}
    finally:
        torch.set_num_threads(threads)
    return sets


def measure_experiment(exp_dir: str | Path, model_file: str = expdir.BEST, data_dir: str | Path = "dump/fbank",
                       split: str = "test", n_utts: int = 20, n_loads: int = 5) -> dict:
    """Every resource number of one experiment's packed model (the JSON entry of one model in
    ``resources.json``)."""
    packed, packed_now = ensure_packed(exp_dir, model_file)
    model, tokenizers = read_packed(packed)
    loads = load_times(packed, n_loads)
    sets = time_decoding(model, tokenizers, data_dir, split, n_utts)
    params, size = count_parameters(model), os.stat(packed).st_size
    log.info("%s: %d parameters, %d bytes, load %.3f s (median of %d)", packed, params["total"], size,
             statistics.median(loads), len(loads))
    return {"exp": str(exp_dir), "packed": str(packed), "packed_now": packed_now,
            "packed_from": model_file if packed_now else None, "heads": list(model.heads),
            "params": params, "size_bytes": size,
            "load_sec": {"median": statistics.median(loads), "values": loads}, "decode": {"sets": sets}}
