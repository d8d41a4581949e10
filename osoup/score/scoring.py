"""Scoring of one experiment's decoding outputs.

Every hypothesis file ``exp/<tag>/decode_<dtag>/<set>/hyp.<task>`` (``utt-id text`` lines, task
``asr`` or ``st``) is scored against the reference of ``<data>/<set>`` (``text`` for asr,
``text.en`` for st): WER (CER for Chinese and Japanese) or sacrebleu BLEU, after the scoring
normalisation of ``docs/design.md``. The per-language entries returned here are what
``results.json`` holds; the "Ave." of the paper's tables is derived from them
(:func:`split_averages`), never stored beside them.
"""
from __future__ import annotations

import logging
import statistics
from pathlib import Path
from typing import Callable

from osoup import expdir
from osoup.fileio import DataError, read_scp
from osoup.score import metrics
from osoup.score.langs import TASKS, asr_metric, lang_sort_key, parse_set_name

log = logging.getLogger(__name__)


def default_normalizer(task: str, lang: str) -> Callable[[str], str]:
    """The scoring normalisation of ``docs/design.md``: ASR lowercase, no punctuation;
    ST whitespace only."""
    from osoup.text.normalize import normalize_asr, normalize_st

    if task == "asr":
        return lambda s: normalize_asr(s, lang)
    return normalize_st


def _identity(s: str) -> str:
    return " ".join(s.split())


def read_hyp_file(path: str | Path) -> dict[str, str]:
    """``utt-id text`` lines; an id alone on its line is an empty hypothesis."""
    return read_scp(path, allow_empty_value=True)


def _check_inputs(refs: dict[str, str], hyps: dict[str, str], metric: str, ref_name: str,
                  hyp_name: str) -> None:
    if metric not in ("wer", "cer", "bleu"):
        raise DataError(f"unknown metric {metric!r} (wer, cer or bleu)")
    if not refs:
        raise DataError(f"{ref_name}: no reference utterances")
    extra = [u for u in hyps if u not in refs]
    if extra:
        raise DataError(f"{hyp_name}: {len(extra)} hypothesis ids are not in {ref_name}, "
                        f"e.g. {extra[0]!r}")


def _aligned(refs: dict[str, str], hyps: dict[str, str], metric: str,
             normalize: Callable[[str], str] | None) -> tuple[list[str], dict, dict, list[str], list[str]]:
    """Normalised texts keyed by the sorted reference ids (a missing hypothesis is empty), the ids
    without a hypothesis and, for WER/CER, those whose reference is empty after normalisation."""
    norm = normalize or _identity
    ids = sorted(refs)
    ref_txt = {u: norm(refs[u]) for u in ids}
    hyp_txt = {u: norm(hyps.get(u, "")) for u in ids}
    empty = [u for u in ids if not ref_txt[u].strip()] if metric != "bleu" else []
    return ids, ref_txt, hyp_txt, [u for u in ids if u not in hyps], empty


def _metric_numbers(metric: str, refs: list[str], hyps: list[str], ids: list[str], ref_name: str) -> dict:
    """The metric's own numbers; WER entries carry every language's character error rate too."""
    try:
        if metric == "bleu":
            return metrics.bleu_details(refs, hyps)
        out = (metrics.cer if metric == "cer" else metrics.wer)(refs, hyps, ids=ids)
        if metric == "wer":
            out["cer"] = metrics.cer(refs, hyps, ids=ids)["cer"]
        return out
    except ValueError as e:
        raise DataError(f"{ref_name}: {e}") from None


