"""Markdown tables: one experiment's RESULTS.md and the comparison of methods in the shape of
the paper's Tables 1, 2 and 5 (rows: languages + Ave.; columns: methods)."""
from __future__ import annotations

import statistics

from osoup.score.bootstrap import MARK_BETTER, MARK_WORSE, Delta
from osoup.score.comparison import Method, comparison_measures, mean_std
from osoup.score.langs import lang_label, sort_langs
from osoup.score.scoring import select_sets
from osoup.score.seeds import ALPHA as SEED_ALPHA
from osoup.score.seeds import TEST as SEED_TEST
from osoup.score.seeds import SeedTest
from osoup.score.significance import AVE, TEST, Significance

EXP_NOTE = ("WER/CER: corpus level (total errors / total reference words or characters); the "
            "CER column scores every language by character (whitespace removed). "
            "Ave.: unweighted mean over languages.")
COMPARISON_NOTE = ("Ave.: unweighted mean over languages; with seed replicas, mean ± sample std over seeds "
                   "of each replica's value.")


def _exp_header(results: dict) -> list[str]:
    lines = [f"# Results: {results['exp']}", ""]
    meta = [f"references: `{results['data']}`",
            "normalisation: " + ("ASR lowercase, punctuation removed (zh: characters); "
                                 "ST whitespace only" if results["normalized"] else "none")]
    if results.get("seed") is not None:
        meta.append(f"seed: {results['seed']}")
    if results.get("label"):
        meta.append(f"label: {results['label']}")
    return lines + [f"- {m}" for m in meta] + [""]


