"""Build the mini corpus in the Common Voice 4 + CoVoST 2 layout.

Layout written under ``out_dir`` (the same one the real CoVoST 2 parser reads)::

    <cv-lang>/clips/common_voice_<cv-lang>_<n>.mp3     48 kHz mono mp3, 1-6 s
    <cv-lang>/validated.tsv                           client_id path sentence up_votes down_votes age gender accent
    covost_v2.<src>_en.tsv                            path sentence translation client_id split   (src != en)
    covost_v2.en_de.tsv                               the English clips, German translation, English splits
    .done                                             JSON summary; written last

``<cv-lang>`` is the Common Voice directory name (``zh-CN`` for zh). Splits are speaker
disjoint, roughly 80/10/10, and a few train rows say ``train_covost`` as in the real release.
Everything (texts, speakers, splits, noise) is planned in this process from the seed, so the
result does not depend on the number of workers. Clips are written atomically; a run killed
midway leaves ``.in_progress`` (its parameters) and no ``.done``, and a rerun with the same
parameters keeps the finished clips and synthesises the rest.
"""
from __future__ import annotations

import json
import logging
import math
import multiprocessing as mp
import os
import random
import re
import time
from dataclasses import dataclass
from pathlib import Path

from osoup.data.mini.grammar import LANGS, Frame, render, sample_frame
from osoup.data.mini.synth import ClipParams, Speaker, draw_clip_params, init_worker, make_speakers, synth_job
from osoup.fileio import DataError, atomic_write, atomic_write_text

log = logging.getLogger(__name__)

CV_DIR = {"en": "en", "fr": "fr", "de": "de", "es": "es", "ca": "ca", "zh": "zh-CN"}
VALIDATED_HEADER = ["client_id", "path", "sentence", "up_votes", "down_votes", "age", "gender", "accent"]
COVOST_HEADER = ["path", "sentence", "translation", "client_id", "split"]
FORMAT_VERSION = 1
MIN_SEC, MAX_SEC = 1.0, 6.0

# Seconds of espeak-ng speech per character of text at rate 175 (measured on 300 sentences per
# language with the base voices); used to keep planned sentences inside the duration bounds.
_SEC_PER_CHAR = {"en": 0.0505, "fr": 0.0412, "de": 0.0502, "es": 0.0543, "ca": 0.0518, "zh": 0.2227}
MIN_SPEECH_SEC = 0.8  # planned sentences are at least this long (estimated)
DEFAULT_MAX_SPEECH_SEC = 4.6
DEFAULT_SNR = (10.0, 30.0)


@dataclass(frozen=True)
class Utt:
    """One planned clip."""

    lang: str
    clip: str  # file name, with .mp3
    frame: Frame
    sentence: str
    translation: str
    speaker: Speaker
    split: str  # train | train_covost | dev | test
    up_votes: int
    down_votes: int
    params: ClipParams


def _split_sizes(n: int) -> tuple[int, int, int]:
    n_dev = max(1, round(0.1 * n))
    n_test = max(1, round(0.1 * n))
    return n - n_dev - n_test, n_dev, n_test


def estimate_seconds(text: str, lang: str, rate: int) -> float:
    """Rough espeak-ng speech duration of ``text`` at words-per-minute ``rate``."""
    return len(text) * _SEC_PER_CHAR[lang] * 175.0 / rate


