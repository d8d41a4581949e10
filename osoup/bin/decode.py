"""osoup-decode: CTC decoding of every test set with every head, or of arbitrary audio.

Recipe mode (writes Kaldi-style ``utt-id text`` hypothesis files)::

    osoup-decode --exp-dir exp/vm_uas --model best.pt --data-dir dump/fbank --sets "test_fr test_de" \
        --search beam --beam 10 --tag beam10
    -> exp/vm_uas/decode_beam10/test_fr/hyp.asr, .../test_fr/hyp.st, ...

Packed-model mode (any head, audio files or a wav.scp)::

    osoup-decode --packed exp/vm_uas/model.pack.pt --head st_fr --wav-scp my/wav.scp --out hyp.txt
    osoup-decode --packed exp/vm_uas/model.pack.pt --head asr_fr a.wav b.mp3
"""
from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import configargparse

from osoup.fileio import DataError, atomic_write, run_command, setup_logging

log = logging.getLogger("osoup-decode")


def get_parser() -> configargparse.ArgumentParser:
    p = configargparse.ArgumentParser(description=__doc__, formatter_class=configargparse.RawDescriptionHelpFormatter,
                                      config_file_parser_class=configargparse.YAMLConfigFileParser)
    p.add_argument("--config", is_config_file=True)
    p.add_argument("--exp-dir", help="experiment dir (recipe mode)")
    p.add_argument("--model", default="best.pt", help="checkpoint file name inside --exp-dir (best.pt, avgN.pt, latest.pt)")
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
    p.add_argument("--batch-frames", type=int, default=20000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--verbose", type=int, default=1)
    return p


def load_experiment(exp_dir: Path, model_file: str, device: str):
    """The experiment's model (eval mode) and one tokenizer per head."""
    from osoup.conflict.gradients import load_experiment_model
    from osoup.text.tokenizer import Tokenizer

    model, meta = load_experiment_model(exp_dir, model_file, device)
    tokenizers = {name: Tokenizer(d) for name, d in meta["token_dirs"].items()}
    return model, tokenizers


def pack_model(exp_dir: Path, model_file: str, out: Path) -> None:
    """One file with everything decoding needs: model config and weights, tokenizer files."""
    import torch

    meta = json.loads((exp_dir / "objectives.json").read_text(encoding="utf-8"))
    ckpt = torch.load(exp_dir / model_file, map_location="cpu", weights_only=False)
    toks = {}
    for name, d in meta["token_dirs"].items():
        toks[name] = {f.name: f.read_bytes() for f in Path(d).iterdir() if f.is_file()}
    from osoup.train.checkpoint import save_atomic

    save_atomic({"model": ckpt["model"], "model_conf": ckpt["model_conf"], "tokenizers": toks}, out)


def load_packed(path: Path, device: str):
    import torch

    from osoup.text.tokenizer import Tokenizer
    from osoup.nets.model import SoupModel

    if not path.is_file():
        raise DataError(f"{path}: packed model not found")
    pack = torch.load(path, map_location=device, weights_only=False)
    conf = dict(pack["model_conf"])
    conf["specaug_conf"] = None
    model = SoupModel(**conf).to(device)
    model.load_state_dict(pack["model"])
    model.eval()
    tmp = Path(tempfile.mkdtemp(prefix="osoup_tok_"))
    tokenizers = {}
    for name, files in pack["tokenizers"].items():
        d = tmp / name
        d.mkdir()
        for fname, data in files.items():
            (d / fname).write_bytes(data)
        tokenizers[name] = Tokenizer(d)
    return model, tokenizers


def decode_mats(model, head: str, tok, mats: list, search: str, beam: int, device: str) -> list[str]:
    from osoup.decode.ctc import greedy_search, prefix_beam_search
    from osoup.nets.model import pad_batch

    feats, lengths = pad_batch(mats, device)
    logp, olens = model.log_probs(head, feats, lengths)
    if search == "greedy":
        ids = greedy_search(logp, olens)
    else:
        ids = prefix_beam_search(logp, olens, beam=beam)
    return [tok.decode(x) for x in ids]


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
    tag = args.tag or (f"beam{args.beam}" if args.search == "beam" else "greedy")
    sets = args.sets.split()
    if not sets:
        raise DataError("--sets is empty: name the test sets to decode")
    import yaml

    dec_conf = {"model": args.model, "search": args.search, "beam": args.beam, "sets": sets, "data_dir": args.data_dir}
    with atomic_write(exp / f"decode_{tag}" / "decode.yaml") as f:
        yaml.safe_dump(dec_conf, f, sort_keys=True)
    t0 = time.time()
    total_sec = 0.0
    for s in sets:
        d = Path(args.data_dir) / s
        lang = s.split("_", 1)[1] if "_" in s else s
        heads = [h for h in (f"asr_{lang}", f"st_{lang}") if h in tokenizers and h in model.heads]
        if not heads:
            log.warning("set %s: no head for language %r in this model; skipped", s, lang)
            continue
        feats = read_scp(d / "feats.scp")
        nfr = {u: int(v) for u, v in read_scp(d / "utt2num_frames").items()}
        total_sec += sum(nfr.values()) / 100.0
        hyps: dict[str, dict[str, str]] = {h: {} for h in heads}
        with torch.inference_mode():
            for b in _batches(nfr, args.batch_frames):
                mats = []
                for u in b:
                    try:
                        mats.append(np.asarray(kaldiio.load_mat(feats[u]), dtype=np.float32))
                    except Exception as e:  # noqa: BLE001
                        raise DataError(f"{d}/feats.scp: cannot read features of {u!r}: {e}") from None
                for h in heads:
                    for u, text in zip(b, decode_mats(model, h, tokenizers[h], mats, args.search, args.beam, args.device)):
                        hyps[h][u] = text
        for h in heads:
            task = h.split("_", 1)[0]
            out = exp / f"decode_{tag}" / s / f"hyp.{task}"
            with atomic_write(out) as f:
                for u in sorted(hyps[h]):
                    f.write(f"{u} {hyps[h][u]}\n")
            log.info("%s: %d hypotheses -> %s", h, len(hyps[h]), out)
    el = time.time() - t0
    log.info("decoded %.1f s of speech in %.1f s (%.1f× real time)", total_sec, el, total_sec / max(el, 1e-9))


def decode_packed(args) -> None:
    import torch

    from osoup.data.audio import load_audio
    from osoup.data.datadir import read_scp
    from osoup.data.features import compute_fbank

    model, tokenizers = load_packed(Path(args.packed), args.device)
    if not args.head or args.head not in tokenizers:
        raise DataError(f"--head must be one of {', '.join(sorted(tokenizers))}")
    if args.wav_scp:
        items = list(read_scp(args.wav_scp).items())
    elif args.audio:
        items = [(Path(a).stem, a) for a in args.audio]
    else:
        raise DataError("give --wav-scp or audio files to decode")
    lines = []
    with torch.inference_mode():
        for utt, path in items:
            mat = compute_fbank(load_audio(path, 16000))
            text = decode_mats(model, args.head, tokenizers[args.head], [mat], args.search, args.beam, args.device)[0]
            lines.append(f"{utt} {text}\n")
    if args.out:
        with atomic_write(args.out) as f:
            f.writelines(lines)
    else:
        sys.stdout.write("".join(lines))


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
