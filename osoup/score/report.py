"""Scoring of decoded experiments and result reports.

Per experiment (``osoup-score --exp``): every hypothesis file
``exp/<tag>/decode_<dtag>/<set>/hyp.<task>`` (``utt-id text`` lines, task ``asr`` or ``st``) is
scored against the reference of ``<data>/<set>`` (``text`` for asr, ``text.en`` for st):
WER (CER for Chinese) or sacrebleu BLEU. The numbers go to ``exp/<tag>/results.json`` and a
readable ``exp/<tag>/RESULTS.md``.

Across experiments (``osoup-results``): results.json files are gathered into the paper's
table shapes (rows: languages + Ave.; columns: methods), a radar plot (Fig. 1) and a
WER-vs-BLEU trade-off plot. Experiments with the same label are seed replicas (mean ± std).
"""
from __future__ import annotations

import io
import json
import logging
import math
import re
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from osoup.data.datadir import read_scp
from osoup.fileio import DataError, atomic_write
from osoup.score import metrics

log = logging.getLogger(__name__)

TASKS = ("asr", "st")
CER_LANGS = ("zh", "ja")  # scored by character
LANG_ORDER = ("en", "fr", "de", "es", "ca", "zh")  # the paper's row order; others follow sorted


def asr_metric(lang: str) -> str:
    """``cer`` for languages written without word spaces, else ``wer``."""
    return "cer" if lang in CER_LANGS else "wer"


def parse_set_name(name: str) -> tuple[str, str]:
    """``test_fr`` -> (``test``, ``fr``); the language is the part after the last underscore."""
    split, sep, lang = name.rpartition("_")
    if not sep or not split or not lang:
        raise DataError(f"set name {name!r} is not <split>_<lang>")
    return split, lang


def lang_sort_key(lang: str) -> tuple[int, str]:
    return (LANG_ORDER.index(lang), "") if lang in LANG_ORDER else (len(LANG_ORDER), lang)


def default_normalizer(task: str, lang: str) -> Callable[[str], str]:
    """The scoring normalisation of the design: ASR lowercase/no punctuation, ST whitespace only."""
    from osoup.text.normalize import normalize_asr, normalize_st

    if task == "asr":
        return lambda s: normalize_asr(s, lang)
    return normalize_st


def _identity(s: str) -> str:
    return " ".join(s.split())


