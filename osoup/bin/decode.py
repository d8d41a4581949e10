"""osoup-decode: CTC decoding of every test set with every head, or of arbitrary audio.

Recipe mode (writes Kaldi-style ``utt-id text`` hypothesis files)::

    osoup-decode --exp-dir exp/vm_uas --model best.pt --data-dir dump/fbank --sets "test_fr test_de" \
        --search beam --beam 10 --tag beam10
    -> exp/vm_uas/decode_beam10/test_fr/hyp.asr, .../test_fr/hyp.st, ...

Packed-model mode (any head, audio files or a wav.scp)::

    osoup-decode --packed exp/vm_uas/model.pack.pt --head st_fr --wav-scp my/wav.scp --out hyp.txt
    osoup-decode --packed exp/vm_uas/model.pack.pt --head asr_fr a.wav b.mp3

A model on a pretrained wav2vec 2.0-style backbone reads raw 16 kHz waveforms: recipe mode then
needs raw dumps (``feats_type`` raw), packed-model mode feeds the audio itself, and chunking
counts samples and follows the backbone's CNN (``osoup.decode.chunked.Frontend``).
"""
from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

import configargparse

from osoup.data.feats_type import RAW_SAMPLE_RATE, read_feats_type
from osoup.decode.chunked import CONV2D_X4, Frontend, model_input
from osoup.fileio import DataError, atomic_write, run_command, setup_logging
from osoup import expdir
from osoup.train.experiment import load_experiment
from osoup.train.experiment import read_packed as load_packed
from osoup.train.experiment import write_packed as pack_model

log = logging.getLogger("osoup-decode")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter,
                                      config_file_parser_class=configargparse.YAMLConfigFileParser)
    p.add_argument("--config", is_config_file=True)
    p.add_argument("--exp-dir", help="experiment dir (recipe mode)")
    p.add_argument("--model", default=expdir.BEST, help="checkpoint file name inside --exp-dir (best.pt, avgN.pt, latest.pt)")
    p.add_argument("--data-dir", default="dump/fbank", help="root of the dumped test sets")
    p.add_argument("--sets", default="", help="space-separated sets to decode, e.g. 'test_fr test_en'")
    p.add_argument("--tag", default=None, help="decode dir name suffix (default: search type)")
    p.add_argument("--packed", help="packed model file (packed-model mode)")
    p.add_argument("--pack-out", help="write a packed model (model + config + tokenizers) to this path and exit")
    p.add_argument("--head", help="head to use in packed-model mode, e.g. asr_fr or st_de")
    p.add_argument("--wav-scp", help="wav.scp to decode in packed-model mode")
    p.add_argument("--out", help="output hypothesis file in packed-model mode (default: stdout)")
    p.add_argument("audio", nargs="*", help="audio files to decode in packed-model mode")
    p.add_argument("--search", default="greedy", choices=["greedy", "beam"])
    p.add_argument("--beam", type=int, default=10)
    p.add_argument("--batch-frames", type=int, default=20000,
                   help="padded 10 ms frames per batch (raw input: the same duration in samples)")
    p.add_argument("--chunk-sec", type=float, default=20.0,
                   help="encode audio longer than chunk + 2 x context in chunks of this many seconds, "
                        "so memory stays bounded (0: never chunk)")
    p.add_argument("--chunk-context-sec", type=float, default=2.0,
                   help="left and right context of each chunk, encoded and then dropped")
    p.add_argument("--device", default="cpu")
    p.add_argument("--verbose", type=int, default=1)
    return p


def decode_mats(model, head: str, tok, mats: list, search: str, beam: int, device: str,
                names: list[str] | None = None, chunk: int = 0, context: int = 0,
                frontend: Frontend = CONV2D_X4) -> list[str]:
    """Hypotheses of feature matrices [T, 80] (raw backbones: [samples, 1]) with one head, in
    input order.

    Audio too short for the front-end (under ``frontend.reach`` rows) decodes to "" with a
    warning naming it; with ``chunk`` > 0 (input rows) a longer utterance is encoded in windows
    of ``chunk`` rows plus ``context`` rows each side (``osoup.decode.chunked``); the rest is one
    padded batch. ``test/test_decode_long.py`` checks all three paths.
    """
    from osoup.decode.chunked import output_frames, plan_windows
    from osoup.nets.model import pad_batch

    names = names or [f"input {i}" for i in range(len(mats))]
    ids: list[list[int]] = [[] for _ in mats]
    batch, long = [], []
    for i, m in enumerate(mats):
        if output_frames(m.shape[0], *frontend) == 0:
            log.warning("%s: %d input rows, too short to decode (needs %d): empty hypothesis", names[i], m.shape[0],
                        frontend.reach)
        elif chunk > 0 and len(plan_windows(m.shape[0], chunk, context, *frontend)) > 1:
            long.append(i)
        else:
            batch.append(i)
    if batch:
        feats, lengths = pad_batch([mats[i] for i in batch], device)
        logp, olens = model.log_probs(head, feats, lengths)
        for i, x in zip(batch, _search(logp, olens, search, beam)):
            ids[i] = x
    for i in long:
        ids[i] = _decode_long(model, head, mats[i], search, beam, device, chunk, context, frontend)
    return [tok.decode(x) for x in ids]


