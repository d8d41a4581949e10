"""Benchmark of the training input pipeline (``osoup/train/prefetch.py``): seconds of speech per
wall-clock second that reading + padding delivers with 0, 1 and 2 loader workers, against what a
100M-parameter Conformer on one H200-class GPU would consume.

Input: a synthetic dump written here (random 80-dim fbank in a kaldiio ark, utterances of
2-15 s), or ``--dump DIR ...`` (dumped data dirs with feats.scp and utt2num_frames; scp paths are
read relative to the current directory). The consumer only takes the batches (no model), so the
numbers are the pipeline's ceiling; ``--cache`` keeps features in memory as
``--cache-feats true`` does after the first epoch.

Demand: a training step costs about 3 × the forward FLOPs (forward + backward); the forward
FLOPs per second of speech are counted on the real 100M encoder
(``torch.utils.flop_counter``) and compared with the 6 × params × encoder frames rule
(encoder frame rate 25/s after 4× subsampling). At an assumed MFU on a bf16 dense peak, that
gives the seconds of speech per second the GPU eats.

Usage: tools/venv/bin/python bench/bench_input.py [--hours 0.5] [--steps 40] [--workers 0 1 2]
       [--dump DIR ...] [--max-frames 12000] [--max-utts 64] [--cache] [--peak-tflops 989]
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from osoup.data.dataset import FeatureSet, ObjectiveSampler, make_batches  # noqa: E402
from osoup.fileio import atomic_write_text  # noqa: E402
from osoup.train.data import TrainData, lookahead  # noqa: E402
from osoup.train.prefetch import StepSource  # noqa: E402


def write_synthetic_dump(out: Path, hours: float, seed: int = 0) -> Path:
    """A data dir under ``out`` with ``hours`` of random 80-dim features (2-15 s utterances)."""
    import kaldiio

    rng = np.random.default_rng(seed)
    lengths, total = [], 0
    while total < hours * 360000:
        n = int(rng.integers(200, 1500))
        lengths.append(n)
        total += n
    d = out / "synthetic"
    d.mkdir(parents=True, exist_ok=True)
    with kaldiio.WriteHelper(f"ark,scp:{d / 'feats.ark'},{d / 'feats.scp'}") as w:
        for i, n in enumerate(lengths):
            w(f"utt{i:06d}", rng.standard_normal((n, 80)).astype(np.float32))
    atomic_write_text(d / "utt2num_frames", "".join(f"utt{i:06d} {n}\n" for i, n in enumerate(lengths)))
    return d


def pipeline_rate(fset: FeatureSet, batches: list[list[int]], steps: int, workers: int, prefetch: int,
                  device: torch.device) -> tuple[float, float]:
    """(seconds of speech per second, fraction of time the consumer waited) over ``steps`` steps
    of one objective, after one warm-up step (worker start-up is not counted)."""
    data = TrainData(train_sets={"x": fset}, samplers={"x": ObjectiveSampler(batches, seed=1)})
    with StepSource(lookahead(data), ["x"], 1, workers, prefetch, pin_memory=device.type == "cuda") as src:
        src.next()
        frames, wait, t0 = 0, 0.0, time.perf_counter()
        for _ in range(steps):
            batch, w = src.next()
            halves = [h.to(device) for h in batch.halves]
            if device.type == "cuda":
                torch.cuda.synchronize()
            frames += sum(h.frames for h in halves)
            wait += w
        wall = time.perf_counter() - t0
    return frames / 100.0 / wall, wait / wall


def forward_flops_per_speech_second(size: str = "100m", frames: int = 400) -> tuple[int, float]:
    """(encoder parameters, forward FLOPs per second of speech) counted on one utterance."""
    from torch.utils.flop_counter import FlopCounterMode

    from osoup.nets.conformer import ConformerEncoder
    from osoup.nets.configs import MODEL_CONFIGS

    enc = ConformerEncoder(**MODEL_CONFIGS[size]).eval()
    params = sum(p.numel() for p in enc.parameters())
    counter = FlopCounterMode(display=False)
    with torch.no_grad(), counter:
        enc(torch.randn(1, frames, 80), torch.tensor([frames]))
    return params, counter.get_total_flops() / (frames / 100.0)


def demand(peak_tflops: float, mfus: tuple[float, ...]) -> None:
    """Print the seconds of speech per second one GPU would consume at each MFU."""
    params, fwd = forward_flops_per_speech_second()
    rule = 6 * params * 25  # 6 × params per encoder frame, 25 encoder frames per second of speech
    counted = 3 * fwd  # forward + backward ≈ 3 × forward
    print(f"\n100M Conformer ({params / 1e6:.1f}M encoder parameters), training FLOPs per second of speech:")
    print(f"  6 x params x 25 encoder frames/s = {rule / 1e9:.1f} GFLOP;  3 x counted forward "
          f"(incl. Conv2d front-end at 100 fps and attention, 4 s utterance) = {counted / 1e9:.1f} GFLOP")
    for mfu in mfus:
        eff = peak_tflops * 1e12 * mfu
        print(f"  bf16 peak {peak_tflops:g} TFLOP/s x MFU {mfu:.0%}: needs {eff / counted:,.0f} s speech/s "
              f"(rule of thumb: {eff / rule:,.0f})")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dump", nargs="*", default=[], help="dumped data dirs (default: a synthetic one)")
    p.add_argument("--hours", type=float, default=0.5, help="hours of synthetic features")
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--prefetch", type=int, default=4)
    p.add_argument("--max-frames", type=int, default=12000)
    p.add_argument("--max-utts", type=int, default=64)
    p.add_argument("--cache", action="store_true", help="keep features in memory (each worker its own copy)")
    p.add_argument("--peak-tflops", type=float, default=989.0, help="bf16 dense peak of the GPU (H200: ~989)")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    with tempfile.TemporaryDirectory() as tmp:
        dirs = args.dump or [write_synthetic_dump(Path(tmp), args.hours)]
        fset = FeatureSet(dirs, cache=args.cache)
        batches = make_batches(fset.examples, args.max_frames, args.max_utts)
        print(f"{len(fset)} utterances ({fset.total_frames() / 360000:.2f} h), {len(batches)} batches of <= "
              f"{args.max_frames} padded frames; {args.steps} steps per setting; device {device}; "
              f"{os.cpu_count()} CPUs; cache {'on' if args.cache else 'off'}")
        for w in args.workers:
            rate, wait = pipeline_rate(fset, batches, args.steps, w, args.prefetch, device)
            print(f"  workers {w}: {rate:,.0f} s speech/s (consumer waited {wait:.0%} of the time)")
    demand(args.peak_tflops, (0.3, 0.4))


if __name__ == "__main__":
    main()
