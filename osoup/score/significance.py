"""Paired significance of the method comparison: bootstrap resampling of test utterances
(Koehn 2004, "Statistical significance tests for machine translation evaluation").

Each method is compared with a reference method (``joint`` by default) on every test set it
shares with it. A resample draws the set's utterances with replacement; the same draw is applied
to every method (the test is paired), and each method's corpus-level metric is recomputed from
the drawn utterances' sufficient statistics:

* WER/CER: per utterance the edit count and the reference length (jiwer's alignment of the texts
  exactly as ``osoup-score`` scored them); the corpus rate is total edits / total reference units.
* BLEU: per sentence sacrebleu's BLEU statistics (hypothesis and reference length, matching and
  total n-grams), taken from ``sacrebleu.BLEU._extract_corpus_statistics`` and turned into a
  score by ``BLEU._compute_score_from_stats``, the machinery of sacrebleu's own ``paired_bs``.
  Its test itself (``sacrebleu.significance``) does not fit: it reports p-values of absolute
  differences, takes its seed from an environment variable and has no seed replicas.

Seed replicas: a method trained with several seeds is one system whose metric in a resample is
the mean over its seeds of each seed's corpus metric on the drawn utterances (utterances are
paired across methods and seeds; seeds are not paired with each other). Its identity resample is
therefore the mean ± std table's mean. The "Ave." row resamples each language's test set on its
own and averages the per-language metrics.

Reported per method, measure and language: the observed difference (method − reference, the
difference of the table's means), the mean difference over the resamples and its 95% percentile
interval; the difference is significant when the interval excludes 0. The draws come from a fixed
seed (default 12345) mixed with the measure and language, so reports are reproducible. Why and
how to read the marks: ``docs/results.md``; ``test/test_significance.py`` checks the resampled
numbers against jiwer and sacrebleu.
"""
from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field

import numpy as np

from osoup.fileio import DataError
from osoup.score.bootstrap import (Delta, corpus_values, draw_counts, make_delta, observed_value,
                                   resampled_values, utterance_stats)
from osoup.score.comparison import Method
from osoup.score.langs import sort_langs
from osoup.score.scoring import entry_files, scored_texts

log = logging.getLogger(__name__)

TEST = "paired bootstrap resampling of test utterances (Koehn 2004)"
DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 12345
DEFAULT_REFERENCE = "joint"
AVE = "ave"  # the "language" key of a measure's average over languages
MEASURES = ("asr", "asr_cer", "st")


# ---------------------------------------------------------------- the comparison

@dataclass
class Significance:
    """Paired differences of every method to the reference; ``note`` says why none were computed."""

    reference: str
    resamples: int
    seed: int
    deltas: dict[tuple[str, str, str], Delta] = field(default_factory=dict)  # (measure, label, lang|AVE)
    bleu_signature: str | None = None
    note: str | None = None

    def get(self, measure: str, label: str, lang: str) -> Delta | None:
        return self.deltas.get((measure, label, lang))

    def mark(self, measure: str, label: str, lang: str) -> str:
        d = self.get(measure, label, lang)
        return d.mark if d is not None else ""

    def to_json(self) -> dict:
        """The comparison's results.json ``significance`` entry."""
        return {"test": TEST, "reference": self.reference, "resamples": self.resamples, "seed": self.seed,
                "interval": "95% percentile", "bleu_signature": self.bleu_signature, "note": self.note,
                "comparisons": [{"measure": m, "method": label, "lang": lang, **d.to_json()}
                                for (m, label, lang), d in self.deltas.items()]}


def measure_metric(measure: str, entry: dict) -> str:
    """The metric a measure's entry is scored with."""
    return {"asr": entry["metric"], "asr_cer": "cer", "st": "bleu"}[measure]


def _entries(m: Method, measure: str, lang: str) -> list[dict]:
    """The results.json entries behind a method's table cell (replicas lacking the number left out)."""
    task = "st" if measure == "st" else "asr"
    out = [r.asr.get(lang) if task == "asr" else r.st.get(lang) for r in m.replicas]
    return [e for e in out if e is not None and (measure != "asr_cer" or "cer" in e)]


class _StatsLoader:
    """Per-utterance statistics of results.json entries, read once per file and metric, checked
    against the stored number and paired by utterance id across systems."""

    def __init__(self) -> None:
        self._cache: dict[tuple, tuple[list[str], np.ndarray]] = {}

    def load(self, entry: dict, measure: str) -> tuple[list[str], np.ndarray]:
        metric = measure_metric(measure, entry)
        key = (entry.get("hyp_file"), entry.get("ref_file"), entry.get("_exp_dir"), metric)
        if key not in self._cache:
            ids, refs, hyps = scored_texts(entry, metric, entry.get("_normalized", True), entry.get("_exp_dir"))
            stats = utterance_stats(refs, hyps, metric)
            stored = entry["cer"] if measure == "asr_cer" else entry["value"]
            value = corpus_values(metric, stats.sum(axis=0))[0]
            if abs(value - stored) > 1e-6 * max(1.0, abs(stored)):
                hyp, _ = entry_files(entry, entry.get("_exp_dir"))
                raise DataError(f"{hyp}: scores {value:.4f} {metric.upper()} now but results.json holds "
                                f"{stored:.4f}; the file changed after scoring (rerun stage 8)")
            self._cache[key] = (ids, stats)
        return self._cache[key]


def _paired_systems(loader: _StatsLoader, methods: list[Method], measure: str,
                    lang: str) -> dict[str, list[np.ndarray]]:
    """Each method's per-seed statistics on one test set; every system must score the same
    utterances (else DataError naming both files and an utterance)."""
    systems, first = {}, None
    for m in methods:
        seeds = []
        for e in _entries(m, measure, lang):
            ids, stats = loader.load(e, measure)
            if first is None:
                first = (ids, e)
            elif ids != first[0]:
                _id_mismatch(first, (ids, e))
            seeds.append(stats)
        if seeds:
            systems[m.label] = seeds
    return systems