def _asr_table(split: str, asr: list[dict]) -> list[str]:
    """Edit counts and error rates per language, with the mean WER/CER and mean CER."""
    lines = [f"### {split}: ASR", "",
             "| lang | #utt | #words | err | sub | del | ins | WER/CER (%) | CER (%) |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for e in asr:
        units = e.get("ref_words", e.get("ref_chars"))
        unit = " chars" if e["metric"] == "cer" else ""
        lines.append(f"| {lang_label(e['lang'], 'asr', title=False)} | {e['n_utts']} | {units}{unit} | "
                     f"{e['errors']} | {e['sub']} | {e['del']} | {e['ins']} | "
                     f"{e['value']:.2f} ({e['metric'].upper()}) | {e['cer']:.2f} |")
    ave = statistics.fmean(e["value"] for e in asr)
    ave_cer = statistics.fmean(e["cer"] for e in asr)
    return lines + [f"| **Ave.** | {sum(e['n_utts'] for e in asr)} | | | | | | **{ave:.2f}** | "
                    f"**{ave_cer:.2f}** |", ""]


def _st_table(split: str, st: list[dict]) -> list[str]:
    lines = [f"### {split}: S2TT", "", "| lang→en | #utt | BLEU |", "|---|---:|---:|"]
    lines += [f"| {lang_label(e['lang'], 'st', title=False)} | {e['n_utts']} | {e['value']:.2f} |" for e in st]
    ave = statistics.fmean(e["value"] for e in st)
    return lines + [f"| **Ave.** | {sum(e['n_utts'] for e in st)} | **{ave:.2f}** |", ""]


def _decode_section(dtag: str, dec: dict) -> list[str]:
    """Config, per-split tables, BLEU signatures and warnings of one ``decode_<dtag>``."""
    lines = [f"## decode_{dtag}", ""]
    if dec["config"]:
        lines += [f"Decoding config (`{dec['config_file']}`):", "", "```yaml",
                  dec["config"].rstrip("\n"), "```", ""]
    else:
        lines += [f"Decoding config: decode tag `{dtag}` (no config file in the decode dir).", ""]
    sets = dec["sets"]
    for split in sorted({e["split"] for e in sets}):
        asr, st = select_sets(sets, split, "asr"), select_sets(sets, split, "st")
        lines += (_asr_table(split, asr) if asr else []) + (_st_table(split, st) if st else [])
    for sig in sorted({e["signature"] for e in sets if e["task"] == "st"}):
        lines += [f"BLEU signature: `{sig}`", ""]
    notes = [f"- {e['set']} {e['task']}: {e['missing_hyps']} utterances without hypothesis "
             f"(scored as deletions)" for e in sets if e["missing_hyps"]]
    notes += [f"- {e['set']} {e['task']}: {e['empty_refs']} empty references not scored"
              for e in sets if e["empty_refs"]]
    if notes:
        lines += ["Warnings:", ""] + notes + [""]
    return lines + [EXP_NOTE, ""]


def format_exp_markdown(results: dict) -> str:
    """RESULTS.md text of one experiment (the structure :func:`osoup.score.scoring.score_exp`
    returns)."""
    lines = _exp_header(results)
    for dtag, dec in results["decodes"].items():
        lines += _decode_section(dtag, dec)
    return "\n".join(lines)


def _cell(values: list[float]) -> str:
    mean, std = mean_std(values)
    return f"{mean:.1f}" if std is None else f"{mean:.1f} ± {std:.1f}"


def _measure_title(methods: list[Method], measure: str) -> str:
    if measure == "asr":
        used = sorted({m.asr_metric[lang].upper() for m in methods for lang in m.asr})
        return f"## ASR {'/'.join(used)} (%), lower is better"
    if measure == "asr_cer":
        return "## ASR CER (%), every language by character, lower is better"
    return "## S2TT BLEU, higher is better"


def _measure_table(methods: list[Method], measure: str, sig: Significance | None = None) -> tuple[list[str], bool]:
    """One table (languages + Ave. by methods); also whether some average covers fewer
    languages than the rows (marked †). Empty when no method has the measure. With ``sig``, a
    cell whose difference to the reference method is significant carries its mark."""
    values = [m.values(measure) for m in methods]
    langs = sort_langs(lang for v in values for lang in v)
    if not langs:
        return [], False

    def mark(m: Method, lang: str) -> str:
        got = sig.mark(measure, m.label, lang) if sig is not None else ""
        return f" {got}" if got else ""

    header = f"| {'Lang→En' if measure == 'st' else 'Lang'} | " + " | ".join(m.label for m in methods) + " |"
    lines = [_measure_title(methods, measure), "", header, "|---|" + "---:|" * len(methods)]
    for lang in langs:
        cells = [_cell(v[lang]) + mark(m, lang) if lang in v else "–" for m, v in zip(methods, values)]
        lines.append(f"| {lang_label(lang, measure)} | " + " | ".join(cells) + " |")
    aves, partial = [], False
    for m, v in zip(methods, values):
        per = m.averages(measure)
        partial_mark = " †" if per and set(v) != set(langs) else ""
        partial = partial or bool(partial_mark)
        aves.append(f"**{_cell(per)}**{partial_mark}{mark(m, AVE)}" if per else "–")
    return lines + ["| Ave. | " + " | ".join(aves) + " |", ""], partial


def _experiments(methods: list[Method]) -> list[str]:
    lines = ["Experiments:", ""]
    for m in methods:
        named = [str(s) for s in m.seeds if s is not None]
        seeds = f" (seed{'s' if len(named) > 1 else ''} {', '.join(named)})" if named else ""
        lines.append(f"- {m.label}{seeds}: " + ", ".join(f"`{e}`" for e in m.exps))
    return lines + [""]


def selection_markdown(methods: list[Method]) -> list[str]:
    """For each static sweep: every grid point's dev number and which one is reported
    (:func:`osoup.score.comparison.select_on_dev`); nothing without a sweep."""
    lines: list[str] = []
    for m in methods:
        if m.selection is None:
            continue
        sel = m.selection
        lines += [f"## {m.label}: grid points on dev (the chosen one is reported above)", "",
                  "| grid point | dev | experiments |", "|---|---:|---|"]
        for p in sel["points"]:
            mark = " **(chosen)**" if p["point"] == sel["chosen"] else ""
            lines.append(f"| {p['point']}{mark} | {p['dev']:.4f} | " + ", ".join(f"`{e}`" for e in p["exps"]) + " |")
        lines += ["", f"Dev number: {sel['criterion']}.", ""]
    return lines


def _delta_cell(d: Delta | None) -> str:
    """``+1.2 [+0.3, +2.0] ‡``: observed difference, 95% interval, mark."""
    return "–" if d is None else f"{d.observed:+.1f} [{d.low:+.1f}, {d.high:+.1f}]" + (f" {d.mark}" if d.mark else "")


def _difference_tables(methods: list[Method], measures: list[str], reference: str, keys, cell) -> list[str]:
    """Per measure, one table of each method's difference to ``reference``: rows are the languages
    of ``keys`` ((measure, label, lang | AVE) tuples) and their average, cells ``cell(measure, label, lang)``."""
    others = [m for m in methods if m.label != reference]
    lines: list[str] = []
    for measure in measures:
        langs = sort_langs(lang for (ms, _, lang) in keys if ms == measure and lang != AVE)
        if not langs:
            continue
        lines += [_measure_title(methods, measure).replace("## ", "### Difference to " + reference + ": ", 1), "",
                  f"| {'Lang→En' if measure == 'st' else 'Lang'} | " + " | ".join(m.label for m in others) + " |",
                  "|---|" + "---:|" * len(others)]
        ave = [AVE] if any((measure, m.label, AVE) in keys for m in others) else []
        for lang in langs + ave:
            name = "Ave." if lang == AVE else lang_label(lang, measure)
            lines.append(f"| {name} | " + " | ".join(cell(measure, m.label, lang) for m in others) + " |")
        lines.append("")
    return lines


def significance_markdown(methods: list[Method], measures: list[str], sig: Significance | None) -> list[str]:
    """The legend of the significance marks and, per measure, each method's difference to the
    reference with its 95% interval (:mod:`osoup.score.significance`); nothing without ``sig``."""
    if sig is None:
        return []
    title = f"## Paired significance vs {sig.reference}"
    if sig.note:
        return [title, "", f"Not computed: {sig.note}.", ""]
    lines = [title, "",
             f"Test: {TEST}, {sig.resamples} resamples, seed {sig.seed}; the difference (method − "
             f"{sig.reference}) with its 95% percentile interval. {MARK_BETTER}: significantly better than "
             f"{sig.reference}, {MARK_WORSE}: significantly worse (the interval excludes 0). Seed replicas: each "
             f"method's corpus metric is averaged over its seeds inside every resample."
             + (f" BLEU signature: `{sig.bleu_signature}`." if sig.bleu_signature else ""), ""]
    return lines + _difference_tables(methods, measures, sig.reference, sig.deltas,
                                      lambda ms, label, lang: _delta_cell(sig.get(ms, label, lang)))


def seed_tests_markdown(methods: list[Method], measures: list[str], reference: str,
                        tests: dict[tuple[str, str, str], SeedTest]) -> list[str]:
    """Per measure, each method's difference of seed means to ``reference`` with Welch's p-value
    (:mod:`osoup.score.seeds`); nothing when no method and the reference both have two seeds."""
    if not tests:
        return []
    lines = [f"## Between seeds vs {reference}", "",
             f"Test: {SEED_TEST}; the difference of the seed means (method − {reference}) and its p-value, "
             f"**bold** when p < {SEED_ALPHA}. It asks whether training the method again would differ, which the "
             f"bootstrap above (test utterances resampled, trained models fixed) does not; with a few seeds it "
             f"has little power, so a large p means not shown, not equal.", ""]

    def cell(ms: str, label: str, lang: str) -> str:
        r = tests.get((ms, label, lang))
        if r is None:
            return "–"
        text = f"{r.diff:+.1f} (p {r.p:.3f})" if r.p >= 0.001 else f"{r.diff:+.1f} (p < 0.001)"
        return f"**{text}**" if r.p < SEED_ALPHA else text
    return lines + _difference_tables(methods, measures, reference, tests, cell)


def comparison_markdown(methods: list[Method], split: str = "test", significance: Significance | None = None,
                        seed_tests: dict[tuple[str, str, str], SeedTest] | None = None, seed_reference: str = "") -> str:
    """Tables in the shape of the paper's Tables 1/2/5: languages + Ave. by methods. The CER
    table of every language is shown only when some language is scored by word. With
    ``significance``, cells carry its marks and a section lists the differences to the reference."""
    measures = comparison_measures(methods)
    lines, partial = [f"# Comparison ({split} sets)", ""], False
    for measure in measures:
        table, marked = _measure_table(methods, measure, significance)
        lines += table
        partial = partial or marked
    lines.append(COMPARISON_NOTE)
    if partial:
        lines.append("†: average over fewer languages than the table rows.")
    if significance is not None and significance.deltas:
        lines.append(f"{MARK_BETTER} / {MARK_WORSE}: significantly better / worse than {significance.reference} "
                     f"(paired bootstrap, 95%; section \"Paired significance vs {significance.reference}\").")
    lines += [""] + significance_markdown(methods, measures, significance)
    lines += seed_tests_markdown(methods, measures, seed_reference, seed_tests or {})
    return "\n".join(lines + _experiments(methods) + selection_markdown(methods))