def _search(logp, olens, search: str, beam: int) -> list[list[int]]:
    from osoup.decode.ctc import greedy_search, prefix_beam_search

    if search == "greedy":
        return greedy_search(logp, olens)
    return prefix_beam_search(logp, olens, beam=beam)


def _decode_long(model, head: str, mat, search: str, beam: int, device: str, chunk: int, context: int,
                 frontend: Frontend) -> list[int]:
    """One long utterance in bounded memory: greedy keeps only per-frame ids, beam search the
    concatenated posteriors (4 bytes per token per 40 ms frame)."""
    import torch

    from osoup.decode.chunked import chunked_best_path, chunked_log_probs
    from osoup.decode.ctc import collapse_best_path

    feats = torch.as_tensor(mat, dtype=torch.float32).to(device)

    def forward(x, lengths):
        return model.log_probs(head, x, lengths)

    if search == "greedy":
        best = chunked_best_path(forward, feats, chunk, context, frontend)
        return collapse_best_path(best[None], torch.tensor([best.shape[0]]))[0]
    logp = chunked_log_probs(forward, feats, chunk, context, frontend)
    return _search(logp[None], torch.tensor([logp.shape[0]]), search, beam)[0]


def _batches(lengths: dict[str, int], batch_frames: int) -> list[list[str]]:
    order = sorted(lengths, key=lambda u: lengths[u])
    out, cur = [], []
    for u in order:
        if cur and lengths[u] * (len(cur) + 1) > batch_frames:
            out.append(cur)
            cur = []
        cur.append(u)
    if cur:
        out.append(cur)
    return out