def plan_language(lang: str, n: int, seed: int, max_speech_sec: float = DEFAULT_MAX_SPEECH_SEC,
                  snr: tuple[float, float] = DEFAULT_SNR) -> list[Utt]:
    """Deterministic plan of ``n`` clips of ``lang``: speakers, splits, unique sentences.

    Sentences are drawn until their estimated speech lasts between MIN_SPEECH_SEC and
    ``max_speech_sec``; each clip gets noise at an SNR drawn uniformly from ``snr`` (dB).
    """
    if n < 3:
        raise DataError(f"--utts-per-lang must be at least 3 (one per split), got {n}")
    if not MIN_SPEECH_SEC + 0.4 <= max_speech_sec <= MAX_SEC - 0.5:
        raise DataError(f"--max-speech-sec must be in [{MIN_SPEECH_SEC + 0.4}, {MAX_SEC - 0.5}], got {max_speech_sec}")
    if not (len(snr) == 2 and snr[0] <= snr[1]):
        raise DataError(f"--snr needs two values LOW HIGH with LOW <= HIGH, got {snr}")
    rng = random.Random(f"plan-{seed}-{lang}")
    n_spk = min(48, max(3, math.ceil(n / 12)))
    speakers = make_speakers(lang, n_spk, seed)
    order = list(range(n_spk))
    rng.shuffle(order)
    _, spk_dev, spk_test = _split_sizes(n_spk)
    spk_of_split = {"test": [speakers[i] for i in order[:spk_test]],
                    "dev": [speakers[i] for i in order[spk_test:spk_test + spk_dev]],
                    "train": [speakers[i] for i in order[spk_test + spk_dev:]]}
    n_train, n_dev, n_test = _split_sizes(n)
    splits = ["train"] * n_train + ["dev"] * n_dev + ["test"] * n_test
    rng.shuffle(splits)
    # Uneven but not extreme speaker activity, as in crowd-sourced corpora.
    weights = {s: [rng.gammavariate(2.0, 1.0) for _ in spk] for s, spk in spk_of_split.items()}
    clip_ids = sorted(rng.sample(range(10_000_000, 30_000_000), n))
    frame_rng = random.Random(f"frames-{seed}-{lang}")
    translation_lang = "de" if lang == "en" else "en"
    seen: set[str] = set()
    utts = []
    for i, split in enumerate(splits):
        spk = rng.choices(spk_of_split[split], weights=weights[split])[0]
        for _ in range(10_000):
            frame = sample_frame(frame_rng)
            sentence = render(frame, lang)
            est = estimate_seconds(sentence, lang, spk.rate)
            if sentence not in seen and MIN_SPEECH_SEC <= est <= max_speech_sec:
                break
        else:  # pragma: no cover - the grammar has far more sentences than any sensible n
            raise DataError(f"{lang}: could not find {n} distinct sentences of {MIN_SPEECH_SEC}-{max_speech_sec} s")
        seen.add(sentence)
        if split == "train" and rng.random() < 0.05:
            split = "train_covost"
        cv = CV_DIR[lang]
        utts.append(Utt(lang=lang, clip=f"common_voice_{cv}_{clip_ids[i]}.mp3", frame=frame,
                        sentence=sentence, translation=render(frame, translation_lang),
                        speaker=spk, split=split, up_votes=rng.randint(2, 6),
                        down_votes=rng.choice([0, 0, 0, 1]), params=draw_clip_params(rng, snr)))
    return utts


def _check_field(value: str, where: str) -> str:
    if "\t" in value or "\n" in value or "\r" in value or '"' in value:
        raise DataError(f"{where}: field {value!r} would need quoting in a TSV")
    return value


def _write_tsv(path: Path, header: list[str], rows: list[list[str]]) -> None:
    with atomic_write(path) as f:
        f.write("\t".join(header) + "\n")
        for row in rows:
            f.write("\t".join(_check_field(str(v), f"{path}: {row[0]}") for v in row) + "\n")


def _params(langs: list[str], utts_per_lang: int, seed: int, max_speech_sec: float, snr: tuple[float, float]) -> dict:
    return {"format": FORMAT_VERSION, "langs": list(langs), "utts_per_lang": int(utts_per_lang), "seed": int(seed),
            "max_speech_sec": float(max_speech_sec), "snr": [float(snr[0]), float(snr[1])]}


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove_stale_clips(out: Path, langs: list[str]) -> int:
    """Delete clips this generator wrote for other parameters (only files named like ours)."""
    removed = 0
    for lang in langs:
        cv = CV_DIR[lang]
        clips = out / cv / "clips"
        if clips.is_dir():
            pat = re.compile(rf"common_voice_{re.escape(cv)}_\d+\.mp3")
            for p in clips.iterdir():
                if pat.fullmatch(p.name):
                    p.unlink()
                    removed += 1
    return removed