def score_texts(
    refs: dict[str, str],
    hyps: dict[str, str],
    metric: str,
    lang: str,
    normalize: Callable[[str], str] | None = None,
    ref_name: str = "reference",
    hyp_name: str = "hypothesis",
    max_bad_frac: float = 0.05,
) -> dict:
    """Score hypotheses against references keyed by utterance id.

    Reference utterances without a hypothesis are scored as empty hypotheses (all deletions)
    and counted in ``missing_hyps``; a hypothesis id absent from the references is an error.
    For WER/CER, references that are empty after normalisation cannot be scored: they are
    left out and counted in ``empty_refs``. Either count above ``max_bad_frac`` of the
    references fails. Returns the metric's numbers plus ``metric``, ``value``, ``lang``
    (behaviour pinned by ``test/test_score.py``).
    """
    _check_inputs(refs, hyps, metric, ref_name, hyp_name)
    ids, ref_txt, hyp_txt, missing, empty = _aligned(refs, hyps, metric, normalize)
    if missing:
        log.warning("%s: %d of %d reference utterances have no hypothesis (scored as empty, i.e. "
                    "deletions), e.g. %s", hyp_name, len(missing), len(ids), missing[0])
    if empty:
        log.warning("%s: %d of %d references are empty after normalisation and are not scored, "
                    "e.g. %s", ref_name, len(empty), len(ids), empty[0])
    for what, bad in (("have no hypothesis", missing), ("have an empty reference", empty)):
        if len(bad) > max_bad_frac * len(ids):
            raise DataError(f"{hyp_name}: {len(bad)} of {len(ids)} utterances {what} "
                            f"(more than --max-bad-frac {max_bad_frac}), e.g. {bad[0]!r}")
    keep = [u for u in ids if u not in set(empty)]
    out = _metric_numbers(metric, [ref_txt[u] for u in keep], [hyp_txt[u] for u in keep], keep, ref_name)
    out.update({"metric": metric, "value": out[metric], "lang": lang,
                "missing_hyps": len(missing), "empty_refs": len(empty)})
    return out


def _read_yaml_field(path: Path, key: str):
    if not path.is_file():
        return None
    import yaml

    try:
        conf = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise DataError(f"{path}: not valid YAML: {e}") from None
    return conf.get(key) if isinstance(conf, dict) else None


def find_hyp_files(exp_dir: str | Path) -> list[tuple[str, str, str, Path]]:
    """(decode tag, set, task, path) for every hypothesis file of the experiment
    (:func:`osoup.expdir.hyp_files`); files of an unknown task are reported and left out."""
    out = []
    for h in expdir.hyp_files(exp_dir):
        if h.task not in TASKS:
            log.warning("%s: unknown task %r (expected hyp.asr or hyp.st); not scored", h.path, h.task)
            continue
        out.append((h.dtag, h.set_name, h.task, h.path))
    return out


def _hyps_to_score(exp_dir: Path, decode_tags: list[str] | None) -> list[tuple[str, str, str, Path]]:
    """The hypothesis files of the chosen decode tags (all when none is chosen)."""
    if not exp_dir.is_dir():
        raise DataError(f"{exp_dir}: experiment directory not found")
    found = find_hyp_files(exp_dir)
    if decode_tags:
        unknown = set(decode_tags) - {t for t, *_ in found}
        if unknown:
            raise DataError(f"{exp_dir}: no hypotheses for decode tag(s) {sorted(unknown)}")
        found = [f for f in found if f[0] in decode_tags]
    if not found:
        raise DataError(f"{exp_dir}: no decode_*/<set>/hyp.asr|hyp.st files to score (decode first)")
    return found


def _score_set(set_name: str, task: str, hyp_path: Path, data_root: Path, normalize: bool,
               max_bad_frac: float) -> dict:
    """One results.json entry: the numbers of one hypothesis file and where they come from."""
    split, lang = parse_set_name(set_name)
    ref_path = data_root / set_name / ("text" if task == "asr" else "text.en")
    if not ref_path.is_file():
        raise DataError(f"{ref_path}: reference for {hyp_path} not found")
    metric = asr_metric(lang) if task == "asr" else "bleu"
    norm = default_normalizer(task, lang) if normalize else None
    res = score_texts(read_scp(ref_path, allow_empty_value=True), read_hyp_file(hyp_path),
                      metric, lang, normalize=norm, ref_name=str(ref_path),
                      hyp_name=str(hyp_path), max_bad_frac=max_bad_frac)
    res.update({"set": set_name, "split": split, "task": task,
                "hyp_file": str(hyp_path), "ref_file": str(ref_path)})
    return res