def decode_recipe(args) -> None:
    import kaldiio
    import numpy as np
    import torch

    from osoup.data.datadir import read_scp

    exp = Path(args.exp_dir)
    model, tokenizers = load_experiment(exp, args.model, args.device)
    kind, frontend, rate = model_input(model)
    tag = args.tag or (f"beam{args.beam}" if args.search == "beam" else "greedy")
    sets = args.sets.split()
    if not sets:
        raise DataError("--sets is empty: name the test sets to decode")
    import yaml

    dec_conf = {"model": args.model, "search": args.search, "beam": args.beam, "sets": sets, "data_dir": args.data_dir,
                "chunk_sec": args.chunk_sec, "chunk_context_sec": args.chunk_context_sec}
    write_output(expdir.decode_dir(exp, tag) / expdir.DECODE_CONF, [yaml.safe_dump(dec_conf, sort_keys=True)])
    t0 = time.time()
    total_sec = 0.0
    for s in sets:
        d = Path(args.data_dir) / s
        lang = s.split("_", 1)[1] if "_" in s else s
        heads = [h for h in (f"asr_{lang}", f"st_{lang}") if h in tokenizers and h in model.heads]
        if not heads:
            log.warning("set %s: no head for language %r in this model; skipped", s, lang)
            continue
        if read_feats_type(d) != kind:
            raise DataError(f"{d}: holds {read_feats_type(d)} features but {exp}/{args.model} reads {kind} input "
                            f"(dump the set with stage 3 --feats-type {kind})")
        feats = read_scp(d / "feats.scp")
        nfr = {u: int(v) for u, v in read_scp(d / "utt2num_frames").items()}
        total_sec += sum(nfr.values()) / rate
        hyps: dict[str, dict[str, str]] = {h: {} for h in heads}
        with torch.inference_mode():
            for b in _batches(nfr, args.batch_frames * rate // 100):
                mats = []
                for u in b:
                    try:
                        mats.append(np.asarray(kaldiio.load_mat(feats[u]), dtype=np.float32))
                    except Exception as e:  # noqa: BLE001
                        raise DataError(f"{d}/feats.scp: cannot read features of {u!r}: {e}") from None
                for h in heads:
                    texts = decode_mats(model, h, tokenizers[h], mats, args.search, args.beam, args.device,
                                        names=[f"{s}/{u}" for u in b], frontend=frontend, **_chunking(args, rate))
                    for u, text in zip(b, texts):
                        hyps[h][u] = text
        for h in heads:
            task = h.split("_", 1)[0]
            out = expdir.hyp_path(exp, tag, s, task)
            write_output(out, [f"{u} {hyps[h][u]}\n" for u in sorted(hyps[h])])
            log.info("%s: %d hypotheses -> %s", h, len(hyps[h]), out)
    el = time.time() - t0
    log.info("decoded %.1f s of speech in %.1f s (%.1f× real time)", total_sec, el, total_sec / max(el, 1e-9))


def _chunking(args, rate: int = 100) -> dict[str, int]:
    """--chunk-sec / --chunk-context-sec as input rows for :func:`decode_mats` (``rate`` rows a
    second: 100 fbank frames, or 16000 samples of raw input)."""
    if args.chunk_sec < 0 or args.chunk_context_sec < 0:
        raise DataError(f"--chunk-sec ({args.chunk_sec}) and --chunk-context-sec ({args.chunk_context_sec}) must be >= 0")
    return {"chunk": round(args.chunk_sec * rate), "context": round(args.chunk_context_sec * rate)}


def audio_features(path: str, piece_frames: int = 6000, kind: str = "fbank"):
    """Fbank [T, 80] of an audio file, computed ``piece_frames`` frames at a time: frames are
    independent (no dither), so the result equals one call while the FFT buffers of an hour of
    audio never exist at once. ``kind`` "raw": the 16 kHz waveform as [samples, 1]."""
    import numpy as np

    from osoup.data.audio import load_audio
    from osoup.data.features import FbankOptions, compute_fbank, num_frames

    wav, opts = load_audio(path, RAW_SAMPLE_RATE), FbankOptions()
    if kind == "raw":
        return wav[:, None]
    n, size, shift = num_frames(len(wav), opts), opts.window_size, opts.window_shift
    pieces = [compute_fbank(wav[i * shift:(i + piece_frames - 1) * shift + size])
              for i in range(0, n, piece_frames)]
    return np.concatenate(pieces) if len(pieces) > 1 else compute_fbank(wav)


def decode_packed(args) -> None:
    """Decode audio files one by one; a file that cannot be read is reported by name after the
    hypotheses of all the others are written (the command then exits 1)."""
    import torch

    from osoup.data.datadir import read_scp

    model, tokenizers = load_packed(Path(args.packed), args.device)
    kind, frontend, rate = model_input(model)
    if not args.head or args.head not in tokenizers:
        raise DataError(f"--head must be one of {', '.join(sorted(tokenizers))}")
    if args.wav_scp:
        items = list(read_scp(args.wav_scp).items())
    elif args.audio:
        items = [(Path(a).stem, a) for a in args.audio]
    else:
        raise DataError("give --wav-scp or audio files to decode")
    lines, failed = [], []
    with torch.inference_mode():
        for utt, path in items:
            try:
                mat = audio_features(path, kind=kind)
            except DataError as e:
                log.error("%s: %s", utt, e)
                failed.append(f"{utt} ({path})")
                continue
            text = decode_mats(model, args.head, tokenizers[args.head], [mat], args.search, args.beam,
                               args.device, names=[f"{utt} ({path})"], frontend=frontend,
                               **_chunking(args, rate))[0]
            lines.append(f"{utt} {text}\n")
    if args.out:
        write_output(Path(args.out), lines)
    else:
        sys.stdout.write("".join(lines))
    if failed:
        raise DataError(f"{len(failed)} of {len(items)} audio files could not be read "
                        f"(hypotheses of the others were written): {', '.join(failed)}")


def write_output(path: Path, chunks: list[str]) -> None:
    """Atomic write; an OSError (read-only, disk full) names ``path``, not the temp file."""
    try:
        with atomic_write(path) as f:
            f.writelines(chunks)
    except OSError as e:
        if e.filename is None or Path(e.filename).name.startswith(f".{path.name}."):
            raise OSError(e.errno, e.strerror, str(path)) from e
        raise


def _run(args) -> None:
    if args.pack_out:
        if not args.exp_dir:
            raise DataError("--pack-out needs --exp-dir")
        pack_model(Path(args.exp_dir), args.model, Path(args.pack_out))
        log.info("packed model written to %s", args.pack_out)
    elif args.packed:
        decode_packed(args)
    elif args.exp_dir:
        decode_recipe(args)
    else:
        raise DataError("give --exp-dir (recipe mode) or --packed (packed-model mode)")


def main(argv: list[str] | None = None) -> int:
    args = get_parser().parse_args(argv)
    setup_logging(args.verbose)
    return run_command(lambda: _run(args))


if __name__ == "__main__":
    sys.exit(main())