def _id_mismatch(a: tuple[list[str], dict], b: tuple[list[str], dict]) -> None:
    only_a, only_b = sorted(set(a[0]) - set(b[0])), sorted(set(b[0]) - set(a[0]))
    example = f"e.g. {only_a[0]!r} only in the first" if only_a else f"e.g. {only_b[0]!r} only in the second"
    raise DataError(f"paired significance: {a[1].get('set')} and {b[1].get('set')} ({a[1].get('task')}) score "
                    f"different utterances: {a[1].get('hyp_file')} ({len(a[0])} utts, refs {a[1].get('ref_file')}) vs "
                    f"{b[1].get('hyp_file')} ({len(b[0])} utts, refs {b[1].get('ref_file')}); {example}")


def _missing_files(methods: list[Method]) -> list[str]:
    """Why the texts behind some table cell cannot be read back (one line per file)."""
    problems = []
    for m in methods:
        for measure in MEASURES:
            for lang in m.values(measure):
                for e in _entries(m, measure, lang):
                    try:
                        entry_files(e, e.get("_exp_dir"))
                    except DataError as err:
                        problems.append(str(err))
    return sorted(set(problems))


def _set_deltas(sig: Significance, loader: _StatsLoader, methods: list[Method], measure: str,
                lang: str) -> dict[str, np.ndarray]:
    """The deltas of one test set; returns each method's resampled differences (for the average).
    Nothing where the reference method has no number for the set."""
    ref_entries = _entries(next(m for m in methods if m.label == sig.reference), measure, lang)
    if not ref_entries:
        return {}
    systems = _paired_systems(loader, methods, measure, lang)
    if len(systems) < 2:
        return {}
    metric = measure_metric(measure, ref_entries[0])
    n_utts = len(systems[sig.reference][0])
    log.info("paired bootstrap: %s %s, %d utterances, %d methods, %d resamples", measure, lang, n_utts,
             len(systems), sig.resamples)
    rng = np.random.default_rng([sig.seed, zlib.crc32(f"{measure}/{lang}".encode("utf-8"))])
    values = resampled_values(metric, systems, draw_counts(n_utts, sig.resamples, rng))
    ref_obs = observed_value(metric, systems[sig.reference])
    diffs = {}
    for label, seeds in systems.items():
        if label != sig.reference:
            diffs[label] = values[label] - values[sig.reference]
            observed = observed_value(metric, seeds) - ref_obs
            sig.deltas[(measure, label, lang)] = make_delta(diffs[label], observed, measure != "st")
    return diffs


def _average_deltas(sig: Significance, methods: list[Method], measure: str,
                    diffs: dict[str, dict[str, np.ndarray]]) -> None:
    """The "Ave." row: per resample the mean over languages of the per-language differences
    (``diffs``: label -> language -> resampled differences; each language resampled on its own),
    only where both methods have an average in every seed replica over the same languages."""
    ref = next(m for m in methods if m.label == sig.reference)
    langs = set(ref.values(measure))
    if not langs or len(ref.averages(measure)) != len(ref.replicas):
        return
    for m in methods:
        complete = len(m.averages(measure)) == len(m.replicas) and set(m.values(measure)) == langs
        if m.label == sig.reference or not complete or set(diffs.get(m.label, {})) != langs:
            continue
        per = [diffs[m.label][lang] for lang in sort_langs(langs)]
        observed = float(np.mean([sig.deltas[(measure, m.label, lang)].observed for lang in langs]))
        sig.deltas[(measure, m.label, AVE)] = make_delta(np.mean(per, axis=0), observed, measure != "st")


def paired_significance(methods: list[Method], reference: str = DEFAULT_REFERENCE,
                        resamples: int = DEFAULT_RESAMPLES, seed: int = DEFAULT_SEED,
                        required: bool = False) -> Significance | None:
    """Every method against ``reference`` on each shared test set and measure (module docstring).

    None with fewer than two methods. Without a method labelled ``reference``, or when a
    hypothesis or reference file cannot be read back, the result carries only a ``note`` (and a
    warning is logged); ``required`` (a reference named by the user) makes a missing label an error.
    """
    if resamples < 1:
        raise DataError(f"--bootstrap must be >= 1 to test significance (0: off), got {resamples}")
    if len(methods) < 2:
        return None
    signatures = sorted({e["signature"] for m in methods for r in m.replicas for e in r.st.values() if "signature" in e})
    sig = Significance(reference, resamples, seed, bleu_signature="; ".join(signatures) or None)
    labels = [m.label for m in methods]
    if reference not in labels:
        if required:
            raise DataError(f"--bootstrap-ref: no method is labelled {reference!r} (labels: {', '.join(labels)})")
        sig.note = f"no method is labelled {reference!r} (choose the reference with --bootstrap-ref)"
    elif problems := _missing_files(methods):
        sig.note = (f"the decoded texts cannot be read back: {problems[0]}"
                    + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    if sig.note:
        log.warning("paired significance not computed: %s", sig.note)
        return sig
    loader = _StatsLoader()
    for measure in MEASURES:
        langs = sort_langs(lang for m in methods for lang in m.values(measure))
        per_lang = {lang: _set_deltas(sig, loader, methods, measure, lang) for lang in langs}
        by_method: dict[str, dict[str, np.ndarray]] = {}
        for lang, d in per_lang.items():
            for label, diff in d.items():
                by_method.setdefault(label, {})[lang] = diff
        _average_deltas(sig, methods, measure, by_method)
    return sig