def _run_jobs(jobs: list[tuple], nj: int) -> dict[str, tuple[float, int]]:
    """Synthesise clips with ``nj`` worker processes; returns clip -> (seconds, rate used)."""
    results: dict[str, tuple[float, int]] = {}
    if not jobs:
        return results
    t0 = time.time()
    step = max(1, len(jobs) // 10)

    def progress(k: int) -> None:
        if k % step == 0 or k == len(jobs):
            el = time.time() - t0
            eta = el / k * (len(jobs) - k)
            log.info("synthesised %d/%d clips (%.1f clips/s, ETA %.0f s)", k, len(jobs), k / max(el, 1e-9), eta)

    if nj <= 1:
        init_worker()
        for k, job in enumerate(jobs, 1):
            name, sec, rate = synth_job(job)
            results[name] = (sec, rate)
            progress(k)
        return results
    # spawn: espeak-ng is global C state; fresh processes never inherit a half-used instance.
    # One BLAS/OpenMP thread per worker: nj processes already fill the cores.
    ctx = mp.get_context("spawn")
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: "1" for k in _THREAD_VARS})
    try:
        with ctx.Pool(nj, initializer=init_worker) as pool:
            chunk = max(1, min(16, len(jobs) // (nj * 8)))
            for k, (name, sec, rate) in enumerate(pool.imap_unordered(synth_job, jobs, chunksize=chunk), 1):
                results[name] = (sec, rate)
                progress(k)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return results


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def make_mini_corpus(out_dir: str | Path, langs: list[str] | tuple[str, ...] = LANGS, utts_per_lang: int = 600,
                     seed: int = 0, nj: int = 2, max_speech_sec: float = DEFAULT_MAX_SPEECH_SEC,
                     snr: tuple[float, float] = DEFAULT_SNR) -> dict:
    """Create (or complete) the mini corpus under ``out_dir``; returns its summary.

    The summary holds the parameters, per-language clip counts, split counts and hours, and
    ``skipped`` (True when a complete corpus with the same parameters was already there).
    With ``nj > 1`` workers are spawned (fresh interpreters), so a calling script needs the
    usual ``if __name__ == "__main__":`` guard. An ``out_dir`` whose clips directories hold files
    but no marker of this generator is refused rather than overwritten.
    """
    langs = list(langs)
    bad = [lang for lang in langs if lang not in CV_DIR]
    if bad or not langs:
        raise DataError(f"unknown language(s) {' '.join(bad) or '(none given)'}; choose from {' '.join(LANGS)}")
    if len(set(langs)) != len(langs):
        raise DataError(f"--langs lists a language twice: {' '.join(langs)}")
    if nj < 1:
        raise DataError(f"--nj must be >= 1, got {nj}")
    out = Path(out_dir)
    params = _params(langs, utts_per_lang, seed, max_speech_sec, snr)
    done_file, progress_file = out / ".done", out / ".in_progress"
    done = _read_json(done_file)
    if done is not None and done.get("params") == params:
        log.info("%s: complete mini corpus with the same parameters exists, nothing to do", out)
        return {**done, "skipped": True}
    out.mkdir(parents=True, exist_ok=True)
    if done_file.exists():
        done_file.unlink()
    if _read_json(progress_file) != params:
        if done is None and not progress_file.exists():
            foreign = [CV_DIR[lang] for lang in langs if (out / CV_DIR[lang] / "clips").is_dir()
                       and any((out / CV_DIR[lang] / "clips").iterdir())]
            if foreign:
                raise DataError(f"{out}: {' '.join(foreign)}/clips already hold files but there is no .done or "
                                f".in_progress of osoup-make-mini-corpus; refusing to overwrite what may be a real "
                                f"corpus (choose an empty --out)")
        n = _remove_stale_clips(out, langs)
        if n:
            log.info("%s: removed %d clips of an earlier run with other parameters", out, n)
        atomic_write_text(progress_file, json.dumps(params) + "\n")
    t0 = time.time()
    plans = {lang: plan_language(lang, utts_per_lang, seed, max_speech_sec, snr) for lang in langs}
    jobs, reused = [], 0
    for lang, utts in plans.items():
        clips = out / CV_DIR[lang] / "clips"
        clips.mkdir(parents=True, exist_ok=True)
        for u in utts:
            path = clips / u.clip
            if path.is_file():
                reused += 1
            else:
                jobs.append((str(path), u.sentence, u.speaker, u.params))
    log.info("planned %d clips in %.1f s; %d already there, %d to synthesise with %d job(s)",
             sum(len(u) for u in plans.values()), time.time() - t0, reused, len(jobs), nj)
    results = _run_jobs(jobs, nj)
    if reused:
        import soundfile as sf

        for lang, utts in plans.items():
            for u in utts:
                if u.clip not in results:
                    results[u.clip] = (sf.info(str(out / CV_DIR[lang] / "clips" / u.clip)).duration, u.speaker.rate)
    summary: dict = {"params": params, "langs": {}}
    for lang, utts in plans.items():
        cv = CV_DIR[lang]
        _write_tsv(out / cv / "validated.tsv", VALIDATED_HEADER,
                   [[u.speaker.client_id, u.clip, u.sentence, u.up_votes, u.down_votes, u.speaker.age,
                     u.speaker.gender, u.speaker.accent] for u in utts])
        pair = "en_de" if lang == "en" else f"{cv}_en"
        _write_tsv(out / f"covost_v2.{pair}.tsv", COVOST_HEADER,
                   [[u.clip, u.sentence, u.translation, u.speaker.client_id, u.split] for u in utts])
        splits: dict[str, int] = {}
        for u in utts:
            splits[u.split] = splits.get(u.split, 0) + 1
        secs = [results[u.clip][0] for u in utts]
        summary["langs"][lang] = {
            "clips": len(utts), "speakers": len({u.speaker.client_id for u in utts}), "splits": splits,
            "hours": round(sum(secs) / 3600, 4), "min_sec": round(min(secs), 3), "max_sec": round(max(secs), 3),
            "faster_resynth": sum(1 for u in utts if results[u.clip][1] != u.speaker.rate)}
    summary["elapsed_sec"] = round(time.time() - t0, 2)
    atomic_write_text(done_file, json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    progress_file.unlink(missing_ok=True)
    log.info("%s: mini corpus complete in %.1f s", out, summary["elapsed_sec"])
    return {**summary, "skipped": False}
