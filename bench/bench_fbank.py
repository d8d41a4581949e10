"""Benchmark of feature extraction (recipe stage 3): real-time factor per core, nj = 1 and 2.

(a) fbank alone on in-memory 16 kHz audio;
(b) the whole stage as run by the recipe: one `python -m osoup.bin.compute_fbank` process per
    job on synthesised 48 kHz mp3 clips (mp3 decoding + 48->16 kHz resampling + fbank + ark
    writing, including interpreter start-up), plus a per-step breakdown in one process.

Usage: tools/venv/bin/python bench/bench_fbank.py [--total-sec 120] [--clip-sec 6] [--nj 1 2]
Real-time factor (RTF) here = seconds of audio processed per wall-clock second.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # as path.sh: one BLAS thread per job

import argparse  # noqa: E402
import resource  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ProcessPoolExecutor  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

from osoup.data.audio import load_audio, resample  # noqa: E402
from osoup.data.features import fbank  # noqa: E402

SR = 16000


def synth_clip(rng: np.random.Generator, sec: float, sr: int) -> np.ndarray:
    """Speech-like test signal: a gliding harmonic source with a syllable-rate envelope, plus noise."""
    t = np.arange(int(sec * sr)) / sr
    f0 = 120 + 30 * np.sin(2 * np.pi * 0.7 * t + rng.uniform(0, 6))
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 25))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.uniform(0, 6))
    return (0.05 * x * env + 0.005 * rng.standard_normal(len(t))).astype(np.float32)


def _fbank_worker(clips: list[np.ndarray]) -> float:
    """CPU seconds spent computing fbank of ``clips`` in this process."""
    t0 = time.process_time()
    for c in clips:
        fbank(c)
    return time.process_time() - t0


def bench_fbank_only(clips16: list[np.ndarray], nj: int, repeat: int = 3) -> tuple[float, float]:
    """(wall-clock RTF, RTF per CPU-second) of fbank alone; best of ``repeat`` runs."""
    audio = sum(len(c) for c in clips16) / SR
    best_wall = best_cpu = float("inf")
    for _ in range(repeat):
        if nj == 1:
            t0 = time.perf_counter()
            cpu = _fbank_worker(clips16)
            wall = time.perf_counter() - t0
        else:
            parts = [clips16[i::nj] for i in range(nj)]
            with ProcessPoolExecutor(nj) as pool:
                list(pool.map(_fbank_worker, [[c] for c in clips16[:nj]]))  # warm the workers
                t0 = time.perf_counter()
                cpu = sum(pool.map(_fbank_worker, parts))
                wall = time.perf_counter() - t0
        best_wall, best_cpu = min(best_wall, wall), min(best_cpu, cpu)
    return audio / best_wall, audio / best_cpu


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def bench_stage(wav_scp_lines: list[str], audio: float, nj: int, work: Path) -> tuple[float, float]:
    """(wall-clock RTF, RTF per CPU-second) of nj concurrent compute-fbank processes over the
    whole scp, interpreter start-up included."""
    parts = [wav_scp_lines[i::nj] for i in range(nj)]
    procs = []
    cpu0 = _children_cpu()
    t0 = time.perf_counter()
    for j, lines in enumerate(parts, 1):
        scp = work / f"nj{nj}" / f"wav.{j}.scp"
        scp.parent.mkdir(parents=True, exist_ok=True)
        scp.write_text("".join(sorted(lines)), encoding="utf-8")
        cmd = [sys.executable, "-m", "osoup.bin.compute_fbank", "--wav-scp", str(scp),
               "--out-ark", str(scp.parent / f"feats.{j}.ark"), "--out-scp", str(scp.parent / f"feats.{j}.scp"),
               "--out-num-frames", str(scp.parent / f"utt2num_frames.{j}"), "--verbose", "0"]
        procs.append(subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}))
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"compute_fbank failed: {p.args}")
    return audio / (time.perf_counter() - t0), audio / (_children_cpu() - cpu0)


def breakdown(paths: list[str]) -> dict[str, float]:
    """Seconds per step for one process: mp3 decode, resample, fbank, ark write."""
    import kaldiio
    import soundfile as sf

    times = dict.fromkeys(("decode", "resample", "fbank", "write"), 0.0)
    clock = time.process_time  # CPU time: robust to other processes on the machine
    with tempfile.TemporaryFile() as f:
        for i, p in enumerate(paths):
            t0 = clock()
            x, sr = sf.read(p, dtype="float32")
            t1 = clock()
            y = resample(x, sr, SR)
            t2 = clock()
            feats = fbank(y)
            t3 = clock()
            kaldiio.save_ark(f, {f"u{i}": feats})
            t4 = clock()
            for k, dt in zip(times, (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
                times[k] += dt
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--total-sec", type=float, default=120.0, help="seconds of audio per measurement")
    ap.add_argument("--clip-sec", type=float, default=6.0)
    ap.add_argument("--nj", type=int, nargs="+", default=[1, 2])
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    n = max(2, int(args.total_sec / args.clip_sec))
    print(f"# {n} clips x {args.clip_sec} s = {n * args.clip_sec:.0f} s of audio; {os.cpu_count()} CPUs visible")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        import soundfile as sf

        lines, clips16 = [], []
        for i in range(n):
            x48 = synth_clip(rng, args.clip_sec, 48000)
            path = work / f"clip{i:04d}.mp3"
            sf.write(path, x48, 48000, format="MP3")
            lines.append(f"utt{i:04d} {path}\n")
            clips16.append(load_audio(path))
        audio = sum(len(c) for c in clips16) / SR
        print(f"# load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} "
              "(other processes on the machine distort wall-clock numbers; CPU-time ones less so)")
        print("#   wall RTF = audio s / wall s; per core = wall RTF / nj; per CPU-s = audio s / CPU s used")
        print(f"{'nj':>3} | {'fbank wall':>10} | {'per core':>8} | {'per CPU-s':>9} || "
              f"{'stage wall':>10} | {'per core':>8} | {'per CPU-s':>9}")
        print("-" * 82)
        for nj in args.nj:
            aw, ac = bench_fbank_only(clips16, nj)
            bw, bc = bench_stage(lines, audio, nj, work)
            print(f"{nj:>3} | {aw:>9.0f}x | {aw / nj:>7.0f}x | {ac:>8.0f}x || {bw:>9.0f}x | {bw / nj:>7.0f}x | {bc:>8.0f}x")
        times = breakdown([line.split()[1] for line in lines])
        total = sum(times.values())
        print("\n# one process, CPU seconds per step (excluding interpreter start-up):")
        for k, v in times.items():
            print(f"{k:>9}: {v:6.2f} s  ({audio / v:7.0f}x real time, {100 * v / total:4.1f}% of the work)")
        print(f"{'total':>9}: {total:6.2f} s  ({audio / total:7.0f}x real time)")
        print(f"# load average after: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