def read_hyp_file(path: str | Path) -> dict[str, str]:
    """``utt-id text`` lines; an id alone on its line is an empty hypothesis."""
    return read_scp(path, allow_empty_value=True)


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
    references fails. Returns the metric's numbers plus ``metric``, ``value``, ``lang``.
    """
    if metric not in ("wer", "cer", "bleu"):
        raise DataError(f"unknown metric {metric!r} (wer, cer or bleu)")
    if not refs:
        raise DataError(f"{ref_name}: no reference utterances")
    extra = [u for u in hyps if u not in refs]
    if extra:
        raise DataError(f"{hyp_name}: {len(extra)} hypothesis ids are not in {ref_name}, "
                        f"e.g. {extra[0]!r}")
    norm = normalize or _identity
    ids = sorted(refs)
    missing = [u for u in ids if u not in hyps]
    if missing:
        log.warning("%s: %d of %d reference utterances have no hypothesis (scored as empty, i.e. "
                    "deletions), e.g. %s", hyp_name, len(missing), len(ids), missing[0])
    ref_txt = {u: norm(refs[u]) for u in ids}
    hyp_txt = {u: norm(hyps.get(u, "")) for u in ids}
    empty = [u for u in ids if not ref_txt[u].strip()] if metric != "bleu" else []
    if empty:
        log.warning("%s: %d of %d references are empty after normalisation and are not scored, "
                    "e.g. %s", ref_name, len(empty), len(ids), empty[0])
    for what, bad in (("have no hypothesis", missing), ("have an empty reference", empty)):
        if len(bad) > max_bad_frac * len(ids):
            raise DataError(f"{hyp_name}: {len(bad)} of {len(ids)} utterances {what} "
                            f"(more than --max-bad-frac {max_bad_frac}), e.g. {bad[0]!r}")
    keep = [u for u in ids if u not in set(empty)]
    r = [ref_txt[u] for u in keep]
    h = [hyp_txt[u] for u in keep]
    try:
        if metric == "bleu":
            out = metrics.bleu_details(r, h)
        else:
            out = (metrics.cer if metric == "cer" else metrics.wer)(r, h, ids=keep)
            if metric == "wer":  # the character error rate too, for every language
                out["cer"] = metrics.cer(r, h, ids=keep)["cer"]
    except ValueError as e:
        raise DataError(f"{ref_name}: {e}") from None
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
    """(decode tag, set, task, path) for every ``decode_<tag>/<set>/hyp.<task>`` under exp_dir."""
    exp_dir = Path(exp_dir)
    out = []
    for p in sorted(exp_dir.glob("decode_*/*/hyp.*")):
        task = p.name.split(".", 1)[1]
        if task not in TASKS:
            log.warning("%s: unknown task %r (expected hyp.asr or hyp.st); not scored", p, task)
            continue
        out.append((p.parent.parent.name[len("decode_"):], p.parent.name, task, p))
    return out


def _averages(entries: list[dict]) -> dict:
    """Per split and task: the unweighted mean over languages (the paper's "Ave.")."""
    out: dict[str, dict] = {}
    for split in sorted({e["split"] for e in entries}):
        for task in TASKS:
            sel = [e for e in entries if e["split"] == split and e["task"] == task]
            if sel:
                out.setdefault(split, {})[task] = {
                    "value": statistics.fmean(e["value"] for e in sel),
                    "langs": [e["lang"] for e in sel],
                }
    return out


def score_exp(
    exp_dir: str | Path,
    data_root: str | Path,
    normalize: bool = True,
    max_bad_frac: float = 0.05,
    decode_tags: list[str] | None = None,
    label: str | None = None,
    seed: int | None = None,
) -> dict:
    """Score every decoding output of one experiment; the results.json structure."""
    exp_dir, data_root = Path(exp_dir), Path(data_root)
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
    if seed is None:
        seed = _read_yaml_field(exp_dir / "config.yaml", "seed")
    results: dict = {"exp": str(exp_dir), "tag": exp_dir.name, "label": label, "seed": seed,
                     "data": str(data_root), "normalized": normalize, "decodes": {}}
    for dtag, set_name, task, hyp_path in found:
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
        log.info("%s %s %s: %s %.2f (%d utts)", dtag, set_name, task, metric.upper(),
                 res["value"], res["n_utts"])
        dec = results["decodes"].setdefault(dtag, {"config": None, "config_file": None, "sets": []})
        dec["sets"].append(res)
    for dtag, dec in results["decodes"].items():
        for name in ("config.yaml", "decode.yaml"):
            p = exp_dir / f"decode_{dtag}" / name
            if p.is_file():
                dec["config"], dec["config_file"] = p.read_text(encoding="utf-8"), str(p)
                break
        dec["sets"].sort(key=lambda e: (e["split"], e["task"], lang_sort_key(e["lang"])))
        dec["averages"] = _averages(dec["sets"])
    return results


def format_exp_markdown(results: dict) -> str:
    """RESULTS.md text of one experiment."""
    lines = [f"# Results: {results['exp']}", ""]
    meta = [f"references: `{results['data']}`",
            "normalisation: " + ("ASR lowercase, punctuation removed (zh: characters); "
                                 "ST whitespace only" if results["normalized"] else "none")]
    if results.get("seed") is not None:
        meta.append(f"seed: {results['seed']}")
    if results.get("label"):
        meta.append(f"label: {results['label']}")
    lines += [f"- {m}" for m in meta] + [""]
    for dtag, dec in results["decodes"].items():
        lines += [f"## decode_{dtag}", ""]
        if dec["config"]:
            lines += [f"Decoding config (`{dec['config_file']}`):", "", "```yaml",
                      dec["config"].rstrip("\n"), "```", ""]
        else:
            lines += [f"Decoding config: decode tag `{dtag}` (no config file in the decode dir).", ""]
        signatures = set()
        for split in sorted({e["split"] for e in dec["sets"]}):
            asr = [e for e in dec["sets"] if e["split"] == split and e["task"] == "asr"]
            st = [e for e in dec["sets"] if e["split"] == split and e["task"] == "st"]
            if asr:
                lines += [f"### {split}: ASR", "",
                          "| lang | #utt | #words | err | sub | del | ins | WER/CER (%) | CER (%) |",
                          "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
                for e in asr:
                    units = e.get("ref_words", e.get("ref_chars"))
                    unit = "chars" if e["metric"] == "cer" else ""
                    lines.append(f"| {e['lang']} | {e['n_utts']} | {units}{' ' + unit if unit else ''} | "
                                 f"{e['errors']} | {e['sub']} | {e['del']} | {e['ins']} | "
                                 f"{e['value']:.2f} ({e['metric'].upper()}) | {e['cer']:.2f} |")
                ave = dec["averages"][split]["asr"]["value"]
                ave_cer = statistics.fmean(e["cer"] for e in asr)
                lines += [f"| **Ave.** | {sum(e['n_utts'] for e in asr)} | | | | | | **{ave:.2f}** | "
                          f"**{ave_cer:.2f}** |", ""]
            if st:
                lines += [f"### {split}: S2TT", "", "| lang→en | #utt | BLEU |", "|---|---:|---:|"]
                for e in st:
                    lines.append(f"| {e['lang']}→en | {e['n_utts']} | {e['value']:.2f} |")
                    signatures.add(e["signature"])
                ave = dec["averages"][split]["st"]["value"]
                lines += [f"| **Ave.** | {sum(e['n_utts'] for e in st)} | **{ave:.2f}** |", ""]
        for sig in sorted(signatures):
            lines += [f"BLEU signature: `{sig}`", ""]
        notes = [f"- {e['set']} {e['task']}: {e['missing_hyps']} utterances without hypothesis "
                 f"(scored as deletions)" for e in dec["sets"] if e["missing_hyps"]]
        notes += [f"- {e['set']} {e['task']}: {e['empty_refs']} empty references not scored"
                  for e in dec["sets"] if e["empty_refs"]]
        if notes:
            lines += ["Warnings:", ""] + notes + [""]
        lines += ["WER/CER: corpus level (total errors / total reference words or characters); the "
                  "CER column scores every language by character (whitespace removed). "
                  "Ave.: unweighted mean over languages.", ""]
    return "\n".join(lines)


def write_exp_results(exp_dir: str | Path, results: dict) -> tuple[Path, Path]:
    """Write ``RESULTS.md`` and ``results.json`` into the experiment dir, atomically."""
    exp_dir = Path(exp_dir)
    md, js = exp_dir / "RESULTS.md", exp_dir / "results.json"
    with atomic_write(js) as f:
        json.dump(results, f, indent=2, ensure_ascii=False)
        f.write("\n")
    with atomic_write(md) as f:
        f.write(format_exp_markdown(results))
    return md, js


# ----------------------------------------------------------------------------------------
# Comparison across experiments (osoup-results)


@dataclass
class Method:
    """One column of the comparison: an experiment, or seed replicas of one."""

    label: str
    exps: list[str] = field(default_factory=list)
    seeds: list = field(default_factory=list)
    asr: dict[str, list[float]] = field(default_factory=dict)  # lang -> value per replica
    asr_metric: dict[str, str] = field(default_factory=dict)
    asr_cer: dict[str, list[float]] = field(default_factory=dict)  # character error rate, every language
    st: dict[str, list[float]] = field(default_factory=dict)
    asr_ave: list[float] = field(default_factory=list)  # per replica
    asr_cer_ave: list[float] = field(default_factory=list)
    st_ave: list[float] = field(default_factory=list)


def mean_std(values: list[float]) -> tuple[float, float | None]:
    """Mean and sample standard deviation (None for a single value)."""
    if len(values) == 1:
        return values[0], None
    return statistics.fmean(values), statistics.stdev(values)


def load_results(path: str | Path) -> dict:
    """results.json of an experiment (the exp dir or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.json"
    if not path.is_file():
        raise DataError(f"{path}: not found (run osoup-score --exp first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise DataError(f"{path}: not valid JSON: {e}") from None
    if "decodes" not in data:
        raise DataError(f"{path}: no 'decodes' field; not an osoup-score results.json")
    data["_path"] = str(path)
    return data


def default_label(results: dict) -> str:
    """The results' label, else the experiment dir name without a ``_seedN`` suffix."""
    if results.get("label"):
        return str(results["label"])
    return re.sub(r"[_-]seed\d+$", "", results.get("tag") or Path(results["_path"]).parent.name)


def gather(
    results: list[dict],
    labels: list[str] | None = None,
    split: str = "test",
    decode_tag: str | None = None,
) -> list[Method]:
    """Group experiments into methods (same label = seed replicas) and pick their numbers."""
    if labels is not None and len(labels) != len(results):
        raise DataError(f"{len(labels)} labels for {len(results)} experiments")
    methods: dict[str, Method] = {}
    for i, res in enumerate(results):
        label = labels[i] if labels is not None else default_label(res)
        where = res["_path"]
        tags = list(res["decodes"])
        if decode_tag is not None:
            if decode_tag not in res["decodes"]:
                raise DataError(f"{where}: no decode tag {decode_tag!r} (has {', '.join(tags)})")
            dtag = decode_tag
        elif len(tags) == 1:
            dtag = tags[0]
        else:
            raise DataError(f"{where}: several decode tags ({', '.join(tags)}); choose one with --decode-tag")
        sets = [e for e in res["decodes"][dtag]["sets"] if e["split"] == split]
        if not sets:
            raise DataError(f"{where}: no '{split}' sets in decode {dtag!r}")
        m = methods.setdefault(label, Method(label))
        seed = res.get("seed")
        if m.exps and (seed is None or None in m.seeds or seed in m.seeds):
            raise DataError(f"{where}: label {label!r} already used by {m.exps[0]} with the same seed "
                            f"({seed}); replicas need distinct seeds, other methods distinct labels")
        asr = {e["lang"]: e for e in sets if e["task"] == "asr"}
        st = {e["lang"]: e for e in sets if e["task"] == "st"}
        if m.exps and (set(asr) != set(m.asr) or set(st) != set(m.st)):
            raise DataError(f"{where}: seed replica of {label!r} covers other languages than {m.exps[0]}")
        m.exps.append(where)
        m.seeds.append(seed)
        for lang, e in asr.items():
            m.asr.setdefault(lang, []).append(e["value"])
            m.asr_metric[lang] = e["metric"]
            if "cer" in e:
                m.asr_cer.setdefault(lang, []).append(e["cer"])
        for lang, e in st.items():
            m.st.setdefault(lang, []).append(e["value"])
        if asr:
            m.asr_ave.append(statistics.fmean(e["value"] for e in asr.values()))
            if all("cer" in e for e in asr.values()):
                m.asr_cer_ave.append(statistics.fmean(e["cer"] for e in asr.values()))
        if st:
            m.st_ave.append(statistics.fmean(e["value"] for e in st.values()))
    return list(methods.values())


def _cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def comparison_markdown(methods: list[Method], split: str = "test") -> str:
    """Tables in the shape of the paper's Tables 1/2/5: languages + Ave. by methods."""
    lines = [f"# Comparison ({split} sets)", ""]
    header = "| Lang | " + " | ".join(m.label for m in methods) + " |"
    rule = "|---|" + "---:|" * len(methods)
    partial = False
    # (values attribute, averages attribute, task): WER/CER as scored, CER of every language
    # (only when some language is scored by word), BLEU.
    tables = [("asr", "asr_ave", "asr")]
    if any(metric == "wer" for m in methods for metric in m.asr_metric.values()):
        tables.append(("asr_cer", "asr_cer_ave", "asr"))
    tables.append(("st", "st_ave", "st"))
    for attr, ave_attr, task in tables:
        langs = sorted({lang for m in methods for lang in getattr(m, attr)}, key=lang_sort_key)
        if not langs:
            continue
        if attr == "asr":
            metrics_used = sorted({m.asr_metric[lang].upper() for m in methods for lang in m.asr})
            lines += [f"## ASR {'/'.join(metrics_used)} (%), lower is better", "", header, rule]
        elif attr == "asr_cer":
            lines += ["## ASR CER (%), every language by character, lower is better", "", header, rule]
        else:
            lines += ["## S2TT BLEU, higher is better", "",
                      header.replace("| Lang |", "| Lang→En |", 1), rule]
        for lang in langs:
            name = lang.capitalize()
            if attr == "asr" and lang in CER_LANGS:
                name += " (CER)"
            if task == "st":
                name += "→En"
            cells = [_cell(getattr(m, attr)[lang]) if lang in getattr(m, attr) else "–" for m in methods]
            lines.append(f"| {name} | " + " | ".join(cells) + " |")
        aves = []
        for m in methods:
            per = getattr(m, ave_attr)
            if not per:
                aves.append("–")
                continue
            mark = ""
            if set(getattr(m, attr)) != set(langs):
                mark, partial = " †", True
            aves.append(f"**{_cell(per)}**{mark}")
        lines += ["| Ave. | " + " | ".join(aves) + " |", ""]
    notes = ["Ave.: unweighted mean over languages; with seed replicas, mean ± sample std over seeds "
             "of each replica's value."]
    if partial:
        notes.append("†: average over fewer languages than the table rows.")
    lines += notes + ["", "Experiments:", ""]
    for m in methods:
        named = [str(s) for s in m.seeds if s is not None]
        seeds = f" (seed{'s' if len(named) > 1 else ''} {', '.join(named)})" if named else ""
        lines.append(f"- {m.label}{seeds}: " + ", ".join(f"`{e}`" for e in m.exps))
    lines.append("")
    return "\n".join(lines)


def _save_figure(fig, path: Path) -> None:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120, bbox_inches="tight")
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def radar_plot(methods: list[Method], path: str | Path) -> Path | None:
    """Fig. 1 shape: one polar panel per task (ASR, S2TT), one axis per language, one polygon
    per method. ASR shows 100 − WER/CER so that, as for BLEU, outward is better. A task with
    fewer than three languages gets grouped bars instead."""
    panels = []
    for task in TASKS:
        langs = sorted({lang for m in methods for lang in getattr(m, task)}, key=lang_sort_key)
        if langs:
            panels.append((task, langs))
    if not panels:
        log.warning("radar plot: no results to plot")
        return None
    plt = _pyplot()
    fig = plt.figure(figsize=(5.5 * len(panels), 5.5))
    axes = []
    for i, (task, langs) in enumerate(panels, 1):
        # A polygon needs three axes: a panel with one or two languages is a bar chart instead.
        ax = fig.add_subplot(1, len(panels), i, projection="polar" if len(langs) >= 3 else None)
        axes.append(ax)
        if len(langs) < 3:
            _bar_panel(ax, methods, task, langs)
            continue
        angles = [2 * math.pi * i / len(langs) for i in range(len(langs))]
        allv = []
        for m in methods:
            vals = getattr(m, task)
            if not all(lang in vals for lang in langs):
                continue  # a polygon with holes would mislead
            v = [mean_std(vals[lang])[0] for lang in langs]
            if task == "asr":
                v = [100.0 - x for x in v]
            allv += v
            ax.plot(angles + angles[:1], v + v[:1], marker="o", label=m.label)
            ax.fill(angles + angles[:1], v + v[:1], alpha=0.08)
        ax.set_xticks(angles)
        ax.set_rlabel_position(180.0 / len(langs))  # radial tick labels between two axes
        if task == "asr":
            ax.set_xticklabels([lang.capitalize() + (" (CER)" if lang in CER_LANGS else "") for lang in langs])
            ax.set_title("ASR: 100 − WER/CER (%)\noutward is better", pad=18)
        else:
            ax.set_xticklabels([f"{lang.capitalize()}→En" for lang in langs])
            ax.set_title("S2TT: BLEU\noutward is better", pad=18)
        if allv:
            lo, hi = min(allv), max(allv)
            pad = max(1.0, 0.2 * (hi - lo))
            ax.set_ylim(max(0.0, lo - pad), hi + pad)
    if any(len(langs) >= 3 for _, langs in panels):
        fig.text(0.5, 1.0, "radial axes do not start at 0", ha="center", fontsize=8, color="gray")
    fig.subplots_adjust(bottom=0.16)  # room for the legend below the x labels
    handles, names = axes[0].get_legend_handles_labels()
    for ax in axes[1:]:
        for h, n in zip(*ax.get_legend_handles_labels()):
            if n not in names:
                handles.append(h)
                names.append(n)
    fig.legend(handles, names, loc="lower center", ncol=min(4, max(1, len(names))),
               bbox_to_anchor=(0.5, -0.02))
    path = Path(path)
    _save_figure(fig, path)
    plt.close(fig)
    return path


def _bar_panel(ax, methods: list[Method], task: str, langs: list[str]) -> None:
    """Grouped bars (mean, with the seed std as an error bar) of one task: the radar panel's
    stand-in when there are fewer than three languages."""
    width = 0.8 / max(1, len(methods))
    for j, m in enumerate(methods):
        vals = getattr(m, task)
        xs = [i + (j - (len(methods) - 1) / 2) * width for i, lang in enumerate(langs) if lang in vals]
        stats = [mean_std(vals[lang]) for lang in langs if lang in vals]
        ax.bar(xs, [mu for mu, _ in stats], width, yerr=[sd or 0.0 for _, sd in stats], capsize=3, label=m.label)
    ax.set_xticks(range(len(langs)))
    if task == "asr":
        ax.set_xticklabels([lang.capitalize() + (" (CER)" if lang in CER_LANGS else "") for lang in langs])
        ax.set_title("ASR: WER/CER (%)\nlower is better")
    else:
        ax.set_xticklabels([f"{lang.capitalize()}→En" for lang in langs])
        ax.set_title("S2TT: BLEU\nhigher is better")


def tradeoff_plot(methods: list[Method], path: str | Path) -> Path | None:
    """Average ASR error (x, lower is better) against average BLEU (y, higher is better),
    one point per method, with ±1 std error bars where seed replicas exist."""
    pts = [m for m in methods if m.asr_ave and m.st_ave]
    if not pts:
        log.warning("trade-off plot: no method has both ASR and S2TT results; not written")
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4.5))
    for m in pts:
        x, xs = mean_std(m.asr_ave)
        y, ys = mean_std(m.st_ave)
        ax.errorbar([x], [y], xerr=None if xs is None else [xs], yerr=None if ys is None else [ys],
                    fmt="o", capsize=4, label=m.label)
        ax.annotate(m.label, (x, y), textcoords="offset points", xytext=(6, 6), fontsize=9)
    ax.set_xlabel("average ASR WER/CER (%)  (← better)")
    ax.set_ylabel("average S2TT BLEU  (↑ better)")
    ax.set_title("ASR error vs. S2TT BLEU (better: up and left)")
    ax.grid(True, alpha=0.3)
    path = Path(path)
    _save_figure(fig, path)
    plt.close(fig)
    return path