def entry_files(entry: dict, exp_dir: str | Path | None = None) -> tuple[Path, Path]:
    """The hypothesis and reference files a results.json entry was scored from. A hypothesis
    path that does not resolve from here (scored from another dir, or the experiment moved) is
    looked up in ``exp_dir`` (the dir holding the results.json) as ``decode_<dtag>/<set>/hyp.<task>``.
    DataError when either is not there."""
    if not entry.get("hyp_file") or not entry.get("ref_file"):
        raise DataError(f"{entry.get('set')} {entry.get('task')}: the results.json entry names no hyp_file/ref_file "
                        f"(written by an older osoup-score; rerun stage 8)")
    hyp, ref = Path(entry["hyp_file"]), Path(entry["ref_file"])
    if not hyp.is_file() and exp_dir is not None:
        hyp = Path(exp_dir) / hyp.parent.parent.name / hyp.parent.name / hyp.name
    for path in (hyp, ref):
        if not path.is_file():
            raise DataError(f"{path}: not found (scored in {entry.get('set')} {entry.get('task')})")
    return hyp, ref


def scored_texts(entry: dict, metric: str, normalize: bool = True,
                 exp_dir: str | Path | None = None) -> tuple[list[str], list[str], list[str]]:
    """Utterance ids, references and hypotheses of one results.json entry, exactly as
    :func:`score_texts` scored them with ``metric``: sorted ids, normalised, a missing hypothesis
    empty, and for WER/CER the references that are empty after normalisation left out."""
    hyp_path, ref_path = entry_files(entry, exp_dir)
    refs, hyps = read_scp(ref_path, allow_empty_value=True), read_hyp_file(hyp_path)
    _check_inputs(refs, hyps, metric, str(ref_path), str(hyp_path))
    norm = default_normalizer(entry["task"], entry["lang"]) if normalize else None
    ids, ref_txt, hyp_txt, _, empty = _aligned(refs, hyps, metric, norm)
    dropped = set(empty)
    keep = [u for u in ids if u not in dropped]
    return keep, [ref_txt[u] for u in keep], [hyp_txt[u] for u in keep]


def _attach_config(exp_dir: Path, dtag: str, dec: dict) -> None:
    """The decoding config of ``decode_<dtag>`` (``config.yaml`` or ``decode.yaml``), if any."""
    for name in (expdir.CONFIG, expdir.DECODE_CONF):
        p = expdir.decode_dir(exp_dir, dtag) / name
        if p.is_file():
            dec["config"], dec["config_file"] = p.read_text(encoding="utf-8"), str(p)
            return


def score_exp(
    exp_dir: str | Path,
    data_root: str | Path,
    normalize: bool = True,
    max_bad_frac: float = 0.05,
    decode_tags: list[str] | None = None,
    label: str | None = None,
    seed: int | None = None,
) -> dict:
    """Score every decoding output of one experiment; the results.json structure (without the
    derived averages, which :func:`osoup.score.resultfiles.write_exp_results` adds)."""
    exp_dir, data_root = Path(exp_dir), Path(data_root)
    found = _hyps_to_score(exp_dir, decode_tags)
    if seed is None:
        seed = _read_yaml_field(exp_dir / expdir.CONFIG, "seed")
    results: dict = {"exp": str(exp_dir), "tag": exp_dir.name, "label": label, "seed": seed,
                     "data": str(data_root), "normalized": normalize, "decodes": {}}
    for dtag, set_name, task, hyp_path in found:
        res = _score_set(set_name, task, hyp_path, data_root, normalize, max_bad_frac)
        log.info("%s %s %s: %s %.2f (%d utts)", dtag, set_name, task, res["metric"].upper(),
                 res["value"], res["n_utts"])
        dec = results["decodes"].setdefault(dtag, {"config": None, "config_file": None, "sets": []})
        dec["sets"].append(res)
    for dtag, dec in results["decodes"].items():
        _attach_config(exp_dir, dtag, dec)
        dec["sets"].sort(key=lambda e: (e["split"], e["task"], lang_sort_key(e["lang"])))
    return results


def select_sets(sets: list[dict], split: str, task: str) -> list[dict]:
    """The entries of one split and task, in their stored (table) order."""
    return [e for e in sets if e["split"] == split and e["task"] == task]


def split_averages(sets: list[dict]) -> dict[str, dict[str, dict]]:
    """Per split and task: the unweighted mean over languages (the paper's "Ave.") and the
    languages it covers, computed from the per-language entries."""
    out: dict[str, dict] = {}
    for split in sorted({e["split"] for e in sets}):
        for task in TASKS:
            sel = select_sets(sets, split, task)
            if sel:
                out.setdefault(split, {})[task] = {
                    "value": statistics.fmean(e["value"] for e in sel),
                    "langs": [e["lang"] for e in sel],
                }
    return out