def write_comparison(methods: list[Method], out_dir: str | Path, split: str = "test") -> dict[str, Path]:
    """RESULTS.md, results.json, radar.png and tradeoff.png into ``out_dir``."""
    out_dir = Path(out_dir)
    written = {}
    with atomic_write(out_dir / "RESULTS.md") as f:
        f.write(comparison_markdown(methods, split))
    written["md"] = out_dir / "RESULTS.md"
    summary = {"split": split, "methods": []}
    for m in methods:
        entry = {"label": m.label, "exps": m.exps, "seeds": m.seeds, "asr": {}, "asr_cer": {}, "st": {}}
        for task in (*TASKS, "asr_cer"):
            for lang, vals in getattr(m, task).items():
                mean, std = mean_std(vals)
                entry[task][lang] = {"mean": mean, "std": std, "values": vals}
                if task == "asr":
                    entry[task][lang]["metric"] = m.asr_metric[lang]
            per = getattr(m, f"{task}_ave")
            if per:
                mean, std = mean_std(per)
                entry[f"{task}_ave"] = {"mean": mean, "std": std, "values": per}
        summary["methods"].append(entry)
    with atomic_write(out_dir / "results.json") as f:
        json.dump(summary, f, indent=2, ensure_ascii=False)
        f.write("\n")
    written["json"] = out_dir / "results.json"
    for key, fn in (("radar", radar_plot), ("tradeoff", tradeoff_plot)):
        p = fn(methods, out_dir / f"{key}.png")
        if p is not None:
            written[key] = p
    return written
